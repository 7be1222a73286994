//! The seed's "Hello World Redux": actors create actors, and addresses travel in messages.
//!
//! `Hello` creates a `World` and a `Punctuate` for each greeting and sends the `Greeting`
//! along with a list of addresses; the last actor on the list is the asking client, who
//! receives `Hello, World!` from `Punctuate` — an actor it never talked to. Each actor is a
//! separate process (or, with `--base simple`, all run in this one, with the same output).
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin hello_redux
//! Hello, World!
//! Hello, World!
//! No reply: actor @2 is gone (exited normally); messages to it can no longer be delivered
//! ```

use std::time::Duration;

use greenroom::{
    Actor, ActorExitRequest, ActorResult, ActorSystem, Address, AnyMessage, Context, Registry, SystemConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    message: String,
    send_to: Vec<Address>,
}

#[derive(Default)]
struct Hello;

impl Actor for Hello {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if msg.downcast::<String>().as_deref() == Some("hi") {
            let world = ctx.create_actor::<World>()?.address();
            let punct = ctx.create_actor::<Punctuate>()?.address();
            let greeting = Greeting {
                message: "Hello".into(),
                send_to: vec![punct, sender],
            };
            ctx.send(world, greeting)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct World;

impl Actor for World {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(mut greeting) = msg.downcast::<Greeting>() {
            greeting.message.push_str(", World");
            let next = greeting.send_to.remove(0);
            ctx.send(next, greeting)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Punctuate;

impl Actor for Punctuate {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(mut greeting) = msg.downcast::<Greeting>() {
            greeting.message.push('!');
            let next = greeting.send_to.remove(0);
            ctx.send(next, greeting)?;
        }
        Ok(())
    }
}

fn main() -> Result<(), greenroom::Error> {
    greenroom_host::init(
        Registry::new()
            .register::<Hello>()
            .register::<World>()
            .register::<Punctuate>(),
    );

    let base = greenroom_examples::base_from_args();
    let system = ActorSystem::start_with(SystemConfig::default().base(base))?;
    let hello = system.create_actor::<Hello>()?.address();
    let timeout = Duration::from_millis(2000);
    for _ in 0..2 {
        let greeting: Greeting = system.ask(hello, "hi".to_string(), timeout)?;
        println!("{}", greeting.message);
    }
    system.tell(hello, ActorExitRequest)?;
    match system.ask::<_, Greeting>(hello, "hi".to_string(), timeout) {
        Ok(greeting) => println!("unexpected reply after exit: {}", greeting.message),
        Err(e) => println!("No reply: {e}"),
    }
    system.shutdown()
}
