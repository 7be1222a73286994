//! The admin's conversation with its gateway process.
//!
//! In a convention, everything that touches the network — the TCP listener, the encrypted
//! links to the other members, SWIM membership, the cross-machine streams — runs in a
//! separate process, the **gateway**, which the admin starts, feeds and restarts if it dies.
//! The admin never parses a byte a stranger sent: what reaches it comes over a socketpair
//! from its own gateway, in frames of this crate's codec, already checked there (a frame
//! from another member carries the node of the authenticated member whose link brought it).
//!
//! ```text
//!   admin ──ToGateway::Start, then Capabilities / Types / Load / Send──▶ gateway ══links══▶ members
//!   admin ◀──Ready, Members, Up / Down / Capabilities, Frame, LinkBroke── gateway
//! ```
//!
//! The first frame the admin sends is [`ToGateway::Start`]; the gateway answers
//! [`FromGateway::Ready`] once it is listening and has asked the leader in, or
//! [`FromGateway::Failed`] (and exits) if it cannot start.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{convention::GatewayFrame, Capabilities, NodeId};

/// What the admin tells its gateway.
// `Send` is the large variant and the common one: boxing it would cost an allocation per
// frame for the sake of the rare small ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToGateway {
    /// The first frame: who this member is and how to join (boxed: large, and sent once).
    Start(Box<GatewayStart>),
    /// This admin's capabilities changed: every member hears of them.
    Capabilities(Capabilities),
    /// The actor types this admin's host binary registers, once known.
    Types(Vec<String>),
    /// How many actors this admin runs now (shared with the next capabilities round).
    Load(u64),
    /// A frame for the admin of `node` (creates and their answers, notices, settles, global
    /// names). One that cannot be sent is answered with [`FromGateway::LinkBroke`].
    Send { node: NodeId, frame: GatewayFrame },
    /// The answer to [`FromGateway::Ping`]: the admin is alive and answering.
    Pong,
}

/// How a gateway starts: everything the admin knows of its membership.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStart {
    /// The convention's name.
    pub convention: String,
    /// Where the other members reach this one.
    pub advertise: SocketAddr,
    /// The leader's address; `None`: this member leads.
    pub leader: Option<SocketAddr>,
    /// When the admin started (ms since the Unix epoch): with `advertise`, the member's
    /// identity and node id, the same across gateway restarts.
    pub incarnation: u64,
    /// The renewal count to start from: the last a previous gateway of this admin reported
    /// ([`FromGateway::Renewed`]), so that a restarted gateway speaks as the identity the
    /// others know.
    pub bump: u16,
    /// The file holding the convention's secret (read by the gateway, never sent).
    pub secret_file: PathBuf,
    /// The private half of the admin's static key, the same for every gateway it starts.
    #[serde(with = "serde_bytes")]
    pub static_key: Vec<u8>,
    /// The admin's runtime directory (actors' sockets, `gateway.sock`).
    pub runtime_dir: PathBuf,
    /// The largest frame body, in bytes.
    pub max_frame: u32,
    /// How many local connections may wait for their handshake at once.
    pub max_pending: u32,
    /// This admin's capabilities, load and actor types now.
    pub capabilities: Capabilities,
    pub load: u64,
    pub types: Option<Vec<String>>,
    /// The members the admin knew when its previous gateway died (empty at the first
    /// start): the new gateway lists and reaches them at once, asks them in, and declares
    /// down any it does not find again.
    pub members: Vec<MemberView>,
}

impl std::fmt::Debug for GatewayStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The static key stays out of every log.
        f.debug_struct("GatewayStart")
            .field("convention", &self.convention)
            .field("advertise", &self.advertise)
            .field("leader", &self.leader)
            .field("incarnation", &self.incarnation)
            .field("bump", &self.bump)
            .field("secret_file", &self.secret_file)
            .field("runtime_dir", &self.runtime_dir)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

/// A member of the convention as the gateway knows it: its identity, and what it last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Where the others reach it.
    pub addr: SocketAddr,
    /// When its admin started (ms since the Unix epoch).
    pub incarnation: u64,
    /// Its capabilities, as it last told this member (empty until it has).
    pub capabilities: Capabilities,
    /// How many actors it runs, as it last said.
    pub load: u64,
    /// The static public key its link proved (`None` until one has).
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    /// The actor types its host binary registers, once it has said.
    pub types: Option<Vec<String>>,
    /// How long ago it last told its capabilities, in milliseconds (`None`: not yet).
    pub heard_ms_ago: Option<u64>,
}

impl MemberView {
    /// Its node id: the node of its actors' addresses.
    pub fn node(&self) -> NodeId {
        NodeId::for_member(&self.addr.to_string(), self.incarnation)
    }
}

/// What the gateway tells its admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromGateway {
    /// Listening, and asking the leader in. `public_key`: the static key's public half.
    Ready {
        #[serde(with = "serde_bytes")]
        public_key: Vec<u8>,
    },
    /// Is the admin answering? A gateway whose admin stops answering (stopped, or hung)
    /// stops speaking for it in SWIM, so that the others take the member for failed, and
    /// speaks again once the admin answers.
    Ping,
    /// It could not start, for `reason`; it exits.
    Failed { reason: String },
    /// SWIM renewed this member's identity (it had been declared down while alive): a
    /// restarted gateway starts from `bump`.
    Renewed { bump: u16 },
    /// The members believed alive now, each time the list or what one of them said changes.
    Members(Vec<MemberView>),
    /// A member left, died or was cut off.
    Down { addr: SocketAddr, incarnation: u64 },
    /// A live member's capabilities, first heard or changed.
    Capabilities {
        addr: SocketAddr,
        incarnation: u64,
        capabilities: Capabilities,
    },
    /// A frame from the admin of node `from` (the member whose authenticated link carried
    /// it; boxed: rare and large).
    Frame { from: NodeId, frame: Box<GatewayFrame> },
    /// The link to `node` broke, or a frame for it could not be sent: whatever waits for
    /// an answer from its admin fails now.
    LinkBroke(NodeId),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode_frame};

    #[test]
    fn every_control_frame_round_trips_and_the_key_is_never_printed() {
        let start = GatewayStart {
            convention: "lab".into(),
            advertise: "127.0.0.1:7400".parse().unwrap(),
            leader: Some("127.0.0.2:7400".parse().unwrap()),
            incarnation: 1_700_000_000_000,
            bump: 3,
            secret_file: "/etc/greenroom/secret".into(),
            static_key: vec![0xAB; 32],
            runtime_dir: "/run/user/1000/greenroom".into(),
            max_frame: 1 << 20,
            max_pending: 256,
            capabilities: Capabilities::new().with("gpu", &true).unwrap(),
            load: 4,
            types: Some(vec!["app::Worker".into()]),
            members: Vec::new(),
        };
        assert!(!format!("{start:?}").contains("171"), "0xAB as decimal");
        assert!(!format!("{start:?}").to_lowercase().contains("ab, ab"));
        let to = ToGateway::Start(Box::new(start));
        let mut buf = Vec::new();
        encode_frame(&mut buf, &to, u32::MAX, "to gateway").unwrap();
        assert_eq!(decode::<ToGateway>(&buf[4..], "to gateway").unwrap(), to);
        let from = FromGateway::Members(vec![MemberView {
            addr: "10.0.0.7:7400".parse().unwrap(),
            incarnation: 9,
            capabilities: Capabilities::new(),
            load: 0,
            key: Some(vec![1; 32]),
            types: None,
            heard_ms_ago: Some(20),
        }]);
        let mut buf = Vec::new();
        encode_frame(&mut buf, &from, u32::MAX, "from gateway").unwrap();
        assert_eq!(decode::<FromGateway>(&buf[4..], "from gateway").unwrap(), from);
    }
}
