//! `greenroom logs`: print a system's log file, and with `-f` keep printing what is added.

use std::{
    io::{Read, Seek, SeekFrom, Write},
    path::PathBuf,
    time::Duration,
};

use greenroom::runtime_dir;

use super::connect;
use crate::CliError;

pub fn run(name: &str, follow: bool) -> Result<(), CliError> {
    // A running system says where its log is; a stopped one left it at the default place.
    let running = connect(name).ok();
    let path = match running.as_ref().map(|s| s.describe()).transpose()? {
        Some(d) => d.log_file.map(PathBuf::from).ok_or_else(|| {
            CliError::Failed(format!(
                "system {name:?} logs to its admin's stderr (started with --foreground), not to a file"
            ))
        })?,
        None => runtime_dir::default_base().join(format!("{name}.log")),
    };
    drop(running);
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
        // At the end: done once the system is gone and nothing more was written.
        if connect(name).is_err() {
            let at = file.stream_position().unwrap_or(0);
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len <= at {
                return Ok(());
            }
            let _ = file.seek(SeekFrom::Start(at));
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
