//! An authenticated, encrypted link between two admins of a convention, over TCP: the
//! protocol as a state machine without I/O ([`LinkMachine`]), so that one event loop can
//! drive many links at once, and a blocking [`Link`] on a stream of its own, built on it.
//!
//! ```text
//! connector                                         acceptor
//!   ── hello: GRNC, version, convention name ──▶      checks both; on a mismatch answers
//!   ── Noise msg 1: psk, e ─────────────────────▶      "refused" with the reason, and ends
//!   ◀── answer: GRNC, version, accepted | refused(reason)
//!   ◀── Noise msg 2: e, ee, s, es ──────────────      (msg 1 fails here without the secret)
//!   ── Noise msg 3: s, se ──────────────────────▶
//!   ◀══ transport: frames, each in ≤ 64 KiB Noise messages ══▶
//! ```
//!
//! Every Noise message travels as a 2-byte big-endian length and the message (the Noise
//! specification's framing), so none exceeds 65,535 bytes. The pattern is
//! `Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`: both sides prove a static key, and the cluster
//! secret is the pre-shared key, mixed in before the first message — a peer without it
//! cannot produce that message, so a live stranger fails there. (One that replays a recorded
//! first message gets the second, but can never produce the third.) The hello's version and
//! convention name are also the handshake's prologue, so they are authenticated too. The
//! connector sends message 1 right behind its hello, without waiting for the answer (the
//! bytes on the wire are the same either way; this saves a round trip): it is established
//! one round trip after it connects, the acceptor half a round trip later.
//!
//! A frame of any size up to the link's maximum is cut into chunks: each chunk's plaintext is
//! one flag byte (1 = the frame's last chunk) and up to 65,518 bytes of the frame. Any
//! decryption failure, out-of-order or replayed message ends the link: there is no recovery
//! inside a link, only a new one.
//!
//! # The machine
//!
//! [`LinkMachine`] holds one end of one link and does no I/O, and reads no clock: the
//! caller gives it the time. It is fed the bytes read from the socket, however they are
//! split ([`LinkMachine::feed`]); it queues what is to be written (the hello or answer, the
//! handshake messages, encrypted chunks) for the caller to take from
//! [`LinkMachine::pending_output`] and acknowledge with [`LinkMachine::written`]; it hands
//! out whole frames in order ([`LinkMachine::next_frame`]); and, once established, it
//! encrypts frames ([`LinkMachine::send_frame`]). Until then it has one deadline for the
//! whole handshake ([`LinkMachine::deadline`], from `LinkConfig::handshake_timeout`), which
//! the caller enforces, so a peer that stalls or trickles bytes cannot hold a connection.
//!
//! Any error ends the link, and says why; the machine refuses further use (its cipher
//! states may no longer match the peer's). The one thing still to do after an error is to
//! write what [`LinkMachine::pending_output`] still holds — only the acceptor's refusal of a
//! hello leaves anything there, so that the other side learns the reason — then shut down
//! writing, read and discard briefly (closing with unread bytes would reset the connection
//! and could discard the answer), and close: what [`Link::accept`] does.
//!
//! Memory is bounded by the protocol, not by the peer. Before the handshake completes, the
//! machine holds at most one hello, answer or handshake message (a few hundred bytes): the
//! pattern fixes each handshake message's length, so a peer announcing another is refused
//! at once, before anything is buffered. After it, a chunk's length is checked against the
//! link's frame maximum before its bytes are buffered. Buffers are kept and reused from
//! frame to frame (one grown past 256 KiB for a big frame is given back once empty); a
//! frame in costs no allocation beyond its own ([`LinkMachine::next_frame_ref`] not even
//! that), a frame out none ([`LinkMachine::send_frame_with`] even writes it in place).
//! Whole frames wait in the machine until taken, and output until written: the caller takes
//! frames after each feed, and stops feeding a link whose output it cannot write.
//!
//! # The blocking link
//!
//! [`Link`] drives a machine on a `TcpStream` of its own with blocking I/O: its handshake
//! bounds every read and write by what is left of the one deadline, and after any error in
//! `send` or `recv` it refuses further use. The runtime itself drives machines from the
//! gateway's loop ([`super::gateway`]); `Link` is the simple client of the same protocol,
//! for tools and tests that speak to a convention port from a thread (the hostile-network
//! tests forge frames with it).

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::TcpStream,
    ops::Range,
    time::{Duration, Instant},
};

use greenroom_protocol::{
    convention::{
        encode_answer, encode_hello, parse_answer_head, parse_hello_head, parse_name, ANSWER_HEAD, HELLO_HEAD,
    },
    DEFAULT_MAX_FRAME, PROTOCOL_VERSION,
};

use super::secret::{ClusterSecret, StaticKey};
use crate::error::{Error, Result};

/// The Noise protocol every link speaks.
pub const NOISE_PATTERN: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";

/// The longest Noise message.
const NOISE_MAX: usize = 65_535;
/// The AEAD tag each transport message carries.
const TAG_LEN: usize = 16;
/// The most frame bytes one chunk carries (after its flag byte).
pub const CHUNK_DATA: usize = NOISE_MAX - TAG_LEN - 1;
const LAST_CHUNK: u8 = 1;
/// A Curve25519 public key.
const DH_LEN: usize = 32;
/// The length of each handshake message, fixed by the pattern (the payloads are empty, and
/// psk0 keys the cipher from the first message on, so every payload has its tag):
/// 1: `e`; 2: `e`, `s` and its tag; 3: `s` and its tag — each then the payload's tag.
const HANDSHAKE_LENS: [usize; 3] = [
    DH_LEN + TAG_LEN,
    DH_LEN + DH_LEN + TAG_LEN + TAG_LEN,
    DH_LEN + TAG_LEN + TAG_LEN,
];
/// The longest handshake message.
const HANDSHAKE_MAX: usize = DH_LEN + DH_LEN + TAG_LEN + TAG_LEN;
/// A buffer grown past this (for a big frame) is given back once empty, down to
/// [`KEPT_CAPACITY`]: an event loop holds many links, and most frames are small.
const TRIM_OVER: usize = 256 * 1024;
const KEPT_CAPACITY: usize = 64 * 1024;

/// How long a handshake may take, by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one admin brings to its links: the convention's name and secret, and its own
/// static key.
#[derive(Clone)]
pub struct LinkConfig {
    pub convention: String,
    pub secret: ClusterSecret,
    /// This admin's key pair; peers see its public half as [`Link::peer_key`].
    pub static_key: StaticKey,
    pub handshake_timeout: Duration,
    /// The largest frame a peer may send.
    pub max_frame: u32,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("convention", &self.convention)
            .field("static_key", &self.static_key)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

impl LinkConfig {
    /// Settings for `convention` with a fresh static key and the default limits (see
    /// [`LinkConfig::with_static_key`] for a kept one).
    pub fn new(convention: &str, secret: ClusterSecret) -> Result<LinkConfig> {
        greenroom_protocol::convention::check_name(convention).map_err(|e| Error::ConventionLink {
            peer: "-".into(),
            reason: e.to_string(),
        })?;
        Ok(LinkConfig {
            convention: convention.to_owned(),
            secret,
            static_key: StaticKey::generate()?,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
        })
    }

    /// The same settings with `key` as this admin's static key.
    pub fn with_static_key(self, key: StaticKey) -> LinkConfig {
        LinkConfig {
            static_key: key,
            ..self
        }
    }

    fn prologue(&self) -> Vec<u8> {
        let mut p = b"greenroom convention link".to_vec();
        p.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        p.extend_from_slice(self.convention.as_bytes());
        p
    }
}

fn params() -> snow::params::NoiseParams {
    NOISE_PATTERN
        .parse()
        .unwrap_or_else(|_| unreachable!("the pattern is a constant snow supports"))
}

/// The side of a handshake this end plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Connector,
    Acceptor,
}

/// What a machine reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    HelloHead,
    HelloName,
    AnswerHead,
    AnswerReason { refused: bool },
    NoiseLen,
    NoiseBody,
    ChunkLen,
    ChunkBody,
}

/// One end of one link, without I/O: the protocol of this module's docs, driven by the
/// caller's reads, writes and clock (see [the module docs](self) for what it does when).
///
/// ```
/// use std::time::Instant;
/// use greenroom::convention::{link::LinkMachine, ClusterSecret, LinkConfig};
///
/// let config = LinkConfig::new("lab", ClusterSecret::from_bytes([7; 32]))?;
/// let now = Instant::now();
/// let mut a = LinkMachine::connecting(&config, "b.example:7400", now)?;
/// let mut b = LinkMachine::accepting(&config, "a.example:51234", now)?;
/// // The connector speaks first; an event loop would write this to the socket.
/// assert!(!a.pending_output().is_empty());
/// // Carry bytes each way until both are quiet (in memory here, instead of TCP).
/// while !a.pending_output().is_empty() || !b.pending_output().is_empty() {
///     let n = a.pending_output().len();
///     b.feed(a.pending_output(), now)?;
///     a.written(n);
///     let n = b.pending_output().len();
///     a.feed(b.pending_output(), now)?;
///     b.written(n);
/// }
/// assert!(a.is_established() && b.is_established());
/// assert_eq!(b.peer_key(), Some(&config.static_key.public()[..]));
/// a.send_frame(b"hello")?;
/// b.feed(a.pending_output(), now)?;
/// assert_eq!(b.next_frame().as_deref(), Some(&b"hello"[..]));
/// # Ok::<(), greenroom::Error>(())
/// ```
pub struct LinkMachine {
    side: Side,
    /// The peer's address, for errors.
    peer: String,
    /// Ours, to check the peer's hello (emptied once established).
    convention: String,
    deadline: Instant,
    max_frame: usize,
    reading: Reading,
    /// How many bytes the unit being read has (always more than 0).
    need: usize,
    /// The handshake message read or written next: 1 to 3, then 4.
    step: usize,
    handshake: Option<Box<snow::HandshakeState>>,
    transport: Option<snow::TransportState>,
    peer_key: Option<[u8; DH_LEN]>,
    failed: bool,
    /// A unit that came split over several feeds, as far as it has come.
    partial: Vec<u8>,
    /// What is to be written; `out[..out_pos]` has been.
    out: Vec<u8>,
    out_pos: usize,
    /// The plaintext of the last chunk decrypted (grown to the largest chunk, never shrunk
    /// in length, so that it is not zeroed again).
    opened: Vec<u8>,
    /// A frame being encrypted, after one byte kept for the flag.
    sealing: Vec<u8>,
    /// Frames received: whole ones (their ranges in `frames`) and, from `frame_start`, the
    /// one coming in.
    received: Vec<u8>,
    frames: VecDeque<Range<usize>>,
    frame_start: usize,
}

impl std::fmt::Debug for LinkMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkMachine")
            .field("peer", &self.peer)
            .field("side", &self.side)
            .field("reading", &self.reading)
            .field("established", &self.is_established())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl LinkMachine {
    /// The end of a link this admin connected to `peer` (an address, for errors) at `now`.
    /// Its hello and first handshake message are at once in [`LinkMachine::pending_output`].
    pub fn connecting(config: &LinkConfig, peer: impl Into<String>, now: Instant) -> Result<LinkMachine> {
        Self::new(config, peer.into(), now, Side::Connector)
    }

    /// The end of a link `peer` (an address, for errors) connected to this admin at `now`.
    /// It says nothing before it has read the peer's hello.
    pub fn accepting(config: &LinkConfig, peer: impl Into<String>, now: Instant) -> Result<LinkMachine> {
        Self::new(config, peer.into(), now, Side::Acceptor)
    }

    fn new(config: &LinkConfig, peer: String, now: Instant, side: Side) -> Result<LinkMachine> {
        let (reading, need) = match side {
            Side::Connector => (Reading::AnswerHead, ANSWER_HEAD),
            Side::Acceptor => (Reading::HelloHead, HELLO_HEAD),
        };
        let mut machine = LinkMachine {
            side,
            peer,
            convention: config.convention.clone(),
            deadline: now
                .checked_add(config.handshake_timeout)
                .unwrap_or_else(|| now + greenroom_protocol::supervision::LONGEST),
            max_frame: usize::try_from(config.max_frame).unwrap_or(usize::MAX),
            reading,
            need,
            step: 1,
            handshake: None,
            transport: None,
            peer_key: None,
            failed: false,
            partial: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            opened: Vec::new(),
            sealing: Vec::new(),
            received: Vec::new(),
            frames: VecDeque::new(),
            frame_start: 0,
        };
        let prologue = config.prologue();
        let builder = snow::Builder::new(params())
            .psk(0, config.secret.bytes())
            .local_private_key(config.static_key.private())
            .prologue(&prologue);
        let noise = match side {
            Side::Connector => builder.build_initiator(),
            Side::Acceptor => builder.build_responder(),
        }
        .map_err(|e| machine.fail(format!("could not set up the handshake: {e}")))?;
        machine.handshake = Some(Box::new(noise));
        if side == Side::Connector {
            let hello = encode_hello(&config.convention).map_err(|e| machine.fail(e.to_string()))?;
            machine.out.extend_from_slice(&hello);
            // Message 1 goes right behind the hello: the answer changes nothing in it.
            machine.write_handshake()?;
        }
        Ok(machine)
    }

    /// The peer's address, as given, for logs.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the handshake has completed: the peer proved the secret and its key, and
    /// frames may go both ways. (It stays true after a later failure; see
    /// [`LinkMachine::is_failed`].)
    pub fn is_established(&self) -> bool {
        self.transport.is_some()
    }

    /// Whether the link has failed: the machine takes no more bytes and sends no more frames.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The peer admin's static public key, once the handshake has proven it.
    pub fn peer_key(&self) -> Option<&[u8]> {
        self.peer_key.as_ref().map(|k| &k[..])
    }

    /// When the handshake must have completed, while it has not: the caller ends the link
    /// then (or calls [`LinkMachine::check_deadline`], which says why). `None` once
    /// established.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.is_established()).then_some(self.deadline)
    }

    /// Fails the link if its handshake has not completed by `now` past the deadline, with
    /// the error saying what it was still waiting for.
    pub fn check_deadline(&mut self, now: Instant) -> Result<()> {
        if !self.is_established() && now >= self.deadline {
            return Err(self.late(&self.waiting_for()));
        }
        Ok(())
    }

    /// Takes `bytes` read from the peer, in any split (a byte at a time works), at `now`:
    /// runs the handshake, queues what it answers, and decrypts frames for
    /// [`LinkMachine::next_frame`]. An error ends the link and says why (the peer's hello of
    /// another version or convention — naming both sides' —, a refusal, a handshake message
    /// that does not authenticate, a frame over the maximum, a message that does not
    /// decrypt, the deadline passed); the caller writes what is still pending (a refusal's
    /// answer) and closes. Frames complete before the error are still given.
    pub fn feed(&mut self, mut bytes: &[u8], now: Instant) -> Result<()> {
        self.usable()?;
        self.check_deadline(now)?;
        self.compact_received();
        while !bytes.is_empty() {
            if self.partial.is_empty() && bytes.len() >= self.need {
                // The whole unit is here: read it in place.
                let (unit, rest) = bytes.split_at(self.need);
                bytes = rest;
                self.unit(unit)?;
            } else {
                let take = (self.need - self.partial.len()).min(bytes.len());
                self.partial.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.partial.len() == self.need {
                    let mut unit = std::mem::take(&mut self.partial);
                    let done = self.unit(&unit);
                    unit.clear();
                    self.partial = unit;
                    done?;
                }
            }
        }
        Ok(())
    }

    /// The peer closed its end (a read returned 0): ends the link and says what that cut
    /// short.
    pub fn peer_closed(&mut self) -> Error {
        let reason = if !self.is_established() {
            format!(
                "the peer closed the connection before {}: it refused this link (see its log) or does not hold this convention's secret",
                self.waiting_for()
            )
        } else if !self.partial.is_empty()
            || self.reading == Reading::ChunkBody
            || self.frame_start < self.received.len()
        {
            "the peer closed the link in the middle of a frame".to_owned()
        } else {
            "the peer closed the link".to_owned()
        };
        self.fail(reason)
    }

    /// What is to be written to the peer, in order; [`LinkMachine::written`] says how much
    /// of it was.
    pub fn pending_output(&self) -> &[u8] {
        self.out.get(self.out_pos..).unwrap_or(&[])
    }

    /// The first `n` bytes of [`LinkMachine::pending_output`] were written.
    pub fn written(&mut self, n: usize) {
        debug_assert!(n <= self.pending_output().len(), "more written than was pending");
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            trim(&mut self.out);
        }
    }

    /// Queues `frame` (up to the link's maximum), encrypted, in as many Noise messages as it
    /// takes. Only once established. A frame over the maximum is refused and the link stays
    /// usable; an encryption failure ends it.
    pub fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.sendable()?;
        if frame.len() > self.max_frame {
            return Err(self.error(format!(
                "a frame of {} bytes is over the link's maximum of {} bytes",
                frame.len(),
                self.max_frame
            )));
        }
        self.sealing.clear();
        self.sealing.push(0);
        self.sealing.extend_from_slice(frame);
        self.seal()
    }

    /// Queues the frame `write` writes (with [`std::io::Write`]) straight into the machine's
    /// buffer, as [`LinkMachine::send_frame`] would: no copy, no allocation. A write past
    /// the link's maximum fails; if `write` fails, nothing is queued and the link stays
    /// usable.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use greenroom::convention::{link::LinkMachine, ClusterSecret, LinkConfig};
    /// # let config = LinkConfig::new("lab", ClusterSecret::from_bytes([7; 32]))?;
    /// # let now = Instant::now();
    /// # let (mut a, mut b) = (LinkMachine::connecting(&config, "b", now)?, LinkMachine::accepting(&config, "a", now)?);
    /// # while !a.pending_output().is_empty() || !b.pending_output().is_empty() {
    /// #     b.feed(a.pending_output(), now)?; let n = a.pending_output().len(); a.written(n);
    /// #     a.feed(b.pending_output(), now)?; let n = b.pending_output().len(); b.written(n);
    /// # }
    /// use std::io::Write;
    /// a.send_frame_with(|w| write!(w, "{} and {}", 1, 2))?;
    /// b.feed(a.pending_output(), now)?;
    /// assert_eq!(b.next_frame_ref(), Some(&b"1 and 2"[..]));
    /// # Ok::<(), greenroom::Error>(())
    /// ```
    pub fn send_frame_with<E: std::fmt::Display>(
        &mut self,
        write: impl FnOnce(&mut FrameWriter<'_>) -> std::result::Result<(), E>,
    ) -> Result<()> {
        self.sendable()?;
        self.sealing.clear();
        self.sealing.push(0);
        let written = write(&mut FrameWriter {
            buf: &mut self.sealing,
            limit: self.max_frame.saturating_add(1),
        });
        if let Err(e) = written {
            self.sealing.clear();
            trim(&mut self.sealing);
            return Err(self.error(format!("could not write the frame: {e}")));
        }
        self.seal()
    }

    /// The next whole frame received, in order.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let frame = self.frames.pop_front()?;
        self.received.get(frame).map(<[u8]>::to_vec)
    }

    /// The next whole frame received, in order, borrowed from the machine's buffer (until
    /// its next use): no allocation.
    pub fn next_frame_ref(&mut self) -> Option<&[u8]> {
        let frame = self.frames.pop_front()?;
        self.received.get(frame)
    }

    /// How many bytes the machine's buffers hold now (their capacity): a few hundred before
    /// the handshake completes, whatever the peer sends.
    pub fn buffered(&self) -> usize {
        self.partial.capacity()
            + self.out.capacity()
            + self.opened.capacity()
            + self.sealing.capacity()
            + self.received.capacity()
            + self.frames.capacity() * std::mem::size_of::<Range<usize>>()
    }

    fn error(&self, reason: String) -> Error {
        Error::ConventionLink {
            peer: self.peer.clone(),
            reason,
        }
    }

    /// Ends the link for `reason`: nothing more goes out.
    fn fail(&mut self, reason: String) -> Error {
        self.failed = true;
        self.out.clear();
        self.out_pos = 0;
        self.partial.clear();
        self.error(reason)
    }

    /// Ends the link for `reason`, which the peer is told.
    fn refuse(&mut self, reason: String) -> Error {
        let error = self.fail(reason);
        if let Error::ConventionLink { reason, .. } = &error {
            self.out.extend_from_slice(&encode_answer(Some(reason)));
        }
        error
    }

    fn late(&mut self, what: &str) -> Error {
        self.fail(format!(
            "the handshake did not finish before its deadline (waiting for {what})"
        ))
    }

    fn waiting_for(&self) -> String {
        match self.reading {
            Reading::HelloHead | Reading::HelloName => "its hello".into(),
            Reading::AnswerHead => "the answer to our hello".into(),
            Reading::AnswerReason { .. } => "the answer's reason".into(),
            Reading::NoiseLen | Reading::NoiseBody => format!("handshake message {}", self.step),
            Reading::ChunkLen | Reading::ChunkBody => "a frame".into(),
        }
    }

    fn usable(&self) -> Result<()> {
        if self.failed {
            return Err(self.error("the link failed earlier and cannot be used again; open a new one".into()));
        }
        Ok(())
    }

    fn sendable(&self) -> Result<()> {
        self.usable()?;
        if !self.is_established() {
            return Err(self.error("the handshake has not completed: frames go out only on an established link".into()));
        }
        Ok(())
    }

    fn expect(&mut self, reading: Reading, need: usize) -> Result<()> {
        debug_assert!(need > 0, "a unit of no bytes would never be read");
        self.reading = reading;
        self.need = need;
        Ok(())
    }

    /// Takes one whole unit: a hello's or an answer's part, a length, a message.
    fn unit(&mut self, unit: &[u8]) -> Result<()> {
        match self.reading {
            Reading::HelloHead => {
                let head = <&[u8; HELLO_HEAD]>::try_from(unit).map_err(|_| self.fail("a short hello".into()))?;
                match parse_hello_head(head) {
                    Ok(len) => self.expect(Reading::HelloName, len),
                    Err(e) => Err(self.refuse(format!("not a Greenroom convention link of this version: {e}"))),
                }
            }
            Reading::HelloName => {
                let refusal = match parse_name(unit) {
                    Err(e) => Some(format!("not a Greenroom convention link of this version: {e}")),
                    Ok(name) if name != self.convention => Some(format!(
                        "this admin is in convention {:?}, not {name:?}: start the member with the same --convention-name",
                        self.convention
                    )),
                    Ok(_) => None,
                };
                if let Some(reason) = refusal {
                    return Err(self.refuse(reason));
                }
                self.make_room();
                self.out.extend_from_slice(&encode_answer(None));
                self.expect(Reading::NoiseLen, 2)
            }
            Reading::AnswerHead => {
                let head = <&[u8; ANSWER_HEAD]>::try_from(unit).map_err(|_| self.fail("a short answer".into()))?;
                match parse_answer_head(head) {
                    Err(e) => Err(self.fail(format!("its answer: {e}"))),
                    Ok((refused, 0)) => self.answer(refused, &[]),
                    Ok((refused, len)) => self.expect(Reading::AnswerReason { refused }, len),
                }
            }
            Reading::AnswerReason { refused } => self.answer(refused, unit),
            Reading::NoiseLen => {
                let len = be16(unit);
                let expected = HANDSHAKE_LENS.get(self.step - 1).copied().unwrap_or(0);
                if len != expected {
                    return Err(self.fail(format!(
                        "handshake message {} would be {len} bytes, where it has {expected} in this version: refused before reading it",
                        self.step
                    )));
                }
                self.expect(Reading::NoiseBody, len)
            }
            Reading::NoiseBody => self.read_handshake(unit),
            Reading::ChunkLen => {
                let len = be16(unit);
                if len < TAG_LEN + 1 {
                    return Err(self.fail(format!("a Noise message of {len} bytes is too short to be one")));
                }
                if self.received.len() - self.frame_start + (len - TAG_LEN - 1) > self.max_frame {
                    return Err(self.over_max());
                }
                self.expect(Reading::ChunkBody, len)
            }
            Reading::ChunkBody => self.open_chunk(unit),
        }
    }

    fn over_max(&mut self) -> Error {
        self.fail(format!(
            "the peer's frame is over the link's maximum of {} bytes",
            self.max_frame
        ))
    }

    /// The acceptor's answer to our hello, with its reason.
    fn answer(&mut self, refused: bool, reason: &[u8]) -> Result<()> {
        if refused {
            // The reason comes from a peer not yet authenticated: control characters are
            // replaced, so that it cannot forge log lines or drive a terminal.
            let reason: String = String::from_utf8_lossy(reason)
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
            return Err(self.fail(format!("refused: {reason}")));
        }
        // Message 1 went with the hello: message 2 comes next.
        self.expect(Reading::NoiseLen, 2)
    }

    /// Reads handshake message `self.step`, writes the next if it is ours, and completes
    /// the handshake after message 3.
    fn read_handshake(&mut self, message: &[u8]) -> Result<()> {
        let step = self.step;
        let mut payload = [0u8; HANDSHAKE_MAX];
        let read = match self.handshake.as_mut() {
            Some(noise) => noise.read_message(message, &mut payload).is_ok(),
            None => false,
        };
        if !read {
            return Err(self.fail(if step == 1 {
                "the first handshake message does not authenticate: the peer does not hold this \
                 convention's secret (check that every member's secret file is the same)"
                    .to_owned()
            } else {
                format!("handshake message {step} does not authenticate: a different secret, or a replayed or tampered handshake")
            }));
        }
        self.step += 1;
        // XX: the connector writes messages 1 and 3, the acceptor message 2.
        let ours = (self.step % 2 == 1) == (self.side == Side::Connector);
        if self.step <= 3 && ours {
            self.write_handshake()?;
        }
        if self.step > 3 {
            self.establish()
        } else {
            self.expect(Reading::NoiseLen, 2)
        }
    }

    /// Queues handshake message `self.step`.
    fn write_handshake(&mut self) -> Result<()> {
        let step = self.step;
        self.make_room();
        let at = self.out.len();
        self.out.resize(at + 2 + HANDSHAKE_MAX, 0);
        let written = match self.handshake.as_mut() {
            Some(noise) => noise
                .write_message(&[], &mut self.out[at + 2..])
                .map_err(|e| e.to_string()),
            None => Err("no handshake state".to_owned()),
        };
        match written {
            Ok(len) => {
                self.out.truncate(at + 2 + len);
                self.out[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
                self.step += 1;
                Ok(())
            }
            Err(e) => Err(self.fail(format!("handshake message {step}: {e}"))),
        }
    }

    fn establish(&mut self) -> Result<()> {
        let Some(noise) = self.handshake.take() else {
            return Err(self.fail("the handshake state is gone".into()));
        };
        let Some(key) = noise.get_remote_static().and_then(|k| <[u8; DH_LEN]>::try_from(k).ok()) else {
            return Err(self.fail("the handshake ended without the peer's static key".into()));
        };
        match noise.into_transport_mode() {
            Ok(transport) => self.transport = Some(transport),
            Err(e) => return Err(self.fail(format!("finishing the handshake: {e}"))),
        }
        self.peer_key = Some(key);
        self.convention = String::new();
        self.expect(Reading::ChunkLen, 2)
    }

    /// Decrypts one chunk and adds its bytes to the frame coming in.
    fn open_chunk(&mut self, sealed: &[u8]) -> Result<()> {
        let len = sealed.len() - TAG_LEN;
        if self.opened.len() < len {
            self.opened.resize(len, 0);
        }
        let opened = match self.transport.as_mut() {
            Some(transport) => transport.read_message(sealed, &mut self.opened[..len]).ok(),
            None => None,
        };
        let Some(n) = opened else {
            return Err(
                self.fail("a message does not decrypt (tampered, replayed or out of order): link closed".into())
            );
        };
        let flag = match self.opened[..n].first() {
            Some(&flag @ (0 | LAST_CHUNK)) => flag,
            Some(flag) => return Err(self.fail(format!("a chunk with the unknown flag {flag}"))),
            None => return Err(self.fail("an empty chunk".into())),
        };
        if n == 1 && flag != LAST_CHUNK {
            return Err(self.fail("an empty chunk that is not a frame's last".into()));
        }
        if self.received.len() - self.frame_start + (n - 1) > self.max_frame {
            return Err(self.over_max());
        }
        self.received.extend_from_slice(&self.opened[1..n]);
        if flag == LAST_CHUNK {
            self.frames.push_back(self.frame_start..self.received.len());
            self.frame_start = self.received.len();
        }
        self.expect(Reading::ChunkLen, 2)
    }

    /// Encrypts the frame in `sealing` (after its flag byte) into `out`. Chunk `i`'s
    /// plaintext is its flag and its data, contiguous in `sealing`: the flag overwrites the
    /// byte before the data, the last of chunk `i - 1`'s, already encrypted — no copy.
    fn seal(&mut self) -> Result<()> {
        let body = self.sealing.len() - 1;
        let chunks = body.div_ceil(CHUNK_DATA).max(1);
        self.make_room();
        self.out.reserve(body + chunks * (2 + 1 + TAG_LEN));
        for i in 0..chunks {
            let start = i * CHUNK_DATA;
            let end = (start + 1 + CHUNK_DATA).min(self.sealing.len());
            self.sealing[start] = if i + 1 == chunks { LAST_CHUNK } else { 0 };
            let at = self.out.len();
            self.out.resize(at + 2 + (end - start) + TAG_LEN, 0);
            let sealed = match self.transport.as_mut() {
                Some(transport) => transport
                    .write_message(&self.sealing[start..end], &mut self.out[at + 2..])
                    .map_err(|e| e.to_string()),
                None => Err("no transport state".to_owned()),
            };
            match sealed {
                Ok(len) => {
                    self.out.truncate(at + 2 + len);
                    self.out[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
                }
                Err(e) => return Err(self.fail(format!("encrypting: {e}"))),
            }
        }
        self.sealing.clear();
        trim(&mut self.sealing);
        Ok(())
    }

    /// Makes the written part of `out` reusable before more is queued (moving what is
    /// pending only when that is at most half of it).
    fn make_room(&mut self) {
        if self.out_pos > 0 && self.out_pos >= self.out.len() / 2 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Drops the frames taken from `received`, moving what is left to its start.
    fn compact_received(&mut self) {
        let keep = self.frames.front().map_or(self.frame_start, |frame| frame.start);
        if keep == 0 {
            return;
        }
        self.received.drain(..keep);
        for frame in &mut self.frames {
            frame.start -= keep;
            frame.end -= keep;
        }
        self.frame_start -= keep;
        trim(&mut self.received);
    }
}

/// A big-endian number of two bytes (any length, for a unit of any size).
fn be16(bytes: &[u8]) -> usize {
    bytes.iter().fold(0, |n, &b| n << 8 | usize::from(b))
}

/// Gives back most of an empty buffer grown for a huge frame.
fn trim(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > TRIM_OVER {
        buf.shrink_to(KEPT_CAPACITY);
    }
}

/// Where [`LinkMachine::send_frame_with`] has a frame written: straight into the machine's
/// buffer, which refuses to grow past the link's frame maximum.
pub struct FrameWriter<'a> {
    /// The flag byte, then the frame.
    buf: &'a mut Vec<u8>,
    limit: usize,
}

impl FrameWriter<'_> {
    /// How many bytes of the frame are written so far.
    pub fn len(&self) -> usize {
        self.buf.len() - 1
    }

    /// Whether nothing of the frame is written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Write for FrameWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the frame is over the link's maximum of {} bytes", self.limit - 1),
            ));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An established link on a stream of its own, with blocking I/O: frames in and out,
/// encrypted, by a [`LinkMachine`].
pub struct Link {
    stream: TcpStream,
    machine: LinkMachine,
    /// Every read lands here.
    incoming: Vec<u8>,
    /// An error the machine met after frames that are still to be given: given after them.
    failure: Option<Error>,
    /// Set by any error in `send` or `recv`: the link is unusable from then on.
    broken: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer())
            .finish_non_exhaustive()
    }
}

/// How much a handshake reads at once: more than its messages, less than a frame chunk.
const HANDSHAKE_READ: usize = 4096;
/// How long a refusing acceptor reads what the peer sent before it closes, and how much.
const REFUSAL_DRAIN: (Duration, u64) = (Duration::from_millis(100), 64 * 1024);

impl Link {
    /// Opens a link on `stream`, which this admin connected to a peer.
    pub fn connect(stream: TcpStream, config: &LinkConfig) -> Result<Link> {
        Self::handshake(stream, config, Side::Connector)
    }

    /// Opens a link on `stream`, which a peer connected to this admin.
    pub fn accept(stream: TcpStream, config: &LinkConfig) -> Result<Link> {
        Self::handshake(stream, config, Side::Acceptor)
    }

    fn handshake(stream: TcpStream, config: &LinkConfig, side: Side) -> Result<Link> {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "an unknown peer".to_owned(), |a| a.to_string());
        let mut machine = LinkMachine::new(config, peer, Instant::now(), side)?;
        stream
            .set_nodelay(true)
            .map_err(|e| machine.fail(format!("setting TCP_NODELAY: {e}")))?;
        let mut failure = None;
        let mut buf = [0u8; HANDSHAKE_READ];
        loop {
            write_before_deadline(&stream, &mut machine)?;
            if machine.is_established() {
                break;
            }
            let left = machine.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(machine.late(&machine.waiting_for()));
            }
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| machine.fail(format!("{e}")))?;
            match (&stream).read(&mut buf) {
                Ok(0) => return Err(machine.peer_closed()),
                Ok(n) => {
                    if let Err(e) = machine.feed(&buf[..n], Instant::now()) {
                        if machine.is_established() {
                            // Frames may have come before it: `recv` gives them first.
                            failure = Some(e);
                            break;
                        }
                        if !machine.pending_output().is_empty() {
                            refuse(&stream, &mut machine);
                        }
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(machine.late(&machine.waiting_for()))
                }
                Err(e) => {
                    let what = machine.waiting_for();
                    return Err(machine.fail(format!("reading {what}: {e}")));
                }
            }
        }
        stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_write_timeout(None))
            .map_err(|e| machine.fail(format!("clearing the handshake deadline: {e}")))?;
        Ok(Link {
            stream,
            machine,
            incoming: vec![0u8; NOISE_MAX + 2],
            failure,
            broken: false,
        })
    }

    /// The peer's address, for logs.
    pub fn peer(&self) -> &str {
        self.machine.peer()
    }

    /// The peer admin's static public key, proven in the handshake.
    pub fn peer_key(&self) -> &[u8] {
        self.machine.peer_key().unwrap_or_default()
    }

    /// Sends one frame (up to the peer's maximum), in as many Noise messages as it takes.
    /// Any error ends the link.
    pub fn send(&mut self, frame: &[u8]) -> Result<()> {
        self.usable()?;
        let sent = self.machine.send_frame(frame).and_then(|()| self.flush());
        self.broken = sent.is_err();
        sent
    }

    /// Receives the next frame. Any error (a read timeout included) ends the link.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.usable()?;
        let received = self.recv_frame();
        self.broken = received.is_err();
        received
    }

    fn usable(&self) -> Result<()> {
        if self.broken {
            return Err(self
                .machine
                .error("the link failed earlier and cannot be used again; open a new one".into()));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        while !self.machine.pending_output().is_empty() {
            match (&self.stream).write(self.machine.pending_output()) {
                Ok(0) => return Err(self.machine.fail("writing: the peer takes no more".into())),
                Ok(n) => self.machine.written(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.machine.fail(format!("writing: {e}"))),
            }
        }
        Ok(())
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(frame) = self.machine.next_frame() {
                return Ok(frame);
            }
            if let Some(failure) = self.failure.take() {
                return Err(failure);
            }
            match (&self.stream).read(&mut self.incoming) {
                Ok(0) => return Err(self.machine.peer_closed()),
                Ok(n) => {
                    if let Err(e) = self.machine.feed(&self.incoming[..n], Instant::now()) {
                        self.failure = Some(e);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.machine.fail(format!("reading: {e}"))),
            }
        }
    }
}

/// Writes all the machine has pending, every write bounded by what is left of its
/// handshake deadline.
fn write_before_deadline(stream: &TcpStream, machine: &mut LinkMachine) -> Result<()> {
    while !machine.pending_output().is_empty() {
        let left = machine.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(machine.late("the peer to take the handshake"));
        }
        stream
            .set_write_timeout(Some(left))
            .map_err(|e| machine.fail(format!("{e}")))?;
        match (&*stream).write(machine.pending_output()) {
            Ok(0) => return Err(machine.fail("the peer stopped taking the handshake".into())),
            Ok(n) => machine.written(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(machine.late("the peer to take the handshake"))
            }
            Err(e) => return Err(machine.fail(format!("writing the handshake: {e}"))),
        }
    }
    Ok(())
}

/// Writes a failed machine's refusal, best effort (a stranger that sent garbage may already
/// be gone), then stops writing and reads a little of what the peer sent: closing with its
/// bytes unread would reset the connection and could discard the answer.
fn refuse(stream: &TcpStream, machine: &mut LinkMachine) {
    // The machine has failed already: its deadline still bounds the write.
    let _ = write_before_deadline(stream, machine);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(REFUSAL_DRAIN.0));
    let _ = std::io::copy(&mut stream.take(REFUSAL_DRAIN.1), &mut std::io::sink());
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, thread};

    use super::*;

    /// A bare snow handshake state with a fresh static key, speaking as a link of
    /// `config("lab", 3)` does: for tests that take the exchange apart message by message.
    fn raw_noise(initiator: bool) -> snow::HandshakeState {
        let key = StaticKey::generate().unwrap();
        let prologue = config("lab", 3).prologue();
        let builder = snow::Builder::new(params())
            .psk(0, &[3u8; 32])
            .local_private_key(key.private())
            .prologue(&prologue);
        if initiator {
            builder.build_initiator().unwrap()
        } else {
            builder.build_responder().unwrap()
        }
    }

    fn config(name: &str, secret: u8) -> LinkConfig {
        LinkConfig::new(name, ClusterSecret::from_bytes([secret; 32])).unwrap()
    }

    /// Runs an acceptor with `theirs` on a loopback port and a connector with `ours`;
    /// returns both outcomes.
    fn pair(ours: LinkConfig, theirs: LinkConfig) -> (Result<Link>, Result<Link>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            Link::accept(stream, &theirs)
        });
        let connected = Link::connect(TcpStream::connect(addr).unwrap(), &ours);
        (connected, acceptor.join().unwrap())
    }

    fn reason(r: Result<Link>) -> String {
        r.expect_err("the link must fail").to_string()
    }

    #[test]
    fn members_with_the_same_secret_exchange_frames_of_any_size() {
        let (ours, theirs) = (config("lab", 7), config("lab", 7));
        let kept = StaticKey::load_or_create(&tempfile::tempdir().unwrap().path().join("node.key"))
            .unwrap()
            .0;
        let theirs = theirs.with_static_key(kept);
        let (their_public, our_public) = (*theirs.static_key.public(), *ours.static_key.public());
        let (a, b) = pair(ours, theirs);
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.peer_key(), their_public, "each learns the key the other proved");
        assert_eq!(b.peer_key(), our_public);
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let sender = thread::spawn(move || {
            for frame in [&b"hello"[..], &[], &big[..], &[9u8; CHUNK_DATA], &[8u8; CHUNK_DATA + 1]] {
                a.send(frame).unwrap();
            }
            a
        });
        assert_eq!(b.recv().unwrap(), b"hello");
        assert_eq!(b.recv().unwrap(), b"");
        let got = b.recv().unwrap();
        assert_eq!(got.len(), 1_000_000);
        assert!(got.iter().enumerate().all(|(i, x)| *x == i as u8));
        assert_eq!(b.recv().unwrap(), vec![9u8; CHUNK_DATA], "exactly one chunk's worth");
        assert_eq!(
            b.recv().unwrap(),
            vec![8u8; CHUNK_DATA + 1],
            "one byte into a second chunk"
        );
        let mut a = sender.join().unwrap();
        b.send(b"and back").unwrap();
        assert_eq!(a.recv().unwrap(), b"and back");
    }

    #[test]
    fn a_peer_without_the_secret_fails_at_the_first_message() {
        let (connector, acceptor) = pair(config("lab", 1), config("lab", 2));
        let acceptor = reason(acceptor);
        assert!(acceptor.contains("first handshake message"), "{acceptor}");
        assert!(acceptor.contains("secret"), "{acceptor}");
        let connector = reason(connector);
        assert!(connector.contains("closed the connection"), "{connector}");
    }

    #[test]
    fn another_convention_is_refused_with_both_names() {
        let (connector, acceptor) = pair(config("blue", 1), config("green", 1));
        let connector = reason(connector);
        assert!(
            connector.contains("refused") && connector.contains("\"green\"") && connector.contains("\"blue\""),
            "{connector}"
        );
        assert!(reason(acceptor).contains("not \"blue\""));
    }

    /// Runs an acceptor and feeds it raw bytes from a stranger; returns its error and what
    /// it answered.
    fn stranger(bytes: &[u8], timeout: Duration) -> (String, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = config("lab", 3);
        config.handshake_timeout = timeout;
        let acceptor = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            Link::accept(stream, &config)
        });
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(bytes);
        let err = reason(acceptor.join().unwrap());
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        (err, answer)
    }

    #[test]
    fn strangers_are_refused_with_a_reason_and_nothing_panics() {
        // Another version.
        let mut old = encode_hello("lab").unwrap();
        old[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        let (err, answer) = stranger(&old, Duration::from_secs(5));
        assert!(err.contains("version"), "{err}");
        assert!(
            String::from_utf8_lossy(&answer).contains("version"),
            "the stranger is told why"
        );
        // Garbage, an HTTP request, plaintext postcard of a data handshake.
        for junk in [
            &b"\xff\xfe\x00garbage!"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            &[0x47, 0x52, 0x4e, 0x52, 6, 0, 0],
        ] {
            let (err, answer) = stranger(junk, Duration::from_secs(5));
            assert!(err.contains("not a Greenroom convention link"), "{err}");
            assert!(
                String::from_utf8_lossy(&answer).contains("not a Greenroom convention link"),
                "the stranger is told why: {answer:?}"
            );
        }
        // A good hello, then a huge Noise length and junk instead of the first message:
        // refused at once, long before the deadline, without waiting for the 64 KiB.
        let mut lying = encode_hello("lab").unwrap();
        lying.extend_from_slice(&[0xff, 0xff]);
        lying.extend_from_slice(&[0u8; 100]);
        let started = Instant::now();
        let (err, _) = stranger(&lying, Duration::from_secs(30));
        assert!(err.contains("handshake message 1 would be 65535 bytes"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let mut junk_noise = encode_hello("lab").unwrap();
        junk_noise.extend_from_slice(&48u16.to_be_bytes());
        junk_noise.extend_from_slice(&[7u8; 48]);
        let (err, _) = stranger(&junk_noise, Duration::from_secs(5));
        assert!(err.contains("first handshake message"), "{err}");
    }

    #[test]
    fn a_peer_that_trickles_bytes_is_cut_at_the_one_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = config("lab", 3);
        config.handshake_timeout = Duration::from_millis(400);
        let acceptor = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let started = Instant::now();
            (Link::accept(stream, &config), started.elapsed())
        });
        let mut s = TcpStream::connect(addr).unwrap();
        // A good hello, the first message's length, then a byte of it every 100 ms: each
        // read is quick, but the whole would take 4.8 s.
        s.write_all(&encode_hello("lab").unwrap()).unwrap();
        s.write_all(&48u16.to_be_bytes()).unwrap();
        let trickler = thread::spawn(move || {
            for _ in 0..30 {
                if s.write_all(&[0]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let (outcome, took) = acceptor.join().unwrap();
        assert!(reason(outcome).contains("deadline"));
        assert!(took < Duration::from_secs(2), "held for {took:?}");
        trickler.join().unwrap();
    }

    #[test]
    fn a_stalled_handshake_is_cut_at_its_deadline() {
        let started = Instant::now();
        let (err, _) = stranger(&encode_hello("lab").unwrap()[..3], Duration::from_millis(300));
        assert!(err.contains("deadline"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_replayed_handshake_does_not_get_in() {
        // An honest connector and acceptor (secret 3, as `stranger`'s) handshake; an
        // eavesdropper records the connector's messages 1 and 3 and replays them to a new
        // acceptor, whose message 2 is different: message 3 no longer authenticates.
        let (mut connector, mut acceptor) = (raw_noise(true), raw_noise(false));
        let (mut m1, mut m2, mut m3, mut scratch) = (
            vec![0u8; NOISE_MAX],
            vec![0u8; NOISE_MAX],
            vec![0u8; NOISE_MAX],
            vec![0u8; NOISE_MAX],
        );
        let n1 = connector.write_message(&[], &mut m1).unwrap();
        acceptor.read_message(&m1[..n1], &mut scratch).unwrap();
        let n2 = acceptor.write_message(&[], &mut m2).unwrap();
        connector.read_message(&m2[..n2], &mut scratch).unwrap();
        let n3 = connector.write_message(&[], &mut m3).unwrap();
        acceptor.read_message(&m3[..n3], &mut scratch).unwrap();
        assert!(acceptor.is_handshake_finished(), "the recorded session was genuine");

        let mut replay = encode_hello("lab").unwrap();
        for m in [&m1[..n1], &m3[..n3]] {
            replay.extend_from_slice(&(m.len() as u16).to_be_bytes());
            replay.extend_from_slice(m);
        }
        let (err, _) = stranger(&replay, Duration::from_secs(5));
        assert!(err.contains("handshake message 3"), "{err}");
    }

    // The machine alone, driven in memory: no sockets, no threads, no clock but the one given.

    /// Memory a machine may hold before its handshake completes, whatever the peer sends.
    const PRE_AUTH_BOUND: usize = 2048;

    fn machines(ours: &LinkConfig, theirs: &LinkConfig, now: Instant) -> (LinkMachine, LinkMachine) {
        (
            LinkMachine::connecting(ours, "acceptor", now).unwrap(),
            LinkMachine::accepting(theirs, "connector", now).unwrap(),
        )
    }

    /// Moves all `from` has pending into `to`, `piece()` bytes per feed.
    fn carry(
        from: &mut LinkMachine,
        to: &mut LinkMachine,
        piece: &mut impl FnMut() -> usize,
        now: Instant,
    ) -> Result<()> {
        while !from.pending_output().is_empty() {
            let n = piece().clamp(1, from.pending_output().len());
            let fed = to.feed(&from.pending_output()[..n], now);
            from.written(n);
            fed?;
        }
        Ok(())
    }

    /// Carries bytes both ways until both machines are quiet; the first error, with the side
    /// whose feed it came from.
    fn pump_with(
        a: &mut LinkMachine,
        b: &mut LinkMachine,
        piece: &mut impl FnMut() -> usize,
        now: Instant,
    ) -> std::result::Result<(), (Side, Error)> {
        while !a.pending_output().is_empty() || !b.pending_output().is_empty() {
            carry(a, b, piece, now).map_err(|e| (b.side, e))?;
            carry(b, a, piece, now).map_err(|e| (a.side, e))?;
        }
        Ok(())
    }

    fn pump(a: &mut LinkMachine, b: &mut LinkMachine, now: Instant) -> std::result::Result<(), (Side, Error)> {
        pump_with(a, b, &mut || usize::MAX, now)
    }

    fn established(now: Instant) -> (LinkMachine, LinkMachine) {
        let (mut a, mut b) = machines(&config("lab", 4), &config("lab", 4), now);
        pump(&mut a, &mut b, now).unwrap();
        (a, b)
    }

    fn frames_of(m: &mut LinkMachine) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| m.next_frame()).collect()
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn machines_handshake_and_exchange_frames_of_any_size_in_memory() {
        let now = Instant::now();
        let (ours, theirs) = (config("lab", 7), config("lab", 7));
        let (mut a, mut b) = machines(&ours, &theirs, now);
        assert!(!a.is_established() && !b.is_established());
        assert_eq!((a.peer_key(), b.peer_key()), (None, None), "no key before it is proven");
        assert!(b.pending_output().is_empty(), "the acceptor waits for the hello");
        pump(&mut a, &mut b, now).unwrap();
        assert!(a.is_established() && b.is_established());
        assert_eq!(
            a.peer_key(),
            Some(&theirs.static_key.public()[..]),
            "each learns the other's key"
        );
        assert_eq!(b.peer_key(), Some(&ours.static_key.public()[..]));
        assert_eq!((a.deadline(), b.deadline()), (None, None));

        let frames = [
            pattern(5, 1),
            vec![],
            pattern(CHUNK_DATA, 2),
            pattern(CHUNK_DATA + 1, 3),
            pattern(1_000_000, 4),
        ];
        for frame in &frames {
            a.send_frame(frame).unwrap();
        }
        carry(&mut a, &mut b, &mut || 100_000, now).unwrap();
        assert_eq!(frames_of(&mut b), frames, "a → b, in order, whole");
        for frame in frames.iter().rev() {
            b.send_frame(frame).unwrap();
        }
        carry(&mut b, &mut a, &mut || usize::MAX, now).unwrap();
        let mut back = Vec::new();
        while let Some(frame) = a.next_frame_ref() {
            back.push(frame.to_vec());
        }
        assert!(back.iter().eq(frames.iter().rev()), "b → a, borrowed");
        // The megabyte frame's buffers are given back once they are empty.
        a.send_frame(b"small").unwrap();
        carry(&mut a, &mut b, &mut || usize::MAX, now).unwrap();
        assert_eq!(frames_of(&mut b), [b"small".to_vec()]);
        a.feed(&[], now).unwrap();
        b.feed(&[], now).unwrap();
        assert!(
            a.buffered() < 500_000 && b.buffered() < 500_000,
            "{} {}",
            a.buffered(),
            b.buffered()
        );
    }

    #[test]
    fn a_byte_at_a_time_is_enough() {
        let now = Instant::now();
        let (mut a, mut b) = machines(&config("lab", 7), &config("lab", 7), now);
        pump_with(&mut a, &mut b, &mut || 1, now).unwrap();
        assert!(a.is_established() && b.is_established());
        let frames = [pattern(100, 1), vec![], pattern(CHUNK_DATA + 1, 2)];
        for frame in &frames {
            a.send_frame(frame).unwrap();
            b.send_frame(frame).unwrap();
        }
        pump_with(&mut a, &mut b, &mut || 1, now).unwrap();
        assert_eq!(frames_of(&mut b), frames);
        assert_eq!(frames_of(&mut a), frames);
    }

    #[test]
    fn a_stream_pipelined_to_the_acceptor_in_one_piece_is_read_in_order() {
        // The connector's message 3 and its first frames can come in the acceptor's same read
        // as message 1: the acceptor must take them in turn, and hold the frames.
        let now = Instant::now();
        let (mut a, mut b) = machines(&config("lab", 7), &config("lab", 7), now);
        let first = a.pending_output().to_vec();
        a.written(first.len());
        b.feed(&first, now).unwrap();
        let second = b.pending_output().to_vec();
        b.written(second.len());
        a.feed(&second, now).unwrap();
        assert!(a.is_established(), "the connector is established after message 2");
        a.send_frame(b"one").unwrap();
        a.send_frame(b"two").unwrap();
        let third = a.pending_output().to_vec();
        a.written(third.len());
        b.feed(&third, now).unwrap();
        assert!(b.is_established());
        assert_eq!(frames_of(&mut b), [b"one".to_vec(), b"two".to_vec()]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        #[test]
        fn any_split_of_the_streams_gives_the_same_frames(
            splits in proptest::collection::vec(1usize..3000, 1..40),
            lens in proptest::collection::vec(0usize..140_000, 0..5),
        ) {
            let now = Instant::now();
            let (mut a, mut b) = machines(&config("lab", 7), &config("lab", 7), now);
            let mut cycle = splits.iter().copied().cycle();
            let mut piece = move || cycle.next().unwrap_or(1);
            pump_with(&mut a, &mut b, &mut piece, now).unwrap();
            proptest::prop_assert!(a.is_established() && b.is_established());
            let frames: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, len)| pattern(*len, i as u8)).collect();
            for frame in &frames {
                a.send_frame(frame).unwrap();
                b.send_frame(frame).unwrap();
            }
            pump_with(&mut a, &mut b, &mut piece, now).unwrap();
            proptest::prop_assert_eq!(frames_of(&mut b), frames.clone());
            proptest::prop_assert_eq!(frames_of(&mut a), frames);
        }
    }

    #[test]
    fn before_authentication_the_machine_holds_a_few_hundred_bytes_whatever_the_peer_sends() {
        let now = Instant::now();
        let lab = config("lab", 3);
        let garbage = vec![0x5au8; 4 << 20];
        let accepting = || LinkMachine::accepting(&lab, "stranger", now).unwrap();

        // Megabytes of garbage for a hello: refused at its head, told why, nothing kept.
        let mut m = accepting();
        let err = m.feed(&garbage, now).unwrap_err().to_string();
        assert!(err.contains("not a Greenroom convention link"), "{err}");
        assert!(String::from_utf8_lossy(m.pending_output()).contains("not a Greenroom convention link"));
        assert!(m.buffered() <= PRE_AUTH_BOUND, "{}", m.buffered());
        assert!(m.feed(b"more", now).unwrap_err().to_string().contains("failed earlier"));

        // A good hello, then the largest Noise length: refused at once, before its body.
        let mut m = accepting();
        let mut lying = encode_hello("lab").unwrap();
        lying.extend_from_slice(&[0xff, 0xff]);
        let err = m.feed(&lying, now).unwrap_err().to_string();
        assert!(err.contains("handshake message 1 would be 65535 bytes"), "{err}");
        assert!(m.pending_output().is_empty(), "nothing more goes to a failed peer");
        assert!(m.buffered() <= PRE_AUTH_BOUND, "{}", m.buffered());

        // A good hello and message 1's length, then megabytes of garbage in 64 KiB reads: the
        // first 48 bytes are the message, which does not authenticate; the rest is not kept.
        let mut m = accepting();
        let mut opening = encode_hello("lab").unwrap();
        opening.extend_from_slice(&48u16.to_be_bytes());
        m.feed(&opening, now).unwrap();
        let mut errors = garbage.chunks(64 * 1024).map(|piece| m.feed(piece, now));
        let err = errors.next().unwrap().unwrap_err().to_string();
        assert!(err.contains("first handshake message does not authenticate"), "{err}");
        assert!(errors.all(|e| e.is_err()));
        assert!(m.buffered() <= PRE_AUTH_BOUND, "{}", m.buffered());

        // Fed a byte at a time, a genuine connector's opening never makes the acceptor hold more.
        let (mut a, mut b) = machines(&lab, &lab, now);
        let mut most = 0;
        while !b.is_established() {
            if let Some(&byte) = a.pending_output().first() {
                b.feed(&[byte], now).unwrap();
                a.written(1);
            } else {
                let answer = b.pending_output().to_vec();
                b.written(answer.len());
                a.feed(&answer, now).unwrap();
            }
            most = most.max(a.buffered()).max(b.buffered());
        }
        assert!(most <= PRE_AUTH_BOUND, "{most}");

        // The connector: garbage for an answer, or an answer then a huge message 2.
        let mut m = LinkMachine::connecting(&lab, "stranger", now).unwrap();
        let err = m.feed(&garbage, now).unwrap_err().to_string();
        assert!(err.contains("its answer"), "{err}");
        assert!(m.buffered() <= PRE_AUTH_BOUND, "{}", m.buffered());
        let mut m = LinkMachine::connecting(&lab, "stranger", now).unwrap();
        let mut answer = encode_answer(None);
        answer.extend_from_slice(&[0xff, 0xff]);
        answer.extend_from_slice(&garbage);
        let err = m.feed(&answer, now).unwrap_err().to_string();
        assert!(err.contains("handshake message 2 would be 65535 bytes"), "{err}");
        assert!(m.buffered() <= PRE_AUTH_BOUND, "{}", m.buffered());
    }

    #[test]
    fn an_oversize_frame_is_refused_before_its_bytes_are_buffered() {
        let now = Instant::now();
        let mut big = config("lab", 4);
        big.max_frame = 10_000_000;
        let mut small = config("lab", 4);
        small.max_frame = 100_000;
        let (mut a, mut b) = machines(&big, &small, now);
        pump(&mut a, &mut b, now).unwrap();

        // b's own maximum: a frame over it is refused, and the link goes on.
        let err = b.send_frame(&vec![1u8; 100_001]).unwrap_err().to_string();
        assert!(err.contains("over the link's maximum of 100000 bytes"), "{err}");
        assert!(!b.is_failed());
        b.send_frame(&vec![2u8; 100_000]).unwrap();
        carry(&mut b, &mut a, &mut || usize::MAX, now).unwrap();
        assert_eq!(frames_of(&mut a), [vec![2u8; 100_000]]);

        // a sends a megabyte: b refuses it when the second chunk's length says it would
        // pass 100,000 bytes, before reading that chunk — the rest is never buffered.
        a.send_frame(&vec![3u8; 1_000_000]).unwrap();
        let sent = a.pending_output().to_vec();
        let first_chunk = 2 + NOISE_MAX;
        let before = b.buffered();
        b.feed(&sent[..first_chunk + 1], now).unwrap();
        let err = b.feed(&sent[first_chunk + 1..], now).unwrap_err().to_string();
        assert!(
            err.contains("the peer's frame is over the link's maximum of 100000 bytes"),
            "{err}"
        );
        assert!(b.buffered() - before < 2 * NOISE_MAX, "{before} then {}", b.buffered());
        assert_eq!(b.next_frame(), None);
    }

    #[test]
    fn output_stays_pending_until_written_and_buffers_are_reused() {
        let now = Instant::now();
        let mut a = LinkMachine::connecting(&config("lab", 4), "acceptor", now).unwrap();
        let all = a.pending_output().to_vec();
        let hello = encode_hello("lab").unwrap();
        assert_eq!(&all[..hello.len()], &hello[..], "the hello first");
        assert_eq!(
            all.len(),
            hello.len() + 2 + HANDSHAKE_LENS[0],
            "then message 1, at once"
        );
        let mut seen = Vec::new();
        while !a.pending_output().is_empty() {
            let n = a.pending_output().len().min(7);
            seen.extend_from_slice(&a.pending_output()[..n]);
            a.written(n);
        }
        assert_eq!(seen, all, "what was written is what was pending, once");

        // Partly written output, more frames queued behind it: all arrive, in order.
        let (mut a, mut b) = established(now);
        for i in 0..3u8 {
            a.send_frame(&[i; 10]).unwrap();
        }
        let mut wire = a.pending_output()[..10].to_vec();
        a.written(10);
        a.send_frame(&[3u8; 10]).unwrap();
        wire.extend_from_slice(a.pending_output());
        let n = a.pending_output().len();
        a.written(n);
        assert!(a.pending_output().is_empty());
        b.feed(&wire, now).unwrap();
        assert_eq!(frames_of(&mut b), (0..4u8).map(|i| vec![i; 10]).collect::<Vec<_>>());

        // Steady traffic reuses the same buffers: after the first frame, no growth.
        let round = |a: &mut LinkMachine, b: &mut LinkMachine| {
            a.send_frame(&[7u8; 200]).unwrap();
            carry(a, b, &mut || usize::MAX, now).unwrap();
            assert_eq!(b.next_frame_ref(), Some(&[7u8; 200][..]));
        };
        round(&mut a, &mut b);
        let held = (a.buffered(), b.buffered());
        for _ in 0..1000 {
            round(&mut a, &mut b);
        }
        b.feed(&[], now).unwrap();
        assert_eq!((a.buffered(), b.buffered()), held);
    }

    #[test]
    fn the_handshake_has_one_deadline_and_an_established_link_none() {
        let t0 = Instant::now();
        let mut lab = config("lab", 4);
        lab.handshake_timeout = Duration::from_secs(5);
        let mut m = LinkMachine::accepting(&lab, "slow", t0).unwrap();
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(5)));
        m.feed(&encode_hello("lab").unwrap()[..3], t0 + Duration::from_secs(1))
            .unwrap();
        m.check_deadline(t0 + Duration::from_millis(4_999)).unwrap();
        let err = m.check_deadline(t0 + Duration::from_secs(5)).unwrap_err().to_string();
        assert!(
            err.contains("deadline") && err.contains("waiting for its hello"),
            "{err}"
        );
        assert!(m.is_failed());

        // Bytes that come after the deadline do not complete it either.
        let (mut a, mut b) = machines(&lab, &lab, t0);
        let opening = a.pending_output().to_vec();
        a.written(opening.len());
        let err = b.feed(&opening, t0 + Duration::from_secs(6)).unwrap_err().to_string();
        assert!(err.contains("deadline"), "{err}");

        // Once established, no deadline: the link may be quiet for as long as it likes.
        let (mut a, mut b) = machines(&lab, &lab, t0);
        pump(&mut a, &mut b, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!((a.deadline(), b.deadline()), (None, None));
        let later = t0 + Duration::from_secs(3600);
        a.check_deadline(later).unwrap();
        a.send_frame(b"later").unwrap();
        carry(&mut a, &mut b, &mut || usize::MAX, later).unwrap();
        assert_eq!(frames_of(&mut b), [b"later".to_vec()]);
    }

    #[test]
    fn a_refused_hello_leaves_its_answer_to_be_written() {
        let now = Instant::now();
        let (mut a, mut b) = machines(&config("blue", 1), &config("green", 1), now);
        let (side, err) = pump(&mut a, &mut b, now).unwrap_err();
        assert!(
            side == Side::Acceptor && err.to_string().contains("not \"blue\""),
            "{err}"
        );
        assert!(!b.pending_output().is_empty(), "the refusal is still to be written");
        let err = carry(&mut b, &mut a, &mut || usize::MAX, now).unwrap_err().to_string();
        assert!(
            err.contains("refused") && err.contains("\"green\"") && err.contains("\"blue\""),
            "the connector learns why, with both names: {err}"
        );

        // Another version: both versions named, on both sides.
        let mut b = LinkMachine::accepting(&config("lab", 1), "future", now).unwrap();
        let mut hello = encode_hello("lab").unwrap();
        hello[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        let err = b.feed(&hello, now).unwrap_err().to_string();
        let (theirs, ours) = (
            format!("version {}", PROTOCOL_VERSION + 1),
            format!("version {PROTOCOL_VERSION}"),
        );
        assert!(err.contains(&theirs) && err.contains(&ours), "{err}");
        let mut a = LinkMachine::connecting(&config("lab", 1), "past", now).unwrap();
        let err = a.feed(b.pending_output(), now).unwrap_err().to_string();
        assert!(err.starts_with("convention link with past: refused:"), "{err}");
        assert!(err.contains(&theirs) && err.contains(&ours), "{err}");
    }

    #[test]
    fn a_refusal_reason_cannot_forge_log_lines() {
        let now = Instant::now();
        let mut a = LinkMachine::connecting(&config("lab", 1), "liar", now).unwrap();
        let err = a
            .feed(&encode_answer(Some("no\nINFO all is well\x1b[2J")), now)
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n') && !err.contains('\x1b'), "{err:?}");
    }

    #[test]
    fn frames_wait_for_the_handshake() {
        let now = Instant::now();
        let (mut a, mut b) = machines(&config("lab", 1), &config("lab", 1), now);
        for m in [&mut a, &mut b] {
            let err = m.send_frame(b"early").unwrap_err().to_string();
            assert!(err.contains("has not completed"), "{err}");
            assert!(!m.is_failed(), "a refused send does not end the link");
        }
        pump(&mut a, &mut b, now).unwrap();
        a.send_frame(b"now").unwrap();
        carry(&mut a, &mut b, &mut || usize::MAX, now).unwrap();
        assert_eq!(frames_of(&mut b), [b"now".to_vec()]);
    }

    #[test]
    fn a_replayed_or_tampered_message_ends_the_link_after_the_frames_before_it() {
        let now = Instant::now();
        let (mut a, mut b) = established(now);
        a.send_frame(b"first").unwrap();
        let first = a.pending_output().to_vec();
        a.written(first.len());
        b.feed(&first, now).unwrap();
        let err = b.feed(&first, now).unwrap_err().to_string();
        assert!(err.contains("does not decrypt"), "a replay: {err}");
        assert_eq!(frames_of(&mut b), [b"first".to_vec()]);
        assert!(b.send_frame(b"x").unwrap_err().to_string().contains("failed earlier"));

        let (mut a, mut b) = established(now);
        a.send_frame(b"kept").unwrap();
        let kept = a.pending_output().len();
        a.send_frame(b"tampered").unwrap();
        let mut wire = a.pending_output().to_vec();
        *wire.last_mut().unwrap() ^= 1;
        let err = b.feed(&wire, now).unwrap_err().to_string();
        assert!(err.contains("does not decrypt"), "{err}");
        assert!(kept < wire.len());
        assert_eq!(frames_of(&mut b), [b"kept".to_vec()], "what came before is still given");
    }

    #[test]
    fn send_frame_with_writes_in_place_up_to_the_maximum() {
        let now = Instant::now();
        let mut small = config("lab", 4);
        small.max_frame = 1000;
        let (mut a, mut b) = machines(&small, &small, now);
        pump(&mut a, &mut b, now).unwrap();
        a.send_frame_with(|w| {
            assert!(w.is_empty());
            w.write_all(b"in ")?;
            w.write_all(b"place")?;
            assert_eq!(w.len(), 8);
            std::io::Result::Ok(())
        })
        .unwrap();
        let err = a
            .send_frame_with(|w| w.write_all(&[0u8; 1001]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("over the link's maximum of 1000 bytes"), "{err}");
        let err = a.send_frame_with(|_| Err("no encoding")).unwrap_err().to_string();
        assert!(err.contains("could not write the frame: no encoding"), "{err}");
        assert!(!a.is_failed(), "a frame not written does not end the link");
        a.send_frame_with(|w| w.write_all(&[5u8; 1000])).unwrap();
        carry(&mut a, &mut b, &mut || usize::MAX, now).unwrap();
        assert_eq!(
            frames_of(&mut b),
            [b"in place".to_vec(), vec![5u8; 1000]],
            "only the written ones"
        );
    }

    #[test]
    fn a_closed_peer_is_explained_by_what_it_cut_short() {
        let now = Instant::now();
        let mut a = LinkMachine::connecting(&config("lab", 1), "gone", now).unwrap();
        let err = a.peer_closed().to_string();
        assert!(
            err.contains("closed the connection before the answer to our hello") && err.contains("secret"),
            "{err}"
        );
        let (mut a, mut b) = established(now);
        a.send_frame(&[1u8; 100]).unwrap();
        b.feed(&a.pending_output()[..50], now).unwrap();
        assert!(b.peer_closed().to_string().contains("in the middle of a frame"));
        let (_, mut b) = established(now);
        assert!(b.peer_closed().to_string().ends_with("the peer closed the link"));
    }

    #[test]
    fn a_machine_can_move_to_the_thread_of_the_loop_that_drives_it() {
        fn send<T: Send>() {}
        send::<LinkMachine>();
        send::<Link>();
    }

    #[test]
    fn the_handshake_messages_have_the_lengths_the_pattern_fixes() {
        let (mut a, mut b) = established(Instant::now());
        // Rebuild the exchange with raw snow states to measure each message.
        let (mut i, mut r) = (raw_noise(true), raw_noise(false));
        let (mut m, mut p) = (vec![0u8; NOISE_MAX], vec![0u8; NOISE_MAX]);
        let n1 = i.write_message(&[], &mut m).unwrap();
        r.read_message(&m[..n1], &mut p).unwrap();
        let n2 = r.write_message(&[], &mut m).unwrap();
        i.read_message(&m[..n2], &mut p).unwrap();
        let n3 = i.write_message(&[], &mut m).unwrap();
        assert_eq!([n1, n2, n3], HANDSHAKE_LENS);
        assert_eq!(HANDSHAKE_LENS.iter().max(), Some(&HANDSHAKE_MAX));
        // And the machines agree with each other after using exactly those.
        a.send_frame(b"ok").unwrap();
        carry(&mut a, &mut b, &mut || usize::MAX, Instant::now()).unwrap();
        assert_eq!(frames_of(&mut b), [b"ok".to_vec()]);
    }
}
