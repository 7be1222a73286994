//! `greenroom logs`: print a system's log file, and with `-f` keep printing what is added
//! until the admin has exited.

use std::{
    io::{Read, Seek, Write},
    path::PathBuf,
    time::Duration,
};

use greenroom::runtime_dir;

use super::connect;
use crate::CliError;

pub fn run(name: &str, follow: bool) -> Result<(), CliError> {
    // A running system says where its log is; for a stopped one (or one stopping as we ask)
    // only the default place can be tried (a `--log FILE` given at start is not recorded).
    let described = match connect(name) {
        Ok(system) => system.describe(false).ok(),
        Err(e @ CliError::Runtime(greenroom::Error::AdminNotAnswering { .. })) => {
            // Its log is what may say why: show the default one, and say what is wrong.
            eprintln!("greenroom: {e}");
            None
        }
        Err(_) => None,
    };
    let admin_pid = described.as_ref().map(|d| d.admin_pid);
    let path = match described {
        Some(d) => d.log_file.map(PathBuf::from).ok_or_else(|| {
            CliError::Failed(format!(
                "system {name:?} logs to its admin's stderr (started with --foreground and no --log), not to a file"
            ))
        })?,
        None => runtime_dir::default_base().join(format!("{name}.log")),
    };
    let mut file = std::fs::File::open(&path)
        .map_err(|e| CliError::Failed(format!("cannot read the log of {name:?} at {}: {e}", path.display())))?;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| CliError::Failed(format!("reading {}: {e}", path.display())))?;
        if n > 0 {
            stdout
                .write_all(&buf[..n])
                .map_err(|e| CliError::Failed(format!("writing the log out: {e}")))?;
            continue;
        }
        if !follow {
            return Ok(());
        }
        let _ = stdout.flush();
        // At the end of what is written: done once the admin has exited (its last words are
        // in the file by then) and nothing more was added.
        let admin_alive = admin_pid.is_some_and(super::process_running);
        if !admin_alive {
            let at = file.stream_position().unwrap_or(0);
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len <= at {
                return Ok(());
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
