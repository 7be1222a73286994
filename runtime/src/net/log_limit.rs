//! `LogLimit`: a rate limit for log lines that a stranger can cause, one line per event.
//!
//! Every listening socket logs what it refuses: a peer of another user, a connection past
//! the pending limit, a handshake that timed out, a frame that broke the protocol. Each is
//! worth a line when it happens now and then, but a peer that opens thousands of
//! connections would otherwise write thousands of lines (3,000 idle connections to one
//! socket once gave 2,947 lines), filling the log and hiding everything else. So each kind
//! of event on each socket goes through a [`LogLimit`]:
//!
//! * the first [`LogLimit::burst`] events of a window are logged one by one, as before;
//! * the rest of the window's events are only counted;
//! * when the window has ended, one line says how many were not logged: at the next event
//!   (before that event's own line), or when the owner's loop calls [`LogLimit::tick`] at
//!   [`LogLimit::deadline`], whichever comes first.
//!
//! A window opens with the first event after the previous one ended, so a socket that sees
//! an event now and then logs every one of them.
//!
//! | setting | default | meaning |
//! | --- | --- | --- |
//! | burst | [`DEFAULT_BURST`] (5) | events logged one by one per window |
//! | window | [`DEFAULT_WINDOW`] (10 s) | how long a window lasts, from its first event |
//!
//! The limiter is plain data (no clock of its own, no thread, no lock): an event loop owns
//! one per kind of event, calls [`LogLimit::allow`] before each line, and folds
//! [`LogLimit::deadline`] into its wait and calls [`LogLimit::tick`] after each wake-up, so
//! that a count is reported even when no further event comes. A limiter shared by threads
//! goes behind a `Mutex`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use greenroom::net::log_limit::LogLimit;
//!
//! let mut refusals = LogLimit::with_rate("my.sock: refused connections", 2, Duration::from_secs(10));
//! let now = Instant::now();
//! let mut logged = 0;
//! for _ in 0..100 {
//!     if refusals.allow_at(now) {
//!         logged += 1; // tracing::warn!(..., "refused a connection") goes here
//!     }
//! }
//! assert_eq!((logged, refusals.suppressed()), (2, 98));
//! // The loop's timeout includes the deadline; once it has passed, one line reports the 98.
//! let end = refusals.deadline().expect("something to report");
//! refusals.tick(end);
//! assert_eq!(refusals.suppressed(), 0);
//! ```

use std::{
    borrow::Cow,
    time::{Duration, Instant},
};

/// Events logged one by one per window, by default.
pub const DEFAULT_BURST: u32 = 5;
/// How long a window lasts, by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// A rate limit for one kind of log line. See the module docs.
#[derive(Debug, Clone)]
pub struct LogLimit {
    /// Names the kind of event in the summary line: `"admin.sock: handshake timeouts"`.
    label: Cow<'static, str>,
    burst: u32,
    window: Duration,
    /// When the current window opened; `None` between windows.
    opened: Option<Instant>,
    /// Events logged in the current window.
    logged: u32,
    /// Events of the current window not logged.
    suppressed: u64,
}

impl LogLimit {
    /// A limiter with the default rate ([`DEFAULT_BURST`] per [`DEFAULT_WINDOW`]); `label`
    /// names the kind of event in the line that reports the suppressed ones.
    pub fn new(label: impl Into<Cow<'static, str>>) -> Self {
        Self::with_rate(label, DEFAULT_BURST, DEFAULT_WINDOW)
    }

    /// A limiter that logs `burst` events per `window` (at least one).
    pub fn with_rate(label: impl Into<Cow<'static, str>>, burst: u32, window: Duration) -> Self {
        LogLimit {
            label: label.into(),
            burst: burst.max(1),
            window,
            opened: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// How many events a window logs one by one.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Events of the current window that were counted, not logged (not yet reported).
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Whether to log the event happening now. First reports the suppressed events of a
    /// window that has ended.
    pub fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    /// [`LogLimit::allow`] at a given time (the loop's `now`, or a test's).
    pub fn allow_at(&mut self, now: Instant) -> bool {
        self.tick(now);
        if self.opened.is_none() {
            self.opened = Some(now);
        }
        if self.logged < self.burst {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Ends the current window if it is over, logging one line with the number of events
    /// it did not log (if any). Call after each wake-up of the loop that owns the limiter.
    pub fn tick(&mut self, now: Instant) {
        let Some(opened) = self.opened else { return };
        if now.saturating_duration_since(opened) < self.window {
            return;
        }
        if let Some(count) = self.close() {
            tracing::warn!(
                log = %self.label,
                suppressed = count,
                window = ?self.window,
                "{}: {count} more in the last {:?}, not logged one by one",
                self.label,
                self.window
            );
        }
    }

    /// When [`LogLimit::tick`] has a count to report: the end of a window that suppressed
    /// something. `None` if nothing waits to be reported (a window without suppressed
    /// events ends quietly at the next event, and needs no wake-up).
    pub fn deadline(&self) -> Option<Instant> {
        match self.opened {
            Some(opened) if self.suppressed > 0 => Some(opened + self.window),
            _ => None,
        }
    }

    /// Closes the window; the number of events it suppressed, if any.
    fn close(&mut self) -> Option<u64> {
        self.opened = None;
        self.logged = 0;
        let count = std::mem::take(&mut self.suppressed);
        (count > 0).then_some(count)
    }
}

/// The rate-limited lines of one listening socket: one [`LogLimit`] per kind of event, so
/// that a flood of one kind does not silence the others.
#[derive(Debug, Clone)]
pub struct SocketLogs {
    /// Connections refused at accept: another user's, or an `accept` that failed.
    pub refused: LogLimit,
    /// Connections closed because their handshake did not complete in time.
    pub timed_out: LogLimit,
    /// Connections closed because they broke the protocol (a bad handshake or frame).
    pub broke_protocol: LogLimit,
}

impl SocketLogs {
    /// The limiters of the socket named `socket` (`"admin.sock"`, `"actor socket"`), at the
    /// default rate.
    pub fn new(socket: &str) -> Self {
        SocketLogs {
            refused: LogLimit::new(format!("{socket}: refused connections")),
            timed_out: LogLimit::new(format!("{socket}: handshake timeouts")),
            broke_protocol: LogLimit::new(format!("{socket}: protocol errors")),
        }
    }

    /// [`LogLimit::tick`] for each.
    pub fn tick(&mut self, now: Instant) {
        self.refused.tick(now);
        self.timed_out.tick(now);
        self.broke_protocol.tick(now);
    }

    /// The earliest [`LogLimit::deadline`] of the three.
    pub fn deadline(&self) -> Option<Instant> {
        [&self.refused, &self.timed_out, &self.broke_protocol]
            .into_iter()
            .filter_map(LogLimit::deadline)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use super::*;

    const W: Duration = Duration::from_secs(10);

    /// The lines logged while `f` runs.
    fn logged_by(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_first_burst_of_a_window_is_logged_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut limit = LogLimit::with_rate("test", 3, W);
        let allowed: Vec<bool> = (0..10).map(|i| limit.allow_at(t0 + Duration::from_millis(i))).collect();
        assert_eq!(allowed.iter().filter(|a| **a).count(), 3);
        assert!(allowed[..3].iter().all(|a| *a), "the first three: {allowed:?}");
        assert_eq!(limit.suppressed(), 7);
        assert_eq!(
            limit.deadline(),
            Some(t0 + W),
            "the window ends 10 s after its first event"
        );
    }

    #[test]
    fn the_count_is_reported_once_when_the_window_ends() {
        let t0 = Instant::now();
        let mut limit = LogLimit::with_rate("admin.sock: refused connections", 2, W);
        let lines = logged_by(|| {
            for _ in 0..50 {
                limit.allow_at(t0);
            }
            limit.tick(t0 + W - Duration::from_millis(1));
            assert_eq!(limit.suppressed(), 48, "not before the window ends");
            limit.tick(t0 + W);
            limit.tick(t0 + W + Duration::from_secs(1));
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("admin.sock: refused connections: 48 more in the last 10s, not logged one by one"),
            "{}",
            lines[0]
        );
        assert_eq!(limit.deadline(), None, "nothing left to report");
    }

    #[test]
    fn the_next_event_after_the_window_reports_the_count_first_and_is_logged() {
        let t0 = Instant::now();
        let mut limit = LogLimit::with_rate("test", 1, W);
        let mut allowed = Vec::new();
        let lines = logged_by(|| {
            allowed.push(limit.allow_at(t0));
            allowed.push(limit.allow_at(t0 + Duration::from_secs(1)));
            allowed.push(limit.allow_at(t0 + Duration::from_secs(2)));
            // No tick: the window ended unnoticed; the next event reports it.
            allowed.push(limit.allow_at(t0 + W + Duration::from_secs(5)));
        });
        assert_eq!(allowed, [true, false, false, true]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("test: 2 more in the last 10s"), "{}", lines[0]);
        assert_eq!(limit.suppressed(), 0);
        assert_eq!(limit.deadline(), None, "the new window has suppressed nothing yet");
    }

    #[test]
    fn occasional_events_are_all_logged_and_nothing_is_reported() {
        let t0 = Instant::now();
        let mut limit = LogLimit::with_rate("test", 1, W);
        let lines = logged_by(|| {
            for i in 0..5u32 {
                assert!(limit.allow_at(t0 + W * i), "one event per window is always logged");
                limit.tick(t0 + W * i + Duration::from_secs(1));
            }
        });
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn a_sockets_limiters_count_apart_and_share_one_deadline() {
        let t0 = Instant::now();
        let mut logs = SocketLogs::new("actor socket");
        for _ in 0..DEFAULT_BURST + 2 {
            logs.timed_out.allow_at(t0);
        }
        assert!(
            logs.refused.allow_at(t0),
            "a flood of timeouts leaves refusals their own lines"
        );
        assert_eq!(logs.deadline(), Some(t0 + DEFAULT_WINDOW));
        let lines = logged_by(|| logs.tick(t0 + DEFAULT_WINDOW));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("actor socket: handshake timeouts: 2 more"),
            "{}",
            lines[0]
        );
        assert_eq!(logs.deadline(), None);
    }
}
