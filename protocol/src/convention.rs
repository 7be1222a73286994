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

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{
    handshake::check_opening, ActorState, Address, Capabilities, ChildSpec, CreateFailure, ExitCause, NodeId, Payload,
    ProtocolError, Recovery, PROTOCOL_VERSION,
};

/// What travels on an established convention link, one per frame. Links go one way: the
/// member that opened a link writes on it, the one that accepted it reads.
// The data path's frame is the large one and the common one: boxing it would cost an
// allocation per message for the sake of the rare small ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConventionFrame {
    /// The first frame on every link: which member, in which life (its advertised address
    /// and incarnation), opened it. The accepting member binds the link to that member if
    /// the static key the link proved is the one first proven for that life; every later
    /// frame on the link speaks for that member, and for no other.
    Hello { member: SocketAddr, incarnation: u64 },
    /// A SWIM membership message (foca's own encoding), for the membership layer.
    Membership(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The sending member's capabilities, with a version that grows with every change, so
    /// that an older copy never replaces a newer.
    Capabilities {
        version: u64,
        capabilities: Capabilities,
        /// How many actors the member runs now (for placement on the least loaded); the
        /// latest heard counts, whatever the version.
        load: u64,
        /// The actor types the member's host binary registers, once it knows them.
        types: Option<Vec<String>>,
    },
    /// The cross-machine data path, between two members' gateways.
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

impl GatewayFrame {
    /// Whether the member of node `sender`, whose authenticated link carried this frame to
    /// the member of node `me`, may say it: a frame about a stream names the sender's node
    /// on the side it speaks for (a message's and a close's `from`, an ack's, a loss's and
    /// an acceptance's `to`) and this node on the other, and an admin's frame names the
    /// sender where it says who asks. Otherwise it is refused with what was wrong, so that
    /// a member holding the cluster secret cannot ack, lose or settle another member's
    /// stream. (Answers matched by request number — `Created`, `Settled`, `NameClaim` — and
    /// the leader's `NameBound` are checked by the admin, which knows whom it asked and who
    /// leads.)
    pub fn check_sender(&self, sender: NodeId, me: NodeId) -> Result<(), String> {
        let (theirs, ours, what): (Option<NodeId>, Option<NodeId>, &str) = match self {
            GatewayFrame::Message { from, to, .. } => (Some(from.node()), Some(to.node()), "a message's sender"),
            GatewayFrame::Closed { from, to, .. } => (Some(from.node()), Some(to.node()), "a closed stream's sender"),
            GatewayFrame::Ack { from, to, .. } => (Some(to.node()), Some(from.node()), "an ack's receiver"),
            GatewayFrame::Lost { from, to, .. } => (Some(to.node()), Some(from.node()), "a loss's receiver"),
            GatewayFrame::Accepted { from, to, .. } => (Some(to.node()), Some(from.node()), "an acceptance's receiver"),
            // Both the asker and the parent are the sender's: the answer goes to `from`, and
            // the parent hears of the child.
            GatewayFrame::Create { from, parent, .. } => match parent.map(|p| p.node()).filter(|n| *n != sender) {
                Some(elsewhere) => (Some(elsewhere), None, "a create's parent"),
                None => (Some(*from), None, "a create's asker"),
            },
            GatewayFrame::ChildNotice { parent, child, .. } => {
                (Some(child.node()), Some(parent.node()), "a child notice's child")
            }
            GatewayFrame::ParentGone { parent, child } => {
                (Some(parent.node()), Some(child.node()), "a parent-gone notice's parent")
            }
            GatewayFrame::Settle { actor, asker, .. } => (Some(asker.node()), Some(actor.node()), "a settle's asker"),
            GatewayFrame::ClaimName { by, .. } => (Some(*by), None, "a name claim's claimant"),
            GatewayFrame::Created { .. }
            | GatewayFrame::Settled { .. }
            | GatewayFrame::NameClaim { .. }
            | GatewayFrame::NameBound { .. } => (None, None, ""),
        };
        if let Some(theirs) = theirs.filter(|n| *n != sender) {
            return Err(format!(
                "{what} is on node {}, not on node {} whose link carried it",
                theirs.0, sender.0
            ));
        }
        if let Some(ours) = ours.filter(|n| *n != me) {
            return Err(format!("it is about node {}, not this node ({})", ours.0, me.0));
        }
        Ok(())
    }
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
    fn a_frame_about_a_stream_is_taken_only_from_the_member_it_speaks_for() {
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        let (at_a, at_b) = (Address::new(a, 5), Address::new(b, 7));
        // b's gateway acks a's sender to b's receiver: fine from b, refused from c.
        let ack = GatewayFrame::Ack {
            from: at_a,
            to: at_b,
            stream: 1,
            upto: 3,
            incarnation: 1,
        };
        assert_eq!(ack.check_sender(b, a), Ok(()));
        let refused = ack.check_sender(c, a).unwrap_err();
        assert!(refused.contains("node 2, not on node 3"), "{refused}");
        // A message from b's actor to a's: only b may carry it, and only to a.
        let message = GatewayFrame::Message {
            from: at_b,
            to: at_a,
            stream: 1,
            seq: 1,
            correlation: crate::Correlation::None,
            payload: crate::Payload {
                tag: "t".into(),
                bytes: vec![],
            },
        };
        assert_eq!(message.check_sender(b, a), Ok(()));
        assert!(message.check_sender(c, a).is_err());
        assert!(message.check_sender(b, c).unwrap_err().contains("not this node"));
        let settle = GatewayFrame::Settle {
            request: 1,
            actor: at_a,
            incarnation: 1,
            asker: at_b,
        };
        assert!(settle.check_sender(c, a).is_err());
        let create = GatewayFrame::Create {
            request: 1,
            from: b,
            parent: Some(Address::new(c, 1)),
            type_name: "t".into(),
            spec: ChildSpec::default(),
            requirements: Capabilities::new(),
        };
        assert!(
            create.check_sender(b, a).is_err(),
            "a parent on another node than the asker"
        );
        // An asker on another node than the sender, the parent on the sender's: refused too
        // (the answer would go to the asker, as if this node had been asked).
        let create = GatewayFrame::Create {
            request: 1,
            from: c,
            parent: Some(at_b),
            type_name: "t".into(),
            spec: ChildSpec::default(),
            requirements: Capabilities::new(),
        };
        assert!(create.check_sender(b, a).unwrap_err().contains("asker"));
        // A create from b for b's actor, or for b's client, is b's to send.
        let create = GatewayFrame::Create {
            request: 1,
            from: b,
            parent: Some(at_b),
            type_name: "t".into(),
            spec: ChildSpec::default(),
            requirements: Capabilities::new(),
        };
        assert_eq!(create.check_sender(b, a), Ok(()));
        let create = GatewayFrame::Create {
            request: 1,
            from: b,
            parent: None,
            type_name: "t".into(),
            spec: ChildSpec::default(),
            requirements: Capabilities::new(),
        };
        assert_eq!(create.check_sender(b, a), Ok(()));
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
