//! A transient actor's end (`ChildSpec::lifetime`, `ChildSpec::idle_timeout`): when it is
//! due, and why.
//!
//! The host enforces both itself, in its loop, rather than the admin: it is the one process
//! that knows when its actor last processed a message, and ending the actor is then the
//! same local step as the capability re-check's (an `ActorExitRequest` from the system,
//! `@0`, delivered to `receive`). Its deadlines join the wakeups' in the loop's wait, so
//! nothing polls. The admin only tells each incarnation, in `Start`, what is left of the
//! lifetime, which counts from the actor's creation, across restarts.

use std::time::{Duration, Instant};

/// When this incarnation's actor is to be asked to exit.
pub(crate) struct Lifespan {
    /// The end of its lifetime, if it has one.
    ends_at: Option<Instant>,
    idle_timeout: Option<Duration>,
    /// The start of the incarnation, or the end of the last `receive` of a message from
    /// another endpoint.
    active_at: Instant,
}

/// Why a transient actor is being ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Lifetime,
    Idle(Duration),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Lifetime => write!(f, "its lifetime is over"),
            End::Idle(after) => write!(f, "it has been idle for {after:?}"),
        }
    }
}

impl Lifespan {
    /// From `Start`: what is left of the lifetime, and the idle timeout.
    pub(crate) fn new(lifetime_left: Option<Duration>, idle_timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        Lifespan {
            ends_at: lifetime_left.map(greenroom::system::deadline_after),
            idle_timeout,
            active_at: now,
        }
    }

    /// A message from another endpoint has just been processed.
    pub(crate) fn touch(&mut self) {
        if self.idle_timeout.is_some() {
            self.active_at = Instant::now();
        }
    }

    /// Whether the actor has an end at all (a lifetime or an idle timeout): if not,
    /// [`Lifespan::due`] never says yes, so the host need not read the clock to ask it.
    pub(crate) fn may_end(&self) -> bool {
        self.ends_at.is_some() || self.idle_timeout.is_some()
    }

    /// The next moment [`Lifespan::due`] may say yes.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let idle_end = self.idle_timeout.map(|idle| self.active_at + idle);
        [self.ends_at, idle_end].into_iter().flatten().min()
    }

    /// Whether the actor is to be asked to exit now, and why.
    pub(crate) fn due(&self, now: Instant) -> Option<End> {
        if self.ends_at.is_some_and(|end| end <= now) {
            return Some(End::Lifetime);
        }
        match self.idle_timeout {
            Some(idle) if self.active_at + idle <= now => Some(End::Idle(idle)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_settings_never_end() {
        let l = Lifespan::new(None, None);
        assert!(!l.may_end());
        assert_eq!(l.next_deadline(), None);
        assert_eq!(l.due(Instant::now() + Duration::from_secs(3600)), None);
    }

    #[test]
    fn the_lifetime_ends_whatever_the_activity_and_idleness_is_reset_by_it() {
        let mut l = Lifespan::new(Some(Duration::from_secs(10)), Some(Duration::from_secs(2)));
        assert!(l.may_end());
        assert!(Lifespan::new(Some(Duration::from_secs(10)), None).may_end());
        assert!(Lifespan::new(None, Some(Duration::from_secs(2))).may_end());
        let start = Instant::now();
        assert!(l.next_deadline().is_some_and(|d| d <= start + Duration::from_secs(3)));
        l.touch();
        let later = l.active_at;
        assert_eq!(l.due(later + Duration::from_secs(1)), None);
        assert_eq!(
            l.due(later + Duration::from_secs(2)),
            Some(End::Idle(Duration::from_secs(2)))
        );
        assert_eq!(l.due(start + Duration::from_secs(11)), Some(End::Lifetime));
    }
}
