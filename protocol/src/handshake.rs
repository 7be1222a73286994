//! The first frame each way on every connection.
//!
//! The connecting side sends a [`Handshake`], the accepting side answers with a
//! [`HandshakeReply`]. Both bodies start with raw bytes that are checked before any postcard
//! decoding, so a stranger or an old build is told exactly what is wrong:
//!
//! ```text
//! handshake body:  | "GRNR" (4) | version: u16 LE (2) | postcard(PeerRole)            |
//! reply body:      | "GRNR" (4) | version: u16 LE (2) | postcard((Option<String>, u32)) |
//!                          refusal: None = accepted, Some(reason) = refused; then incarnation
//! ```
//!
//! A connector may pipeline frames after its handshake without waiting for the reply: if the
//! acceptor refuses, it says why and closes, and the connector treats everything it sent on
//! that connection as undelivered.
//!
//! Until an acceptor has accepted a connection's handshake, it reads that connection with a
//! frame limit of [`MAX_HANDSHAKE_FRAME`] instead of the configured maximum (see
//! [`crate::FrameReader::set_max_frame`]): a stranger that connects and sends a length prefix
//! of 16 MiB is refused at once, and one that stalls mid-handshake holds a few KiB at most.

use serde::{Deserialize, Serialize};

use crate::{frame, Address, ProtocolError, MAGIC, PROTOCOL_VERSION};

/// Who is connecting, and for what. Decides which frame types the connection carries next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRole {
    /// A data connection: endpoint `from` will send [`crate::DataFrame`]s to endpoint `to`,
    /// and receive [`crate::DataReply`]s back.
    Data { from: Address, to: Address },
    /// An actor host's control connection to its admin.
    Host,
    /// A client program's control connection to its admin.
    Client,
}

/// The connector's opening frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub role: PeerRole,
}

/// The acceptor's answer: accepted, or refused with a reason the connector can log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    pub refusal: Option<String>,
    /// On a data connection, the incarnation of the actor that accepted it (1 for the first
    /// process, +1 per restart), so that a sender whose connection ends can ask the admin
    /// about exactly that incarnation. 0 elsewhere.
    pub incarnation: u32,
}

const HEADER: usize = 6;

/// The largest handshake body an acceptor reads: a handshake is about 30 bytes (magic,
/// version, a role with two addresses), so this leaves room for growth while keeping what a
/// connection that has not yet said who it is can make its acceptor buffer to a few KiB.
/// An acceptor raises its frame limit to the configured maximum once it has accepted the
/// handshake (a connector reads the reply, whose refusal text may be longer, with its
/// configured maximum).
pub const MAX_HANDSHAKE_FRAME: u32 = 1024;

fn check_header(body: &[u8]) -> Result<&[u8], ProtocolError> {
    if body.len() < HEADER {
        if body.len() >= 4 && body[..4] != MAGIC {
            return Err(ProtocolError::BadMagic {
                found: body[..4].to_vec(),
                expected: MAGIC,
            });
        }
        return Err(ProtocolError::ShortHandshake { len: body.len() });
    }
    check_opening(body, &MAGIC)?;
    Ok(&body[HEADER..])
}

/// Checks the opening of a handshake or a convention hello (at least six bytes): `magic`,
/// then this build's protocol version. Both checks come before any decoding, so a stranger
/// or an old build is told exactly which is wrong.
pub(crate) fn check_opening(head: &[u8], magic: &[u8; 4]) -> Result<(), ProtocolError> {
    if head[..4] != *magic {
        return Err(ProtocolError::BadMagic {
            found: head[..4].to_vec(),
            expected: *magic,
        });
    }
    let peer = u16::from_le_bytes([head[4], head[5]]);
    if peer != PROTOCOL_VERSION {
        return Err(ProtocolError::VersionMismatch {
            peer,
            ours: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

fn encode_with_header<T: Serialize>(buf: &mut Vec<u8>, value: &T, what: &'static str) -> Result<(), ProtocolError> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&MAGIC);
    body.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    postcard::to_io(value, &mut body).map_err(|source| ProtocolError::Encode { what, source })?;
    // A handshake is tiny; the frame limit cannot bite, but keep one path for framing.
    frame::encode_raw_frame(buf, &body, u32::MAX)
}

impl Handshake {
    /// Appends this handshake as a frame to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), ProtocolError> {
        encode_with_header(buf, &self.role, "handshake")
    }

    /// Parses a handshake frame body, checking magic and version first.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let rest = check_header(body)?;
        Ok(Handshake {
            role: frame::decode(rest, "handshake role")?,
        })
    }
}

impl HandshakeReply {
    /// Appends this reply as a frame to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), ProtocolError> {
        encode_with_header(buf, &(&self.refusal, self.incarnation), "handshake reply")
    }

    /// Parses a reply frame body, checking magic and version first.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let rest = check_header(body)?;
        let (refusal, incarnation) = frame::decode(rest, "handshake reply")?;
        Ok(HandshakeReply { refusal, incarnation })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameReader, DEFAULT_MAX_FRAME};
    use proptest::prelude::*;

    fn body_of(buf: &[u8]) -> Vec<u8> {
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
        r.push(buf);
        r.next_frame().unwrap().unwrap().to_vec()
    }

    #[test]
    fn round_trip() {
        let hs = Handshake {
            role: PeerRole::Data {
                from: Address::local(1),
                to: Address::local(2),
            },
        };
        let mut buf = Vec::new();
        hs.encode(&mut buf).unwrap();
        assert_eq!(Handshake::decode(&body_of(&buf)).unwrap(), hs);

        let reply = HandshakeReply {
            refusal: Some("no".into()),
            incarnation: 3,
        };
        let mut buf = Vec::new();
        reply.encode(&mut buf).unwrap();
        assert_eq!(HandshakeReply::decode(&body_of(&buf)).unwrap(), reply);
    }

    #[test]
    fn the_largest_handshake_fits_the_pre_handshake_limit() {
        let far = Address::new(crate::NodeId(u32::MAX), u64::MAX);
        for role in [PeerRole::Data { from: far, to: far }, PeerRole::Host, PeerRole::Client] {
            let mut buf = Vec::new();
            Handshake { role }.encode(&mut buf).unwrap();
            let mut r = FrameReader::new(MAX_HANDSHAKE_FRAME);
            r.push(&buf);
            assert!(r.next_frame().unwrap().is_some());
            assert!(buf.len() < 64, "a handshake is {} bytes", buf.len());
        }
    }

    #[test]
    fn wrong_magic_is_named() {
        let err = Handshake::decode(b"HTTP/1.1 200").unwrap_err();
        assert!(matches!(err, ProtocolError::BadMagic { .. }), "{err}");
        assert!(err.to_string().contains("does not speak the Greenroom protocol"));
        assert!(err.to_string().contains("(expected \"GRNR\")"), "{err}");
    }

    #[test]
    fn wrong_version_is_named() {
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        body.push(1);
        let err = Handshake::decode(&body).unwrap_err();
        match err {
            ProtocolError::VersionMismatch { peer, ours } => {
                assert_eq!(peer, PROTOCOL_VERSION + 1);
                assert_eq!(ours, PROTOCOL_VERSION);
            }
            other => panic!("expected VersionMismatch, got {other}"),
        }
    }

    #[test]
    fn short_handshake_is_named() {
        assert!(matches!(
            Handshake::decode(b"GRN"),
            Err(ProtocolError::ShortHandshake { len: 3 })
        ));
    }

    proptest! {
        #[test]
        fn garbage_handshakes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Handshake::decode(&bytes);
            let _ = HandshakeReply::decode(&bytes);
        }

        #[test]
        fn garbage_after_a_valid_header_is_a_decode_error(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            body.extend_from_slice(&tail);
            match Handshake::decode(&body) {
                Ok(_) | Err(ProtocolError::Decode { .. } | ProtocolError::TrailingBytes { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}
