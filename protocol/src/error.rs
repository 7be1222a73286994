//! The protocol's one error type: every way a peer's bytes can be wrong, named precisely.

use thiserror::Error;

/// What was wrong with bytes received from (or about to be sent to) a peer.
///
/// Each variant names the fault so that a log line tells the operator what the peer did.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The length prefix announces a body bigger than this endpoint accepts.
    #[error("frame of {len} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge { len: u64, max: u32 },

    /// A length prefix of zero: no valid body is empty.
    #[error("empty frame: the length prefix is 0")]
    EmptyFrame,

    /// The stream ended part-way through a frame.
    #[error("connection closed in the middle of a frame ({have} of {need} bytes received)")]
    Truncated { have: usize, need: usize },

    /// The handshake did not start with Greenroom's magic bytes.
    #[error(
        "bad magic {found:02x?} (expected {:?}): the peer does not speak the Greenroom protocol",
        String::from_utf8_lossy(.expected)
    )]
    BadMagic { found: Vec<u8>, expected: [u8; 4] },

    /// A convention name that is empty, too long, or has characters other than letters,
    /// digits, `-`, `_` and `.`.
    #[error("bad convention name {name:?}: use 1 to 64 letters, digits, `-`, `_` or `.`")]
    BadConventionName { name: String },

    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {peer}, this build speaks version {ours}")]
    VersionMismatch { peer: u16, ours: u16 },

    /// The handshake frame is shorter than magic plus version.
    #[error("handshake frame too short: {len} bytes, need at least 6 (magic + version)")]
    ShortHandshake { len: usize },

    /// A body did not decode as the type the channel carries.
    #[error("could not decode {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },

    /// A body decoded as the expected type but did not end there.
    #[error("{what} followed by {extra} unexpected bytes: a frame holds exactly one value")]
    TrailingBytes { what: &'static str, extra: usize },

    /// A value could not be encoded (a serde type that postcard cannot represent).
    #[error("could not encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
}
