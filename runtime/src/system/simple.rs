//! The simple base: every actor in the calling process, run one `receive` at a time in the
//! order messages were sent, with a virtual clock. No sockets, no threads, no processes.
//!
//! It exists for tests and debugging: the same program produces the same sequence of
//! `receive` calls every run, and timers fire when the virtual clock says so, not when a
//! busy CI machine gets round to it.
//!
//! ```text
//! client tell/ask ──▶ queue (FIFO of every message sent, system-wide)
//!                        │ pop the oldest
//!                        ▼
//!            receive(msg) of its target ──▶ what it sends goes to the back of the queue
//! queue empty ──▶ the client's wait advances the virtual clock to the next timer
//!                 (or to its deadline) and fires it
//! ```
//!
//! The rules are the process base's, applied in one process:
//! * a `receive` that panics or returns an error gets the same message once more; a second
//!   failure returns it to its sender as [`PoisonMessage`] (an actor's own wakeups excepted);
//!   `OnFailure::Poison` returns it at the first failure, and `OnFailure::Restart` too, then
//!   builds a fresh actor from the registry at the same address (its children stopped, its
//!   parent told `ChildRestarted`, `Temporary` actors gone instead) with no backoff or limit;
//! * `ActorExitRequest`: the actor's `receive` sees it, then its children are asked to exit
//!   (latest first); once their [`ChildActorExited`] notices have reached it, the actor is
//!   gone, its timers are cancelled, its global name is freed, and its parent is told;
//! * a message to an actor that is gone (or exiting, unless it is exit traffic) is a dead
//!   letter: a [`DeadEnvelope`] to the registered handler, or a warning in the log;
//! * a child whose constructor panics still gets an address, gone at once with
//!   `StartFailed`, and its parent gets [`ChildActorExited`] (a top-level create fails with
//!   `Error::Create` instead, as the process base's first create of a system does).
//!
//! What it cannot do: isolate faults. An abort, a segfault or an infinite loop in one actor
//! stops the whole program, so supervision restarts, liveness timeouts and resource limits
//! do not apply (they are accepted and ignored; a transient actor's `lifetime` and
//! `idle_timeout` do, on the virtual clock, as timers beside the wakeups), and a cycle of messages that never ends keeps
//! `tell` from returning. Backpressure does not apply either: the queue is unbounded.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use greenroom_protocol::{
    supervision::LONGEST, ActorState, Address, Capabilities, ChildSpec, Correlation, CreateFailure, ExitCause,
    OnFailure, Payload, RestartType,
};

use super::{for_client, ActorInfo, SystemConfig};
use crate::{
    actor::{panic_text, program_registry, receive_with_retry, Backend, Context, Registry},
    error::{Error, Result},
    message::{
        is_exit_traffic, take_undecodable, ActorExitRequest, AnyMessage, ChildActorExited, ChildRestarted,
        DeadEnvelope, Message, PoisonMessage, WakeupMessage,
    },
    request::{MadeUp, PendingRequests, RequestError, RequestId, RequestKind},
    troupe::{self, TroupeDone, TroupeWorkInProgress, WorkerRole},
};

/// One `receive` call, as recorded with [`SystemConfig::record_deliveries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The virtual time of the call.
    pub at: Duration,
    pub sender: Address,
    pub receiver: Address,
    /// The message's type tag.
    pub message_type: String,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>10.3?} {} -> {} {}",
            self.at, self.sender, self.receiver, self.message_type
        )
    }
}

/// What a client's wait is for.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// `listen`: the next plain message.
    Mailbox,
    /// Thespian's `ask`: its own answer, or the next plain message.
    Ask { to: Address, id: u64 },
    /// A request: its own answer only.
    Answer(u64),
}

impl Wait {
    fn answer_id(self) -> Option<u64> {
        match self {
            Wait::Mailbox => None,
            Wait::Ask { id, .. } | Wait::Answer(id) => Some(id),
        }
    }
}

/// A client of a simple-base system: the shared state behind a mutex, and the client's
/// address. The owner started the system and shuts it down; a private client only goes
/// away itself.
pub(crate) struct SimpleSystem {
    core: Arc<Mutex<Core>>,
    address: Address,
    owner: bool,
    /// This client has been shut down (for a private one: closed while the system runs on).
    closed: std::sync::atomic::AtomicBool,
}

struct Envelope {
    sender: Address,
    target: Address,
    msg: AnyMessage,
    correlation: Correlation,
    /// Already the `Response<M>` the target's request gets (made up by the target's own
    /// pending requests: a timeout, a message that could not be delivered), not an answer
    /// to turn into one.
    made_up: bool,
}

/// What reaches one client: plain messages for `listen`/`ask`, and the answers its pending
/// requests and asks wait for, by request id (`None` until it comes).
#[derive(Default)]
struct ClientBox {
    mailbox: VecDeque<(Address, AnyMessage)>,
    answers: BTreeMap<u64, Option<Result<(Address, AnyMessage)>>>,
    next_request: u64,
}

struct Slot {
    /// `None` only while its own `receive` runs.
    actor: Option<Box<dyn crate::Actor>>,
    type_name: String,
    parent: Option<u64>,
    /// In creation order; a child leaves when its `ChildActorExited` reaches this actor.
    children: Vec<u64>,
    exiting: bool,
    global_name: Option<String>,
    /// What its creator required of the system, checked again when the capabilities change.
    requirements: Capabilities,
    /// Messages the actor holds back for now (a troupe manager with no free worker), oldest
    /// first; offered again after each of its `receive`s.
    held: VecDeque<(Address, AnyMessage, Correlation)>,
    /// This actor's side of a troupe, if it works in one.
    worker: WorkerRole,
    /// Its requests waiting for answers (`Context::request`), on the virtual clock, and
    /// the due time of the one timer set for the earliest of them.
    requests: PendingRequests<Duration>,
    request_timer: Option<Duration>,
    /// `ChildSpec::idle_timeout`, and when it last processed a message from another endpoint
    /// (or was created).
    idle_timeout: Option<Duration>,
    active_at: Duration,
    /// `ChildSpec::restart` and `ChildSpec::on_failure`: whether and how a failed `receive`
    /// restarts it.
    restart: RestartType,
    on_failure: OnFailure,
    /// 1, then +1 per restart (`OnFailure::Restart`).
    incarnation: u32,
    /// Why it is gone once it has exited, if not `Normal` (a child of a restarted parent:
    /// `ParentGone`).
    stop_cause: Option<ExitCause>,
}

/// A pending timer of an actor, ordered by due time, then by the order they were set.
struct Timer {
    due: Duration,
    order: u64,
    actor: u64,
    kind: TimerKind,
}

enum TimerKind {
    /// A `wakeup_after`.
    Wakeup { delay: Duration, payload: AnyMessage },
    /// A request's deadline: its timeout, if it still waits then.
    RequestDue,
    /// The end of a transient actor's lifetime (`ChildSpec::lifetime`).
    Lifetime,
    /// When a transient actor may have been idle for its `ChildSpec::idle_timeout`: checked
    /// against its last activity when it fires (one such timer per actor, moved on lazily).
    Idle,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// Everything the simple base knows. Ordered maps only, so that nothing depends on hashing.
struct Core {
    registry: Registry,
    next_id: u64,
    actors: BTreeMap<u64, Slot>,
    gone: BTreeMap<u64, ExitCause>,
    /// Each client's messages not yet taken by `ask`/`listen`, and the answers it waits for.
    clients: BTreeMap<u64, ClientBox>,
    queue: VecDeque<Envelope>,
    now: Duration,
    timers: BinaryHeap<Reverse<Timer>>,
    timers_set: u64,
    global_names: BTreeMap<String, u64>,
    dead_letter_handler: Option<u64>,
    deliveries: Option<Vec<Delivery>>,
    capabilities: Capabilities,
    stopped: bool,
}

impl SimpleSystem {
    pub(crate) fn start(config: &SystemConfig) -> Result<Self> {
        let registry = config
            .registry
            .clone()
            .or_else(program_registry)
            .ok_or(Error::NoRegistry)?;
        let mut core = Core {
            registry,
            next_id: 1,
            actors: BTreeMap::new(),
            gone: BTreeMap::new(),
            clients: BTreeMap::new(),
            queue: VecDeque::new(),
            now: Duration::ZERO,
            timers: BinaryHeap::new(),
            timers_set: 0,
            global_names: BTreeMap::new(),
            dead_letter_handler: None,
            deliveries: config.record_deliveries.then(Vec::new),
            capabilities: config.capabilities.clone(),
            stopped: false,
        };
        let address = core.new_client();
        Ok(SimpleSystem {
            core: Arc::new(Mutex::new(core)),
            address,
            owner: true,
            closed: Default::default(),
        })
    }

    /// A new client of the same system with its own address (a private client).
    pub(crate) fn connect_private(&self) -> Result<Self> {
        let address = self.lock()?.new_client();
        Ok(SimpleSystem {
            core: Arc::clone(&self.core),
            address,
            owner: false,
            closed: Default::default(),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Core>> {
        refuse_reentry()?;
        // An actor's panic is caught inside the lock, so poisoning means a bug in this file;
        // the state is still consistent enough to shut down.
        let core = self.core.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if core.stopped || self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::SystemStopped);
        }
        Ok(core)
    }

    pub(crate) fn address(&self) -> Address {
        self.address
    }

    pub(crate) fn create_actor(
        &self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        self.lock()?.create(type_name, spec, None, global_name, requirements)
    }

    pub(crate) fn tell(&self, to: Address, msg: AnyMessage) -> Result<()> {
        let mut core = self.lock()?;
        core.client_send(self.address, to, msg, Correlation::None)?;
        core.run_queue();
        Ok(())
    }

    /// Thespian's ask: its own answer, or the next plain message to this client.
    pub(crate) fn ask(&self, to: Address, msg: AnyMessage, timeout: Duration) -> Result<(Address, AnyMessage)> {
        let mut core = self.lock()?;
        let id = core.await_answer(self.address);
        core.client_send(self.address, to, msg, Correlation::Ask(id))?;
        match core.wait_for_message(self.address, Wait::Ask { to, id }, timeout)? {
            Some(reply) => Ok(reply),
            None => Err(Error::Timeout { address: to, timeout }),
        }
    }

    /// A request: its own answer only (undecoded), whatever else arrives meanwhile.
    pub(crate) fn request(
        &self,
        to: Address,
        msg: AnyMessage,
        timeout: Duration,
    ) -> Result<Option<(Address, AnyMessage)>> {
        let mut core = self.lock()?;
        let id = core.await_answer(self.address);
        core.client_send(self.address, to, msg, Correlation::Request(id))?;
        core.wait_for_message(self.address, Wait::Answer(id), timeout)
    }

    pub(crate) fn listen(&self, timeout: Duration) -> Result<Option<(Address, AnyMessage)>> {
        self.lock()?.wait_for_message(self.address, Wait::Mailbox, timeout)
    }

    pub(crate) fn actor_info(&self, address: Address) -> Result<ActorInfo> {
        let core = self.lock()?;
        let id = address.id();
        let (state, incarnation) = if let Some(slot) = core.actors.get(&id) {
            let state = if slot.exiting {
                ActorState::Exiting
            } else {
                ActorState::Running
            };
            (state, slot.incarnation)
        } else if let Some(cause) = core.gone.get(&id) {
            (ActorState::Gone(cause.clone()), 1)
        } else if core.clients.contains_key(&id) {
            (ActorState::Running, 0)
        } else {
            (ActorState::Unknown, 0)
        };
        Ok(ActorInfo {
            state,
            pid: None,
            incarnation,
        })
    }

    pub(crate) fn capabilities(&self) -> Result<Capabilities> {
        Ok(self.lock()?.capabilities.clone())
    }

    pub(crate) fn update_capability(&self, key: &str, value: Option<Payload>) -> Result<()> {
        let mut core = self.lock()?;
        core.update_capability(key, value);
        core.run_queue();
        Ok(())
    }

    pub(crate) fn advance_clock(&self, by: Duration) -> Result<()> {
        let mut core = self.lock()?;
        core.run_queue();
        let until = core.deadline_after(by);
        while core.fire_next_timer(until) {
            core.run_queue();
        }
        core.now = core.now.max(until);
        Ok(())
    }

    pub(crate) fn virtual_time(&self) -> Result<Duration> {
        refuse_reentry()?;
        Ok(self.core.lock().unwrap_or_else(|p| p.into_inner()).now)
    }

    pub(crate) fn take_deliveries(&self) -> Result<Vec<Delivery>> {
        let mut core = self.lock()?;
        match core.deliveries.as_mut() {
            Some(recorded) => Ok(std::mem::take(recorded)),
            None => Err(Error::WrongBase(
                "take_deliveries: start the system with SystemConfig::record_deliveries(true)",
            )),
        }
    }

    /// Asks every top-level actor to exit (each asks its children), runs until the last is
    /// gone, and refuses every later call. A second call does nothing.
    pub(crate) fn shutdown(&self) -> Result<()> {
        self.finish(self.owner)
    }

    /// Stops the whole system, from any client.
    pub(crate) fn stop_system(&self) -> Result<()> {
        self.finish(true)
    }

    fn finish(&self, stop_all: bool) -> Result<()> {
        refuse_reentry()?;
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        if !stop_all {
            // A private client leaves: its address is gone, later messages to it are dead
            // letters.
            if core.clients.remove(&self.address.id()).is_some() {
                core.gone.insert(self.address.id(), ExitCause::Normal);
            }
            return Ok(());
        }
        if core.stopped {
            return Ok(());
        }
        let top_level: Vec<u64> = core
            .actors
            .iter()
            .filter(|(_, slot)| slot.parent.is_none())
            .map(|(id, _)| *id)
            .collect();
        let exit = AnyMessage::new(&ActorExitRequest)?;
        for id in top_level.into_iter().rev() {
            core.enqueue(self.address, Address::local(id), exit.clone());
        }
        core.run_queue();
        core.stopped = true;
        if !core.actors.is_empty() {
            tracing::warn!(
                left = core.actors.len(),
                "simple base: actors still exiting at shutdown were dropped"
            );
        }
        let left = std::mem::take(&mut core.actors);
        core.timers.clear();
        drop(core);
        // Dropped outside the lock: an actor's `Drop` is user code.
        let _running = RunningActorCode::enter();
        drop(left);
        Ok(())
    }
}

thread_local! {
    /// Set while this thread runs an actor's code (receive, constructor, drop) for a
    /// simple-base system, which holds the system's lock meanwhile.
    static RUNNING_ACTOR_CODE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as running actor code until dropped.
struct RunningActorCode(bool);

impl RunningActorCode {
    fn enter() -> Self {
        RunningActorCode(RUNNING_ACTOR_CODE.with(|r| r.replace(true)))
    }
}

impl Drop for RunningActorCode {
    fn drop(&mut self) {
        RUNNING_ACTOR_CODE.with(|r| r.set(self.0));
    }
}

/// An actor that calls its own simple-base system through an `ActorSystem` (not its
/// `Context`) would wait for the lock its own `receive` holds: refuse instead of hanging.
fn refuse_reentry() -> Result<()> {
    if RUNNING_ACTOR_CODE.with(|r| r.get()) {
        return Err(Error::WrongBase(
            "a simple-base ActorSystem was called from inside one of its own actors: an actor acts through its Context",
        ));
    }
    Ok(())
}

impl Drop for SimpleSystem {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "simple-base shutdown on drop did not complete cleanly");
        }
    }
}

impl Core {
    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sets (`Some`) or removes one capability. If that changes the set, every live actor's
    /// type checks it again with its creator's requirements, and those that refuse it are
    /// asked to exit, by the system (`@0`), as a host does; the caller may be one of them.
    fn update_capability(&mut self, key: &str, value: Option<Payload>) {
        let before = self.capabilities.clone();
        self.capabilities.set_encoded(key, value);
        if self.capabilities == before {
            return;
        }
        let refused: Vec<u64> = self
            .actors
            .iter()
            .filter(|(_, slot)| {
                !slot.exiting
                    && !self
                        .registry
                        .still_accepts(&slot.type_name, &self.capabilities, &slot.requirements)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in refused {
            tracing::info!(actor = %Address::local(id), %key, "the actor's capability check refuses the changed capabilities; asking it to exit");
            self.enqueue_message(Address::local(0), Address::local(id), &ActorExitRequest);
        }
    }

    fn new_client(&mut self) -> Address {
        let id = self.allocate_id();
        self.clients.insert(id, ClientBox::default());
        Address::local(id)
    }

    /// A fresh request id of `client`'s, whose answer its box now waits for.
    fn await_answer(&mut self, client: Address) -> u64 {
        let Some(inbox) = self.clients.get_mut(&client.id()) else {
            return 0;
        };
        inbox.next_request += 1;
        let id = inbox.next_request;
        inbox.answers.insert(id, None);
        id
    }

    fn deadline_after(&self, timeout: Duration) -> Duration {
        self.now.saturating_add(timeout.min(LONGEST))
    }

    fn enqueue(&mut self, sender: Address, target: Address, msg: AnyMessage) {
        self.enqueue_correlated(sender, target, msg, Correlation::None);
    }

    fn enqueue_correlated(&mut self, sender: Address, target: Address, msg: AnyMessage, correlation: Correlation) {
        self.queue.push_back(Envelope {
            sender,
            target,
            msg,
            correlation,
            made_up: false,
        });
    }

    /// Queues a `Response` `requester`'s pending requests made up (see [`MadeUp`]).
    fn enqueue_made_up(&mut self, requester: Address, made: MadeUp) {
        self.queue.push_back(Envelope {
            sender: made.from,
            target: requester,
            msg: made.msg,
            correlation: Correlation::Reply(made.id),
            made_up: true,
        });
    }

    fn enqueue_message<M: Message>(&mut self, sender: Address, target: Address, value: &M) {
        match AnyMessage::new(value) {
            Ok(msg) => self.enqueue(sender, target, msg),
            Err(e) => tracing::error!(error = %e, "simple base: could not encode a runtime message"),
        }
    }

    /// A client's send: refused at once if the target is not there, as on the process base
    /// (and the message handed to the dead-letter path: it never reached anyone).
    fn client_send(&mut self, sender: Address, to: Address, msg: AnyMessage, correlation: Correlation) -> Result<()> {
        let id = to.id();
        if !self.actors.contains_key(&id) && !self.clients.contains_key(&id) {
            if let (Some(request), Some(inbox)) = (correlation.request_id(), self.clients.get_mut(&sender.id())) {
                inbox.answers.remove(&request);
            }
            let error = match self.gone.get(&id) {
                Some(cause) => Error::ActorGone {
                    address: to,
                    cause: cause.clone(),
                },
                None => Error::UnknownActor(to),
            };
            self.dead_letter(sender, to, msg);
            self.run_queue();
            return Err(error);
        }
        self.enqueue_correlated(sender, to, msg, correlation);
        Ok(())
    }

    /// Creates an actor, its constructor run now: top-level (`parent` none) or a child.
    fn create(
        &mut self,
        type_name: &str,
        spec: ChildSpec,
        parent: Option<u64>,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        let refuse = |failure| Error::Create {
            type_name: type_name.to_owned(),
            failure,
        };
        if parent.is_some_and(|p| self.actors.get(&p).is_none_or(|slot| slot.exiting)) {
            return Err(refuse(CreateFailure::ParentExiting));
        }
        if let Some(existing) = global_name.and_then(|name| self.global_names.get(name)) {
            return Ok(Address::local(*existing));
        }
        if !self.registry.contains(type_name) {
            return Err(refuse(CreateFailure::UnknownType {
                type_name: type_name.to_owned(),
                known: self.registry.type_names(),
            }));
        }
        let constructed = {
            let _running = RunningActorCode::enter();
            catch_unwind(AssertUnwindSafe(|| self.registry.construct(type_name)))
        };
        // A named actor belongs to the system, not to whoever asked first.
        let parent = if global_name.is_some() { None } else { parent };
        let actor = match constructed {
            Ok(Some(actor)) => actor,
            Ok(None) => unreachable!("the registry was just asked for this type"),
            Err(panic) => {
                let failure = CreateFailure::StartFailed(format!("the constructor panicked: {}", panic_text(&*panic)));
                let Some(parent) = parent else {
                    // A top-level create reports it at once (see `ActorSystem::create_actor`).
                    return Err(refuse(failure));
                };
                return Ok(self.stillborn(parent, type_name, failure));
            }
        };
        let id = self.allocate_id();
        if let Some(p) = parent.and_then(|p| self.actors.get_mut(&p)) {
            p.children.push(id);
        }
        if let Some(name) = global_name {
            self.global_names.insert(name.to_owned(), id);
        }
        self.actors.insert(
            id,
            Slot {
                actor: Some(actor),
                type_name: type_name.to_owned(),
                parent,
                children: Vec::new(),
                exiting: false,
                global_name: global_name.map(str::to_owned),
                requirements: requirements.clone(),
                held: VecDeque::new(),
                worker: WorkerRole::default(),
                requests: PendingRequests::new(1),
                request_timer: None,
                idle_timeout: spec.idle_timeout,
                active_at: self.now,
                restart: spec.restart,
                on_failure: spec.on_failure,
                incarnation: 1,
                stop_cause: None,
            },
        );
        // A transient actor's end, on the virtual clock.
        if let Some(lifetime) = spec.lifetime {
            self.set_timer(id, lifetime, TimerKind::Lifetime);
        }
        if let Some(idle) = spec.idle_timeout {
            self.set_timer(id, idle, TimerKind::Idle);
        }
        Ok(Address::local(id))
    }

    /// A child whose constructor panicked, as on the process base (where the child's host
    /// reports it after `create_actor` has returned): it gets an address, which is gone at
    /// once with `StartFailed` (messages to it are dead letters), and its parent gets
    /// `ChildActorExited`.
    fn stillborn(&mut self, parent: u64, type_name: &str, failure: CreateFailure) -> Address {
        let id = self.allocate_id();
        let child = Address::local(id);
        tracing::warn!(actor = %child, actor_type = %type_name, %failure, "actor failed to start");
        let cause = ExitCause::StartFailed(failure.to_string());
        self.gone.insert(id, cause.clone());
        self.enqueue_message(child, Address::local(parent), &ChildActorExited { child, cause });
        child
    }

    /// Delivers queued messages until none is left.
    fn run_queue(&mut self) {
        while let Some(envelope) = self.queue.pop_front() {
            self.deliver(envelope);
        }
    }

    /// Fires the earliest timer if it is due by `until`, moving the clock to it.
    fn fire_next_timer(&mut self, until: Duration) -> bool {
        if self.timers.peek().is_none_or(|Reverse(t)| t.due > until) {
            return false;
        }
        let Some(Reverse(timer)) = self.timers.pop() else {
            return false;
        };
        self.now = self.now.max(timer.due);
        let me = Address::local(timer.actor);
        let end = match timer.kind {
            TimerKind::Wakeup { delay, payload } => {
                self.enqueue_message(me, me, &WakeupMessage { delay, payload });
                return true;
            }
            TimerKind::RequestDue => {
                let Some(slot) = self.actors.get_mut(&timer.actor) else {
                    return true;
                };
                if slot.request_timer == Some(timer.due) {
                    slot.request_timer = None;
                }
                let expired = slot.requests.expire(self.now);
                // One timer per actor, for its earliest request still waiting.
                let next = slot.requests.next_due().filter(|_| slot.request_timer.is_none());
                if let Some(due) = next {
                    slot.request_timer = Some(due);
                    self.set_timer_at(timer.actor, due, TimerKind::RequestDue);
                }
                for made in expired {
                    self.enqueue_made_up(me, made);
                }
                return true;
            }
            TimerKind::Lifetime => "its lifetime is over",
            TimerKind::Idle => {
                let Some(slot) = self.actors.get(&timer.actor) else {
                    return true;
                };
                let Some(idle) = slot.idle_timeout else { return true };
                let idle_end = slot.active_at.saturating_add(idle);
                if idle_end > self.now {
                    // It was active since this timer was set: look again then.
                    self.timers.push(Reverse(Timer { due: idle_end, ..timer }));
                    return true;
                }
                "it has been idle for its idle timeout"
            }
        };
        // As on the process base: asked to exit by the system, as a supervisor would.
        if self.actors.get(&timer.actor).is_some_and(|slot| !slot.exiting) {
            tracing::info!(actor = %me, reason = end, "transient actor: asking it to exit");
            self.enqueue_message(Address::local(0), me, &ActorExitRequest);
        }
        true
    }

    /// Sets a timer of actor `id`, due `after` from now.
    fn set_timer(&mut self, id: u64, after: Duration, kind: TimerKind) {
        let due = self.deadline_after(after);
        self.set_timer_at(id, due, kind);
    }

    /// Sets a timer of actor `id`, due at `due`.
    fn set_timer_at(&mut self, id: u64, due: Duration, kind: TimerKind) {
        self.timers_set += 1;
        self.timers.push(Reverse(Timer {
            due,
            order: self.timers_set,
            actor: id,
            kind,
        }));
    }

    /// The client's wait: run actors until what it waits for arrives, letting virtual time
    /// pass (timer by timer) up to `timeout`. `None` at the deadline (a request's or an
    /// ask's later answer is then a dead letter).
    fn wait_for_message(
        &mut self,
        client: Address,
        wait: Wait,
        timeout: Duration,
    ) -> Result<Option<(Address, AnyMessage)>> {
        let deadline = self.deadline_after(timeout);
        loop {
            let Some(inbox) = self.clients.get_mut(&client.id()) else {
                return Err(Error::SystemStopped);
            };
            if let Some(id) = wait.answer_id() {
                if inbox.answers.get(&id).is_some_and(Option::is_some) {
                    if let Some(Some(answer)) = inbox.answers.remove(&id) {
                        return match wait {
                            // An ask's own answer is taken as a client takes any message
                            // (its poison is the ask's error); a request's is decoded by
                            // the caller.
                            Wait::Ask { .. } => answer.and_then(|(sender, msg)| for_client(sender, msg)),
                            _ => answer.map(Some),
                        };
                    }
                }
            }
            if !matches!(wait, Wait::Answer(_)) {
                if let Some((sender, msg)) = inbox.mailbox.pop_front() {
                    let taken = for_client(sender, msg);
                    if matches!(taken, Ok(None)) {
                        continue;
                    }
                    // An ask ends with this message (or its error): a later answer of its own
                    // is a dead letter.
                    if let Some(id) = wait.answer_id() {
                        inbox.answers.remove(&id);
                    }
                    return taken;
                }
            }
            if let Some(envelope) = self.queue.pop_front() {
                self.deliver(envelope);
                continue;
            }
            // Nothing left to run: an asked actor that is gone will never answer.
            if let Wait::Ask { to, .. } = wait {
                if let Some(cause) = self.gone.get(&to.id()) {
                    return Err(Error::ActorGone {
                        address: to,
                        cause: cause.clone(),
                    });
                }
            }
            if !self.fire_next_timer(deadline) {
                self.now = self.now.max(deadline);
                if let (Some(id), Some(inbox)) = (wait.answer_id(), self.clients.get_mut(&client.id())) {
                    inbox.answers.remove(&id);
                }
                return Ok(None);
            }
        }
    }

    fn deliver(
        &mut self,
        Envelope {
            sender,
            target,
            msg,
            correlation,
            made_up,
        }: Envelope,
    ) {
        let id = target.id();
        if let Some(inbox) = self.clients.get_mut(&id) {
            match correlation {
                Correlation::Reply(request) => match inbox.answers.get_mut(&request) {
                    Some(slot @ None) => *slot = Some(Ok((sender, msg))),
                    // Its caller gave up (or never asked): not for the next call.
                    _ => self.dead_letter(sender, target, msg),
                },
                _ => inbox.mailbox.push_back((sender, msg)),
            }
            return;
        }
        let Some(slot) = self.actors.get_mut(&id) else {
            self.undeliverable(sender, target, msg, correlation);
            return;
        };
        // The answer to one of its requests becomes its `Response`, delivered with the
        // request's correlation (which keeps a failure on it from going back as poison).
        let msg = match correlation {
            Correlation::Reply(request) if !made_up => match slot.requests.answer(request, sender, msg) {
                Ok(response) => response,
                Err(msg) => {
                    // An answer nothing waits for: its request timed out.
                    self.dead_letter(sender, target, msg);
                    return;
                }
            },
            _ => msg,
        };
        if slot.exiting && !is_exit_traffic(&msg) && !troupe::is_returned_hand_off(&msg) {
            self.refuse_while_exiting(sender, target, msg, correlation);
            return;
        }
        let holds_back = slot.actor.as_ref().is_some_and(|actor| {
            let held = slot.held.iter().map(|(s, _, _)| *s);
            troupe::must_wait(actor.as_ref(), &slot.worker, &msg, sender, held)
        });
        if holds_back {
            slot.held.push_back((sender, msg, correlation));
            return;
        }
        self.run_actor(sender, target, msg, correlation);
        self.release_held(id);
    }

    /// A message for an actor that is gone: a dead letter, and for a request or an ask, its
    /// requester hears that it failed (as the process base returns it to its sender).
    fn undeliverable(&mut self, sender: Address, target: Address, msg: AnyMessage, correlation: Correlation) {
        if let Some(request) = correlation.request_id() {
            let cause = self.gone.get(&target.id()).cloned();
            self.fail_request(sender, target, request, cause);
        }
        self.dead_letter(sender, target, msg);
    }

    /// Request `request` of `requester` (an actor or a client) to `target` failed: `target`
    /// is gone (`Some(cause)`) or was never created.
    fn fail_request(&mut self, requester: Address, target: Address, request: u64, cause: Option<ExitCause>) {
        // What sending it would have failed with: a client's call returns it, an actor's
        // `Response` says the same (as the process base's host does).
        let failed = match cause {
            Some(cause) => Error::ActorGone { address: target, cause },
            None => Error::UnknownActor(target),
        };
        if let Some(inbox) = self.clients.get_mut(&requester.id()) {
            if let Some(slot @ None) = inbox.answers.get_mut(&request) {
                *slot = Some(Err(failed));
            }
            return;
        }
        let returned = RequestError::from_send_error(&failed).and_then(|error| {
            self.actors
                .get_mut(&requester.id())
                .and_then(|slot| slot.requests.returned(request, error))
        });
        if let Some(made) = returned {
            self.enqueue_made_up(requester, made);
        }
    }

    /// Runs the held messages the actor now takes, oldest first. Called after every delivery,
    /// so that whenever messages are held the actor holds back the oldest (as the host does).
    fn release_held(&mut self, id: u64) {
        loop {
            let Some(slot) = self.actors.get_mut(&id) else { return };
            let takes_front = !slot.exiting
                && slot.held.front().is_some_and(|(_, msg, _)| {
                    slot.actor
                        .as_ref()
                        .is_some_and(|a| !troupe::waits(a.as_ref(), &slot.worker, msg))
                });
            if !takes_front {
                return;
            }
            let Some((sender, msg, correlation)) = slot.held.pop_front() else {
                return;
            };
            self.run_actor(sender, Address::local(id), msg, correlation);
        }
    }

    /// One delivery to a live actor: the retry, poison and exit rules, then the dead-letter
    /// path for a message that did not decode. A troupe manager's hand-off runs on the
    /// message it carries, from its original sender, and the manager hears when the worker
    /// is free.
    fn run_actor(&mut self, sender: Address, target: Address, msg: AnyMessage, correlation: Correlation) {
        let id = target.id();
        let Some(slot) = self.actors.get_mut(&id) else { return };
        let Some(mut actor) = slot.actor.take() else {
            // Only its own receive holds it, and nothing is delivered during a receive.
            tracing::error!(actor = %target, "simple base: re-entrant delivery refused");
            return;
        };
        if let Some(exited) = msg.downcast::<ChildActorExited>() {
            slot.children.retain(|c| Address::local(*c) != exited.child);
        }
        take_undecodable();
        let manager = sender;
        let (sender, msg, correlation, job) = match slot.worker.take_job(sender, &msg) {
            Some(work) => (work.sender, work.message, work.correlation, true),
            None => (sender, msg, correlation, false),
        };
        if let Some(recorded) = self.deliveries.as_mut() {
            recorded.push(Delivery {
                at: self.now,
                sender,
                receiver: target,
                message_type: msg.tag().to_owned(),
            });
        }
        let is_exit = msg.is::<ActorExitRequest>();
        let (on_failure, exiting) = (slot.on_failure, slot.exiting);
        let timers_before = self.timers_set;
        let running = RunningActorCode::enter();
        let mut unanswered = None;
        let failure = receive_with_retry(&msg, on_failure, |attempt| {
            let mut backend = SimpleBackend { core: self, me: target };
            let mut ctx = Context::new(target, &mut backend, sender, correlation);
            let outcome = match catch_unwind(AssertUnwindSafe(|| actor.receive(&mut ctx, &msg, sender))) {
                Ok(Ok(())) => {
                    unanswered = ctx.unanswered_request();
                    Ok(())
                }
                Ok(Err(e)) => Err(format!("receive returned an error: {e}")),
                Err(panic) => Err(format!("receive panicked: {}", panic_text(&*panic))),
            };
            if let Err(details) = &outcome {
                let actor_type = self.actors.get(&id).map_or("?", |s| s.type_name.as_str());
                tracing::warn!(
                    actor = %target, %actor_type, %sender, message_type = msg.tag(), attempt, %details,
                    "receive failed"
                );
            }
            outcome
        });
        drop(running);
        if let Some(request) = unanswered {
            // As on the process base: a request nothing answered fails at once, saying so.
            let type_name = self.actors.get(&id).map_or("?", |s| s.type_name.as_str());
            match crate::request::unanswered(type_name, msg.tag()) {
                Ok(m) => self.enqueue_correlated(target, sender, m, Correlation::Reply(request)),
                Err(e) => tracing::error!(error = %e, "simple base: could not encode an Unanswered"),
            }
        }
        if let Some(slot) = self.actors.get_mut(&id) {
            slot.actor = Some(actor);
            // Idleness is about other endpoints: its own wakeups do not make it busy.
            if sender != target {
                slot.active_at = self.now;
            }
        }
        if take_undecodable() {
            // Its tag named a type the actor expects, but the bytes did not decode: as on the
            // process base, not for silence.
            tracing::warn!(actor = %target, %sender, message_type = msg.tag(),
                "message does not decode as the type its tag names; handed to the dead-letter path");
            self.dead_letter(sender, target, msg.clone());
        }
        let mut restart = None;
        if let Some((details, returnable)) = failure {
            if on_failure == OnFailure::Restart && !is_exit && !exiting {
                restart = Some(details.clone());
            }
            // A message the actor sent itself (a wakeup) has no one else to go back to, and a
            // sender that is gone cannot take it back (as on the process base, where the send
            // fails): logged, never a dead letter, which could fail again and loop.
            let sender_alive = self.actors.contains_key(&sender.id()) || self.clients.contains_key(&sender.id());
            if returnable && matches!(correlation, Correlation::Reply(_)) {
                // The `Response` to one of its own requests: not its sender's to take back.
                tracing::warn!(actor = %target, %sender, message_type = msg.tag(),
                    "the actor failed on the response to its request; handed to the dead-letter path");
                self.dead_letter(sender, target, msg);
            } else if returnable && sender != target {
                if sender_alive {
                    // The answer to the request or ask it was, if it was one.
                    match AnyMessage::new(&PoisonMessage { message: msg, details }) {
                        Ok(poison) => self.enqueue_correlated(target, sender, poison, correlation.answer()),
                        Err(e) => tracing::error!(error = %e, "simple base: could not encode a PoisonMessage"),
                    }
                } else {
                    tracing::warn!(actor = %target, %sender, message_type = msg.tag(),
                        "could not return a poison message to its sender: it is gone");
                }
            }
        }
        if job {
            self.enqueue_message(target, manager, &TroupeDone);
        }
        if let Some(details) = restart {
            self.restart_after_failure(id, details, timers_before);
            return;
        }
        if is_exit {
            self.begin_exit(id);
        } else {
            self.finish_exit_if_done(id);
        }
    }

    /// After `receive(ActorExitRequest)`: cancel its timers and ask its children to exit,
    /// latest first.
    fn begin_exit(&mut self, id: u64) {
        let Some(slot) = self.actors.get_mut(&id) else { return };
        if slot.exiting {
            return;
        }
        slot.exiting = true;
        let children = slot.children.clone();
        let held = std::mem::take(&mut slot.held);
        self.timers.retain(|Reverse(t)| t.actor != id);
        // An exiting actor takes only exit traffic: dead letters are logged from now on.
        if self.dead_letter_handler == Some(id) {
            self.dead_letter_handler = None;
        }
        for child in children.into_iter().rev() {
            self.enqueue_message(Address::local(id), Address::local(child), &ActorExitRequest);
        }
        // What it held back it will never take: as any message to an exiting actor.
        for (sender, msg, correlation) in held {
            self.refuse_while_exiting(sender, Address::local(id), msg, correlation);
        }
        self.finish_exit_if_done(id);
    }

    /// An exiting actor whose children are all gone is gone: its parent is told.
    fn finish_exit_if_done(&mut self, id: u64) {
        let Some(slot) = self.actors.get(&id) else { return };
        if !slot.exiting || !slot.children.is_empty() {
            return;
        }
        let cause = slot.stop_cause.clone().unwrap_or(ExitCause::Normal);
        self.remove_actor(id, cause);
    }

    /// The actor is gone for good, for `cause`: its timers, global name and dead-letter
    /// registration go with it, what it held back is refused, and its parent is told.
    fn remove_actor(&mut self, id: u64, cause: ExitCause) {
        let Some(mut slot) = self.actors.remove(&id) else {
            return;
        };
        {
            // The actor's `Drop` is user code.
            let _running = RunningActorCode::enter();
            slot.actor = None;
        }
        self.timers.retain(|Reverse(t)| t.actor != id);
        if self.dead_letter_handler == Some(id) {
            self.dead_letter_handler = None;
        }
        self.gone.insert(id, cause.clone());
        if let Some(name) = &slot.global_name {
            self.global_names.remove(name);
        }
        for (sender, msg, correlation) in std::mem::take(&mut slot.held) {
            self.refuse_while_exiting(sender, Address::local(id), msg, correlation);
        }
        if let Some(parent) = slot.parent {
            let notice = ChildActorExited {
                child: Address::local(id),
                cause,
            };
            self.enqueue_message(Address::local(id), Address::local(parent), &notice);
        }
    }

    /// A `receive` failed under `OnFailure::Restart` (its poison already queued): as the
    /// process base's supervisor would after the process ends, the actor is built afresh
    /// from the registry at the same address and its parent gets `ChildRestarted`, or, if
    /// its restart type is `Temporary`, it is gone and its parent gets `ChildActorExited`.
    /// Its children are stopped for good (`ParentGone`), its pending wakeups carry over but
    /// for those the failed `receive` set (the process base never hears of them), and
    /// messages queued for it reach the new actor. No backoff, no restart limit.
    fn restart_after_failure(&mut self, id: u64, details: String, timers_before: u64) {
        let cause = ExitCause::ReceiveFailed(details);
        let me = Address::local(id);
        self.timers.retain(|Reverse(t)| {
            !(t.actor == id && t.order > timers_before && matches!(t.kind, TimerKind::Wakeup { .. }))
        });
        let Some(slot) = self.actors.get_mut(&id) else { return };
        let children = std::mem::take(&mut slot.children);
        let (restart, type_name, parent) = (slot.restart, slot.type_name.clone(), slot.parent);
        for child in children.into_iter().rev() {
            if let Some(child_slot) = self.actors.get_mut(&child) {
                child_slot.parent = None;
                child_slot.stop_cause = Some(ExitCause::ParentGone);
            }
            self.enqueue_message(Address::local(0), Address::local(child), &ActorExitRequest);
        }
        if restart == RestartType::Temporary {
            tracing::warn!(actor = %me, %cause, "actor is gone: its receive failed and it is never restarted");
            self.remove_actor(id, cause);
            return;
        }
        let constructed = {
            let _running = RunningActorCode::enter();
            catch_unwind(AssertUnwindSafe(|| self.registry.construct(&type_name)))
        };
        let fresh = match constructed {
            Ok(Some(fresh)) => fresh,
            Ok(None) => unreachable!("a running actor's type is registered"),
            Err(panic) => {
                let failure = CreateFailure::StartFailed(format!("the constructor panicked: {}", panic_text(&*panic)));
                tracing::warn!(actor = %me, %failure, "actor is gone: it could not be restarted");
                self.remove_actor(id, ExitCause::StartFailed(failure.to_string()));
                return;
            }
        };
        let Some(slot) = self.actors.get_mut(&id) else { return };
        let old = slot.actor.replace(fresh);
        slot.incarnation += 1;
        // The new actor never gets its predecessor's answers: they are dead letters.
        slot.requests = PendingRequests::new(slot.incarnation);
        slot.request_timer = None;
        slot.active_at = self.now;
        let restart_count = slot.incarnation - 1;
        {
            // The failed actor's `Drop` is user code.
            let _running = RunningActorCode::enter();
            drop(old);
        }
        tracing::warn!(actor = %me, actor_type = %type_name, %cause, restart_count, "actor restarted with fresh state");
        if let Some(parent) = parent {
            let notice = ChildRestarted {
                child: me,
                cause,
                restart_count,
            };
            self.enqueue_message(me, Address::local(parent), &notice);
        }
    }

    /// A message an exiting actor will not take: a troupe hand-off goes back to its manager
    /// as poison (to return it to its sender), anything else is a dead letter (and a request
    /// fails at its requester, as if the actor were gone).
    fn refuse_while_exiting(&mut self, sender: Address, target: Address, msg: AnyMessage, correlation: Correlation) {
        match troupe::unrun(&msg) {
            Some(poison) => self.enqueue_message(target, sender, &poison),
            None => {
                if let Some(request) = correlation.request_id() {
                    self.fail_request(sender, target, request, Some(ExitCause::Normal));
                }
                self.dead_letter(sender, target, msg);
            }
        }
    }

    /// A message whose target is gone: to the handler as a [`DeadEnvelope`], or to the log.
    fn dead_letter(&mut self, sender: Address, target: Address, message: AnyMessage) {
        let handler = self.dead_letter_handler.filter(|h| self.actors.contains_key(h));
        match handler {
            Some(handler) if !message.is::<DeadEnvelope>() => {
                self.enqueue_message(
                    target,
                    Address::local(handler),
                    &DeadEnvelope {
                        target,
                        sender,
                        message,
                    },
                );
            }
            _ => tracing::warn!(target_actor = %target, %sender, message_type = message.tag(),
                "dead letter: no handler registered; message dropped"),
        }
    }
}

/// What `Context` does on the simple base.
struct SimpleBackend<'a> {
    core: &'a mut Core,
    me: Address,
}

impl Backend for SimpleBackend<'_> {
    fn send(&mut self, to: Address, msg: AnyMessage, correlation: Correlation) -> Result<()> {
        // Delivered after this receive returns, behind everything sent before it.
        self.core.enqueue_correlated(self.me, to, msg, correlation);
        Ok(())
    }

    fn request(&mut self, to: Address, msg: AnyMessage, kind: RequestKind, timeout: Duration) -> Result<RequestId> {
        let core = &mut *self.core;
        let due = core.deadline_after(timeout);
        let Some(slot) = core.actors.get_mut(&self.me.id()) else {
            return Err(Error::SystemStopped);
        };
        let id = slot.requests.next_id();
        slot.requests.start(id, kind, to, due, timeout);
        if slot.request_timer.is_none_or(|set| due < set) {
            slot.request_timer = Some(due);
            core.set_timer_at(self.me.id(), due, TimerKind::RequestDue);
        }
        core.enqueue_correlated(self.me, to, msg, Correlation::Request(id.get()));
        Ok(id)
    }

    fn create_actor(
        &mut self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        self.core
            .create(type_name, spec, Some(self.me.id()), global_name, requirements)
    }

    fn wakeup_after(&mut self, delay: Duration, payload: AnyMessage) -> Result<()> {
        let core = &mut *self.core;
        if core.actors.get(&self.me.id()).is_none_or(|slot| slot.exiting) {
            // As on the process base: an exiting actor's timers are dropped.
            return Ok(());
        }
        core.set_timer(self.me.id(), delay, TimerKind::Wakeup { delay, payload });
        Ok(())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.core.capabilities
    }

    fn update_capability(&mut self, key: &str, value: Option<Payload>) -> Result<()> {
        self.core.update_capability(key, value);
        Ok(())
    }

    fn set_work_in_progress(&mut self, on: bool) -> Result<()> {
        let me = self.me;
        let manager = self
            .core
            .actors
            .get_mut(&me.id())
            .and_then(|slot| slot.worker.set_in_progress(on));
        if let Some(manager) = manager {
            self.core.enqueue_message(me, manager, &TroupeWorkInProgress(on));
        }
        Ok(())
    }

    fn hand_off(&mut self, to: Address, msg: AnyMessage) -> Result<()> {
        self.send(to, msg, Correlation::None)
    }

    fn held_back(&self) -> usize {
        self.core.actors.get(&self.me.id()).map_or(0, |slot| slot.held.len())
    }

    fn notify_on_convention_changes(&mut self, on: bool) -> Result<()> {
        let _ = on; // the simple base is never in a convention
        Ok(())
    }

    fn handle_dead_letters(&mut self, start: bool) -> Result<()> {
        if start {
            self.core.dead_letter_handler = Some(self.me.id());
        } else if self.core.dead_letter_handler == Some(self.me.id()) {
            self.core.dead_letter_handler = None;
        }
        Ok(())
    }
}
