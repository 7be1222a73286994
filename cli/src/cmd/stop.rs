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
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
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

/// A process that has exited but not been reaped yet (by its parent, not us).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}
