//! The seed's "Hello World": one actor, one ask, one exit request.
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin hello
//! Hello, World!
//! ```
//!
//! `Hello` runs in its own process, started from this same executable; with `--base simple`
//! it runs in this process instead, and the output is the same.

use std::time::Duration;

use greenroom::{
    Actor, ActorExitRequest, ActorResult, ActorSystem, Address, AnyMessage, Context, Registry, SystemConfig,
};

#[derive(Default)]
struct Hello;

impl Actor for Hello {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if msg.is::<String>() {
            ctx.send(sender, "Hello, World!".to_string())?;
        }
        Ok(())
    }
}

fn main() -> Result<(), greenroom::Error> {
    greenroom_host::init(Registry::new().register::<Hello>());

    let base = greenroom_examples::base_from_args();
    let system = ActorSystem::start_with(SystemConfig::default().base(base))?;
    let hello = system.create_actor::<Hello>()?;
    let reply: String = system.ask(hello, "hi".to_string(), Duration::from_secs(1))?;
    println!("{reply}");
    system.tell(hello, ActorExitRequest)?;
    system.shutdown()
}
