//! The supervision tree and every decision about it, as one explicit state machine.
//!
//! Events go in ([`Tree::add`], [`Tree::ready`], [`Tree::exit_requested`], [`Tree::died`],
//! [`Tree::tick`], [`Tree::shutdown`]); [`Command`]s come out, for the admin's event loop to
//! carry out with real processes and sockets. Nothing here forks, signals or reads a clock:
//! the caller passes `now`, so the whole policy is tested without a single process (see the
//! tests at the bottom), and the real-process tests check the admin carries it out.
//!
//! ## An actor's phases
//! ```text
//!            add                ready
//!  (new) ──────────▶ Starting ─────────▶ Running ──exit_requested──▶ Exiting ──died──▶ Gone
//!                       ▲                   │ died (crash, kill, exit)
//!                       │ tick              ▼
//!                       └──── Down{at} ◀── policy: restart? ──no──▶ Gone(cause)
//!                               ▲            │ group strategy
//!                               └── Held ◀───┘ (waits while siblings are stopped)
//!  Running ──(sibling failed, one_for_all / rest_for_one)──▶ Stopping(Restart) ──died──▶ Held
//! ```
//!
//! ## Rules
//! * Restart type: `Permanent` restarts after any ending but a requested stop; `Transient`
//!   only after an abnormal one ([`ExitCause::is_abnormal`]); `Temporary` never.
//! * An actor whose first incarnation never became ready is not restarted: its creation
//!   failed, and the creator is told.
//! * Intensity: each supervisor counts the restarts of its children; more than
//!   `max_restarts` within `within` and it gives up: the failing child is gone, and the
//!   supervisor itself is stopped and fails, so *its* supervisor's policy applies. The root
//!   supervisor (of top-level actors) gives up on the failing actor alone — other top-level
//!   actors are independent and keep running.
//! * A restart waits for the old process to be reaped (`died`) and for the backoff delay.
//! * Group restarts stop the siblings one at a time in reverse start order, each killed
//!   after `stop_timeout`, then start the whole group again in start order.
//! * An actor's children never outlive its process: when it dies or restarts, they are
//!   stopped for good (`ParentGone`); its new incarnation starts without children.
//! * A parent hears of a child's end (`Exited`) or restart (`Restarted`) only while it is
//!   the same incarnation that created the child. Top-level actors' notices go out too,
//!   addressed to no parent here: the admin relays them to a parent of record on another
//!   member, if the actor has one (that member's admin applies the incarnation rule).
//! * The admin stops an actor whose parent on another member is gone with
//!   [`Tree::stop_for_good`] (`ParentGone`), as the tree does for its own orphans.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
    time::{Duration, Instant},
};

use greenroom_protocol::{ActorState, ChildSpec, ExitCause, RestartType, Strategy, SupervisorSpec};

/// An actor's id (its address number).
pub type ActorId = u64;

/// How long a new host has to report ready before it is killed.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the admin must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start a host process for incarnation `incarnation` of the actor.
    Spawn { id: ActorId, incarnation: u32 },
    /// Deliver `ActorExitRequest` to the actor (a stop it cannot refuse; killed at its
    /// deadline if it does not finish).
    RequestStop { id: ActorId },
    /// SIGKILL the actor's current process.
    Kill { id: ActorId },
    /// Tell an exiting actor that its children are gone and it may exit.
    ExitNow { id: ActorId },
    /// Deliver a notice to a parent actor: `Some` a parent in this tree, `None` the parent
    /// of record outside it (an actor of another member that had this top-level actor
    /// created here), if there is one.
    Notify { parent: Option<ActorId>, notice: Notice },
    /// The actor is gone for good: release its address.
    Release { id: ActorId, cause: ExitCause },
}

/// A notice for a parent about one of its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Restarted {
        child: ActorId,
        cause: ExitCause,
        restart_count: u32,
    },
    Exited {
        child: ActorId,
        cause: ExitCause,
    },
}

/// Where an actor is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    Exiting,
    Stopping(AfterStop),
    Down { restart_at: Instant },
    Held,
    Gone(ExitCause),
}

/// What happens once an actor its supervisor stopped has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStop {
    /// Restart it with its group.
    Restart,
    /// It is gone for good, for this reason.
    Gone(ExitCause),
    /// It failed (its supervisor gave up): its own supervisor's policy applies.
    Fail(ExitCause),
}

impl Phase {
    /// Has a process that has not been reaped yet.
    fn has_process(&self) -> bool {
        matches!(
            self,
            Phase::Starting | Phase::Running | Phase::Exiting | Phase::Stopping(_)
        )
    }
}

/// A supervisor's own bookkeeping (an actor's, or the root's).
#[derive(Debug, Default)]
struct Sup {
    spec: SupervisorSpec,
    /// Children not yet gone, in start order.
    children: Vec<ActorId>,
    /// When its children were restarted, for the intensity limit.
    history: VecDeque<Instant>,
    /// A group restart in progress.
    plan: Option<GroupRestart>,
}

#[derive(Debug)]
struct GroupRestart {
    /// Still to stop; popped from the back, so in reverse start order.
    to_stop: Vec<ActorId>,
    /// The one being stopped now.
    stopping: Option<ActorId>,
    /// Everyone to start again, in start order.
    restart: Vec<ActorId>,
    restart_at: Instant,
}

#[derive(Debug)]
struct Node {
    parent: Option<ActorId>,
    parent_incarnation: u32,
    restart: RestartType,
    sup: Sup,
    phase: Phase,
    incarnation: u32,
    restarts: u32,
    consecutive: u32,
    running_since: Option<Instant>,
    last_cause: ExitCause,
    exit_requested: bool,
    deadline: Option<Instant>,
}

/// The supervision tree of one admin.
#[derive(Debug)]
pub struct Tree {
    nodes: BTreeMap<ActorId, Node>,
    root: Sup,
    shutting_down: bool,
    /// Every deadline and restart time set, earliest first, so that `tick` and
    /// `next_deadline` cost O(log n) however many actors there are. Entries are not removed
    /// when a deadline is cleared or moved: `tick` checks each against its node and skips
    /// stale ones.
    timers: BinaryHeap<Reverse<(Instant, ActorId)>>,
}

impl Tree {
    /// A tree whose root supervises top-level actors with `root_spec`.
    pub fn new(root_spec: SupervisorSpec) -> Self {
        Tree {
            nodes: BTreeMap::new(),
            root: Sup {
                spec: root_spec,
                ..Sup::default()
            },
            shutting_down: false,
            timers: BinaryHeap::new(),
        }
    }

    /// The actor's state as clients see it, and its incarnation.
    pub fn state(&self, id: ActorId) -> Option<(ActorState, u32)> {
        let n = self.nodes.get(&id)?;
        let state = match &n.phase {
            Phase::Starting => ActorState::Starting,
            Phase::Running => ActorState::Running,
            Phase::Exiting | Phase::Stopping(_) => ActorState::Exiting,
            Phase::Down { .. } | Phase::Held => ActorState::Restarting,
            Phase::Gone(cause) => ActorState::Gone(cause.clone()),
        };
        Some((state, n.incarnation))
    }

    /// Whether the actor has handled an `ActorExitRequest` in its current incarnation.
    pub fn exit_was_requested(&self, id: ActorId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.exit_requested)
    }

    /// Whether any actor is live.
    pub fn any_live(&self) -> bool {
        self.nodes.values().any(|n| !matches!(n.phase, Phase::Gone(_)))
    }

    /// The actor's parent actor (`None` for top-level actors).
    pub fn parent(&self, id: ActorId) -> Option<ActorId> {
        self.nodes.get(&id).and_then(|n| n.parent)
    }

    /// The earliest time [`Tree::tick`] may have something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn sup_mut(&mut self, owner: Option<ActorId>) -> Option<&mut Sup> {
        match owner {
            None => Some(&mut self.root),
            Some(id) => self.nodes.get_mut(&id).map(|n| &mut n.sup),
        }
    }

    fn sup_spec(&self, owner: Option<ActorId>) -> SupervisorSpec {
        match owner {
            None => self.root.spec,
            Some(id) => self.nodes.get(&id).map(|n| n.sup.spec).unwrap_or_default(),
        }
    }

    // ---- events ----

    /// A new actor, child of `parent` (`None`: top-level). Starts its first incarnation.
    pub fn add(&mut self, id: ActorId, parent: Option<ActorId>, spec: ChildSpec, now: Instant) -> Vec<Command> {
        let parent_incarnation = parent.and_then(|p| self.nodes.get(&p)).map_or(0, |p| p.incarnation);
        self.nodes.insert(
            id,
            Node {
                parent,
                parent_incarnation,
                restart: spec.restart,
                sup: Sup {
                    spec: spec.supervision,
                    ..Sup::default()
                },
                phase: Phase::Starting,
                incarnation: 1,
                restarts: 0,
                consecutive: 0,
                running_since: None,
                last_cause: ExitCause::Normal,
                exit_requested: false,
                deadline: Some(now + START_TIMEOUT),
            },
        );
        self.timers.push(Reverse((now + START_TIMEOUT, id)));
        if let Some(sup) = self.sup_mut(parent) {
            sup.children.push(id);
        }
        vec![Command::Spawn { id, incarnation: 1 }]
    }

    /// The actor's host reported ready.
    pub fn ready(&mut self, id: ActorId, now: Instant) {
        if let Some(n) = self.nodes.get_mut(&id) {
            if n.phase == Phase::Starting {
                n.phase = Phase::Running;
                n.deadline = None;
            }
            n.running_since = Some(now);
        }
    }

    /// The actor handled `ActorExitRequest` and asked its children to exit.
    pub fn exit_requested(&mut self, id: ActorId, now: Instant) -> Vec<Command> {
        let stop_timeout = self.sup_spec(self.parent(id)).stop_timeout;
        let Some(n) = self.nodes.get_mut(&id) else {
            return Vec::new();
        };
        n.exit_requested = true;
        if matches!(n.phase, Phase::Starting | Phase::Running) {
            n.phase = Phase::Exiting;
            n.deadline = Some(now + stop_timeout);
            self.timers.push(Reverse((now + stop_timeout, id)));
        }
        // Children waiting to restart will not be needed.
        let children = n.sup.children.clone();
        let waiting: Vec<ActorId> = children
            .into_iter()
            .filter(|c| {
                matches!(
                    self.nodes.get(c).map(|c| &c.phase),
                    Some(Phase::Down { .. } | Phase::Held)
                )
            })
            .collect();
        let mut cmds = Vec::new();
        for child in waiting {
            cmds.extend(self.gone(child, ExitCause::ParentGone, now));
        }
        cmds.extend(self.exit_if_done(id));
        cmds
    }

    /// The actor's process was reaped, for `cause`.
    pub fn died(&mut self, id: ActorId, cause: ExitCause, now: Instant) -> Vec<Command> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Vec::new();
        };
        let phase = n.phase.clone();
        n.deadline = None;
        match phase {
            Phase::Gone(_) | Phase::Down { .. } | Phase::Held => Vec::new(),
            Phase::Exiting => {
                n.phase = Phase::Held; // reaped: no process any more
                self.gone(id, cause, now)
            }
            Phase::Stopping(AfterStop::Gone(why)) => {
                n.phase = Phase::Held;
                self.gone(id, why, now)
            }
            Phase::Stopping(AfterStop::Fail(why)) => self.failed(id, why, now),
            Phase::Stopping(AfterStop::Restart) => {
                n.phase = Phase::Held;
                n.last_cause = cause;
                let parent = n.parent;
                let mut cmds = self.orphan_children(id, now);
                cmds.extend(self.advance_plan(parent, now));
                cmds
            }
            Phase::Starting | Phase::Running => self.failed(id, cause, now),
        }
    }

    /// Time passed: start due restarts, enforce deadlines.
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        let mut cmds = Vec::new();
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(n) = self.nodes.get_mut(&id) else { continue };
            if matches!(n.phase, Phase::Down { restart_at } if restart_at <= now) {
                cmds.extend(self.restart_now(id, now));
                continue;
            }
            if n.deadline.is_none_or(|d| d > now) {
                continue; // a stale entry: the deadline was cleared or moved
            }
            n.deadline = None;
            match n.phase {
                // Its children did not finish in time: kill them; their ends let it finish. If
                // none is left, it is the exiting actor itself that did not finish: kill it.
                Phase::Exiting => {
                    let children: Vec<ActorId> = n.sup.children.clone();
                    let mut killed_any = false;
                    for child in children {
                        if self.nodes.get(&child).is_some_and(|c| c.phase.has_process()) {
                            cmds.push(Command::Kill { id: child });
                            killed_any = true;
                        }
                    }
                    if !killed_any {
                        cmds.push(Command::Kill { id });
                    }
                }
                Phase::Starting | Phase::Stopping(_) => cmds.push(Command::Kill { id }),
                _ => {}
            }
        }
        cmds
    }

    /// Stop everything: no more restarts; top-level actors are asked to exit.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Command> {
        self.shutting_down = true;
        let mut cmds = Vec::new();
        let top: Vec<ActorId> = self.root.children.clone();
        for id in top {
            cmds.extend(self.stop(id, AfterStop::Gone(ExitCause::Shutdown), now));
        }
        cmds
    }

    // ---- decisions ----

    /// Asks a live actor to stop, with `after` deciding what its end means.
    fn stop(&mut self, id: ActorId, after: AfterStop, now: Instant) -> Vec<Command> {
        let stop_timeout = self.sup_spec(self.parent(id)).stop_timeout;
        let Some(n) = self.nodes.get_mut(&id) else {
            return Vec::new();
        };
        match n.phase {
            Phase::Starting | Phase::Running | Phase::Exiting | Phase::Stopping(_) => {
                let already_asked = n.exit_requested;
                n.phase = Phase::Stopping(after);
                n.deadline = Some(now + stop_timeout);
                self.timers.push(Reverse((now + stop_timeout, id)));
                if already_asked {
                    Vec::new()
                } else {
                    vec![Command::RequestStop { id }]
                }
            }
            Phase::Down { .. } | Phase::Held => match after {
                AfterStop::Restart => {
                    n.phase = Phase::Held;
                    Vec::new()
                }
                AfterStop::Gone(cause) | AfterStop::Fail(cause) => self.gone(id, cause, now),
            },
            Phase::Gone(_) => Vec::new(),
        }
    }

    /// Stops the actor for good, for `cause`, whatever its restart type: asked to exit and
    /// killed at its supervisor's `stop_timeout` if it is running, gone at once if it is
    /// waiting to restart. (For an actor whose parent of record, on another member, is
    /// gone: `ExitCause::ParentGone`, as for the children of a parent in this tree.)
    pub fn stop_for_good(&mut self, id: ActorId, cause: ExitCause, now: Instant) -> Vec<Command> {
        self.stop(id, AfterStop::Gone(cause), now)
    }

    /// The actor's process ended unasked (or it gave up): apply its supervisor's policy.
    fn failed(&mut self, id: ActorId, cause: ExitCause, now: Instant) -> Vec<Command> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Vec::new();
        };
        let never_ran = n.incarnation == 1 && n.running_since.is_none();
        let restart = match n.restart {
            RestartType::Permanent => true,
            RestartType::Transient => cause.is_abnormal(),
            RestartType::Temporary => false,
        };
        n.phase = Phase::Held;
        n.last_cause = cause.clone();
        let parent = n.parent;
        let mut cmds = self.orphan_children(id, now);
        if self.shutting_down || never_ran || !restart {
            cmds.extend(self.gone(id, cause, now));
            return cmds;
        }

        let spec = self.sup_spec(parent);
        let Some(sup) = self.sup_mut(parent) else {
            cmds.extend(self.gone(id, cause, now));
            return cmds;
        };
        sup.history.push_back(now);
        while sup
            .history
            .front()
            .is_some_and(|t| now.duration_since(*t) > spec.within)
        {
            sup.history.pop_front();
        }
        if sup.history.len() > spec.max_restarts as usize {
            let limit = ExitCause::RestartLimit {
                restarts: sup.history.len() as u32 - 1,
                within_ms: spec.within.as_millis() as u64,
                last: Box::new(cause),
            };
            cmds.extend(self.gone(id, limit.clone(), now));
            if let Some(p) = parent {
                cmds.extend(self.stop(p, AfterStop::Fail(limit), now));
            }
            return cmds;
        }

        let Some(n) = self.nodes.get_mut(&id) else { return cmds };
        if n.running_since
            .is_some_and(|t| now.duration_since(t) >= spec.backoff.reset_after)
        {
            n.consecutive = 0;
        }
        n.consecutive += 1;
        let restart_at = now + spec.backoff.delay(n.consecutive);
        match spec.strategy {
            Strategy::OneForOne => {
                n.phase = Phase::Down { restart_at };
                self.timers.push(Reverse((restart_at, id)));
            }
            Strategy::OneForAll | Strategy::RestForOne => {
                let Some(sup) = self.sup_mut(parent) else { return cmds };
                let from = match spec.strategy {
                    Strategy::RestForOne => sup.children.iter().position(|c| *c == id).unwrap_or(0),
                    _ => 0,
                };
                let group: Vec<ActorId> = sup.children[from..].to_vec();
                match sup.plan.as_mut() {
                    Some(plan) => {
                        for member in group {
                            if !plan.restart.contains(&member) {
                                plan.restart.push(member);
                                if member != id {
                                    plan.to_stop.insert(0, member);
                                }
                            }
                        }
                    }
                    None => {
                        let to_stop = group.iter().copied().filter(|c| *c != id).collect();
                        sup.plan = Some(GroupRestart {
                            to_stop,
                            stopping: None,
                            restart: group,
                            restart_at,
                        });
                    }
                }
                cmds.extend(self.advance_plan(parent, now));
            }
        }
        cmds
    }

    /// Moves a group restart on: stop the next sibling, or start them all once stopped.
    fn advance_plan(&mut self, owner: Option<ActorId>, now: Instant) -> Vec<Command> {
        let Some(sup) = self.sup_mut(owner) else {
            return Vec::new();
        };
        let Some(mut plan) = sup.plan.take() else {
            return Vec::new();
        };
        if let Some(s) = plan.stopping {
            if self.nodes.get(&s).is_some_and(|n| n.phase.has_process()) {
                if let Some(sup) = self.sup_mut(owner) {
                    sup.plan = Some(plan);
                }
                return Vec::new();
            }
            plan.stopping = None;
        }
        while let Some(next) = plan.to_stop.pop() {
            let cmds = self.stop(next, AfterStop::Restart, now);
            if self.nodes.get(&next).is_some_and(|n| n.phase.has_process()) {
                plan.stopping = Some(next);
                if let Some(sup) = self.sup_mut(owner) {
                    sup.plan = Some(plan);
                }
                return cmds;
            }
        }
        for id in &plan.restart {
            if let Some(n) = self.nodes.get_mut(id) {
                if n.phase == Phase::Held {
                    n.phase = Phase::Down {
                        restart_at: plan.restart_at,
                    };
                    self.timers.push(Reverse((plan.restart_at, *id)));
                }
            }
        }
        Vec::new()
    }

    fn restart_now(&mut self, id: ActorId, now: Instant) -> Vec<Command> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Vec::new();
        };
        n.incarnation += 1;
        n.restarts += 1;
        n.phase = Phase::Starting;
        n.running_since = None;
        n.exit_requested = false;
        n.deadline = Some(now + START_TIMEOUT);
        self.timers.push(Reverse((now + START_TIMEOUT, id)));
        let (incarnation, restart_count, cause, parent, parent_inc) = (
            n.incarnation,
            n.restarts,
            n.last_cause.clone(),
            n.parent,
            n.parent_incarnation,
        );
        let mut cmds = vec![Command::Spawn { id, incarnation }];
        if parent.is_none_or(|p| self.listening(p, parent_inc)) {
            cmds.push(Command::Notify {
                parent,
                notice: Notice::Restarted {
                    child: id,
                    cause,
                    restart_count,
                },
            });
        }
        cmds
    }

    /// The actor is gone for good.
    fn gone(&mut self, id: ActorId, cause: ExitCause, now: Instant) -> Vec<Command> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Vec::new();
        };
        if matches!(n.phase, Phase::Gone(_)) {
            return Vec::new();
        }
        let had_process = n.phase.has_process();
        n.phase = Phase::Gone(cause.clone());
        n.deadline = None;
        let (parent, parent_inc) = (n.parent, n.parent_incarnation);
        let mut cmds = Vec::new();
        if had_process {
            // Gone while its process still runs (its parent is gone): stop it now.
            cmds.push(Command::Kill { id });
        }
        cmds.push(Command::Release {
            id,
            cause: cause.clone(),
        });
        cmds.extend(self.orphan_children(id, now));
        if let Some(sup) = self.sup_mut(parent) {
            sup.children.retain(|c| *c != id);
            if let Some(plan) = sup.plan.as_mut() {
                plan.restart.retain(|c| *c != id);
                plan.to_stop.retain(|c| *c != id);
            }
        }
        match parent {
            Some(p) if self.listening(p, parent_inc) => {
                cmds.push(Command::Notify {
                    parent,
                    notice: Notice::Exited { child: id, cause },
                });
                cmds.extend(self.exit_if_done(p));
            }
            Some(_) => {}
            None => cmds.push(Command::Notify {
                parent,
                notice: Notice::Exited { child: id, cause },
            }),
        }
        cmds.extend(self.advance_plan(parent, now));
        cmds
    }

    /// Stops every child of `id` for good: their parent's process is gone.
    fn orphan_children(&mut self, id: ActorId, now: Instant) -> Vec<Command> {
        let children: Vec<ActorId> = self.nodes.get(&id).map(|n| n.sup.children.clone()).unwrap_or_default();
        if let Some(n) = self.nodes.get_mut(&id) {
            n.sup.plan = None;
        }
        let mut cmds = Vec::new();
        for child in children {
            cmds.extend(self.stop(child, AfterStop::Gone(ExitCause::ParentGone), now));
        }
        cmds
    }

    /// Whether `parent` is alive in incarnation `incarnation` (so a notice reaches the
    /// process that created the child).
    fn listening(&self, parent: ActorId, incarnation: u32) -> bool {
        self.nodes
            .get(&parent)
            .is_some_and(|p| p.incarnation == incarnation && p.phase.has_process())
    }

    /// An exiting actor whose children are all gone may exit now.
    fn exit_if_done(&self, id: ActorId) -> Vec<Command> {
        match self.nodes.get(&id) {
            Some(n) if n.exit_requested && n.phase.has_process() && n.sup.children.is_empty() => {
                vec![Command::ExitNow { id }]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenroom_protocol::Backoff;

    fn kill9() -> ExitCause {
        ExitCause::Signal {
            signal: 9,
            core_dumped: false,
        }
    }

    fn spec(strategy: Strategy) -> ChildSpec {
        ChildSpec {
            restart: RestartType::Permanent,
            supervision: SupervisorSpec {
                strategy,
                ..SupervisorSpec::default()
            },
            ..ChildSpec::default()
        }
    }

    fn with_restart(restart: RestartType) -> ChildSpec {
        ChildSpec {
            restart,
            ..ChildSpec::default()
        }
    }

    /// A tree with `parent` (id 1, top-level) and `children` ids under it, all running.
    fn family(strategy: Strategy, children: &[ActorId], t: Instant) -> Tree {
        let mut tree = Tree::new(SupervisorSpec::default());
        tree.add(1, None, spec(strategy), t);
        tree.ready(1, t);
        for c in children {
            tree.add(*c, Some(1), ChildSpec::default(), t);
            tree.ready(*c, t);
        }
        tree
    }

    fn spawns(cmds: &[Command]) -> Vec<ActorId> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Spawn { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_top_level_actor_notices_go_to_the_parent_outside_the_tree_and_it_can_be_stopped_for_good() {
        let t = Instant::now();
        let mut tree = Tree::new(SupervisorSpec::default());
        tree.add(1, None, ChildSpec::default(), t);
        tree.ready(1, t);
        tree.died(1, kill9(), t);
        let cmds = tree.tick(t);
        assert_eq!(
            cmds,
            vec![
                Command::Spawn { id: 1, incarnation: 2 },
                Command::Notify {
                    parent: None,
                    notice: Notice::Restarted {
                        child: 1,
                        cause: kill9(),
                        restart_count: 1
                    }
                }
            ]
        );
        tree.ready(1, t);
        // Its parent on another member is gone: a permanent actor is not restarted.
        assert_eq!(
            tree.stop_for_good(1, ExitCause::ParentGone, t),
            vec![Command::RequestStop { id: 1 }]
        );
        let cmds = tree.died(1, ExitCause::Normal, t);
        assert_eq!(
            cmds,
            vec![
                Command::Release {
                    id: 1,
                    cause: ExitCause::ParentGone
                },
                Command::Notify {
                    parent: None,
                    notice: Notice::Exited {
                        child: 1,
                        cause: ExitCause::ParentGone
                    }
                }
            ]
        );
        assert_eq!(tree.state(1).unwrap().0, ActorState::Gone(ExitCause::ParentGone));
        // One waiting to restart goes at once.
        tree.add(2, None, ChildSpec::default(), t);
        tree.ready(2, t);
        tree.died(2, kill9(), t + Duration::from_secs(1));
        let cmds = tree.stop_for_good(2, ExitCause::ParentGone, t + Duration::from_secs(1));
        assert!(
            cmds.contains(&Command::Release {
                id: 2,
                cause: ExitCause::ParentGone
            }),
            "{cmds:?}"
        );
        assert!(spawns(&tree.tick(t + Duration::from_secs(60))).is_empty());
    }

    #[test]
    fn one_for_one_restarts_only_the_failed_child_at_once_then_notifies() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForOne, &[2, 3], t);
        assert!(
            tree.died(2, kill9(), t).is_empty(),
            "nothing to do before the restart is due"
        );
        assert_eq!(tree.state(2).unwrap().0, ActorState::Restarting);
        let cmds = tree.tick(t);
        assert_eq!(cmds[0], Command::Spawn { id: 2, incarnation: 2 });
        assert_eq!(
            cmds[1],
            Command::Notify {
                parent: Some(1),
                notice: Notice::Restarted {
                    child: 2,
                    cause: kill9(),
                    restart_count: 1
                }
            }
        );
        assert_eq!(tree.state(3).unwrap(), (ActorState::Running, 1));
    }

    #[test]
    fn restart_types_decide_after_clean_and_crash_endings() {
        let t = Instant::now();
        let mut tree = Tree::new(SupervisorSpec::default());
        for (id, restart) in [
            (1, RestartType::Permanent),
            (2, RestartType::Transient),
            (3, RestartType::Transient),
            (4, RestartType::Temporary),
        ] {
            tree.add(id, None, with_restart(restart), t);
            tree.ready(id, t);
        }
        tree.died(1, ExitCause::ExitCode(0), t);
        tree.died(2, ExitCause::ExitCode(0), t);
        tree.died(3, ExitCause::ExitCode(3), t);
        let released = tree.died(4, kill9(), t);
        assert!(released.contains(&Command::Release { id: 4, cause: kill9() }));
        assert_eq!(spawns(&tree.tick(t)), vec![1, 3]);
        assert_eq!(tree.state(2).unwrap().0, ActorState::Gone(ExitCause::ExitCode(0)));
    }

    #[test]
    fn an_actor_that_asked_to_exit_is_not_restarted_and_its_parent_is_told() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForOne, &[2], t);
        assert_eq!(tree.exit_requested(2, t), vec![Command::ExitNow { id: 2 }]);
        let cmds = tree.died(2, ExitCause::Normal, t);
        assert!(cmds.contains(&Command::Notify {
            parent: Some(1),
            notice: Notice::Exited {
                child: 2,
                cause: ExitCause::Normal
            }
        }));
        assert!(tree.tick(t).is_empty());
    }

    #[test]
    fn exiting_waits_for_children_and_kills_them_at_the_deadline() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForOne, &[2, 3], t);
        assert!(tree.exit_requested(1, t).is_empty(), "children still there");
        let late = t + SupervisorSpec::default().stop_timeout;
        let cmds = tree.tick(late);
        assert_eq!(cmds, vec![Command::Kill { id: 2 }, Command::Kill { id: 3 }]);
        // Killed children of an exiting parent are not restarted; the last one lets it go.
        tree.exit_requested(2, late);
        tree.died(2, kill9(), late);
        tree.exit_requested(3, late);
        let cmds = tree.died(3, kill9(), late);
        assert!(cmds.contains(&Command::ExitNow { id: 1 }), "{cmds:?}");
    }

    #[test]
    fn an_exiting_actor_that_does_not_finish_is_killed_at_its_deadline() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForOne, &[2], t);
        assert_eq!(tree.exit_requested(2, t), vec![Command::ExitNow { id: 2 }]);
        let late = t + SupervisorSpec::default().stop_timeout;
        assert_eq!(tree.tick(late), vec![Command::Kill { id: 2 }]);
    }

    #[test]
    fn one_for_all_stops_siblings_in_reverse_order_then_restarts_all_in_order() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForAll, &[2, 3, 4], t);
        assert_eq!(tree.died(3, kill9(), t), vec![Command::RequestStop { id: 4 }]);
        assert_eq!(tree.died(4, ExitCause::Normal, t), vec![Command::RequestStop { id: 2 }]);
        assert!(tree.tick(t).is_empty(), "nothing restarts while a sibling is stopping");
        assert!(tree.died(2, ExitCause::Normal, t).is_empty());
        assert_eq!(spawns(&tree.tick(t)), vec![2, 3, 4]);
    }

    #[test]
    fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
        let t = Instant::now();
        let mut tree = family(Strategy::RestForOne, &[2, 3, 4], t);
        assert_eq!(tree.died(3, kill9(), t), vec![Command::RequestStop { id: 4 }]);
        assert!(tree.died(4, ExitCause::Normal, t).is_empty());
        assert_eq!(spawns(&tree.tick(t)), vec![3, 4]);
        assert_eq!(tree.state(2).unwrap(), (ActorState::Running, 1));
    }

    #[test]
    fn a_sibling_that_will_not_stop_is_killed_at_its_deadline() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForAll, &[2, 3], t);
        assert_eq!(tree.died(2, kill9(), t), vec![Command::RequestStop { id: 3 }]);
        let late = t + SupervisorSpec::default().stop_timeout;
        assert_eq!(tree.tick(late), vec![Command::Kill { id: 3 }]);
        tree.died(3, kill9(), late);
        assert_eq!(spawns(&tree.tick(late)), vec![2, 3]);
    }

    #[test]
    fn too_many_restarts_escalate_to_the_grandparent() {
        let t = Instant::now();
        let mut tree = Tree::new(SupervisorSpec::default());
        tree.add(1, None, ChildSpec::default(), t);
        tree.ready(1, t);
        tree.add(2, Some(1), ChildSpec::default(), t);
        tree.ready(2, t);
        tree.add(3, Some(2), ChildSpec::default(), t);
        let mut now = t;
        for _ in 0..5 {
            tree.ready(3, now);
            tree.died(3, kill9(), now);
            now += Duration::from_secs(1);
            assert_eq!(spawns(&tree.tick(now)), vec![3]);
        }
        tree.ready(3, now);
        let cmds = tree.died(3, kill9(), now);
        let limit = ExitCause::RestartLimit {
            restarts: 5,
            within_ms: 10_000,
            last: Box::new(kill9()),
        };
        assert!(
            cmds.contains(&Command::Release {
                id: 3,
                cause: limit.clone()
            }),
            "{cmds:?}"
        );
        assert!(
            cmds.contains(&Command::RequestStop { id: 2 }),
            "the supervisor gives up: {cmds:?}"
        );
        // The supervisor stops, and its own supervisor restarts it.
        tree.exit_requested(2, now);
        let cmds = tree.died(2, ExitCause::Normal, now);
        assert!(cmds.is_empty(), "{cmds:?}");
        let cmds = tree.tick(now);
        assert_eq!(spawns(&cmds), vec![2]);
        assert!(cmds.contains(&Command::Notify {
            parent: Some(1),
            notice: Notice::Restarted {
                child: 2,
                cause: limit,
                restart_count: 1
            }
        }));
    }

    #[test]
    fn at_the_root_only_the_failing_actor_is_given_up() {
        let t = Instant::now();
        let mut tree = Tree::new(SupervisorSpec {
            max_restarts: 1,
            ..SupervisorSpec::default()
        });
        tree.add(1, None, ChildSpec::default(), t);
        tree.add(2, None, ChildSpec::default(), t);
        tree.ready(1, t);
        tree.ready(2, t);
        tree.died(1, kill9(), t);
        tree.tick(t);
        tree.ready(1, t);
        let cmds = tree.died(1, kill9(), t);
        assert!(
            matches!(
                &cmds[..],
                [
                    Command::Release {
                        id: 1,
                        cause: ExitCause::RestartLimit { .. }
                    },
                    Command::Notify {
                        parent: None,
                        notice: Notice::Exited { child: 1, .. }
                    }
                ]
            ),
            "{cmds:?}"
        );
        assert_eq!(tree.state(2).unwrap().0, ActorState::Running);
    }

    #[test]
    fn backoff_grows_with_consecutive_failures_and_resets_after_a_healthy_run() {
        let t = Instant::now();
        let backoff = Backoff::default();
        let mut tree = Tree::new(SupervisorSpec {
            max_restarts: 100,
            ..SupervisorSpec::default()
        });
        tree.add(1, None, ChildSpec::default(), t);
        let mut now = t;
        for n in 1..=4u32 {
            tree.ready(1, now);
            tree.died(1, kill9(), now);
            let delay = backoff.delay(n);
            if !delay.is_zero() {
                assert!(tree.tick(now + delay - Duration::from_millis(1)).is_empty());
            }
            now += delay;
            assert_eq!(spawns(&tree.tick(now)), vec![1], "restart {n} after {delay:?}");
        }
        tree.ready(1, now);
        now += backoff.reset_after;
        tree.died(1, kill9(), now);
        assert_eq!(spawns(&tree.tick(now)), vec![1], "healthy long enough: immediate again");
    }

    #[test]
    fn children_of_a_restarting_actor_are_stopped_for_good_without_notices() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForOne, &[2], t);
        let cmds = tree.died(1, kill9(), t);
        assert_eq!(cmds, vec![Command::RequestStop { id: 2 }]);
        let cmds = tree.died(2, ExitCause::Normal, t);
        assert_eq!(
            cmds,
            vec![Command::Release {
                id: 2,
                cause: ExitCause::ParentGone
            }]
        );
        let cmds = tree.tick(t);
        assert_eq!(spawns(&cmds), vec![1]);
        assert_eq!(tree.state(2).unwrap().0, ActorState::Gone(ExitCause::ParentGone));
    }

    #[test]
    fn a_restart_that_fails_during_startup_counts_toward_the_limit() {
        let t = Instant::now();
        let mut tree = Tree::new(SupervisorSpec {
            max_restarts: 2,
            ..SupervisorSpec::default()
        });
        tree.add(1, None, ChildSpec::default(), t);
        tree.ready(1, t);
        tree.died(1, kill9(), t);
        let mut now = t;
        // Each new incarnation dies before reporting ready (exec failure, constructor panic).
        for _ in 0..2 {
            now += Duration::from_secs(1);
            assert_eq!(spawns(&tree.tick(now)), vec![1]);
            tree.died(1, ExitCause::StartFailed("constructor panicked".into()), now);
        }
        assert!(
            matches!(
                tree.state(1).unwrap().0,
                ActorState::Gone(ExitCause::RestartLimit { .. })
            ),
            "{:?}",
            tree.state(1)
        );
    }

    #[test]
    fn a_first_start_that_fails_is_not_retried() {
        let t = Instant::now();
        let mut tree = Tree::new(SupervisorSpec::default());
        tree.add(1, None, ChildSpec::default(), t);
        let why = ExitCause::StartFailed("no such type".into());
        let cmds = tree.died(1, why.clone(), t);
        assert_eq!(
            cmds,
            vec![
                Command::Release {
                    id: 1,
                    cause: why.clone()
                },
                Command::Notify {
                    parent: None,
                    notice: Notice::Exited { child: 1, cause: why }
                }
            ]
        );
    }

    #[test]
    fn shutdown_stops_top_level_actors_and_restarts_nothing() {
        let t = Instant::now();
        let mut tree = family(Strategy::OneForOne, &[2], t);
        assert_eq!(tree.shutdown(t), vec![Command::RequestStop { id: 1 }]);
        tree.died(2, kill9(), t);
        assert!(tree.tick(t).is_empty());
        tree.died(1, ExitCause::Normal, t);
        assert!(!tree.any_live());
    }
}
