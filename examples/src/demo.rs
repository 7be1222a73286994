//! The actor types of the CLI walk-through: linked into `demo_host` (which runs them) and
//! `demo_client` (which needs their message types).

use greenroom::{dispatch, ActorResult, Address, Context, Handle, Registry};
use serde::{Deserialize, Serialize};

/// Adds to a [`Counter`]'s total.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Add(pub u64);

/// Asks a [`Counter`] for its total; answered with a `u64`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Total;

/// Keeps a running total in memory (so a restart starts it again from zero).
#[derive(Default)]
pub struct Counter {
    total: u64,
}

impl Handle<Add> for Counter {
    fn handle(&mut self, _: &mut Context<'_>, Add(n): Add, _: Address) -> ActorResult {
        self.total += n;
        Ok(())
    }
}

impl Handle<Total> for Counter {
    fn handle(&mut self, ctx: &mut Context<'_>, _: Total, sender: Address) -> ActorResult {
        ctx.send(sender, self.total)?;
        Ok(())
    }
}

dispatch!(Counter { Add, Total });

/// Asks a [`Pool`] (or a [`Greeter`]) for a greeting; answered with a `String`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greet(pub String);

/// Answers greetings.
#[derive(Default)]
pub struct Greeter;

impl Handle<Greet> for Greeter {
    fn handle(&mut self, ctx: &mut Context<'_>, Greet(name): Greet, sender: Address) -> ActorResult {
        tracing::info!(%name, "greeting");
        ctx.send(sender, format!("Hello, {name}!"))?;
        Ok(())
    }
}

dispatch!(Greeter { Greet, Forwarded });

/// Supervises two [`Greeter`]s, created on its first greeting, and hands greetings to them
/// in turn (the greeter answers the asker directly).
#[derive(Default)]
pub struct Pool {
    greeters: Vec<Address>,
    next: usize,
}

impl Handle<Greet> for Pool {
    fn handle(&mut self, ctx: &mut Context<'_>, greet: Greet, sender: Address) -> ActorResult {
        if self.greeters.is_empty() {
            self.greeters = vec![ctx.create_actor::<Greeter>()?, ctx.create_actor::<Greeter>()?];
        }
        let greeter = self.greeters[self.next % self.greeters.len()];
        self.next += 1;
        // Forwarded with the asker as the one to answer: the greeter replies to `sender`.
        ctx.send(
            greeter,
            Forwarded {
                greet,
                reply_to: sender,
            },
        )?;
        Ok(())
    }
}

/// A greeting a [`Pool`] hands on, with whom to answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    pub greet: Greet,
    pub reply_to: Address,
}

impl Handle<Forwarded> for Greeter {
    fn handle(&mut self, ctx: &mut Context<'_>, f: Forwarded, _: Address) -> ActorResult {
        self.handle(ctx, f.greet, f.reply_to)
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
