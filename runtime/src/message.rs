//! The message model: any serde type is a message; on the wire it is a type tag plus bytes.
//!
//! A receiver gets an [`AnyMessage`] and asks for the type it expects:
//!
//! ```
//! use greenroom::{AnyMessage, Message};
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Greeting { text: String }
//!
//! let msg = AnyMessage::new(&Greeting { text: "hi".into() })?;
//! assert!(msg.is::<Greeting>());
//! assert!(!msg.is::<u32>());
//! assert_eq!(msg.downcast::<Greeting>(), Some(Greeting { text: "hi".into() }));
//! # Ok::<(), greenroom::Error>(())
//! ```
//!
//! Decoding happens only when asked, and only if the tag matches, so an actor that forwards a
//! message never pays to decode it.
//!
//! ## The type tag
//! By default the tag is the type's path ([`std::any::type_name`]), e.g. `my_app::Greeting`.
//! That is the same only in binaries built from the same source with the same compiler:
//! moving the type to another module, or building the client and the hosts apart (or two
//! versions of a program), changes it, and the other side no longer recognises the message.
//! Message types belong in a crate both sides use; to decouple the tag from the path as
//! well, declare a stable one with [`message_tag!`](crate::message_tag):
//!
//! ```
//! # mod my_app { #[derive(serde::Serialize, serde::Deserialize)] pub struct Greeting; }
//! greenroom::message_tag!(my_app::Greeting = "my_app.Greeting/v1");
//! # assert_eq!(<my_app::Greeting as greenroom::Message>::type_tag(), "my_app.Greeting/v1");
//! ```
//!
//! The runtime's own messages ([`ActorExitRequest`], [`PoisonMessage`], ...) have fixed
//! tags (`greenroom.ActorExitRequest`, ...). See [`crate::tag`].

use std::fmt;

use greenroom_protocol::{Address, ExitCause, Payload};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

/// A type that can be sent between actors: any `Serialize + DeserializeOwned + Send` type.
///
/// Implemented for every such type; there is nothing to derive beyond serde's traits. A
/// type's wire tag is set with [`message_tag!`](crate::message_tag), not by overriding
/// [`Message::type_tag`].
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The tag naming this type on the wire: the tag declared with
    /// [`message_tag!`](crate::message_tag), or else the type's path (see [`crate::tag::of`]).
    fn type_tag() -> &'static str {
        crate::tag::of::<Self>()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

/// A received message whose type is not yet known: a tag plus encoded bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnyMessage(Payload);

impl AnyMessage {
    /// Encodes `value` as a message.
    pub fn new<M: Message>(value: &M) -> Result<Self> {
        let bytes = postcard::to_allocvec(value).map_err(|source| Error::Encode {
            type_name: M::type_tag(),
            source,
        })?;
        Ok(AnyMessage(Payload {
            tag: std::borrow::Cow::Borrowed(M::type_tag()),
            bytes,
        }))
    }

    /// The message type's tag.
    pub fn tag(&self) -> &str {
        &self.0.tag
    }

    /// Is this a message of type `M`?
    pub fn is<M: Message>(&self) -> bool {
        crate::tag::matches::<M>(&self.0.tag)
    }

    /// Decodes the message as `M`: `Ok(None)` if it is another type, an error if the tag
    /// says `M` but the bytes do not decode (a peer built from other source).
    pub fn try_downcast<M: Message>(&self) -> Result<Option<M>> {
        if !self.is::<M>() {
            return Ok(None);
        }
        postcard::from_bytes(&self.0.bytes)
            .map(Some)
            .map_err(|source| Error::Decode {
                tag: self.0.tag.clone().into_owned(),
                expected: M::type_tag(),
                source,
            })
    }

    /// Decodes the message as `M`, or `None` if it is another type. A message that carries
    /// `M`'s tag but does not decode is treated as not-`M`; inside an actor host it is then
    /// logged with its sender and handed to the dead-letter path (see [`take_undecodable`]).
    pub fn downcast<M: Message>(&self) -> Option<M> {
        match self.try_downcast() {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable message treated as unhandled");
                UNDECODABLE.with(|u| u.set(true));
                None
            }
        }
    }

    /// The size of the encoded value in bytes.
    pub fn encoded_len(&self) -> usize {
        self.0.bytes.len()
    }

    #[doc(hidden)]
    pub fn from_payload(payload: Payload) -> Self {
        AnyMessage(payload)
    }

    #[doc(hidden)]
    pub fn into_payload(self) -> Payload {
        self.0
    }

    #[doc(hidden)]
    pub fn payload(&self) -> &Payload {
        &self.0
    }
}

impl fmt::Debug for AnyMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyMessage({}, {} bytes)", self.0.tag, self.0.bytes.len())
    }
}

thread_local! {
    /// Set when `downcast` met a message whose tag matched but whose bytes did not decode.
    static UNDECODABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a `downcast` on this thread met an undecodable message since the last call (and
/// clears the flag). A host checks it after each `receive`, so that a message built from
/// other source than its receiver reaches the dead-letter path instead of vanishing.
#[doc(hidden)]
pub fn take_undecodable() -> bool {
    UNDECODABLE.with(|u| u.replace(false))
}

/// Asks an actor to stop. Its `receive` is called with this message first (to clean up or
/// reply), then each of its children is asked to exit, and once they are gone the actor's
/// process exits and its parent receives [`ChildActorExited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ActorExitRequest;

/// Tells a parent that one of its children has exited for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildActorExited {
    /// The child's address (now dead).
    pub child: Address,
    /// Why it exited.
    pub cause: ExitCause,
}

/// Tells a parent that one of its children died and has been restarted by its supervision
/// policy, at the same address. Messages to the child are kept and delivered to the new
/// incarnation; the one it was processing when it died went back to its sender as a
/// [`PoisonMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRestarted {
    /// The child's address (unchanged).
    pub child: Address,
    /// Why its previous process ended.
    pub cause: ExitCause,
    /// How many times it has been restarted so far.
    pub restart_count: u32,
}

/// A message that could not be delivered because its target is gone for good, handed to the
/// system's dead-letter handler (an actor that called `Context::handle_dead_letters`), with
/// the dead target as sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadEnvelope {
    /// Where the message was going.
    pub target: Address,
    /// Who sent it.
    pub sender: Address,
    /// The message, undecoded.
    pub message: AnyMessage,
}

/// Delivered to an actor that asked for it with `Context::wakeup_after`, with the actor
/// itself as sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeupMessage {
    /// The delay that was asked for.
    pub delay: std::time::Duration,
    /// The payload given to `wakeup_after`, undecoded.
    pub payload: AnyMessage,
}

/// Returned to a sender whose message the receiver failed on twice (panic or error), or
/// was processing when its process died.
///
/// The receiver keeps running; the message is not retried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonMessage {
    /// The message that failed.
    pub message: AnyMessage,
    /// What went wrong (the panic message or the error's text).
    pub details: String,
}

/// The answer to a request its receiver handled without answering (a handler of a type not
/// listed in its `dispatch!`, or a hand-written `receive` that never called `ctx.reply`):
/// sent by the runtime, so that the request fails at once, saying so, instead of timing
/// out. A client's `request` returns [`Error::Unanswered`](crate::Error::Unanswered); an
/// actor's `Response` carries [`RequestError::Unanswered`](crate::RequestError::Unanswered).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unanswered {
    pub details: String,
}

/// Tells an actor that asked for it (`Context::notify_on_convention_changes`) that a member
/// of the convention has joined or changed its capabilities (`added: true`), or has left or
/// died (`added: false`) — Thespian's `ActorSystemConventionUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorSystemConventionUpdate {
    /// The member's advertised address.
    pub member: String,
    /// Its capabilities (empty when it left).
    pub capabilities: greenroom_protocol::Capabilities,
    pub added: bool,
}

/// Messages an exiting actor still receives: further exit requests and news of its
/// children. Anything else sent to it then becomes a dead letter, on either base.
#[doc(hidden)]
pub fn is_exit_traffic(msg: &AnyMessage) -> bool {
    msg.is::<ActorExitRequest>() || msg.is::<ChildActorExited>() || msg.is::<ChildRestarted>()
}

/// True for the runtime's own message types, which external clients do not receive
/// (except [`PoisonMessage`], which answers their `ask`).
pub fn is_system_tag(tag: &str) -> bool {
    tag == ActorExitRequest::type_tag()
        || tag == ChildActorExited::type_tag()
        || tag == ChildRestarted::type_tag()
        || tag == DeadEnvelope::type_tag()
}
