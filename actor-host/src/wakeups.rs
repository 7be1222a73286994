//! An actor's pending `wakeup_after`s, kept durable by the admin across crashes.
//!
//! A wakeup lives in the host's heap, earliest first, and the admin keeps a copy of each
//! pending one: the host tells it a wakeup once the `receive` that set it has returned
//! (`ToAdmin::WakeupSet`, one control frame), and that it fires before delivering it
//! (`ToAdmin::WakeupFired`, written before the `receive` runs). So a killed process's
//! wakeups reach its next incarnation in `Start`, re-armed here at their original due time
//! (at once if it passed while the actor was down), and a wakeup whose `receive` kills the
//! process is not delivered again: at most once, so a timer that kills its process every
//! time cannot loop. A wakeup set by a `receive` that never returned (the process died in
//! it, or it failed under `OnFailure::Restart`) was never told, and goes with that
//! `receive`, like its message.
//!
//! Due times cross processes as `CLOCK_MONOTONIC` nanoseconds, which every process of one
//! machine shares (a Rust `Instant` is that clock, but cannot be sent).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

use greenroom::AnyMessage;
use greenroom_protocol::{supervision::LONGEST, Payload, PendingWakeup};

/// One pending wakeup; ordered by due time, then by id (the order they were asked).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Wakeup {
    pub(crate) due: Instant,
    pub(crate) id: u64,
    pub(crate) delay: Duration,
    pub(crate) payload: Vec<u8>,
    pub(crate) tag: String,
}

/// The host's pending wakeups, and those set by the `receive` running now.
#[derive(Default)]
pub(crate) struct Wakeups {
    heap: BinaryHeap<Reverse<Wakeup>>,
    /// The last id given; ids of re-armed wakeups are kept, so new ones count on from them.
    last_id: u64,
    /// Set during the current `receive`, to tell the admin once it has returned.
    unreported: Vec<PendingWakeup>,
}

/// Now on `CLOCK_MONOTONIC`, in nanoseconds (0 if the clock cannot be read, which Linux
/// never refuses for this clock).
fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64,
        Err(e) => {
            tracing::error!(error = %e, "cannot read CLOCK_MONOTONIC");
            0
        }
    }
}

impl Wakeups {
    /// The wakeups an earlier incarnation left pending, re-armed at their due times.
    pub(crate) fn rearm(pending: Vec<PendingWakeup>) -> Self {
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        let mut wakeups = Wakeups::default();
        for w in pending {
            wakeups.last_id = wakeups.last_id.max(w.id);
            let left = Duration::from_nanos(w.due_ns.saturating_sub(now_ns)).min(LONGEST);
            wakeups.heap.push(Reverse(Wakeup {
                due: now + left,
                id: w.id,
                delay: w.delay,
                payload: w.payload.bytes,
                tag: w.payload.tag.into_owned(),
            }));
        }
        wakeups
    }

    /// How many are pending.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }

    /// `wakeup_after(delay, payload)`: pending now, told to the admin after the `receive`.
    pub(crate) fn set(&mut self, delay: Duration, payload: AnyMessage) {
        let due = greenroom::system::deadline_after(delay);
        let due_ns = monotonic_ns().saturating_add(delay.min(LONGEST).as_nanos() as u64);
        self.last_id += 1;
        let payload = payload.into_payload();
        self.unreported.push(PendingWakeup {
            id: self.last_id,
            due_ns,
            delay,
            payload: payload.clone(),
        });
        self.heap.push(Reverse(Wakeup {
            due,
            id: self.last_id,
            delay,
            payload: payload.bytes,
            tag: payload.tag.into_owned(),
        }));
    }

    /// The wakeups set since the last call, for the admin.
    pub(crate) fn take_unreported(&mut self) -> Vec<PendingWakeup> {
        std::mem::take(&mut self.unreported)
    }

    /// When the earliest is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(w)| w.due)
    }

    /// The earliest, if it is due by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Wakeup> {
        if self.heap.peek().is_some_and(|Reverse(w)| w.due <= now) {
            return self.heap.pop().map(|Reverse(w)| w);
        }
        None
    }
}

impl Wakeup {
    /// The `WakeupMessage`'s payload.
    pub(crate) fn into_payload(self) -> Payload {
        Payload {
            tag: self.tag.into(),
            bytes: self.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(text: &str) -> AnyMessage {
        AnyMessage::new(&text.to_owned()).unwrap()
    }

    #[test]
    fn rearmed_wakeups_keep_their_due_times_and_order_and_new_ids_count_on() {
        let mut first = Wakeups::default();
        first.set(Duration::from_secs(60), payload("later"));
        first.set(Duration::ZERO, payload("now"));
        let told = first.take_unreported();
        assert_eq!(told.iter().map(|w| w.id).collect::<Vec<_>>(), [1, 2]);
        assert!(first.take_unreported().is_empty(), "told once");
        // A new incarnation gets both back; the one already due fires at once.
        let mut second = Wakeups::rearm(told);
        let now = Instant::now();
        let due = second.pop_due(now).expect("the past-due wakeup fires at once");
        assert_eq!(due.id, 2);
        assert!(second.pop_due(now).is_none());
        let later = second.next_due().unwrap();
        assert!(later > now + Duration::from_secs(59) && later <= now + Duration::from_secs(60));
        second.set(Duration::ZERO, payload("new"));
        assert_eq!(second.take_unreported()[0].id, 3);
        assert_eq!(second.len(), 2);
    }
}
