//! A short, adaptive spin before an event loop (an endpoint's, the admin's or a gateway's) blocks.
//!
//! On the virtual machines this runs on, a process blocked in `epoll_wait` whose CPU then
//! halts costs tens of microseconds to wake (the hypervisor must run the halted vCPU
//! again): a request and reply between two processes on two CPUs took 60–75 µs in that mode
//! and 4–6 µs when neither had halted. Which mode a conversation falls into is up to the
//! scheduler and the guest's idle governor. So a loop that has just been busy polls its
//! sockets without blocking for up to [`SPIN_FOR`], yielding the CPU between polls (a peer
//! on the same CPU then runs at once), before it blocks.
//!
//! The admin spins too: `create_actor` is a chain of hand-offs (client, admin, spawner,
//! host, admin, client) and each one that lands on a halted CPU pays the wake-up. Measured
//! on the development VM, a create and first reply took 1.82–1.86 ms with the admin
//! spinning against 2.07–2.21 ms without; the price is paid by bursts of creates, where the
//! spin takes CPU time the starting hosts could use (500 creates in a row: 0.80–0.83 s
//! against 0.72–0.77 s).
//!
//! So does a convention's gateway: a cross-machine ask crosses both gateways each way (six
//! hand-offs where a local ask has two), and on a quiet development VM its p50 fell from
//! 152–178 µs to 32–57 µs with the gateways spinning.
//!
//! It must not cost an idle system anything, so the spin is *adaptive*: armed only after a
//! blocking wait that ended with an event within [`SHORT_WAIT`] (the endpoint is in a
//! conversation), and disarmed by a spin that finds nothing. After a spin that found
//! nothing, only an event that comes within [`SPIN_FOR`] arms it again (one that comes
//! later would not have been caught): an actor whose messages come every 100–200 µs would
//! otherwise spin in vain before each (measured: 55% of a CPU instead of 13% at 100 µs).
//! A loop that falls idle therefore spins once, for at most [`SPIN_FOR`], and then sleeps
//! until its next event; one woken after a long sleep does not spin until it is busy again.

use std::{
    io,
    time::{Duration, Instant},
};

use mio::{Events, Poll};

use super::{wait_ready, Ready};

/// The longest a spin lasts before the endpoint blocks.
pub const SPIN_FOR: Duration = Duration::from_micros(50);
/// A blocking wait that ended with an event sooner than this arms the spin.
pub const SHORT_WAIT: Duration = Duration::from_micros(200);

/// Whether the next wait spins first; see the module docs.
#[derive(Debug)]
pub(crate) struct Spinner {
    armed: bool,
    /// The last spin found nothing: only an event within [`SPIN_FOR`] arms it again.
    strict: bool,
    /// Spinning on a process allowed only one CPU would only delay its peer.
    enabled: bool,
}

impl Spinner {
    pub(crate) fn new() -> Self {
        Spinner {
            armed: false,
            strict: false,
            enabled: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
        }
    }

    /// [`wait_ready`], after a spin when one is armed.
    pub(crate) fn wait(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
        ready: &mut Vec<Ready>,
    ) -> io::Result<()> {
        let start = Instant::now();
        if self.spin(poll, events, timeout, ready)? {
            return Ok(());
        }
        self.block(poll, events, timeout.map(|t| t.saturating_sub(start.elapsed())), ready)
    }

    /// Polls without blocking, for up to [`SPIN_FOR`] (and at most `timeout`), if the spin is
    /// armed. `true` if it found events (in `ready`); `false` if the caller should
    /// [`block`](Self::block): the spin was not armed, or found nothing and is now
    /// disarmed, or `timeout` is zero and one poll found nothing.
    pub(crate) fn spin(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
        ready: &mut Vec<Ready>,
    ) -> io::Result<bool> {
        if !(self.armed && self.enabled) || timeout == Some(Duration::ZERO) {
            return Ok(false);
        }
        let start = Instant::now();
        let spin_for = timeout.map_or(SPIN_FOR, |t| t.min(SPIN_FOR));
        loop {
            wait_ready(poll, events, Some(Duration::ZERO), ready)?;
            if !ready.is_empty() {
                self.strict = false;
                return Ok(true);
            }
            if start.elapsed() >= spin_for {
                self.armed = false;
                self.strict = true;
                return Ok(false);
            }
            std::thread::yield_now();
        }
    }

    /// Waits up to `timeout` for events; arms the spin if one came within [`SHORT_WAIT`]
    /// (within [`SPIN_FOR`] after a spin that found nothing).
    pub(crate) fn block(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
        ready: &mut Vec<Ready>,
    ) -> io::Result<()> {
        let before = Instant::now();
        wait_ready(poll, events, timeout, ready)?;
        let soon = if self.strict { SPIN_FOR } else { SHORT_WAIT };
        if !ready.is_empty() && before.elapsed() < soon {
            self.armed = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{net::UnixStream, Interest, Token};
    use std::io::Write;

    #[test]
    fn a_quick_event_arms_the_spin_and_a_spin_that_finds_nothing_disarms_it() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry().register(&mut b, Token(1), Interest::READABLE).unwrap();
        let (mut events, mut ready) = (Events::with_capacity(8), Vec::new());
        let mut spinner = Spinner::new();
        spinner.enabled = true;
        assert!(!spinner.armed, "a new endpoint does not spin");

        a.write_all(b"x").unwrap();
        spinner
            .wait(&mut poll, &mut events, Some(Duration::from_secs(5)), &mut ready)
            .unwrap();
        assert_eq!(ready.len(), 1);
        assert!(spinner.armed, "an event that came at once arms the spin");

        // Nothing more arrives: the spin runs out, the wait times out, the spin is disarmed.
        spinner
            .wait(&mut poll, &mut events, Some(Duration::from_millis(5)), &mut ready)
            .unwrap();
        assert!(ready.is_empty());
        assert!(!spinner.armed, "a spin that found nothing disarms");

        // An idle endpoint woken by a timeout does not arm.
        spinner
            .wait(&mut poll, &mut events, Some(Duration::from_millis(1)), &mut ready)
            .unwrap();
        assert!(!spinner.armed);
    }
}
