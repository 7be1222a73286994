//! What each way of dying costs to recover from: for every death mode, the time from the
//! moment the actor is told to die (or is killed from outside) to the first reply from its
//! new incarnation at the same address.
//!
//! ```text
//! cargo run --release -p greenroom-examples --bin death_modes [-- --trials N]
//! ```
//!
//! The client tells the actor to die (or kills it), then requests its pid: the request waits
//! in the actor's queue and is answered by the new process, and only that answer ends the
//! call. The actor fails on the fatal message (its process dies; a panic, for comparison, is
//! caught and its process lives on), so that message comes back to the client as poison,
//! which it then takes with `listen`. Restarts are immediate (no backoff) so that the figure
//! is the runtime's own cost: reap, spawn, handshake, reconnect, resend.

use std::time::{Duration, Instant};

use greenroom::{
    dispatch, ActorRef, ActorResult, ActorSystem, Address, Backoff, Context, Error, Handle, Registry, Request,
    SupervisorSpec, SystemConfig,
};
use serde::{Deserialize, Serialize};

/// How long a request waits for its answer (or its message back).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Tells a [`Mortal`] to die one way (a one-way message: it comes back as poison).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Die {
    Abort,
    Segfault,
    Exit,
    Panic,
}

/// Asks a [`Mortal`] for the pid of its process.
#[derive(Debug, Serialize, Deserialize)]
struct WhatPid;

impl Request for WhatPid {
    type Reply = u32;
}

#[derive(Default)]
struct Mortal;

impl Handle<Die> for Mortal {
    type Reply = ();
    fn handle(&mut self, _: &mut Context<'_>, die: Die, _: Address) -> ActorResult {
        match die {
            Die::Abort => std::process::abort(),
            Die::Segfault => {
                let null = std::hint::black_box(std::ptr::null_mut::<u8>());
                // SAFETY: none — this actor crashes its process on purpose with a real SIGSEGV.
                unsafe { null.write_volatile(1) };
                Ok(())
            }
            Die::Exit => std::process::exit(3),
            Die::Panic => panic!("told to panic"),
        }
    }
}

impl Handle<WhatPid> for Mortal {
    type Reply = u32;
    fn handle(&mut self, _: &mut Context<'_>, _: WhatPid, _: Address) -> ActorResult<u32> {
        Ok(std::process::id())
    }
}

dispatch!(Mortal { Die, WhatPid });

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// The pid of the actor's process. A request the process died on (a SIGKILL that caught it
/// just as it arrived) comes back poisoned, and is asked again of the next incarnation.
fn pid(system: &ActorSystem, actor: ActorRef<Mortal>) -> Result<u32, Error> {
    loop {
        match system.request(actor, WhatPid, TIMEOUT) {
            Err(Error::Poisoned { .. }) => continue,
            answer => return answer,
        }
    }
}

/// Takes the fatal message back: the actor failed on it (its process died, or it panicked on
/// it twice), so it returns to this client as poison, which `listen` reports.
fn came_back(system: &ActorSystem, die: Die) -> Result<(), Box<dyn std::error::Error>> {
    match system.listen(TIMEOUT) {
        Err(Error::Poisoned { message, .. }) if message.downcast::<Die>() == Some(die) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(Some((sender, msg))) => Err(format!("{die:?}: unexpected `{}` from {sender}", msg.tag()).into()),
        Ok(None) => Err(format!("{die:?} did not come back as poison within {TIMEOUT:?}").into()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let actor = system.create_actor::<Mortal>()?;
    println!("{:<28} {:>12} {:>10}", "death mode", "recovery p50", "restarted");
    for (name, die) in [
        ("SIGKILL from outside", None),
        ("std::process::abort()", Some(Die::Abort)),
        ("segfault (null write)", Some(Die::Segfault)),
        ("std::process::exit(3)", Some(Die::Exit)),
        ("panic in receive (caught)", Some(Die::Panic)),
    ] {
        let mut samples = Vec::with_capacity(trials);
        let mut restarted = 0;
        for _ in 0..trials {
            let before = pid(&system, actor)?;
            let start = Instant::now();
            match die {
                None => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(before as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                // Told, not requested, so that the pid request below waits in the queue behind
                // it and goes to the new process as soon as there is one: the figure is the
                // runtime's, with no round trip of this client's in it.
                Some(die) => system.tell(actor, die)?,
            }
            let after = pid(&system, actor)?;
            samples.push(start.elapsed());
            restarted += usize::from(after != before);
            if let Some(die) = die {
                came_back(&system, die)?;
            }
        }
        println!("{name:<28} {:>10.2} ms {restarted:>6}/{trials}", median_ms(samples));
    }
    system.stop(actor)?;
    Ok(system.shutdown()?)
}
