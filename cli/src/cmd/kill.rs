//! `greenroom kill`: a signal to one actor's host process — fault injection from the shell.

use std::str::FromStr;

use greenroom::ActorState;
use nix::sys::signal::Signal;

use super::connect;
use crate::CliError;

pub fn run(system_name: &str, target: &str, signal: &str) -> Result<(), CliError> {
    let signal = parse_signal(signal)?;
    let system = connect(system_name)?;
    let description = system.describe(false)?;
    let wanted_id = target.strip_prefix('@').unwrap_or(target).parse::<u64>().ok();
    let row = description
        .actors
        .iter()
        .filter(|a| !matches!(a.state, ActorState::Gone(_)))
        .find(|a| a.global_name.as_deref() == Some(target) || Some(a.address.id()) == wanted_id)
        .ok_or_else(|| {
            CliError::Failed(format!(
                "no live actor {target:?} in system {system_name:?}; `greenroom status {system_name}` lists them"
            ))
        })?;
    let pid = row.pid.ok_or_else(|| {
        CliError::Failed(format!(
            "actor {} has no process right now (it is {:?}); try again in a moment",
            row.address, row.state
        ))
    })?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
        .map_err(|e| CliError::Failed(format!("cannot send {signal} to pid {pid}: {e}")))?;
    println!("sent {signal} to {} ({}, pid {pid})", row.address, row.type_name);
    Ok(())
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
fn parse_signal(text: &str) -> Result<Signal, CliError> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| CliError::Invalid(format!("--signal {text}: no such signal number")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map_err(|_| CliError::Invalid(format!("--signal {text}: not a signal name (try KILL, TERM, SEGV)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("11").unwrap(), Signal::SIGSEGV);
        assert!(parse_signal("NOPE").is_err());
    }
}
