//! The gateway's TCP side: the convention port, and one encrypted link per member it writes
//! to, all non-blocking in the gateway's one loop.
//!
//! Links go one way ([`ConventionFrame`]): this member writes on the links it opens (one
//! per member, opened at the first frame for it) and reads on the links it accepts. Each
//! link runs a [`LinkMachine`] (the handshake and the encryption, without I/O); this module
//! moves its bytes.
//!
//! **Accepting.** Connections are accepted after the links' own events, at most
//! [`ACCEPT_BATCH`] per turn of the loop, so that members' frames go first. Every accepted
//! connection first passes the port's budgets ([`super::admission`]); a refused one is
//! reset at once, before a byte is read. An admitted one holds a few hundred bytes until
//! its handshake completes (the machine's pre-handshake bound) and is cut at its deadline
//! ([`HANDSHAKE_DEADLINE`]). Its first frame
//! must be [`ConventionFrame::Hello`], naming the member that opened it; the link is bound
//! to that member if the key it proved may speak for it (the caller's `bind`, which is
//! [`crate::convention::Members::bind`]), and every later frame on it is handed on as that
//! member's. Refusals, timeouts and protocol errors are logged a few per window, then
//! counted ([`SocketLogs`]).
//!
//! **Writing.** Each outgoing link has two queues: membership's frames (small, urgent:
//! SWIM probes that wait behind a burst of data would make a member look dead) and the data
//! path's. Frames are sealed into the machine only while it has less than
//! [`SEALED_AHEAD`] bytes unwritten, membership's first, so a probe waits behind at most
//! that much. Membership's queue is bounded and drops what it cannot hold (SWIM repairs
//! it, as over UDP); the data path's is bounded by [`MAX_BACKLOG`], past which the link is
//! given up. A link that fails is reset, not closed, so that nothing it still holds arrives
//! later, and the caller is told ([`LinkEvent::Broke`]) whether data frames went on it.

use std::{
    collections::{HashMap, VecDeque},
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
    time::{Duration, Instant},
};

use greenroom_protocol::{
    convention::{ConventionFrame, GatewayFrame},
    NodeId,
};
use mio::{
    net::{TcpListener, TcpStream},
    Interest, Registry, Token,
};

use super::admission::{Admission, Limits, HANDSHAKE_DEADLINE};
use crate::{
    convention::{
        link::{LinkConfig, LinkMachine},
        membership::Life,
    },
    net::{
        framed::READ_BUDGET,
        log_limit::SocketLogs,
        pending::{accept_failure, AcceptRetry, ACCEPT_RETRY},
    },
};

/// How many bytes a link may hold sealed and unwritten before more frames are sealed.
pub const SEALED_AHEAD: usize = 256 * 1024;
/// How many bytes of data frames may wait for one member's link before the link is given
/// up (its senders then ask what became of their messages).
pub const MAX_BACKLOG: usize = 256 * 1024 * 1024;
/// How many membership frames may wait for one member's link; more are dropped.
const MAX_CONTROL_QUEUE: usize = 64;
/// How many connections the port accepts per turn of the loop, after the links' own events:
/// a flood of strangers then delays a member's frame by at most this many accepts (each an
/// `accept`, a budget check and, mostly, a reset), never by the whole backlog.
const ACCEPT_BATCH: usize = 16;

/// How long an accepted connection that broke the protocol is kept, its answer (if any)
/// sent and its write side shut, before it is closed: closed at once with bytes unread,
/// the peer would get a reset instead of the answer.
const LINGER: Duration = Duration::from_millis(200);
/// How many such connections are kept at once; past that they are reset at once.
const MAX_LINGERING: usize = 64;

/// Decides whether a link whose peer proved a static key (the slice) may speak for the
/// member life its Hello names: [`crate::convention::Members::bind`].
pub type Bind<'a> = dyn FnMut(Life, &[u8]) -> Result<(), String> + 'a;

/// What the loop learns from the links.
// The frame variant is the common one (every message): not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LinkEvent {
    /// A frame from the member an accepted link (`link`, a number never reused) is bound to:
    /// its life, and its node id (computed once, when the link was bound).
    Frame {
        from: Life,
        node: NodeId,
        link: u64,
        frame: ConventionFrame,
    },
    /// An accepted link bound to a member ended: the streams it carried are over.
    Ended { from: Life, link: u64 },
    /// The link this member writes to `addr` failed (`carried_data`: data frames were
    /// queued or sent on it, so their senders must be told).
    Broke {
        addr: SocketAddr,
        carried_data: bool,
        reason: String,
    },
}

enum Direction {
    /// A link a member opened to us, from `source`; bound to that member (its life and node
    /// id) once its Hello is taken.
    Accepted {
        source: IpAddr,
        bound: Option<(Life, NodeId)>,
    },
    /// Our link to the member at `addr`.
    Outgoing(Box<Outgoing>),
}

struct Outgoing {
    addr: SocketAddr,
    /// Whether our Hello is sealed (it goes first, as soon as the handshake completes).
    hello_sent: bool,
    control: VecDeque<Vec<u8>>,
    data: VecDeque<Vec<u8>>,
    data_bytes: usize,
    carried_data: bool,
}

struct Conn {
    stream: TcpStream,
    machine: LinkMachine,
    direction: Direction,
}

/// The convention port and the links: see [the module docs](self).
pub struct Links {
    registry: Registry,
    listener: TcpListener,
    listener_token: Token,
    config: LinkConfig,
    /// Who this member is: said in the Hello of every link it opens.
    me: Life,
    /// The address outgoing links are opened from: the one this member listens on, so
    /// that its peers' per-source budgets count it as itself.
    local_ip: Option<IpAddr>,
    conns: HashMap<Token, Conn>,
    outgoing: HashMap<SocketAddr, Token>,
    next_token: usize,
    admission: Admission,
    /// Handshake deadlines in order of creation (all links get the same timeout).
    deadlines: VecDeque<(Instant, Token)>,
    logs: SocketLogs,
    /// Links whose read stopped at the budget, to read again before blocking.
    rescan: Vec<Token>,
    /// The convention port has connections waiting to be accepted (see [`ACCEPT_BATCH`]).
    accept_pending: bool,
    /// When to try accepting again after an accept failed for want of fds or memory.
    accept_retry: AcceptRetry,
    /// Links with sealed bytes to write before the loop blocks.
    dirty: Vec<Token>,
    events: Vec<LinkEvent>,
    read_buf: Vec<u8>,
    /// Connections refused with an answer, closed at their instant.
    lingering: VecDeque<(Instant, TcpStream)>,
}

impl Links {
    /// The links of member `me`, accepting on `listener` (registered under
    /// `first_token - 1`; links get tokens from `first_token` on).
    pub fn new(
        registry: Registry,
        mut listener: TcpListener,
        first_token: usize,
        mut config: LinkConfig,
        me: Life,
        limits: Limits,
    ) -> io::Result<Links> {
        let listener_token = Token(first_token - 1);
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        let local_ip = listener.local_addr()?.ip();
        config.handshake_timeout = HANDSHAKE_DEADLINE;
        Ok(Links {
            registry,
            listener,
            listener_token,
            config,
            me,
            local_ip: (!local_ip.is_unspecified()).then_some(local_ip),
            conns: HashMap::new(),
            outgoing: HashMap::new(),
            next_token: first_token,
            admission: Admission::new(limits),
            deadlines: VecDeque::new(),
            logs: SocketLogs::new("convention port"),
            rescan: Vec::new(),
            accept_pending: false,
            accept_retry: AcceptRetry::default(),
            dirty: Vec::new(),
            events: Vec::new(),
            read_buf: vec![0; 64 * 1024],
            lingering: VecDeque::new(),
        })
    }

    /// Whether `token` is this side's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token || self.conns.contains_key(&token)
    }

    /// What happened on the links since the last call.
    pub fn take_events(&mut self) -> Vec<LinkEvent> {
        std::mem::take(&mut self.events)
    }

    /// Handles a readiness event for one of its tokens. `bind` decides whether a link whose
    /// peer proved `key` may speak for the member its Hello names.
    pub fn ready(&mut self, token: Token, readable: bool, writable: bool, now: Instant, bind: &mut Bind<'_>) {
        if token == self.listener_token {
            // Accepted once the links' own events are dealt with: [`Links::accept_waiting`].
            self.accept_pending = true;
            return;
        }
        if writable {
            self.write(token);
        }
        if readable {
            self.read(token, now, bind);
        }
    }

    /// Reads the links whose budget ran out last time.
    pub fn rescan(&mut self, now: Instant, bind: &mut Bind<'_>) {
        for token in std::mem::take(&mut self.rescan) {
            self.read(token, now, bind);
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] of the connections waiting on the convention port.
    /// Called once the frames read from the links have been passed on and written, so that
    /// a flood's accepts never stand between a member's frame and where it goes.
    pub fn accept_waiting(&mut self, now: Instant) {
        if self.accept_pending {
            self.accept_pending = self.accept_some(now);
        }
    }

    /// Whether links wait to be read again, or connections to be accepted.
    pub fn wants_rescan(&self) -> bool {
        !self.rescan.is_empty() || self.accept_pending
    }

    /// Whether an outgoing link still holds something unwritten or unsealed.
    pub fn unwritten(&self) -> bool {
        self.conns.values().any(|conn| match &conn.direction {
            Direction::Outgoing(out) => {
                !conn.machine.pending_output().is_empty() || !out.control.is_empty() || !out.data.is_empty()
            }
            Direction::Accepted { .. } => false,
        })
    }

    /// Writes what was sealed this turn, as far as the sockets take it.
    pub fn flush(&mut self) {
        for token in std::mem::take(&mut self.dirty) {
            self.write(token);
        }
    }

    /// The earliest handshake deadline or log window to report.
    pub fn next_deadline(&self) -> Option<Instant> {
        let handshake = self.deadlines.front().map(|(at, _)| *at);
        let lingering = self.lingering.front().map(|(at, _)| *at);
        [handshake, lingering, self.logs.deadline(), self.accept_retry.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Cuts the links whose handshake is late; tries a failed accept again.
    pub fn tick(&mut self, now: Instant) {
        self.logs.tick(now);
        if self.accept_retry.due(now) {
            self.accept_pending = true;
        }
        while self.lingering.front().is_some_and(|(at, _)| *at <= now) {
            self.lingering.pop_front();
        }
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            if let Err(e) = conn.machine.check_deadline(now) {
                if matches!(conn.direction, Direction::Accepted { .. }) && self.logs.timed_out.allow() {
                    tracing::warn!(error = %e, "convention port: a handshake did not complete in time; connection cut");
                }
                self.fail(token, e.to_string());
            }
        }
    }

    /// Queues a membership frame for the member at `addr`, opening the link if need be.
    /// Dropped if the link's queue is full (SWIM tolerates loss).
    pub fn send_control(&mut self, addr: SocketAddr, frame: &ConventionFrame, now: Instant) {
        let bytes = match postcard::to_allocvec(frame) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "could not encode a convention frame");
                return;
            }
        };
        let Some(token) = self.outgoing_to(addr, now) else {
            return;
        };
        let Some(out) = self.outgoing_mut(token) else { return };
        if out.control.len() >= MAX_CONTROL_QUEUE {
            tracing::debug!(%addr, "a membership frame dropped: the link's queue is full");
            return;
        }
        out.control.push_back(bytes);
        self.seal(token);
    }

    /// Queues a data-path frame for the member at `addr`, opening the link if need be. If the
    /// link cannot take it, the link is given up ([`LinkEvent::Broke`]).
    pub fn send_data(&mut self, addr: SocketAddr, frame: GatewayFrame, now: Instant) {
        let Some(token) = self.outgoing_to(addr, now) else {
            self.events.push(LinkEvent::Broke {
                addr,
                carried_data: true,
                reason: format!("could not open a link to {addr}"),
            });
            return;
        };
        let frame = ConventionFrame::Gateway(frame);
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let Direction::Outgoing(out) = &mut conn.direction else {
            return;
        };
        out.carried_data = true;
        // Straight into the machine when nothing waits before it: no copy.
        let direct = out.data.is_empty()
            && out.control.is_empty()
            && out.hello_sent
            && conn.machine.is_established()
            && conn.machine.pending_output().len() < SEALED_AHEAD;
        let result = if direct {
            conn.machine
                .send_frame_with(|w| postcard::to_io(&frame, w).map(drop))
                .map_err(|e| e.to_string())
        } else {
            match postcard::to_allocvec(&frame) {
                Ok(bytes) if out.data_bytes + bytes.len() <= MAX_BACKLOG => {
                    out.data_bytes += bytes.len();
                    out.data.push_back(bytes);
                    Ok(())
                }
                Ok(_) => Err(format!(
                    "more than {MAX_BACKLOG} bytes wait for the link to {addr}: the member does not keep up"
                )),
                Err(e) => Err(format!("could not encode a gateway frame: {e}")),
            }
        };
        match result {
            Ok(()) => self.seal(token),
            Err(reason) => self.fail(token, reason),
        }
    }

    /// Resets the link this member writes to `addr`, if any, discarding what it holds: its
    /// member is given up on, and nothing may arrive after all if it comes back.
    pub fn reset(&mut self, addr: SocketAddr) {
        if let Some(token) = self.outgoing.remove(&addr) {
            self.drop_conn(token, true);
        }
    }

    fn outgoing_mut(&mut self, token: Token) -> Option<&mut Outgoing> {
        match &mut self.conns.get_mut(&token)?.direction {
            Direction::Outgoing(out) => Some(out),
            Direction::Accepted { .. } => None,
        }
    }

    /// The link to `addr`, opened now if there is none.
    fn outgoing_to(&mut self, addr: SocketAddr, now: Instant) -> Option<Token> {
        if let Some(token) = self.outgoing.get(&addr) {
            return Some(*token);
        }
        let stream = match connect_from(self.local_ip, addr) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "could not open a link to a member");
                return None;
            }
        };
        let machine = match LinkMachine::connecting(&self.config, addr.to_string(), now) {
            Ok(machine) => machine,
            Err(e) => {
                tracing::error!(%addr, error = %e, "could not start a link's handshake");
                return None;
            }
        };
        let token = self.add(
            stream,
            machine,
            Direction::Outgoing(Box::new(Outgoing {
                addr,
                hello_sent: false,
                control: VecDeque::new(),
                data: VecDeque::new(),
                data_bytes: 0,
                carried_data: false,
            })),
        )?;
        self.outgoing.insert(addr, token);
        // The hello and the first handshake message are ready: written once connected.
        self.dirty.push(token);
        Some(token)
    }

    fn add(&mut self, mut stream: TcpStream, machine: LinkMachine, direction: Direction) -> Option<Token> {
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self
            .registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(error = %e, "could not register a link");
            return None;
        }
        let _ = stream.set_nodelay(true);
        if let Some(deadline) = machine.deadline() {
            self.deadlines.push_back((deadline, token));
        }
        self.conns.insert(
            token,
            Conn {
                stream,
                machine,
                direction,
            },
        );
        Some(token)
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections; `true` if more may be waiting.
    fn accept_some(&mut self, now: Instant) -> bool {
        for _ in 0..ACCEPT_BATCH {
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds or memory: see `AcceptRetry`.
                    self.accept_retry.failed(now);
                    let why = accept_failure(&e, "the gateway");
                    if self.logs.refused.allow() {
                        tracing::warn!(error = %why, retry_in = ?ACCEPT_RETRY, "convention port: accept failed");
                    }
                    return false;
                }
            };
            if let Err(refusal) = self.admission.admit(peer.ip(), now) {
                if self.logs.refused.allow() {
                    tracing::warn!(%peer, reason = %refusal, "convention port: connection refused before its handshake");
                }
                reset(&stream);
                continue;
            }
            let machine = match LinkMachine::accepting(&self.config, peer.to_string(), now) {
                Ok(machine) => machine,
                Err(e) => {
                    tracing::error!(error = %e, "could not start a link's handshake");
                    self.admission.ended(peer.ip(), false);
                    continue;
                }
            };
            let direction = Direction::Accepted {
                source: peer.ip(),
                bound: None,
            };
            match self.add(stream, machine, direction) {
                // Bytes may be waiting already: an edge-triggered poll would not say so again.
                Some(token) => self.rescan.push(token),
                None => self.admission.ended(peer.ip(), false),
            }
        }
        true
    }

    fn read(&mut self, token: Token, now: Instant, bind: &mut Bind<'_>) {
        let mut read = 0;
        loop {
            let Some(conn) = self.conns.get_mut(&token) else { return };
            if read >= READ_BUDGET {
                self.rescan.push(token);
                return;
            }
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    let e = conn.machine.peer_closed();
                    // Ended here too, without a warning (an accepted link's stranger that
                    // gave up, or a member that refused ours, which logs why).
                    self.fail(token, e.to_string());
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(token, format!("read failed: {e}"));
                    return;
                }
            };
            read += n;
            let was_established = conn.machine.is_established();
            let fed = conn.machine.feed(&self.read_buf[..n], now);
            if !was_established && conn.machine.is_established() {
                self.on_established(token);
            }
            // Frames complete before an error still count.
            self.take_frames(token, bind);
            if let Err(e) = fed {
                self.protocol_error(token, e.to_string());
                return;
            }
            // The handshake's answers.
            if self
                .conns
                .get(&token)
                .is_some_and(|c| !c.machine.pending_output().is_empty())
            {
                self.write(token);
            }
        }
    }

    fn on_established(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        match &mut conn.direction {
            Direction::Accepted { source, .. } => self.admission.established(*source),
            Direction::Outgoing(_) => self.seal(token),
        }
    }

    /// Hands on the frames an accepted link has received; the first must be its Hello.
    fn take_frames(&mut self, token: Token, bind: &mut Bind<'_>) {
        loop {
            let Some(conn) = self.conns.get_mut(&token) else { return };
            let bound = match &conn.direction {
                Direction::Accepted { bound, .. } => *bound,
                Direction::Outgoing(_) => {
                    if conn.machine.next_frame_ref().is_some() {
                        self.protocol_error(token, "a frame on a link this member writes to".into());
                    }
                    return;
                }
            };
            let Some(bytes) = conn.machine.next_frame_ref() else {
                return;
            };
            let frame = match greenroom_protocol::frame::decode::<ConventionFrame>(bytes, "convention frame") {
                Ok(frame) => frame,
                Err(e) => {
                    self.protocol_error(token, format!("a frame that does not decode: {e}"));
                    return;
                }
            };
            match (bound, frame) {
                (None, ConventionFrame::Hello { member, incarnation }) => {
                    let key = conn.machine.peer_key().unwrap_or_default();
                    match bind((member, incarnation), key) {
                        Ok(()) => {
                            if let Direction::Accepted { bound, .. } = &mut conn.direction {
                                let node = NodeId::for_member(&member.to_string(), incarnation);
                                *bound = Some(((member, incarnation), node));
                            }
                        }
                        Err(why) => {
                            self.protocol_error(token, why);
                            return;
                        }
                    }
                }
                (None, other) => {
                    let what = frame_name(&other);
                    self.protocol_error(token, format!("{what} before the link said which member opened it"));
                    return;
                }
                (Some(_), ConventionFrame::Hello { .. }) => {
                    self.protocol_error(token, "a second Hello on one link".into());
                    return;
                }
                (Some((from, node)), frame) => self.events.push(LinkEvent::Frame {
                    from,
                    node,
                    link: token.0 as u64,
                    frame,
                }),
            }
        }
    }

    /// Seals what an outgoing link's queues hold, as far as [`SEALED_AHEAD`] allows:
    /// its Hello first, then membership's frames, then the data path's.
    fn seal(&mut self, token: Token) {
        let me = self.me;
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let Direction::Outgoing(out) = &mut conn.direction else {
            return;
        };
        if !conn.machine.is_established() {
            return;
        }
        let mut result = Ok(());
        if !out.hello_sent {
            out.hello_sent = true;
            let hello = ConventionFrame::Hello {
                member: me.0,
                incarnation: me.1,
            };
            result = conn
                .machine
                .send_frame_with(|w| postcard::to_io(&hello, w).map(drop))
                .map_err(|e| e.to_string());
        }
        while result.is_ok() && conn.machine.pending_output().len() < SEALED_AHEAD {
            let bytes = match out.control.pop_front() {
                Some(bytes) => bytes,
                None => match out.data.pop_front() {
                    Some(bytes) => {
                        out.data_bytes -= bytes.len();
                        bytes
                    }
                    None => break,
                },
            };
            result = conn.machine.send_frame(&bytes).map_err(|e| e.to_string());
        }
        match result {
            Ok(()) => self.dirty.push(token),
            Err(reason) => self.fail(token, reason),
        }
    }

    /// Writes what a link has sealed until the socket would block, sealing more as room is
    /// made.
    fn write(&mut self, token: Token) {
        loop {
            let Some(conn) = self.conns.get_mut(&token) else { return };
            let pending = conn.machine.pending_output();
            if pending.is_empty() {
                let more = matches!(&conn.direction, Direction::Outgoing(out) if !out.control.is_empty() || !out.data.is_empty());
                if more && conn.machine.is_established() {
                    self.seal(token);
                    if self
                        .conns
                        .get(&token)
                        .is_some_and(|c| !c.machine.pending_output().is_empty())
                    {
                        continue;
                    }
                }
                return;
            }
            match conn.stream.write(pending) {
                Ok(0) => {
                    self.fail(token, "the connection takes no more bytes".into());
                    return;
                }
                Ok(n) => conn.machine.written(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(token, format!("write failed: {e}"));
                    return;
                }
            }
        }
    }

    /// A link broke the protocol: logged (rate-limited), and ended. An accepted one gets the
    /// machine's answer if it has one (another version or convention, not a link at all)
    /// and an orderly end (a member with the wrong secret is told the link was closed, not
    /// reset), unless too many such ends are in progress; an outgoing one is reset.
    fn protocol_error(&mut self, token: Token, reason: String) {
        let Some(conn) = self.conns.get(&token) else { return };
        if self.logs.broke_protocol.allow() {
            tracing::warn!(peer = conn.machine.peer(), %reason, "convention link refused or broken");
        }
        let answered = matches!(conn.direction, Direction::Accepted { .. }) && self.lingering.len() < MAX_LINGERING;
        if !answered {
            self.fail(token, reason);
            return;
        }
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.registry.deregister(&mut conn.stream);
        self.forget(token, &conn);
        // One try: an answer is a few hundred bytes, which an empty socket buffer takes.
        let _ = conn.stream.write(conn.machine.pending_output());
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        self.lingering.push_back((Instant::now() + LINGER, conn.stream));
    }

    /// Ends a link that failed: reset, its budgets returned, and an outgoing link's loss
    /// reported.
    fn fail(&mut self, token: Token, reason: String) {
        let Some(conn) = self.conns.get(&token) else { return };
        if let Direction::Outgoing(out) = &conn.direction {
            let (addr, carried_data) = (out.addr, out.carried_data);
            tracing::debug!(%addr, %reason, "a link to a member ended");
            if self.outgoing.get(&addr) == Some(&token) {
                self.outgoing.remove(&addr);
            }
            self.events.push(LinkEvent::Broke {
                addr,
                carried_data,
                reason,
            });
        }
        self.drop_conn(token, true);
    }

    fn drop_conn(&mut self, token: Token, reset_it: bool) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.registry.deregister(&mut conn.stream);
        if reset_it {
            reset(&conn.stream);
        }
        self.forget(token, &conn);
    }

    /// What ends with an accepted link: its share of the budgets, and the streams it
    /// carried for the member it was bound to.
    fn forget(&mut self, token: Token, conn: &Conn) {
        if let Direction::Accepted { source, bound } = conn.direction {
            self.admission.ended(source, conn.machine.is_established());
            if let Some((from, _)) = bound {
                self.events.push(LinkEvent::Ended {
                    from,
                    link: token.0 as u64,
                });
            }
        }
    }
}

/// What kind of frame, for errors (never its contents).
fn frame_name(frame: &ConventionFrame) -> &'static str {
    match frame {
        ConventionFrame::Hello { .. } => "a Hello",
        ConventionFrame::Membership(_) => "a membership frame",
        ConventionFrame::Capabilities { .. } => "a capabilities frame",
        ConventionFrame::Gateway(_) => "a gateway frame",
    }
}

/// Makes the coming close a reset: nothing the kernel still holds is sent.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &linger);
}

/// Starts a non-blocking connection to `addr`, from `local` (port chosen by the kernel)
/// when given.
fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if let Some(ip) = local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        bind(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(ip, 0)))?;
    }
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}
