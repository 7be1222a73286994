//! The client of the CLI walk-through: attaches to a running system by name, finds (or
//! creates) the actors known as `counter` and `pool`, and talks to them.
//!
//! ```text
//! $ demo_client demo
//! counter @2: total 1
//! pool @3: Hello, World!
//! ```
//!
//! Exit status 0 on success, 1 if the system answered with an error, 3 if no system of that
//! name is running.

use std::time::Duration;

use greenroom::{ActorRef, ActorSystem};
use greenroom_examples::demo::{Add, Counter, Greet, Pool, Total};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "default".to_owned());
    match run(&name) {
        Ok(()) => {}
        Err(e @ greenroom::Error::NoSuchSystem { .. }) => {
            eprintln!("demo_client: {e}");
            std::process::exit(3)
        }
        Err(e) => {
            eprintln!("demo_client: {e}");
            std::process::exit(1)
        }
    }
}

fn run(name: &str) -> Result<(), greenroom::Error> {
    let system = ActorSystem::connect(name)?;
    let timeout = Duration::from_secs(10);
    // A global name may be held by an actor of any type: the address is typed on our word.
    let counter = ActorRef::<Counter>::from_address(system.create_actor_global::<Counter>("counter")?);
    system.tell(counter, Add(1))?;
    let total = system.request(counter, Total, timeout)?;
    println!("counter {counter}: total {total}");
    let pool = ActorRef::<Pool>::from_address(system.create_actor_global::<Pool>("pool")?);
    let greeting = system.request(pool, Greet("World".into()), timeout)?;
    println!("pool {pool}: {greeting}");
    // Dropping the client detaches it; the system and its actors run on.
    Ok(())
}
