//! The data path of one endpoint (an actor host or a client): its listening socket, the
//! connections other endpoints opened to it, the connections it opened to them, and its
//! control connection to the admin — all in one `mio` poll, on one thread.
//!
//! ## Connections are one-way and numbered
//! A data connection carries messages from the endpoint that opened it to the endpoint that
//! accepted it; acknowledgements flow back. A reply therefore travels on the replier's own
//! connection, opened lazily to the asker's socket and cached. Because each sender uses one
//! connection per receiver, messages from one sender to one receiver arrive in order.
//!
//! ```text
//!  sender                                   receiver
//!  OutConn ── Handshake{Data{from,to}} ──▶ InConn   (peer uid checked at accept)
//!          ◀── HandshakeReply ──────────
//!          ── Message{seq: 1, payload} ─▶           (many frames per write)
//!          ── Message{seq: 2, payload} ─▶
//!          ◀── Ack{upto: 2} ─────────────           (after processing; batched)
//! ```
//!
//! ## Nothing is forgotten until it is processed
//! A sender keeps the encoded bytes of every message until the receiver acknowledges it as
//! *processed* (not merely read). Acks are cumulative and batched: one every
//! [`ACK_BATCH`] messages, or when the receiver is about to sleep (its spin found nothing
//! more to do, see `net/spin.rs`), and at the latest [`ACK_DELAY`] after the first message
//! left unacknowledged — never a write per message while messages keep coming. When a connection ends, the endpoint asks the admin what became of the peer
//! (`ActorStatus { settle: Some(incarnation) }`); if the peer is gone for good, every unacknowledged
//! message is handed back as [`Inbound::PeerLost`], so the caller can dead-letter it or fail
//! the `ask` waiting on it at once.

use std::{
    collections::VecDeque,
    io::{self, IoSlice, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::pending::{accept_failure, AcceptRetry, Pending, ACCEPT_RETRY};
use greenroom_protocol::{
    encode_frame, frame::decode, ActorState, Address, Capabilities, ChildSpec, Correlation, DataFrame, DataReply,
    ExitCause, FrameReader, FromAdmin, Handshake, HandshakeReply, NodeId, PeerRole, ProtocolError, ReadUntil, Recovery,
    ToAdmin, MAX_HANDSHAKE_FRAME,
};
use mio::{
    net::{UnixListener, UnixStream},
    Events, Interest, Poll, Token,
};
use rustc_hash::FxHashMap as HashMap;

use super::{
    framed::{Framed, READ_BUDGET},
    peer::check_same_user,
    set_write_interest,
    spin::Spinner,
    Ready,
};
use crate::{
    error::{Error, Result},
    ledger::Ledger,
    message::{AnyMessage, PoisonMessage},
    runtime_dir,
};

/// Acknowledge after this many processed messages even if more keep coming.
pub const ACK_BATCH: u64 = 64;
pub use super::pending::HANDSHAKE_TIMEOUT;
/// Acknowledge at the latest this long after a processed message if no batch filled up
/// and the endpoint never went to sleep.
pub const ACK_DELAY: Duration = Duration::from_millis(10);

const CONTROL: Token = Token(0);
const LISTENER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// The token of the endpoint's [`Endpoint::waker`]: another thread wants the endpoint.
const WAKER: Token = Token(usize::MAX - 1);

/// Something that arrived for this endpoint.
#[derive(Debug)]
pub enum Inbound {
    /// A message from another endpoint. Report it processed with [`Endpoint::processed`].
    Message {
        sender: Address,
        msg: AnyMessage,
        receipt: Receipt,
        /// Whether it is a request, an ask, or the answer to one of ours.
        correlation: Correlation,
    },
    /// A frame from the admin that nobody was waiting for as a reply.
    Control(FromAdmin),
    /// The connection to `peer` ended and the peer will not come back.
    PeerLost {
        peer: Address,
        cause: LostCause,
        /// Messages sent to the peer that it never processed, oldest first.
        returned: Vec<Returned>,
    },
    /// The control connection to the admin ended.
    AdminLost,
}

/// Identifies a received message, to record it in the ledger and acknowledge it.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    token: Token,
    seq: u64,
    sender: u64,
    slot: Option<u32>,
}

/// The token of no connection: receipts for messages made up locally (a returned poison).
const NO_CONN: Token = Token(usize::MAX);

impl Receipt {
    fn local() -> Self {
        Receipt {
            token: NO_CONN,
            seq: 0,
            sender: 0,
            slot: None,
        }
    }
}

/// Why a peer will not come back.
#[derive(Debug, Clone)]
pub enum LostCause {
    Gone(ExitCause),
    Unknown,
    /// A link to the receiver's member broke while the receiver lived: what was on its way
    /// may or may not have been processed.
    InDoubt,
    Refused(String),
    AdminGone,
}

impl LostCause {
    /// Why a request among the messages that came back got no answer.
    pub fn request_error(&self) -> crate::RequestError {
        use crate::RequestError as E;
        match self {
            LostCause::Gone(cause) => E::Gone { cause: cause.clone() },
            LostCause::Unknown => E::Unknown,
            LostCause::InDoubt => E::InDoubt,
            LostCause::Refused(why) => E::NotSent {
                why: format!("the receiver refused the connection: {why}"),
            },
            LostCause::AdminGone => E::NotSent {
                why: "the actor system's admin is gone".to_owned(),
            },
        }
    }

    pub fn into_error(self, peer: Address) -> Error {
        match self {
            LostCause::Gone(cause) => Error::ActorGone { address: peer, cause },
            LostCause::Unknown => Error::UnknownActor(peer),
            LostCause::InDoubt => Error::InDoubt(peer),
            LostCause::Refused(why) => Error::AdminProtocol(format!("{peer} refused our connection: {why}")),
            LostCause::AdminGone => Error::AdminGone,
        }
    }
}

/// A message handed back by [`Inbound::PeerLost`]: sent to a peer that never processed it.
#[derive(Debug, Clone)]
pub struct Returned {
    pub msg: AnyMessage,
    /// Which send it was (as [`Endpoint::send_correlated`] named it): equal messages are
    /// told apart by this.
    pub id: SentId,
    /// The correlation it was sent with (a request's or an ask's id, to fail that call).
    pub correlation: Correlation,
}

/// One message sent by this endpoint: its connection and its seq there. Unique for the
/// endpoint's life (connection tokens are never reused; a connection that reconnects keeps
/// its numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SentId {
    conn: Token,
    seq: u64,
}

/// How many receivers in doubt an endpoint remembers the numbering of (`resume_seq`).
const MAX_RESUMED_PEERS: usize = 4096;

/// The receiving side of a connection another endpoint opened to us.
struct InConn {
    stream: UnixStream,
    reader: FrameReader,
    /// Who is sending; `None` until its handshake has been read.
    peer: Option<Address>,
    /// The connecting process, as the kernel reported it at accept (for logs).
    peer_pid: i32,
    /// This connection's ledger slot, if one was free.
    slot: Option<u32>,
    last_seq: u64,
    /// The highest sequence number processed.
    processed: u64,
    /// Messages read but held back by the actor, in sequence order (see [`Endpoint::hold`]).
    held: VecDeque<u64>,
    acked: u64,
    out: Vec<u8>,
    out_pos: usize,
    /// Registered for writable events (only while acks wait for room; see [`set_write_interest`]).
    write_armed: bool,
}

impl InConn {
    /// Every message of this connection up to here has been processed: the highest one
    /// processed, short of the first still held back. Only this is acknowledged and written
    /// to the ledger, so a held message is never forgotten by its sender.
    fn done_upto(&self) -> u64 {
        match self.held.front() {
            Some(first) => self.processed.min(first - 1),
            None => self.processed,
        }
    }
}

/// The sending side of a connection we opened to a peer.
struct OutConn {
    peer: Address,
    /// `None` while we wait for the admin's word on a lost peer.
    stream: Option<UnixStream>,
    reader: FrameReader,
    accepted: bool,
    /// The incarnation that accepted the connection (0 until it did).
    incarnation: u32,
    hello: Vec<u8>,
    hello_written: usize,
    /// Encoded frames not yet acknowledged, oldest first; `bounds` splits them.
    frames: VecDeque<u8>,
    bounds: VecDeque<(u64, usize)>,
    /// How many bytes at the front of `frames` have been written.
    written: usize,
    next_seq: u64,
    /// Registered for writable events (only while frames wait for room; see
    /// [`set_write_interest`]).
    write_armed: bool,
}

enum Conn {
    In(InConn),
    Out(OutConn),
}

/// One endpoint's sockets. See the module docs.
pub struct Endpoint {
    poll: Poll,
    events: Events,
    ready: Vec<Ready>,
    me: Address,
    rundir: PathBuf,
    max_frame: u32,
    control: Framed,
    control_accepted: bool,
    control_open: bool,
    listener: Option<UnixListener>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    out_by_peer: HashMap<Address, Token>,
    /// For receivers of other nodes given up on in doubt: the seq a new connection to them
    /// starts at. A connection to a remote receiver may end while the receiver still holds
    /// messages of it (a broken link), so the numbering of its next one carries on rather
    /// than starting again at 1: the receiver's ledger, which keeps the highest seq done
    /// per sender, then never takes a new message for one it did before.
    resume_seq: HashMap<Address, u64>,
    inbox: VecDeque<Inbound>,
    next_request: u64,
    settling: HashMap<u64, Token>,
    rescan: Vec<Token>,
    dirty: Vec<Token>,
    ack_due: Option<Instant>,
    /// Connections with processed messages not yet acknowledged (may repeat).
    ack_pending: Vec<Token>,
    /// A connection was queued for writing while `pump` handled events (a reconnect).
    requeued: bool,
    spinner: Spinner,
    scratch: Vec<u8>,
    /// This host's delivery ledger (hosts only; clients keep none).
    ledger: Option<Ledger>,
    /// The incarnation of the actor this endpoint hosts (0 for clients).
    incarnation: u32,
    /// The system's capabilities as the admin last said (at welcome or start, then on each
    /// change): what `accepts` checks run against, without a round trip per create.
    capabilities: Capabilities,
    capabilities_version: u64,
    /// Accepted connections by the time their handshake must be complete, oldest first.
    handshake_deadlines: Pending,
    /// When to try `accept` again after it failed for lack of resources.
    accept_retry: AcceptRetry,
    /// The pid on the other end of the control connection: the admin's.
    admin_pid: Option<u32>,
}

impl Endpoint {
    /// Wraps a control connection to the admin and sends our handshake on it.
    pub fn new(control: std::os::unix::net::UnixStream, role: PeerRole, max_frame: u32) -> Result<Self> {
        let socket = socket_name(&role);
        // Who answers on the control connection, for an error that names it.
        let admin_pid = super::peer::peer_cred(&control).ok().map(|c| c.pid as u32);
        control
            .set_nonblocking(true)
            .map_err(Error::io("making the control socket non-blocking"))?;
        let mut control = Framed::new(UnixStream::from_std(control), max_frame);
        let mut hello = Vec::new();
        Handshake { role }
            .encode(&mut hello)
            .map_err(|e| Error::AdminProtocol(e.to_string()))?;
        control.queue_raw(&hello);
        let poll = Poll::new().map_err(Error::io("creating an epoll instance"))?;
        poll.registry()
            .register(&mut control.stream, CONTROL, Interest::READABLE | Interest::WRITABLE)
            .map_err(Error::io("registering the control socket"))?;
        let mut ep = Endpoint {
            poll,
            events: Events::with_capacity(256),
            ready: Vec::new(),
            me: Address::local(0),
            rundir: PathBuf::new(),
            max_frame,
            control,
            control_accepted: false,
            control_open: true,
            listener: None,
            conns: HashMap::default(),
            next_token: FIRST_CONN,
            out_by_peer: HashMap::default(),
            resume_seq: HashMap::default(),
            inbox: VecDeque::new(),
            next_request: 1,
            settling: HashMap::default(),
            rescan: Vec::new(),
            dirty: Vec::new(),
            ack_due: None,
            ack_pending: Vec::new(),
            requeued: false,
            spinner: Spinner::new(),
            scratch: Vec::new(),
            ledger: None,
            incarnation: 0,
            capabilities: Capabilities::new(),
            capabilities_version: 0,
            handshake_deadlines: Pending::new(crate::process_role::max_pending_connections(), socket),
            accept_retry: AcceptRetry::default(),
            admin_pid,
        };
        ep.flush_control();
        Ok(ep)
    }

    /// How many accepted connections may wait for their handshake at once (the default
    /// comes from the environment, see `process_role::max_pending_connections`).
    pub fn set_max_pending(&mut self, limit: usize) {
        self.handshake_deadlines.set_limit(limit);
    }

    /// The system's capabilities as this endpoint last heard them.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Grows each time the capabilities this endpoint knows change (not when they are set
    /// first), so a host can tell when to run its actor's check again.
    pub fn capabilities_version(&self) -> u64 {
        self.capabilities_version
    }

    /// Records the system's capabilities (from the welcome or start frame, or after this
    /// process changed one).
    pub fn set_capabilities(&mut self, capabilities: Capabilities) {
        self.capabilities = capabilities;
    }

    /// Asks the admin to set (`Some`) or remove one capability, and applies the change here
    /// at once, so that this process's next create sees it; the others hear from the admin.
    pub fn update_capability(&mut self, key: &str, value: Option<greenroom_protocol::Payload>) -> Result<()> {
        self.send_control(&ToAdmin::UpdateCapability {
            key: key.to_owned(),
            value: value.clone(),
        })?;
        let before = self.capabilities.clone();
        self.capabilities.set_encoded(key, value);
        if self.capabilities != before {
            self.capabilities_version += 1;
        }
        Ok(())
    }

    /// Sets who we are and starts accepting connections on `listener`. A host passes its
    /// incarnation and its delivery ledger.
    pub fn attach(
        &mut self,
        me: Address,
        rundir: &Path,
        max_frame: u32,
        listener: std::os::unix::net::UnixListener,
        hosted: Option<(u32, Ledger)>,
    ) -> Result<()> {
        if let Some((incarnation, ledger)) = hosted {
            self.incarnation = incarnation;
            self.ledger = Some(ledger);
        }
        listener
            .set_nonblocking(true)
            .map_err(Error::io("making the listening socket non-blocking"))?;
        let mut listener = UnixListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(Error::io("registering the listening socket"))?;
        self.listener = Some(listener);
        self.me = me;
        self.rundir = rundir.to_path_buf();
        self.max_frame = max_frame;
        Ok(())
    }

    /// A fresh request number for a control request.
    pub fn next_request(&mut self) -> u64 {
        let r = self.next_request;
        self.next_request += 1;
        r
    }

    /// The next thing that arrived, if any. Call [`Endpoint::pump`] to wait for more.
    pub fn next_inbound(&mut self) -> Option<Inbound> {
        self.inbox.pop_front()
    }

    /// A waker for this endpoint: `wake()` from another thread makes a [`Endpoint::pump`]
    /// in progress return at once (a client whose endpoint one thread waits on, while
    /// another thread wants to send).
    pub fn waker(&self) -> Result<mio::Waker> {
        mio::Waker::new(self.poll.registry(), WAKER).map_err(Error::io("creating an endpoint waker"))
    }

    /// Why the send `id` came back, if a [`Inbound::PeerLost`] still in the inbox hands it
    /// back (the inbox is left as it is).
    pub fn returned_send(&self, id: SentId) -> Option<LostCause> {
        self.inbox.iter().find_map(|inbound| match inbound {
            Inbound::PeerLost { cause, returned, .. } if returned.iter().any(|r| r.id == id) => Some(cause.clone()),
            _ => None,
        })
    }

    /// Sends a frame to the admin.
    pub fn send_control(&mut self, frame: &ToAdmin) -> Result<()> {
        if !self.control_open {
            return Err(Error::AdminGone);
        }
        self.control
            .queue(frame, "control frame")
            .map_err(|e| Error::AdminProtocol(e.to_string()))?;
        self.flush_control();
        Ok(())
    }

    /// Sends `request` to the admin and waits (up to `timeout`) for the answer that `is_reply`
    /// recognises. Everything else that arrives meanwhile stays queued, in order.
    pub fn control_request(
        &mut self,
        request: &ToAdmin,
        timeout: Duration,
        is_reply: impl Fn(&FromAdmin) -> bool,
    ) -> Result<FromAdmin> {
        self.send_control(request)?;
        self.wait_control(timeout, is_reply)
    }

    /// Waits for a control frame that `is_reply` recognises.
    pub fn wait_control(&mut self, timeout: Duration, is_reply: impl Fn(&FromAdmin) -> bool) -> Result<FromAdmin> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            for i in scanned..self.inbox.len() {
                match &self.inbox[i] {
                    Inbound::Control(f) if is_reply(f) => {
                        if let Some(Inbound::Control(f)) = self.inbox.remove(i) {
                            return Ok(f);
                        }
                        unreachable!("the element was just matched as a control frame");
                    }
                    Inbound::AdminLost => return Err(Error::AdminGone),
                    _ => {}
                }
            }
            scanned = self.inbox.len();
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::admin_not_answering(self.admin_pid, timeout));
            }
            self.pump(Some(deadline - now))?;
        }
    }

    /// Asks the admin to create an actor of `type_name` (this endpoint becomes its parent,
    /// unless it has a global name), here or (`on`) on another member of the convention, and
    /// waits for the answer.
    pub fn create_actor(
        &mut self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
        on: Option<NodeId>,
        timeout: Duration,
    ) -> Result<Address> {
        let request = self.next_request();
        let answer = self.control_request(
            &ToAdmin::CreateActor {
                request,
                type_name: type_name.to_owned(),
                spec,
                global_name: global_name.map(str::to_owned),
                requirements: requirements.clone(),
                on,
            },
            timeout,
            |f| matches!(f, FromAdmin::Created { request: r, .. } if *r == request),
        )?;
        match answer {
            FromAdmin::Created {
                result: Ok(address), ..
            } => Ok(address),
            FromAdmin::Created {
                result: Err(failure), ..
            } => Err(Error::Create {
                type_name: type_name.to_owned(),
                failure,
            }),
            other => Err(Error::AdminProtocol(format!("expected Created, got {other:?}"))),
        }
    }

    /// The other members of the convention (none in no convention) and their capabilities,
    /// as the admin knows them now, in the order of their addresses.
    pub fn convention_members(&mut self, timeout: Duration) -> Result<Vec<greenroom_protocol::ConventionMember>> {
        let request = self.next_request();
        let answer = self.control_request(
            &ToAdmin::ConventionMembers { request },
            timeout,
            |f| matches!(f, FromAdmin::ConventionMembers { request: r, .. } if *r == request),
        )?;
        match answer {
            FromAdmin::ConventionMembers { members, .. } => Ok(members),
            other => Err(Error::AdminProtocol(format!(
                "expected ConventionMembers, got {other:?}"
            ))),
        }
    }

    /// Hands messages this endpoint sent that can never reach `target` to the admin's
    /// dead-letter path. Notices and dead envelopes themselves are only logged, so that dead
    /// letters cannot loop.
    pub fn dead_letters(&mut self, target: Address, messages: Vec<AnyMessage>) {
        self.dead_letters_from(self.me, target, messages);
    }

    /// Like [`Endpoint::dead_letters`], for messages `sender` sent (to this endpoint, which
    /// can no longer take them: an answer whose request timed out, a full mailbox).
    pub fn dead_letters_from(&mut self, sender: Address, target: Address, messages: Vec<AnyMessage>) {
        use crate::message::{is_system_tag, Message, PoisonMessage};
        let (forward, drop): (Vec<AnyMessage>, Vec<AnyMessage>) = messages
            .into_iter()
            .partition(|m| !is_system_tag(m.tag()) && m.tag() != PoisonMessage::type_tag());
        for m in drop {
            tracing::warn!(endpoint = %self.me, target_actor = %target, %sender, message_type = m.tag(), "dead letter (not forwarded)");
        }
        if forward.is_empty() {
            return;
        }
        let frame = ToAdmin::DeadLetters {
            target,
            sender,
            messages: forward.into_iter().map(AnyMessage::into_payload).collect(),
        };
        if let Err(e) = self.send_control(&frame) {
            tracing::warn!(endpoint = %self.me, target_actor = %target, error = %e, "dead letters lost with the admin");
        }
    }

    /// Sends `msg` to `to` like [`Endpoint::send_correlated`]; if `to` is gone for good or
    /// was never created, the message goes to the dead-letter path as well as the error
    /// coming back: it never reached anyone, and is not for silence. With a `window`, it
    /// fails with [`Error::Backpressure`] instead of queueing when `to` already holds
    /// `window` bytes of this endpoint's unprocessed messages (a message bigger than the
    /// window still goes when nothing else is outstanding).
    pub fn send_live(
        &mut self,
        to: Address,
        msg: &AnyMessage,
        correlation: Correlation,
        window: Option<usize>,
    ) -> Result<SentId> {
        match self.enqueue(to, msg, correlation, window) {
            Err(e @ (Error::ActorGone { .. } | Error::UnknownActor(_))) => {
                tracing::debug!(endpoint = %self.me, target_actor = %to, message_type = msg.tag(), reason = %e, "dead letter");
                self.dead_letters(to, vec![msg.clone()]);
                Err(e)
            }
            sent => sent,
        }
    }

    /// Queues `msg` for `to` as a plain message. It is written by the next
    /// [`Endpoint::flush`].
    ///
    /// Fails at once if `to` is known to be gone or was never created.
    pub fn send(&mut self, to: Address, msg: &AnyMessage) -> Result<()> {
        self.enqueue(to, msg, Correlation::None, None).map(drop)
    }

    /// Like [`Endpoint::send`], with a correlation (a request, an ask, or an answer), and
    /// names the send, so that the caller can tell whether this very message is among those
    /// a [`Inbound::PeerLost`] hands back.
    pub fn send_correlated(&mut self, to: Address, msg: &AnyMessage, correlation: Correlation) -> Result<SentId> {
        self.enqueue(to, msg, correlation, None)
    }

    fn enqueue(
        &mut self,
        to: Address,
        msg: &AnyMessage,
        correlation: Correlation,
        window: Option<usize>,
    ) -> Result<SentId> {
        let token = match self.out_by_peer.get(&to) {
            Some(t) => *t,
            None => self.open(to)?,
        };
        let max = self.max_frame;
        let Some(Conn::Out(conn)) = self.conns.get_mut(&token) else {
            unreachable!("out_by_peer always names an out connection");
        };
        let outstanding = conn.frames.len();
        if let Some(limit) = window {
            if outstanding > 0 && outstanding + msg.encoded_len() > limit {
                return Err(Error::Backpressure {
                    address: to,
                    bytes: outstanding,
                    limit,
                });
            }
        }
        let seq = conn.next_seq;
        self.scratch.clear();
        let len =
            DataFrame::encode_message(&mut self.scratch, seq, correlation, msg.payload(), max).map_err(|source| {
                Error::Protocol {
                    peer: to.to_string(),
                    source,
                }
            })?;
        conn.next_seq += 1;
        conn.frames.extend(self.scratch.iter().copied());
        conn.bounds.push_back((seq, len));
        if self.dirty.last() != Some(&token) {
            self.dirty.push(token);
        }
        Ok(SentId { conn: token, seq })
    }

    /// Bytes sent to `to` that it has not yet acknowledged as processed.
    pub fn unacked_bytes(&self, to: Address) -> usize {
        match self.out_by_peer.get(&to).and_then(|t| self.conns.get(t)) {
            Some(Conn::Out(c)) => c.frames.len(),
            _ => 0,
        }
    }

    /// Records in the ledger that the message behind `receipt` is about to be processed, with
    /// `held_back` more messages waiting outside the inbox (a troupe manager's).
    pub fn begin(&self, receipt: &Receipt, held_back: usize) {
        if let Some(ledger) = &self.ledger {
            ledger.set_queued((self.inbox.len() + held_back) as u64);
            if receipt.token != NO_CONN {
                ledger.begin(receipt.sender, receipt.seq);
            }
        }
    }

    /// Whether a lost connection waits for the admin's word on its peer (after which its
    /// messages are sent again, returned, or handed back as `PeerLost`).
    pub fn is_settling(&self) -> bool {
        !self.settling.is_empty()
    }

    /// Records a troupe manager's load in the ledger, for `greenroom status`.
    pub fn record_troupe_load(&self, load: greenroom_protocol::TroupeLoad) {
        if let Some(ledger) = &self.ledger {
            ledger.set_troupe(load);
        }
    }

    /// Records that the actor holds back the message behind `receipt` for now: it stays
    /// unacknowledged (and out of the ledger's done mark) until [`Endpoint::processed`], even
    /// if later messages of its connection are processed first. Should this process die
    /// meanwhile, its sender sends it again to the next incarnation.
    pub fn hold(&mut self, receipt: &Receipt) {
        if let Some(Conn::In(conn)) = self.conns.get_mut(&receipt.token) {
            conn.held.push_back(receipt.seq);
        }
    }

    /// Records that the message behind `receipt` has been processed (acknowledged in batches,
    /// or at once when the ledger had no slot for its connection).
    pub fn processed(&mut self, receipt: Receipt) {
        if receipt.token == NO_CONN {
            return;
        }
        let Some(Conn::In(conn)) = self.conns.get_mut(&receipt.token) else {
            // The connection is gone (and its ledger slot perhaps reused by the sender's next
            // one): only the busy mark is cleared.
            if let Some(ledger) = &self.ledger {
                ledger.end(None, receipt.sender, receipt.seq);
            }
            return;
        };
        if let Some(at) = conn.held.iter().position(|seq| *seq == receipt.seq) {
            conn.held.remove(at);
        }
        conn.processed = conn.processed.max(receipt.seq);
        let done_upto = conn.done_upto();
        if let Some(ledger) = &self.ledger {
            ledger.end(receipt.slot, receipt.sender, done_upto);
        }
        let unrecorded = self.ledger.is_some() && receipt.slot.is_none();
        if unrecorded || done_upto.saturating_sub(conn.acked) >= ACK_BATCH {
            self.send_ack(receipt.token);
        } else {
            if self.ack_pending.last() != Some(&receipt.token) {
                self.ack_pending.push(receipt.token);
            }
            if self.ack_due.is_none() {
                self.ack_due = Some(Instant::now() + ACK_DELAY);
            }
        }
    }

    /// Writes everything queued, as far as the sockets take it without blocking. Connections
    /// that would block stay in `dirty` until a writable event lets them finish.
    pub fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        dirty.retain(|token| self.write_out(*token));
        // Writing may have queued more (a reconnect after a lost peer).
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
        self.flush_control();
    }

    /// Whether any queued-but-unwritten bytes remain (data or control).
    pub fn has_unwritten(&self) -> bool {
        self.control.has_pending_output() || !self.dirty.is_empty()
    }

    /// Writes everything queued, waiting as long as it takes for slow readers, while still
    /// reading (into the inbox, unprocessed) so that two endpoints writing to each other
    /// cannot deadlock. A host calls this after each message, before recording the message
    /// as done: what an actor sent is part of what "processed" means.
    pub fn flush_all(&mut self) -> Result<()> {
        self.flush();
        while self.has_unwritten() {
            self.pump(Some(Duration::from_millis(100)))?;
            self.flush();
        }
        Ok(())
    }

    /// Flushes and keeps pumping until everything is written or `deadline` passes.
    pub fn flush_blocking(&mut self, deadline: Instant) {
        self.flush_acks();
        loop {
            self.flush();
            if !self.has_unwritten() {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(endpoint = %self.me, "gave up flushing unwritten messages at the deadline");
                return;
            }
            if self
                .pump(Some((deadline - now).min(Duration::from_millis(50))))
                .is_err()
            {
                return;
            }
        }
    }

    /// Waits up to `timeout` (forever if `None`) for socket activity and turns it into
    /// [`Inbound`] items. Returns early as soon as anything happened.
    pub fn pump(&mut self, timeout: Option<Duration>) -> Result<()> {
        let start = Instant::now();
        let mut ready = std::mem::take(&mut self.ready);
        let spin_timeout = self.wait_timeout(timeout);
        let spun = self
            .spinner
            .spin(&mut self.poll, &mut self.events, spin_timeout, &mut ready)
            .map_err(Error::io("waiting for socket events"))?;
        if !spun {
            // About to sleep: acknowledge what was processed now rather than be woken again
            // by the ack timer (an idle actor's every message used to cost it two wake-ups).
            // A busy endpoint still batches: its spin finds the next message first.
            self.flush_acks();
            let timeout = self.wait_timeout(timeout.map(|t| t.saturating_sub(start.elapsed())));
            self.spinner
                .block(&mut self.poll, &mut self.events, timeout, &mut ready)
                .map_err(Error::io("waiting for socket events"))?;
        }
        let rescan = std::mem::take(&mut self.rescan);
        for token in rescan {
            self.on_readable(token, ReadUntil::WouldBlock);
        }
        for &Ready {
            token,
            readable,
            hung_up,
            writable,
        } in &ready
        {
            match token {
                CONTROL => {
                    if writable {
                        self.flush_control();
                    }
                    if readable {
                        self.read_control();
                    }
                }
                LISTENER => self.accept_all(),
                // Another thread wants the endpoint: returning is all it takes.
                WAKER => {}
                token => {
                    if writable {
                        if !self.write_out(token) {
                            self.dirty.retain(|t| *t != token);
                        }
                        self.write_in_replies(token);
                    }
                    if readable {
                        let until = if hung_up {
                            ReadUntil::WouldBlock
                        } else {
                            ReadUntil::ShortRead
                        };
                        self.on_readable(token, until);
                    }
                }
            }
        }
        self.ready = ready;
        let now = Instant::now();
        self.expire_handshakes(now);
        if self.accept_retry.due(now) {
            self.accept_all();
        }
        if self.ack_due.is_some_and(|due| Instant::now() >= due) {
            self.flush_acks();
        }
        // What was queued while handling events (a reconnect's resend) is written now: a
        // data socket reports room only after a write has blocked (see
        // `set_write_interest`), so no later event would start it. (Connections already
        // waiting for room are not tried again here: their writable event will come.)
        if std::mem::take(&mut self.requeued) {
            self.flush();
        }
        Ok(())
    }

    /// Sends every pending acknowledgement now.
    pub fn flush_acks(&mut self) {
        self.ack_due = None;
        let mut tokens = std::mem::take(&mut self.ack_pending);
        tokens.sort_unstable();
        tokens.dedup();
        for &t in &tokens {
            if matches!(self.conns.get(&t), Some(Conn::In(i)) if i.done_upto() > i.acked) {
                self.send_ack(t);
            }
        }
        tokens.clear();
        self.ack_pending = tokens;
    }

    /// How long a wait may last: the caller's `timeout`, cut short by the endpoint's own
    /// deadlines (the ack timer, an accept retry, a pending handshake), zero when a
    /// connection must be read again.
    fn wait_timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        if !self.rescan.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        [
            self.ack_due,
            self.accept_retry.deadline(),
            self.handshake_deadlines.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .map(|at| at.saturating_duration_since(now))
        .chain(timeout)
        .min()
    }

    // ---- opening and losing out connections ----

    /// Where to connect to reach `to`: its own socket, or for an address of another node
    /// (in a convention), this system's gateway, which carries the connection on.
    fn path_of(&self, to: Address) -> PathBuf {
        if to.node() == self.me.node() {
            runtime_dir::socket_path(&self.rundir, to)
        } else {
            runtime_dir::gateway_socket_path(&self.rundir)
        }
    }

    fn open(&mut self, to: Address) -> Result<Token> {
        let path = self.path_of(to);
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
                return Err(self.why_unreachable(to));
            }
            Err(e) => return Err(Error::io(format!("connecting to {to} at {}", path.display()))(e)),
        };
        let token = Token(self.next_token);
        self.next_token += 1;
        let mut hello = Vec::new();
        Handshake {
            role: PeerRole::Data { from: self.me, to },
        }
        .encode(&mut hello)
        .map_err(|source| Error::Protocol {
            peer: to.to_string(),
            source,
        })?;
        let mut conn = OutConn {
            peer: to,
            stream: Some(stream),
            reader: FrameReader::new(self.max_frame),
            accepted: false,
            incarnation: 0,
            hello,
            hello_written: 0,
            frames: VecDeque::new(),
            bounds: VecDeque::new(),
            written: 0,
            next_seq: self.resume_seq.remove(&to).unwrap_or(1),
            write_armed: false,
        };
        if let Some(s) = conn.stream.as_mut() {
            self.poll
                .registry()
                .register(s, token, Interest::READABLE)
                .map_err(Error::io("registering a data connection"))?;
        }
        self.conns.insert(token, Conn::Out(conn));
        self.out_by_peer.insert(to, token);
        Ok(token)
    }

    /// What the admin knows of `actor` now: (state, host pid, incarnation).
    pub fn actor_status(&mut self, actor: Address, timeout: Duration) -> Result<(ActorState, Option<u32>, u32)> {
        let request = self.next_request();
        let answer = self.control_request(
            &ToAdmin::ActorStatus {
                request,
                actor,
                settle: None,
            },
            timeout,
            |f| matches!(f, FromAdmin::Status { request: r, .. } if *r == request),
        )?;
        match answer {
            FromAdmin::Status {
                state,
                pid,
                incarnation,
                ..
            } => Ok((state, pid, incarnation)),
            other => Err(Error::AdminProtocol(format!("expected Status, got {other:?}"))),
        }
    }

    /// Asks the admin why `to` has no socket, and turns the answer into an error.
    fn why_unreachable(&mut self, to: Address) -> Error {
        match self.actor_status(to, Duration::from_secs(30)) {
            Ok((ActorState::Gone(cause), ..)) => Error::ActorGone { address: to, cause },
            Ok((ActorState::Unknown, ..)) => Error::UnknownActor(to),
            Ok((state, ..)) => Error::AdminProtocol(format!("{to} has no socket but the admin reports {state:?}")),
            Err(e) => e,
        }
    }

    /// The connection to a peer ended: find out from the admin whether it comes back.
    fn out_lost(&mut self, token: Token, why: &str) {
        let Some(Conn::Out(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let peer = conn.peer;
        let incarnation = conn.incarnation;
        tracing::debug!(endpoint = %self.me, %peer, why, unacked = conn.bounds.len(), "data connection ended");
        if !self.control_open {
            self.give_up(token, LostCause::AdminGone);
            return;
        }
        let request = self.next_request();
        self.settling.insert(request, token);
        if self
            .send_control(&ToAdmin::ActorStatus {
                request,
                actor: peer,
                settle: Some(incarnation),
            })
            .is_err()
        {
            self.settling.remove(&request);
            self.give_up(token, LostCause::AdminGone);
        }
    }

    /// The peer is not coming back: hand back what it never processed.
    fn give_up(&mut self, token: Token, cause: LostCause) {
        let Some(Conn::Out(mut conn)) = self.conns.remove(&token) else {
            return;
        };
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        if self.out_by_peer.get(&conn.peer) == Some(&token) {
            self.out_by_peer.remove(&conn.peer);
        }
        // A remote receiver that is not gone for good may still hold messages of this
        // connection: the next one carries on the numbering. (Bounded: past this many, one
        // entry makes room; a receiver in doubt that long has long read what it held.)
        if conn.peer.node() != self.me.node() && !matches!(cause, LostCause::Gone(_)) {
            if self.resume_seq.len() >= MAX_RESUMED_PEERS {
                if let Some(old) = self.resume_seq.keys().next().copied() {
                    self.resume_seq.remove(&old);
                }
            }
            self.resume_seq.insert(conn.peer, conn.next_seq);
        }
        // The retained bytes are whole frames: read them back with the protocol's own reader.
        let (a, b) = conn.frames.as_slices();
        let returned = retained_messages(token, &[a, b]);
        self.inbox.push_back(Inbound::PeerLost {
            peer: conn.peer,
            cause,
            returned,
        });
    }

    /// The remote peer's admin cannot say what it processed of the lost connection (a link
    /// broke while the peer lived): what reached the wire may or may not have been
    /// processed, and is handed back; what never left — sent while the answer was awaited
    /// — goes on a new connection, so that a broken link costs only what was in flight.
    fn in_doubt(&mut self, token: Token) {
        let Some(Conn::Out(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        // Whole frames that were written before the loss; a frame cut short never arrived.
        let (mut sent_bytes, mut sent_frames) = (0, 0);
        for &(_, len) in &conn.bounds {
            if sent_bytes + len > conn.written {
                break;
            }
            sent_bytes += len;
            sent_frames += 1;
        }
        if sent_frames == conn.bounds.len() {
            self.give_up(token, LostCause::InDoubt);
            return;
        }
        let doubtful: Vec<u8> = conn.frames.drain(..sent_bytes).collect();
        conn.bounds.drain(..sent_frames);
        conn.written = 0;
        let peer = conn.peer;
        let returned = retained_messages(token, &[&doubtful]);
        if !returned.is_empty() {
            self.inbox.push_back(Inbound::PeerLost {
                peer,
                cause: LostCause::InDoubt,
                returned,
            });
        }
        self.reconnect(token);
    }

    /// The admin answered a settle query for a lost connection.
    fn settled(&mut self, token: Token, state: ActorState, recovery: Option<Recovery>, in_doubt: bool) {
        if let Some(recovery) = recovery {
            self.recover(token, &recovery);
        }
        match state {
            ActorState::Gone(cause) => self.give_up(token, LostCause::Gone(cause)),
            ActorState::Unknown if in_doubt => self.in_doubt(token),
            ActorState::Unknown => self.give_up(token, LostCause::Unknown),
            ActorState::Starting | ActorState::Running | ActorState::Exiting | ActorState::Restarting => {
                self.reconnect(token)
            }
        }
    }

    /// Applies what the dead incarnation's ledger says about our messages: forget the ones it
    /// processed, and return the one it died processing to ourselves as a [`PoisonMessage`]
    /// (it may be what killed it, so it is not sent again).
    fn recover(&mut self, token: Token, recovery: &Recovery) {
        let Some(Conn::Out(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        let mut processed_bytes = 0;
        while let Some(&(seq, len)) = conn.bounds.front() {
            if recovery.processed_upto.is_none_or(|p| seq > p) {
                break;
            }
            processed_bytes += len;
            conn.bounds.pop_front();
        }
        conn.frames.drain(..processed_bytes);
        conn.written = 0;
        let Some(in_flight) = recovery.in_flight else { return };
        let Some(&(seq, len)) = conn.bounds.front() else { return };
        if seq != in_flight {
            return;
        }
        conn.bounds.pop_front();
        let frame: Vec<u8> = conn.frames.drain(..len).collect();
        let peer = conn.peer;
        let Some(Returned {
            msg: message,
            correlation,
            ..
        }) = retained_messages(token, &[&frame]).pop()
        else {
            return;
        };
        let poison = PoisonMessage {
            message,
            details: format!("{peer}'s process died while processing it ({})", recovery.cause),
        };
        tracing::warn!(endpoint = %self.me, %peer, message_type = poison.message.tag(), cause = %recovery.cause,
            "returning the message the receiver died on to its sender");
        match AnyMessage::new(&poison) {
            // The answer to a request or an ask that died: it fails that call.
            Ok(msg) => self.inbox.push_back(Inbound::Message {
                sender: peer,
                msg,
                receipt: Receipt::local(),
                correlation: correlation.answer(),
            }),
            Err(e) => tracing::error!(error = %e, "could not encode a PoisonMessage"),
        }
    }

    /// The peer is back (a new incarnation at the same address): resend what it never
    /// acknowledged, in order, on a fresh connection.
    fn reconnect(&mut self, token: Token) {
        let Some(Conn::Out(conn)) = self.conns.get(&token) else {
            return;
        };
        let path = self.path_of(conn.peer);
        let Some(Conn::Out(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        match UnixStream::connect(&path) {
            Ok(mut s) => {
                if self
                    .poll
                    .registry()
                    .register(&mut s, token, Interest::READABLE)
                    .is_err()
                {
                    self.give_up(
                        token,
                        LostCause::Refused("could not register the new connection".into()),
                    );
                    return;
                }
                conn.stream = Some(s);
                conn.write_armed = false;
                conn.reader = FrameReader::new(self.max_frame);
                conn.accepted = false;
                conn.incarnation = 0;
                conn.hello_written = 0;
                conn.written = 0;
                self.dirty.push(token);
                self.requeued = true;
            }
            Err(e) => {
                let cause = LostCause::Refused(format!("reconnect to {} failed: {e}", path.display()));
                self.give_up(token, cause);
            }
        }
    }

    // ---- reading and writing ----

    fn on_readable(&mut self, token: Token, until: ReadUntil) {
        match self.conns.get(&token) {
            Some(Conn::In(_)) => self.read_in(token, until),
            Some(Conn::Out(_)) => self.read_out(token, until),
            None => {}
        }
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, _) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds or memory: see `AcceptRetry`.
                    let process = if self.incarnation > 0 {
                        "this actor host"
                    } else {
                        "this client"
                    };
                    self.accept_retry.failed(Instant::now());
                    let why = accept_failure(&e, process);
                    if self.handshake_deadlines.logs.refused.allow() {
                        tracing::warn!(endpoint = %self.me, error = %why, retry_in = ?ACCEPT_RETRY, "accept failed");
                    }
                    return;
                }
            };
            let cred = match check_same_user(&stream) {
                Ok(cred) => cred,
                Err(reason) => {
                    if self.handshake_deadlines.logs.refused.allow() {
                        tracing::warn!(endpoint = %self.me, %reason, "refused a data connection");
                    }
                    continue;
                }
            };
            if !self.handshake_deadlines.admit(awaiting_handshake(&self.conns)) {
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                tracing::warn!(endpoint = %self.me, error = %e, "could not register an accepted connection");
                continue;
            }
            self.conns.insert(
                token,
                Conn::In(InConn {
                    stream,
                    // Until its handshake is accepted, a connection may not make this
                    // process buffer more than a handshake needs.
                    reader: FrameReader::new(MAX_HANDSHAKE_FRAME),
                    peer: None,
                    peer_pid: cred.pid,
                    slot: None,
                    last_seq: 0,
                    processed: 0,
                    held: VecDeque::new(),
                    acked: 0,
                    out: Vec::new(),
                    out_pos: 0,
                    write_armed: false,
                }),
            );
            // Data may already be waiting; edge-triggered readiness would not tell us again.
            self.rescan.push(token);
            self.handshake_deadlines.push(token);
        }
    }

    /// Closes accepted connections that have not completed their handshake in time, so
    /// that peers which connect and stall cannot pile up.
    fn expire_handshakes(&mut self, now: Instant) {
        for token in self.handshake_deadlines.expired(now, awaiting_handshake(&self.conns)) {
            if let Some(Conn::In(conn)) = self.conns.get(&token) {
                if self.handshake_deadlines.logs.timed_out.allow() {
                    tracing::warn!(endpoint = %self.me, peer_pid = conn.peer_pid, timeout = ?HANDSHAKE_TIMEOUT,
                        "closing a connection that did not complete its handshake in time");
                }
            }
            self.close_in(token);
        }
    }

    fn read_in(&mut self, token: Token, until: ReadUntil) {
        let me = self.me;
        let Some(Conn::In(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        let fill = match conn.reader.fill_from(&mut conn.stream, READ_BUDGET, until) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(endpoint = %me, error = %e, "data connection read failed");
                self.close_in(token);
                return;
            }
        };
        let mut failure: Option<String> = None;
        loop {
            let body = match conn.reader.next_frame() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            };
            match conn.peer {
                None => match Handshake::decode(body) {
                    Ok(Handshake {
                        role: PeerRole::Data { from, to },
                    }) if to == me => {
                        conn.peer = Some(from);
                        // Accepted: what follows (pipelined behind the handshake) may be
                        // as large as any frame.
                        conn.reader.set_max_frame(self.max_frame);
                        conn.slot = self.ledger.as_mut().and_then(|l| l.claim(ledger_key(self.me, from)));
                        let _ = HandshakeReply {
                            refusal: None,
                            incarnation: self.incarnation,
                        }
                        .encode(&mut conn.out);
                    }
                    Ok(Handshake { role }) => {
                        let why = format!("unexpected handshake {role:?} on {me}'s data socket");
                        let _ = HandshakeReply {
                            refusal: Some(why.clone()),
                            incarnation: self.incarnation,
                        }
                        .encode(&mut conn.out);
                        failure = Some(why);
                        break;
                    }
                    Err(e) => {
                        let _ = HandshakeReply {
                            refusal: Some(e.to_string()),
                            incarnation: self.incarnation,
                        }
                        .encode(&mut conn.out);
                        failure = Some(format!("bad handshake: {e}"));
                        break;
                    }
                },
                Some(sender) => match decode::<DataFrame>(body, "data frame") {
                    Ok(DataFrame::Message {
                        seq,
                        correlation,
                        payload,
                    }) => {
                        if seq == 0 || (conn.last_seq != 0 && Some(seq) != conn.last_seq.checked_add(1)) {
                            failure = Some(format!("message {seq} after {}: sequence broken", conn.last_seq));
                            break;
                        }
                        if conn.last_seq == 0 {
                            // First message on this connection (possibly a resend after a
                            // reconnect): everything before it was settled elsewhere.
                            conn.processed = seq - 1;
                            conn.acked = seq - 1;
                        }
                        conn.last_seq = seq;
                        self.inbox.push_back(Inbound::Message {
                            sender,
                            msg: AnyMessage::from_payload(payload),
                            receipt: Receipt {
                                token,
                                seq,
                                sender: ledger_key(self.me, sender),
                                slot: conn.slot,
                            },
                            correlation,
                        });
                    }
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                },
            }
        }
        if fill.eof && failure.is_none() {
            if let Err(e) = conn.reader.finish() {
                failure = Some(e.to_string());
            }
        }
        if !conn.out.is_empty() {
            self.write_in_replies(token);
        }
        if let Some(reason) = failure {
            let peer = match self.conns.get(&token) {
                Some(Conn::In(c)) => match c.peer {
                    Some(p) => format!("{p} (pid {})", c.peer_pid),
                    None => format!("pid {} before its handshake", c.peer_pid),
                },
                _ => String::new(),
            };
            if self.handshake_deadlines.logs.broke_protocol.allow() {
                tracing::warn!(endpoint = %me, %peer, %reason, "closing a data connection that broke the protocol");
            }
            self.close_in(token);
        } else if fill.eof {
            self.close_in(token);
        } else if fill.bytes >= READ_BUDGET {
            self.rescan.push(token);
        }
    }

    fn close_in(&mut self, token: Token) {
        if let Some(Conn::In(mut c)) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if let (Some(slot), Some(ledger)) = (c.slot, self.ledger.as_mut()) {
                ledger.release(slot);
            }
        }
    }

    fn send_ack(&mut self, token: Token) {
        let Some(Conn::In(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        let upto = conn.done_upto();
        if upto <= conn.acked {
            return;
        }
        if encode_frame(&mut conn.out, &DataReply::Ack { upto }, u32::MAX, "ack").is_ok() {
            conn.acked = upto;
        }
        self.write_in_replies(token);
    }

    fn write_in_replies(&mut self, token: Token) {
        let Some(Conn::In(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        let mut blocked = false;
        while conn.out_pos < conn.out.len() {
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => break,
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                // The sender went away; it will learn the outcome from the admin.
                Err(_) => break,
            }
        }
        if !blocked {
            conn.out.clear();
            conn.out_pos = 0;
        }
        set_write_interest(
            self.poll.registry(),
            &mut conn.stream,
            token,
            &mut conn.write_armed,
            blocked,
        );
    }

    fn read_out(&mut self, token: Token, until: ReadUntil) {
        let Some(Conn::Out(conn)) = self.conns.get_mut(&token) else {
            return;
        };
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let fill = match conn.reader.fill_from(stream, READ_BUDGET, until) {
            Ok(f) => f,
            Err(e) => {
                self.out_lost(token, &format!("read failed: {e}"));
                return;
            }
        };
        let mut refused: Option<String> = None;
        loop {
            let body = match conn.reader.next_frame() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    refused = Some(format!("peer broke the protocol: {e}"));
                    break;
                }
            };
            if !conn.accepted {
                match HandshakeReply::decode(body) {
                    Ok(HandshakeReply {
                        refusal: None,
                        incarnation,
                    }) => {
                        conn.accepted = true;
                        conn.incarnation = incarnation;
                    }
                    Ok(HandshakeReply { refusal: Some(why), .. }) => {
                        refused = Some(why);
                        break;
                    }
                    Err(e) => {
                        refused = Some(format!("bad handshake reply: {e}"));
                        break;
                    }
                }
                continue;
            }
            match decode::<DataReply>(body, "data reply") {
                Ok(DataReply::Ack { upto }) => {
                    let mut drop_bytes = 0;
                    while let Some(&(seq, len)) = conn.bounds.front() {
                        if seq > upto {
                            break;
                        }
                        drop_bytes += len;
                        conn.bounds.pop_front();
                    }
                    conn.frames.drain(..drop_bytes);
                    conn.written = conn.written.saturating_sub(drop_bytes);
                }
                Err(e) => {
                    refused = Some(format!("peer broke the protocol: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = refused {
            let peer = conn.peer;
            tracing::error!(endpoint = %self.me, %peer, reason = %why, "peer refused our data connection");
            self.give_up(token, LostCause::Refused(why));
        } else if fill.eof {
            self.out_lost(token, "peer closed the connection");
        } else if fill.bytes >= READ_BUDGET {
            self.rescan.push(token);
        }
    }

    /// Writes what an out connection has queued; `true` if bytes remain for a later write —
    /// including while the peer is being settled after a lost connection: until they reach
    /// a socket, those bytes exist only in this process.
    fn write_out(&mut self, token: Token) -> bool {
        let Some(Conn::Out(conn)) = self.conns.get_mut(&token) else {
            return false;
        };
        if let Err(e) = write_out_conn(conn) {
            self.out_lost(token, &format!("write failed: {e}"));
        }
        match self.conns.get_mut(&token) {
            Some(Conn::Out(conn)) => {
                let blocked = conn.written < conn.frames.len() || conn.hello_written < conn.hello.len();
                match conn.stream.as_mut() {
                    Some(stream) => {
                        set_write_interest(self.poll.registry(), stream, token, &mut conn.write_armed, blocked);
                        blocked
                    }
                    // Waiting for the admin's word on a lost peer: the bytes are still ours.
                    None => conn.written < conn.frames.len(),
                }
            }
            _ => false,
        }
    }

    fn flush_control(&mut self) {
        if !self.control_open {
            return;
        }
        if let Err(e) = self.control.flush() {
            tracing::debug!(error = %e, "control connection write failed");
            // The admin may have written its last frames before closing: read them (and the
            // end of stream) first, so that a final answer is not lost behind the error.
            self.read_control();
            self.control_closed();
        }
    }

    fn read_control(&mut self) {
        loop {
            let outcome = match self.control.read() {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "control connection to the admin failed");
                    self.control_closed();
                    return;
                }
            };
            for body in outcome.frames {
                if !self.control_accepted {
                    match HandshakeReply::decode(&body) {
                        Ok(HandshakeReply { refusal: None, .. }) => self.control_accepted = true,
                        Ok(HandshakeReply { refusal: Some(why), .. }) => {
                            tracing::error!(reason = %why, "the admin refused this process");
                            self.control_closed();
                            return;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the admin's handshake reply is invalid");
                            self.control_closed();
                            return;
                        }
                    }
                    continue;
                }
                match decode::<FromAdmin>(&body, "control frame") {
                    Ok(FromAdmin::Status {
                        request,
                        state,
                        recovery,
                        in_doubt,
                        ..
                    }) if self.settling.contains_key(&request) => {
                        if let Some(token) = self.settling.remove(&request) {
                            self.settled(token, state, recovery, in_doubt);
                        }
                    }
                    Ok(FromAdmin::CapabilitiesChanged { capabilities }) => {
                        if capabilities != self.capabilities {
                            self.capabilities = capabilities;
                            self.capabilities_version += 1;
                        }
                    }
                    Ok(frame) => self.inbox.push_back(Inbound::Control(frame)),
                    Err(e) => {
                        tracing::error!(error = %e, "undecodable frame from the admin");
                        self.control_closed();
                        return;
                    }
                }
            }
            if outcome.closed {
                self.control_closed();
                return;
            }
            if !outcome.more {
                return;
            }
        }
    }

    fn control_closed(&mut self) {
        if !self.control_open {
            return;
        }
        self.control_open = false;
        let _ = self.poll.registry().deregister(&mut self.control.stream);
        let waiting: Vec<Token> = self.settling.drain().map(|(_, t)| t).collect();
        for token in waiting {
            self.give_up(token, LostCause::AdminGone);
        }
        self.inbox.push_back(Inbound::AdminLost);
    }
}

/// Reads retained frames (whole frames, as a sender keeps them) back into messages, through
/// the protocol's own reader.
fn retained_messages(conn: Token, parts: &[&[u8]]) -> Vec<Returned> {
    let mut reader = FrameReader::new(u32::MAX);
    for part in parts {
        reader.push(part);
    }
    let mut returned = Vec::new();
    while let Ok(Some(body)) = reader.next_frame() {
        match decode::<DataFrame>(body, "data frame") {
            Ok(DataFrame::Message {
                seq,
                correlation,
                payload,
            }) => returned.push(Returned {
                msg: AnyMessage::from_payload(payload),
                id: SentId { conn, seq },
                correlation,
            }),
            Err(e) => tracing::error!(error = %e, "could not re-read a retained message"),
        }
    }
    returned
}

/// How the ledger names `sender` when `me` receives from it: its id for a sender of this
/// node, which is what the admin looks up when that sender asks what became of its messages;
/// for a sender of another node (through the gateway), a key with the top bit set, so that
/// it can never be taken for a local sender with the same id. The admin computes the same
/// key when a remote sender's admin asks what became of its messages.
pub(crate) fn ledger_key(me: Address, sender: Address) -> u64 {
    const REMOTE: u64 = 1 << 63;
    if sender.node() == me.node() {
        sender.id()
    } else {
        REMOTE | (((u64::from(sender.node().0) << 32) ^ sender.id()) & !REMOTE)
    }
}

/// What an endpoint's listening socket is called in its log lines.
fn socket_name(role: &PeerRole) -> &'static str {
    match role {
        PeerRole::Host => "actor socket",
        _ => "client socket",
    }
}

/// Whether an accepted connection has yet to complete its handshake (for [`Pending`]).
fn awaiting_handshake(conns: &HashMap<Token, Conn>) -> impl Fn(Token) -> bool + '_ {
    |t| matches!(conns.get(&t), Some(Conn::In(c)) if c.peer.is_none())
}

/// Writes the handshake then the unwritten frames of `conn`, gathering many frames into one
/// `writev`. Stops at `WouldBlock`; an error means the connection is gone.
fn write_out_conn(conn: &mut OutConn) -> io::Result<()> {
    let OutConn {
        stream: Some(stream),
        hello,
        hello_written,
        frames,
        written,
        ..
    } = conn
    else {
        return Ok(());
    };
    while *hello_written < hello.len() {
        match stream.write(&hello[*hello_written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *hello_written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    while *written < frames.len() {
        let (a, b) = frames.as_slices();
        let w = *written;
        let slices = if w < a.len() {
            [IoSlice::new(&a[w..]), IoSlice::new(b)]
        } else {
            [IoSlice::new(&b[w - a.len()..]), IoSlice::new(&[])]
        };
        match stream.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl From<ProtocolError> for Error {
    fn from(source: ProtocolError) -> Self {
        Error::Protocol {
            peer: "a peer".into(),
            source,
        }
    }
}
