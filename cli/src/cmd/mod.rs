//! One file per command; what they share is here: finding a system by name.

pub mod keygen;
pub mod kill;
pub mod list;
pub mod logs;
pub mod start;
pub mod status;
pub mod stop;

use std::path::PathBuf;

use greenroom::{runtime_dir, ActorSystem};

use crate::CliError;

/// The runtime directory of the system called `name`.
pub fn system_dir(name: &str) -> Result<PathBuf, CliError> {
    runtime_dir::named_system_dir(&runtime_dir::default_base(), name).map_err(|e| CliError::Invalid(e.to_string()))
}

/// Attaches to the running system called `name`.
pub fn connect(name: &str) -> Result<ActorSystem, CliError> {
    let dir = system_dir(name)?;
    ActorSystem::connect_dir(&dir).map_err(|e| match e {
        greenroom::Error::NoSuchSystem { .. } => CliError::NotRunning { name: name.to_owned() },
        other => CliError::Runtime(other),
    })
}

/// `1.2s`, `3m04s`, `2h05m`: a short human duration.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{seconds:.1}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Whether `pid` is a running process (one that exited but awaits reaping by its parent, a
/// zombie, is not).
pub fn process_running(pid: u32) -> bool {
    greenroom::process_role::process_state(pid).is_some_and(|state| state != 'Z')
}
