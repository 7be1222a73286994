//! `Pending`: accepted connections that have not completed their handshake yet — how long
//! each may take, and how many may wait at once.
//!
//! Every listening socket of the runtime (an actor's, a client's, the admin's `admin.sock`)
//! accepts from peers it does not know yet. A peer that connects and says nothing must not
//! hold anything for long (each gets [`HANDSHAKE_TIMEOUT`]), and a flood of them must not
//! grow the listener's state without bound (at most the limit wait at once; more are closed
//! on accept). Nor may a flood grow the log: what the listener refuses, times out or finds
//! broken is logged through its [`SocketLogs`] (a few lines per window, then a count), whose
//! deadlines this type folds into its own, so that a loop that waits for
//! `Pending::next_deadline` and calls `Pending::expired` reports the counts in time.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use mio::Token;

use super::log_limit::SocketLogs;

/// How long an accepted connection may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The default bound on connections waiting for their handshake, per listening socket.
pub const DEFAULT_MAX_PENDING: usize = 256;

/// How long after an accept failed for want of fds or memory it is tried again.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What to log of an accept of `process` (`"the gateway"`, `"this actor host"`…) that
/// failed with `e`: the error, and the limit to raise when it is one of fds.
pub(crate) fn accept_failure(e: &std::io::Error, process: &str) -> String {
    crate::process_role::fd_exhaustion(e, process, std::process::id())
        .map_or(e.to_string(), |which| format!("{e}: {which}; raise it (ulimit -n)"))
}

/// When a listener whose `accept` failed for want of fds or memory tries again. Its
/// readiness is edge-triggered: the connections waiting in its backlog would not be
/// announced again, only the next one to arrive, so the owner's loop counts this deadline
/// among its own and accepts again when [`AcceptRetry::due`].
#[derive(Debug, Default)]
pub(crate) struct AcceptRetry(Option<Instant>);

impl AcceptRetry {
    /// An accept failed at `now` for want of resources: tried again in [`ACCEPT_RETRY`].
    pub fn failed(&mut self, now: Instant) {
        self.0 = Some(now + ACCEPT_RETRY);
    }

    /// When to accept again, if an accept failed.
    pub fn deadline(&self) -> Option<Instant> {
        self.0
    }

    /// Whether to accept again at `now` (once: the retry is then cleared).
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self.0.is_some_and(|at| at <= now);
        if due {
            self.0 = None;
        }
        due
    }
}

/// Connections waiting for their handshake, by deadline (one timeout for all, so the order
/// of acceptance is the order of deadlines).
#[derive(Debug)]
pub(crate) struct Pending {
    /// May hold entries whose handshake is done (dropped when they expire or when room is
    /// needed); the `is_pending` callbacks tell them apart.
    deadlines: VecDeque<(Instant, Token)>,
    limit: usize,
    /// The listener, in log lines: `"admin.sock"`, `"actor socket"`.
    socket: &'static str,
    /// The listener's rate-limited log lines: refusals (these and the owner's), handshake
    /// timeouts, protocol errors.
    pub logs: SocketLogs,
}

impl Pending {
    /// The pending connections of the listener named `socket` in its log lines
    /// (`"admin.sock"`, `"actor socket"`), at most `limit` at once.
    pub fn new(limit: usize, socket: &'static str) -> Self {
        Pending {
            deadlines: VecDeque::new(),
            limit: limit.max(1),
            socket,
            logs: SocketLogs::new(socket),
        }
    }

    /// Changes how many connections may wait at once (those waiting now stay).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Whether one more connection may wait; `false` means close it at once.
    pub fn admit(&mut self, is_pending: impl Fn(Token) -> bool) -> bool {
        if self.deadlines.len() >= self.limit {
            self.deadlines.retain(|(_, t)| is_pending(*t));
        }
        if self.deadlines.len() < self.limit {
            return true;
        }
        if self.logs.refused.allow() {
            tracing::warn!(listener = self.socket, limit = self.limit,
                "refused a connection: too many are waiting for their handshake (SystemConfig::max_pending_connections)");
        }
        false
    }

    /// Starts the clock for an admitted connection.
    pub fn push(&mut self, token: Token) {
        self.deadlines.push_back((Instant::now() + HANDSHAKE_TIMEOUT, token));
    }

    /// The earliest deadline (a handshake's, or the end of a log window with a count to
    /// report), for the event loop's timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let handshake = self.deadlines.front().map(|(at, _)| *at);
        handshake.into_iter().chain(self.logs.deadline()).min()
    }

    /// The connections whose deadline has passed and that are still pending: to be closed.
    /// Also reports the counts of log windows that have ended.
    pub fn expired(&mut self, now: Instant, is_pending: impl Fn(Token) -> bool) -> Vec<Token> {
        self.logs.tick(now);
        let mut late = Vec::new();
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if is_pending(token) {
                late.push(token);
            }
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_connections_are_refused_until_room_is_made() {
        let mut p = Pending::new(2, "test");
        let done = std::cell::RefCell::new(Vec::<Token>::new());
        let pending = |t: Token| !done.borrow().contains(&t);
        assert!(p.admit(pending));
        p.push(Token(1));
        assert!(p.admit(pending));
        p.push(Token(2));
        assert!(!p.admit(pending), "two wait: the third is refused");
        done.borrow_mut().push(Token(1));
        assert!(p.admit(|t| !done.borrow().contains(&t)), "one finished its handshake");
        p.push(Token(3));
        let later = Instant::now() + HANDSHAKE_TIMEOUT + Duration::from_millis(1);
        assert_eq!(
            p.expired(later, |t| !done.borrow().contains(&t)),
            vec![Token(2), Token(3)]
        );
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn a_flood_of_refusals_logs_a_burst_and_counts_the_rest_until_the_window_ends() {
        let mut p = Pending::new(1, "test");
        assert!(p.admit(|_| true));
        p.push(Token(1));
        for _ in 0..100 {
            assert!(!p.admit(|_| true));
        }
        let burst = u64::from(p.logs.refused.burst());
        assert_eq!(p.logs.refused.suppressed(), 100 - burst);
        // The loop wakes for the handshake's deadline, then for the log window's end.
        let window_end = p.logs.deadline().expect("a count to report");
        assert!(p.next_deadline().is_some_and(|d| d <= window_end));
        assert_eq!(p.expired(window_end, |_| true), vec![Token(1)]);
        assert_eq!(p.logs.refused.suppressed(), 0, "reported when the window ended");
        assert_eq!(p.next_deadline(), None);
    }
}
