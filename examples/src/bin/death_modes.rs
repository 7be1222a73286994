//! What each way of dying costs to recover from: for every death mode, the time from the
//! moment the actor is told to die (or is killed from outside) to the first reply from its
//! new incarnation at the same address.
//!
//! ```text
//! cargo run --release -p greenroom-examples --bin death_modes [-- --trials N]
//! ```
//!
//! The actor dies while processing the fatal message, so that message comes back as poison;
//! the next request is answered by the new process. Restarts are immediate (no backoff) so
//! that the figure is the runtime's own cost: reap, spawn, handshake, reconnect, resend.

use std::time::{Duration, Instant};

use greenroom::{
    Actor, ActorExitRequest, ActorResult, ActorSystem, Address, AnyMessage, Backoff, Context, Error, Registry,
    SupervisorSpec, SystemConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Order {
    Abort,
    Segfault,
    Exit,
    Panic,
    /// Reply `(nonce, pid)`.
    Pid(u64),
}

#[derive(Default)]
struct Mortal;

impl Actor for Mortal {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        match msg.downcast::<Order>() {
            Some(Order::Abort) => std::process::abort(),
            Some(Order::Segfault) => {
                let null = std::hint::black_box(std::ptr::null_mut::<u8>());
                // SAFETY: none — this actor crashes its process on purpose with a real SIGSEGV.
                unsafe { null.write_volatile(1) };
            }
            Some(Order::Exit) => std::process::exit(3),
            Some(Order::Panic) => panic!("told to panic"),
            Some(Order::Pid(nonce)) => ctx.send(sender, (nonce, std::process::id()))?,
            None => {}
        }
        Ok(())
    }
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// Asks for the actor's pid and waits for the answer to this very request (the fatal
/// message comes back as poison first, and is skipped).
fn pid(system: &ActorSystem, actor: Address, nonce: &mut u64) -> Result<u32, Error> {
    *nonce += 1;
    system.tell(actor, Order::Pid(*nonce))?;
    loop {
        match system.listen(Duration::from_secs(5)) {
            Ok(Some((_, msg))) => match msg.downcast::<(u64, u32)>() {
                Some((n, pid)) if n == *nonce => return Ok(pid),
                _ => continue,
            },
            Ok(None) => {
                return Err(Error::Timeout {
                    address: actor,
                    timeout: Duration::from_secs(5),
                })
            }
            Err(Error::Poisoned { message, .. }) => match message.downcast::<Order>() {
                // Our own request died with the process: ask again.
                Some(Order::Pid(n)) if n == *nonce => {
                    *nonce += 1;
                    system.tell(actor, Order::Pid(*nonce))?;
                }
                _ => continue,
            },
            Err(e) => return Err(e),
        }
    }
}

fn main() -> Result<(), Error> {
    greenroom_host::init(Registry::new().register::<Mortal>());
    let mut trials = 10;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|n| n.parse().ok())) {
            ("--trials", Some(n)) if n > 0 => trials = n,
            _ => {
                eprintln!("usage: death_modes [--trials N]");
                std::process::exit(2);
            }
        }
    }
    let config = SystemConfig::default().root_supervision(SupervisorSpec {
        max_restarts: 10_000,
        backoff: Backoff {
            initial: Duration::ZERO,
            ..Backoff::default()
        },
        ..SupervisorSpec::default()
    });
    let system = ActorSystem::start_with(config)?;
    let actor = system.create_actor::<Mortal>()?.address();
    let mut nonce = 0;
    println!("{:<28} {:>12} {:>10}", "death mode", "recovery p50", "restarted");
    for (name, order) in [
        ("SIGKILL from outside", None),
        ("std::process::abort()", Some(Order::Abort)),
        ("segfault (null write)", Some(Order::Segfault)),
        ("std::process::exit(3)", Some(Order::Exit)),
        ("panic in receive (caught)", Some(Order::Panic)),
    ] {
        let mut samples = Vec::with_capacity(trials);
        let mut restarted = 0;
        for _ in 0..trials {
            let before = pid(&system, actor, &mut nonce)?;
            let start = Instant::now();
            match order {
                None => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(before as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Some(order) => system.tell(actor, order)?,
            }
            let after = pid(&system, actor, &mut nonce)?;
            samples.push(start.elapsed());
            restarted += usize::from(after != before);
        }
        println!("{name:<28} {:>10.2} ms {restarted:>6}/{trials}", median_ms(samples));
    }
    system.tell(actor, ActorExitRequest)?;
    system.shutdown()
}
