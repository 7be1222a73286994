//! Supervision policy as it travels from the creator of an actor to the admin.
//!
//! The runtime crate documents these with examples; they live here because they are part of
//! `CreateActor` on the wire.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a child is restarted after its process ends.
///
/// | type | restarted after a crash | after a clean exit without `ActorExitRequest` | after `ActorExitRequest` |
/// |---|---|---|---|
/// | `Permanent` (default) | yes | yes | no |
/// | `Transient` | yes | no | no |
/// | `Temporary` | no | no | no |
///
/// An actor that handled `ActorExitRequest` asked to stop and is never restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartType {
    #[default]
    Permanent,
    Transient,
    Temporary,
}

/// What happens when an actor's `receive` fails: panics, or returns an error.
///
/// | policy | `receive` calls for the message | the message | the actor |
/// |---|---|---|---|
/// | `RetryOnce` (default) | two (Thespian's rule) | back to its sender as `PoisonMessage` if the retry fails too | goes on with the next message, its state as the failed call left it |
/// | `Poison` | one | back to its sender as `PoisonMessage` at once | goes on, as for `RetryOnce` |
/// | `Restart` | one | back to its sender as `PoisonMessage` at once | its process ends (cause [`crate::ExitCause::ReceiveFailed`]) and its supervisor restarts it by its [`RestartType`] and limits, with fresh state, as in Erlang; messages queued behind the failed one reach the new incarnation |
///
/// `Poison` suits a handler that is not idempotent (a retry would do its work twice).
/// `ActorExitRequest` is never retried and never restarts the actor (the exit goes ahead),
/// and a failing `PoisonMessage` is never returned; a failed wakeup has no sender to go back
/// to. With `Restart`, the actor's pending wakeups carry over to the new incarnation, except
/// those the failed `receive` itself set. On the simple base `Restart` builds a fresh actor
/// from the registry in place, with no backoff and no restart limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OnFailure {
    #[default]
    RetryOnce,
    Poison,
    Restart,
}

/// Which siblings restart with a failed child (as in OTP).
///
/// | strategy | restarted when child C fails |
/// |---|---|
/// | `OneForOne` (default) | C only |
/// | `OneForAll` | every child of the supervisor: the others are stopped (reverse start order), then all start again (start order) |
/// | `RestForOne` | C and the children started after it, the same way |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Strategy {
    #[default]
    OneForOne,
    OneForAll,
    RestForOne,
}

/// How long to wait before restarting a child that keeps failing.
///
/// The first restart after a healthy run is immediate; the n-th consecutive one waits
/// `min(initial × multiplier^(n-2), max)`. A child that stays up for `reset_after` counts as
/// healthy again.
///
/// | field | default |
/// |---|---|
/// | `initial` | 10 ms |
/// | `max` | 1 s |
/// | `multiplier` | 2 |
/// | `reset_after` | 5 s |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: u32,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            multiplier: 2,
            reset_after: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The delay before the `consecutive`-th restart in a row (1 = the first).
    pub fn delay(&self, consecutive: u32) -> Duration {
        if consecutive <= 1 {
            return Duration::ZERO;
        }
        let factor = self.multiplier.max(1).saturating_pow(consecutive - 2);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How an actor supervises its children (or the root supervisor its top-level actors).
///
/// | field | default |
/// |---|---|
/// | `strategy` | `OneForOne` |
/// | `max_restarts` | 5 |
/// | `within` | 10 s (more than `max_restarts` restarts in this window: give up and escalate) |
/// | `backoff` | see [`Backoff`] |
/// | `stop_timeout` | 5 s (a child asked to stop is killed after this) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorSpec {
    pub strategy: Strategy,
    pub max_restarts: u32,
    pub within: Duration,
    pub backoff: Backoff,
    pub stop_timeout: Duration,
}

impl Default for SupervisorSpec {
    fn default() -> Self {
        SupervisorSpec {
            strategy: Strategy::OneForOne,
            max_restarts: 5,
            within: Duration::from_secs(10),
            backoff: Backoff::default(),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Per-actor limits on the host process, enforced by the kernel (`setrlimit` in the new
/// process before it runs any code). `None` means unlimited (the default for each).
///
/// | limit | kernel mechanism | what happens when exceeded |
/// |---|---|---|
/// | `memory_bytes` | `RLIMIT_AS` | allocations fail, the host aborts; cause `ResourceLimit { resource: Memory }` |
/// | `cpu_seconds` | `RLIMIT_CPU` (hard limit one second later) | SIGXCPU, then SIGKILL; cause `ResourceLimit { resource: CpuTime }` |
/// | `open_files` | `RLIMIT_NOFILE` | opening more files fails with EMFILE; the actor sees the error, the process is not killed |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResourceLimits {
    pub memory_bytes: Option<u64>,
    pub cpu_seconds: Option<u64>,
    pub open_files: Option<u64>,
}

/// What the creator of an actor decides for it.
///
/// | field | default |
/// |---|---|
/// | `restart` | `Permanent` |
/// | `supervision` | [`SupervisorSpec::default`] |
/// | `liveness` | `None`: an actor may spend as long as it likes on one message |
/// | `limits` | none (see [`ResourceLimits`]) |
/// | `lifetime` | `None`: the actor lives until it is asked to exit |
/// | `idle_timeout` | `None`: an idle actor lives on |
/// | `on_failure` | [`OnFailure::RetryOnce`]: a failed `receive` is tried once more |
///
/// `lifetime` and `idle_timeout` make a transient actor (Thespian's `@transient` and
/// `@transient_idle`): when either is up, the actor is stopped exactly as if the system
/// (`@0`) had sent it `ActorExitRequest`: its `receive` sees the request, its children are
/// asked to exit, its parent gets `ChildActorExited` with `ExitCause::Normal`, and it is not
/// restarted. The lifetime counts from the actor's creation, across restarts (an actor that
/// keeps crashing does not live longer for it; one restarted after its lifetime is asked to
/// exit at once). Idleness counts, in each incarnation, from its start or from the end of
/// the last `receive` of a message from another endpoint (an actor, a client, or the
/// runtime's notices); the actor's own wakeups and messages to itself do not count, so a
/// periodic tick does not keep an idle actor alive. On the simple base both run on the
/// virtual clock.
///
/// ```
/// use std::time::Duration;
/// use greenroom_protocol::{ChildSpec, ExitCause, OnFailure};
/// // Asked to exit 10 minutes after its creation, or after 30 s without a message; a
/// // failed `receive` returns its message and restarts it with fresh state.
/// let spec = ChildSpec {
///     lifetime: Some(Duration::from_secs(600)),
///     idle_timeout: Some(Duration::from_secs(30)),
///     on_failure: OnFailure::Restart,
///     ..ChildSpec::default()
/// };
/// assert!(ExitCause::ReceiveFailed("boom".into()).is_abnormal(), "restarted even if Transient");
/// # let _ = spec;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChildSpec {
    /// When this actor is restarted by its parent.
    pub restart: RestartType,
    /// How this actor supervises its own children.
    pub supervision: SupervisorSpec,
    /// If set, an actor stuck on one message for longer than this is considered hung: its
    /// process is killed (cause [`crate::ExitCause::Unresponsive`]), the message goes back to
    /// its sender as poison, and the restart policy applies.
    pub liveness: Option<std::time::Duration>,
    /// Kernel-enforced limits on the actor's process.
    pub limits: ResourceLimits,
    /// If set, the actor is asked to exit this long after its creation (see above).
    pub lifetime: Option<Duration>,
    /// If set, the actor is asked to exit once it has been idle this long (see above).
    pub idle_timeout: Option<Duration>,
    /// What a failed `receive` does to the message and to the actor.
    pub on_failure: OnFailure,
}

/// The longest duration a spec may hold (a year): "forever" for all practical purposes, and
/// far enough below the limits of the clock's arithmetic that no deadline overflows.
pub const LONGEST: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

impl SupervisorSpec {
    /// This spec with every duration capped at [`LONGEST`]. The admin applies it to every
    /// spec it receives: a peer's `Duration::MAX` must not overflow its clock arithmetic.
    pub fn clamped(self) -> Self {
        SupervisorSpec {
            within: self.within.min(LONGEST),
            stop_timeout: self.stop_timeout.min(LONGEST),
            backoff: Backoff {
                initial: self.backoff.initial.min(LONGEST),
                max: self.backoff.max.min(LONGEST),
                reset_after: self.backoff.reset_after.min(LONGEST),
                ..self.backoff
            },
            ..self
        }
    }
}

impl ChildSpec {
    /// This spec with every duration capped at [`LONGEST`] (see [`SupervisorSpec::clamped`]).
    pub fn clamped(self) -> Self {
        ChildSpec {
            supervision: self.supervision.clamped(),
            liveness: self.liveness.map(|l| l.min(LONGEST)),
            lifetime: self.lifetime.map(|l| l.min(LONGEST)),
            idle_timeout: self.idle_timeout.map(|l| l.min(LONGEST)),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamping_caps_every_duration() {
        let forever = ChildSpec {
            liveness: Some(Duration::MAX),
            lifetime: Some(Duration::MAX),
            idle_timeout: Some(Duration::MAX),
            supervision: SupervisorSpec {
                within: Duration::MAX,
                stop_timeout: Duration::MAX,
                backoff: Backoff {
                    initial: Duration::MAX,
                    max: Duration::MAX,
                    multiplier: u32::MAX,
                    reset_after: Duration::MAX,
                },
                ..SupervisorSpec::default()
            },
            ..ChildSpec::default()
        }
        .clamped();
        assert_eq!(forever.liveness, Some(LONGEST));
        assert_eq!((forever.lifetime, forever.idle_timeout), (Some(LONGEST), Some(LONGEST)));
        assert_eq!(forever.supervision.stop_timeout, LONGEST);
        assert!(forever.supervision.backoff.delay(40) <= LONGEST);
        let now = std::time::Instant::now();
        let _ = now + forever.supervision.backoff.delay(40) + forever.supervision.stop_timeout;
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::ZERO);
        assert_eq!(b.delay(2), Duration::from_millis(10));
        assert_eq!(b.delay(3), Duration::from_millis(20));
        assert_eq!(b.delay(5), Duration::from_millis(80));
        assert_eq!(b.delay(40), Duration::from_secs(1));
    }
}
