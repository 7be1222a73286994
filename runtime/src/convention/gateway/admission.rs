//! Who may connect to the convention port, before anyone has proven anything.
//!
//! A stranger needs no secret to open TCP connections, so everything a connection costs
//! before its handshake ends is budgeted here, and no one source can spend another's share:
//!
//! | budget | default | what happens past it |
//! |---|---|---|
//! | handshakes in progress, in all | [`Limits::handshaking`] = 128 | a new connection is reset at once |
//! | handshakes in progress, per source address | [`Limits::handshaking_per_source`] = 8 | reset at once |
//! | new connections per source address | [`Limits::rate_per_source`] = 20/s, bursts of [`Limits::burst_per_source`] = 40 | reset at once |
//! | established links, in all | [`Limits::established`] = 1024 | reset at once |
//! | established links, per source address | [`Limits::established_per_source`] = 64 | reset at once |
//!
//! A handshake that has not completed by its deadline (the link's, 2 s) is cut, however
//! slowly its peer trickles bytes. So a flood from one address holds at most 8 handshake
//! slots for at most 2 s each, and a member joining from another address always finds
//! room; links already established have their own budget, which no handshake touches.
//!
//! [`Admission`] is a pure core: the loop asks it on every accept and tells it when a link
//! is established and when it ends; it keeps no clock of its own.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// The budgets: see [the module docs](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub handshaking: usize,
    pub handshaking_per_source: u32,
    pub rate_per_source: f64,
    pub burst_per_source: f64,
    pub established: usize,
    pub established_per_source: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshaking: 128,
            handshaking_per_source: 8,
            rate_per_source: 20.0,
            burst_per_source: 40.0,
            established: 1024,
            established_per_source: 64,
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many handshakes in progress, from everyone.
    Handshaking,
    /// Too many handshakes in progress from this source.
    HandshakingFromSource,
    /// This source opens connections faster than its rate.
    Rate,
    /// Too many established links.
    Established,
    /// Too many established links from this source.
    EstablishedFromSource,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Handshaking => "too many handshakes in progress",
            Refusal::HandshakingFromSource => "too many handshakes in progress from this address",
            Refusal::Rate => "this address opens connections too fast",
            Refusal::Established => "too many links established",
            Refusal::EstablishedFromSource => "too many links established from this address",
        })
    }
}

/// What one source address holds and may still open.
#[derive(Debug, Clone)]
struct Source {
    handshaking: u32,
    established: u32,
    /// The rate limit's token bucket, as of `refilled`.
    tokens: f64,
    refilled: Instant,
}

/// How many source addresses are remembered at most; past that, those holding no
/// connection are forgotten (a forgotten source starts again with a full bucket).
const MAX_SOURCES: usize = 4096;

/// The accept-side budgets of one convention port: see [the module docs](self).
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    handshaking: usize,
    established: usize,
    sources: HashMap<IpAddr, Source>,
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            handshaking: 0,
            established: 0,
            sources: HashMap::new(),
        }
    }

    /// A connection from `source` was accepted at `now`: admitted (it counts as a handshake
    /// in progress until [`Admission::established`] or [`Admission::ended`]) or refused.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            self.sources.retain(|_, s| s.handshaking > 0 || s.established > 0);
        }
        let limits = self.limits;
        let entry = self.sources.entry(source).or_insert(Source {
            handshaking: 0,
            established: 0,
            tokens: limits.burst_per_source,
            refilled: now,
        });
        // The rate counts every connection, refused or not: a source that keeps hammering
        // stays refused until it slows down.
        let tokens = refill(entry, &limits, now);
        if tokens < 1.0 {
            return Err(Refusal::Rate);
        }
        entry.tokens = tokens - 1.0;
        if entry.handshaking >= limits.handshaking_per_source {
            return Err(Refusal::HandshakingFromSource);
        }
        if entry.established >= limits.established_per_source {
            return Err(Refusal::EstablishedFromSource);
        }
        if self.handshaking >= limits.handshaking {
            return Err(Refusal::Handshaking);
        }
        if self.established >= limits.established {
            return Err(Refusal::Established);
        }
        entry.handshaking += 1;
        self.handshaking += 1;
        Ok(())
    }

    /// A connection admitted from `source` completed its handshake.
    pub fn established(&mut self, source: IpAddr) {
        if let Some(s) = self.sources.get_mut(&source) {
            if s.handshaking > 0 {
                s.handshaking -= 1;
                self.handshaking -= 1;
                s.established += 1;
                self.established += 1;
            }
        }
    }

    /// A connection admitted from `source` ended (`was_established`: after its handshake).
    pub fn ended(&mut self, source: IpAddr, was_established: bool) {
        if let Some(s) = self.sources.get_mut(&source) {
            if was_established && s.established > 0 {
                s.established -= 1;
                self.established -= 1;
            } else if !was_established && s.handshaking > 0 {
                s.handshaking -= 1;
                self.handshaking -= 1;
            }
        }
    }

    /// Handshakes in progress, and links established, now.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.handshaking, self.established)
    }
}

/// The source's bucket at `now` (not stored: the caller decides whether it spends a token).
fn refill(source: &mut Source, limits: &Limits, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(source.refilled);
    source.refilled = now;
    source.tokens = (source.tokens + elapsed.as_secs_f64() * limits.rate_per_source).min(limits.burst_per_source);
    source.tokens
}

/// How long an accepted connection may take to complete its handshake before it is cut.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_flooding_source_spends_only_its_own_share() {
        let mut admission = Admission::new(Limits::default());
        let now = Instant::now();
        let flood = ip("10.0.0.66");
        let admitted = (0..1000).filter(|_| admission.admit(flood, now).is_ok()).count();
        assert_eq!(admitted, 8, "its handshake slots");
        assert_eq!(admission.admit(flood, now), Err(Refusal::Rate), "and its rate is spent");
        // A member from another address joins at once, and again and again.
        for i in 0..8 {
            assert_eq!(admission.admit(ip("10.0.0.2"), now), Ok(()), "member connection {i}");
        }
        assert_eq!(admission.counts(), (16, 0));
    }

    #[test]
    fn the_rate_refills_with_time_and_slots_come_back_when_handshakes_end() {
        let limits = Limits::default();
        let mut admission = Admission::new(limits);
        let mut now = Instant::now();
        let source = ip("192.0.2.1");
        for _ in 0..8 {
            admission.admit(source, now).unwrap();
        }
        assert_eq!(admission.admit(source, now), Err(Refusal::HandshakingFromSource));
        for _ in 0..8 {
            admission.ended(source, false);
        }
        // 9 tokens spent of 40: 31 left, then refused for rate until time passes.
        let mut admitted = 0;
        while admission.admit(source, now).is_ok() {
            admitted += 1;
            admission.ended(source, false);
        }
        assert_eq!(admitted, 31);
        now += Duration::from_millis(500);
        let refilled = (0..100)
            .filter(|_| {
                let ok = admission.admit(source, now).is_ok();
                if ok {
                    admission.ended(source, false);
                }
                ok
            })
            .count();
        assert_eq!(refilled, 10, "20/s for half a second");
    }

    #[test]
    fn established_links_have_their_own_budget() {
        let limits = Limits {
            established: 2,
            ..Limits::default()
        };
        let mut admission = Admission::new(limits);
        let now = Instant::now();
        for source in ["10.0.0.1", "10.0.0.2"] {
            admission.admit(ip(source), now).unwrap();
            admission.established(ip(source));
        }
        assert_eq!(admission.counts(), (0, 2));
        assert_eq!(admission.admit(ip("10.0.0.3"), now), Err(Refusal::Established));
        admission.ended(ip("10.0.0.1"), true);
        assert_eq!(admission.admit(ip("10.0.0.3"), now), Ok(()));
        assert_eq!(admission.counts(), (1, 1));
    }

    #[test]
    fn sources_are_remembered_within_a_bound() {
        let mut admission = Admission::new(Limits::default());
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 * 2) {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            if admission.admit(source, now).is_ok() {
                admission.ended(source, false);
            }
        }
        assert!(admission.sources.len() <= MAX_SOURCES, "{}", admission.sources.len());
    }
}
