//! Supervision end to end: every way a host can die, restarts at the same address, policies,
//! escalation, backoff, and nothing lost. Real processes, real signals.

use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use greenroom::{
    ActorState, Address, Backoff, ChildSpec, Error, ExitCause, ResourceLimits, RestartType, Strategy, SupervisorSpec,
    SystemConfig,
};
use greenroom_integration_tests::{
    actors::*,
    harness::{self, TestSystem},
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

fn system() -> TestSystem {
    TestSystem::start(HOST)
}

fn pid_of(sys: &TestSystem, actor: Address) -> u32 {
    sys.actor_info(actor).unwrap().pid.expect("a running actor has a pid")
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

/// Pings `actor` with a fresh nonce and waits for the matching answer.
///
/// A kill that lands in the instant after an actor wrote its reply but before it recorded
/// the message as done returns that message as poison too (the sender has the reply; the
/// poison only says the actor may not have finished). Such leftovers — poison or answers for
/// other nonces — are skipped; if this ping itself comes back, it is sent again.
fn ping(sys: &TestSystem, actor: Address) -> Pong {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    'send: loop {
        let nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sys.tell(actor, Crash::Ping(nonce)).unwrap();
        loop {
            match sys.listen(T) {
                Ok(Some((_, msg))) => match msg.downcast::<Echoed>() {
                    Some(e) if e.nonce == nonce => return e.pong,
                    _ => continue,
                },
                Err(Error::Poisoned { message, .. }) if is_ping(&message) => {
                    if matches!(message.downcast::<Crash>(), Some(Crash::Ping(n)) if n == nonce) {
                        continue 'send;
                    }
                }
                Ok(None) => panic!("ping {actor}: no answer within {T:?}"),
                Err(e) => panic!("ping {actor}: {e}"),
            }
        }
    }
}

/// The error a `Ping` to an actor that is gone for good gets (skipping a returned `Ping`).
fn gone_error(sys: &TestSystem, actor: Address) -> Error {
    loop {
        match sys.ask::<_, Echoed>(actor, Crash::Ping(0), T) {
            Err(Error::Poisoned { message, .. }) if is_ping(&message) => continue,
            Err(e) => return e,
            Ok(e) => panic!("{actor} answered from pid {}", e.pong.pid),
        }
    }
}

/// The next message for the client, skipping a returned `Ping` (see [`ping`]).
fn next_report(sys: &TestSystem) -> greenroom::AnyMessage {
    loop {
        match sys.listen(T) {
            Ok(Some((_, msg))) => return msg,
            Err(Error::Poisoned { message, .. }) if is_ping(&message) => continue,
            other => panic!("expected a report, got {other:?}"),
        }
    }
}

fn is_ping(msg: &greenroom::AnyMessage) -> bool {
    matches!(msg.downcast::<Crash>(), Some(Crash::Ping(_)))
}

/// Waits for the message a dying `actor` was processing to come back to this client
/// (skipping a returned `Ping`, see [`ping`]).
fn expect_poison(sys: &TestSystem, actor: Address) -> String {
    loop {
        match sys.listen(T) {
            Err(Error::Poisoned { message, .. }) if is_ping(&message) => continue,
            Err(Error::Poisoned { address, details, .. }) if address == actor => return details,
            other => panic!("expected the in-flight message back from {actor} as poison, got {other:?}"),
        }
    }
}

fn crasher_name() -> String {
    greenroom::actor_type_name::<Crasher>().to_string()
}

/// Tells a fresh `Crasher` to die with `how`, with 20 messages queued behind it; checks the
/// fatal message comes back to its sender as poison naming the cause, and the queued ones
/// are delivered, once each, to a new process at the same address.
fn dies_and_comes_back(how: Crash, cause_text: &str) {
    let sys = system();
    let crasher = sys.create_actor::<Crasher>().unwrap().address();
    let before = ping(&sys, crasher).pid;

    sys.tell(crasher, how.clone()).unwrap();
    for _ in 0..20 {
        sys.tell(crasher, Crash::Inc).unwrap();
    }
    let details = expect_poison(&sys, crasher);
    assert!(details.contains("process died while processing it"), "{details}");
    assert!(details.contains(cause_text), "{how:?}: {details}");
    assert!(harness::wait_for_exit(before, T), "the old process is gone");

    let after = ping(&sys, crasher);
    assert_ne!(after.pid, before, "a new process serves the same address");
    assert_eq!(after.deliveries, 20, "the queued messages reach the new incarnation");
    let info = sys.actor_info(crasher).unwrap();
    // The host answers as soon as it is up; the admin may not have read its "ready" yet.
    assert!(
        matches!(info.state, ActorState::Running | ActorState::Starting),
        "{:?}",
        info.state
    );
    assert_eq!(info.incarnation, 2);
    assert_eq!(info.pid, Some(after.pid));
}

#[test]
fn sigkill_from_outside_restarts_at_the_same_address() {
    let sys = system();
    let crasher = sys.create_actor::<Crasher>().unwrap().address();
    let before = ping(&sys, crasher).pid;
    sigkill(before);
    assert!(harness::wait_for_exit(before, T));
    let after = ping(&sys, crasher);
    assert_ne!(after.pid, before);
    assert_eq!(sys.actor_info(crasher).unwrap().incarnation, 2);
}

#[test]
fn abort_restarts() {
    dies_and_comes_back(Crash::Abort, "killed by signal 6");
}

#[test]
fn segfault_restarts() {
    dies_and_comes_back(Crash::Segfault, "killed by signal 11");
}

#[test]
fn exit_with_a_status_restarts() {
    dies_and_comes_back(Crash::Exit(3), "exited with status 3");
}

#[test]
fn a_host_that_closes_its_control_socket_is_replaced() {
    let sys = system();
    let crasher = sys.create_actor::<Crasher>().unwrap().address();
    let before = ping(&sys, crasher).pid;
    sys.tell(crasher, Crash::CloseControl).unwrap();
    // The message itself completed; the host then lingers without its control connection
    // and is killed after a grace period.
    assert!(
        harness::wait_for_exit(before, T),
        "the admin kills a host it cannot manage"
    );
    let after = ping(&sys, crasher);
    assert_ne!(after.pid, before);
}

#[test]
fn parents_are_told_of_restarts_with_the_cause() {
    let sys = system();
    let parent = sys.create_actor::<Spawner>().unwrap().address();
    let spawn = SpawnTyped {
        type_name: crasher_name(),
        spec: ChildSpec::default(),
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(parent, spawn, T).unwrap();
    let child = children[0];
    for (n, (how, expected)) in [
        (
            Crash::Abort,
            ExitCause::Signal {
                signal: 6,
                core_dumped: false,
            },
        ),
        (
            Crash::Segfault,
            ExitCause::Signal {
                signal: 11,
                core_dumped: false,
            },
        ),
        (Crash::Exit(3), ExitCause::ExitCode(3)),
    ]
    .into_iter()
    .enumerate()
    {
        sys.tell(child, how).unwrap();
        // Two things arrive, in either order: the message it died on, back to its sender,
        // and the parent's report of the restart.
        let mut poisoned = false;
        let mut report = None;
        while !poisoned || report.is_none() {
            match sys.listen(T) {
                Err(Error::Poisoned { message, .. }) if is_ping(&message) => {}
                Err(Error::Poisoned { address, .. }) if address == child => poisoned = true,
                Ok(Some((_, msg))) => report = msg.downcast::<ChildRestartSeen>(),
                other => panic!("unexpected {other:?}"),
            }
        }
        let seen = report.expect("a ChildRestartSeen");
        assert_eq!(seen.parent, parent);
        assert_eq!(seen.child, child);
        assert_eq!(seen.restart_count, n as u32 + 1);
        match (&seen.cause, &expected) {
            // Whether a core was dumped depends on the machine's core pattern.
            (ExitCause::Signal { signal: a, .. }, ExitCause::Signal { signal: b, .. }) => assert_eq!(a, b),
            (got, want) => assert_eq!(got, want),
        }
        let _ = ping(&sys, child);
    }
}

#[test]
fn messages_sent_while_down_are_delivered_and_the_in_flight_one_comes_back() {
    let sys = system();
    let crasher = sys.create_actor::<Crasher>().unwrap().address();
    let pid = ping(&sys, crasher).pid;

    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("started");
    let started = UnixDatagram::bind(&notify).unwrap();
    started.set_read_timeout(Some(T)).unwrap();

    // In flight: a long message. Queued behind it: 50 more.
    sys.tell(
        crasher,
        Crash::Sleep {
            notify: notify.clone(),
            ms: 60_000,
        },
    )
    .unwrap();
    for _ in 0..50 {
        sys.tell(crasher, Crash::Inc).unwrap();
    }
    let mut buf = [0u8; 16];
    started.recv(&mut buf).expect("the actor starts the long message");
    sigkill(pid);
    // And 50 more while the actor is down or restarting.
    for _ in 0..50 {
        sys.tell(crasher, Crash::Inc).unwrap();
    }

    // The message it died on comes back to its sender, not to the new incarnation.
    loop {
        match sys.listen(T) {
            Err(Error::Poisoned { message, .. }) if is_ping(&message) => continue,
            Err(Error::Poisoned { message, details, .. }) => {
                assert!(
                    matches!(message.downcast::<Crash>(), Some(Crash::Sleep { .. })),
                    "{message:?}"
                );
                assert!(details.contains("killed by signal 9"), "{details}");
                break;
            }
            other => panic!("expected the in-flight message back as poison, got {other:?}"),
        }
    }
    // Every other message reaches the new incarnation, exactly once.
    let pong = ping(&sys, crasher);
    assert_ne!(pong.pid, pid);
    assert_eq!(pong.deliveries, 100, "100 queued messages, delivered once each");
}

#[test]
fn children_never_outlive_their_parent_process() {
    let sys = system();
    let parent = sys.create_actor::<Spawner>().unwrap().address();
    // Exit reports go to an actor that ignores them, so the client sees only replies.
    let sink = sys.create_actor::<Silent>().unwrap().address();
    let req = SpawnChildren {
        children: 2,
        grandchildren: 1,
        watcher: sink,
    };
    let Spawned(children) = sys.ask(parent, req, T).unwrap();
    for c in &children {
        spawner_barrier(&sys, *c, sink, T);
    }
    let parent_pid = pid_of(&sys, parent);
    let sink_pid = pid_of(&sys, sink);
    let descendants: Vec<u32> = sys
        .host_pids()
        .into_iter()
        .filter(|p| *p != parent_pid && *p != sink_pid)
        .collect();
    assert_eq!(descendants.len(), 4, "two children and two grandchildren");

    sigkill(parent_pid);
    for pid in &descendants {
        assert!(
            harness::wait_for_exit(*pid, T),
            "descendant {pid} outlived its parent's process"
        );
    }
    // The parent comes back, without children; the old children's addresses are dead.
    spawner_barrier(&sys, parent, sink, T);
    let mut expected = vec![pid_of(&sys, parent), sink_pid];
    expected.sort_unstable();
    assert_eq!(sys.host_pids(), expected);
    for c in &children {
        let err = sys.ask::<_, Spawned>(*c, Report, T).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::ActorGone {
                    cause: ExitCause::ParentGone,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn processed_but_unacknowledged_messages_are_not_delivered_twice() {
    let sys = system();
    let crasher = sys.create_actor::<Crasher>().unwrap().address();
    // Fewer than an ack batch: the sender still holds them when the actor dies.
    for _ in 0..10 {
        sys.tell(crasher, Crash::Inc).unwrap();
    }
    let first = ping(&sys, crasher);
    assert_eq!(first.deliveries, 10);
    sigkill(first.pid);
    assert!(harness::wait_for_exit(first.pid, T));
    let second = ping(&sys, crasher);
    assert_ne!(second.pid, first.pid);
    assert_eq!(
        second.deliveries, 0,
        "nothing the old incarnation processed is replayed"
    );
}

#[test]
fn transient_actors_are_not_restarted_after_a_clean_exit() {
    let sys = system();
    let transient = ChildSpec {
        restart: RestartType::Transient,
        ..ChildSpec::default()
    };
    let crashy = sys.create_actor_with::<Crasher>(transient).unwrap().address();
    let pid = ping(&sys, crashy).pid;
    sigkill(pid);
    assert_ne!(ping(&sys, crashy).pid, pid, "restarted after a crash");

    let clean = sys.create_actor_with::<Crasher>(transient).unwrap().address();
    let pid = ping(&sys, clean).pid;
    sys.tell(clean, Crash::Exit(0)).unwrap();
    assert!(harness::wait_for_exit(pid, T));
    expect_poison(&sys, clean);
    let err = gone_error(&sys, clean);
    assert!(
        matches!(
            &err,
            Error::ActorGone {
                cause: ExitCause::ExitCode(0),
                ..
            }
        ),
        "a clean exit is final for a transient actor: {err}"
    );
}

#[test]
fn temporary_actors_are_never_restarted_and_the_parent_hears_it() {
    let sys = system();
    let parent = sys.create_actor::<Spawner>().unwrap().address();
    let spawn = SpawnTyped {
        type_name: crasher_name(),
        spec: ChildSpec {
            restart: RestartType::Temporary,
            ..ChildSpec::default()
        },
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(parent, spawn, T).unwrap();
    let child = children[0];
    sigkill(pid_of(&sys, child));
    let msg = next_report(&sys);
    let seen = msg
        .downcast::<ChildExitSeen>()
        .expect("ChildActorExited, not a restart");
    assert_eq!(seen.child, child);
    assert!(
        matches!(seen.cause, ExitCause::Signal { signal: 9, .. }),
        "{:?}",
        seen.cause
    );
    let err = gone_error(&sys, child);
    assert!(matches!(err, Error::ActorGone { .. }), "{err}");
}

/// A parent with `strategy` and three `Crasher` children; returns (parent, children).
fn family(sys: &TestSystem, strategy: Strategy) -> (Address, Vec<Address>) {
    let spec = ChildSpec {
        supervision: SupervisorSpec {
            strategy,
            ..SupervisorSpec::default()
        },
        ..ChildSpec::default()
    };
    let parent = sys.create_actor_with::<Spawner>(spec).unwrap().address();
    let mut children = Vec::new();
    for _ in 0..3 {
        let spawn = SpawnTyped {
            type_name: crasher_name(),
            spec: ChildSpec::default(),
            watcher: sys.address(),
        };
        let Spawned(c) = sys.ask(parent, spawn, T).unwrap();
        children.push(c[0]);
    }
    (parent, children)
}

/// Waits for `n` restart reports from the parent; returns the restarted children.
fn restarts_seen(sys: &TestSystem, n: usize) -> Vec<Address> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let msg = next_report(sys);
        if let Some(r) = msg.downcast::<ChildRestartSeen>() {
            seen.push(r.child);
        }
    }
    seen
}

#[test]
fn one_for_all_restarts_every_sibling() {
    let sys = system();
    let (_, children) = family(&sys, Strategy::OneForAll);
    let before: Vec<u32> = children.iter().map(|c| ping(&sys, *c).pid).collect();
    sigkill(before[1]);
    let mut restarted = restarts_seen(&sys, 3);
    restarted.sort();
    assert_eq!(restarted, children, "all three were restarted");
    for (child, old) in children.iter().zip(&before) {
        assert_ne!(ping(&sys, *child).pid, *old);
        assert_eq!(sys.actor_info(*child).unwrap().incarnation, 2);
    }
}

#[test]
fn rest_for_one_restarts_the_later_siblings_only() {
    let sys = system();
    let (_, children) = family(&sys, Strategy::RestForOne);
    let before: Vec<u32> = children.iter().map(|c| ping(&sys, *c).pid).collect();
    sigkill(before[1]);
    let mut restarted = restarts_seen(&sys, 2);
    restarted.sort();
    assert_eq!(restarted, children[1..].to_vec());
    assert_eq!(
        ping(&sys, children[0]).pid,
        before[0],
        "the earlier sibling is untouched"
    );
    assert_ne!(ping(&sys, children[1]).pid, before[1]);
    assert_ne!(ping(&sys, children[2]).pid, before[2]);
}

#[test]
fn exceeding_the_intensity_limit_escalates_to_the_grandparent() {
    let sys = system();
    let top = sys.create_actor::<Spawner>().unwrap().address();
    let strict = ChildSpec {
        supervision: SupervisorSpec {
            max_restarts: 2,
            ..SupervisorSpec::default()
        },
        ..ChildSpec::default()
    };
    let spawn_mid = SpawnTyped {
        type_name: greenroom::actor_type_name::<Spawner>().to_string(),
        spec: strict,
        watcher: sys.address(),
    };
    let Spawned(mid) = sys.ask(top, spawn_mid, T).unwrap();
    let mid = mid[0];
    let spawn_child = SpawnTyped {
        type_name: crasher_name(),
        spec: ChildSpec::default(),
        watcher: sys.address(),
    };
    let Spawned(child) = sys.ask(mid, spawn_child, T).unwrap();
    let child = child[0];
    let mid_pid = pid_of(&sys, mid);

    // Two restarts are allowed; the third failure within 10 s makes `mid` give up.
    for _ in 0..2 {
        sigkill(ping(&sys, child).pid);
        let msg = next_report(&sys);
        assert_eq!(msg.downcast::<ChildRestartSeen>().map(|r| r.child), Some(child));
    }
    sigkill(ping(&sys, child).pid);

    // `top` sees `mid` restart because mid's supervisor gave up.
    let escalated = loop {
        let msg = next_report(&sys);
        if let Some(r) = msg.downcast::<ChildRestartSeen>() {
            if r.child == mid {
                break r;
            }
        }
    };
    assert_eq!(escalated.parent, top);
    match &escalated.cause {
        ExitCause::RestartLimit { restarts, last, .. } => {
            assert_eq!(*restarts, 2);
            assert!(matches!(**last, ExitCause::Signal { signal: 9, .. }));
        }
        other => panic!("expected RestartLimit, got {other:?}"),
    }
    assert!(harness::wait_for_exit(mid_pid, T));
    assert_ne!(pid_of(&sys, mid), mid_pid, "mid runs again, in a new process");
    let err = gone_error(&sys, child);
    assert!(
        matches!(err, Error::ActorGone { .. }),
        "the failing child is gone: {err}"
    );
}

#[test]
fn backoff_delays_consecutive_restarts() {
    let backoff = Backoff {
        initial: Duration::from_millis(300),
        max: Duration::from_secs(5),
        multiplier: 2,
        reset_after: Duration::from_secs(60),
    };
    let config = SystemConfig::default().root_supervision(SupervisorSpec {
        backoff,
        ..SupervisorSpec::default()
    });
    let sys = TestSystem::start_with(HOST, config);
    let crasher = sys.create_actor::<Crasher>().unwrap().address();
    for n in 1..=3u32 {
        let pid = ping(&sys, crasher).pid;
        let killed = Instant::now();
        sigkill(pid);
        // The first ask after the kill is answered by the new incarnation.
        let pong = ping(&sys, crasher);
        let waited = killed.elapsed();
        assert_ne!(pong.pid, pid);
        let due = backoff.delay(n);
        assert!(
            waited >= due,
            "restart {n} came after {waited:?}, before its backoff of {due:?}"
        );
    }
}

#[test]
fn a_hundred_kills_leave_no_zombie_and_no_fd_growth_in_the_admin() {
    let config = harness::restart_at_once(1_000);
    let sys = TestSystem::start_with(HOST, config);
    let crasher = sys.create_actor::<Crasher>().unwrap().address();
    let admin = sys.admin_pid();
    // Warm up: the first kill opens the client's lasting connections.
    let mut pid = ping(&sys, crasher).pid;
    sigkill(pid);
    pid = ping(&sys, crasher).pid;
    let fds_before = harness::fd_count(admin);
    for _ in 0..100 {
        sigkill(pid);
        let next = ping(&sys, crasher).pid;
        assert_ne!(next, pid);
        pid = next;
    }
    assert_eq!(sys.actor_info(crasher).unwrap().incarnation, 102);
    assert_eq!(
        harness::fd_count(admin),
        fds_before,
        "the admin's fd count is back where it was"
    );
    assert_eq!(harness::zombie_children_of(admin), Vec::<u32>::new());
    assert_eq!(sys.host_pids(), vec![pid], "exactly one live host");
}

#[test]
fn a_hung_actor_is_killed_after_its_liveness_timeout() {
    let sys = system();
    let spec = ChildSpec {
        liveness: Some(Duration::from_millis(300)),
        ..ChildSpec::default()
    };
    let crasher = sys.create_actor_with::<Crasher>(spec).unwrap().address();
    let pid = ping(&sys, crasher).pid;
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("started");
    let started = UnixDatagram::bind(&notify).unwrap();
    started.set_read_timeout(Some(T)).unwrap();

    let sent = Instant::now();
    sys.tell(crasher, Crash::Sleep { notify, ms: 600_000 }).unwrap();
    for _ in 0..5 {
        sys.tell(crasher, Crash::Inc).unwrap();
    }
    let details = expect_poison(&sys, crasher);
    assert!(details.contains("liveness timeout"), "{details}");
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "killed before its timeout"
    );
    let pong = ping(&sys, crasher);
    assert_ne!(pong.pid, pid);
    assert_eq!(
        pong.deliveries, 5,
        "the messages queued behind the hung one are delivered"
    );
    let mut buf = [0u8; 16];
    started.recv(&mut buf).expect("the hung message had started");

    // Without a liveness timeout, a long message is left alone.
    let patient = sys.create_actor::<Crasher>().unwrap().address();
    let pid = ping(&sys, patient).pid;
    let notify = dir.path().join("patient");
    let started = UnixDatagram::bind(&notify).unwrap();
    started.set_read_timeout(Some(T)).unwrap();
    sys.tell(patient, Crash::Sleep { notify, ms: 700 }).unwrap();
    started.recv(&mut buf).unwrap();
    assert_eq!(
        ping(&sys, patient).pid,
        pid,
        "still the same process after 700 ms on one message"
    );
}

#[test]
fn an_actor_over_its_memory_limit_dies_alone_and_comes_back() {
    let sys = system();
    let spec = ChildSpec {
        limits: ResourceLimits {
            memory_bytes: Some(256 << 20),
            ..ResourceLimits::default()
        },
        ..ChildSpec::default()
    };
    let hog = sys.create_actor_with::<Crasher>(spec).unwrap().address();
    let bystander = sys.create_actor::<Crasher>().unwrap().address();
    let hog_pid = ping(&sys, hog).pid;
    let bystander_pid = ping(&sys, bystander).pid;

    // Within the limit: fine.
    sys.tell(hog, Crash::Hog { bytes: 64 << 20 }).unwrap();
    assert_eq!(ping(&sys, hog).pid, hog_pid);
    // Over it: the process dies, the message comes back naming the limit.
    sys.tell(hog, Crash::Hog { bytes: 1 << 30 }).unwrap();
    let details = expect_poison(&sys, hog);
    assert!(details.contains("over its memory limit"), "{details}");
    assert_ne!(ping(&sys, hog).pid, hog_pid, "restarted by its policy");
    assert_eq!(ping(&sys, bystander).pid, bystander_pid, "other actors are untouched");
}

#[test]
fn an_actor_over_its_cpu_limit_dies_and_comes_back() {
    let sys = system();
    let spec = ChildSpec {
        limits: ResourceLimits {
            cpu_seconds: Some(1),
            ..ResourceLimits::default()
        },
        ..ChildSpec::default()
    };
    let spinner = sys.create_actor_with::<Crasher>(spec).unwrap().address();
    let pid = ping(&sys, spinner).pid;
    sys.tell(spinner, Crash::Spin).unwrap();
    let details = expect_poison(&sys, spinner);
    assert!(details.contains("over its CPU time limit"), "{details}");
    assert_ne!(ping(&sys, spinner).pid, pid);
}

#[test]
fn at_the_root_a_given_up_actor_fails_asks_with_the_cause_and_others_keep_running() {
    let config = SystemConfig::default().root_supervision(SupervisorSpec {
        max_restarts: 1,
        ..SupervisorSpec::default()
    });
    let sys = TestSystem::start_with(HOST, config);
    let doomed = sys.create_actor::<Crasher>().unwrap().address();
    let survivor = sys.create_actor::<Crasher>().unwrap().address();
    let survivor_pid = ping(&sys, survivor).pid;
    sigkill(ping(&sys, doomed).pid);
    let pid = ping(&sys, doomed).pid; // restarted once
    sigkill(pid);
    assert!(harness::wait_for_exit(pid, T));
    match gone_error(&sys, doomed) {
        Error::ActorGone {
            cause: ExitCause::RestartLimit { restarts, last, .. },
            ..
        } => {
            assert_eq!(restarts, 1);
            assert!(matches!(*last, ExitCause::Signal { signal: 9, .. }));
        }
        other => panic!("expected the root to give up with RestartLimit, got {other}"),
    }
    assert_eq!(ping(&sys, survivor).pid, survivor_pid);
}

#[test]
fn an_actor_sender_past_its_window_gets_a_clear_error_not_silence() {
    let config = SystemConfig::default().send_window(64 * 1024);
    let sys = TestSystem::start_with(HOST, config);
    let blaster = sys.create_actor::<Blaster>().unwrap().address();
    let recorder = sys.create_actor::<Recorder>().unwrap().address();
    // One receive tries to queue far more than the window before anything can be processed.
    let err = sys
        .ask::<_, bool>(
            blaster,
            Blast {
                to: recorder,
                count: 100_000,
            },
            T,
        )
        .unwrap_err();
    match &err {
        Error::Poisoned { details, .. } => {
            assert!(details.contains("is not keeping up"), "{details}");
            assert!(details.contains("limit 65536"), "{details}");
        }
        other => panic!("expected the Blast back with a backpressure error, got {other}"),
    }
    // What was accepted before the window filled is delivered, in order.
    let rec: Recorded = sys.ask(recorder, Report, T).unwrap();
    assert!(rec.count > 0 && rec.count < 100_000, "{rec:?}");
    assert!(rec.in_order);
}
