//! The actor types of the CLI walk-through: linked into `demo_host` (which runs them) and
//! `demo_client` (which needs their message types).
//!
//! They answer with requests: [`Total`] and [`Greet`] name their reply types, a [`Counter`]
//! returns its total from its handler, and a [`Pool`] hands each greeting to one of its
//! [`Greeter`]s with a [`ReplyTo`], so that the greeter answers the original requester
//! directly, correlated with its request.

use greenroom::{dispatch, ActorRef, ActorResult, Address, Context, Handle, Later, Registry, ReplyTo, Request};
use serde::{Deserialize, Serialize};

/// Adds to a [`Counter`]'s total.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Add(pub u64);

/// Asks a [`Counter`] for its total.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Total;

impl Request for Total {
    type Reply = u64;
}

/// Keeps a running total in memory (so a restart starts it again from zero).
#[derive(Default)]
pub struct Counter {
    total: u64,
}

impl Handle<Add> for Counter {
    type Reply = ();
    fn handle(&mut self, _: &mut Context<'_>, Add(n): Add, _: Address) -> ActorResult {
        self.total += n;
        Ok(())
    }
}

impl Handle<Total> for Counter {
    type Reply = u64;
    fn handle(&mut self, _: &mut Context<'_>, _: Total, _: Address) -> ActorResult<u64> {
        Ok(self.total)
    }
}

dispatch!(Counter { Add, Total });

/// Asks a [`Pool`] (or a [`Greeter`]) for a greeting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greet(pub String);

impl Request for Greet {
    type Reply = String;
}

/// Answers greetings.
#[derive(Default)]
pub struct Greeter;

impl Handle<Greet> for Greeter {
    type Reply = String;
    fn handle(&mut self, _: &mut Context<'_>, Greet(name): Greet, _: Address) -> ActorResult<String> {
        tracing::info!(%name, "greeting");
        Ok(format!("Hello, {name}!"))
    }
}

/// A greeting a [`Pool`] hands on, with the answer owed to its requester.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    pub greet: Greet,
    pub answer: ReplyTo<String>,
}

impl Handle<Forwarded> for Greeter {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, f: Forwarded, sender: Address) -> ActorResult {
        let greeting = self.handle(ctx, f.greet, sender)?;
        ctx.answer(f.answer, greeting)?;
        Ok(())
    }
}

dispatch!(Greeter { Greet, Forwarded });

/// Supervises two [`Greeter`]s, created on its first greeting, and hands greetings to them
/// in turn (the greeter answers the requester directly).
#[derive(Default)]
pub struct Pool {
    greeters: Vec<ActorRef<Greeter>>,
    next: usize,
}

impl Handle<Greet> for Pool {
    type Reply = Later<String>;
    fn handle(&mut self, ctx: &mut Context<'_>, greet: Greet, _: Address) -> ActorResult<Later<String>> {
        if self.greeters.is_empty() {
            self.greeters = vec![ctx.create_actor::<Greeter>()?, ctx.create_actor::<Greeter>()?];
        }
        let greeter = self.greeters[self.next % self.greeters.len()];
        self.next += 1;
        // The answer is the greeter's to give, to whoever asked.
        let (later, answer) = ctx.reply_later();
        ctx.send(greeter, Forwarded { greet, answer })?;
        Ok(later)
    }
}

dispatch!(Pool { Greet });

/// Every actor type `demo_host` runs.
pub fn registry() -> Registry {
    Registry::new()
        .register::<Counter>()
        .register::<Greeter>()
        .register::<Pool>()
}
