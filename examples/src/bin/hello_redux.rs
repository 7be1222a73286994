//! The seed's "Hello World Redux": actors create actors, addresses travel in messages, and
//! the answer to a request is handed on until the last actor gives it.
//!
//! The client requests `Hi` of `Hello`. `Hello` creates a `World` and a `Punctuate` for each
//! greeting and does not answer itself: it takes the answer in hand (`ctx.reply_later`) and
//! sends the `Greeting` to `World` with the addresses still to visit and that `ReplyTo`.
//! Each actor adds its part and passes the greeting on; the last one, `Punctuate`, answers the
//! client's request with `Hello, World!` — from an actor the client never talked to, yet
//! correlated with its request. Each actor is a separate process (or, with `--base simple`,
//! all run in this one, with the same output).
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin hello_redux
//! Hello, World!
//! Hello, World!
//! No reply: actor @2 is gone (exited normally); messages to it can no longer be delivered
//! ```
//!
//! The last line is a request to `Hello` after it was stopped: it fails at once, and the
//! message goes to the dead-letter path (which the admin logs, as no handler is registered).

use std::time::Duration;

use greenroom::{
    dispatch, ActorResult, ActorSystem, Address, Context, Handle, Later, Registry, ReplyTo, Request, SystemConfig,
};
use serde::{Deserialize, Serialize};

/// Asks for a greeting.
#[derive(Debug, Serialize, Deserialize)]
struct Hi;

impl Request for Hi {
    type Reply = String;
}

/// A greeting on its way: the actors still to visit, and the answer owed to whoever said
/// `Hi`.
#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    message: String,
    send_to: Vec<Address>,
    answer: ReplyTo<String>,
}

impl Greeting {
    /// Passes the greeting to the next actor on its list, or, at the end of the list,
    /// answers the request it carries.
    fn pass_on(mut self, ctx: &mut Context<'_>) -> ActorResult {
        if self.send_to.is_empty() {
            ctx.answer(self.answer, self.message)?;
        } else {
            let next = self.send_to.remove(0);
            ctx.send(next, self)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Hello;

impl Handle<Hi> for Hello {
    type Reply = Later<String>;
    fn handle(&mut self, ctx: &mut Context<'_>, _: Hi, _: Address) -> ActorResult<Later<String>> {
        let world = ctx.create_actor::<World>()?;
        let punct = ctx.create_actor::<Punctuate>()?;
        // The answer is the last actor's to give.
        let (later, answer) = ctx.reply_later();
        let greeting = Greeting {
            message: "Hello".into(),
            send_to: vec![punct.address()],
            answer,
        };
        ctx.send(world, greeting)?;
        Ok(later)
    }
}

dispatch!(Hello { Hi });

#[derive(Default)]
struct World;

impl Handle<Greeting> for World {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, mut greeting: Greeting, _: Address) -> ActorResult {
        greeting.message.push_str(", World");
        greeting.pass_on(ctx)
    }
}

dispatch!(World { Greeting });

#[derive(Default)]
struct Punctuate;

impl Handle<Greeting> for Punctuate {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, mut greeting: Greeting, _: Address) -> ActorResult {
        greeting.message.push('!');
        greeting.pass_on(ctx)
    }
}

dispatch!(Punctuate { Greeting });

fn main() -> Result<(), greenroom::Error> {
    greenroom_host::init(
        Registry::new()
            .register::<Hello>()
            .register::<World>()
            .register::<Punctuate>(),
    );

    let base = greenroom_examples::base_from_args();
    let system = ActorSystem::start_with(SystemConfig::default().base(base))?;
    let hello = system.create_actor::<Hello>()?;
    let timeout = Duration::from_millis(2000);
    for _ in 0..2 {
        println!("{}", system.request(hello, Hi, timeout)?);
    }
    system.stop(hello)?;
    match system.request(hello, Hi, timeout) {
        Ok(greeting) => println!("unexpected reply after exit: {greeting}"),
        Err(e) => println!("No reply: {e}"),
    }
    system.shutdown()
}
