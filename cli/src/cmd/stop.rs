//! `greenroom stop`: a graceful shutdown, waiting until the admin is gone.

use std::time::{Duration, Instant};

use super::connect;
use crate::CliError;

/// How long `stop` waits for the admin process to exit after it reported the shutdown.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

pub fn run(name: &str) -> Result<(), CliError> {
    let system = connect(name)?;
    let pid = system.admin_pid().unwrap_or_default();
    system.stop_system()?;
    drop(system);
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while super::process_running(pid) {
        if Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "the admin (pid {pid}) reported the shutdown but is still running after {EXIT_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("stopped actor system {name:?}");
    Ok(())
}
