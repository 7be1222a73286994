//! Membership: which admins are in the convention and alive, by SWIM ([foca]) carried over
//! the authenticated [links](super::link) — never over plain UDP.
//!
//! [`Membership`] is the sans-IO core: bytes and timer events in, messages to send, timers
//! to set and member up/down events out. [`MemberNode`] drives one over TCP links with a few
//! threads; it is what the tests run, and what an admin's convention gateway will run.
//!
//! An admin's identity is its advertised address plus an *incarnation* (the time it started,
//! in milliseconds), so a member that restarts at the same address is a new member: the old
//! one is declared down, and mail for the old incarnation can be told apart.
//!
//! Failure detection: every member probes a random other every [`PROBE_PERIOD`]; a member
//! that answers neither directly nor through others within [`PROBE_RTT`] is suspected, and
//! declared down [`SUSPECT_TO_DOWN`] later unless it refutes. With these settings a dead
//! member is noticed within about 3 s on a small convention.

use std::{
    collections::{BinaryHeap, HashMap},
    net::{SocketAddr, TcpListener, TcpStream},
    num::{NonZeroU8, NonZeroUsize},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use foca::{AccumulatingRuntime, Config, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand::{rngs::SmallRng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::link::{Link, LinkConfig};
use crate::error::{Error, Result};

/// How often each member probes another.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// How long a probe waits for its answer before asking others to probe.
pub const PROBE_RTT: Duration = Duration::from_millis(250);
/// How long a suspected member has to refute before it is declared down.
pub const SUSPECT_TO_DOWN: Duration = Duration::from_millis(1500);
/// The largest membership message.
const MAX_MESSAGE: usize = 16 * 1024;
/// How long a link's handshake may take when membership opens it: short, since the loop
/// waits for it.
const MEMBER_HANDSHAKE: Duration = Duration::from_secs(1);

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
}

/// What the core asks its driver to do.
#[derive(Debug, Default)]
pub struct Outputs {
    pub send: Vec<(MemberId, Vec<u8>)>,
    pub timers: Vec<(Duration, Timer<MemberId>)>,
    pub events: Vec<MembershipEvent>,
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

enum Input {
    Data(Vec<u8>),
    Stop,
}

/// One admin's membership, running over TCP links: a listener thread, a reader thread per
/// accepted link, and the loop that owns the core and the outgoing links.
pub struct MemberNode {
    me: MemberId,
    members: Arc<Mutex<Vec<MemberId>>>,
    events: mpsc::Receiver<MembershipEvent>,
    inputs: mpsc::Sender<Input>,
    stopping: Arc<AtomicBool>,
    /// A handle on each accepted link's stream, to cut its reader loose at stop.
    accepted: Arc<Mutex<Vec<TcpStream>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl MemberNode {
    /// Listens on `listen`, advertises `advertise`, and joins the convention through
    /// `leader` (none: this one is the leader).
    pub fn start(
        listen: SocketAddr,
        advertise: SocketAddr,
        links: LinkConfig,
        leader: Option<SocketAddr>,
    ) -> Result<MemberNode> {
        let listener = TcpListener::bind(listen).map_err(|e| failed(format!("listening on {listen}: {e}")))?;
        let me = MemberId::new(advertise);
        let (inputs, inbox) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let members = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let mut links = links;
        links.handshake_timeout = MEMBER_HANDSHAKE;
        let accept_thread = {
            let (inputs, links, stopping, accepted) =
                (inputs.clone(), links.clone(), stopping.clone(), accepted.clone());
            std::thread::Builder::new()
                .name("convention-accept".into())
                .spawn(move || accept_loop(listener, links, inputs, stopping, accepted))
                .map_err(|e| failed(format!("starting a thread: {e}")))?
        };
        let core_thread = {
            let (me, members, stopping) = (me.clone(), members.clone(), stopping.clone());
            std::thread::Builder::new()
                .name("convention-members".into())
                .spawn(move || {
                    let mut core = CoreLoop {
                        membership: Membership::new(me),
                        links,
                        out: HashMap::new(),
                        timers: BinaryHeap::new(),
                        order: 0,
                        members,
                        events: event_tx,
                    };
                    core.run(leader, inbox, stopping);
                })
                .map_err(|e| failed(format!("starting a thread: {e}")))?
        };
        Ok(MemberNode {
            me,
            members,
            events,
            inputs,
            stopping,
            accepted,
            threads: vec![accept_thread, core_thread],
        })
    }

    /// This admin's identity.
    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// The other members believed alive now.
    pub fn members(&self) -> Vec<MemberId> {
        self.members.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next membership change, waiting up to `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<MembershipEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Stops answering at once, without leaving: to the others, this member has failed.
    pub fn halt(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.inputs.send(Input::Stop);
        // Wake the accept loop, and end every reader's blocking read.
        let _ = TcpStream::connect_timeout(&self.me.addr, Duration::from_millis(200));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        for stream in self.accepted.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for MemberNode {
    fn drop(&mut self) {
        self.shut();
    }
}

fn accept_loop(
    listener: TcpListener,
    links: LinkConfig,
    inputs: mpsc::Sender<Input>,
    stopping: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if let Ok(handle) = stream.try_clone() {
            let mut accepted = accepted.lock().unwrap_or_else(|p| p.into_inner());
            // Forget handles of links that have ended (their peer is gone).
            accepted.retain(|s| s.peer_addr().is_ok());
            accepted.push(handle);
        }
        let (links, inputs) = (links.clone(), inputs.clone());
        // A thread per link, so that one slow handshake holds up no other. It reads until the
        // link ends: the peer closes it, it fails, or `shut` shuts its stream down.
        let _ = std::thread::Builder::new()
            .name("convention-link".into())
            .spawn(move || {
                let mut link = match Link::accept(stream, &links) {
                    Ok(link) => link,
                    Err(e) => {
                        tracing::warn!(error = %e, "convention link refused");
                        return;
                    }
                };
                loop {
                    match link.recv() {
                        Ok(bytes) => {
                            if inputs.send(Input::Data(bytes)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "convention link closed");
                            return;
                        }
                    }
                }
            });
    }
}

struct CoreLoop {
    membership: Membership,
    links: LinkConfig,
    out: HashMap<SocketAddr, Link>,
    timers: BinaryHeap<Due>,
    order: u64,
    members: Arc<Mutex<Vec<MemberId>>>,
    events: mpsc::Sender<MembershipEvent>,
}

impl CoreLoop {
    fn run(&mut self, leader: Option<SocketAddr>, inbox: mpsc::Receiver<Input>, stopping: Arc<AtomicBool>) {
        if let Some(leader) = leader {
            match self.membership.announce(leader) {
                Ok(out) => self.apply(out),
                Err(e) => tracing::warn!(error = %e, "could not announce to the leader"),
            }
        }
        while !stopping.load(Ordering::SeqCst) {
            let wait = self.timers.peek().map_or(Duration::from_millis(200), |d| {
                d.0.saturating_duration_since(Instant::now())
            });
            match inbox.recv_timeout(wait) {
                Ok(Input::Data(bytes)) => match self.membership.handle_data(&bytes) {
                    Ok(out) => self.apply(out),
                    Err(e) => tracing::debug!(error = %e, "membership message refused"),
                },
                Ok(Input::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            while self.timers.peek().is_some_and(|d| d.0 <= now) {
                let Some(Due(_, _, timer)) = self.timers.pop() else {
                    break;
                };
                match self.membership.handle_timer(timer) {
                    Ok(out) => self.apply(out),
                    Err(e) => tracing::debug!(error = %e, "membership timer"),
                }
            }
        }
    }

    fn apply(&mut self, out: Outputs) {
        for (to, bytes) in out.send {
            self.send(to.addr, &bytes);
        }
        for (after, timer) in out.timers {
            self.order += 1;
            self.timers.push(Due(Instant::now() + after, self.order, timer));
        }
        if !out.events.is_empty() {
            *self.members.lock().unwrap_or_else(|p| p.into_inner()) = self.membership.members();
            for event in out.events {
                let _ = self.events.send(event);
            }
        }
    }

    /// Sends on the link to `addr`, opening one if needed; a failed link is dropped (the
    /// member's silence is what membership then notices).
    fn send(&mut self, addr: SocketAddr, bytes: &[u8]) {
        if !self.out.contains_key(&addr) {
            let link = TcpStream::connect_timeout(&addr, MEMBER_HANDSHAKE)
                .map_err(|e| failed(format!("connecting to {addr}: {e}")))
                .and_then(|stream| Link::connect(stream, &self.links));
            match link {
                Ok(link) => {
                    self.out.insert(addr, link);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "no link to a member");
                    return;
                }
            }
        }
        if let Some(link) = self.out.get_mut(&addr) {
            if let Err(e) = link.send(bytes) {
                tracing::debug!(%addr, error = %e, "link to a member lost");
                self.out.remove(&addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convention::ClusterSecret;

    fn links() -> LinkConfig {
        LinkConfig::new("lab", ClusterSecret::from_bytes([5; 32])).unwrap()
    }

    fn node(ip: &str, leader: Option<SocketAddr>) -> MemberNode {
        // Port 0 would leave the advertised address unknown: bind first to learn a port.
        let port = TcpListener::bind(format!("{ip}:0"))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        MemberNode::start(addr, addr, links(), leader).unwrap()
    }

    /// Waits (on membership events) until `node`'s members satisfy `wanted`; returns how long
    /// that took.
    fn wait_until(node: &MemberNode, wanted: impl Fn(&[MemberId]) -> bool, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if wanted(&node.members()) {
                return started.elapsed();
            }
            let left = within.saturating_sub(started.elapsed());
            assert!(!left.is_zero(), "not within {within:?}; members: {:?}", node.members());
            node.next_event(left);
        }
    }

    #[test]
    fn three_members_see_each_other_and_notice_a_dead_one_within_five_seconds() {
        let leader = node("127.0.0.1", None);
        let b = node("127.0.0.2", Some(leader.me().addr));
        let c = node("127.0.0.3", Some(leader.me().addr));
        let (a_id, b_id, c_id) = (leader.me().clone(), b.me().clone(), c.me().clone());
        let within = Duration::from_secs(10);
        wait_until(&leader, |m| m == [b_id.clone(), c_id.clone()], within);
        wait_until(&b, |m| m == [a_id.clone(), c_id.clone()], within);
        wait_until(&c, |m| m == [a_id.clone(), b_id.clone()], within);
        c.halt();
        let noticed = wait_until(&leader, |m| !m.contains(&c_id), within);
        eprintln!("a dead member noticed after {noticed:?}");
        assert!(noticed < Duration::from_secs(5), "noticed only after {noticed:?}");
        wait_until(&b, |m| m == [a_id.clone()], within);
        assert_eq!(leader.members(), vec![b_id]);
    }

    #[test]
    fn a_member_with_another_secret_never_joins() {
        let leader = node("127.0.0.1", None);
        let port = TcpListener::bind("127.0.0.4:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.4:{port}").parse().unwrap();
        let stranger_links = LinkConfig::new("lab", ClusterSecret::from_bytes([6; 32])).unwrap();
        let stranger = MemberNode::start(addr, addr, stranger_links, Some(leader.me().addr)).unwrap();
        assert_eq!(leader.next_event(Duration::from_secs(2)), None, "no member came up");
        assert!(leader.members().is_empty());
        assert!(stranger.members().is_empty());
    }
}
