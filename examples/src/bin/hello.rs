//! The seed's "Hello World": one actor, one question, one exit request.
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin hello
//! Hello, World!
//! ```
//!
//! `Hello` runs in its own process, started from this same executable; with `--base simple`
//! it runs in this process instead, and the output is the same. The question is a
//! [`Request`]: its answer comes back to this call and nowhere else.

use std::time::Duration;

use greenroom::{dispatch, ActorResult, ActorSystem, Address, Context, Handle, Registry, Request, SystemConfig};
use serde::{Deserialize, Serialize};

/// Asks for a greeting.
#[derive(Serialize, Deserialize)]
struct Hi;

impl Request for Hi {
    type Reply = String;
}

#[derive(Default)]
struct Hello;

impl Handle<Hi> for Hello {
    type Reply = String;
    fn handle(&mut self, _: &mut Context<'_>, _: Hi, _: Address) -> ActorResult<String> {
        Ok("Hello, World!".to_string())
    }
}

dispatch!(Hello { Hi });

fn main() -> Result<(), greenroom::Error> {
    greenroom_host::init(Registry::new().register::<Hello>());

    let base = greenroom_examples::base_from_args();
    let system = ActorSystem::start_with(SystemConfig::default().base(base))?;
    let hello = system.create_actor::<Hello>()?;
    let reply = system.request(hello, Hi, Duration::from_secs(1))?;
    println!("{reply}");
    system.stop(hello)?;
    system.shutdown()
}
