//! Membership: which admins are in the convention and alive, by SWIM ([foca]) carried over
//! the authenticated [links](super::link) — never over plain UDP.
//!
//! Two pure cores, driven by the gateway process's loop (`gateway/mod.rs`):
//!
//! * [`Membership`]: foca itself — bytes and timer events in, messages to send, timers to
//!   set and member up/down events out;
//! * [`Members`]: everything membership means to a member around it — the timers on a
//!   clock the caller gives, asking the leader in again while it is not in touch with it,
//!   each member's capabilities, load and actor types shared every [`SHARE_AGAIN`], and
//!   which static key speaks for which member (see [`Members::bind`]). It does no I/O:
//!   frames in, frames to send and events out, so that several of them are tested wired
//!   together in memory, with simulated time.
//!
//! An admin's identity is its advertised address plus an *incarnation* (the time it started,
//! in milliseconds), so a member that restarts at the same address is a new member: the old
//! one is declared down, and mail for the old incarnation can be told apart. A restarted
//! *gateway* keeps its admin's identity, renewals included, so that the others take it for
//! the same member, whose probes went unanswered for a moment.
//!
//! Failure detection: every member probes a random other every [`PROBE_PERIOD`]; a member
//! that answers neither directly nor through others within [`PROBE_RTT`] is suspected, and
//! declared down [`SUSPECT_TO_DOWN`] later unless it refutes. With these settings a dead
//! member is noticed within about 3 s on a small convention ([`DETECTION_TIME`]).

use std::{
    collections::{BinaryHeap, HashMap},
    net::SocketAddr,
    num::{NonZeroU8, NonZeroUsize},
    time::{Duration, Instant},
};

use foca::{AccumulatingRuntime, Config, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand::{rngs::SmallRng, SeedableRng};
use serde::{Deserialize, Serialize};

use greenroom_protocol::{convention::ConventionFrame, gateway::MemberView, Capabilities, NodeId};

use crate::error::{Error, Result};

/// How often each member probes another.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// How long a probe waits for its answer before asking others to probe.
pub const PROBE_RTT: Duration = Duration::from_millis(250);
/// How long a suspected member has to refute before it is declared down.
pub const SUSPECT_TO_DOWN: Duration = Duration::from_millis(1500);
/// About how long a member takes to notice that another has died: a probe period, the
/// probe's wait, and the suspicion's.
pub const DETECTION_TIME: Duration = Duration::from_millis(500 + 250 + 1500);
/// The largest membership message.
const MAX_MESSAGE: usize = 16 * 1024;
/// How often a member that does not count the leader among its members asks it again (a
/// member started before its leader, a restarted leader, the healing of a partition).
pub const REANNOUNCE: Duration = Duration::from_secs(1);

/// One admin of a convention, in one of its lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId {
    /// Where other members reach it.
    pub addr: SocketAddr,
    /// When this admin process started (milliseconds since the Unix epoch): a restarted
    /// admin is a new member.
    pub incarnation: u64,
    /// Bumped when foca renews an identity that was declared down while alive.
    bump: u16,
}

impl MemberId {
    /// This process's identity at `addr`, its incarnation the time now.
    pub fn new(addr: SocketAddr) -> MemberId {
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        MemberId {
            addr,
            incarnation,
            bump: 0,
        }
    }

    /// The node id of this member's addresses: stable for the admin's life (the renewal
    /// bump is left out), new when it restarts.
    pub fn node(&self) -> NodeId {
        NodeId::for_member(&self.addr.to_string(), self.incarnation)
    }

    /// This admin's identity as a gateway it starts takes it: `incarnation` is the admin's,
    /// `bump` past every renewal an earlier gateway of the admin made.
    pub fn renewed(addr: SocketAddr, incarnation: u64, bump: u16) -> MemberId {
        MemberId {
            addr,
            incarnation,
            bump,
        }
    }

    /// How many times this identity was renewed.
    pub fn bump(&self) -> u16 {
        self.bump
    }

    /// A placeholder for a member known only by address (the leader, before it answers).
    fn seed(addr: SocketAddr) -> MemberId {
        MemberId {
            addr,
            incarnation: 0,
            bump: 0,
        }
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.bump) > (adversary.incarnation, adversary.bump)
    }
}

/// A change in the convention's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    Up(MemberId),
    Down(MemberId),
    /// A live member's capabilities, first heard or changed.
    Capabilities(MemberId, Capabilities),
}

/// What the core asks its driver to do.
#[derive(Debug, Default)]
pub struct Outputs {
    pub send: Vec<(MemberId, Vec<u8>)>,
    pub timers: Vec<(Duration, Timer<MemberId>)>,
    pub events: Vec<MembershipEvent>,
    /// This member's identity was renewed (it had been declared down while alive).
    pub renewed: Option<MemberId>,
    /// A member's identity changed without it going down (a renewal): the list changed.
    pub renamed: bool,
}

/// The sans-IO membership core of one admin.
pub struct Membership {
    foca: Foca<MemberId, PostcardCodec, SmallRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<MemberId>,
}

fn config() -> Config {
    let mut config = Config::simple();
    config.probe_period = PROBE_PERIOD;
    config.probe_rtt = PROBE_RTT;
    config.suspect_to_down_after = SUSPECT_TO_DOWN;
    config.max_packet_size = NonZeroUsize::new(MAX_MESSAGE).unwrap_or(NonZeroUsize::MIN);
    config.max_transmissions = NonZeroU8::new(10).unwrap_or(NonZeroU8::MIN);
    config.notify_down_members = true;
    config.periodic_gossip = Some(foca::PeriodicParams {
        frequency: Duration::from_millis(200),
        num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    });
    config
}

fn failed(what: impl std::fmt::Display) -> Error {
    Error::ConventionLink {
        peer: "-".into(),
        reason: format!("membership: {what}"),
    }
}

impl Membership {
    /// The core for the admin `me`.
    pub fn new(me: MemberId) -> Membership {
        let seed = me.incarnation ^ u64::from(std::process::id()) ^ (u64::from(me.addr.port()) << 32);
        Membership {
            foca: Foca::new(me, config(), SmallRng::seed_from_u64(seed), PostcardCodec),
            runtime: AccumulatingRuntime::new(),
        }
    }

    /// Asks the member at `addr` (the leader) to let this one in.
    pub fn announce(&mut self, addr: SocketAddr) -> Result<Outputs> {
        self.foca
            .announce(MemberId::seed(addr), &mut self.runtime)
            .map_err(failed)?;
        Ok(self.take_outputs())
    }

    /// A membership message from another member.
    pub fn handle_data(&mut self, bytes: &[u8]) -> Result<Outputs> {
        self.foca.handle_data(bytes, &mut self.runtime).map_err(failed)?;
        Ok(self.take_outputs())
    }

    /// A timer the core set has fired.
    pub fn handle_timer(&mut self, timer: Timer<MemberId>) -> Result<Outputs> {
        self.foca.handle_timer(timer, &mut self.runtime).map_err(failed)?;
        Ok(self.take_outputs())
    }

    /// Tells the others this member is leaving (gossiped as its own death), so that they
    /// need not wait to notice it.
    pub fn leave(&mut self) -> Result<Outputs> {
        self.foca.leave_cluster(&mut self.runtime).map_err(failed)?;
        Ok(self.take_outputs())
    }

    /// This member's identity now (renewed if it was declared down while alive).
    pub fn identity(&self) -> &MemberId {
        self.foca.identity()
    }

    /// The members believed alive (not counting this one).
    pub fn members(&self) -> Vec<MemberId> {
        let mut members: Vec<MemberId> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        members.sort();
        members
    }

    fn take_outputs(&mut self) -> Outputs {
        let mut out = Outputs::default();
        while let Some((to, bytes)) = self.runtime.to_send() {
            out.send.push((to, bytes.to_vec()));
        }
        while let Some(timer) = self.runtime.to_schedule() {
            out.timers.push(timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => out.events.push(MembershipEvent::Up(id)),
                OwnedNotification::MemberDown(id) => out.events.push(MembershipEvent::Down(id)),
                OwnedNotification::Rejoin(id) => out.renewed = Some(id),
                OwnedNotification::Rename(..) => out.renamed = true,
                _ => {}
            }
        }
        out
    }
}

/// A timer due at an instant, earliest first in a max-heap.
struct Due(Instant, u64, Timer<MemberId>);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.0, other.1).cmp(&(self.0, self.1))
    }
}

/// How many (member, life) keys are kept; past that, those of lives SWIM does not list
/// alive are forgotten.
const MAX_KEYS_KEPT: usize = 1024;

/// How often each member tells every other its capabilities again (they also go out at
/// once on a join and on every change; this repairs a message dropped on the way).
pub const SHARE_AGAIN: Duration = Duration::from_secs(2);

/// A member's capabilities and load as it last told us.
struct Known {
    incarnation: u64,
    version: u64,
    capabilities: Capabilities,
    load: u64,
    types: Option<Vec<String>>,
    /// When its last capabilities frame came (one every [`SHARE_AGAIN`] at least).
    heard: Instant,
}

/// A member's life: its address and incarnation.
pub type Life = (SocketAddr, u64);

/// What [`Members`] asks its driver to do.
#[derive(Debug, Default)]
pub struct MembersOutput {
    /// Frames for the members at these addresses (membership's own, and capabilities):
    /// sent as datagrams would be — one that cannot go now may be dropped, SWIM repairs it.
    pub send: Vec<(SocketAddr, ConventionFrame)>,
    /// Changes, for the admin.
    pub events: Vec<MembershipEvent>,
    /// The member list, or what one member said, changed: the admin gets a new
    /// [`Members::views`].
    pub changed: bool,
    /// This member's identity was renewed to this bump.
    pub renewed: Option<u16>,
}

/// One member's view of the convention, without I/O: see [the module docs](self).
pub struct Members {
    membership: Membership,
    leader: Option<SocketAddr>,
    timers: BinaryHeap<Due>,
    order: u64,
    next_announce: Instant,
    next_share: Instant,
    /// This admin's capabilities, and how many times they changed.
    capabilities: Capabilities,
    version: u64,
    /// How many actors this admin runs, as the admin last said.
    load: u64,
    /// The actor types this admin's host binary registers, once it knows them.
    types: Option<Vec<String>>,
    /// The other members' capabilities, by address.
    known: HashMap<SocketAddr, Known>,
    /// The static key first proven for each member's life. Kept after the member leaves,
    /// so that one coming back with another key is noticed.
    keys: HashMap<Life, Vec<u8>>,
    /// The live members by node id (for the data path's lookups, which are many), the
    /// seeded ones included.
    directory: HashMap<NodeId, SocketAddr>,
    /// Members a previous gateway of this admin knew, not yet confirmed by SWIM: listed
    /// and reachable meanwhile, asked in, and declared down at their deadline if SWIM has
    /// not confirmed them by then (see [`Members::seed`]).
    seeded: HashMap<Life, (MemberView, Instant)>,
    /// Since when this member is paused (its admin does not answer): see [`Members::pause`].
    paused_since: Option<Instant>,
    out: MembersOutput,
}

/// How long a member a restarted gateway was told of (seeded) may take to be confirmed by
/// SWIM before it is declared down: enough to be asked in twice and probed.
pub const SEED_GRACE: Duration = Duration::from_millis(2 * 1000 + 2250);

impl Members {
    /// The membership of `me`, which joins through `leader` (none: it leads), telling the
    /// others `capabilities`, `load` and `types`, at `now`.
    pub fn new(
        me: MemberId,
        leader: Option<SocketAddr>,
        capabilities: Capabilities,
        load: u64,
        types: Option<Vec<String>>,
        now: Instant,
    ) -> Members {
        Members {
            membership: Membership::new(me),
            leader,
            timers: BinaryHeap::new(),
            order: 0,
            next_announce: now,
            next_share: now + SHARE_AGAIN,
            capabilities,
            // From the clock, so that versions grow across gateway restarts: the others keep
            // what the last gateway of this life said (no restart takes the member down),
            // and a restarted one's versions must be newer than any of its predecessor's.
            version: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_micros() as u64),
            load,
            types,
            known: HashMap::new(),
            keys: HashMap::new(),
            directory: HashMap::new(),
            seeded: HashMap::new(),
            paused_since: None,
            out: MembersOutput::default(),
        }
    }

    /// Stops this member's membership clock at `now`, as if its process had been stopped:
    /// it sends nothing, hears nothing and runs no timer, so that to the others it has
    /// failed (its admin does not answer, though its gateway runs on).
    ///
    /// Frozen rather than merely silent: a member that kept running SWIM while deaf would
    /// see every probe of its own go unanswered and declare the *others* down, and when it
    /// speaks again it would gossip those deaths, making live members renew their
    /// identities for nothing.
    pub fn pause(&mut self, now: Instant) {
        // What it meant to send is dropped by `take_output` while it is paused.
        self.paused_since.get_or_insert(now);
    }

    /// Starts the clock again at `now`: every timer, and each seeded member's deadline, is
    /// moved by the time paused, so that no probe or suspicion times out for the pause. The
    /// others have most likely declared this member down meanwhile; the first of them it
    /// speaks with tells it so, and it renews its identity and rejoins.
    pub fn resume(&mut self, now: Instant) {
        let Some(since) = self.paused_since.take() else {
            return;
        };
        let paused = now.saturating_duration_since(since);
        self.timers = self
            .timers
            .drain()
            .map(|Due(at, order, timer)| Due(at + paused, order, timer))
            .collect();
        for (_, deadline) in self.seeded.values_mut() {
            *deadline += paused;
        }
        self.next_announce = self.next_announce.max(now);
        self.next_share = self.next_share.max(now);
    }

    /// Whether this member is paused (see [`Members::pause`]).
    pub fn paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// The members a previous gateway of this admin knew (this gateway replaces one that
    /// died): they stay listed and reachable at once, rather than refused until SWIM has
    /// found them again; each is asked in as the leader is, and one SWIM has not confirmed
    /// within [`SEED_GRACE`] is declared down (it died, or left, while no gateway listened),
    /// so that the admin cleans up after it as after any lost member. Their keys are taken
    /// as proven: a restart lets no one else speak for them.
    pub fn seed(&mut self, known: Vec<MemberView>, now: Instant) {
        for view in known {
            let life = (view.addr, view.incarnation);
            if let Some(key) = &view.key {
                self.keys.entry(life).or_insert_with(|| key.clone());
            }
            // What it last said holds until it says more (version 0: anything it sends is
            // newer), so that placement does not see it bare meanwhile.
            let heard = view
                .heard_ms_ago
                .and_then(|ms| now.checked_sub(Duration::from_millis(ms)))
                .unwrap_or(now);
            self.known.insert(
                view.addr,
                Known {
                    incarnation: view.incarnation,
                    version: 0,
                    capabilities: view.capabilities.clone(),
                    load: view.load,
                    types: view.types.clone(),
                    heard,
                },
            );
            self.seeded.insert(life, (view, now + SEED_GRACE));
        }
        self.refresh_directory();
        self.out.changed = true;
    }

    fn refresh_directory(&mut self) {
        let alive = self.membership.members();
        self.seeded
            .retain(|(addr, incarnation), _| !alive.iter().any(|m| m.addr == *addr && m.incarnation == *incarnation));
        self.directory = alive
            .iter()
            .map(|m| (m.node(), m.addr))
            .chain(self.seeded.values().map(|(view, _)| (view.node(), view.addr)))
            .collect();
    }

    /// This member's identity now.
    pub fn me(&self) -> &MemberId {
        self.membership.identity()
    }

    /// The members believed alive (not counting this one).
    pub fn alive(&self) -> Vec<MemberId> {
        self.membership.members()
    }

    /// The address of the live member whose node id is `node`.
    pub fn addr_of(&self, node: NodeId) -> Option<SocketAddr> {
        self.directory.get(&node).copied()
    }

    /// What this member wants sent and said since the last call.
    pub fn take_output(&mut self) -> MembersOutput {
        if self.paused() {
            self.out.send.clear();
        }
        std::mem::take(&mut self.out)
    }

    /// When [`Members::tick`] has work next (never while paused).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.paused() {
            return None;
        }
        let timer = self.timers.peek().map(|d| d.0);
        let asking = self.leader.is_some() || !self.seeded.is_empty();
        let announce = asking.then_some(self.next_announce);
        let seeded = self.seeded.values().map(|(_, deadline)| *deadline).min();
        [timer, announce, seeded, Some(self.next_share)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs what is due at `now`: foca's timers, sharing this member's capabilities again,
    /// and asking the leader in while this member is not in touch with it (started before
    /// it, or cut off: a leader that was restarted knows no one, and only its followers can
    /// bring it back).
    pub fn tick(&mut self, now: Instant) {
        if self.paused() {
            return;
        }
        while self.timers.peek().is_some_and(|d| d.0 <= now) {
            let Some(Due(_, _, timer)) = self.timers.pop() else {
                break;
            };
            match self.membership.handle_timer(timer) {
                Ok(out) => self.apply(out, now),
                Err(e) => tracing::debug!(error = %e, "membership timer"),
            }
        }
        if now >= self.next_share {
            self.next_share = now + SHARE_AGAIN;
            self.share_with_all();
        }
        let asking = self.leader.is_some() || !self.seeded.is_empty();
        if asking && now >= self.next_announce {
            self.next_announce = now + REANNOUNCE;
            let alive = self.membership.members();
            let unconfirmed = self.seeded.values().map(|(view, _)| view.addr);
            let mut ask: Vec<SocketAddr> = self.leader.into_iter().chain(unconfirmed).collect();
            ask.sort();
            ask.dedup();
            for addr in ask.into_iter().filter(|addr| !alive.iter().any(|m| m.addr == *addr)) {
                match self.membership.announce(addr) {
                    Ok(out) => self.apply(out, now),
                    Err(e) => tracing::debug!(error = %e, %addr, "could not ask a member in"),
                }
            }
        }
        let expired: Vec<Life> = self
            .seeded
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(life, _)| *life)
            .collect();
        for life in expired {
            self.seeded.remove(&life);
            if self.known.get(&life.0).is_some_and(|k| k.incarnation == life.1) {
                self.known.remove(&life.0);
            }
            tracing::info!(member = %life.0, incarnation = life.1,
                "a member known before this gateway started was not found again; it is taken for gone");
            self.out
                .events
                .push(MembershipEvent::Down(MemberId::renewed(life.0, life.1, 0)));
            self.out.changed = true;
            self.refresh_directory();
        }
    }

    /// Whether the static `key`, proven by a link whose peer says it is the member `life`,
    /// may speak for it: yes if no other key was proven for that life first. Within one
    /// life only the first key counts, so that an insider (who holds the cluster secret,
    /// but not a member's key) cannot speak for a member that has spoken; lives are kept
    /// apart, so that one claimed for the future shuts out no one. A member that comes back
    /// at its address with another key is another machine, or its key file was replaced:
    /// taken, and logged. (Anyone with the cluster secret can still disturb SWIM itself: the
    /// secret is what members trust.)
    pub fn bind(&mut self, life: Life, key: &[u8]) -> std::result::Result<(), String> {
        use super::secret::fingerprint;
        if let Some(proven) = self.keys.get(&life) {
            if proven.as_slice() == key {
                return Ok(());
            }
            return Err(format!(
                "a link with static key {} says it is the member at {} (incarnation {}), for which key {} was proven",
                fingerprint(key),
                life.0,
                life.1,
                fingerprint(proven)
            ));
        }
        let earlier = self
            .keys
            .iter()
            .filter(|((addr, _), _)| *addr == life.0)
            .max_by_key(|((_, incarnation), _)| *incarnation)
            .map(|(_, k)| k.clone());
        if let Some(was) = earlier.filter(|was| was.as_slice() != key) {
            tracing::warn!(member = %life.0, was = %fingerprint(&was), now = %fingerprint(key),
                "a member came back at its address with a different static key: another machine, or a replaced key file");
        }
        if self.keys.len() >= MAX_KEYS_KEPT {
            let alive = self.membership.members();
            self.keys.retain(|(addr, incarnation), _| {
                alive.iter().any(|m| m.addr == *addr && m.incarnation == *incarnation)
            });
        }
        self.keys.insert(life, key.to_vec());
        Ok(())
    }

    /// This member leaves: the others hear it at once (see [`Membership::leave`]).
    pub fn leave(&mut self, now: Instant) {
        match self.membership.leave() {
            Ok(out) => self.apply(out, now),
            Err(e) => tracing::debug!(error = %e, "could not say goodbye to the convention"),
        }
    }

    /// A membership message, from a link bound to a member.
    pub fn membership_data(&mut self, bytes: &[u8], now: Instant) {
        if self.paused() {
            return;
        }
        match self.membership.handle_data(bytes) {
            Ok(out) => self.apply(out, now),
            Err(e) => tracing::debug!(error = %e, "membership message refused"),
        }
    }

    /// What the member `from` (the life its link is bound to) says of itself. Taken only
    /// for a life SWIM lists alive now: a frame that comes first, or late, is dropped (the
    /// member sends again every [`SHARE_AGAIN`]).
    pub fn capabilities(
        &mut self,
        from: Life,
        version: u64,
        capabilities: Capabilities,
        load: u64,
        types: Option<Vec<String>>,
        now: Instant,
    ) {
        let (member, incarnation) = from;
        let Some(id) = self
            .membership
            .members()
            .into_iter()
            .find(|m| m.addr == member && m.incarnation == incarnation)
        else {
            return;
        };
        let newer = self
            .known
            .get(&member)
            .is_none_or(|k| (incarnation, version) > (k.incarnation, k.version));
        if !newer {
            // The same capabilities again: the load may have moved, and it was heard from
            // now ("last seen").
            if let Some(known) = self.known.get_mut(&member).filter(|k| k.incarnation == incarnation) {
                known.heard = now;
                known.load = load;
                self.out.changed = true;
            }
            return;
        }
        self.known.insert(
            member,
            Known {
                incarnation,
                version,
                capabilities: capabilities.clone(),
                load,
                types,
                heard: now,
            },
        );
        self.out.changed = true;
        self.out.events.push(MembershipEvent::Capabilities(id, capabilities));
    }

    /// This admin's new capabilities: every member hears of them now.
    pub fn set_capabilities(&mut self, capabilities: Capabilities) {
        self.capabilities = capabilities;
        self.version += 1;
        self.share_with_all();
    }

    /// The actor types this admin's host binary registers: every member hears of them now.
    pub fn set_types(&mut self, types: Vec<String>) {
        if self.types.as_ref() != Some(&types) {
            self.types = Some(types);
            self.version += 1;
            self.share_with_all();
        }
    }

    /// How many actors this admin runs (shared with the next round).
    pub fn set_load(&mut self, load: u64) {
        self.load = load;
    }

    /// The members believed alive, with what each last told this one, at `now`.
    pub fn views(&self, now: Instant) -> Vec<MemberView> {
        let seeded = self.seeded.values().map(|(view, _)| view.clone());
        self.membership
            .members()
            .into_iter()
            .map(|id| {
                let known = self.known.get(&id.addr).filter(|k| k.incarnation == id.incarnation);
                MemberView {
                    addr: id.addr,
                    incarnation: id.incarnation,
                    capabilities: known.map(|k| k.capabilities.clone()).unwrap_or_default(),
                    load: known.map_or(0, |k| k.load),
                    key: self.keys.get(&(id.addr, id.incarnation)).cloned(),
                    types: known.and_then(|k| k.types.clone()),
                    heard_ms_ago: known.map(|k| now.saturating_duration_since(k.heard).as_millis() as u64),
                }
            })
            .chain(seeded)
            .collect()
    }

    /// Tells the member at `addr` this admin's capabilities.
    fn share_with(&mut self, addr: SocketAddr) {
        let frame = ConventionFrame::Capabilities {
            version: self.version,
            capabilities: self.capabilities.clone(),
            load: self.load,
            types: self.types.clone(),
        };
        self.out.send.push((addr, frame));
    }

    fn share_with_all(&mut self) {
        for member in self.membership.members() {
            self.share_with(member.addr);
        }
    }

    fn apply(&mut self, out: Outputs, now: Instant) {
        for (to, bytes) in out.send {
            self.out.send.push((to.addr, ConventionFrame::Membership(bytes)));
        }
        for (after, timer) in out.timers {
            self.order += 1;
            self.timers.push(Due(now + after, self.order, timer));
        }
        if let Some(renewed) = out.renewed {
            tracing::warn!(
                bump = renewed.bump,
                "this member was declared down while alive; it renewed its identity"
            );
            self.out.renewed = Some(renewed.bump);
        }
        if out.renamed || !out.events.is_empty() {
            self.out.changed = true;
            self.refresh_directory();
        }
        for event in out.events {
            match &event {
                // A newcomer hears our capabilities at once.
                MembershipEvent::Up(member) => self.share_with(member.addr),
                MembershipEvent::Down(member) => {
                    if self
                        .known
                        .get(&member.addr)
                        .is_some_and(|k| k.incarnation == member.incarnation)
                    {
                        self.known.remove(&member.addr);
                    }
                }
                MembershipEvent::Capabilities(..) => {}
            }
            self.out.events.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members wired together in memory, on a simulated clock: what one sends reaches the
    /// others at once, unless its sender or receiver is cut off.
    struct Lab {
        members: Vec<Members>,
        keys: Vec<Vec<u8>>,
        cut: Vec<bool>,
        now: Instant,
        /// Every membership event each member emitted.
        events: Vec<Vec<MembershipEvent>>,
    }

    impl Lab {
        fn new(n: usize) -> Lab {
            let now = Instant::now();
            let leader: SocketAddr = "10.0.0.1:7400".parse().unwrap();
            let members = (0..n)
                .map(|i| {
                    let addr: SocketAddr = format!("10.0.0.{}:7400", i + 1).parse().unwrap();
                    let me = MemberId::renewed(addr, 1_000 + i as u64, 0);
                    let leader = (i > 0).then_some(leader);
                    Members::new(me, leader, Capabilities::new(), 0, None, now)
                })
                .collect();
            Lab {
                members,
                keys: (0..n).map(|i| vec![i as u8; 32]).collect(),
                cut: vec![false; n],
                now,
                events: vec![Vec::new(); n],
            }
        }

        fn index_of(&self, addr: SocketAddr) -> Option<usize> {
            self.members.iter().position(|m| m.me().addr == addr)
        }

        /// Runs `span` of simulated time in steps of 10 ms.
        fn run(&mut self, span: Duration) {
            let end = self.now + span;
            while self.now < end {
                self.now += Duration::from_millis(10);
                for i in 0..self.members.len() {
                    if !self.cut[i] {
                        self.members[i].tick(self.now);
                    }
                    self.deliver(i);
                }
            }
        }

        fn deliver(&mut self, from: usize) {
            let out = self.members[from].take_output();
            self.events[from].extend(out.events);
            if self.cut[from] {
                return;
            }
            let life = (self.members[from].me().addr, self.members[from].me().incarnation);
            for (to, frame) in out.send {
                let Some(to) = self.index_of(to).filter(|&to| !self.cut[to]) else {
                    continue;
                };
                let key = self.keys[from].clone();
                self.members[to].bind(life, &key).unwrap();
                let now = self.now;
                match frame {
                    ConventionFrame::Membership(bytes) => self.members[to].membership_data(&bytes, now),
                    ConventionFrame::Capabilities {
                        version,
                        capabilities,
                        load,
                        types,
                    } => self.members[to].capabilities(life, version, capabilities, load, types, now),
                    other => panic!("membership sent {other:?}"),
                }
                self.deliver(to);
            }
        }

        fn addrs_seen_by(&self, i: usize) -> Vec<SocketAddr> {
            self.members[i].alive().iter().map(|m| m.addr).collect()
        }
    }

    #[test]
    fn three_members_see_each_other_and_notice_a_dead_one_within_the_detection_time() {
        let mut lab = Lab::new(3);
        lab.run(Duration::from_secs(3));
        let addrs: Vec<SocketAddr> = lab.members.iter().map(|m| m.me().addr).collect();
        assert_eq!(lab.addrs_seen_by(0), [addrs[1], addrs[2]]);
        assert_eq!(lab.addrs_seen_by(1), [addrs[0], addrs[2]]);
        assert_eq!(lab.addrs_seen_by(2), [addrs[0], addrs[1]]);
        let node = lab.members[2].me().node();
        assert_eq!(lab.members[0].addr_of(node), Some(addrs[2]));
        lab.cut[2] = true;
        let mut noticed = Duration::ZERO;
        while lab.addrs_seen_by(0).contains(&addrs[2]) {
            lab.run(Duration::from_millis(100));
            noticed += Duration::from_millis(100);
            assert!(noticed < DETECTION_TIME * 2, "not noticed within {noticed:?}");
        }
        assert_eq!(lab.members[0].addr_of(node), None);
        lab.run(DETECTION_TIME);
        assert_eq!(lab.addrs_seen_by(1), [addrs[0]]);
    }

    #[test]
    fn a_paused_member_is_taken_for_dead_blames_no_one_and_rejoins_when_resumed() {
        let mut lab = Lab::new(3);
        lab.run(Duration::from_secs(3));
        let addrs: Vec<SocketAddr> = lab.members.iter().map(|m| m.me().addr).collect();
        lab.members[2].pause(lab.now);
        lab.run(DETECTION_TIME * 2);
        assert_eq!(lab.addrs_seen_by(0), [addrs[1]]);
        assert_eq!(lab.addrs_seen_by(1), [addrs[0]]);
        assert_eq!(lab.addrs_seen_by(2), [addrs[0], addrs[1]], "frozen: it judged no one");
        assert_eq!(
            lab.members[2].next_deadline(),
            None,
            "a paused member has nothing to do"
        );

        lab.members[2].resume(lab.now);
        lab.run(DETECTION_TIME * 2);
        assert_eq!(lab.addrs_seen_by(0), [addrs[1], addrs[2]]);
        assert_eq!(lab.addrs_seen_by(1), [addrs[0], addrs[2]]);
        assert_eq!(lab.addrs_seen_by(2), [addrs[0], addrs[1]]);
        assert_eq!(lab.members[2].me().bump(), 1, "declared down, it came back renewed");
        // The two that never stopped were never taken for dead, by anyone.
        assert_eq!(lab.members[0].me().bump(), 0);
        assert_eq!(lab.members[1].me().bump(), 0);
        for events in &lab.events[..2] {
            let others_down = events
                .iter()
                .filter(|e| matches!(e, MembershipEvent::Down(m) if m.addr != addrs[2]));
            assert_eq!(others_down.count(), 0, "a live member was declared down: {events:?}");
        }
    }

    #[test]
    fn a_member_s_types_load_key_and_last_word_reach_the_others() {
        let mut lab = Lab::new(2);
        lab.run(Duration::from_secs(1));
        let b = lab.members[1].me().clone();
        let view = |lab: &Lab| {
            lab.members[0]
                .views(lab.now)
                .into_iter()
                .find(|v| v.addr == b.addr)
                .unwrap()
        };
        assert_eq!(view(&lab).key, Some(lab.keys[1].clone()));
        assert_eq!(view(&lab).types, None, "no types until b's admin knows them");
        lab.members[1].set_types(vec!["app::Worker".into()]);
        lab.members[1].set_load(7);
        lab.members[1].set_capabilities(Capabilities::new().with("gpu", &true).unwrap());
        lab.run(Duration::from_millis(20));
        let seen = view(&lab);
        assert_eq!(seen.types.unwrap(), ["app::Worker"]);
        assert!(seen.capabilities.contains("gpu"));
        assert_eq!(seen.load, 7);
        // "Last seen" keeps up with a member that changes nothing: it speaks every
        // SHARE_AGAIN, and each time counts.
        for _ in 0..5 {
            lab.run(SHARE_AGAIN / 2);
            let silent = view(&lab).heard_ms_ago.unwrap();
            assert!(silent <= SHARE_AGAIN.as_millis() as u64, "last heard {silent} ms ago");
        }
    }

    #[test]
    fn a_member_started_before_its_leader_joins_when_the_leader_comes() {
        let mut lab = Lab::new(2);
        lab.cut[0] = true;
        lab.run(Duration::from_secs(2));
        assert!(lab.addrs_seen_by(1).is_empty());
        lab.cut[0] = false;
        lab.run(REANNOUNCE * 2);
        assert_eq!(lab.addrs_seen_by(0), [lab.members[1].me().addr]);
    }

    #[test]
    fn within_a_life_only_the_first_key_speaks_and_a_claimed_future_life_shuts_out_no_one() {
        let mut lab = Lab::new(2);
        lab.run(Duration::from_secs(1));
        let b = lab.members[1].me().clone();
        let (real, insider) = (lab.keys[1].clone(), vec![0xEE; 32]);
        let a = &mut lab.members[0];
        let refused = a.bind((b.addr, b.incarnation), &insider).unwrap_err();
        assert!(
            refused.contains(&b.addr.to_string()) && refused.contains("was proven"),
            "{refused}"
        );
        // A life to come, claimed first by the insider: its frames are not b's.
        a.bind((b.addr, b.incarnation + 1), &insider).unwrap();
        a.capabilities(
            (b.addr, b.incarnation + 1),
            99,
            Capabilities::new().with("forged", &true).unwrap(),
            0,
            None,
            lab.now,
        );
        a.bind((b.addr, b.incarnation), &real).unwrap();
        let view = a.views(lab.now).into_iter().find(|v| v.addr == b.addr).unwrap();
        assert!(!view.capabilities.contains("forged"));
        assert_eq!(view.key, Some(real));
    }

    #[test]
    fn a_gateway_restarted_as_the_same_identity_is_never_taken_for_dead() {
        let mut lab = Lab::new(2);
        lab.run(Duration::from_secs(1));
        let b = lab.members[1].me().clone();
        // b's gateway dies and a new one starts 300 ms later, as the same identity.
        lab.cut[1] = true;
        lab.run(Duration::from_millis(300));
        lab.cut[1] = false;
        let now = lab.now;
        lab.members[1] = Members::new(
            b.clone(),
            Some(lab.members[0].me().addr),
            Capabilities::new(),
            0,
            None,
            now,
        );
        // It may renew its identity to refute a suspicion (a Rename to the others), but
        // the leader never loses it: no Down, the same node throughout.
        for _ in 0..30 {
            lab.run(Duration::from_millis(100));
            let seen = lab.members[0].alive();
            assert_eq!(seen.len(), 1, "the leader always lists b: {seen:?}");
            assert_eq!((seen[0].addr, seen[0].node()), (b.addr, b.node()));
        }
        assert_eq!(lab.addrs_seen_by(1), [lab.members[0].me().addr]);
        assert!(
            !lab.events[0].iter().any(|e| matches!(e, MembershipEvent::Down(_))),
            "{:?}",
            lab.events[0]
        );
    }

    #[test]
    fn what_a_restarted_gateway_says_replaces_what_its_predecessor_said() {
        let mut lab = Lab::new(2);
        lab.run(Duration::from_secs(1));
        let b = lab.members[1].me().clone();
        lab.members[1].set_types(vec!["app::Worker".into()]);
        lab.members[1].set_capabilities(Capabilities::new().with("gpu", &true).unwrap());
        lab.run(Duration::from_millis(100));
        let gpu = |lab: &Lab| {
            let view = lab.members[0]
                .views(lab.now)
                .into_iter()
                .find(|v| v.addr == b.addr)
                .unwrap();
            view.capabilities.get::<bool>("gpu")
        };
        assert_eq!(gpu(&lab), Some(true));
        // b's gateway is restarted, as the same identity, with its admin's capabilities now;
        // the leader never takes b for down, so it still holds what the last gateway said.
        let now = lab.now;
        let leader = Some(lab.members[0].me().addr);
        let types = Some(vec!["app::Worker".into()]);
        let no_gpu = Capabilities::new().with("gpu", &false).unwrap();
        lab.members[1] = Members::new(b.clone(), leader, no_gpu, 0, types, now);
        lab.run(SHARE_AGAIN * 2);
        assert_eq!(gpu(&lab), Some(false), "the restarted gateway's capabilities are taken");
        // And so is its next change.
        lab.members[1].set_capabilities(Capabilities::new().with("gpu", &true).unwrap());
        lab.run(Duration::from_millis(100));
        assert_eq!(gpu(&lab), Some(true));
    }

    #[test]
    fn a_restarted_gateway_reaches_the_members_it_was_told_of_and_drops_those_gone_meanwhile() {
        let mut lab = Lab::new(3);
        lab.run(Duration::from_secs(2));
        let (b, c) = (lab.members[1].me().clone(), lab.members[2].me().clone());
        let told = lab.members[0].views(lab.now);
        assert_eq!(told.len(), 2);
        // The leader's gateway dies; c dies too while no gateway listens.
        lab.cut[0] = true;
        lab.cut[2] = true;
        lab.run(Duration::from_millis(500));
        lab.cut[0] = false;
        let (me, now) = (lab.members[0].me().clone(), lab.now);
        lab.members[0] = Members::new(me, None, Capabilities::new(), 0, None, now);
        lab.members[0].seed(told, now);
        // At once: both listed and reachable, though SWIM has confirmed neither yet.
        assert_eq!(lab.members[0].addr_of(b.node()), Some(b.addr));
        assert_eq!(lab.members[0].addr_of(c.node()), Some(c.addr));
        assert_eq!(lab.members[0].views(lab.now).len(), 2);
        lab.run(SEED_GRACE + Duration::from_millis(100));
        assert_eq!(lab.members[0].addr_of(c.node()), None, "c is gone");
        assert_eq!(lab.addrs_seen_by(0), [b.addr], "b is confirmed");
        let downs: Vec<&MembershipEvent> = lab.events[0]
            .iter()
            .filter(|e| matches!(e, MembershipEvent::Down(_)))
            .collect();
        assert_eq!(downs.len(), 1, "{downs:?}");
        assert!(matches!(downs[0], MembershipEvent::Down(m) if m.node() == c.node()));
    }
}
