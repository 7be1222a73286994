//! The plaintext opening of a link between two admins of a convention (several machines'
//! actor systems), sent before the encrypted Noise handshake so that a peer of another
//! version or another convention is told exactly that, instead of failing to decrypt.
//!
//! ```text
//! hello (connector):  | "GRNC" (4) | version: u16 LE (2) | name length: u8 (1) | name (UTF-8) |
//! answer (acceptor):  | "GRNC" (4) | version: u16 LE (2) | refused: u8 (1) | reason length: u16 LE (2) | reason |
//! ```
//!
//! Both fields are also bound into the Noise handshake as its prologue, so a peer cannot
//! claim one convention here and speak for another afterwards. Nothing secret is in them.

use serde::{Deserialize, Serialize};

use crate::{
    handshake::check_opening, ActorState, Address, Capabilities, ChildSpec, CreateFailure, ExitCause, NodeId, Payload,
    ProtocolError, Recovery, PROTOCOL_VERSION,
};

/// What travels on an established convention link, one per frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConventionFrame {
    /// A SWIM membership message (foca's own encoding), for the membership layer.
    Membership(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A member's capabilities: the member (its advertised address and incarnation), and a
    /// version that grows with every change, so that an older copy never replaces a newer.
    Capabilities {
        member: String,
        incarnation: u64,
        version: u64,
        capabilities: Capabilities,
        /// How many actors the member runs now (for placement on the least loaded); the
        /// latest heard counts, whatever the version.
        load: u64,
        /// The actor types the member's host binary registers, once it knows them.
        types: Option<Vec<String>>,
    },
    /// The cross-machine data path, between two admins' gateways.
    Gateway(GatewayFrame),
}

/// What one admin's gateway tells another's about a (sender, receiver) pair: `from` lives on
/// the sending admin's node, `to` on the receiving one's (or the other way round for
/// [`GatewayFrame::Ack`] and [`GatewayFrame::Lost`], which travel back). `stream` numbers
/// the sender's connections to its gateway, so that a frame about an earlier connection of
/// the same pair is never taken for one about the current one.
///
/// ```text
///  sender ──Message{seq}──▶ gateway ══Message{from,to,stream,seq}══▶ gateway ──Message{seq}──▶ receiver
///         ◀──Ack{upto}──────        ◀═══Ack{from,to,stream,upto}═══         ◀──Ack{upto}─────
///                                   ◀═══Lost{from,to,stream,reason}  (receiver unreachable)
///         (closes)                  ════Closed{from,to,stream}═════▶ (closes, once written)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayFrame {
    /// Message `seq` of the pair's stream (from 1, without gaps).
    Message {
        from: Address,
        to: Address,
        stream: u64,
        seq: u64,
        correlation: crate::Correlation,
        payload: Payload,
    },
    /// The receiver, incarnation `incarnation`, has processed the stream's messages up to
    /// `upto`. (The incarnation travels with every ack, as with `Lost`, so that the
    /// sender's handshake reply carries it even if [`GatewayFrame::Accepted`] was lost
    /// with a broken link.)
    Ack {
        from: Address,
        to: Address,
        stream: u64,
        upto: u64,
        incarnation: u32,
    },
    /// The receiver cannot be reached (gone, or its connection ended; `refused`: it
    /// refused the connection, for `reason`): the stream ends, and its sender asks what
    /// became of what it had not seen acknowledged. `incarnation`: the receiver that
    /// accepted the stream (0 if none did).
    Lost {
        from: Address,
        to: Address,
        stream: u64,
        reason: String,
        incarnation: u32,
        refused: bool,
    },
    /// The sender closed the stream: the receiving gateway closes its connection to the
    /// receiver once it has written what it holds.
    Closed { from: Address, to: Address, stream: u64 },
    /// The receiver accepted the stream's connection: its incarnation, which the sender's
    /// gateway passes on in the handshake reply it has held back until now (the sender
    /// needs it to ask about that incarnation if the connection ends).
    Accepted {
        from: Address,
        to: Address,
        stream: u64,
        incarnation: u32,
    },
    /// Admin to admin: create an actor here, for an actor or client of node `from`, which
    /// chose this member by the type's capability check. An actor creator is the new
    /// actor's `parent` of record (told of its restarts and end; its end stops it); a client
    /// is none, as a client's local creates are top-level. Answered by
    /// [`GatewayFrame::Created`] with the same `request`.
    Create {
        request: u64,
        from: NodeId,
        parent: Option<Address>,
        type_name: String,
        spec: ChildSpec,
        requirements: Capabilities,
    },
    /// Admin to admin: the answer to [`GatewayFrame::Create`].
    Created {
        request: u64,
        result: Result<Address, CreateFailure>,
    },
    /// Child's admin to parent's admin: `child`, created on the sending node for `parent`
    /// (an actor of the receiving node), was restarted or is gone. The receiving admin
    /// delivers `ChildRestarted` or `ChildActorExited` to `parent`, if it is still the
    /// incarnation that created `child`.
    ChildNotice {
        parent: Address,
        child: Address,
        event: ChildEvent,
    },
    /// Parent's admin to child's admin: the process of `parent` that created `child` is
    /// gone (it died, restarted or exited), so `child` is stopped for good with
    /// `ExitCause::ParentGone` — the rule for local children, across machines.
    ParentGone { parent: Address, child: Address },
    /// Admin to admin: `asker`, an endpoint of the sending node, lost its connection to
    /// `actor`'s incarnation `incarnation` (0: before it was accepted). Answered by
    /// [`GatewayFrame::Settled`] once that incarnation's process is reaped, with what its
    /// ledger says of the asker's messages — or, if it is still running after a short
    /// wait, as unknown: the connection ended for another reason (a broken link), and
    /// what the actor processed is in doubt.
    Settle {
        request: u64,
        actor: Address,
        incarnation: u32,
        asker: Address,
    },
    /// Admin to admin: the answer to [`GatewayFrame::Settle`], as `FromAdmin::Status`
    /// answers a local settle query.
    Settled {
        request: u64,
        state: ActorState,
        pid: Option<u32>,
        incarnation: u32,
        recovery: Option<Recovery>,
        in_doubt: bool,
    },
    /// Member to leader: node `by` wants the global name `name`. Answered by
    /// [`GatewayFrame::NameClaim`].
    ClaimName { request: u64, name: String, by: NodeId },
    /// Leader to member: `Ok(None)`, the name is reserved for it (create the actor, then
    /// [`GatewayFrame::NameBound`]); `Ok(Some(address))`, a live actor holds it; `Err`, why
    /// not now.
    NameClaim {
        request: u64,
        result: Result<Option<Address>, String>,
    },
    /// Member to leader: `holder` now holds `name` (`bound`), or is gone (`!bound`). Leader
    /// to every member: the table changed so.
    NameBound { name: String, holder: Address, bound: bool },
}

/// What happened to an actor created for a parent on another member
/// ([`GatewayFrame::ChildNotice`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildEvent {
    /// Its process ended for `cause` and its supervisor restarted it, at the same address.
    Restarted { cause: ExitCause, restart_count: u32 },
    /// It is gone for good.
    Exited { cause: ExitCause },
}

/// The four bytes that open every convention link: `GRNC`.
pub const LINK_MAGIC: [u8; 4] = *b"GRNC";

/// The longest convention name, in bytes.
pub const MAX_CONVENTION_NAME: usize = 64;

/// The fixed part of a hello: magic, version, name length.
pub const HELLO_HEAD: usize = 7;

/// The fixed part of an answer: magic, version, refused flag, reason length.
pub const ANSWER_HEAD: usize = 9;

/// The longest refusal reason sent, in bytes.
pub const MAX_REASON: usize = 512;

/// A convention name as it may be used: 1 to 64 bytes of letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), ProtocolError> {
    let fine = !name.is_empty()
        && name.len() <= MAX_CONVENTION_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if fine {
        Ok(())
    } else {
        Err(ProtocolError::BadConventionName { name: name.to_owned() })
    }
}

/// The connector's hello for convention `name`.
pub fn encode_hello(name: &str) -> Result<Vec<u8>, ProtocolError> {
    check_name(name)?;
    let mut out = Vec::with_capacity(HELLO_HEAD + name.len());
    out.extend_from_slice(&LINK_MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    Ok(out)
}

/// Checks a hello's fixed part; returns the length of the name that follows.
pub fn parse_hello_head(head: &[u8; HELLO_HEAD]) -> Result<usize, ProtocolError> {
    check_opening(head, &LINK_MAGIC)?;
    let len = usize::from(head[6]);
    if len == 0 || len > MAX_CONVENTION_NAME {
        return Err(ProtocolError::BadConventionName {
            name: format!("<{len} bytes>"),
        });
    }
    Ok(len)
}

/// The convention name of a hello, from the bytes after its fixed part.
pub fn parse_name(bytes: &[u8]) -> Result<String, ProtocolError> {
    let name = String::from_utf8_lossy(bytes).into_owned();
    check_name(&name)?;
    Ok(name)
}

/// The acceptor's answer: accepted (`None`) or refused with a reason.
pub fn encode_answer(refusal: Option<&str>) -> Vec<u8> {
    let reason = refusal.unwrap_or("").as_bytes();
    let reason = &reason[..reason.len().min(MAX_REASON)];
    let mut out = Vec::with_capacity(ANSWER_HEAD + reason.len());
    out.extend_from_slice(&LINK_MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.push(u8::from(refusal.is_some()));
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(reason);
    out
}

/// Checks an answer's fixed part; returns whether it refuses and the length of its reason.
pub fn parse_answer_head(head: &[u8; ANSWER_HEAD]) -> Result<(bool, usize), ProtocolError> {
    check_opening(head, &LINK_MAGIC)?;
    let len = usize::from(u16::from_le_bytes([head[7], head[8]]));
    if len > MAX_REASON {
        return Err(ProtocolError::FrameTooLarge {
            len: len as u64,
            max: MAX_REASON as u32,
        });
    }
    Ok((head[6] != 0, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_round_trips_and_a_bad_one_says_why() {
        let hello = encode_hello("lab-1").unwrap();
        let head: [u8; HELLO_HEAD] = hello[..HELLO_HEAD].try_into().unwrap();
        let len = parse_hello_head(&head).unwrap();
        assert_eq!(parse_name(&hello[HELLO_HEAD..HELLO_HEAD + len]).unwrap(), "lab-1");

        let mut old = head;
        old[4..6].copy_from_slice(&(PROTOCOL_VERSION - 1).to_le_bytes());
        assert!(matches!(
            parse_hello_head(&old),
            Err(ProtocolError::VersionMismatch { .. })
        ));
        let mut http = head;
        http[..4].copy_from_slice(b"GET ");
        let err = parse_hello_head(&http).unwrap_err();
        assert!(matches!(err, ProtocolError::BadMagic { .. }));
        assert!(
            err.to_string().contains("(expected \"GRNC\")"),
            "a link names its own magic: {err}"
        );
        assert!(encode_hello("").is_err());
        assert!(encode_hello("has space").is_err());
        assert!(encode_hello(&"x".repeat(65)).is_err());
    }

    #[test]
    fn an_answer_round_trips() {
        let no = encode_answer(Some("wrong convention"));
        let head: [u8; ANSWER_HEAD] = no[..ANSWER_HEAD].try_into().unwrap();
        assert_eq!(parse_answer_head(&head).unwrap(), (true, 16));
        assert_eq!(&no[ANSWER_HEAD..], b"wrong convention");
        let yes = encode_answer(None);
        let head: [u8; ANSWER_HEAD] = yes[..ANSWER_HEAD].try_into().unwrap();
        assert_eq!(parse_answer_head(&head).unwrap(), (false, 0));
    }
}
