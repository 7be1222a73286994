//! Turning a reaped wait status into the serialisable [`ExitCause`].

use std::time::Duration;

use greenroom_protocol::{ExitCause, Resource, ResourceLimits};
use nix::sys::wait::WaitStatus;

use crate::process_role::EXIT_RECEIVE_FAILED;

const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;
const SIGXCPU: i32 = 24;

/// Attributes a death to a resource limit where the evidence says so: SIGXCPU, or SIGKILL
/// (the hard limit) after using the CPU limit, means CPU time; an abort under a memory limit
/// is taken as an allocation failure (Rust aborts when the allocator fails) — an actor that
/// calls `abort()` itself while it has a memory limit is misread as out of memory.
pub(crate) fn limit_cause(cause: &ExitCause, limits: &ResourceLimits, cpu_used: Duration) -> Option<ExitCause> {
    let ExitCause::Signal { signal, .. } = cause else {
        return None;
    };
    if let Some(cpu) = limits.cpu_seconds {
        if *signal == SIGXCPU || (*signal == SIGKILL && cpu_used >= Duration::from_secs(cpu)) {
            return Some(ExitCause::ResourceLimit {
                resource: Resource::CpuTime,
                detail: format!("used {:.1} s of CPU, limit {cpu} s", cpu_used.as_secs_f64()),
            });
        }
    }
    if let Some(bytes) = limits.memory_bytes {
        if *signal == SIGABRT {
            return Some(ExitCause::ResourceLimit {
                resource: Resource::Memory,
                detail: format!("aborted under its {} MiB address-space limit", bytes / (1024 * 1024)),
            });
        }
    }
    None
}

/// The cause of a host's end, from its wait status. `exit_requested` is whether the host
/// was finishing an `ActorExitRequest` (then status 0 is a normal exit); `receive_failure`
/// what it said failed before it ended itself under `OnFailure::Restart` (then with status
/// [`EXIT_RECEIVE_FAILED`]).
pub(crate) fn cause_of(status: WaitStatus, exit_requested: bool, receive_failure: Option<String>) -> Option<ExitCause> {
    match (status, receive_failure) {
        (WaitStatus::Exited(_, EXIT_RECEIVE_FAILED), Some(details)) => Some(ExitCause::ReceiveFailed(details)),
        (status, _) => status_cause(status, exit_requested),
    }
}

fn status_cause(status: WaitStatus, exit_requested: bool) -> Option<ExitCause> {
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
    fn limits_are_named_from_the_evidence() {
        let sig = |signal| ExitCause::Signal {
            signal,
            core_dumped: false,
        };
        let cpu = ResourceLimits {
            cpu_seconds: Some(1),
            ..ResourceLimits::default()
        };
        let mem = ResourceLimits {
            memory_bytes: Some(64 << 20),
            ..ResourceLimits::default()
        };
        let short = Duration::from_millis(10);
        assert!(matches!(
            limit_cause(&sig(24), &cpu, short),
            Some(ExitCause::ResourceLimit {
                resource: Resource::CpuTime,
                ..
            })
        ));
        assert!(
            limit_cause(&sig(9), &cpu, short).is_none(),
            "killed from outside, not by the limit"
        );
        assert!(limit_cause(&sig(9), &cpu, Duration::from_secs(1)).is_some());
        assert!(matches!(
            limit_cause(&sig(6), &mem, short),
            Some(ExitCause::ResourceLimit {
                resource: Resource::Memory,
                ..
            })
        ));
        assert!(limit_cause(&sig(6), &ResourceLimits::default(), short).is_none());
        assert!(limit_cause(&ExitCause::ExitCode(1), &mem, short).is_none());
    }

    #[test]
    fn statuses_map_to_causes() {
        let pid = Pid::from_raw(1);
        assert_eq!(
            cause_of(WaitStatus::Exited(pid, 0), true, None),
            Some(ExitCause::Normal)
        );
        assert_eq!(
            cause_of(WaitStatus::Exited(pid, 0), false, None),
            Some(ExitCause::ExitCode(0))
        );
        assert_eq!(
            cause_of(WaitStatus::Exited(pid, 3), true, None),
            Some(ExitCause::ExitCode(3))
        );
        assert_eq!(
            cause_of(WaitStatus::Signaled(pid, Signal::SIGSEGV, true), false, None),
            Some(ExitCause::Signal {
                signal: 11,
                core_dumped: true
            })
        );
        assert_eq!(cause_of(WaitStatus::StillAlive, false, None), None);
        // A host that said its receive failed and exited with the status for it.
        let said = || Some("boom".to_owned());
        assert_eq!(
            cause_of(WaitStatus::Exited(pid, EXIT_RECEIVE_FAILED), false, said()),
            Some(ExitCause::ReceiveFailed("boom".into()))
        );
        // Anything else it did afterwards is what the wait status says.
        assert_eq!(
            cause_of(WaitStatus::Signaled(pid, Signal::SIGKILL, false), false, said()),
            Some(ExitCause::Signal {
                signal: 9,
                core_dumped: false
            })
        );
        assert_eq!(
            cause_of(WaitStatus::Exited(pid, EXIT_RECEIVE_FAILED), false, None),
            Some(ExitCause::ExitCode(EXIT_RECEIVE_FAILED))
        );
    }
}
