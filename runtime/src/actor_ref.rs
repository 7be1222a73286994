//! Typed references: an [`Address`] that knows its actor's type, so that sending it a
//! message it has no handler for is a compile error instead of a silent timeout.
//!
//! A typed create (`create_actor::<A>()` and its variants) gives an [`ActorRef<A>`]. Every
//! call that sends — [`ActorSystem::tell`](crate::ActorSystem::tell),
//! [`request`](crate::ActorSystem::request), [`Context::send`](crate::Context::send),
//! [`Context::request`](crate::Context::request)… — takes any [`Recipient<M>`]: an
//! `ActorRef<A>` whose `A` implements [`Handle<M>`](crate::Handle), or a plain `Address`,
//! which takes any message (Thespian's dynamic addressing, checked at run time only).
//!
//! ```
//! use greenroom::{dispatch, ActorRef, ActorResult, Address, Context, Handle};
//!
//! #[derive(Default)]
//! struct Counter(u64);
//! impl Handle<u64> for Counter {
//!     type Reply = ();
//!     fn handle(&mut self, _: &mut Context<'_>, n: u64, _: Address) -> ActorResult {
//!         self.0 += n;
//!         Ok(())
//!     }
//! }
//! dispatch!(Counter { u64 });
//!
//! fn add(ctx: &mut Context<'_>, counter: ActorRef<Counter>) -> greenroom::Result<()> {
//!     ctx.send(counter, 5u64)?; // compiles: Counter handles u64
//!     // ctx.send(counter, "five".to_string())?; // error: `ActorRef<Counter>` cannot be sent a `String`
//!     ctx.send(counter.address(), "five".to_string()) // an Address takes anything
//! }
//! ```
//!
//! An `ActorRef` is as small as an `Address`, `Copy`, and serialises exactly as one, so it
//! travels inside messages; `From`/[`ActorRef::address`] and [`ActorRef::from_address`]
//! convert between the two.

use std::{fmt, hash::Hash, marker::PhantomData};

use greenroom_protocol::Address;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    dispatch::Handle,
    message::Message,
    request::{Answer, Request},
};

/// The address of an actor of type `A`. See the [module docs](self).
pub struct ActorRef<A> {
    address: Address,
    _actor: PhantomData<fn() -> A>,
}

impl<A> ActorRef<A> {
    /// A reference to the actor at `address`, which the caller vouches is an `A` (nothing is
    /// checked: a message `A` handles but the actor there does not is not processed as the
    /// type promises).
    pub const fn from_address(address: Address) -> Self {
        ActorRef {
            address,
            _actor: PhantomData,
        }
    }

    /// The untyped address, which takes any message.
    pub const fn address(self) -> Address {
        self.address
    }

    /// The actor's number within its node (see [`Address::id`]).
    pub const fn id(self) -> u64 {
        self.address.id()
    }

    /// The node the actor lives on (see [`Address::node`]).
    pub const fn node(self) -> greenroom_protocol::NodeId {
        self.address.node()
    }
}

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for ActorRef<A> {}

impl<A> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
    }
}

impl<A> Eq for ActorRef<A> {}

impl<A> PartialEq<Address> for ActorRef<A> {
    fn eq(&self, other: &Address) -> bool {
        self.address == *other
    }
}

impl<A> PartialEq<ActorRef<A>> for Address {
    fn eq(&self, other: &ActorRef<A>) -> bool {
        *self == other.address
    }
}

impl<A> PartialOrd for ActorRef<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> Ord for ActorRef<A> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.address.cmp(&other.address)
    }
}

impl<A> Hash for ActorRef<A> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.address.hash(state);
    }
}

impl<A> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorRef<{}>({})", std::any::type_name::<A>(), self.address)
    }
}

impl<A> fmt::Display for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.address.fmt(f)
    }
}

impl<A> From<ActorRef<A>> for Address {
    fn from(r: ActorRef<A>) -> Address {
        r.address
    }
}

impl<A> Serialize for ActorRef<A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.address.serialize(serializer)
    }
}

impl<'de, A> Deserialize<'de> for ActorRef<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Address::deserialize(deserializer).map(ActorRef::from_address)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for greenroom_protocol::Address {}
    impl<A> Sealed for super::ActorRef<A> {}
}

/// Where a message of type `M` may be sent: any [`Address`], or an [`ActorRef<A>`] whose
/// actor handles `M`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent a `{M}`: its actor type does not implement `Handle<{M}>`",
    label = "this actor does not handle `{M}`",
    note = "implement `Handle<{M}>` for the actor (and list `{M}` in its `dispatch!`), or send to `.address()` to skip the check"
)]
pub trait Recipient<M>: sealed::Sealed + Copy {
    /// Where the message goes.
    fn to_address(self) -> Address;
}

impl<M: Message> Recipient<M> for Address {
    fn to_address(self) -> Address {
        self
    }
}

impl<A: Handle<M>, M: Message> Recipient<M> for ActorRef<A> {
    fn to_address(self) -> Address {
        self.address
    }
}

/// Where a [`Request`] `M` may be sent: any [`Address`] (its answer is checked when it
/// arrives), or an [`ActorRef<A>`] whose actor handles `M` and answers `M::Reply` (or
/// [`Later<M::Reply>`](crate::Later)).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be asked a `{M}`: its actor type does not implement `Handle<{M}>` answering `{M}`'s `Request::Reply`",
    label = "this actor does not answer `{M}`",
    note = "implement `Handle<{M}>` with `type Reply` set to the request's reply type (or `Later` of it), or send to `.address()` to skip the check"
)]
pub trait Answers<M: Request>: Recipient<M> {}

impl<M: Request> Answers<M> for Address {}

impl<A, M> Answers<M> for ActorRef<A>
where
    M: Request,
    A: Handle<M>,
    <A as Handle<M>>::Reply: Answer<M::Reply>,
{
}
