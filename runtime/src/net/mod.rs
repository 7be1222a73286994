//! Sockets: the framed control connection, the peer-uid check, and the data-path endpoint
//! shared by actor hosts and clients.

pub mod endpoint;
pub(crate) mod framed;
pub(crate) mod peer;
