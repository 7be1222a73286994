//! Crash recovery: SIGKILL a supervised actor under load and watch it come back.
//!
//! ```text
//! cargo run --release -p greenroom-examples --bin crash_recovery [-- --kills N]
//! ```
//!
//! A `Counter` actor runs in its own process under the root supervisor. The client keeps
//! asking it `Add { seq }` with numbered requests, one at a time; after every 100 requests
//! it kills the counter's host process with SIGKILL, from outside the runtime, the way an
//! operator would: it looks up the pid with `system.actor_info(counter)?.pid` and calls
//! `kill(2)` from another thread while the requests go on. Each `Add` takes 200 µs of
//! simulated work, so a kill often lands while a request is being processed.
//!
//! What it shows:
//!
//! * the admin restarts the actor at the **same address**: the client keeps using the
//!   `Address` it got from `create_actor` and never learns a new one;
//! * requests waiting in the queue are kept and answered by the new process;
//! * the request being processed when the process died comes back to its sender: the
//!   pending `ask` fails with `Error::Poisoned` (it may be what killed the actor, so it is
//!   not run again);
//! * the new process starts from a fresh `Counter` (its `handled` count starts again at 1):
//!   state in memory dies with the process.
//!
//! Every number printed comes from the client's own count of replies: a request is
//! *delivered* when a reply echoing its `seq` arrives, *poisoned* when its `ask` returns
//! `Error::Poisoned`, and *lost* otherwise (timeout or any other error). Replies carry the
//! pid of the process that produced them, which is how the client recognises the first
//! reply of a new incarnation; the restart time is from `kill` returning to that reply. Only
//! `restarts` is read from the system (`actor_info(..).incarnation - 1`). The supervisor is
//! set to restart without backoff, so the figure is the restart itself.
//!
//! ```text
//! kill 1: pid 13047 -> 13057, @2 -> @2, first reply after 2.01 ms (incarnation 2, its count restarted at 1; #101 poisoned)
//! kill 2: pid 13057 -> 13068, @2 -> @2, first reply after 1.87 ms (incarnation 3, its count restarted at 1; nothing poisoned: no request was being processed at the kill)
//! ...
//! 611 requests: 608 answered, 3 poisoned, 0 lost, 0 answered twice
//! kills=5 restarts=5 lost=0 poisoned=3 restart_p50_ms=1.95
//! ```
//!
//! The program exits with status 1 if any request was lost or answered twice, or if the
//! address changed or the pid did not.

use std::{
    collections::BTreeMap,
    fmt, thread,
    time::{Duration, Instant},
};

use greenroom::{
    Actor, ActorExitRequest, ActorResult, ActorSystem, Address, AnyMessage, Backoff, Context, Error, Registry,
    SupervisorSpec, SystemConfig,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

/// How long each `ask` waits for its reply.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests sent between two kills (steady load before each kill).
const LOAD_PER_ROUND: u64 = 100;
/// Simulated work per request, so that a kill is likely to find a request in flight.
const WORK: Duration = Duration::from_micros(200);
/// How long to wait for the first reply from a new incarnation before giving up.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(10);

/// A numbered request.
#[derive(Debug, Serialize, Deserialize)]
struct Add {
    seq: u64,
}

/// The answer to `Add`: echoes `seq`, and says which process produced it.
#[derive(Debug, Serialize, Deserialize)]
struct Added {
    seq: u64,
    /// The pid of the host process that handled the request.
    pid: u32,
    /// Requests handled by this incarnation: its in-memory state, lost on every restart.
    handled: u64,
}

#[derive(Default)]
struct Counter {
    handled: u64,
}

impl Actor for Counter {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(Add { seq }) = msg.downcast::<Add>() {
            thread::sleep(WORK);
            self.handled += 1;
            let reply = Added {
                seq,
                pid: std::process::id(),
                handled: self.handled,
            };
            ctx.send(sender, reply)?;
        }
        Ok(())
    }
}

/// What became of one request, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No answer (yet): counted as lost at the end.
    Pending,
    Delivered,
    Poisoned,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pending => "no answer",
            Outcome::Delivered => "delivered",
            Outcome::Poisoned => "poisoned",
        })
    }
}

/// The client's ledger: every request it sent and what came back.
struct Load<'a> {
    system: &'a ActorSystem,
    counter: Address,
    next_seq: u64,
    outcomes: BTreeMap<u64, Outcome>,
    /// Replies for a request that had already been answered (should stay 0).
    duplicates: u64,
    /// Poison for a request whose reply had already arrived (a death in the instant between
    /// writing the reply and recording the request as done).
    poisoned_after_reply: u64,
    /// Consecutive requests that got neither a reply nor a poison.
    failures_in_a_row: u32,
}

/// One request's reply, as `Load::request` returns it.
struct Reply {
    sender: Address,
    added: Added,
    at: Instant,
}

impl<'a> Load<'a> {
    fn new(system: &'a ActorSystem, counter: Address) -> Self {
        Load {
            system,
            counter,
            next_seq: 1,
            outcomes: BTreeMap::new(),
            duplicates: 0,
            poisoned_after_reply: 0,
            failures_in_a_row: 0,
        }
    }

    /// Sends the next `Add` and waits for its answer. Returns the reply if it came.
    fn request(&mut self) -> Result<Option<Reply>, Box<dyn std::error::Error>> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outcomes.insert(seq, Outcome::Pending);
        let deadline = Instant::now() + ASK_TIMEOUT;
        let mut answer = self.system.ask_any(self.counter, Add { seq }, ASK_TIMEOUT);
        loop {
            match answer {
                Ok((sender, msg)) => {
                    let at = Instant::now();
                    let Some(added) = msg.try_downcast::<Added>()? else {
                        return Err(format!("unexpected reply `{}` from {sender}", msg.tag()).into());
                    };
                    let for_this_one = added.seq == seq;
                    self.record(added.seq, Outcome::Delivered);
                    if for_this_one {
                        self.failures_in_a_row = 0;
                        return Ok(Some(Reply { sender, added, at }));
                    }
                    // A late reply to an earlier request: keep waiting for ours.
                    let left = deadline.saturating_duration_since(Instant::now());
                    answer = match self.system.listen(left)? {
                        Some(next) => Ok(next),
                        None => Err(Error::Timeout {
                            address: self.counter,
                            timeout: ASK_TIMEOUT,
                        }),
                    };
                }
                Err(Error::Poisoned { message, .. }) => {
                    // The request the actor was processing when its process died. It says
                    // which request it was: usually this one.
                    let Some(Add { seq: poisoned }) = message.try_downcast::<Add>()? else {
                        return Err(format!("unexpected poison `{}`", message.tag()).into());
                    };
                    if self.outcomes.get(&poisoned) == Some(&Outcome::Delivered) {
                        // The process died after writing the reply but before recording the
                        // request as done: the poison says "may not have finished", and the
                        // reply already came. Not a second answer.
                        self.poisoned_after_reply += 1;
                    } else {
                        self.record(poisoned, Outcome::Poisoned);
                    }
                    if poisoned == seq {
                        self.failures_in_a_row = 0;
                        return Ok(None);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    answer = match self.system.listen(left) {
                        Ok(Some(next)) => Ok(next),
                        Ok(None) => Err(Error::Timeout {
                            address: self.counter,
                            timeout: ASK_TIMEOUT,
                        }),
                        Err(e) => Err(e),
                    };
                }
                Err(e) => {
                    eprintln!("request {seq}: {e}");
                    self.failures_in_a_row += 1;
                    if self.failures_in_a_row >= 5 {
                        return Err(format!(
                            "{} requests in a row went unanswered; giving up",
                            self.failures_in_a_row
                        )
                        .into());
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn record(&mut self, seq: u64, outcome: Outcome) {
        match self.outcomes.get_mut(&seq) {
            Some(o @ Outcome::Pending) => *o = outcome,
            Some(_) => self.duplicates += 1,
            None => eprintln!("answer for request {seq}, which was never sent"),
        }
    }

    /// Collects replies that arrive after their `ask` gave up.
    fn drain(&mut self) -> Result<(), Error> {
        while let Some((_, msg)) = self.system.listen(Duration::from_millis(200))? {
            if let Some(added) = msg.downcast::<Added>() {
                self.record(added.seq, Outcome::Delivered);
            }
        }
        Ok(())
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.values().filter(|o| **o == outcome).count()
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
    let counter = system.create_actor::<Counter>()?.address();
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

        // Keep asking until a reply comes from a process other than the one killed.
        let started = Instant::now();
        let first_seq = load.next_seq;
        let reply = loop {
            if started.elapsed() > RECOVERY_DEADLINE {
                return Err(
                    format!("no reply from a new incarnation of {counter} within {RECOVERY_DEADLINE:?}").into(),
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
        let in_flight: Vec<String> = (first_seq..load.next_seq)
            .filter_map(|seq| match load.outcomes.get(&seq) {
                Some(Outcome::Delivered) | None => None,
                Some(other) => Some(format!("#{seq} {other}")),
            })
            .collect();
        let in_flight = if in_flight.is_empty() {
            "nothing poisoned: no request was being processed at the kill".to_string()
        } else {
            in_flight.join(", ")
        };

        let info = system.actor_info(counter)?;
        let new_pid = reply.added.pid;
        if info.pid != Some(new_pid) {
            return Err(format!("reply came from pid {new_pid} but actor_info says {:?}", info.pid).into());
        }
        address_changed |= reply.sender != counter;
        println!(
            "kill {round}: pid {old_pid} -> {new_pid}, {counter} -> {}, first reply after {:.2} ms \
             (incarnation {}, its count restarted at {}; {in_flight})",
            reply.sender,
            recovery.as_secs_f64() * 1e3,
            info.incarnation,
            reply.added.handled,
        );
    }

    // A little more load after the last restart, then collect any late replies.
    for _ in 0..LOAD_PER_ROUND {
        load.request()?;
    }
    load.drain()?;

    let restarts = system.actor_info(counter)?.incarnation.saturating_sub(1);
    let lost = load.count(Outcome::Pending);
    let poisoned = load.count(Outcome::Poisoned);
    let delivered = load.count(Outcome::Delivered);
    println!(
        "{} requests: {delivered} answered, {poisoned} poisoned, {lost} lost, {} answered twice, \
         {} answered and then returned (died between reply and bookkeeping)",
        load.outcomes.len(),
        load.duplicates,
        load.poisoned_after_reply,
    );
    println!(
        "kills={kills} restarts={restarts} lost={lost} poisoned={poisoned} restart_p50_ms={:.2}",
        median_ms(recoveries)
    );

    system.tell(counter, ActorExitRequest)?;
    system.shutdown()?;

    if lost > 0 || address_changed || load.duplicates > 0 {
        return Err(format!(
            "recovery was not clean: lost={lost} duplicates={} address_changed={address_changed}",
            load.duplicates
        )
        .into());
    }
    Ok(())
}
