//! Troupes: one address standing for an elastic pool of worker actors of one type — how a
//! process-per-actor system gets parallelism on every core (Thespian's `@troupe`).
//!
//! A troupe is two kinds of actor. Its **manager** ([`TroupeManager<W>`], runtime code) owns
//! the public address and does no work; its **workers** are ordinary actors of type `W`,
//! children of the manager, each in its own process.
//!
//! ```text
//!  sender ──msg──▶ manager ──TroupeWork{sender, msg}──▶ worker   (an idle one, or a new one
//!     ▲                ▲                                   │      while fewer than max exist)
//!     │                └──────────── TroupeDone ───────────┤
//!     └──────────── reply (the worker sees `sender`) ──────┘
//! ```
//!
//! ## Rules
//! * Each message goes to an idle worker; if none is idle and fewer than `max_workers` exist,
//!   a new worker is started for it; failing both, it is handed to the least loaded worker
//!   that holds fewer than `1 + prefetch` messages, to run next (so a worker never waits
//!   idle for the manager while work is queued). Otherwise the message **stays in the manager's mailbox,
//!   unprocessed**, in arrival order, until a worker is free. It is not taken into the
//!   manager's memory: a manager that is killed and restarted gets it again from its sender,
//!   like any message an actor had not yet processed, and the queue counts against each
//!   sender's send window (backpressure instead of an unbounded queue).
//! * The worker's host unwraps the hand-off: `receive` sees the original message and the
//!   original sender, and replies to it directly (not through the manager). When `receive`
//!   returns, the host tells the manager (`TroupeDone`), in the same write as the reply.
//! * [`Context::set_work_in_progress`] marks a worker busy across several messages (for
//!   example while it waits for answers from other actors): the manager hears of it, hands
//!   it nothing new (a message handed ahead before it heard waits in the worker's mailbox)
//!   and does not stop it for idleness until it clears the mark. A restart clears it.
//! * A worker that fails on a message twice returns it to the original sender as
//!   [`PoisonMessage`], as any actor does. A worker whose process dies mid-message: the
//!   message goes back to its original sender as `PoisonMessage` (it may be what killed the
//!   worker, so it is not run again), the worker is restarted by `worker_spec`'s policy, a
//!   message handed ahead to it goes to its new process, and the messages waiting in the
//!   manager's mailbox go on to the workers. A worker that stops with a message handed
//!   ahead returns it to its sender as `PoisonMessage` too.
//! * Messages from one sender keep their order through the manager, control messages
//!   included: a sender's [`TroupeStatus`] waits behind its own queued work (ask from another
//!   client to watch a queue). The notices about workers (done, work in progress,
//!   returned, restarted, exited) overtake it, and so does `ActorExitRequest`.
//! * Idle workers beyond `idle_workers` are stopped (`ActorExitRequest`) once they have been
//!   idle for `idle_timeout`.
//! * At run time, [`TroupeStatus`] asks for a [`TroupeReport`], and
//!   [`UpdateTroupeSettings`] changes the pool's bounds (answered with a report of the values
//!   in effect). `greenroom status` shows each troupe's workers, busy count and queue.
//! * On the simple base everything runs in one thread: the same rules hold (workers are
//!   created, handed messages and stopped the same way), without parallelism.
//!
//! ## Declaring a troupe
//! Per actor type, with [`Actor::troupe`]: every typed create of that type then makes a
//! troupe. Or per create, with [`crate::ActorSystem::create_troupe`] /
//! [`Context::create_troupe`]. Settings given at create time, or changed later with
//! [`UpdateTroupeSettings`], last as long as the manager's process; a manager that is
//! restarted starts again from the type's declared settings.
//!
//! ```
//! use greenroom::{Actor, ActorResult, Address, AnyMessage, Context, Troupe};
//! use std::time::Duration;
//!
//! #[derive(Default)]
//! struct Hasher;
//! impl Actor for Hasher {
//!     fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
//!         if let Some(data) = msg.downcast::<Vec<u8>>() {
//!             let sum: u64 = data.iter().map(|b| u64::from(*b)).sum();
//!             ctx.send(sender, sum)?; // straight back to whoever sent the data
//!         }
//!         Ok(())
//!     }
//!     // Every `create_actor::<Hasher>()` makes a troupe of up to 4 hashers.
//!     fn troupe() -> Option<Troupe> {
//!         Some(Troupe { max_workers: 4, ..Troupe::default() })
//!     }
//! }
//! ```

use std::{collections::BTreeMap, marker::PhantomData, time::Duration};

use greenroom_protocol::{Address, ChildSpec, TroupeLoad};
use serde::{Deserialize, Serialize};

use crate::{
    actor::{Actor, ActorResult, Context},
    message::{ActorExitRequest, AnyMessage, ChildActorExited, ChildRestarted, Message, PoisonMessage, WakeupMessage},
};

/// A troupe's bounds.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_workers` | 10 | workers never exceed this (at least 1) |
/// | `idle_workers` | 2 | idle workers kept; more are stopped after `idle_timeout` |
/// | `idle_timeout` | 2 s | how long an extra worker may stay idle |
/// | `prefetch` | 1 | messages a busy worker may be handed beyond the one it runs, once no worker is idle and no new one may start: it then never waits for a round trip through the manager between two messages. 0 hands work to idle workers only (Thespian's rule), best when messages take very uneven times, since a message handed ahead waits behind its worker's current one |
/// | `worker_spec` | [`ChildSpec::default`]: permanent, restarted after a crash | how each worker is supervised by the manager (its restart policy, liveness and resource limits); the manager's own spec's `supervision` sets the restart intensity |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Troupe {
    pub max_workers: u32,
    pub idle_workers: u32,
    pub idle_timeout: Duration,
    pub prefetch: u32,
    pub worker_spec: ChildSpec,
}

impl Default for Troupe {
    fn default() -> Self {
        Troupe {
            max_workers: 10,
            idle_workers: 2,
            idle_timeout: Duration::from_secs(2),
            prefetch: 1,
            worker_spec: ChildSpec::default(),
        }
    }
}

impl Troupe {
    /// At least one worker, never more kept idle than may exist, a bounded prefetch.
    fn sanitized(self) -> Self {
        let max_workers = self.max_workers.max(1);
        Troupe {
            max_workers,
            idle_workers: self.idle_workers.min(max_workers),
            idle_timeout: self.idle_timeout.min(greenroom_protocol::supervision::LONGEST),
            prefetch: self.prefetch.min(MAX_PREFETCH),
            worker_spec: self.worker_spec.clamped(),
        }
    }
}

/// Asks a troupe's manager for a [`TroupeReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TroupeStatus;

/// Changes a troupe's bounds at run time (`None` keeps a value); answered with a
/// [`TroupeReport`] of the values in effect. Lowering `max_workers` stops idle workers at
/// once and busy ones as they finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpdateTroupeSettings {
    pub max_workers: Option<u32>,
    pub idle_workers: Option<u32>,
    pub idle_timeout: Option<Duration>,
    pub prefetch: Option<u32>,
}

/// A troupe's settings and load, the answer to [`TroupeStatus`] and [`UpdateTroupeSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TroupeReport {
    pub max_workers: u32,
    pub idle_workers: u32,
    pub idle_timeout: Duration,
    pub prefetch: u32,
    /// Workers running or starting (not counting those being stopped).
    pub workers: u32,
    /// Workers with a message in hand (or work in progress).
    pub busy: u32,
    /// Messages waiting in the manager's mailbox for a free worker.
    pub queued: u64,
}

/// A message handed to a worker, with its original sender and correlation (a request's
/// answer goes from the worker straight to its requester). Unwrapped by the worker's base.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TroupeWork {
    pub sender: Address,
    pub correlation: greenroom_protocol::Correlation,
    pub message: AnyMessage,
}

/// Worker → manager: done with one message handed to it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TroupeDone;

/// Worker → manager: it set (`true`) or cleared its work-in-progress mark.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TroupeWorkInProgress(pub bool);

/// Creator → new manager: the settings given at create time (no answer).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigureTroupe(pub Troupe);

/// The manager's own wakeup: stop `worker` if it is still idle since `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReapIdle {
    worker: Address,
    generation: u64,
}

/// The registered type name of `W`'s troupe manager.
pub fn manager_type_name<W: Actor>() -> &'static str {
    std::any::type_name::<TroupeManager<W>>()
}

/// The most a troupe may prefetch per worker.
pub const MAX_PREFETCH: u32 = 64;

/// What the manager knows of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Worker {
    /// Messages handed to it and not yet reported done (or returned).
    in_hand: u32,
    /// It marked work in progress (cleared when its process is restarted).
    in_progress: bool,
    /// Counts its idle transitions, so that an idle timer set before it got more work does
    /// not stop it.
    generation: u64,
    /// Asked to exit; still counts against `max_workers` until its process is gone.
    stopping: bool,
}

impl Worker {
    fn is_idle(&self) -> bool {
        !self.stopping && !self.in_progress && self.in_hand == 0
    }

    fn is_busy(&self) -> bool {
        !self.stopping && (self.in_progress || self.in_hand > 0)
    }

    fn takes_more(&self, prefetch: u32) -> bool {
        !self.stopping && !self.in_progress && self.in_hand <= prefetch
    }
}

/// The manager of a troupe of `W` workers. Registered for every actor type (see
/// [`crate::Registry::register`]); created by a typed create of a type whose
/// [`Actor::troupe`] is `Some`, or by `create_troupe`.
pub struct TroupeManager<W> {
    settings: Troupe,
    workers: BTreeMap<Address, Worker>,
    idle_transitions: u64,
    _worker: PhantomData<fn() -> W>,
}

impl<W: Actor> TroupeManager<W> {
    /// A manager with these settings and no workers yet.
    pub fn new(settings: Troupe) -> Self {
        TroupeManager {
            settings: settings.sanitized(),
            workers: BTreeMap::new(),
            idle_transitions: 0,
            _worker: PhantomData,
        }
    }

    fn count(&self, wanted: fn(&Worker) -> bool) -> u32 {
        self.workers.values().filter(|w| wanted(w)).count() as u32
    }

    fn idle_count(&self) -> u32 {
        self.count(Worker::is_idle)
    }

    fn load(&self) -> TroupeLoad {
        TroupeLoad {
            workers: self.live_count(),
            busy: self.count(Worker::is_busy),
            max_workers: self.settings.max_workers,
        }
    }

    /// Workers not being stopped.
    fn live_count(&self) -> u32 {
        self.count(|w| !w.stopping)
    }

    /// Whether another worker may start: counting those being stopped, whose processes still
    /// exist, so that the processes never exceed `max_workers`.
    fn may_start_worker(&self) -> bool {
        (self.workers.len() as u32) < self.settings.max_workers
    }

    /// Where the next message goes, short of starting a worker: the first idle worker in
    /// address order (so that the latest-made stay idle and are the ones stopped); with none
    /// idle and no worker to start, the least loaded one that may take one more
    /// (`prefetch`).
    fn pick(&self, may_queue_behind: bool) -> Option<Address> {
        let idle = self.workers.iter().find(|(_, w)| w.is_idle());
        let behind = || {
            self.workers
                .iter()
                .filter(|(_, w)| w.takes_more(self.settings.prefetch))
                .min_by_key(|(_, w)| w.in_hand)
        };
        idle.or_else(|| if may_queue_behind { behind() } else { None })
            .map(|(a, _)| *a)
    }

    fn has_room(&self) -> bool {
        self.may_start_worker() || self.pick(true).is_some()
    }

    fn report(&self, ctx: &Context<'_>) -> TroupeReport {
        let load = self.load();
        TroupeReport {
            max_workers: self.settings.max_workers,
            idle_workers: self.settings.idle_workers,
            idle_timeout: self.settings.idle_timeout,
            prefetch: self.settings.prefetch,
            workers: load.workers,
            busy: load.busy,
            queued: ctx.held_back() as u64,
        }
    }

    /// Hands `msg` to an idle worker, to a new one, or behind a busy one's current message.
    fn hand_off(&mut self, ctx: &mut Context<'_>, sender: Address, msg: &AnyMessage) -> ActorResult {
        let worker = match self.pick(!self.may_start_worker()) {
            Some(worker) => worker,
            None if self.may_start_worker() => {
                let worker = ctx.create_worker::<W>(self.settings.worker_spec)?;
                self.workers.insert(
                    worker,
                    Worker {
                        in_hand: 0,
                        in_progress: false,
                        generation: 0,
                        stopping: false,
                    },
                );
                worker
            }
            // The base holds work back while there is no room (`holds_back`), so this is a
            // broken invariant, not a full troupe: the sender gets the message back.
            None => return Err("troupe manager: a message was released with no worker free".into()),
        };
        ctx.hand_off(
            worker,
            &TroupeWork {
                sender,
                correlation: ctx.correlation(),
                message: msg.clone(),
            },
        )?;
        ctx.pass_on_answer();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.in_hand += 1;
        }
        Ok(())
    }

    /// `worker` finished (or gave back) one message.
    fn finished_one(&mut self, ctx: &mut Context<'_>, worker: Address) -> ActorResult {
        // Saturating: a worker killed between reporting a message done and recording it so
        // returns that message as well. (Unknown: a worker of an earlier incarnation.)
        if let Some(w) = self.workers.get_mut(&worker) {
            w.in_hand = w.in_hand.saturating_sub(1);
        }
        self.if_idle(ctx, worker)
    }

    /// If `worker` has become idle: stop it if the troupe is over its bounds, or schedule a
    /// check that stops it if it stays idle too long.
    fn if_idle(&mut self, ctx: &mut Context<'_>, worker: Address) -> ActorResult {
        if !self.workers.get(&worker).is_some_and(Worker::is_idle) {
            return Ok(());
        }
        if self.live_count() > self.settings.max_workers {
            return self.stop(ctx, worker);
        }
        self.idle_transitions += 1;
        let generation = self.idle_transitions;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.generation = generation;
        }
        if self.idle_count() > self.settings.idle_workers {
            ctx.wakeup_after(self.settings.idle_timeout, ReapIdle { worker, generation })?;
        }
        Ok(())
    }

    /// A worker's process was restarted: it has no work in progress any more (the message it
    /// died on comes back as poison and is counted then; the rest of its hand is sent again
    /// to the new process). One that was being stopped is asked again.
    fn restarted(&mut self, ctx: &mut Context<'_>, worker: Address) -> ActorResult {
        let Some(w) = self.workers.get_mut(&worker) else {
            return Ok(());
        };
        w.in_progress = false;
        if w.stopping {
            ctx.send(worker, ActorExitRequest)?;
            return Ok(());
        }
        self.if_idle(ctx, worker)
    }

    fn stop(&mut self, ctx: &mut Context<'_>, worker: Address) -> ActorResult {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.stopping = true;
        }
        ctx.send(worker, ActorExitRequest)?;
        Ok(())
    }

    fn reap(&mut self, ctx: &mut Context<'_>, reap: ReapIdle) -> ActorResult {
        let still_idle = self
            .workers
            .get(&reap.worker)
            .is_some_and(|w| w.is_idle() && w.generation == reap.generation);
        if still_idle && self.idle_count() > self.settings.idle_workers {
            self.stop(ctx, reap.worker)?;
        }
        Ok(())
    }

    /// After a settings change: stop idle workers beyond `max_workers` now, and let the idle
    /// ones beyond `idle_workers` time out.
    fn rebalance(&mut self, ctx: &mut Context<'_>) -> ActorResult {
        let idle: Vec<(Address, u64)> = self
            .workers
            .iter()
            .rev()
            .filter(|(_, w)| w.is_idle())
            .map(|(a, w)| (*a, w.generation))
            .collect();
        for (worker, generation) in idle {
            if self.live_count() > self.settings.max_workers {
                self.stop(ctx, worker)?;
            } else if self.idle_count() > self.settings.idle_workers {
                ctx.wakeup_after(self.settings.idle_timeout, ReapIdle { worker, generation })?;
            }
        }
        Ok(())
    }

    /// A message the manager sent came back. A hand-off: its worker died on it or is gone,
    /// so it goes back to its original sender, as a message an actor died on does.
    fn returned(&mut self, ctx: &mut Context<'_>, poison: PoisonMessage, from: Address) -> ActorResult {
        match poison.message.downcast::<TroupeWork>() {
            Some(work) => {
                // The answer to the request (or ask) it was, if it was one.
                let poison = PoisonMessage {
                    message: work.message,
                    details: poison.details,
                };
                ctx.send_correlated(work.sender, poison, work.correlation.answer())?;
                self.finished_one(ctx, from)?;
            }
            None => tracing::warn!(%from, message_type = poison.message.tag(), details = %poison.details,
                "troupe manager: a report it sent was returned as poison; dropped"),
        }
        Ok(())
    }
}

/// The messages a manager handles itself; everything else is work for the workers.
fn is_for_manager(msg: &AnyMessage) -> bool {
    let tag = msg.tag();
    tag == TroupeDone::type_tag()
        || tag == TroupeWorkInProgress::type_tag()
        || tag == PoisonMessage::type_tag()
        || tag == ChildRestarted::type_tag()
        || tag == ChildActorExited::type_tag()
        || tag == WakeupMessage::type_tag()
        || tag == TroupeStatus::type_tag()
        || tag == UpdateTroupeSettings::type_tag()
        || tag == ConfigureTroupe::type_tag()
        || tag == ActorExitRequest::type_tag()
}

impl<W: Actor> Actor for TroupeManager<W> {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if !is_for_manager(msg) {
            return self.hand_off(ctx, sender, msg);
        }
        if msg.is::<TroupeDone>() {
            self.finished_one(ctx, sender)?;
        } else if let Some(poison) = msg.downcast::<PoisonMessage>() {
            self.returned(ctx, poison, sender)?;
        } else if let Some(TroupeWorkInProgress(on)) = msg.downcast::<TroupeWorkInProgress>() {
            if let Some(w) = self.workers.get_mut(&sender) {
                w.in_progress = on;
            }
            self.if_idle(ctx, sender)?;
        } else if let Some(restarted) = msg.downcast::<ChildRestarted>() {
            self.restarted(ctx, restarted.child)?;
        } else if let Some(exited) = msg.downcast::<ChildActorExited>() {
            self.workers.remove(&exited.child);
        } else if let Some(wakeup) = msg.downcast::<WakeupMessage>() {
            if let Some(reap) = wakeup.payload.downcast::<ReapIdle>() {
                self.reap(ctx, reap)?;
            }
        } else if msg.is::<TroupeStatus>() {
            ctx.send(sender, self.report(ctx))?;
        } else if let Some(update) = msg.downcast::<UpdateTroupeSettings>() {
            self.settings = Troupe {
                max_workers: update.max_workers.unwrap_or(self.settings.max_workers),
                idle_workers: update.idle_workers.unwrap_or(self.settings.idle_workers),
                idle_timeout: update.idle_timeout.unwrap_or(self.settings.idle_timeout),
                prefetch: update.prefetch.unwrap_or(self.settings.prefetch),
                ..self.settings
            }
            .sanitized();
            self.rebalance(ctx)?;
            ctx.send(sender, self.report(ctx))?;
        } else if let Some(ConfigureTroupe(settings)) = msg.downcast::<ConfigureTroupe>() {
            self.settings = settings.sanitized();
            self.rebalance(ctx)?;
        }
        // `ActorExitRequest`: the base asks every worker to exit.
        Ok(())
    }

    fn holds_back(&self, msg: &AnyMessage) -> bool {
        !self.has_room() && !is_for_manager(msg)
    }

    /// Notices about workers (and the manager's own timers and stop) are taken at once;
    /// only the control messages a sender asks keep their place behind its queued work.
    fn overtakes(&self, msg: &AnyMessage) -> bool {
        is_for_manager(msg)
            && !(msg.is::<TroupeStatus>() || msg.is::<UpdateTroupeSettings>() || msg.is::<ConfigureTroupe>())
    }

    fn troupe_load(&self) -> Option<TroupeLoad> {
        Some(self.load())
    }
}

/// The rule both bases apply to a message arriving for an actor, given the senders of the
/// messages it holds: it waits in the mailbox if it [`waits`], or if an earlier message of
/// its sender is held and it may not overtake it (an exit request, or what the actor lets
/// through, may).
#[doc(hidden)]
pub fn must_wait(
    actor: &dyn Actor,
    worker: &WorkerRole,
    msg: &AnyMessage,
    sender: Address,
    held_senders: impl Iterator<Item = Address>,
) -> bool {
    if waits(actor, worker, msg) {
        return true;
    }
    // Nothing held (every ordinary actor, always): no more to check.
    let mut held = held_senders.peekable();
    held.peek().is_some() && !(msg.is::<ActorExitRequest>() || actor.overtakes(msg)) && held.any(|s| s == sender)
}

/// Whether `msg` waits in the mailbox for now: the actor holds it back, or it is a
/// hand-off to a worker with work in progress.
#[doc(hidden)]
pub fn waits(actor: &dyn Actor, worker: &WorkerRole, msg: &AnyMessage) -> bool {
    actor.holds_back(msg) || worker.defers(msg)
}

/// A hand-off a stopping worker will not run, as the poison that returns it to its
/// manager, which passes it on to the original sender and counts it out of the worker's
/// hand. `None` for any other message.
#[doc(hidden)]
pub fn unrun(msg: &AnyMessage) -> Option<PoisonMessage> {
    msg.is::<TroupeWork>().then(|| PoisonMessage {
        message: msg.clone(),
        details: "the troupe worker stopped before it ran this message".to_owned(),
    })
}

/// Whether `msg` is a hand-off coming back to its manager: an exiting manager still takes
/// these, to return them to their senders.
#[doc(hidden)]
pub fn is_returned_hand_off(msg: &AnyMessage) -> bool {
    // `try_downcast`: a message that fails to decode here is not this actor's to report.
    matches!(msg.try_downcast::<PoisonMessage>(), Ok(Some(poison)) if poison.message.is::<TroupeWork>())
}

/// A worker's side of a troupe, kept by its base: which manager to tell, and its
/// work-in-progress mark.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct WorkerRole {
    manager: Option<Address>,
    in_progress: bool,
}

impl WorkerRole {
    /// If `msg` is a hand-off from a troupe manager (`from`): the original sender and
    /// message, to run `receive` on.
    pub fn take_job(&mut self, from: Address, msg: &AnyMessage) -> Option<TroupeWork> {
        let work = msg.downcast::<TroupeWork>()?;
        self.manager = Some(from);
        Some(work)
    }

    /// The job's `receive` has returned: the manager to tell (`TroupeDone`).
    pub fn job_finished(&self) -> Option<Address> {
        self.manager
    }

    /// Whether `msg` must wait in the mailbox: a further hand-off while work is in progress
    /// (the manager sent it before it knew).
    pub fn defers(&self, msg: &AnyMessage) -> bool {
        self.in_progress && msg.is::<TroupeWork>()
    }

    /// Sets or clears the work-in-progress mark: the manager to tell
    /// (`TroupeWorkInProgress`), if the mark changed and this actor works in a troupe.
    pub fn set_in_progress(&mut self, on: bool) -> Option<Address> {
        let was = std::mem::replace(&mut self.in_progress, on);
        self.manager.filter(|_| was != on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_sanitized() {
        let s = Troupe {
            max_workers: 0,
            idle_workers: 5,
            idle_timeout: Duration::MAX,
            ..Troupe::default()
        }
        .sanitized();
        assert_eq!((s.max_workers, s.idle_workers), (1, 1));
        assert_eq!(s.idle_timeout, greenroom_protocol::supervision::LONGEST);
    }

    #[test]
    fn a_worker_reports_each_job_and_each_change_of_its_mark() {
        let manager = Address::local(7);
        let job = AnyMessage::new(&TroupeWork {
            sender: Address::local(3),
            correlation: greenroom_protocol::Correlation::Request(8),
            message: AnyMessage::new(&1u32).unwrap(),
        })
        .unwrap();
        let mut role = WorkerRole::default();
        assert!(role.take_job(manager, &AnyMessage::new(&1u32).unwrap()).is_none());
        let work = role.take_job(manager, &job).unwrap();
        assert_eq!(work.sender, Address::local(3));
        assert_eq!(role.job_finished(), Some(manager));

        role.take_job(manager, &job).unwrap();
        assert_eq!(
            role.set_in_progress(true),
            Some(manager),
            "the manager hears of the mark"
        );
        assert_eq!(role.set_in_progress(true), None, "once");
        assert_eq!(role.job_finished(), Some(manager), "every job is reported done");
        assert!(role.defers(&job), "a further hand-off waits");
        assert!(!role.defers(&AnyMessage::new(&1u32).unwrap()), "other messages do not");
        assert_eq!(
            role.set_in_progress(false),
            Some(manager),
            "cleared later: the manager hears"
        );
        assert_eq!(role.set_in_progress(false), None, "no second notice");
        assert!(!role.defers(&job));
    }
}
