//! Typed dispatch: one method per message type instead of a chain of `downcast`s.
//!
//! Implement [`Handle<M>`] for each message type an actor handles, then let [`dispatch!`](macro@crate::dispatch)
//! write its [`Actor::receive`](crate::Actor::receive): it tries each listed type in order,
//! decodes the first that matches, and calls that handler. Anything else goes to an
//! "unhandled" method if one is named, or is logged (at debug) and ignored. The raw
//! `receive` stays available: an actor may implement [`Actor`](crate::Actor) by hand instead.
//!
//! ```
//! use greenroom::{dispatch, ActorResult, Address, AnyMessage, Context, Handle, WakeupMessage};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greeting(String);
//! #[derive(Serialize, Deserialize)]
//! struct Ping;
//!
//! #[derive(Default)]
//! struct Greeter {
//!     greeted: u32,
//! }
//!
//! impl Handle<Greeting> for Greeter {
//!     fn handle(&mut self, ctx: &mut Context<'_>, msg: Greeting, sender: Address) -> ActorResult {
//!         self.greeted += 1;
//!         ctx.send(sender, format!("{}, World!", msg.0))?;
//!         Ok(())
//!     }
//! }
//!
//! impl Handle<Ping> for Greeter {
//!     fn handle(&mut self, ctx: &mut Context<'_>, _: Ping, sender: Address) -> ActorResult {
//!         ctx.send(sender, self.greeted)?;
//!         Ok(())
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
//! dispatch!(Greeter { Greeting, Ping } else other);
//! ```

use greenroom_protocol::Address;

use crate::{
    actor::{ActorResult, Context},
    message::Message,
};

/// Handles one message type; see [`dispatch!`](macro@crate::dispatch).
pub trait Handle<M: Message> {
    /// Handles `msg` from `sender`.
    fn handle(&mut self, ctx: &mut Context<'_>, msg: M, sender: Address) -> ActorResult;
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
        $crate::dispatch!(@impl $actor { $($msg),+ } |_this, _ctx, msg, sender| {
            $crate::dispatch::unhandled(msg, sender);
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
                        return <Self as $crate::Handle<$msg>>::handle(self, $ctx, decoded, $sender);
                    }
                )+
                let $this = self;
                $fallback
            }
        }
    };
}

/// What [`dispatch!`](macro@crate::dispatch) does with a message no handler takes: log it.
#[doc(hidden)]
pub fn unhandled(msg: &crate::message::AnyMessage, sender: Address) {
    tracing::debug!(%sender, message_type = msg.tag(), "no handler for this message type; ignored");
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
        fn handle(&mut self, _: &mut Context<'_>, msg: String, _: Address) -> ActorResult {
            self.words.push(msg);
            Ok(())
        }
    }
    impl Handle<u64> for Counter {
        fn handle(&mut self, _: &mut Context<'_>, msg: u64, _: Address) -> ActorResult {
            self.numbers += msg;
            Ok(())
        }
    }
    impl Handle<Query> for Counter {
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
        system.tell(counter, true).unwrap();
        let seen: (Vec<String>, u64, Vec<String>) =
            system.ask(counter, Query, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(seen, (vec!["hello".to_string()], 12, vec!["bool".to_string()]));
    }
}
