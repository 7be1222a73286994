//! An authenticated, encrypted link between two admins of a convention, over TCP.
//!
//! ```text
//! connector                                         acceptor
//!   ── hello: GRNC, version, convention name ──▶      checks both; on a mismatch answers
//!   ◀── answer: GRNC, version, accepted | refused(reason)   "refused" with the reason, closes
//!   ── Noise msg 1: psk, e ─────────────────────▶      fails here without the secret
//!   ◀── Noise msg 2: e, ee, s, es ──────────────
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
//! convention name are also the handshake's prologue, so they are authenticated too.
//!
//! A frame of any size up to the link's maximum is cut into chunks: each chunk's plaintext is
//! one flag byte (1 = the frame's last chunk) and up to 65,518 bytes of the frame. The
//! receiver checks the frame's size against the maximum before it grows its buffer. Any
//! decryption failure, out-of-order or replayed message ends the link: there is no recovery
//! inside a link, only a new one.
//!
//! The handshake has one deadline for all of it (`LinkConfig::handshake_timeout`), checked
//! before every read and write, so a peer that stalls or trickles bytes cannot hold a
//! connection open. After any error in `send` or `recv` a link refuses further use: its
//! cipher states may no longer match the peer's. This link does blocking I/O on its own stream; the admin
//! will drive links from its event loop when membership is built on them.

use std::{
    io::{Read, Write},
    net::TcpStream,
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

/// An established link: frames in and out, encrypted.
pub struct Link {
    stream: TcpStream,
    transport: snow::TransportState,
    peer: String,
    peer_key: Vec<u8>,
    max_frame: u32,
    cipher: Vec<u8>,
    plain: Vec<u8>,
    /// Set by any error in `send` or `recv`: the link is unusable from then on.
    broken: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("peer", &self.peer).finish_non_exhaustive()
    }
}

/// The side of a handshake this end plays.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Connector,
    Acceptor,
}

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
        let mut io = Deadlined {
            stream,
            deadline: crate::system::deadline_after(config.handshake_timeout),
            peer: peer.clone(),
        };
        io.stream
            .set_nodelay(true)
            .map_err(|e| io.failed(format!("setting TCP_NODELAY: {e}")))?;
        match side {
            Side::Connector => io.say_hello(&config.convention)?,
            Side::Acceptor => io.hear_hello(&config.convention)?,
        }
        let prologue = config.prologue();
        let builder = snow::Builder::new(params())
            .psk(0, config.secret.bytes())
            .local_private_key(config.static_key.private())
            .prologue(&prologue);
        let mut noise = match side {
            Side::Connector => builder.build_initiator(),
            Side::Acceptor => builder.build_responder(),
        }
        .map_err(|e| io.failed(format!("could not set up the handshake: {e}")))?;
        let mut buf = vec![0u8; NOISE_MAX];
        let mut payload = vec![0u8; NOISE_MAX];
        // XX: the connector writes messages 1 and 3, the acceptor message 2.
        for step in 0..3 {
            let ours = (step % 2 == 0) == (side == Side::Connector);
            if ours {
                let len = noise
                    .write_message(&[], &mut buf)
                    .map_err(|e| io.failed(format!("handshake message {}: {e}", step + 1)))?;
                io.write_noise(&buf[..len])?;
            } else {
                let len = io.read_noise(&mut buf, step + 1)?;
                noise.read_message(&buf[..len], &mut payload).map_err(|_| {
                    io.failed(if step == 0 {
                        "the first handshake message does not authenticate: the peer does not hold this \
                         convention's secret (check that every member's secret file is the same)"
                            .to_owned()
                    } else {
                        format!("handshake message {} does not authenticate: a different secret, or a replayed or tampered handshake", step + 1)
                    })
                })?;
            }
        }
        let peer_key = noise
            .get_remote_static()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io.failed("the handshake ended without the peer's static key".into()))?;
        let transport = noise
            .into_transport_mode()
            .map_err(|e| io.failed(format!("finishing the handshake: {e}")))?;
        io.stream
            .set_read_timeout(None)
            .and_then(|()| io.stream.set_write_timeout(None))
            .map_err(|e| io.failed(format!("clearing the handshake deadline: {e}")))?;
        Ok(Link {
            stream: io.stream,
            transport,
            peer,
            peer_key,
            max_frame: config.max_frame,
            cipher: vec![0u8; NOISE_MAX],
            plain: vec![0u8; NOISE_MAX],
            broken: false,
        })
    }

    /// The peer's address, for logs.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The peer admin's static public key, proven in the handshake.
    pub fn peer_key(&self) -> &[u8] {
        &self.peer_key
    }

    /// How long one write of `send` may block (`None`: as long as it takes). A `send` that
    /// times out ends the link.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.stream
            .set_write_timeout(timeout)
            .map_err(|e| self.failed(format!("{e}")))
    }

    fn failed(&self, reason: String) -> Error {
        Error::ConventionLink {
            peer: self.peer.clone(),
            reason,
        }
    }

    /// Ends the link at once with a reset, discarding what the kernel has not sent yet:
    /// for a peer given up on (its senders got those messages back), so that nothing is
    /// delivered after all once a partition heals.
    pub fn abort(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        if let Err(e) = nix::sys::socket::setsockopt(&self.stream, nix::sys::socket::sockopt::Linger, &linger) {
            tracing::debug!(peer = %self.peer, error = %e, "could not set SO_LINGER to reset a link");
        }
    }

    /// Sends one frame (up to the peer's maximum), in as many Noise messages as it takes.
    /// Any error ends the link.
    pub fn send(&mut self, frame: &[u8]) -> Result<()> {
        self.usable()?;
        let sent = self.send_frame(frame);
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
            return Err(self.failed("the link failed earlier and cannot be used again; open a new one".into()));
        }
        Ok(())
    }

    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        if frame.len() > self.max_frame as usize {
            return Err(self.failed(format!(
                "a frame of {} bytes is over the link's maximum of {} bytes",
                frame.len(),
                self.max_frame
            )));
        }
        let mut out = Vec::with_capacity(frame.len() + (frame.len() / CHUNK_DATA + 1) * (2 + TAG_LEN + 1));
        let mut chunks = frame.chunks(CHUNK_DATA).peekable();
        let mut chunk_plain = Vec::with_capacity(CHUNK_DATA.min(frame.len()) + 1);
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let last = chunks.peek().is_none();
            chunk_plain.clear();
            chunk_plain.push(if last { LAST_CHUNK } else { 0 });
            chunk_plain.extend_from_slice(chunk);
            let len = self
                .transport
                .write_message(&chunk_plain, &mut self.cipher)
                .map_err(|e| Error::ConventionLink {
                    peer: self.peer.clone(),
                    reason: format!("encrypting: {e}"),
                })?;
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&self.cipher[..len]);
            if last {
                break;
            }
        }
        self.stream
            .write_all(&out)
            .map_err(|e| self.failed(format!("writing: {e}")))
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>> {
        let mut frame = Vec::new();
        loop {
            let mut len = [0u8; 2];
            self.stream
                .read_exact(&mut len)
                .map_err(|e| self.failed(format!("reading: {e}")))?;
            let len = usize::from(u16::from_be_bytes(len));
            if len < TAG_LEN + 1 {
                return Err(self.failed(format!("a Noise message of {len} bytes is too short to be one")));
            }
            self.stream
                .read_exact(&mut self.cipher[..len])
                .map_err(|e| Error::ConventionLink {
                    peer: self.peer.clone(),
                    reason: format!("reading: {e}"),
                })?;
            let n = self
                .transport
                .read_message(&self.cipher[..len], &mut self.plain)
                .map_err(|_| Error::ConventionLink {
                    peer: self.peer.clone(),
                    reason: "a message does not decrypt (tampered, replayed or out of order): link closed".into(),
                })?;
            let (flag, data) = match self.plain[..n].split_first() {
                Some((&flag @ (0 | LAST_CHUNK), data)) => (flag, data),
                Some((flag, _)) => return Err(self.failed(format!("a chunk with the unknown flag {flag}"))),
                None => return Err(self.failed("an empty chunk".into())),
            };
            if data.is_empty() && flag != LAST_CHUNK {
                return Err(self.failed("an empty chunk that is not a frame's last".into()));
            }
            if frame.len() + data.len() > self.max_frame as usize {
                return Err(self.failed(format!(
                    "the peer's frame is over the link's maximum of {} bytes",
                    self.max_frame
                )));
            }
            frame.extend_from_slice(data);
            if flag == LAST_CHUNK {
                return Ok(frame);
            }
        }
    }
}

/// The stream during a handshake: every read and write bounded by one deadline.
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
    peer: String,
}

impl Deadlined {
    fn failed(&self, reason: String) -> Error {
        Error::ConventionLink {
            peer: self.peer.clone(),
            reason,
        }
    }

    fn time_left(&self) -> Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.failed("the handshake did not finish before its deadline".into()));
        }
        Ok(left)
    }

    /// Fills `buf`, every `read` bounded by what is left of the one deadline (a peer that
    /// trickles a byte at a time still runs out of time).
    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = self.time_left().map_err(|_| self.late(what))?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.failed(format!("{e}")))?;
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(self.failed(format!(
                        "the peer closed the connection before {what}: it refused this link (see its log) or does not hold this convention's secret"
                    )))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(self.late(what))
                }
                Err(e) => return Err(self.failed(format!("reading {what}: {e}"))),
            }
        }
        Ok(())
    }

    fn late(&self, what: &str) -> Error {
        self.failed(format!(
            "the handshake did not finish before its deadline (waiting for {what})"
        ))
    }

    /// Writes all of `bytes`, every `write` bounded by what is left of the deadline.
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let mut written = 0;
        while written < bytes.len() {
            let left = self.time_left()?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| self.failed(format!("{e}")))?;
            match self.stream.write(&bytes[written..]) {
                Ok(0) => return Err(self.failed("the peer stopped taking the handshake".into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(self.late("the peer to take the handshake"))
                }
                Err(e) => return Err(self.failed(format!("writing the handshake: {e}"))),
            }
        }
        Ok(())
    }

    fn say_hello(&mut self, convention: &str) -> Result<()> {
        let hello = encode_hello(convention).map_err(|e| self.failed(e.to_string()))?;
        self.write_all(&hello)?;
        let mut head = [0u8; ANSWER_HEAD];
        self.read_exact(&mut head, "the answer to our hello")?;
        let (refused, len) = parse_answer_head(&head).map_err(|e| self.failed(format!("its answer: {e}")))?;
        let mut reason = vec![0u8; len];
        self.read_exact(&mut reason, "the answer's reason")?;
        if refused {
            // The reason comes from a peer not yet authenticated: control characters are
            // replaced, so that it cannot forge log lines or drive a terminal.
            let reason: String = String::from_utf8_lossy(&reason)
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
            return Err(self.failed(format!("refused: {reason}")));
        }
        Ok(())
    }

    fn hear_hello(&mut self, convention: &str) -> Result<()> {
        let mut head = [0u8; HELLO_HEAD];
        self.read_exact(&mut head, "its hello")?;
        let name = match parse_hello_head(&head) {
            Ok(len) => {
                let mut name = vec![0u8; len];
                self.read_exact(&mut name, "its hello")?;
                parse_name(&name)
            }
            Err(e) => Err(e),
        };
        let refusal = match &name {
            Err(e) => Some(format!("not a Greenroom convention link of this version: {e}")),
            Ok(name) if name != convention => Some(format!(
                "this admin is in convention {convention:?}, not {name:?}: start the member with the same --convention-name"
            )),
            Ok(_) => None,
        };
        // Best effort: a stranger that sent garbage may already be gone.
        let _ = self.write_all(&encode_answer(refusal.as_deref()));
        match refusal {
            Some(reason) => {
                // Closing with its junk unread would reset the connection and could discard
                // the answer: stop writing, and read a little of what it sent first.
                let _ = self.stream.shutdown(std::net::Shutdown::Write);
                let _ = self.stream.set_read_timeout(Some(Duration::from_millis(100)));
                let _ = std::io::copy(&mut (&self.stream).take(64 * 1024), &mut std::io::sink());
                Err(self.failed(reason))
            }
            None => Ok(()),
        }
    }

    fn write_noise(&mut self, message: &[u8]) -> Result<()> {
        let mut framed = Vec::with_capacity(2 + message.len());
        framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
        framed.extend_from_slice(message);
        self.write_all(&framed)
    }

    fn read_noise(&mut self, buf: &mut [u8], step: usize) -> Result<usize> {
        let mut len = [0u8; 2];
        let what = format!("handshake message {step}");
        self.read_exact(&mut len, &what)?;
        let len = usize::from(u16::from_be_bytes(len));
        self.read_exact(&mut buf[..len], &what)?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, thread};

    use super::*;

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
        // A good hello, then a huge Noise length and junk instead of the first message.
        let mut lying = encode_hello("lab").unwrap();
        lying.extend_from_slice(&[0xff, 0xff]);
        lying.extend_from_slice(&[0u8; 100]);
        let (err, _) = stranger(&lying, Duration::from_millis(500));
        assert!(err.contains("deadline"), "{err}");
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
        // A good hello, a Noise length of 65,535, then a byte every 100 ms: each read is
        // quick, but the whole would take hours.
        s.write_all(&encode_hello("lab").unwrap()).unwrap();
        s.write_all(&[0xff, 0xff]).unwrap();
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
        let prologue = config("lab", 3).prologue();
        let build = |initiator: bool| {
            let key = StaticKey::generate().unwrap();
            let builder = snow::Builder::new(params())
                .psk(0, &[3u8; 32])
                .local_private_key(key.private())
                .prologue(&prologue);
            if initiator {
                builder.build_initiator().unwrap()
            } else {
                builder.build_responder().unwrap()
            }
        };
        let (mut connector, mut acceptor) = (build(true), build(false));
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
}
