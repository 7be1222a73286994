//! The core runtime end to end: real admin, real hosts, real pids, real signals.

use std::time::{Duration, Instant};

use greenroom::{ActorExitRequest, ActorState, Address, Error, ExitCause};
use greenroom_integration_tests::{
    actors::*,
    harness::{self, TestSystem},
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

fn system() -> TestSystem {
    TestSystem::start(HOST)
}

/// Asserts that `recorder` saw exactly the numbers `0..count`, in order.
fn assert_recorded_in_order(sys: &TestSystem, recorder: Address, count: u64) {
    let rec: Recorded = sys.ask(recorder, Report, T).unwrap();
    assert_eq!(
        rec,
        Recorded {
            count,
            in_order: true,
            last: Some(count - 1)
        }
    );
}

fn pid_of(sys: &TestSystem, actor: Address) -> u32 {
    sys.actor_info(actor)
        .expect("actor info")
        .pid
        .expect("a running actor has a pid")
}

#[test]
fn each_actor_runs_in_its_own_process() {
    let sys = system();
    let actors: Vec<Address> = (0..3).map(|_| sys.create_actor::<Whoami>().unwrap()).collect();
    let mut pids = Vec::new();
    for a in &actors {
        let reported: u32 = sys.ask(*a, (), T).unwrap();
        assert_eq!(
            reported,
            pid_of(&sys, *a),
            "the admin's pid for {a} is the process that answered"
        );
        assert_eq!(
            harness::parent_of(reported),
            Some(sys.admin_pid()),
            "hosts are children of the admin"
        );
        assert_eq!(
            harness::exe_of(reported),
            harness::exe_of(sys.admin_pid()),
            "hosts run the host binary"
        );
        pids.push(reported);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three actors, three processes");
    assert!(!pids.contains(&std::process::id()) && !pids.contains(&sys.admin_pid()));
    assert_eq!(sys.host_pids(), pids);
}

#[test]
fn actors_create_actors_in_new_processes() {
    let sys = system();
    let parent = sys.create_actor::<Spawner>().unwrap();
    let req = SpawnChildren {
        children: 2,
        grandchildren: 0,
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(parent, req, T).unwrap();
    assert_eq!(children.len(), 2);
    let mut pids = vec![pid_of(&sys, parent)];
    for c in &children {
        // A child created from inside an actor is usable at once: messages wait until it is up.
        assert!(spawner_barrier(&sys, *c, sys.address(), T).is_empty());
        pids.push(pid_of(&sys, *c));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert_eq!(harness::parent_of(pid), Some(sys.admin_pid()));
    }
}

#[test]
fn an_address_passed_in_a_message_is_used_by_a_third_actor() {
    let sys = system();
    let forwarder = sys.create_actor::<Forwarder>().unwrap();
    let recorder = sys.create_actor::<Recorder>().unwrap();
    let echo = sys.create_actor::<Echo>().unwrap();
    // The forwarder never heard of the client or the echo actor before these messages.
    sys.tell(
        forwarder,
        Forward {
            to: echo,
            text: "via a third actor".into(),
        },
    )
    .unwrap();
    sys.tell(
        forwarder,
        Forward {
            to: sys.address(),
            text: "to the client".into(),
        },
    )
    .unwrap();
    let (sender, msg) = sys.listen(T).unwrap().expect("the forwarded text reaches the client");
    assert_eq!(sender, forwarder);
    assert_eq!(msg.downcast::<String>().as_deref(), Some("to the client"));
    // Blaster gets the recorder's address in a message and streams to it.
    let blaster = sys.create_actor::<Blaster>().unwrap();
    let done: bool = sys.ask(blaster, Blast { to: recorder, count: 5 }, T).unwrap();
    assert!(done);
    assert_recorded_in_order(&sys, recorder, 5);
}

#[test]
fn ten_thousand_messages_arrive_in_order() {
    let sys = system();
    let recorder = sys.create_actor::<Recorder>().unwrap();
    for n in 0..10_000u64 {
        sys.tell(recorder, n).unwrap();
    }
    assert_recorded_in_order(&sys, recorder, 10_000);

    // And actor to actor.
    let recorder = sys.create_actor::<Recorder>().unwrap();
    let blaster = sys.create_actor::<Blaster>().unwrap();
    let done: bool = sys
        .ask(
            blaster,
            Blast {
                to: recorder,
                count: 10_000,
            },
            T,
        )
        .unwrap();
    assert!(done);
    assert_recorded_in_order(&sys, recorder, 10_000);
}

#[test]
fn ask_times_out_when_no_reply_comes() {
    let sys = system();
    let silent = sys.create_actor::<Silent>().unwrap();
    let started = Instant::now();
    let err = sys
        .ask::<_, String>(silent, "anyone?".to_string(), Duration::from_millis(300))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, Error::Timeout { address, .. } if address == silent),
        "{err}"
    );
    assert!(waited >= Duration::from_millis(300), "returned early after {waited:?}");
    assert!(err.to_string().contains("no reply from"), "{err}");
}

#[test]
fn ask_to_an_exited_actor_fails_fast() {
    let sys = system();
    let echo = sys.create_actor::<Echo>().unwrap();
    let pid = pid_of(&sys, echo);
    sys.tell(echo, ActorExitRequest).unwrap();
    // Immediately: the exit request may still be in flight; the ask must not wait 30 s.
    let started = Instant::now();
    let err = sys
        .ask::<_, String>(echo, "hello?".to_string(), Duration::from_secs(30))
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match err {
        Error::ActorGone { address, cause } => {
            assert_eq!(address, echo);
            assert_eq!(cause, ExitCause::Normal);
        }
        other => panic!("expected ActorGone, got {other}"),
    }
    assert!(harness::wait_for_exit(pid, T));
    // Later, when the socket is long gone.
    let started = Instant::now();
    let err = sys
        .ask::<_, String>(echo, "still there?".to_string(), Duration::from_secs(30))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, Error::ActorGone { .. }), "{err}");
    assert!(err.to_string().contains("is gone"), "{err}");
    // An address nobody created.
    let err = sys
        .ask::<_, String>(Address::local(999_999), "?".to_string(), T)
        .unwrap_err();
    assert!(matches!(err, Error::UnknownActor(_)), "{err}");
}

#[test]
fn exit_request_is_recursive_and_parents_hear_of_it() {
    let sys = system();
    let top = sys.create_actor::<Spawner>().unwrap();
    let req = SpawnChildren {
        children: 2,
        grandchildren: 1,
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(top, req, T).unwrap();
    // Wait for the grandchildren to exist: every spawner's pid is known once it answered.
    for c in &children {
        spawner_barrier(&sys, *c, sys.address(), T);
    }
    let hosts = sys.host_pids();
    assert_eq!(hosts.len(), 5, "top + 2 children + 2 grandchildren");

    sys.tell(top, ActorExitRequest).unwrap();
    // Each child reports its grandchild's exit, and the top reports each child's exit.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let (_, msg) = sys.listen(T).unwrap().expect("a ChildExitSeen report");
        if let Some(s) = msg.downcast::<ChildExitSeen>() {
            seen.push(s);
        }
    }
    for child in &children {
        assert!(seen
            .iter()
            .any(|s| s.parent == top && s.child == *child && s.cause == ExitCause::Normal));
        assert!(seen.iter().any(|s| s.parent == *child && s.cause == ExitCause::Normal));
    }
    for pid in hosts {
        assert!(harness::wait_for_exit(pid, T), "host {pid} did not exit");
    }
    // An ask waits for the admin's verdict on the exited actor (it reaps asynchronously).
    let err = sys.ask::<_, Spawned>(top, Report, T).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ActorGone {
                cause: ExitCause::Normal,
                ..
            }
        ),
        "{err}"
    );
    let info = sys.actor_info(top).unwrap();
    assert_eq!(info.state, ActorState::Gone(ExitCause::Normal));
    assert!(sys.host_pids().is_empty());
}

#[test]
fn shutdown_leaves_no_process_socket_or_directory() {
    let mut sys = system();
    for _ in 0..3 {
        sys.create_actor::<Echo>().unwrap();
    }
    let parent = sys.create_actor::<Spawner>().unwrap();
    let _: Spawned = sys
        .ask(
            parent,
            SpawnChildren {
                children: 2,
                grandchildren: 0,
                watcher: sys.address(),
            },
            T,
        )
        .unwrap();
    let rundir = sys.runtime_dir().to_path_buf();
    assert!(rundir.starts_with(sys.base()));
    let sockets = std::fs::read_dir(&rundir).unwrap().count();
    assert!(sockets >= 7, "6 actors and the client have sockets, found {sockets}");
    let hosts = sys.host_pids();
    assert_eq!(hosts.len(), 6);
    let admin = sys.admin_pid();

    sys.shutdown().unwrap();
    // Shutdown returns after the admin reaped every host and exited itself.
    for pid in hosts {
        assert!(!harness::is_alive(pid), "host {pid} survived shutdown");
    }
    assert!(!harness::is_alive(admin), "the admin survived shutdown");
    assert!(!rundir.exists(), "runtime directory {} left behind", rundir.display());
}

#[test]
fn killing_the_admin_takes_every_host_down() {
    let sys = system();
    for _ in 0..3 {
        sys.create_actor::<Echo>().unwrap();
    }
    let hosts = sys.host_pids();
    assert_eq!(hosts.len(), 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sys.admin_pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for pid in hosts {
        assert!(
            harness::wait_for_exit(pid, Duration::from_secs(1)),
            "host {pid} outlived its admin by 1 s"
        );
    }
    let err = sys.ask::<_, String>(Address::local(2), "?".to_string(), T).unwrap_err();
    assert!(
        matches!(err, Error::AdminGone | Error::ActorGone { .. } | Error::UnknownActor(_)),
        "{err}"
    );
}

#[test]
fn a_panicking_receive_does_not_kill_the_host() {
    let sys = system();
    let p = sys.create_actor::<Panicker>().unwrap();
    let pid = pid_of(&sys, p);

    // Fails twice (first try and retry): the message comes back as poison.
    let err = sys.ask::<_, Pong>(p, PanicCommand::Always, T).unwrap_err();
    match &err {
        Error::Poisoned {
            address,
            message,
            details,
        } => {
            assert_eq!(*address, p);
            assert!(
                matches!(message.downcast::<PanicCommand>(), Some(PanicCommand::Always)),
                "{message:?}"
            );
            assert!(details.contains("told to panic"), "{details}");
        }
        other => panic!("expected Poisoned, got {other}"),
    }
    // An error return is treated the same way.
    let err = sys.ask::<_, Pong>(p, PanicCommand::Error, T).unwrap_err();
    assert!(
        matches!(&err, Error::Poisoned { details, .. } if details.contains("told to fail")),
        "{err}"
    );

    // Same process, state kept: 2 + 2 deliveries so far, then this one.
    let pong: Pong = sys.ask(p, PanicCommand::Ping, T).unwrap();
    assert_eq!(pong.pid, pid);
    assert_eq!(pong.deliveries, 5);

    // A panic on the first delivery only is invisible from outside: the retry answers.
    let pong: Pong = sys.ask(p, PanicCommand::Once, T).unwrap();
    assert_eq!(pong.pid, pid);
    assert_eq!(pong.deliveries, 7);
}

#[test]
fn unknown_actor_types_are_refused_clearly() {
    let sys = system();
    let err = sys
        .create_actor_named("no::such::Actor", Default::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown actor type `no::such::Actor`"), "{text}");
    assert!(text.contains("Echo"), "the error lists what is registered: {text}");
    // Also once the admin knows the registry (after a first actor).
    sys.create_actor::<Echo>().unwrap();
    let err = sys
        .create_actor_named("no::such::Actor", Default::default())
        .unwrap_err();
    assert!(matches!(err, Error::Create { .. }), "{err}");
    // The system still works.
    let echo = sys.create_actor::<Echo>().unwrap();
    let back: String = sys.ask(echo, "ok".to_string(), T).unwrap();
    assert_eq!(back, "ok");
}

#[test]
fn typed_dispatch_routes_each_type_to_its_handler() {
    let sys = system();
    let greeter = sys.create_actor::<TypedGreeter>().unwrap();
    let hello: String = sys.ask(greeter, Greet("World".into()), T).unwrap();
    assert_eq!(hello, "Hello, World!");
    sys.tell(greeter, 42u64).unwrap();
    sys.tell(greeter, "not a Greet".to_string()).unwrap();
    let others: u32 = sys.ask(greeter, HowManyOthers, T).unwrap();
    assert_eq!(others, 2, "the two other messages went to the fallback");
}

#[test]
fn replies_of_the_wrong_type_are_named() {
    let sys = system();
    let echo = sys.create_actor::<Echo>().unwrap();
    let err = sys.ask::<_, u64>(echo, "text".to_string(), T).unwrap_err();
    assert!(matches!(err, Error::UnexpectedReply { .. }), "{err}");
    assert!(err.to_string().contains("alloc::string::String"), "{err}");
}
