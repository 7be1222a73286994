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

use greenroom_protocol::{convention::ConventionFrame, Capabilities, NodeId};

use super::{
    gateway::{GatewayInput, GatewaySink},
    link::{Link, LinkConfig},
};
use crate::error::{Error, Result};

/// How often each member probes another.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// How long a probe waits for its answer before asking others to probe.
pub const PROBE_RTT: Duration = Duration::from_millis(250);
/// How long a suspected member has to refute before it is declared down.
pub const SUSPECT_TO_DOWN: Duration = Duration::from_millis(1500);
/// The largest membership message.
const MAX_MESSAGE: usize = 16 * 1024;
/// How long a link's handshake may take when membership opens it.
const MEMBER_HANDSHAKE: Duration = Duration::from_secs(1);
/// How long a write to a member may block: a member that stops reading (stopped, or
/// partitioned) loses messages, as if over UDP, rather than holding anything up.
const MEMBER_WRITE_TIMEOUT: Duration = PROBE_RTT;
/// Messages queued for one member's writer; more are dropped (SWIM tolerates loss).
const WRITER_QUEUE: usize = 64;
/// The most links accepted at once; more are closed at once.
const MAX_ACCEPTED: usize = 64;
/// How often a member that does not count the leader among its members asks it again (a
/// member started before its leader, a restarted leader, the healing of a partition).
const REANNOUNCE: Duration = Duration::from_secs(1);
/// Membership events kept for a reader (the admin reads the member list instead).
const EVENT_QUEUE: usize = 1024;

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
    /// A membership message from a member.
    Data(Vec<u8>),
    /// A member's capabilities.
    Capabilities {
        member: SocketAddr,
        incarnation: u64,
        version: u64,
        capabilities: Capabilities,
        load: u64,
        types: Option<Vec<String>>,
        /// The static key of the link that carried them: the member's own (each member
        /// sends its capabilities itself).
        key: Vec<u8>,
    },
    /// This admin's capabilities changed.
    SetCapabilities(Capabilities),
    /// This admin learnt the actor types its host binary registers.
    SetTypes(Vec<String>),
    /// How many actors this admin runs now.
    SetLoad(u64),
    Stop,
}

/// How many members' keys are kept once they have left (beyond that, only the live ones').
const MAX_KEYS_KEPT: usize = 1024;

/// How often each member tells every other its capabilities again (they also go out at
/// once on a join and on every change; this repairs a message dropped on the way).
const SHARE_AGAIN: Duration = Duration::from_secs(2);

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

/// One admin's membership, running over TCP links: a listener thread, a reader thread per
/// accepted link, and the loop that owns the core and the outgoing links.
pub struct MemberNode {
    me: MemberId,
    /// The public half of this admin's static key.
    public_key: [u8; 32],
    /// Where the listener really is (to wake its thread at stop).
    listening: SocketAddr,
    members: Snapshot,
    events: mpsc::Receiver<MembershipEvent>,
    inputs: mpsc::Sender<Input>,
    stopping: Arc<AtomicBool>,
    /// A handle on each accepted link's stream (by connection number), to cut its reader
    /// loose at stop; each reader removes its own when it ends.
    accepted: Accepted,
    threads: Vec<std::thread::JoinHandle<()>>,
}

type Accepted = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// What this admin knows of another member believed alive.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub id: MemberId,
    /// Its capabilities, as it last told this admin (empty until it has).
    pub capabilities: Capabilities,
    /// How many actors it runs, as it last told this admin (a few seconds old at most).
    pub load: u64,
    /// The static public key its link proved when it told its capabilities (`None` until
    /// it has).
    pub key: Option<Vec<u8>>,
    /// The actor types its host binary registers, once it knows them and has said so.
    pub types: Option<Vec<String>>,
    /// When it last told this admin its capabilities (`None`: not yet).
    pub heard: Option<Instant>,
}

/// The members believed alive: the core loop's, for readers.
type Snapshot = Arc<Mutex<Vec<MemberInfo>>>;

/// Where the members believed alive are, by node id: the gateway's view of membership.
#[derive(Clone)]
pub struct Directory(Snapshot);

impl Directory {
    /// The convention address of the live member whose node id is `node`.
    pub fn addr_of(&self, node: NodeId) -> Option<SocketAddr> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|m| m.id.node() == node)
            .map(|m| m.id.addr)
    }
}

impl MemberNode {
    /// Listens on `listen`, advertises `advertise`, and joins the convention through
    /// `leader` (none: this one is the leader), telling the others `capabilities`.
    pub fn start(
        listen: SocketAddr,
        advertise: SocketAddr,
        links: LinkConfig,
        leader: Option<SocketAddr>,
        capabilities: Capabilities,
        waker: Option<Arc<mio::Waker>>,
        gateway: Option<GatewaySink>,
    ) -> Result<MemberNode> {
        let listener = TcpListener::bind(listen).map_err(|e| failed(format!("listening on {listen}: {e}")))?;
        let mut listening = listener
            .local_addr()
            .map_err(|e| failed(format!("listening on {listen}: {e}")))?;
        if listening.ip().is_unspecified() {
            listening.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let me = MemberId::new(advertise);
        let (inputs, inbox) = mpsc::channel();
        let (event_tx, events) = mpsc::sync_channel(EVENT_QUEUE);
        let members: Snapshot = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted: Accepted = Arc::new(Mutex::new(HashMap::new()));
        let mut links = links;
        links.handshake_timeout = MEMBER_HANDSHAKE;
        let public_key = *links.static_key.public();
        let accept_thread = {
            let (inputs, links, stopping, accepted) =
                (inputs.clone(), links.clone(), stopping.clone(), accepted.clone());
            std::thread::Builder::new()
                .name("convention-accept".into())
                .spawn(move || accept_loop(listener, links, inputs, stopping, accepted, gateway))
                .map_err(|e| failed(format!("starting a thread: {e}")))?
        };
        let core_thread = {
            let (me, members, stopping) = (me.clone(), members.clone(), stopping.clone());
            std::thread::Builder::new()
                .name("convention-members".into())
                .spawn(move || {
                    let mut core = CoreLoop {
                        membership: Membership::new(me.clone()),
                        me,
                        links,
                        writers: HashMap::new(),
                        timers: BinaryHeap::new(),
                        order: 0,
                        members,
                        events: event_tx,
                        capabilities,
                        version: 1,
                        load: 0,
                        types: None,
                        known: HashMap::new(),
                        keys: HashMap::new(),
                        waker,
                    };
                    core.run(leader, inbox, &stopping);
                })
                .map_err(|e| failed(format!("starting a thread: {e}")))?
        };
        Ok(MemberNode {
            me,
            public_key,
            listening,
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

    /// The public half of this admin's static key, as its links prove it to peers.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The live members by node id, kept current.
    pub fn directory(&self) -> Directory {
        Directory(self.members.clone())
    }

    /// The other members believed alive now.
    pub fn members(&self) -> Vec<MemberId> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|m| m.id.clone())
            .collect()
    }

    /// The other members believed alive, with what each last told this one.
    pub fn member_infos(&self) -> Vec<MemberInfo> {
        self.members.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells every member how many actors this admin runs now (with the next sharing of its
    /// capabilities, within a few seconds).
    pub fn set_load(&self, load: u64) {
        let _ = self.inputs.send(Input::SetLoad(load));
    }

    /// Tells every member this admin's new capabilities.
    pub fn set_capabilities(&self, capabilities: Capabilities) {
        let _ = self.inputs.send(Input::SetCapabilities(capabilities));
    }

    /// Tells every member the actor types this admin's host binary registers (once known:
    /// placement on another member skips one known not to have the type).
    pub fn set_types(&self, types: Vec<String>) {
        let _ = self.inputs.send(Input::SetTypes(types));
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
        // Wake the accept loop (at the address it really listens on), and end every reader's
        // blocking read.
        let _ = TcpStream::connect_timeout(&self.listening, Duration::from_millis(200));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        for (_, stream) in self.accepted.lock().unwrap_or_else(|p| p.into_inner()).drain() {
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
    accepted: Accepted,
    gateway: Option<GatewaySink>,
) {
    let mut next_id = 0u64;
    let refusals = Arc::new(Mutex::new(RefusalLog::default()));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of fds or memory: wait a little rather than spin.
                tracing::warn!(error = %e, "convention listener: accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        {
            let mut open = accepted.lock().unwrap_or_else(|p| p.into_inner());
            if open.len() >= MAX_ACCEPTED {
                tracing::warn!(
                    limit = MAX_ACCEPTED,
                    "convention listener: too many links open; closing a new one"
                );
                continue;
            }
            match stream.try_clone() {
                Ok(handle) => open.insert(id, handle),
                Err(_) => continue,
            };
        }
        let (links, inputs, open, refusals, gateway) = (
            links.clone(),
            inputs.clone(),
            accepted.clone(),
            refusals.clone(),
            gateway.clone(),
        );
        // A thread per link, so that one slow handshake holds up no other. It reads until the
        // link ends: the peer closes it, it fails, or `shut` shuts its stream down.
        let spawned = std::thread::Builder::new()
            .name("convention-link".into())
            .spawn(move || {
                read_link(stream, &links, &inputs, &refusals, gateway.as_ref());
                open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            });
        if spawned.is_err() {
            accepted.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }
}

/// How many refused links are logged per [`REFUSAL_WINDOW`]; the rest are counted, and the
/// count is logged when the next window opens. A peer that hammers the port cannot flood
/// the log.
const REFUSALS_LOGGED: u32 = 5;
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// The rate limit on "convention link refused" warnings.
#[derive(Debug)]
struct RefusalLog {
    window_start: Instant,
    logged: u32,
    suppressed: u32,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }
}

impl RefusalLog {
    /// Logs `error`, unless this window's quota is spent; says whether it was logged.
    fn refused(&mut self, error: &Error) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= REFUSAL_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(count = self.suppressed, window = ?REFUSAL_WINDOW,
                    "more convention links were refused and not logged one by one");
            }
            *self = RefusalLog {
                window_start: now,
                ..RefusalLog::default()
            };
        }
        if self.logged < REFUSALS_LOGGED {
            self.logged += 1;
            tracing::warn!(error = %error, "convention link refused");
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Accepts a link on `stream` and passes what it carries to the core loop until it ends.
/// Gateway frames go straight to the gateway (`gateway`), without the core loop.
fn read_link(
    stream: TcpStream,
    links: &LinkConfig,
    inputs: &mpsc::Sender<Input>,
    refusals: &Mutex<RefusalLog>,
    gateway: Option<&GatewaySink>,
) {
    let mut link = match Link::accept(stream, links) {
        Ok(link) => link,
        Err(e) => {
            refusals.lock().unwrap_or_else(|p| p.into_inner()).refused(&e);
            return;
        }
    };
    loop {
        let input = match link
            .recv()
            .map(|bytes| greenroom_protocol::frame::decode::<ConventionFrame>(&bytes, "convention frame"))
        {
            Ok(Ok(ConventionFrame::Membership(bytes))) => Input::Data(bytes),
            Ok(Ok(ConventionFrame::Gateway(frame))) => {
                match gateway {
                    Some(gateway) => gateway.send(GatewayInput::Remote(frame)),
                    None => tracing::debug!(
                        peer = link.peer(),
                        "a gateway frame for a member without a gateway; dropped"
                    ),
                }
                continue;
            }
            Ok(Ok(ConventionFrame::Capabilities {
                member,
                incarnation,
                version,
                capabilities,
                load,
                types,
            })) => match member.parse() {
                Ok(member) => Input::Capabilities {
                    member,
                    incarnation,
                    version,
                    capabilities,
                    load,
                    types,
                    key: link.peer_key().to_vec(),
                },
                Err(_) => {
                    tracing::warn!(peer = link.peer(), %member, "capabilities for an address that does not parse; link closed");
                    return;
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(peer = link.peer(), error = %e, "a convention frame that does not decode; link closed");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "convention link closed");
                return;
            }
        };
        if inputs.send(input).is_err() {
            return;
        }
    }
}

/// One member's outgoing link, on a thread of its own, so that a member that is slow, stopped
/// or unreachable holds up only its own messages: the core loop hands it messages through a
/// small queue and drops them when the queue is full.
struct Writer {
    queue: mpsc::SyncSender<Vec<u8>>,
}

impl Writer {
    fn start(addr: SocketAddr, links: LinkConfig) -> Option<Writer> {
        let (queue, pending) = mpsc::sync_channel::<Vec<u8>>(WRITER_QUEUE);
        std::thread::Builder::new()
            .name("convention-writer".into())
            .spawn(move || {
                let mut link: Option<Link> = None;
                // Ends when the core loop drops the queue's sender.
                for bytes in pending {
                    if link.is_none() {
                        let opened = TcpStream::connect_timeout(&addr, MEMBER_HANDSHAKE)
                            .map_err(|e| failed(format!("connecting to {addr}: {e}")))
                            .and_then(|stream| Link::connect(stream, &links))
                            .and_then(|l| l.set_write_timeout(Some(MEMBER_WRITE_TIMEOUT)).map(|()| l));
                        match opened {
                            Ok(opened) => link = Some(opened),
                            Err(e) => {
                                tracing::debug!(%addr, error = %e, "no link to a member; message dropped");
                                continue;
                            }
                        }
                    }
                    if let Some(open) = link.as_mut() {
                        if let Err(e) = open.send(&bytes) {
                            tracing::debug!(%addr, error = %e, "link to a member lost; message dropped");
                            link = None;
                        }
                    }
                }
            })
            .ok()?;
        Some(Writer { queue })
    }
}

struct CoreLoop {
    membership: Membership,
    me: MemberId,
    links: LinkConfig,
    writers: HashMap<SocketAddr, Writer>,
    timers: BinaryHeap<Due>,
    order: u64,
    members: Snapshot,
    events: mpsc::SyncSender<MembershipEvent>,
    /// This admin's capabilities, and how many times they changed.
    capabilities: Capabilities,
    version: u64,
    /// How many actors this admin runs, as the admin last said.
    load: u64,
    /// The actor types this admin's host binary registers, once it knows them.
    types: Option<Vec<String>>,
    /// The other members' capabilities, by address.
    known: HashMap<SocketAddr, Known>,
    /// The static key each address's member last proved, and in which incarnation. Kept
    /// after the member leaves, so that one coming back with another key is noticed.
    keys: HashMap<SocketAddr, (u64, Vec<u8>)>,
    /// Woken after events are queued (the admin's loop).
    waker: Option<Arc<mio::Waker>>,
}

impl CoreLoop {
    fn run(&mut self, leader: Option<SocketAddr>, inbox: mpsc::Receiver<Input>, stopping: &AtomicBool) {
        let mut next_announce = Instant::now();
        let mut next_share = Instant::now() + SHARE_AGAIN;
        while !stopping.load(Ordering::SeqCst) {
            if Instant::now() >= next_share {
                next_share = Instant::now() + SHARE_AGAIN;
                self.share_with_all();
            }
            // Not in touch with the leader: ask it (again). Alone (started before the leader,
            // or cut off by a partition), or with others but without the leader: a leader
            // that was restarted knows no one, and only its followers can bring it back.
            if let Some(leader) = leader.filter(|_| Instant::now() >= next_announce) {
                next_announce = Instant::now() + REANNOUNCE;
                if !self.membership.members().iter().any(|m| m.addr == leader) {
                    match self.membership.announce(leader) {
                        Ok(out) => self.apply(out),
                        Err(e) => tracing::debug!(error = %e, "could not announce to the leader"),
                    }
                }
            }
            let next_timer = self.timers.peek().map(|d| d.0);
            let wake = [next_timer, leader.map(|_| next_announce), Some(next_share)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(200));
            match inbox.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Input::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(input) => {
                    self.take(input);
                    // Everything already queued first (acks among it), then the timers:
                    // otherwise a burst could make probes time out that were answered.
                    loop {
                        match inbox.try_recv() {
                            Ok(Input::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                            Ok(input) => self.take(input),
                            Err(mpsc::TryRecvError::Empty) => break,
                        }
                    }
                }
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

    fn take(&mut self, input: Input) {
        match input {
            Input::Data(bytes) => match self.membership.handle_data(&bytes) {
                Ok(out) => self.apply(out),
                Err(e) => tracing::debug!(error = %e, "membership message refused"),
            },
            Input::Capabilities {
                member,
                incarnation,
                version,
                capabilities,
                load,
                types,
                key,
            } => {
                if !self.key_holds(member, incarnation, key) {
                    return;
                }
                let newer = self
                    .known
                    .get(&member)
                    .is_none_or(|k| (incarnation, version) > (k.incarnation, k.version));
                if !newer {
                    // The same capabilities again: the load may have moved, and it was heard
                    // from now ("last seen").
                    if let Some(known) = self.known.get_mut(&member).filter(|k| k.incarnation == incarnation) {
                        known.heard = Instant::now();
                        known.load = load;
                        self.publish();
                    }
                }
                if newer {
                    self.known.insert(
                        member,
                        Known {
                            incarnation,
                            version,
                            capabilities: capabilities.clone(),
                            load,
                            types,
                            heard: Instant::now(),
                        },
                    );
                    self.publish();
                    let alive = self
                        .membership
                        .members()
                        .into_iter()
                        .find(|m| m.addr == member && m.incarnation == incarnation);
                    if let Some(id) = alive {
                        self.emit(MembershipEvent::Capabilities(id, capabilities));
                    }
                }
            }
            Input::SetCapabilities(capabilities) => {
                self.capabilities = capabilities;
                self.version += 1;
                self.share_with_all();
            }
            Input::SetTypes(types) => {
                if self.types.as_ref() != Some(&types) {
                    self.types = Some(types);
                    self.version += 1;
                    self.share_with_all();
                }
            }
            Input::SetLoad(load) => self.load = load,
            Input::Stop => {}
        }
    }

    /// Whether `key`, proven by the link that carried capabilities for `member` in
    /// `incarnation`, may speak for it. Only for a life of a member SWIM lists alive now (a
    /// frame that comes first, or late, is dropped; the member sends again every
    /// [`SHARE_AGAIN`]); and within one life only the key first proven for it, so that an
    /// insider cannot claim to be another live member. A member that comes back at its
    /// address with another key is another machine, or its key file was replaced: taken,
    /// and logged. (Anyone with the cluster secret can still disturb SWIM itself: the
    /// secret is what members trust.)
    fn key_holds(&mut self, member: SocketAddr, incarnation: u64, key: Vec<u8>) -> bool {
        use super::secret::fingerprint;
        let alive = self.membership.members();
        if !alive.iter().any(|m| m.addr == member && m.incarnation == incarnation) {
            return false;
        }
        match self.keys.get(&member) {
            Some((known, was)) if *was != key && incarnation == *known => {
                tracing::warn!(%member, incarnation, key = %fingerprint(&key), proven = %fingerprint(was),
                    "capabilities for a member came over a link with another static key than its own; ignored");
                return false;
            }
            Some((_, was)) if *was != key => {
                tracing::warn!(%member, was = %fingerprint(was), now = %fingerprint(&key),
                    "a member came back at its address with a different static key: another machine, or a replaced key file");
            }
            _ => {}
        }
        self.keys.insert(member, (incarnation, key));
        // Kept for members that left, to notice a different key when they come back; but
        // not without bound.
        if self.keys.len() > MAX_KEYS_KEPT {
            self.keys.retain(|addr, _| alive.iter().any(|m| m.addr == *addr));
        }
        true
    }

    /// Queues `event` for the reader, and wakes it. Never blocks: a reader that does not keep
    /// up misses events (the member list stays right).
    fn emit(&self, event: MembershipEvent) {
        let _ = self.events.try_send(event);
        if let Some(waker) = &self.waker {
            let _ = waker.wake();
        }
    }

    /// Tells `addr` this admin's capabilities.
    fn share_with(&mut self, addr: SocketAddr) {
        let frame = ConventionFrame::Capabilities {
            member: self.me.addr.to_string(),
            incarnation: self.me.incarnation,
            version: self.version,
            capabilities: self.capabilities.clone(),
            load: self.load,
            types: self.types.clone(),
        };
        self.send_frame(addr, &frame);
    }

    fn share_with_all(&mut self) {
        for member in self.membership.members() {
            self.share_with(member.addr);
        }
    }

    /// The member list, with capabilities, for readers.
    fn publish(&self) {
        let snapshot: Vec<MemberInfo> = self
            .membership
            .members()
            .into_iter()
            .map(|id| {
                let known = self.known.get(&id.addr).filter(|k| k.incarnation == id.incarnation);
                let (capabilities, load) = known.map(|k| (k.capabilities.clone(), k.load)).unwrap_or_default();
                let (types, heard) = (known.and_then(|k| k.types.clone()), known.map(|k| k.heard));
                let key = self
                    .keys
                    .get(&id.addr)
                    .filter(|(incarnation, _)| *incarnation == id.incarnation)
                    .map(|(_, key)| key.clone());
                MemberInfo {
                    id,
                    capabilities,
                    load,
                    key,
                    types,
                    heard,
                }
            })
            .collect();
        *self.members.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    fn apply(&mut self, out: Outputs) {
        for (to, bytes) in out.send {
            self.send_frame(to.addr, &ConventionFrame::Membership(bytes));
        }
        for (after, timer) in out.timers {
            self.order += 1;
            self.timers.push(Due(Instant::now() + after, self.order, timer));
        }
        if !out.events.is_empty() {
            for event in &out.events {
                match event {
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
            }
            self.publish();
            for event in out.events {
                self.emit(event);
            }
        }
    }

    /// Queues `frame` for the member at `addr` (its writer opens the link), or drops it if
    /// its queue is full: the member's silence is what membership then notices.
    fn send_frame(&mut self, addr: SocketAddr, frame: &ConventionFrame) {
        let bytes = match postcard::to_allocvec(frame) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "could not encode a convention frame");
                return;
            }
        };
        if !self.writers.contains_key(&addr) {
            match Writer::start(addr, self.links.clone()) {
                Some(writer) => {
                    self.writers.insert(addr, writer);
                }
                None => return,
            }
        }
        if let Some(writer) = self.writers.get(&addr) {
            if let Err(mpsc::TrySendError::Disconnected(_)) = writer.queue.try_send(bytes) {
                self.writers.remove(&addr);
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
        MemberNode::start(addr, addr, links(), leader, Capabilities::new(), None, None).unwrap()
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

    /// Polls `node`'s view of `member` until `wanted` holds (every 20 ms, up to 10 s).
    fn wait_for_info(node: &MemberNode, member: &MemberId, wanted: impl Fn(&MemberInfo) -> bool) -> MemberInfo {
        let started = Instant::now();
        loop {
            if let Some(info) = node.member_infos().into_iter().find(|m| m.id == *member && wanted(m)) {
                return info;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{:?}", node.member_infos());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_member_s_types_key_and_last_word_reach_the_others() {
        let leader = node("127.0.0.1", None);
        let b = node("127.0.0.2", Some(leader.me().addr));
        let b_id = b.me().clone();
        let info = wait_for_info(&leader, &b_id, |m| m.key.is_some());
        assert_eq!(info.key.as_deref(), Some(b.public_key()), "the key b's link proved");
        assert_eq!(info.types, None, "no types until b's admin knows them");
        assert!(info.heard.is_some_and(|at| at.elapsed() < SHARE_AGAIN * 2));
        b.set_types(vec!["app::Worker".into(), "app::Other".into()]);
        let info = wait_for_info(&leader, &b_id, |m| m.types.is_some());
        assert_eq!(info.types.unwrap(), ["app::Worker", "app::Other"]);
        // "Last seen" keeps up with a member that changes nothing: it speaks every
        // SHARE_AGAIN, and each time counts.
        let watched = Instant::now();
        while watched.elapsed() < SHARE_AGAIN * 3 {
            let info = wait_for_info(&leader, &b_id, |_| true);
            let silent = info.heard.map(|at| at.elapsed());
            assert!(silent.is_some_and(|s| s < SHARE_AGAIN * 2), "last heard {silent:?} ago");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    #[test]
    fn a_member_with_another_secret_never_joins_and_one_with_the_same_does() {
        let leader = node("127.0.0.1", None);
        let port = TcpListener::bind("127.0.0.4:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.4:{port}").parse().unwrap();
        let stranger_links = LinkConfig::new("lab", ClusterSecret::from_bytes([6; 32])).unwrap();
        let stranger = MemberNode::start(
            addr,
            addr,
            stranger_links,
            Some(leader.me().addr),
            Capabilities::new(),
            None,
            None,
        )
        .unwrap();
        // It asks again every second: three tries, none gets in.
        assert_eq!(leader.next_event(Duration::from_secs(3)), None, "no member came up");
        assert!(leader.members().is_empty());
        assert!(stranger.members().is_empty());
        drop(stranger);
        // The same machine and port with the convention's secret joins.
        let friend = MemberNode::start(
            addr,
            addr,
            links(),
            Some(leader.me().addr),
            Capabilities::new(),
            None,
            None,
        )
        .unwrap();
        wait_until(&leader, |m| m == [friend.me().clone()], Duration::from_secs(10));
    }

    #[test]
    fn a_member_started_before_its_leader_joins_when_the_leader_comes() {
        let leader_addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let early = node("127.0.0.2", Some(leader_addr));
        assert_eq!(early.next_event(Duration::from_millis(1500)), None);
        let leader =
            MemberNode::start(leader_addr, leader_addr, links(), None, Capabilities::new(), None, None).unwrap();
        wait_until(&leader, |m| m == [early.me().clone()], Duration::from_secs(10));
    }

    #[test]
    fn stopping_returns_promptly_when_the_advertised_address_is_not_the_listening_one() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let advertise: SocketAddr = format!("127.0.0.9:{port}").parse().unwrap();
        let node = MemberNode::start(listen, advertise, links(), None, Capabilities::new(), None, None).unwrap();
        let started = Instant::now();
        drop(node);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn refused_links_are_logged_at_a_bounded_rate() {
        let mut log = RefusalLog::default();
        let e = failed("a stranger");
        let logged = (0..100).filter(|_| log.refused(&e)).count();
        assert_eq!(logged, REFUSALS_LOGGED as usize);
        assert_eq!(log.suppressed, 100 - REFUSALS_LOGGED);
        log.window_start -= REFUSAL_WINDOW;
        assert!(log.refused(&e), "a new window logs again");
        assert_eq!(log.suppressed, 0);
    }

    #[test]
    fn connections_that_end_leave_no_handle_behind() {
        let node = node("127.0.0.1", None);
        for _ in 0..100 {
            drop(TcpStream::connect(node.listening).unwrap());
        }
        let started = Instant::now();
        loop {
            let open = node.accepted.lock().unwrap().len();
            if open == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{open} handles still kept");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
