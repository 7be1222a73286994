//! Typed dispatch: one method per message type instead of a chain of `downcast`s.
//!
//! Implement [`Handle<M>`] for each message type an actor handles, then let [`dispatch!`](macro@crate::dispatch)
//! write its [`Actor::receive`](crate::Actor::receive): it tries each listed type in order,
//! decodes the first that matches, calls that handler, and sends its return value as the
//! answer when the message is a [request](crate::request) (or an `ask`). Anything else goes
//! to an "unhandled" method if one is named, or is logged (at debug) and ignored. The raw
//! `receive` stays available: an actor may implement [`Actor`](crate::Actor) by hand instead.
//!
//! The `Handle` implementations are also what makes an [`ActorRef<A>`](crate::ActorRef)
//! accept a message type at compile time.
//!
//! ```
//! use greenroom::{dispatch, ActorResult, Address, AnyMessage, Context, Handle, Request};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greeting(String);
//! #[derive(Serialize, Deserialize)]
//! struct HowMany;
//! impl Request for HowMany {
//!     type Reply = u32;
//! }
//!
//! #[derive(Default)]
//! struct Greeter {
//!     greeted: u32,
//! }
//!
//! impl Handle<Greeting> for Greeter {
//!     type Reply = (); // a one-way message: nothing to answer
//!     fn handle(&mut self, ctx: &mut Context<'_>, msg: Greeting, sender: Address) -> ActorResult {
//!         self.greeted += 1;
//!         ctx.send(sender, format!("{}, World!", msg.0))?;
//!         Ok(())
//!     }
//! }
//!
//! impl Handle<HowMany> for Greeter {
//!     type Reply = u32; // the answer to the request
//!     fn handle(&mut self, _: &mut Context<'_>, _: HowMany, _: Address) -> ActorResult<u32> {
//!         Ok(self.greeted)
//!     }
//! }
//!
//! impl Greeter {
//!     fn other(&mut self, _ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
//!         eprintln!("not for me: {}", msg.tag());
//!         Ok(())
//!     }
//! }
//!
//! dispatch!(Greeter { Greeting, HowMany } else other);
//! ```

use greenroom_protocol::Address;

use crate::{
    actor::{ActorResult, Context},
    message::Message,
    request::IntoReply,
};

/// Handles one message type; see [`dispatch!`](macro@crate::dispatch).
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle `{M}`: there is no `impl Handle<{M}> for {Self}`",
    label = "an `ActorRef<{Self}>` only takes the message types its actor handles",
    note = "implement `Handle<{M}>` for `{Self}` and list `{M}` in its `dispatch!`, or send to `.address()` to skip the check"
)]
pub trait Handle<M: Message> {
    /// The answer to `M`: `()` for a message that needs none; for a
    /// [`Request`](crate::Request), its `Reply` (which [`ActorRef`](crate::ActorRef) checks),
    /// or [`Later`](crate::Later) of it to answer afterwards through a
    /// [`ReplyTo`](crate::ReplyTo).
    ///
    /// [`dispatch!`](macro@crate::dispatch) sends it back when `M` came as a request (even
    /// `()`) or an `ask` (unless `()`); a message sent with `tell` or `send` gets no answer.
    type Reply: IntoReply;

    /// Handles `msg` from `sender`; an error counts like a panic.
    fn handle(&mut self, ctx: &mut Context<'_>, msg: M, sender: Address) -> ActorResult<Self::Reply>;
}

/// Implements [`Actor`](crate::Actor) for a type by dispatching each message to its
/// [`Handle`] implementation.
///
/// `dispatch!(MyActor { A, B, C })` tries `A`, `B`, `C` in order; messages of other types
/// are logged at debug level and ignored. `dispatch!(MyActor { A, B } else on_other)` calls
/// `self.on_other(ctx, &msg, sender)` for them instead. A message whose tag names a listed
/// type but whose bytes do not decode is logged and treated as another type.
#[macro_export]
macro_rules! dispatch {
    ($actor:ty { $($msg:ty),+ $(,)? } else $unhandled:ident) => {
        $crate::dispatch!(@impl $actor { $($msg),+ } |this, ctx, msg, sender| this.$unhandled(ctx, msg, sender));
    };
    ($actor:ty { $($msg:ty),+ $(,)? }) => {
        $crate::dispatch!(@impl $actor { $($msg),+ } |_this, ctx, msg, sender| {
            $crate::dispatch::unhandled(ctx, msg, sender);
            Ok(())
        });
    };
    // The one expansion both forms share: try each type, else the fallback expression
    // (written in terms of the names it binds, so that they are visible to it).
    (@impl $actor:ty { $($msg:ty),+ } |$this:ident, $ctx:ident, $m:ident, $sender:ident| $fallback:expr) => {
        impl $crate::Actor for $actor {
            fn receive(
                &mut self,
                $ctx: &mut $crate::Context<'_>,
                $m: &$crate::AnyMessage,
                $sender: $crate::Address,
            ) -> $crate::ActorResult {
                $(
                    if let Some(decoded) = $m.downcast::<$msg>() {
                        let reply = <Self as $crate::Handle<$msg>>::handle(self, $ctx, decoded, $sender)?;
                        return $crate::dispatch::respond($ctx, reply);
                    }
                )+
                let $this = self;
                $fallback
            }
        }
    };
}

/// What [`dispatch!`](macro@crate::dispatch) does with a handler's return value: the answer
/// to a request or an ask (see [`Handle::Reply`]). An answer that cannot be sent (its
/// requester holds a full window of this actor's messages) is logged, not a failure of the
/// handler, which would run it again.
#[doc(hidden)]
pub fn respond<R: IntoReply>(ctx: &mut Context<'_>, reply: R) -> ActorResult {
    if let Some(value) = reply.into_reply() {
        if let Err(e) = ctx.answer_current(value) {
            tracing::warn!(actor = %ctx.my_address(), error = %e, reply_type = R::Value::type_tag(),
                "could not send the answer; its requester will time out");
        }
    }
    Ok(())
}

/// What [`dispatch!`](macro@crate::dispatch) does with a message no handler takes: log it
/// (at debug; a request, which its requester waits on, at warn: its base answers it as
/// unanswered).
#[doc(hidden)]
pub fn unhandled(ctx: &mut Context<'_>, msg: &crate::message::AnyMessage, sender: Address) {
    if ctx.unanswered_request().is_some() {
        tracing::warn!(actor = %ctx.my_address(), %sender, message_type = msg.tag(),
            "a request of a type this actor's dispatch! does not list; answered as unanswered");
    } else {
        tracing::debug!(%sender, message_type = msg.tag(), "no handler for this message type; ignored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorSystem, Base, Registry, SystemConfig};

    /// Asks a [`Counter`] what it has seen.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Query;

    #[derive(Default)]
    struct Counter {
        words: Vec<String>,
        numbers: u64,
        others: Vec<String>,
    }
    impl Handle<String> for Counter {
        type Reply = ();
        fn handle(&mut self, _: &mut Context<'_>, msg: String, _: Address) -> ActorResult {
            self.words.push(msg);
            Ok(())
        }
    }
    impl Handle<u64> for Counter {
        type Reply = ();
        fn handle(&mut self, _: &mut Context<'_>, msg: u64, _: Address) -> ActorResult {
            self.numbers += msg;
            Ok(())
        }
    }
    impl Handle<Query> for Counter {
        type Reply = ();
        fn handle(&mut self, ctx: &mut Context<'_>, _: Query, sender: Address) -> ActorResult {
            ctx.send(sender, (self.words.clone(), self.numbers, self.others.clone()))?;
            Ok(())
        }
    }
    impl Counter {
        fn rest(&mut self, _: &mut Context<'_>, msg: &crate::AnyMessage, _: Address) -> ActorResult {
            self.others.push(msg.tag().to_owned());
            Ok(())
        }
    }
    crate::dispatch!(Counter { String, u64, Query } else rest);

    #[test]
    fn each_type_reaches_its_handler_and_the_rest_the_fallback() {
        let config = SystemConfig::default()
            .base(Base::Simple)
            .registry(Registry::new().register::<Counter>());
        let system = ActorSystem::start_with(config).unwrap();
        let counter = system.create_actor::<Counter>().unwrap();
        system.tell(counter, "hello".to_string()).unwrap();
        system.tell(counter, 5u64).unwrap();
        system.tell(counter, 7u64).unwrap();
        system.tell(counter.address(), true).unwrap(); // not a type it handles: an Address takes it
        let seen: (Vec<String>, u64, Vec<String>) =
            system.ask(counter, Query, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(seen, (vec!["hello".to_string()], 12, vec!["bool".to_string()]));
    }
}
