//! The cross-machine data path: each admin in a convention runs a gateway that carries
//! messages between its own endpoints and the other members' gateways.
//!
//! An endpoint that sends to an address of another node (`Address::node`) connects, with
//! the ordinary data handshake `Data { from, to }`, to `gateway.sock` in its runtime
//! directory instead of to `<id>.sock`; nothing else changes for it: it numbers, retains
//! and resends its messages as for a local receiver. The gateway forwards each message over
//! the authenticated link to the receiver's node, whose gateway opens an ordinary data
//! connection to the receiver *as the sender* (`Data { from: remote sender, to }`), so the
//! receiver sees the real sender and replies to it the same way, through the gateways.
//!
//! ```text
//!  node A                                               node B
//!  @A.5 ──Message{seq}──▶ gateway ══Gateway(Message{@A.5,@B.7,seq})══▶ gateway ──Message{seq}──▶ @B.7
//!       ◀─HandshakeReply─         ◀═Gateway(Accepted{.., incarnation})         ◀─HandshakeReply─
//!       ◀──Ack{upto}─────         ◀═Gateway(Ack{@A.5,@B.7,upto})═════         ◀──Ack{upto}─────
//! ```
//!
//! The sender's handshake reply waits for the receiver's, so that it carries the
//! receiver's incarnation (the sender writes its messages meanwhile, as it always does).
//!
//! **Order.** One connection per (sender, receiver) on each machine, one link per pair of
//! machines and direction, one loop in between: a sender's messages to one receiver arrive
//! in the order sent.
//!
//! **Nothing lost.** The sender is acknowledged only with the receiver's own
//! acknowledgement, carried back end to end, so a message is retained by its sender until
//! the receiver has processed it. When the receiver cannot be reached (no such actor, its
//! connection ended because it stopped or was restarted, its machine died or the link
//! broke), the gateway closes the sender's connection, and the sender asks its admin what
//! became of the incarnation it was talking to, as for a local receiver. Its admin asks the
//! receiver's admin (`GatewayFrame::Settle`), which answers once that incarnation's process
//! is reaped, from its delivery ledger: what it processed is forgotten, the message it died
//! on comes back as `PoisonMessage`, and the rest is sent again, in order, on a new stream,
//! to the restarted actor at the same address — or handed back if the actor is gone for
//! good (an `ask` fails at once, an actor's sends go to the dead-letter path). Each sender
//! connection is a *stream* with a number of its own, carried in every frame, so an ack or
//! a loss about an earlier stream of the same pair is never applied to the current one; a
//! message of a stream whose receiver connection is gone is answered with `Lost` again,
//! never delivered on a new connection; only a newer stream of the pair opens one (it may
//! start past seq 1: a sender that reconnects sends again what was not processed). A sender that closes its
//! connection sends `Closed`, and the receiving gateway closes its connection to the
//! receiver once everything it holds is written (as a local receiver still reads what a
//! dead sender wrote).
//!
//! **In doubt.** When the link this gateway writes to a member breaks, the senders to that
//! member ask as above; but their receivers did not die, so no ledger says what they
//! processed. The receiver's admin answers "in doubt" when the incarnation still runs after
//! a short wait (2 s; or this admin does, 3 s later, if the answer does not come), and
//! each sender hands back what had reached the wire (`Error::InDoubt`: it may or may not
//! have been processed, and is never sent twice), and sends on a new stream what it wrote
//! meanwhile. (Admins waiting for that member, for a create or a global name, are told the
//! same way.) The receiver's incarnation travels with `Accepted`, every `Ack` and `Lost`,
//! so that a sender knows which incarnation to ask about even if one of them is lost.
//!
//! [`Streams`] is the Unix side of this, run by the gateway process's loop (`mod.rs`): it
//! owns `gateway.sock` and the connections to local senders and receivers, and hands the
//! loop the frames for other members' gateways ([`Streams::take_outbox`]) and for the admin
//! ([`Streams::take_for_admin`]); the loop hands it what other members' gateways sent
//! ([`Streams::remote`], once the frame is checked against the member whose link carried
//! it), and tells it when a member is gone or a link broke ([`Streams::link_lost`]).
//!
//! **A gateway that dies** (killed, or crashed) takes its connections with it: each local
//! sender sees its connection end and asks its admin what became of what it had not seen
//! acknowledged (as for a broken link: delivered, returned, or `InDoubt`, never silently
//! lost, never sent twice); each other member's gateway sees its link end, and its senders
//! do the same. The admin starts a new gateway on the same listeners; stream numbers start
//! from the clock, so that a restarted gateway's streams are newer than any of the last
//! one's.

use std::{
    collections::{HashMap, HashSet},
    io::{self, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use greenroom_protocol::{
    convention::GatewayFrame, frame::decode, gateway::FromGateway, Address, DataFrame, DataReply, FrameReader,
    Handshake, HandshakeReply, NodeId, PeerRole, ReadUntil, MAX_HANDSHAKE_FRAME,
};
use mio::{
    net::{UnixListener, UnixStream},
    Interest, Registry, Token,
};

use crate::{
    net::{
        framed::READ_BUDGET,
        peer::check_same_user,
        pending::{accept_failure, AcceptRetry, Pending, ACCEPT_RETRY},
        set_write_interest,
    },
    runtime_dir,
};

/// How long a closed stream's number is remembered (longer than any frame of it can take
/// to arrive on a link that was cut).
const STREAM_MEMORY: Duration = Duration::from_secs(60);

/// A (sender, receiver) pair.
type Pair = (Address, Address);

/// One Unix connection of the gateway.
struct Side {
    stream: UnixStream,
    reader: FrameReader,
    /// Bytes to write, from `written` on.
    out: Vec<u8>,
    written: usize,
    kind: Kind,
    /// A sender's side: the last message forwarded, and the last acknowledged.
    forwarded: u64,
    acked: u64,
    /// A sender's side: whether its handshake reply is written. The reply waits for the
    /// remote receiver to accept the stream ([`GatewayFrame::Accepted`]), so that it carries
    /// the receiver's incarnation; the sender writes its messages meanwhile.
    replied: bool,
    /// A receiver's side whose stream is closed: dropped once `out` is written.
    closing: bool,
    /// Whether the connection is registered for writable events: only while `out` waits
    /// for room (see [`set_write_interest`]; a Unix socket says "writable" each time its
    /// peer reads, which would wake the gateway once more for every frame it writes).
    write_armed: bool,
}

enum Kind {
    /// A local sender's connection, for messages to another node; its pair and stream
    /// number once its handshake is read.
    Sender(Option<(Pair, u64)>),
    /// The gateway's connection to a local receiver, for a remote sender's stream;
    /// `accepted` once the receiver's handshake reply has come, with its `incarnation`.
    /// `link` is the accepted link that carries the stream (all its frames come on the one
    /// link its sender's gateway writes to this member).
    Receiver {
        pair: Pair,
        stream: u64,
        accepted: bool,
        incarnation: u32,
        link: u64,
    },
}

/// The Unix side of the data path: see [the module docs](self).
pub struct Streams {
    registry: Registry,
    listener: UnixListener,
    /// The listener's token; connections get tokens from `next_token` on.
    listener_token: Token,
    rundir: PathBuf,
    me: NodeId,
    max_frame: u32,
    conns: HashMap<Token, Side>,
    next_token: usize,
    /// Local senders' connections, by pair.
    senders: HashMap<Pair, Token>,
    /// Connections to local receivers, by pair (one stream at a time).
    receivers: HashMap<Pair, Token>,
    /// The latest stream of each pair a receiver connection was opened for, and when it was
    /// closed: a message of an older or the same stream without its connection is never
    /// delivered. Closed streams are forgotten after [`STREAM_MEMORY`], so that remote
    /// clients that come and go leave nothing behind.
    streams: HashMap<Pair, (u64, Option<Instant>)>,
    /// When closed streams are next forgotten.
    next_forget: Instant,
    /// The number of the next local sender connection.
    next_stream: u64,
    /// The live members' nodes: a sender may send only to one of them.
    live: HashSet<NodeId>,
    /// Frames for other members' gateways, in order, for the loop to send.
    outbox: Vec<(NodeId, GatewayFrame)>,
    /// Frames for this member's admin.
    for_admin: Vec<FromGateway>,
    /// Connections whose read stopped at the budget, to read again before blocking.
    rescan: Vec<Token>,
    /// When to try accepting again after an accept failed for want of fds or memory.
    accept_retry: AcceptRetry,
    /// Accepted connections waiting for their handshake: the same deadline and bound as
    /// every other listening socket of the system.
    pending: Pending,
}

impl Streams {
    /// The data path of node `me`, serving `listener` (`gateway.sock` in `rundir`), its
    /// connections registered with `registry` under tokens from `first_token` on
    /// (`first_token - 1` is the listener's).
    pub fn new(
        registry: Registry,
        mut listener: UnixListener,
        first_token: usize,
        rundir: PathBuf,
        me: NodeId,
        max_frame: u32,
        max_pending: usize,
    ) -> io::Result<Streams> {
        let listener_token = Token(first_token - 1);
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        // Stream numbers grow across gateway restarts: a restarted gateway's streams are
        // newer, at every receiving gateway, than any of the last one's.
        let next_stream = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Ok(Streams {
            registry,
            listener,
            listener_token,
            rundir,
            me,
            max_frame,
            conns: HashMap::new(),
            next_token: first_token,
            senders: HashMap::new(),
            receivers: HashMap::new(),
            streams: HashMap::new(),
            next_forget: Instant::now() + STREAM_MEMORY,
            next_stream,
            live: HashSet::new(),
            outbox: Vec::new(),
            for_admin: Vec::new(),
            rescan: Vec::new(),
            accept_retry: AcceptRetry::default(),
            pending: Pending::new(max_pending, "gateway.sock"),
        })
    }

    /// Whether `token` is this side's: the listener's or a connection's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token || self.conns.contains_key(&token)
    }

    /// Handles a readiness event for one of its tokens.
    pub fn ready(&mut self, token: Token, readable: bool, writable: bool) {
        if token == self.listener_token {
            self.accept_all();
            return;
        }
        if writable {
            self.flush(token);
        }
        if readable {
            self.read(token);
        }
    }

    /// Reads the connections whose read budget ran out.
    pub fn rescan(&mut self) {
        for token in std::mem::take(&mut self.rescan) {
            self.read(token);
        }
    }

    /// Whether connections wait to be read again (the loop then does not block).
    pub fn wants_rescan(&self) -> bool {
        !self.rescan.is_empty()
    }

    /// When a connection's handshake deadline (or a log window) is next due.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.pending.next_deadline(), self.accept_retry.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Closes the connections whose handshake did not come in time.
    pub fn tick(&mut self, now: Instant) {
        if self.accept_retry.due(now) {
            self.accept_all();
        }
        let conns = &self.conns;
        let stalled = self.pending.expired(now, |t| awaiting_handshake(conns, t));
        for token in stalled {
            if self.pending.logs.timed_out.allow() {
                tracing::warn!(timeout = ?crate::net::pending::HANDSHAKE_TIMEOUT,
                    "gateway.sock: closing a connection that did not complete its handshake in time");
            }
            self.drop_side(token);
        }
    }

    /// The live members' nodes changed.
    pub fn set_live(&mut self, live: HashSet<NodeId>) {
        self.live = live;
    }

    /// Frames for other members' gateways since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<(NodeId, GatewayFrame)> {
        std::mem::take(&mut self.outbox)
    }

    /// Frames for the admin since the last call.
    pub fn take_for_admin(&mut self) -> Vec<FromGateway> {
        std::mem::take(&mut self.for_admin)
    }

    /// The link to `node` broke (`gone: false`; frames for its admin may have been lost, so
    /// the admin is told), or its member is gone (`gone: true`).
    pub fn link_lost(&mut self, node: NodeId, reason: &str, gone: bool) {
        self.node_lost(node, reason, gone);
        if !gone {
            self.for_admin.push(FromGateway::LinkBroke(node));
        }
    }

    /// The accepted link `link` ended: the streams it carried are over (their sender's
    /// gateway gave that link up, or died, and settles its senders' messages itself), so
    /// their receiver connections close once what they hold is written — rather than stay
    /// open for ever, an fd here and in each receiver's host.
    pub fn link_ended(&mut self, link: u64) {
        let carried: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, side)| matches!(side.kind, Kind::Receiver { link: l, .. } if l == link))
            .map(|(t, _)| *t)
            .collect();
        for token in carried {
            self.close_after_writing(token);
        }
    }

    fn accept_all(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds or memory: see `AcceptRetry`.
                    self.accept_retry.failed(Instant::now());
                    let why = accept_failure(&e, "the gateway");
                    if self.pending.logs.refused.allow() {
                        tracing::warn!(error = %why, retry_in = ?ACCEPT_RETRY, "gateway.sock: accept failed");
                    }
                    return;
                }
            };
            if let Err(why) = check_same_user(&stream) {
                if self.pending.logs.refused.allow() {
                    tracing::warn!(reason = %why, "gateway.sock: connection refused");
                }
                continue;
            }
            let conns = &self.conns;
            if !self.pending.admit(|t| awaiting_handshake(conns, t)) {
                continue;
            }
            let token = match self.register(&mut stream) {
                Ok(token) => token,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway.sock: could not watch a new connection; closed");
                    continue;
                }
            };
            self.conns.insert(
                token,
                Side {
                    stream,
                    // A handshake's worth until it has said who it is.
                    reader: FrameReader::new(MAX_HANDSHAKE_FRAME),
                    out: Vec::new(),
                    written: 0,
                    kind: Kind::Sender(None),
                    forwarded: 0,
                    acked: 0,
                    replied: false,
                    closing: false,
                    write_armed: false,
                },
            );
            self.pending.push(token);
            // Data may be waiting already: an edge-triggered poll would not say so again.
            self.rescan.push(token);
        }
    }

    /// Registers a new connection for readable events (writable ones only while a write
    /// waits for room: see `Side::write_armed`). A connection that cannot be registered
    /// would never be read: the caller drops it.
    fn register(&mut self, stream: &mut UnixStream) -> io::Result<Token> {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.registry.register(stream, token, Interest::READABLE)?;
        Ok(token)
    }

    fn read(&mut self, token: Token) {
        let Some(side) = self.conns.get_mut(&token) else { return };
        let fill = match side
            .reader
            .fill_from(&mut side.stream, READ_BUDGET, ReadUntil::WouldBlock)
        {
            Ok(fill) => fill,
            Err(e) => {
                self.close(token, &format!("read failed: {e}"));
                return;
            }
        };
        // One frame at a time, each handled before the next is cut: the handshake raises the
        // reader's limit from a handshake's to the largest message, and the sender writes
        // its first messages right behind it, often read in the same fill.
        loop {
            let Some(side) = self.conns.get_mut(&token) else { return };
            let body = match side.reader.next_frame() {
                Ok(Some(body)) => body.to_vec(),
                Ok(None) => break,
                Err(e) => {
                    if self.pending.logs.broke_protocol.allow() {
                        tracing::warn!(error = %e, "gateway.sock: a malformed frame; connection closed");
                    }
                    self.close(token, &format!("malformed frame: {e}"));
                    return;
                }
            };
            self.frame(token, &body);
        }
        if fill.eof {
            match self.conns.get(&token).map(|side| &side.kind) {
                // A sender that went away takes its unacknowledged messages with it, as it
                // does for a local receiver: nobody is owed anything. The receiver's side
                // closes once it has written what it holds.
                Some(Kind::Sender(_)) => {
                    tracing::debug!("gateway: a sender closed its connection");
                    self.drop_side(token);
                }
                _ => self.close(token, "the connection ended"),
            }
        } else if fill.bytes >= READ_BUDGET {
            self.rescan.push(token);
        }
    }

    /// One frame from a local connection.
    fn frame(&mut self, token: Token, body: &[u8]) {
        let state = match self.conns.get(&token).map(|side| &side.kind) {
            Some(Kind::Sender(stream)) => (*stream, None),
            Some(Kind::Receiver {
                pair,
                stream,
                accepted,
                incarnation,
                ..
            }) => (None, Some((*pair, *stream, *accepted, *incarnation))),
            None => return,
        };
        match state {
            (None, None) => self.sender_handshake(token, body),
            (Some(((from, to), stream)), _) => match decode::<DataFrame>(body, "data frame") {
                Ok(DataFrame::Message {
                    seq,
                    correlation,
                    payload,
                }) => {
                    if let Some(side) = self.conns.get_mut(&token) {
                        side.forwarded = seq;
                    }
                    let frame = GatewayFrame::Message {
                        from,
                        to,
                        stream,
                        seq,
                        correlation,
                        payload,
                    };
                    if let Err(why) = self.forward(to.node(), frame) {
                        self.close(token, &why);
                    }
                }
                Err(e) => {
                    if self.pending.logs.broke_protocol.allow() {
                        tracing::warn!(%from, %to, error = %e, "gateway.sock: a data frame that does not decode; connection closed");
                    }
                    self.close(token, &format!("bad data frame: {e}"));
                }
            },
            (None, Some((pair, stream, false, _))) => match HandshakeReply::decode(body) {
                Ok(HandshakeReply {
                    refusal: None,
                    incarnation,
                }) => {
                    if let Some(Side {
                        kind:
                            Kind::Receiver {
                                accepted,
                                incarnation: i,
                                ..
                            },
                        ..
                    }) = self.conns.get_mut(&token)
                    {
                        *accepted = true;
                        *i = incarnation;
                    }
                    let (from, to) = pair;
                    let accepted = GatewayFrame::Accepted {
                        from,
                        to,
                        stream,
                        incarnation,
                    };
                    if let Err(why) = self.forward(from.node(), accepted) {
                        self.close(token, &why);
                    }
                }
                Ok(HandshakeReply { refusal: Some(why), .. }) => {
                    self.drop_side(token);
                    self.receiver_lost(pair, stream, 0, &why, true);
                }
                Err(e) => self.close(token, &format!("bad handshake reply: {e}")),
            },
            (None, Some(((from, to), stream, true, incarnation))) => match decode::<DataReply>(body, "data reply") {
                Ok(DataReply::Ack { upto }) => {
                    // Acks are cumulative: one lost with a broken link is covered by the next.
                    let ack = GatewayFrame::Ack {
                        from,
                        to,
                        stream,
                        upto,
                        incarnation,
                    };
                    let _ = self.forward(from.node(), ack);
                }
                Err(e) => self.close(token, &format!("bad data reply: {e}")),
            },
        }
    }

    /// A local sender's handshake: accepted for an address of a live member's node, else
    /// refused with the reason (the sender then hands its messages back).
    fn sender_handshake(&mut self, token: Token, body: &[u8]) {
        let checked = match Handshake::decode(body) {
            Ok(Handshake {
                role: PeerRole::Data { from, to },
            }) => self.refusal(from, to).map_err(|why| (why, Some((from, to)))),
            Ok(other) => Err((
                format!("a gateway takes data connections only, not {:?}", other.role),
                None,
            )),
            Err(e) => Err((format!("bad handshake: {e}"), None)),
        };
        let stream = self.next_stream;
        self.next_stream += 1;
        let Some(side) = self.conns.get_mut(&token) else { return };
        match &checked {
            // Accepted: the reply waits for the remote receiver's incarnation.
            Ok(pair) => {
                side.kind = Kind::Sender(Some((*pair, stream)));
                side.reader.set_max_frame(self.max_frame);
            }
            Err((why, _)) => {
                let reply = HandshakeReply {
                    refusal: Some(why.clone()),
                    incarnation: 0,
                };
                if let Err(e) = reply.encode(&mut side.out) {
                    tracing::error!(error = %e, "gateway: could not encode a handshake reply");
                }
                self.flush(token);
            }
        }
        match checked {
            Ok(pair) => {
                if let Some(old) = self.senders.insert(pair, token) {
                    self.close(old, "replaced by a new connection of the same sender");
                }
            }
            Err((why, pair)) => {
                if self.pending.logs.refused.allow() {
                    match pair {
                        Some((from, to)) => {
                            tracing::warn!(%from, %to, reason = %why, "gateway.sock: connection refused")
                        }
                        None => tracing::warn!(reason = %why, "gateway.sock: connection refused"),
                    }
                }
                self.close(token, &why);
            }
        }
    }

    /// Why a local sender may not send `from` → `to` through this gateway, if it may not.
    fn refusal(&self, from: Address, to: Address) -> std::result::Result<Pair, String> {
        if from.node() != self.me {
            return Err(format!("{from} is not an address of this node ({})", self.me.0));
        }
        if to.node() == self.me || to.node() == NodeId(0) {
            return Err(format!("{to} is not an address of another node"));
        }
        if !self.live.contains(&to.node()) {
            return Err(format!(
                "no member of the convention is node {} (the member left, died or restarted as a new node)",
                to.node().0
            ));
        }
        Ok((from, to))
    }

    /// Queues `frame` for the gateway of `node`, if it is a live member's.
    fn forward(&mut self, node: NodeId, frame: GatewayFrame) -> std::result::Result<(), String> {
        if !self.live.contains(&node) {
            return Err(format!("no member of the convention is node {}", node.0));
        }
        self.outbox.push((node, frame));
        Ok(())
    }

    /// A frame from another member's gateway, checked already: it speaks for the member
    /// whose link carried it ([`GatewayFrame::check_sender`]).
    pub fn remote(&mut self, sender: NodeId, link: u64, frame: GatewayFrame) {
        match frame {
            GatewayFrame::Message {
                from,
                to,
                stream,
                seq,
                correlation,
                payload,
            } => {
                let pair = (from, to);
                let token = match self.receiver_of(pair, stream) {
                    Some(token) => token,
                    // A new stream of this pair (a new connection of the sender, which may
                    // start past seq 1: a sender that reconnects after its receiver was
                    // restarted sends again what the dead incarnation did not process).
                    // Whatever came before is settled at its sender (it closed that
                    // connection, or was told it was lost and asked its admin).
                    None if self.streams.get(&pair).is_none_or(|(last, _)| stream > *last) => {
                        if let Some(old) = self.receivers.remove(&pair) {
                            self.close_after_writing(old);
                        }
                        self.streams.insert(pair, (stream, None));
                        match self.open_receiver(pair, stream, link) {
                            Ok(token) => token,
                            Err(why) => {
                                self.receiver_lost(pair, stream, 0, &why, false);
                                return;
                            }
                        }
                    }
                    // The rest of a stream whose receiver connection is gone: never on a
                    // new connection (the receiver would take it for a fresh start). Its
                    // sender is told, again for every such message, in case a `Lost` was
                    // itself lost with a broken link.
                    None => {
                        let why = "the receiver's connection for this stream is gone";
                        self.receiver_lost(pair, stream, 0, why, false);
                        return;
                    }
                };
                let Some(side) = self.conns.get_mut(&token) else { return };
                if let Err(e) = DataFrame::encode_message(&mut side.out, seq, correlation, &payload, self.max_frame) {
                    tracing::warn!(%from, %to, error = %e, "gateway: a message this node cannot carry");
                    self.close(token, &format!("message not carried: {e}"));
                    return;
                }
                self.flush(token);
            }
            GatewayFrame::Ack {
                from,
                to,
                stream,
                upto,
                incarnation,
            } => {
                let Some(token) = self.sender_of(from, to, stream) else {
                    return;
                };
                // `Accepted` comes first on the same link; if it was lost with a broken
                // link, this ack carries what it did.
                self.reply_to_sender(token, None, incarnation);
                let Some(side) = self.conns.get_mut(&token) else { return };
                side.acked = side.acked.max(upto);
                if greenroom_protocol::encode_frame(&mut side.out, &DataReply::Ack { upto }, u32::MAX, "ack").is_ok() {
                    self.flush(token);
                }
            }
            GatewayFrame::Accepted {
                from,
                to,
                stream,
                incarnation,
            } => {
                if let Some(token) = self.sender_of(from, to, stream) {
                    self.reply_to_sender(token, None, incarnation);
                }
            }
            GatewayFrame::Lost {
                from,
                to,
                stream,
                reason,
                incarnation,
                refused,
            } => {
                if let Some(token) = self.sender_of(from, to, stream) {
                    // The sender learns, before its connection ends, which incarnation it
                    // was talking to (to ask about it) — or that it was refused (and asks
                    // nothing: the refusal is the answer).
                    let refusal = refused.then_some(reason.as_str());
                    self.reply_to_sender(token, refusal, incarnation);
                    self.close(token, &reason);
                }
            }
            GatewayFrame::Closed { from, to, stream } => {
                if let Some(token) = self.receiver_of((from, to), stream) {
                    self.receivers.remove(&(from, to));
                    self.close_after_writing(token);
                }
                // The stream is over. Its number is kept a while: a frame of it may still
                // come, on a link of an earlier generation that was cut.
                let now = Instant::now();
                if let Some((last, closed)) = self.streams.get_mut(&(from, to)) {
                    if *last == stream {
                        *closed = Some(now);
                    }
                }
                if now >= self.next_forget {
                    self.next_forget = now + STREAM_MEMORY;
                    self.streams
                        .retain(|_, (_, closed)| closed.is_none_or(|at| now.duration_since(at) < STREAM_MEMORY));
                }
            }
            frame @ (GatewayFrame::Create { .. }
            | GatewayFrame::Created { .. }
            | GatewayFrame::ChildNotice { .. }
            | GatewayFrame::ParentGone { .. }
            | GatewayFrame::Settle { .. }
            | GatewayFrame::Settled { .. }
            | GatewayFrame::ClaimName { .. }
            | GatewayFrame::NameClaim { .. }
            | GatewayFrame::NameBound { .. }) => self.for_admin.push(FromGateway::Frame {
                from: sender,
                frame: Box::new(frame),
            }),
        }
    }

    /// Writes the sender's handshake reply, unless it is written already: accepted by
    /// `incarnation` of the receiver, or refused.
    fn reply_to_sender(&mut self, token: Token, refusal: Option<&str>, incarnation: u32) {
        let Some(side) = self.conns.get_mut(&token) else { return };
        if side.replied {
            return;
        }
        side.replied = true;
        let reply = HandshakeReply {
            refusal: refusal.map(str::to_owned),
            incarnation,
        };
        match reply.encode(&mut side.out) {
            Ok(()) => self.flush(token),
            Err(e) => self.close(token, &format!("could not encode a handshake reply: {e}")),
        }
    }

    /// The local sender's connection of `stream` of the pair, if it is still the current one.
    /// The receiver connection of `pair` if it carries `stream`.
    fn receiver_of(&self, pair: Pair, stream: u64) -> Option<Token> {
        let token = *self.receivers.get(&pair)?;
        match self.conns.get(&token)?.kind {
            Kind::Receiver { stream: s, .. } if s == stream => Some(token),
            _ => None,
        }
    }

    fn sender_of(&self, from: Address, to: Address, stream: u64) -> Option<Token> {
        let token = *self.senders.get(&(from, to))?;
        match self.conns.get(&token)?.kind {
            Kind::Sender(Some((_, s))) if s == stream => Some(token),
            _ => None,
        }
    }

    /// Drops a receiver connection once what it holds is written (at once if nothing is).
    fn close_after_writing(&mut self, token: Token) {
        let Some(side) = self.conns.get_mut(&token) else { return };
        side.closing = true;
        if side.written >= side.out.len() {
            self.drop_side(token);
        }
    }

    /// Opens a data connection to the local receiver of `pair`, as its remote sender.
    fn open_receiver(&mut self, pair: Pair, stream: u64, link: u64) -> std::result::Result<Token, String> {
        let (from, to) = pair;
        if to.node() != self.me {
            return Err(format!("{to} is not an address of this node"));
        }
        let path = runtime_dir::socket_path(&self.rundir, to);
        let mut socket = UnixStream::connect(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                format!("no actor {to} on its node (gone, or never there)")
            }
            _ => format!("connecting to {to}: {e}"),
        })?;
        let mut out = Vec::new();
        Handshake {
            role: PeerRole::Data { from, to },
        }
        .encode(&mut out)
        .map_err(|e| format!("handshake: {e}"))?;
        let token = self
            .register(&mut socket)
            .map_err(|e| format!("watching the connection to {to}: {e}"))?;
        self.conns.insert(
            token,
            Side {
                stream: socket,
                reader: FrameReader::new(self.max_frame),
                out,
                written: 0,
                kind: Kind::Receiver {
                    pair,
                    stream,
                    accepted: false,
                    incarnation: 0,
                    link,
                },
                forwarded: 0,
                acked: 0,
                replied: false,
                closing: false,
                write_armed: false,
            },
        );
        self.receivers.insert(pair, token);
        Ok(token)
    }

    /// Tells the sender's gateway that the receiver of `pair`'s `stream` is lost (or, if
    /// `refused`, refused it); `incarnation` is the one that had accepted it, if any.
    fn receiver_lost(&mut self, pair: Pair, stream: u64, incarnation: u32, reason: &str, refused: bool) {
        let (from, to) = pair;
        tracing::info!(%from, %to, %reason, "gateway: receiver unreachable; its remote sender is told");
        let lost = GatewayFrame::Lost {
            from,
            to,
            stream,
            reason: reason.to_owned(),
            incarnation,
            refused,
        };
        let _ = self.forward(from.node(), lost);
    }

    /// Our link to `node` broke, or (`gone`) its member is gone: our senders to it get
    /// their messages back (nothing they sent since can be acknowledged), and, when it is
    /// gone, the streams of its senders end too. (A broken link alone leaves its senders'
    /// streams: what they still send arrives on their own link.)
    fn node_lost(&mut self, node: NodeId, reason: &str, gone: bool) {
        let ours: Vec<Token> = self
            .senders
            .iter()
            .filter(|((_, to), _)| to.node() == node)
            .map(|(_, t)| *t)
            .collect();
        for token in ours {
            self.close(token, reason);
        }
        if !gone {
            return;
        }
        self.streams.retain(|(from, _), _| from.node() != node);
        let theirs: Vec<Token> = self
            .receivers
            .iter()
            .filter(|((from, _), _)| from.node() == node)
            .map(|(_, t)| *t)
            .collect();
        // What their dead senders sent is still written, as a local receiver still reads
        // what a dead sender wrote.
        for token in theirs {
            self.close_after_writing(token);
        }
    }

    /// Closes a connection: a receiver's loss is reported to its remote sender; a sender
    /// learns from the end of its connection that what it has not seen acknowledged comes
    /// back to it.
    fn close(&mut self, token: Token, why: &str) {
        let Some(side) = self.conns.get(&token) else { return };
        match side.kind {
            Kind::Receiver {
                pair,
                stream,
                incarnation,
                ..
            } => {
                self.drop_side(token);
                tracing::debug!(reason = %why, "gateway: a receiver's connection ended");
                self.receiver_lost(
                    pair,
                    stream,
                    incarnation,
                    &format!("its connection ended ({why})"),
                    false,
                );
            }
            Kind::Sender(Some(((from, to), _))) if side.forwarded > side.acked => {
                let unacknowledged = side.forwarded - side.acked;
                tracing::info!(%from, %to, unacknowledged, reason = %why,
                    "a stream to an actor of another node ended with messages unacknowledged; its sender asks what became of them");
                self.drop_side(token);
            }
            Kind::Sender(_) => {
                tracing::debug!(reason = %why, "gateway: sender connection closed");
                self.drop_side(token);
            }
        }
    }

    /// Forgets a connection. A sender's stream, however it ends (the sender closed it, a
    /// write to it failed, its receiver was lost), is closed at the receiving gateway too,
    /// so that its connection to the receiver does not outlive it.
    fn drop_side(&mut self, token: Token) {
        let Some(mut side) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.registry.deregister(&mut side.stream);
        if let Kind::Sender(Some(((from, to), stream))) = side.kind {
            let _ = self.forward(to.node(), GatewayFrame::Closed { from, to, stream });
        }
        match side.kind {
            Kind::Sender(Some((pair, _))) if self.senders.get(&pair) == Some(&token) => {
                self.senders.remove(&pair);
            }
            Kind::Receiver { pair, .. } if self.receivers.get(&pair) == Some(&token) => {
                self.receivers.remove(&pair);
            }
            _ => {}
        }
    }

    /// Writes what a connection has queued, as far as the socket takes it now; what it does
    /// not take waits for the connection's writable event.
    fn flush(&mut self, token: Token) {
        let Some(side) = self.conns.get_mut(&token) else { return };
        while side.written < side.out.len() {
            match side.stream.write(&side.out[side.written..]) {
                // Never cleared unwritten: what it holds would be lost without a word.
                Ok(0) => {
                    self.close(token, "the connection takes no more bytes");
                    return;
                }
                Ok(n) => side.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.close(token, &format!("write failed: {e}"));
                    return;
                }
            }
        }
        let blocked = side.written < side.out.len();
        set_write_interest(&self.registry, &mut side.stream, token, &mut side.write_armed, blocked);
        if blocked {
            return;
        }
        side.out.clear();
        side.written = 0;
        if side.closing {
            self.drop_side(token);
        }
    }
}

/// Whether `token` is a local sender's connection whose handshake has not come yet.
fn awaiting_handshake(conns: &HashMap<Token, Side>, token: Token) -> bool {
    matches!(
        conns.get(&token),
        Some(Side {
            kind: Kind::Sender(None),
            ..
        })
    )
}
