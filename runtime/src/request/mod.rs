//! Requests: messages whose sender waits for the answer to *that* message.
//!
//! Thespian's `ask` takes the next message that reaches the asker, from anyone: one stray
//! message and every later answer is off by one. A [`Request`] names its reply type, and
//! its frame carries a request id that the receiver's answer carries back, so the answer
//! reaches the call that asked and nothing else does:
//!
//! | who asks | call | the answer |
//! |---|---|---|
//! | a program | [`ActorSystem::request`](crate::ActorSystem::request) | returned, typed `M::Reply`; other messages stay for `listen`/`ask` |
//! | an actor | [`Context::request`](crate::Context::request) | delivered later as a [`Response<M>`] message: the actor's loop never blocks |
//!
//! The receiver answers by returning the reply from its [`Handle<M>`](crate::Handle) (with
//! [`dispatch!`](macro@crate::dispatch)), or with [`Context::reply`](crate::Context::reply)
//! from a hand-written `receive`, or later, from anywhere, through a [`ReplyTo`] it kept.
//!
//! ```
//! use greenroom::{dispatch, ActorResult, ActorSystem, Address, Base, Context, Handle, Registry, Request, SystemConfig};
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add(u64, u64);
//! impl Request for Add {
//!     type Reply = u64;
//! }
//!
//! #[derive(Default)]
//! struct Adder;
//! impl Handle<Add> for Adder {
//!     type Reply = u64;
//!     fn handle(&mut self, _: &mut Context<'_>, Add(a, b): Add, _: Address) -> ActorResult<u64> {
//!         Ok(a + b)
//!     }
//! }
//! dispatch!(Adder { Add });
//!
//! # let config = SystemConfig::default().base(Base::Simple).registry(Registry::new().register::<Adder>());
//! let system = ActorSystem::start_with(config)?;
//! let adder = system.create_actor::<Adder>()?;
//! let sum: u64 = system.request(adder, Add(2, 40), Duration::from_secs(1))?;
//! assert_eq!(sum, 42);
//! # Ok::<(), greenroom::Error>(())
//! ```
//!
//! ## Rules
//! * Only the request's own fate fails the call: its answer, its message coming back as
//!   [`PoisonMessage`](crate::PoisonMessage) (the receiver failed on it), the receiver gone
//!   for good before processing it, a broken link to the receiver's member while it was on
//!   its way (in doubt), or the timeout. Anything else that arrives meanwhile stays where it
//!   would have gone.
//! * An answer that comes after its caller gave up (timed out, or the requesting actor's
//!   process was restarted) is a dead letter: it reaches the dead-letter handler, never the
//!   next call.
//! * A request's message is an ordinary message in every other way: it keeps its place in
//!   its sender's order, is kept by its sender until processed, and is sent again to a
//!   restarted receiver.
//! * A handler's return value answers only a request (or an [`ask`](crate::ActorSystem::ask),
//!   unless it is `()`); a message sent with `tell` or `send` gets no answer.

mod pending;

use std::{fmt, marker::PhantomData, time::Duration};

use greenroom_protocol::{Address, Correlation, ExitCause};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{error::Error, message::Message};

#[doc(hidden)]
pub use pending::{MadeUp, PendingRequests, RequestKind};

/// A message that expects an answer of type [`Request::Reply`].
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct WordCount(String);
/// impl greenroom::Request for WordCount {
///     type Reply = usize;
/// }
/// ```
pub trait Request: Message {
    /// What the receiver answers.
    type Reply: Message;
}

/// Names one request among its requester's: what a [`Response`] answers.
///
/// Unique among the requests of one endpoint for the system's life: an actor's carry its
/// incarnation, and show as `request #<incarnation>.<n>` (a client's as `request #<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The id as a number (as the wire carries it).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (incarnation, n) = (self.0 >> 40, self.0 & ((1 << 40) - 1));
        match incarnation {
            0 => write!(f, "request #{n}"),
            _ => write!(f, "request #{incarnation}.{n}"),
        }
    }
}

/// What an actor receives for its [`Context::request`](crate::Context::request)`(to, M)`:
/// the answer, or why there is none. Handle it like any message (e.g.
/// `impl Handle<Response<M>> for MyActor`) and tell requests apart by [`Response::id`].
///
/// Its sender is the actor that was asked (`from`), also for an error made up locally (a
/// timeout, a message that came back).
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "M::Reply: Serialize", deserialize = "M::Reply: DeserializeOwned"))]
pub struct Response<M: Request> {
    /// The request this answers, as `Context::request` returned it.
    pub id: RequestId,
    /// Who answered: the actor asked, or the one it handed the answer to (a troupe's
    /// worker, the holder of a [`ReplyTo`]); for a `Response` made up by the requester (a
    /// timeout, a message that came back), the actor asked.
    pub from: Address,
    /// The answer, or why there is none.
    pub result: Result<M::Reply, RequestError>,
}

impl<M: Request> Response<M> {
    /// The answer, or an [`Error::RequestFailed`] that names the
    /// request, its type and the actor asked.
    pub fn into_result(self) -> crate::Result<M::Reply> {
        self.result.map_err(|error| crate::Error::RequestFailed {
            request: self.id,
            address: self.from,
            message_type: M::type_tag(),
            error,
        })
    }
}

impl<M: Request> fmt::Debug for Response<M>
where
    M::Reply: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("id", &self.id)
            .field("from", &self.from)
            .field("result", &self.result)
            .finish()
    }
}

impl<M: Request> Clone for Response<M>
where
    M::Reply: Clone,
{
    fn clone(&self) -> Self {
        Response {
            id: self.id,
            from: self.from,
            result: self.result.clone(),
        }
    }
}

impl<M: Request> PartialEq for Response<M>
where
    M::Reply: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.from) == (other.id, other.from) && self.result == other.result
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RequestError {
    /// No answer within the timeout the requester gave.
    #[error("no answer within {after:?}")]
    Timeout { after: Duration },
    /// The receiver failed on the request (it panicked or returned an error, or its process
    /// died while processing it) and returned it.
    #[error("the receiver could not process it: {details}")]
    Poisoned { details: String },
    /// The receiver is gone for good and never processed it.
    #[error("the receiver is gone ({cause})")]
    Gone { cause: ExitCause },
    /// No actor was ever created at that address (or its member could not be reached).
    #[error("no actor at that address")]
    Unknown,
    /// The link to the receiver's member broke while the request was on its way: it may or
    /// may not have been processed (it was not sent again).
    #[error("in doubt: the link to the receiver's member broke while it was on its way")]
    InDoubt,
    /// The receiver handled it without answering (no handler for its type in its
    /// `dispatch!`, or a `receive` that never called `ctx.reply`).
    #[error("handled without an answer: {details}")]
    Unanswered { details: String },
    /// The answer is of another type than the request's `Reply`.
    #[error("the answer is a `{got}`, not the request's reply type")]
    UnexpectedReply { got: String },
    /// It could not be delivered: the receiver refused the connection, or the system's admin
    /// is gone. (A full send window fails `Context::request` itself with
    /// `Error::Backpressure`.)
    #[error("not sent: {why}")]
    NotSent { why: String },
}

impl RequestError {
    /// Why a request got no answer when sending it failed with `error` because its receiver
    /// will never process it: [`RequestError::Gone`] for [`Error::ActorGone`] (with its
    /// cause), [`RequestError::Unknown`] for [`Error::UnknownActor`]. `None` for any other
    /// error, which is the send's own failure rather than the request's fate.
    ///
    /// ```
    /// use greenroom::{Address, Error, ExitCause, RequestError};
    ///
    /// let gone = Error::ActorGone { address: Address::local(7), cause: ExitCause::Normal };
    /// assert_eq!(
    ///     RequestError::from_send_error(&gone),
    ///     Some(RequestError::Gone { cause: ExitCause::Normal })
    /// );
    /// let never = Error::UnknownActor(Address::local(8));
    /// assert_eq!(RequestError::from_send_error(&never), Some(RequestError::Unknown));
    /// assert_eq!(RequestError::from_send_error(&Error::AdminGone), None);
    /// ```
    pub fn from_send_error(error: &Error) -> Option<RequestError> {
        match error {
            Error::ActorGone { cause, .. } => Some(RequestError::Gone { cause: cause.clone() }),
            Error::UnknownActor(_) => Some(RequestError::Unknown),
            _ => None,
        }
    }
}

/// A handle on the answer to one message, to give later, from anywhere: kept by the
/// receiver ([`Context::reply_later`](crate::Context::reply_later)), or sent in a message
/// to another actor, which answers with [`Context::answer`](crate::Context::answer).
///
/// For a request the answer goes back correlated; for an `ask`, too (unless it is `()`);
/// for a plain message, as a plain message to its sender. A request whose `ReplyTo` is
/// dropped unanswered times out at its requester.
#[must_use = "a request whose ReplyTo is dropped is never answered (its requester times out)"]
#[derive(Serialize, Deserialize)]
pub struct ReplyTo<R> {
    to: Address,
    correlation: Correlation,
    #[serde(skip)]
    _reply: PhantomData<fn() -> R>,
}

impl<R> ReplyTo<R> {
    pub(crate) fn new(to: Address, correlation: Correlation) -> Self {
        ReplyTo {
            to,
            correlation,
            _reply: PhantomData,
        }
    }

    /// Who the answer goes to.
    pub fn requester(&self) -> Address {
        self.to
    }

    /// The correlation the answer travels with, or `None` if none is to be sent (an answer
    /// of `()` to an `ask`).
    pub(crate) fn route(&self, unit: bool) -> Option<(Address, Correlation)> {
        match self.correlation {
            Correlation::Ask(_) if unit => None,
            c => Some((self.to, c.answer())),
        }
    }
}

impl<R> Clone for ReplyTo<R> {
    fn clone(&self) -> Self {
        ReplyTo::new(self.to, self.correlation)
    }
}

impl<R> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo")
            .field("to", &self.to)
            .field("correlation", &self.correlation)
            .finish()
    }
}

/// What a [`Handle<M>`](crate::Handle) returns when it answers later, through a
/// [`ReplyTo`] (see [`Context::reply_later`](crate::Context::reply_later)):
/// `type Reply = Later<u64>;` keeps the request typed as answering `u64`.
#[must_use]
pub struct Later<R>(PhantomData<fn() -> R>);

impl<R> Later<R> {
    pub(crate) fn new() -> Self {
        Later(PhantomData)
    }
}

impl<R> fmt::Debug for Later<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Later")
    }
}

/// What a handler may return: an answer now (any message), or [`Later`].
pub trait IntoReply {
    /// The type of the answer.
    type Value: Message;
    /// The answer to send now, if any.
    fn into_reply(self) -> Option<Self::Value>;
}

impl<T: Message> IntoReply for T {
    type Value = T;
    fn into_reply(self) -> Option<T> {
        Some(self)
    }
}

impl<T: Message> IntoReply for Later<T> {
    type Value = T;
    fn into_reply(self) -> Option<T> {
        None
    }
}

/// What a base sends, correlated, for a request of type `message_type` that an actor of type
/// `actor_type` handled without answering.
#[doc(hidden)]
pub fn unanswered(actor_type: &str, message_type: &str) -> crate::Result<crate::AnyMessage> {
    crate::AnyMessage::new(&crate::message::Unanswered {
        details: format!(
            "`{actor_type}` handled `{message_type}` without answering it: an actor answers a request by returning \
             the reply from its `Handle` (listed in its `dispatch!`), with `ctx.reply`, or later through \
             `ctx.reply_later`"
        ),
    })
}

/// Whether a handler whose `Reply` is `Self` answers a request whose `Reply` is `R`: `R`
/// itself, or [`Later<R>`]. (The bound behind [`Answers`](crate::Answers); its message is
/// what a user sees for a handler that answers the wrong type.)
#[diagnostic::on_unimplemented(
    message = "a handler whose `type Reply` is `{Self}` does not answer a request whose `Reply` is `{R}`",
    label = "this request's handler answers `{Self}`",
    note = "set the handler's `type Reply` to `{R}` (or `Later<{R}>` to answer later through a `ReplyTo`)"
)]
pub trait Answer<R> {}

impl<R: Message> Answer<R> for R {}

impl<R: Message> Answer<R> for Later<R> {}

/// Whether `R` is `()`: the answer an `ask` does not get (an `ask` takes the next message,
/// and a handler of a one-way message answers `()`).
pub(crate) fn is_unit<R: 'static>() -> bool {
    std::any::TypeId::of::<R>() == std::any::TypeId::of::<()>()
}
