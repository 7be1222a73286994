//! The runtime's one error type. Every message says what went wrong and, where it can, what
//! to do about it.

use std::{io, path::PathBuf, time::Duration};

use greenroom_protocol::{Address, CreateFailure, ExitCause, ProtocolError};

use crate::message::AnyMessage;
use thiserror::Error;

/// Everything that can go wrong in the `greenroom` crate.
#[derive(Debug, Error)]
pub enum Error {
    /// A message value could not be encoded with postcard.
    #[error("could not encode a message of type `{type_name}`: {source}")]
    Encode {
        type_name: &'static str,
        #[source]
        source: postcard::Error,
    },

    /// A message carried the expected type tag but its bytes did not decode.
    #[error("message tagged `{tag}` did not decode as `{expected}`: {source}")]
    Decode {
        tag: String,
        expected: &'static str,
        #[source]
        source: postcard::Error,
    },

    /// A convention's cluster secret file, or an admin's static key file, is missing,
    /// malformed, or readable by others.
    #[error("{what} {}: {fix}", path.display())]
    ConventionKeyFile {
        what: &'static str,
        path: PathBuf,
        fix: String,
    },

    /// A link to another admin of a convention failed or was refused.
    #[error("convention link with {peer}: {reason}")]
    ConventionLink { peer: String, reason: String },

    /// The actor at this address has exited for good; messages to it cannot be delivered.
    #[error("actor {address} is gone ({cause}); messages to it can no longer be delivered")]
    ActorGone { address: Address, cause: ExitCause },

    /// No actor was ever created at this address in this system (or, for an address of another
    /// member of a convention, that member could not be reached).
    #[error("no actor at {0}: this actor system never created that address, or, for an address of another member of a convention, that member could not be reached (the messages sent to it came back)")]
    UnknownActor(Address),

    /// The link to the member of this actor (of another member of a convention) broke
    /// while the message was on its way, and the actor lived on: it may or may not have
    /// processed it. It was not sent again, so it was never processed twice.
    #[error("the link to {0}'s member broke while the message was on its way: it may or may not have been processed (it was not sent again); send it again if that is safe")]
    InDoubt(Address),

    /// `ask` waited the whole timeout without a reply.
    #[error("no reply from {address} within {timeout:?}")]
    Timeout { address: Address, timeout: Duration },

    /// The actor failed on a message from this client (it panicked or returned an error
    /// twice, or its process died while processing it) and returned the message.
    ///
    /// It may be the reply to an earlier `tell` rather than to the current `ask`: look at
    /// `message` to see which.
    #[error("actor {address} could not process the message `{}` and returned it: {details}", message.tag())]
    Poisoned {
        address: Address,
        message: AnyMessage,
        details: String,
    },

    /// The actor handled the request without answering it (see
    /// [`Context::reply`](crate::Context::reply)).
    #[error("{address} handled the request without answering it: {details}")]
    Unanswered { address: Address, details: String },

    /// A request got no answer (see [`crate::Response::into_result`]).
    #[error("{request} (`{message_type}`) to {address} failed: {error}")]
    RequestFailed {
        request: crate::RequestId,
        address: Address,
        message_type: &'static str,
        error: crate::RequestError,
    },

    /// `ask` got a reply of another type than the one asked for.
    #[error("expected a reply of type `{expected}` from {address}, got `{got}`")]
    UnexpectedReply {
        address: Address,
        expected: &'static str,
        got: String,
    },

    /// `create_actor` failed.
    #[error("create_actor(`{type_name}`) failed: {failure}")]
    Create { type_name: String, failure: CreateFailure },

    /// The admin process is no longer there.
    #[error("the actor system's admin process has gone away; start a new ActorSystem")]
    AdminGone,

    /// The admin refused or garbled the conversation.
    #[error("unexpected answer from the admin: {0}")]
    AdminProtocol(String),

    /// The admin process is there but did not answer in time: it is stopped (`SIGSTOP`),
    /// hung, or swamped. A client does not wait on such an admin: attaching gives up after
    /// 4 s, other requests after their own bounds (see `docs/security.md` in the
    /// repository).
    #[error("the admin{} is not answering: no reply within {waited:?}{state}", pid.map_or(String::new(), |p| format!(" (pid {p})")))]
    AdminNotAnswering {
        /// `None` when even `connect` timed out (the admin's backlog is full), before the
        /// kernel could say who listens.
        pid: Option<u32>,
        waited: std::time::Duration,
        /// What `/proc` says of it, when that explains the silence: `"; it is stopped
        /// (SIGSTOP): `kill -CONT 4711` resumes it"`.
        state: String,
    },

    /// The runtime directory could not be prepared.
    #[error("runtime directory {path}: {why}")]
    RuntimeDir { path: PathBuf, why: String },

    /// A peer sent bytes that break the protocol.
    #[error("protocol error from {peer}: {source}")]
    Protocol {
        peer: String,
        #[source]
        source: ProtocolError,
    },

    /// The admin process could not be started.
    #[error("could not start the admin process from {exe}: {source}")]
    SpawnAdmin {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `ActorSystem::start` would re-run this program as its admin (no
    /// `SystemConfig::host_executable`), but the program would not become one: it did not
    /// call `greenroom_host::init` first thing in `main`, nor invoke
    /// `greenroom_host::test_support!` (a test binary). Nothing was started.
    #[error("{0}")]
    NoHostEntry(String),

    /// The admin process exited before it answered its owner.
    #[error(
        "the admin process ({}) exited before it answered ({status}); its reason, if it gave one, is in the log. \
         If that executable is not a Greenroom host binary: a program calls greenroom_host::init(registry) first \
         thing in main, a test binary invokes greenroom_host::test_support!(registry), a dedicated host binary calls \
         greenroom_host::serve(registry)",
        exe.display()
    )]
    AdminExited {
        exe: PathBuf,
        status: std::process::ExitStatus,
    },

    /// This process was asked to act as a host or admin but was not started by Greenroom.
    #[error("{0}")]
    NotStartedByGreenroom(String),

    /// Too many messages are waiting for an actor to process them.
    #[error(
        "{address} has {bytes} bytes of unprocessed messages from this sender (limit {limit}); it is not keeping up"
    )]
    Backpressure {
        address: Address,
        bytes: usize,
        limit: usize,
    },

    /// The actor type's capability check refused this system.
    #[error(
        "no compatible actor system for `{type_name}`: its capability check (Actor::accepts) refused this system's capabilities {capabilities:?} for requirements {requirements:?}; give the system what it needs (SystemConfig::capabilities, update_capability) or ask for less"
    )]
    NoCompatibleSystem {
        type_name: String,
        /// The keys the system offers.
        capabilities: Vec<String>,
        /// The keys the create required.
        requirements: Vec<String>,
    },

    /// A capability value could not be encoded.
    #[error("capability value: {0}")]
    Capability(#[source] ProtocolError),

    /// A simple-base system has no registry to construct actors from.
    #[error(
        "the simple base constructs actors in this process but has no registry: pass SystemConfig::registry, or call greenroom_host::init(registry) first in main"
    )]
    NoRegistry,

    /// The call exists for the other base only.
    #[error("{0}")]
    WrongBase(&'static str),

    /// No admin answers in this runtime directory.
    #[error(
        "no actor system is running in {runtime_dir} ({why}); start one with `greenroom start --host-bin PATH --name NAME`, or check the name"
    )]
    NoSuchSystem { runtime_dir: PathBuf, why: String },

    /// A system name that cannot be a directory name.
    #[error("invalid actor system name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'")]
    InvalidSystemName(String),

    /// This `ActorSystem` handle was shut down (closed, for a private or attached client) or
    /// its system stopped.
    #[error("this ActorSystem has been shut down (or closed); start or connect a new one")]
    SystemStopped,
    /// A [`SystemConfig`](crate::SystemConfig) setting cannot be used.
    #[error("SystemConfig::{setting}: {why}")]
    InvalidSetting { setting: &'static str, why: String },

    /// An operating-system call failed.
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// [`Error::AdminNotAnswering`] for admin `pid`, after `waited`.
    pub(crate) fn admin_not_answering(pid: Option<u32>, waited: std::time::Duration) -> Error {
        let Some(pid) = pid else {
            return Error::AdminNotAnswering {
                pid: None,
                waited,
                state: "; nobody accepted the connection".to_owned(),
            };
        };
        let state = match crate::process_role::process_state(pid) {
            Some('T') | Some('t') => format!("; it is stopped (SIGSTOP): `kill -CONT {pid}` resumes it"),
            Some('D') => "; it is waiting on the disk or the kernel".to_owned(),
            None => "; it has exited".to_owned(),
            Some(_) => "; it may be hung or overloaded".to_owned(),
        };
        Error::AdminNotAnswering {
            pid: Some(pid),
            waited,
            state,
        }
    }

    #[doc(hidden)]
    pub fn io(doing: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let doing = doing.into();
        move |source| Error::Io { doing, source }
    }
}

/// `Result` with the runtime's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
