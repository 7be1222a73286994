//! Promises kept on both bases: a child whose constructor panics, transient actors, the
//! per-actor failure policy, and wakeups that survive a crash. Behaviour runs on both bases
//! (`on_both_bases!`); what needs processes (kills, pids) runs on the process base.

use std::time::{Duration, Instant};

use greenroom::{
    ActorExitRequest, ActorState, Address, Backoff, ChildSpec, Error, ExitCause, OnFailure, RestartType,
    SupervisorSpec, SystemConfig,
};
use greenroom_integration_tests::{actors::*, harness, on_both_bases, TestSystem};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

fn pid_of(sys: &TestSystem, actor: Address) -> u32 {
    sys.actor_info(actor).unwrap().pid.expect("a running actor has a pid")
}

/// The next message to the client of type `M`, skipping others, and skipping a message of
/// the client's that a kill returned as poison after it was answered (a kill that lands
/// between a reply and the record that the message is done, see `supervision.rs`).
fn next_of<M: greenroom::Message>(sys: &TestSystem) -> M {
    loop {
        match sys.listen(T) {
            Ok(Some((_, msg))) => {
                if let Some(m) = msg.downcast::<M>() {
                    return m;
                }
            }
            Err(Error::Poisoned { details, .. }) if details.contains("process died while processing it") => {}
            other => panic!("expected a {}, got {other:?}", M::type_tag()),
        }
    }
}

/// Asks `parent` (a [`Spawner`]) for a child of type `A` with `spec`, reporting to the
/// client; returns the child's address.
fn spawn_child<A: greenroom::Actor>(sys: &TestSystem, parent: Address, spec: greenroom::ChildSpec) -> Address {
    let spawn = SpawnTyped {
        type_name: greenroom::actor_type_name::<A>().to_string(),
        spec,
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(parent, spawn, T).unwrap();
    children[0]
}

/// Asks `alarm` (an [`Alarm`]) for a wakeup after `delay_ms` reporting to the client (or
/// aborting its process); returns the pid of the process that set it.
fn set_alarm(sys: &TestSystem, alarm: Address, delay_ms: u64, label: &str, abort: bool) -> u32 {
    let set = SetAlarm {
        delay_ms,
        label: label.into(),
        report_to: sys.address(),
        abort,
    };
    match sys.ask(alarm, set, T) {
        Ok(pid) => pid,
        // An earlier message, answered, then returned by a kill (see `next_of`): this one is
        // still on its way to the next incarnation, and its answer with it.
        Err(Error::Poisoned { message, .. }) if !message.is::<SetAlarm>() => next_of::<u32>(sys),
        Err(e) => panic!("setting an alarm: {e}"),
    }
}

on_both_bases! {
    fn a_child_whose_constructor_panics_has_an_address_and_its_parent_hears_it_exited(sys) {
        let parent = sys.create_actor::<Spawner>().unwrap().address();
        let child = spawn_child::<Stillborn>(&sys, parent, Default::default());
        let seen = next_of::<ChildExitSeen>(&sys);
        assert_eq!((seen.parent, seen.child), (parent, child));
        match &seen.cause {
            ExitCause::StartFailed(why) => {
                assert!(why.contains("the constructor panicked"), "{why}");
                assert!(why.contains("Stillborn's constructor always panics"), "{why}");
            }
            other => panic!("expected StartFailed, got {other:?}"),
        }
        // Its address is dead: an actor's message to it is a dead letter, a client's ask
        // fails at once with the cause.
        let mortuary = sys.create_actor::<Mortuary>().unwrap().address();
        let _: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
        let forwarder = sys.create_actor::<Forwarder>().unwrap().address();
        sys.tell(forwarder, Forward { to: child, text: "anyone there?".into() }).unwrap();
        let dead = next_of::<DeadSeen>(&sys);
        assert_eq!(dead, DeadSeen { target: child, sender: forwarder, text: Some("anyone there?".into()) });
        let err = sys.ask::<_, String>(child, "hello?".to_string(), T).unwrap_err();
        assert!(matches!(&err, Error::ActorGone { cause: ExitCause::StartFailed(_), .. }), "{err}");
    }

    fn a_transient_actor_is_asked_to_exit_when_its_lifetime_is_over_and_not_restarted(sys) {
        let parent = sys.create_actor::<Spawner>().unwrap().address();
        let created = sys.now();
        let spec = ChildSpec { lifetime: Some(Duration::from_millis(500)), ..ChildSpec::default() };
        let eph = spawn_child::<Ephemeral>(&sys, parent, spec);
        let Spawned(kids) = sys.ask(eph, Hello { with_child: true }, T).unwrap();
        assert_eq!(sys.ask::<_, u64>(eph, 7u64, T).unwrap(), 7, "it answers while it lives");
        // Then, as if the system had sent it ActorExitRequest: its receive sees the request,
        // its child is asked to exit, its parent hears it exited.
        let (mut exit_seen, mut kid_exit, mut own_exit) = (None, None, None);
        while exit_seen.is_none() || kid_exit.is_none() || own_exit.is_none() {
            let (_, msg) = sys.listen(T).unwrap().expect("the transient actor's end");
            if let Some(seen) = msg.downcast::<ExitSeen>() {
                exit_seen = Some((seen, sys.now()));
            } else if let Some(seen) = msg.downcast::<ChildExitSeen>() {
                if seen.parent == eph {
                    kid_exit = Some(seen);
                } else if seen.parent == parent {
                    own_exit = Some(seen);
                }
            }
        }
        let (seen, at) = exit_seen.unwrap();
        assert_eq!(seen, ExitSeen { actor: eph, from: Address::local(0) });
        assert!(at - created >= Duration::from_millis(500), "ended {:?} after its creation", at - created);
        assert_eq!(kid_exit.unwrap(), ChildExitSeen { parent: eph, child: kids[0], cause: ExitCause::Normal });
        assert_eq!(own_exit.unwrap(), ChildExitSeen { parent, child: eph, cause: ExitCause::Normal });
        assert_eq!(sys.actor_info(eph).unwrap().state, ActorState::Gone(ExitCause::Normal), "not restarted");
        let err = sys.ask::<_, u64>(eph, 8u64, T).unwrap_err();
        assert!(matches!(err, Error::ActorGone { cause: ExitCause::Normal, .. }), "{err}");
    }

    fn an_idle_transient_actor_ends_and_messages_not_its_own_wakeups_keep_it_alive(sys) {
        let parent = sys.create_actor::<Spawner>().unwrap().address();
        let spec = ChildSpec { idle_timeout: Some(Duration::from_millis(400)), ..ChildSpec::default() };
        let eph = spawn_child::<Ephemeral>(&sys, parent, spec);
        let _: Spawned = sys.ask(eph, Hello { with_child: false }, T).unwrap();
        // Its own wakeups, every 100 ms, do not count as activity.
        sys.tell(eph, Tick { ms: 100 }).unwrap();
        let mut last = sys.now();
        // Five messages 250 ms apart: 1.25 s in all, each well within the idle timeout.
        for n in 0..5u64 {
            assert!(sys.listen(Duration::from_millis(250)).unwrap().is_none(), "ended while it was kept busy");
            last = sys.now();
            assert_eq!(sys.ask::<_, u64>(eph, n, T).unwrap(), n);
        }
        let seen = next_of::<ExitSeen>(&sys);
        let idle = sys.now() - last;
        assert_eq!(seen, ExitSeen { actor: eph, from: Address::local(0) });
        assert!(idle >= Duration::from_millis(400), "ended after {idle:?} idle");
        let exited = next_of::<ChildExitSeen>(&sys);
        assert_eq!(exited, ChildExitSeen { parent, child: eph, cause: ExitCause::Normal });
        assert_eq!(sys.actor_info(eph).unwrap().state, ActorState::Gone(ExitCause::Normal), "not restarted");
    }
}

on_both_bases! {
    fn under_on_failure_poison_a_failed_message_comes_back_after_one_receive(sys) {
        let spec = ChildSpec { on_failure: OnFailure::Poison, ..ChildSpec::default() };
        let p = sys.create_actor_with::<Panicker>(spec).unwrap().address();
        let first: Pong = sys.ask(p, PanicCommand::Ping, T).unwrap();
        assert_eq!(first.deliveries, 1);
        for (cmd, text) in [(PanicCommand::Always, "told to panic"), (PanicCommand::Error, "told to fail"), (PanicCommand::Once, "told to panic once")] {
            match sys.ask::<_, Pong>(p, cmd, T).unwrap_err() {
                Error::Poisoned { address, details, .. } => {
                    assert_eq!(address, p);
                    assert!(details.contains(text), "{details}");
                }
                other => panic!("expected Poisoned, got {other}"),
            }
        }
        // One receive per failed message (a retry would make it 7), and the actor went on
        // with its state.
        let pong: Pong = sys.ask(p, PanicCommand::Ping, T).unwrap();
        assert_eq!(pong.deliveries, 5);
        assert_eq!(pong.pid, first.pid);
    }

    fn under_on_failure_restart_the_actor_starts_afresh_and_queued_messages_reach_it(sys) {
        let parent = sys.create_actor::<Spawner>().unwrap().address();
        let spec = ChildSpec { on_failure: OnFailure::Restart, ..ChildSpec::default() };
        let p = spawn_child::<Panicker>(&sys, parent, spec);
        let _: Pong = sys.ask(p, PanicCommand::Ping, T).unwrap();
        let before: Pong = sys.ask(p, PanicCommand::Ping, T).unwrap();
        assert_eq!(before.deliveries, 2);
        sys.tell(p, PanicCommand::Always).unwrap();
        for _ in 0..3 {
            sys.tell(p, PanicCommand::Ping).unwrap();
        }
        let (mut poisoned, mut pongs, mut restarted) = (0, Vec::new(), None);
        while poisoned == 0 || pongs.len() < 3 || restarted.is_none() {
            match sys.listen(T) {
                Err(Error::Poisoned { address, message, details }) => {
                    assert_eq!(address, p);
                    assert!(matches!(message.downcast::<PanicCommand>(), Some(PanicCommand::Always)), "{message:?}");
                    // Returned by the actor's own process, before it ended: not recovered
                    // from a dead process's ledger.
                    assert!(details.contains("told to panic"), "{details}");
                    assert!(!details.contains("process died"), "{details}");
                    poisoned += 1;
                }
                Ok(Some((_, msg))) => {
                    if let Some(pong) = msg.downcast::<Pong>() {
                        pongs.push(pong);
                    } else if let Some(seen) = msg.downcast::<ChildRestartSeen>() {
                        restarted = Some(seen);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(poisoned, 1);
        // Fresh state (the count starts again), and each queued message delivered once, in
        // order, to the new incarnation.
        assert_eq!(pongs.iter().map(|p| p.deliveries).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(pongs.iter().all(|pong| pong.pid == pongs[0].pid));
        if !sys.is_simple() {
            assert_ne!(pongs[0].pid, before.pid, "a new process");
        }
        let seen = restarted.unwrap();
        assert_eq!((seen.parent, seen.child, seen.restart_count), (parent, p, 1));
        assert!(matches!(&seen.cause, ExitCause::ReceiveFailed(d) if d.contains("told to panic")), "{:?}", seen.cause);
        assert_eq!(sys.actor_info(p).unwrap().incarnation, 2);
    }

    fn under_on_failure_restart_a_temporary_actor_is_gone_and_its_parent_hears_why(sys) {
        let parent = sys.create_actor::<Spawner>().unwrap().address();
        let spec = ChildSpec { on_failure: OnFailure::Restart, restart: RestartType::Temporary, ..ChildSpec::default() };
        let p = spawn_child::<Panicker>(&sys, parent, spec);
        // The poison comes back from the child and the parent's word from the parent: two
        // processes, so either may come first.
        sys.tell(p, PanicCommand::Error).unwrap();
        let (mut poisoned, mut seen) = (false, None);
        while !poisoned || seen.is_none() {
            match sys.listen(T) {
                Err(Error::Poisoned { address, details, .. }) => {
                    assert_eq!(address, p);
                    assert!(details.contains("told to fail"), "{details}");
                    poisoned = true;
                }
                Ok(Some((_, msg))) if msg.is::<ChildExitSeen>() => seen = msg.downcast::<ChildExitSeen>(),
                other => panic!("expected the poison and the parent's word, got {other:?}"),
            }
        }
        let seen = seen.unwrap();
        assert_eq!(seen.child, p);
        assert!(matches!(&seen.cause, ExitCause::ReceiveFailed(d) if d.contains("told to fail")), "{:?}", seen.cause);
        let err = sys.ask::<_, Pong>(p, PanicCommand::Ping, T).unwrap_err();
        assert!(matches!(err, Error::ActorGone { cause: ExitCause::ReceiveFailed(_), .. }), "{err}");
    }
}

#[test]
fn a_transient_lifetime_counts_from_creation_across_restarts() {
    let sys = TestSystem::start(HOST);
    let parent = sys.create_actor::<Spawner>().unwrap().address();
    let created = Instant::now();
    let spec = ChildSpec {
        lifetime: Some(Duration::from_secs(2)),
        ..ChildSpec::default()
    };
    let eph = spawn_child::<Ephemeral>(&sys, parent, spec);
    let _: Spawned = sys.ask(eph, Hello { with_child: false }, T).unwrap();
    let first = pid_of(&sys, eph);
    assert!(sys.listen(Duration::from_millis(1200)).unwrap().is_none());
    sigkill(first);
    assert!(harness::wait_for_exit(first, T));
    let restarted = next_of::<ChildRestartSeen>(&sys);
    assert_eq!(restarted.child, eph);
    // The new incarnation reports to the client too.
    let _: Spawned = sys.ask(eph, Hello { with_child: false }, T).unwrap();
    assert_ne!(pid_of(&sys, eph), first);
    let seen = next_of::<ExitSeen>(&sys);
    let at = created.elapsed();
    assert_eq!(seen.from, Address::local(0));
    // From creation: 2 s. Counted from the restart it would be about 3.2 s.
    assert!(
        at >= Duration::from_secs(2) && at < Duration::from_millis(3000),
        "ended {at:?} after its creation"
    );
    let exited = next_of::<ChildExitSeen>(&sys);
    assert_eq!(exited.cause, ExitCause::Normal);
}

#[test]
fn a_transient_actor_restarted_after_its_lifetime_is_asked_to_exit_at_once() {
    let sys = TestSystem::start(HOST);
    // Its parent restarts it at once the first time, after 1 s the second.
    let patient = ChildSpec {
        supervision: SupervisorSpec {
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(5),
                multiplier: 2,
                reset_after: Duration::from_secs(60),
            },
            ..SupervisorSpec::default()
        },
        ..ChildSpec::default()
    };
    let parent = sys.create_actor_with::<Spawner>(patient).unwrap().address();
    let created = Instant::now();
    let spec = ChildSpec {
        lifetime: Some(Duration::from_millis(700)),
        ..ChildSpec::default()
    };
    let eph = spawn_child::<Ephemeral>(&sys, parent, spec);
    for restart_count in 1..=2 {
        let pid = pid_of(&sys, eph);
        let _: Spawned = sys.ask(eph, Hello { with_child: false }, T).unwrap();
        sigkill(pid);
        assert!(harness::wait_for_exit(pid, T));
        let seen = next_of::<ChildRestartSeen>(&sys);
        assert_eq!((seen.child, seen.restart_count), (eph, restart_count));
    }
    // Restarted about 1 s after its creation, past its 700 ms: asked to exit at once, so a
    // crash-looping actor does not outlive its lifetime for long.
    let exited = next_of::<ChildExitSeen>(&sys);
    let at = created.elapsed();
    assert_eq!((exited.child, exited.cause), (eph, ExitCause::Normal));
    assert!(at < Duration::from_millis(2500), "ended {at:?} after its creation");
    assert_eq!(sys.actor_info(eph).unwrap().state, ActorState::Gone(ExitCause::Normal));
}

on_both_bases! {
    fn an_exiting_actors_wakeups_never_fire(sys) {
        let alarm = sys.create_actor::<Alarm>().unwrap().address();
        set_alarm(&sys, alarm, 300, "never", false);
        sys.tell(alarm, ActorExitRequest).unwrap();
        assert!(sys.listen(Duration::from_millis(900)).unwrap().is_none(), "a wakeup fired after its actor exited");
        assert_eq!(sys.actor_info(alarm).unwrap().state, ActorState::Gone(ExitCause::Normal));
    }
}

#[test]
fn a_killed_actors_pending_wakeup_fires_in_its_new_incarnation_at_its_original_due_time() {
    let sys = TestSystem::start(HOST);
    let alarm = sys.create_actor::<Alarm>().unwrap().address();
    let set_at = Instant::now();
    let first = set_alarm(&sys, alarm, 1500, "survivor", false);
    set_alarm(&sys, alarm, 100, "early", false);
    // The early one fires in the first process, before the kill.
    assert_eq!(
        next_of::<Rung>(&sys),
        Rung {
            label: "early".into(),
            pid: first
        }
    );
    sigkill(first);
    assert!(harness::wait_for_exit(first, T));
    let rung = next_of::<Rung>(&sys);
    let at = set_at.elapsed();
    assert_eq!(rung.label, "survivor");
    assert_ne!(rung.pid, first, "it fired in the new process");
    assert!(
        at >= Duration::from_millis(1500),
        "fired {at:?} after it was set, before its delay"
    );
    assert!(
        at < Duration::from_millis(2500),
        "fired {at:?} after it was set: not at its due time"
    );
    let info = sys.actor_info(alarm).unwrap();
    assert_eq!((info.incarnation, info.pid), (2, Some(rung.pid)));
    // The early one, fired already, is not re-armed.
    assert!(sys.listen(Duration::from_millis(500)).unwrap().is_none());
}

#[test]
fn a_wakeup_due_while_its_actor_was_down_fires_at_once_after_the_restart() {
    // The first restart is immediate; the second waits 1 s.
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(5),
        multiplier: 2,
        reset_after: Duration::from_secs(60),
    };
    let config = SystemConfig::default().root_supervision(SupervisorSpec {
        backoff,
        ..SupervisorSpec::default()
    });
    let sys = TestSystem::start_with(HOST, config);
    let alarm = sys.create_actor::<Alarm>().unwrap().address();
    let first: u32 = sys.ask(alarm, "pid?".to_string(), T).unwrap();
    sigkill(first);
    assert!(harness::wait_for_exit(first, T));
    let second = set_alarm(&sys, alarm, 200, "overdue", false);
    assert_ne!(second, first);
    let killed = Instant::now();
    sigkill(second);
    assert!(harness::wait_for_exit(second, T));
    let rung = next_of::<Rung>(&sys);
    let at = killed.elapsed();
    assert_eq!(rung.label, "overdue");
    assert_ne!(rung.pid, second);
    // Due 200 ms after it was set, while the actor was down for its 1 s backoff: it fires
    // as soon as the new process is up.
    assert!(
        at >= Duration::from_secs(1),
        "fired {at:?} after the kill, before the restart"
    );
    assert!(
        at < Duration::from_secs(2),
        "fired {at:?} after the kill: not at once after the restart"
    );
}

#[test]
fn a_wakeup_whose_receive_kills_the_process_is_not_delivered_again() {
    let sys = TestSystem::start_with(HOST, harness::restart_at_once(10));
    let alarm = sys.create_actor::<Alarm>().unwrap().address();
    let first = set_alarm(&sys, alarm, 100, "fatal", true);
    set_alarm(&sys, alarm, 600, "after", false);
    assert!(harness::wait_for_exit(first, T), "the fatal wakeup aborts its process");
    // The other wakeup survives the abort; the fatal one fired once: at most once.
    let rung = next_of::<Rung>(&sys);
    assert_eq!(rung.label, "after");
    assert_ne!(rung.pid, first);
    assert!(sys.listen(Duration::from_millis(500)).unwrap().is_none());
    let info = sys.actor_info(alarm).unwrap();
    assert_eq!(
        (info.incarnation, info.pid),
        (2, Some(rung.pid)),
        "restarted once, not in a loop"
    );
}
