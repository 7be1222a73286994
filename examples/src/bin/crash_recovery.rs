//! Crash recovery: SIGKILL a supervised actor under load and watch it come back.
//!
//! ```text
//! cargo run --release -p greenroom-examples --bin crash_recovery [-- --kills N]
//! ```
//!
//! A `Counter` actor runs in its own process under the root supervisor. The client keeps
//! requesting `Add { seq }` of it, numbered, one at a time; after every 100 requests it kills
//! the counter's host process with SIGKILL, from outside the runtime, the way an operator
//! would: it looks up the pid with `system.actor_info(counter)?.pid` and calls `kill(2)` from
//! another thread while the requests go on. Each `Add` takes 200 µs of simulated work, so a
//! kill often lands while a request is being processed.
//!
//! What it shows:
//!
//! * the admin restarts the actor at the **same address**: the client keeps using the
//!   `ActorRef` it got from `create_actor` and never learns a new one;
//! * requests waiting in the queue are kept and answered by the new process;
//! * the request being processed when the process died comes back to its sender: its
//!   `request` fails with `Error::Poisoned` (it may be what killed the actor, so it is not
//!   run again);
//! * the new process starts from a fresh `Counter` (its `handled` count starts again at 1):
//!   state in memory dies with the process.
//!
//! Every number printed comes from the client's own count of what its calls returned. Each
//! `system.request` returns this request's fate and nothing else's: *delivered* (its answer),
//! *poisoned* (`Error::Poisoned`), or *lost* (a timeout or any other error). An answer that
//! comes after its call gave up, or a request returned after it was answered, cannot reach
//! another call: it is a dead letter, which the admin logs. Each answer echoes its request's
//! `seq` as a cross-check, and carries the pid of the process that produced it, which is how
//! the client recognises the first answer of a new incarnation; the restart time is from
//! `kill` returning to that answer. Only `restarts` is read from the system
//! (`actor_info(..).incarnation - 1`). The supervisor is set to restart without backoff, so
//! the figure is the restart itself.
//!
//! ```text
//! kill 1: pid 13047 -> 13057, @2 -> @2, first reply after 2.01 ms (incarnation 2, its count restarted at 1; #101 poisoned)
//! kill 2: pid 13057 -> 13068, @2 -> @2, first reply after 1.87 ms (incarnation 3, its count restarted at 1; nothing poisoned: no request was being processed at the kill)
//! ...
//! 611 requests: 608 answered, 3 poisoned, 0 lost, 0 answered with another's answer
//! kills=5 restarts=5 lost=0 poisoned=3 restart_p50_ms=1.95
//! ```
//!
//! The program exits with status 1 if any request was lost or got another request's answer,
//! or if the address changed or the pid did not.

use std::{
    fmt, thread,
    time::{Duration, Instant},
};

use greenroom::{
    dispatch, ActorRef, ActorResult, ActorSystem, Address, Backoff, Context, Error, Handle, Registry, Request,
    SupervisorSpec, SystemConfig,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

/// How long each request waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests sent between two kills (steady load before each kill).
const LOAD_PER_ROUND: u64 = 100;
/// Simulated work per request, so that a kill is likely to find a request in flight.
const WORK: Duration = Duration::from_micros(200);
/// How long to wait for the first answer from a new incarnation before giving up.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(10);

/// A numbered request.
#[derive(Debug, Serialize, Deserialize)]
struct Add {
    seq: u64,
}

impl Request for Add {
    type Reply = Added;
}

/// The answer to `Add`: echoes `seq`, and says which process produced it.
#[derive(Debug, Serialize, Deserialize)]
struct Added {
    /// The request's `seq`: a cross-check that each answer reaches the request it answers.
    seq: u64,
    /// The pid of the host process that handled the request.
    pid: u32,
    /// The address the actor answered from, as it knows it.
    address: Address,
    /// Requests handled by this incarnation: its in-memory state, lost on every restart.
    handled: u64,
}

#[derive(Default)]
struct Counter {
    handled: u64,
}

impl Handle<Add> for Counter {
    type Reply = Added;
    fn handle(&mut self, ctx: &mut Context<'_>, Add { seq }: Add, _: Address) -> ActorResult<Added> {
        thread::sleep(WORK);
        self.handled += 1;
        Ok(Added {
            seq,
            pid: std::process::id(),
            address: ctx.my_address(),
            handled: self.handled,
        })
    }
}

dispatch!(Counter { Add });

/// What became of one request, as the client saw it: the result of its own call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Poisoned,
    /// Timed out or failed otherwise.
    Lost,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Delivered => "delivered",
            Outcome::Poisoned => "poisoned",
            Outcome::Lost => "lost",
        })
    }
}

/// The client's ledger: what became of every request it sent, by `seq`.
struct Load<'a> {
    system: &'a ActorSystem,
    counter: ActorRef<Counter>,
    /// `outcomes[seq - 1]`: request `seq`'s outcome.
    outcomes: Vec<Outcome>,
    /// Answers that echoed another request's `seq` (must stay 0).
    misrouted: u64,
    /// Consecutive requests that got neither an answer nor their message back.
    failures_in_a_row: u32,
}

/// One request's answer, as `Load::request` returns it.
struct Reply {
    added: Added,
    at: Instant,
}

impl<'a> Load<'a> {
    fn new(system: &'a ActorSystem, counter: ActorRef<Counter>) -> Self {
        Load {
            system,
            counter,
            outcomes: Vec::new(),
            misrouted: 0,
            failures_in_a_row: 0,
        }
    }

    /// The `seq` the next request will carry.
    fn next_seq(&self) -> u64 {
        self.outcomes.len() as u64 + 1
    }

    /// Requests the next `Add` and waits for its answer. Returns the answer if it came.
    ///
    /// The call's result is this request's fate and nothing else's: an answer to an earlier
    /// request cannot arrive here (one that comes after its call gave up is a dead letter,
    /// which the admin logs), and neither can an earlier request coming back.
    fn request(&mut self) -> Result<Option<Reply>, Box<dyn std::error::Error>> {
        let seq = self.next_seq();
        let result = self.system.request(self.counter, Add { seq }, REQUEST_TIMEOUT);
        let at = Instant::now();
        let (outcome, reply) = match result {
            Ok(added) => {
                if added.seq != seq {
                    eprintln!("request {seq} got the answer to request {}", added.seq);
                    self.misrouted += 1;
                }
                (Outcome::Delivered, Some(Reply { added, at }))
            }
            // The request the actor was processing when its process died: it may be what
            // killed the actor, so it is returned rather than run again.
            Err(Error::Poisoned { .. }) => (Outcome::Poisoned, None),
            Err(e) => {
                eprintln!("request {seq}: {e}");
                (Outcome::Lost, None)
            }
        };
        self.outcomes.push(outcome);
        if outcome == Outcome::Lost {
            self.failures_in_a_row += 1;
            if self.failures_in_a_row >= 5 {
                return Err(format!(
                    "{} requests in a row went unanswered; giving up",
                    self.failures_in_a_row
                )
                .into());
            }
        } else {
            self.failures_in_a_row = 0;
        }
        Ok(reply)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.iter().filter(|o| **o == outcome).count()
    }
}

/// Parses `--kills N` (default 5).
fn parse_kills() -> Result<u32, String> {
    let mut kills = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kills" => {
                let n = args.next().ok_or("--kills needs a number")?;
                kills = n.parse().map_err(|_| format!("--kills: `{n}` is not a number"))?;
            }
            other => return Err(format!("unknown argument `{other}`; usage: crash_recovery [--kills N]")),
        }
    }
    Ok(kills)
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let n = samples.len();
    let mid = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    };
    mid.as_secs_f64() * 1e3
}

fn main() {
    greenroom_host::init(Registry::new().register::<Counter>());
    if let Err(e) = run() {
        eprintln!("crash_recovery: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let kills = parse_kills()?;

    // Allow many restarts, and restart at once: this example measures the restart itself,
    // not the backoff a real service would keep between consecutive crashes.
    let supervision = SupervisorSpec {
        max_restarts: 1000,
        backoff: Backoff {
            initial: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    };
    let system = ActorSystem::start_with(SystemConfig::default().root_supervision(supervision))?;
    let counter = system.create_actor::<Counter>()?;
    let mut load = Load::new(&system, counter);
    let mut recoveries = Vec::new();
    let mut address_changed = false;

    for round in 1..=kills {
        for _ in 0..LOAD_PER_ROUND {
            load.request()?;
        }

        // Find the host process as a user would, and kill it from another thread while the
        // load goes on, a little later each round so it lands at different points of a request.
        let Some(old_pid) = system.actor_info(counter)?.pid else {
            return Err(format!("{counter} has no host process before kill {round}").into());
        };
        let delay = Duration::from_micros(50 + u64::from(round) * 73 % 300);
        let killer = thread::spawn(move || {
            thread::sleep(delay);
            kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).map(|()| Instant::now())
        });

        // Keep requesting until an answer comes from a process other than the one killed.
        let started = Instant::now();
        let first_seq = load.next_seq();
        let reply = loop {
            if started.elapsed() > RECOVERY_DEADLINE {
                return Err(
                    format!("no answer from a new incarnation of {counter} within {RECOVERY_DEADLINE:?}").into(),
                );
            }
            if let Some(reply) = load.request()? {
                if reply.added.pid != old_pid {
                    break reply;
                }
            }
        };
        let killed_at = match killer.join() {
            Ok(result) => result?,
            Err(_) => return Err("the killer thread panicked".into()),
        };
        let recovery = reply.at.saturating_duration_since(killed_at);
        recoveries.push(recovery);

        // The requests sent since the kill thread started: the one that died with the process
        // comes back poisoned, the others reach one process or the other.
        let in_flight: Vec<String> = (first_seq..load.next_seq())
            .zip(&load.outcomes[first_seq as usize - 1..])
            .filter(|(_, outcome)| **outcome != Outcome::Delivered)
            .map(|(seq, outcome)| format!("#{seq} {outcome}"))
            .collect();
        let in_flight = if in_flight.is_empty() {
            "nothing poisoned: no request was being processed at the kill".to_string()
        } else {
            in_flight.join(", ")
        };

        let info = system.actor_info(counter)?;
        let new_pid = reply.added.pid;
        if info.pid != Some(new_pid) {
            return Err(format!("answer came from pid {new_pid} but actor_info says {:?}", info.pid).into());
        }
        address_changed |= reply.added.address != counter.address();
        println!(
            "kill {round}: pid {old_pid} -> {new_pid}, {counter} -> {}, first reply after {:.2} ms \
             (incarnation {}, its count restarted at {}; {in_flight})",
            reply.added.address,
            recovery.as_secs_f64() * 1e3,
            info.incarnation,
            reply.added.handled,
        );
    }

    // A little more load after the last restart.
    for _ in 0..LOAD_PER_ROUND {
        load.request()?;
    }

    let restarts = system.actor_info(counter)?.incarnation.saturating_sub(1);
    let lost = load.count(Outcome::Lost);
    let poisoned = load.count(Outcome::Poisoned);
    let delivered = load.count(Outcome::Delivered);
    println!(
        "{} requests: {delivered} answered, {poisoned} poisoned, {lost} lost, {} answered with another's answer",
        load.outcomes.len(),
        load.misrouted,
    );
    println!(
        "kills={kills} restarts={restarts} lost={lost} poisoned={poisoned} restart_p50_ms={:.2}",
        median_ms(recoveries)
    );

    system.stop(counter)?;
    system.shutdown()?;

    if lost > 0 || address_changed || load.misrouted > 0 {
        return Err(format!(
            "recovery was not clean: lost={lost} misrouted={} address_changed={address_changed}",
            load.misrouted
        )
        .into());
    }
    Ok(())
}
