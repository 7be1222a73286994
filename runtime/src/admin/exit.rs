//! Turning a reaped wait status into the serialisable [`ExitCause`].

use greenroom_protocol::ExitCause;
use nix::sys::wait::WaitStatus;

/// The cause of a host's end, from its wait status. `exit_requested` is whether the host
/// was finishing an `ActorExitRequest` (then status 0 is a normal exit).
pub(crate) fn cause_of(status: WaitStatus, exit_requested: bool) -> Option<ExitCause> {
    match status {
        WaitStatus::Exited(_, 0) if exit_requested => Some(ExitCause::Normal),
        WaitStatus::Exited(_, code) => Some(ExitCause::ExitCode(code)),
        WaitStatus::Signaled(_, signal, core_dumped) => Some(ExitCause::Signal {
            signal: signal as i32,
            core_dumped,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::{sys::signal::Signal, unistd::Pid};

    #[test]
    fn statuses_map_to_causes() {
        let pid = Pid::from_raw(1);
        assert_eq!(cause_of(WaitStatus::Exited(pid, 0), true), Some(ExitCause::Normal));
        assert_eq!(
            cause_of(WaitStatus::Exited(pid, 0), false),
            Some(ExitCause::ExitCode(0))
        );
        assert_eq!(cause_of(WaitStatus::Exited(pid, 3), true), Some(ExitCause::ExitCode(3)));
        assert_eq!(
            cause_of(WaitStatus::Signaled(pid, Signal::SIGSEGV, true), false),
            Some(ExitCause::Signal {
                signal: 11,
                core_dumped: true
            })
        );
        assert_eq!(cause_of(WaitStatus::StillAlive, false), None);
    }
}
