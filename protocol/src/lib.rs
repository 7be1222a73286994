//! The Greenroom wire protocol: the only crate that knows how bytes on a socket are laid out.
//!
//! Every connection in a Greenroom system — client to admin, admin to host, actor to actor —
//! carries the same thing: a stream of **frames**, each a little-endian `u32` length followed by
//! that many bytes of [postcard]-encoded body. The first frame each way is a **handshake**
//! ([`handshake`]) carrying a magic number and the protocol version, so that a peer that does not
//! speak Greenroom, or speaks another version, is refused with an error that says which.
//!
//! ```text
//! +----------------+--------------------------------------+
//! | len: u32 (LE)  | body: `len` bytes, postcard-encoded  |
//! +----------------+--------------------------------------+
//! ```
//!
//! What the bodies are is in [`wire`]: data frames between endpoints, acknowledgements flowing
//! back, and the control conversation with the admin. The codec ([`frame`]) refuses a frame
//! larger than the configured maximum *before* allocating for it.
//!
//! This crate does no I/O policy: it encodes into and decodes from buffers. Who reads when,
//! and what to do about an error, belongs to the runtime.

pub mod capabilities;
pub mod convention;
pub mod error;
pub mod frame;
pub mod gateway;
pub mod handshake;
pub mod supervision;
pub mod wire;

pub use capabilities::Capabilities;
pub use error::ProtocolError;
pub use frame::{encode_frame, FrameReader, ReadUntil};
pub use handshake::{Handshake, HandshakeReply, PeerRole, MAX_HANDSHAKE_FRAME};
pub use supervision::{Backoff, ChildSpec, OnFailure, ResourceLimits, RestartType, Strategy, SupervisorSpec};
pub use wire::{
    ActorRow, ActorState, Address, ConventionMember, ConventionView, Correlation, CreateFailure, DataFrame, DataReply,
    ExitCause, FromAdmin, MemberRow, NodeId, Payload, PendingWakeup, Recovery, Resource, SystemDescription, ToAdmin,
    TroupeLoad,
};

/// The four bytes that open every handshake: `GRNR`.
pub const MAGIC: [u8; 4] = *b"GRNR";

/// The protocol version this build speaks. Peers must speak exactly this version.
///
/// Bump it whenever the layout of any type in [`wire`] or [`handshake`] changes, or the tag
/// of one of the runtime's own messages (`greenroom.ActorExitRequest`, ...).
pub const PROTOCOL_VERSION: u16 = 19;

/// Default largest frame body accepted, in bytes (16 MiB). Configurable per system.
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// Size of the length prefix in front of every frame body.
pub const LEN_PREFIX: usize = 4;
