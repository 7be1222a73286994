//! `Pending`: accepted connections that have not completed their handshake yet — how long
//! each may take, and how many may wait at once.
//!
//! Every listening socket of the runtime (an actor's, a client's, the admin's `admin.sock`)
//! accepts from peers it does not know yet. A peer that connects and says nothing must not
//! hold anything for long (each gets [`HANDSHAKE_TIMEOUT`]), and a flood of them must not
//! grow the listener's state without bound (at most the limit wait at once; more are closed
//! on accept, with one log line per burst).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use mio::Token;

/// How long an accepted connection may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The default bound on connections waiting for their handshake, per listening socket.
pub const DEFAULT_MAX_PENDING: usize = 256;

/// Connections waiting for their handshake, by deadline (one timeout for all, so the order
/// of acceptance is the order of deadlines).
#[derive(Debug)]
pub(crate) struct Pending {
    /// May hold entries whose handshake is done (dropped when they expire or when room is
    /// needed); the `is_pending` callbacks tell them apart.
    deadlines: VecDeque<(Instant, Token)>,
    limit: usize,
    /// Connections refused in the current burst, for its one log line.
    refused: u64,
}

impl Pending {
    pub fn new(limit: usize) -> Self {
        Pending {
            deadlines: VecDeque::new(),
            limit: limit.max(1),
            refused: 0,
        }
    }

    /// Whether one more connection may wait; `false` means close it at once. `what` names
    /// the listener for the log.
    pub fn admit(&mut self, is_pending: impl Fn(Token) -> bool, what: &str) -> bool {
        if self.deadlines.len() >= self.limit {
            self.deadlines.retain(|(_, t)| is_pending(*t));
        }
        if self.deadlines.len() < self.limit {
            if self.refused > 0 {
                tracing::warn!(
                    listener = what,
                    refused = self.refused,
                    limit = self.limit,
                    "accepting connections again after refusing some: too many were waiting for their handshake"
                );
                self.refused = 0;
            }
            return true;
        }
        if self.refused == 0 {
            tracing::warn!(listener = what, limit = self.limit,
                "refusing connections: too many are waiting for their handshake (SystemConfig::max_pending_connections)");
        }
        self.refused += 1;
        false
    }

    /// Starts the clock for an admitted connection.
    pub fn push(&mut self, token: Token) {
        self.deadlines.push_back((Instant::now() + HANDSHAKE_TIMEOUT, token));
    }

    /// The earliest deadline, for the event loop's timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _)| *at)
    }

    /// The connections whose deadline has passed and that are still pending: to be closed.
    pub fn expired(&mut self, now: Instant, is_pending: impl Fn(Token) -> bool) -> Vec<Token> {
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
        let mut p = Pending::new(2);
        let done = std::cell::RefCell::new(Vec::<Token>::new());
        let pending = |t: Token| !done.borrow().contains(&t);
        assert!(p.admit(pending, "test"));
        p.push(Token(1));
        assert!(p.admit(pending, "test"));
        p.push(Token(2));
        assert!(!p.admit(pending, "test"), "two wait: the third is refused");
        done.borrow_mut().push(Token(1));
        assert!(
            p.admit(|t| !done.borrow().contains(&t), "test"),
            "one finished its handshake"
        );
        p.push(Token(3));
        let later = Instant::now() + HANDSHAKE_TIMEOUT + Duration::from_millis(1);
        assert_eq!(
            p.expired(later, |t| !done.borrow().contains(&t)),
            vec![Token(2), Token(3)]
        );
        assert_eq!(p.next_deadline(), None);
    }
}
