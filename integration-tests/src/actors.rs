//! Actor types used by the integration tests. Each does one thing a test needs to observe.

use greenroom::{Actor, ActorResult, Address, AnyMessage, ChildActorExited, Context};
use serde::{Deserialize, Serialize};

/// Replies to every message with the same message.
#[derive(Default)]
pub struct Echo;

impl Actor for Echo {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if !msg.is::<greenroom::ActorExitRequest>() {
            ctx.send_any(sender, msg.clone())?;
        }
        Ok(())
    }
}

/// Never replies.
#[derive(Default)]
pub struct Silent;

impl Actor for Silent {
    fn receive(&mut self, _: &mut Context<'_>, _: &AnyMessage, _: Address) -> ActorResult {
        Ok(())
    }
}

/// Ask for the numbers a [`Recorder`] has seen.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report;

/// What a [`Recorder`] saw: how many numbers, and whether each was one more than the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub count: u64,
    pub in_order: bool,
    pub last: Option<u64>,
}

/// Records `u64` messages and answers [`Report`] with a [`Recorded`].
#[derive(Default)]
pub struct Recorder {
    count: u64,
    in_order: bool,
    last: Option<u64>,
}

impl Actor for Recorder {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(n) = msg.downcast::<u64>() {
            let expected = self.last.map_or(0, |l| l + 1);
            if self.count == 0 {
                self.in_order = true;
            }
            self.in_order &= n == expected;
            self.last = Some(n);
            self.count += 1;
        } else if msg.is::<Report>() {
            ctx.send(
                sender,
                Recorded {
                    count: self.count,
                    in_order: self.in_order,
                    last: self.last,
                },
            )?;
        }
        Ok(())
    }
}

/// Ask a [`Tally`] what it has counted; answered with [`Tallied`].
#[derive(Debug, Serialize, Deserialize)]
pub struct TallyReport;

/// What a [`Tally`] counted: distinct numbers, and numbers it had already seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tallied {
    pub distinct: u64,
    pub repeats: u64,
}

/// Counts the `u64`s it receives, and any it receives twice.
#[derive(Default)]
pub struct Tally {
    seen: std::collections::BTreeSet<u64>,
    repeats: u64,
}

impl Actor for Tally {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(n) = msg.downcast::<u64>() {
            if !self.seen.insert(n) {
                self.repeats += 1;
            }
        } else if msg.is::<TallyReport>() {
            let tallied = Tallied {
                distinct: self.seen.len() as u64,
                repeats: self.repeats,
            };
            ctx.send(sender, tallied)?;
        }
        Ok(())
    }
}

/// Tells a [`Blaster`] to send `0..count` to `to`, then reply `true` to the asker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Blast {
    pub to: Address,
    pub count: u64,
}

/// Sends runs of numbers to another actor (actor-to-actor ordering).
#[derive(Default)]
pub struct Blaster {
    /// The next number of the blast in progress: a retry of a failed blast goes on from
    /// where it stopped instead of sending the numbers again (the handler is idempotent).
    next: u64,
}

impl Actor for Blaster {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(blast) = msg.downcast::<Blast>() {
            while self.next < blast.count {
                ctx.send(blast.to, self.next)?;
                self.next += 1;
            }
            self.next = 0;
            ctx.send(sender, true)?;
        }
        Ok(())
    }
}

/// Tells a [`Forwarder`] to send `text` to `to`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forward {
    pub to: Address,
    pub text: String,
}

/// Sends what it is told to whom it is told: an address received in a message, used.
#[derive(Default)]
pub struct Forwarder;

impl Actor for Forwarder {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(f) = msg.downcast::<Forward>() {
            ctx.send(f.to, f.text)?;
        }
        Ok(())
    }
}

/// Asks a [`Spawner`] to create `children` child spawners, each with `grandchildren` of
/// their own; every spawner reports to `watcher`. Answered with the children's addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnChildren {
    pub children: u32,
    pub grandchildren: u32,
    pub watcher: Address,
}

/// The addresses a [`Spawner`] created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spawned(pub Vec<Address>);

/// Asks `spawner` to create nothing (reporting to `watcher`) and returns what it answers,
/// an empty list. Once it has answered, everything it was asked before is done: a barrier.
pub fn spawner_barrier(
    sys: &greenroom::ActorSystem,
    spawner: Address,
    watcher: Address,
    timeout: std::time::Duration,
) -> Vec<Address> {
    let nothing = SpawnChildren {
        children: 0,
        grandchildren: 0,
        watcher,
    };
    let Spawned(created) = sys.ask(spawner, nothing, timeout).expect("the spawner answers");
    created
}

/// Sent by a [`Spawner`] to its watcher for every `ChildRestarted` it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRestartSeen {
    pub parent: Address,
    pub child: Address,
    pub cause: greenroom::ExitCause,
    pub restart_count: u32,
}

/// Asks a [`Spawner`] to create one child of type `type_name` with `spec`; answered with
/// [`Spawned`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnTyped {
    pub type_name: String,
    pub spec: greenroom::ChildSpec,
    pub watcher: Address,
}

/// Asks a [`Spawner`] for the [`Echo`] actor known as `name`; answered with [`Spawned`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnGlobal {
    pub name: String,
}

/// Sent by a [`Spawner`] to its watcher for every `ChildActorExited` it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildExitSeen {
    pub parent: Address,
    pub child: Address,
    pub cause: greenroom::ExitCause,
}

/// Tells `watcher`, if there is one, of the exit of a child of the actor behind `ctx`.
fn report_child_exit(ctx: &mut Context<'_>, watcher: Option<Address>, exited: ChildActorExited) -> ActorResult {
    if let Some(watcher) = watcher {
        let seen = ChildExitSeen {
            parent: ctx.my_address(),
            child: exited.child,
            cause: exited.cause,
        };
        ctx.send(watcher, seen)?;
    }
    Ok(())
}

/// Creates children on request and reports their exits to a watcher.
#[derive(Default)]
pub struct Spawner {
    watcher: Option<Address>,
}

impl Actor for Spawner {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(req) = msg.downcast::<SpawnChildren>() {
            self.watcher = Some(req.watcher);
            let mut spawned = Vec::new();
            for _ in 0..req.children {
                let child = ctx.create_actor::<Spawner>()?.address();
                let grand = SpawnChildren {
                    children: req.grandchildren,
                    grandchildren: 0,
                    watcher: req.watcher,
                };
                ctx.send(child, grand)?;
                spawned.push(child);
            }
            ctx.send(sender, Spawned(spawned))?;
        } else if let Some(req) = msg.downcast::<SpawnGlobal>() {
            let named = ctx.create_actor_global::<Echo>(&req.name)?;
            ctx.send(sender, Spawned(vec![named]))?;
        } else if let Some(req) = msg.downcast::<SpawnTyped>() {
            self.watcher = Some(req.watcher);
            let child = ctx.create_actor_named(&req.type_name, req.spec)?;
            ctx.send(sender, Spawned(vec![child]))?;
        } else if let Some(restarted) = msg.downcast::<greenroom::ChildRestarted>() {
            if let Some(watcher) = self.watcher {
                let seen = ChildRestartSeen {
                    parent: ctx.my_address(),
                    child: restarted.child,
                    cause: restarted.cause,
                    restart_count: restarted.restart_count,
                };
                ctx.send(watcher, seen)?;
            }
        } else if let Some(exited) = msg.downcast::<ChildActorExited>() {
            report_child_exit(ctx, self.watcher, exited)?;
        }
        Ok(())
    }
}

/// Commands for [`Panicker`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PanicCommand {
    /// Panic every time.
    Always,
    /// Panic on the first delivery only (the retry succeeds).
    Once,
    /// Return an error every time.
    Error,
    /// Reply `Pong` with this process's pid.
    Ping,
}

/// The reply to [`PanicCommand::Ping`], and to a successful [`PanicCommand::Once`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub pid: u32,
    pub deliveries: u32,
}

/// Panics on command; counts deliveries so tests can see retries.
#[derive(Default)]
pub struct Panicker {
    deliveries: u32,
    panicked_on_once: bool,
}

impl Actor for Panicker {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        let Some(cmd) = msg.downcast::<PanicCommand>() else {
            return Ok(());
        };
        self.deliveries += 1;
        match cmd {
            PanicCommand::Always => panic!("told to panic"),
            PanicCommand::Once if !self.panicked_on_once => {
                self.panicked_on_once = true;
                panic!("told to panic once")
            }
            PanicCommand::Error => Err("told to fail".into()),
            PanicCommand::Once | PanicCommand::Ping => {
                self.panicked_on_once = false;
                ctx.send(
                    sender,
                    Pong {
                        pid: std::process::id(),
                        deliveries: self.deliveries,
                    },
                )?;
                Ok(())
            }
        }
    }
}

/// Replies to any message with its host's pid (`u32`).
#[derive(Default)]
pub struct Whoami;

impl Actor for Whoami {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if !msg.is::<greenroom::ActorExitRequest>() {
            ctx.send(sender, std::process::id())?;
        }
        Ok(())
    }
}

/// Ways for a [`Crasher`] to end its process, and ordinary work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Crash {
    /// `std::process::abort()`.
    Abort,
    /// Write through a null pointer: a real SIGSEGV.
    Segfault,
    /// `std::process::exit(code)`.
    Exit(i32),
    /// Close the control connection to the admin and carry on.
    CloseControl,
    /// Write garbage on the control connection to the admin, as a compromised host would.
    CorruptControl,
    /// Send one datagram to the socket at `notify` (so a test knows this message is being
    /// processed now), then sleep `ms` milliseconds.
    Sleep { notify: std::path::PathBuf, ms: u64 },
    /// Allocate (and touch) memory in 16 MiB pieces until `bytes` are held.
    Hog { bytes: u64 },
    /// Burn CPU forever.
    Spin,
    /// Count one unit of work.
    Inc,
    /// Reply [`Echoed`] with this nonce, this process's pid and the work counted by this
    /// incarnation.
    Ping(u64),
    /// Count one unit of work, answer as [`Crash::Ping`] does, and send `bytes` bytes to
    /// `stall`. Sent to a client of this system that never reads, those bytes do not all
    /// fit in its socket, so the host waits in `flush_all` with the answer written and the
    /// message not yet recorded as done: the instant in which a kill brings the message
    /// back as poison although its answer went out.
    PingThenStall { nonce: u64, stall: Address, bytes: u64 },
}

/// A [`Crasher`]'s answer to [`Crash::Ping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echoed {
    pub nonce: u64,
    pub pong: Pong,
}

/// Dies on command, in every way a process can die; counts work between deaths.
#[derive(Default)]
pub struct Crasher {
    count: u32,
}

impl Actor for Crasher {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        let Some(cmd) = msg.downcast::<Crash>() else {
            return Ok(());
        };
        match cmd {
            Crash::Abort => std::process::abort(),
            Crash::Segfault => {
                let null = std::hint::black_box(std::ptr::null_mut::<u8>());
                // SAFETY: not safe at all: this test actor crashes its process on purpose
                // with a genuine invalid memory access (SIGSEGV).
                unsafe { null.write_volatile(1) };
            }
            Crash::Exit(code) => std::process::exit(code),
            Crash::CorruptControl => {
                use std::io::Write;
                use std::os::fd::FromRawFd;
                // SAFETY: borrows the host's control socket (fd 3) just to write garbage on
                // it; `ManuallyDrop` keeps it from being closed here.
                let control = unsafe { std::os::unix::net::UnixStream::from_raw_fd(3) };
                let mut control = std::mem::ManuallyDrop::new(control);
                let _ = control.write_all(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
            }
            Crash::CloseControl => {
                // SAFETY: closes the host's control socket (fd 3) behind the runtime's back,
                // to test how the admin treats a host that drops its control connection.
                unsafe { libc::close(3) };
            }
            Crash::Sleep { notify, ms } => {
                // Messages sent from `receive` leave when it returns, so the "started" signal
                // goes out of band.
                std::os::unix::net::UnixDatagram::unbound()?.send_to(b"started", notify)?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            Crash::Hog { bytes } => {
                let mut held: Vec<Vec<u8>> = Vec::new();
                while (held.len() as u64) * (16 << 20) < bytes {
                    held.push(vec![1u8; 16 << 20]);
                }
                std::hint::black_box(&held);
            }
            Crash::Spin => loop {
                std::hint::spin_loop();
            },
            Crash::Inc => self.count += 1,
            Crash::PingThenStall { nonce, stall, bytes } => {
                self.count += 1;
                let pong = Pong {
                    pid: std::process::id(),
                    deliveries: self.count,
                };
                ctx.send(sender, Echoed { nonce, pong })?;
                ctx.send(stall, vec![0u8; bytes as usize])?;
            }
            Crash::Ping(nonce) => ctx.send(
                sender,
                Echoed {
                    nonce,
                    pong: Pong {
                        pid: std::process::id(),
                        deliveries: self.count,
                    },
                },
            )?,
        }
        Ok(())
    }
}

/// A message travelling a pipeline: it carries its own route, so stages keep no state and a
/// restarted stage carries on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    pub id: u64,
    /// The hops still to go; the last one is the origin.
    pub route: Vec<Address>,
    /// Where to report a message that comes back as poison.
    pub origin: Address,
}

/// Told to the origin when a [`Tracked`] message came back as poison at some stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returned {
    pub id: u64,
}

/// One stage of a pipeline: forwards [`Tracked`] to its next hop; reports poison to the origin.
#[derive(Default)]
pub struct Stage;

impl Actor for Stage {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(mut t) = msg.downcast::<Tracked>() {
            if !t.route.is_empty() {
                let next = t.route.remove(0);
                ctx.send(next, t)?;
            }
        } else if let Some(poison) = msg.downcast::<greenroom::PoisonMessage>() {
            if let Some(t) = poison.message.downcast::<Tracked>() {
                ctx.send(t.origin, Returned { id: t.id })?;
            }
        }
        Ok(())
    }
}

/// Asks a [`Timer`] for a wakeup after `delay_ms` carrying `label`; answered `true` at once,
/// and the label is sent to the asker when the wakeup arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arm {
    pub delay_ms: u64,
    pub label: String,
}

/// Sent by a [`Timer`] when a wakeup arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rang {
    pub label: String,
    pub delay_ms: u64,
}

/// Sets wakeups on request and reports each as it arrives.
#[derive(Default)]
pub struct Timer {
    report_to: Option<Address>,
}

impl Actor for Timer {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(arm) = msg.downcast::<Arm>() {
            self.report_to = Some(sender);
            ctx.wakeup_after(std::time::Duration::from_millis(arm.delay_ms), arm.label)?;
            ctx.send(sender, true)?;
        } else if let Some(w) = msg.downcast::<greenroom::WakeupMessage>() {
            assert_eq!(sender, ctx.my_address(), "a wakeup comes from the actor itself");
            if let (Some(to), Some(label)) = (self.report_to, w.payload.downcast::<String>()) {
                ctx.send(
                    to,
                    Rang {
                        label,
                        delay_ms: w.delay.as_millis() as u64,
                    },
                )?;
            }
        }
        Ok(())
    }
}

/// Asks a [`Mortuary`] to become the dead-letter handler and report to the asker.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TakeDeadLetters;

/// What a [`Mortuary`] reports for each dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadSeen {
    pub target: Address,
    /// Who sent the message.
    pub sender: Address,
    pub text: Option<String>,
}

/// A dead-letter handler that reports what it receives.
#[derive(Default)]
pub struct Mortuary {
    report_to: Option<Address>,
}

impl Actor for Mortuary {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if msg.is::<TakeDeadLetters>() {
            ctx.handle_dead_letters(true)?;
            self.report_to = Some(sender);
            ctx.send(sender, true)?;
        } else if let Some(dead) = msg.downcast::<greenroom::DeadEnvelope>() {
            if let Some(to) = self.report_to {
                let seen = DeadSeen {
                    target: dead.target,
                    sender: dead.sender,
                    text: dead.message.downcast::<String>(),
                };
                ctx.send(to, seen)?;
            }
        }
        Ok(())
    }
}

/// A [`TypedGreeter`]'s greeting request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greet(pub String);

/// Asks a [`TypedGreeter`] how many messages went to its fallback.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HowManyOthers;

/// An actor written with typed dispatch: one method per message type, and a fallback.
#[derive(Default)]
pub struct TypedGreeter {
    others: u32,
}

impl greenroom::Handle<Greet> for TypedGreeter {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, msg: Greet, sender: Address) -> ActorResult {
        ctx.send(sender, format!("Hello, {}!", msg.0))?;
        Ok(())
    }
}

impl greenroom::Handle<HowManyOthers> for TypedGreeter {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, _: HowManyOthers, sender: Address) -> ActorResult {
        ctx.send(sender, self.others)?;
        Ok(())
    }
}

impl TypedGreeter {
    fn other(&mut self, _: &mut Context<'_>, _: &AnyMessage, _: Address) -> ActorResult {
        self.others += 1;
        Ok(())
    }
}

greenroom::dispatch!(TypedGreeter { Greet, HowManyOthers } else other);

/// An actor that needs GPUs: its capability check wants the system's `gpus` (a `u32`) to be
/// at least the requirement's `gpus` (1 if not given). Replies to anything with `"gpu ok"`.
#[derive(Default)]
pub struct GpuWorker;

impl Actor for GpuWorker {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if !msg.is::<greenroom::ActorExitRequest>() {
            ctx.send(sender, "gpu ok".to_string())?;
        }
        Ok(())
    }

    fn accepts(capabilities: &greenroom::Capabilities, requirements: &greenroom::Capabilities) -> bool {
        capabilities.get::<u32>("gpus").unwrap_or(0) >= requirements.get::<u32>("gpus").unwrap_or(1)
    }
}

/// Asks a [`Broker`] to create a [`GpuWorker`] requiring `gpus`; answered with
/// `Result<Address, String>` (the error's text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HireGpu {
    pub gpus: u32,
}

/// Asks a [`Broker`] to set the system's `gpus` capability; answered `true`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferGpus(pub u32);

/// Creates capability-checked actors and changes capabilities from inside an actor; tells
/// whoever hired last when one of its workers exits ([`ChildExitSeen`]) or is restarted
/// ([`ChildRestartSeen`]).
#[derive(Default)]
pub struct Broker {
    hirer: Option<Address>,
}

impl Actor for Broker {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(hire) = msg.downcast::<HireGpu>() {
            let requirements = greenroom::Capabilities::new().with("gpus", &hire.gpus)?;
            let hired = ctx
                .create_actor_requiring::<GpuWorker>(&requirements)
                .map(greenroom::ActorRef::address)
                .map_err(|e| e.to_string());
            self.hirer = Some(sender);
            ctx.send(sender, hired)?;
        } else if let Some(restarted) = msg.downcast::<greenroom::ChildRestarted>() {
            if let Some(hirer) = self.hirer {
                let seen = ChildRestartSeen {
                    parent: ctx.my_address(),
                    child: restarted.child,
                    cause: restarted.cause,
                    restart_count: restarted.restart_count,
                };
                ctx.send(hirer, seen)?;
            }
        } else if let Some(exited) = msg.downcast::<ChildActorExited>() {
            if let Some(hirer) = self.hirer {
                let seen = ChildExitSeen {
                    parent: ctx.my_address(),
                    child: exited.child,
                    cause: exited.cause,
                };
                ctx.send(hirer, seen)?;
            }
        } else if let Some(OfferGpus(n)) = msg.downcast::<OfferGpus>() {
            ctx.update_capability("gpus", &n)?;
            ctx.send(sender, true)?;
        }
        Ok(())
    }
}

/// What a [`Logger`] is asked to write. Answered with `true` once written (the ones that
/// end the process are not answered).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LogCommand {
    /// `tracing::info!` with this text.
    Info(String),
    /// `tracing::debug!` with this text.
    Debug(String),
    /// `eprintln!` of this text: raw stderr output.
    Eprint(String),
    /// `eprintln!` of this text, then `std::process::abort()`.
    AbortAfter(String),
    /// `panic!` with this text while a value whose destructor panics is alive: the second
    /// panic escapes a destructor during unwinding, and Rust aborts the process.
    DoublePanic(String),
    /// `count` info records `"<prefix> <i>"`, `i` from 0, as fast as the process can.
    Lines { prefix: String, count: u64 },
}

/// Writes log records and stderr output on command.
#[derive(Default)]
pub struct Logger;

/// Panics when dropped: see [`LogCommand::DoublePanic`].
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop: a destructor panicking during unwinding");
    }
}

impl Actor for Logger {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        let Some(cmd) = msg.downcast::<LogCommand>() else {
            return Ok(());
        };
        match cmd {
            LogCommand::Info(text) => tracing::info!(answer = 42, "{text}"),
            LogCommand::Debug(text) => tracing::debug!("{text}"),
            LogCommand::Eprint(text) => eprintln!("{text}"),
            LogCommand::AbortAfter(text) => {
                eprintln!("{text}");
                std::process::abort();
            }
            LogCommand::DoublePanic(text) => {
                let _bomb = PanicOnDrop;
                panic!("{text}");
            }
            LogCommand::Lines { prefix, count } => {
                for i in 0..count {
                    tracing::info!("{prefix} {i}");
                }
            }
        }
        ctx.send(sender, true)?;
        Ok(())
    }
}

/// Starts a [`ConventionWatcher`] watching; answered with `true`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct WatchConvention;

/// Asks a [`ConventionWatcher`] for what it has heard.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ConventionNews;

/// Records every `ActorSystemConventionUpdate` it receives, in order.
#[derive(Default)]
pub struct ConventionWatcher {
    heard: Vec<greenroom::ActorSystemConventionUpdate>,
}

impl Actor for ConventionWatcher {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if msg.is::<WatchConvention>() {
            ctx.notify_on_convention_changes(true)?;
            ctx.send(sender, true)?;
        } else if let Some(update) = msg.downcast::<greenroom::ActorSystemConventionUpdate>() {
            self.heard.push(update);
        } else if msg.is::<ConventionNews>() {
            ctx.send(sender, self.heard.clone())?;
        }
        Ok(())
    }
}

/// An actor whose constructor panics: it never starts.
pub struct Stillborn;

impl Default for Stillborn {
    fn default() -> Self {
        panic!("Stillborn's constructor always panics")
    }
}

impl Actor for Stillborn {
    fn receive(&mut self, _: &mut Context<'_>, _: &AnyMessage, _: Address) -> ActorResult {
        Ok(())
    }
}

/// Asks an [`Ephemeral`] to report to the asker from now on, creating a [`Silent`] child
/// first if `with_child`; answered with [`Spawned`] (its children).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Hello {
    pub with_child: bool,
}

/// Asks an [`Ephemeral`] to tick: a wakeup every `ms` milliseconds, forever.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Tick {
    pub ms: u64,
}

/// Sent by an [`Ephemeral`] to whoever said [`Hello`] last when its `receive` sees
/// `ActorExitRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitSeen {
    pub actor: Address,
    /// Who asked it to exit (`@0`: the system).
    pub from: Address,
}

/// For transient-actor tests: reports the `ActorExitRequest` it receives and its children's
/// exits, ticks on request, and echoes `u64`s.
#[derive(Default)]
pub struct Ephemeral {
    watcher: Option<Address>,
    children: Vec<Address>,
}

impl Actor for Ephemeral {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(hello) = msg.downcast::<Hello>() {
            self.watcher = Some(sender);
            if hello.with_child {
                self.children.push(ctx.create_actor::<Silent>()?.address());
            }
            ctx.send(sender, Spawned(self.children.clone()))?;
        } else if let Some(tick) = msg.downcast::<Tick>() {
            ctx.wakeup_after(std::time::Duration::from_millis(tick.ms), tick)?;
        } else if let Some(w) = msg.downcast::<greenroom::WakeupMessage>() {
            if let Some(tick) = w.payload.downcast::<Tick>() {
                ctx.wakeup_after(w.delay, tick)?;
            }
        } else if let Some(n) = msg.downcast::<u64>() {
            ctx.send(sender, n)?;
        } else if msg.is::<greenroom::ActorExitRequest>() {
            if let Some(watcher) = self.watcher {
                let seen = ExitSeen {
                    actor: ctx.my_address(),
                    from: sender,
                };
                ctx.send(watcher, seen)?;
            }
        } else if let Some(exited) = msg.downcast::<ChildActorExited>() {
            report_child_exit(ctx, self.watcher, exited)?;
        }
        Ok(())
    }
}

/// Asks an [`Alarm`] for a wakeup after `delay_ms` that reports [`Rung`] to `report_to`
/// (or, with `abort`, aborts the process instead); answered with the host's pid (`u32`).
/// The wakeup's payload is this request itself, so a new incarnation knows whom to tell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetAlarm {
    pub delay_ms: u64,
    pub label: String,
    pub report_to: Address,
    pub abort: bool,
}

/// Sent by an [`Alarm`] when a wakeup arrives: which, and in which process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    pub label: String,
    pub pid: u32,
}

/// Sets wakeups that carry everything they need, so that they mean the same to the
/// incarnation they fire in; answers any `String` with its host's pid.
#[derive(Default)]
pub struct Alarm;

impl Actor for Alarm {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(set) = msg.downcast::<SetAlarm>() {
            ctx.wakeup_after(std::time::Duration::from_millis(set.delay_ms), set)?;
            ctx.send(sender, std::process::id())?;
        } else if let Some(w) = msg.downcast::<greenroom::WakeupMessage>() {
            if let Some(set) = w.payload.downcast::<SetAlarm>() {
                if set.abort {
                    std::process::abort();
                }
                let rung = Rung {
                    label: set.label,
                    pid: std::process::id(),
                };
                ctx.send(set.report_to, rung)?;
            }
        } else if msg.is::<String>() {
            ctx.send(sender, std::process::id())?;
        }
        Ok(())
    }
}
