//! Troupes: one address in front of a pool of worker processes. Each test names the rule it
//! checks; most run on both bases (on the simple base a troupe runs its workers in turn, in
//! one thread), the ones that kill processes on the process base only.

use std::{
    collections::BTreeSet,
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use greenroom::{ActorSystem, Address, ChildSpec, Error, Troupe, TroupeReport, TroupeStatus, UpdateTroupeSettings};
use greenroom_integration_tests::{harness, on_both_bases, troupe_actors::*, TestSystem};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const T: Duration = Duration::from_secs(20);

/// How long a job works on the process base (the simple base does not sleep).
fn job_ms(sys: &TestSystem, ms: u64) -> u64 {
    if sys.is_simple() {
        0
    } else {
        ms
    }
}

fn status(client: &ActorSystem, troupe: Address) -> TroupeReport {
    client
        .ask(troupe, TroupeStatus, T)
        .expect("the troupe answers TroupeStatus")
}

/// The troupe's report once `ready` holds for it, asking again every 10 ms up to a bound
/// (then the last report, for the caller's assertion to show). What a report says can lag
/// what a client saw: a sender can have every answer before the manager has heard that the
/// last worker is free, and messages from two clients reach the manager in either order.
fn status_when(client: &ActorSystem, troupe: Address, ready: impl Fn(&TroupeReport) -> bool) -> TroupeReport {
    let deadline = Instant::now() + T;
    loop {
        let report = status(client, troupe);
        if ready(&report) || Instant::now() >= deadline {
            return report;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The report once no worker is busy.
fn settled_status(sys: &TestSystem, troupe: Address) -> TroupeReport {
    status_when(sys, troupe, |r| r.busy == 0)
}

/// Sends `jobs` to `troupe` from one actor, in one `receive`, and waits for every answer.
fn burst(sys: &TestSystem, troupe: Address, jobs: Vec<PoolJob>) -> BurstDone {
    let burster = sys.create_actor::<Burster>().unwrap().address();
    sys.ask(burster, Burst { troupe, jobs }, T)
        .expect("every job is answered")
}

fn workers_of(done: &BurstDone) -> BTreeSet<Address> {
    done.done.iter().map(|d| d.worker).collect()
}

/// Waits until `troupe` reports `workers` workers: on the simple base by moving the virtual
/// clock, on the process base by asking again until the deadline.
fn wait_for_workers(sys: &TestSystem, troupe: Address, workers: u32, within: Duration) -> TroupeReport {
    let deadline = Instant::now() + within;
    loop {
        let report = status(sys, troupe);
        if report.workers == workers {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "the troupe still has {} workers after {within:?}, not {workers}: {report:?}",
            report.workers
        );
        if sys.is_simple() {
            sys.advance_clock(Duration::from_millis(50)).unwrap();
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

on_both_bases! {
    fn a_burst_scales_the_troupe_up_to_max_workers_and_never_beyond(sys) {
        // PoolWorker declares a troupe of at most 3: a typed create makes the troupe.
        let troupe = sys.create_actor::<PoolWorker>().unwrap().address();
        let ms = job_ms(&sys, 100);
        let done = burst(&sys, troupe, (0..12).map(|id| PoolJob::work(id, ms)).collect());
        assert_eq!(done.done.len(), 12, "{done:?}");
        assert!(done.returned.is_empty(), "{done:?}");
        let ids: BTreeSet<u64> = done.done.iter().map(|d| d.id).collect();
        assert_eq!(ids, (0..12).collect(), "every job answered once");
        let workers = workers_of(&done);
        assert_eq!(workers.len(), 3, "a burst of 12 uses exactly max_workers = 3 workers: {workers:?}");
        assert!(!workers.contains(&troupe), "workers are actors of their own");
        let report = settled_status(&sys, troupe);
        assert!(report.workers <= 3, "{report:?}");
        assert_eq!((report.max_workers, report.busy, report.queued), (3, 0, 0), "{report:?}");
        if !sys.is_simple() {
            // Each worker is a process of its own, a child of the troupe's manager.
            let pids: BTreeSet<u32> = done.done.iter().map(|d| d.pid).collect();
            assert_eq!(pids.len(), 3, "{pids:?}");
            assert!(!pids.contains(&std::process::id()));
            let description = sys.describe(false).unwrap();
            let children = description.actors.iter().filter(|a| a.parent == Some(troupe)).count();
            assert!(children <= 3, "{children} workers under the manager");
        }
    }

    fn workers_see_the_original_sender_and_reply_to_it_directly(sys) {
        let troupe = sys.create_actor::<PoolWorker>().unwrap().address();
        let (replier, reply) = sys.ask_any(troupe, PoolJob::work(7, 0), T).unwrap();
        let done = reply.downcast::<JobDone>().expect("a JobDone");
        assert_eq!(done.sender_seen, sys.address(), "the worker saw the client as sender");
        assert_eq!(replier, done.worker, "the reply came from the worker itself");
        assert_ne!(replier, troupe, "not back through the manager");
        // From an actor too: every job's sender is the burster.
        let burster = sys.create_actor::<Burster>().unwrap().address();
        let done: BurstDone = sys.ask(burster, Burst { troupe, jobs: vec![PoolJob::work(1, 0), PoolJob::work(2, 0)] }, T).unwrap();
        assert!(done.done.iter().all(|d| d.sender_seen == burster), "{done:?}");
    }

    fn idle_workers_beyond_the_idle_count_are_stopped_after_the_idle_timeout(sys) {
        let troupe = sys.create_actor::<PoolWorker>().unwrap().address();
        let ms = job_ms(&sys, 100);
        let done = burst(&sys, troupe, (0..9).map(|id| PoolJob::work(id, ms)).collect());
        assert_eq!(workers_of(&done).len(), 3);
        let idle_since = sys.now();
        if sys.is_simple() {
            // The virtual clock has not moved: all three are still there, idle.
            assert_eq!(status(&sys, troupe).workers, 3);
            sys.advance_clock(Duration::from_millis(290)).unwrap();
            assert_eq!(status(&sys, troupe).workers, 3, "stopped before the idle timeout");
        }
        // idle_workers = 1: two of the three go.
        let report = wait_for_workers(&sys, troupe, 1, Duration::from_secs(10));
        // On the process base the workers went idle a little before the client heard the
        // burst was done (their "done" and their answers leave together): allow for that.
        let earliest = if sys.is_simple() { Duration::from_millis(300) } else { Duration::from_millis(250) };
        assert!(sys.now() - idle_since >= earliest, "stopped before the idle timeout");
        assert_eq!(report.busy, 0);
        if !sys.is_simple() {
            let pids: Vec<u32> = done.done.iter().map(|d| d.pid).collect::<BTreeSet<_>>().into_iter().collect();
            let exited = pids.iter().filter(|p| harness::wait_for_exit(**p, Duration::from_secs(5))).count();
            assert_eq!(exited, 2, "the stopped workers' processes are gone, the kept one runs");
        }
        // The kept worker still serves.
        let again: JobDone = sys.ask(troupe, PoolJob::work(100, 0), T).unwrap();
        assert!(workers_of(&done).contains(&again.worker));
    }

    fn a_worker_with_work_in_progress_gets_nothing_new_and_is_not_stopped(sys) {
        let settings = Troupe { max_workers: 1, idle_workers: 0, idle_timeout: Duration::from_millis(50), ..Troupe::default() };
        let troupe = sys.create_troupe::<PoolWorker>(settings, ChildSpec::default()).unwrap().address();
        let long: JobDone = sys.ask(troupe, PoolJob::Long { id: 1 }, T).unwrap();
        // Jobs 2 and 3 wait: in the manager once it has heard of the mark. The mark travels
        // from the worker, these jobs from this client, on two connections with no order
        // between them, so job 2 may have been handed ahead first; it then waits at the
        // worker, which defers it while the mark is set.
        sys.tell(troupe, PoolJob::work(2, 0)).unwrap();
        sys.tell(troupe, PoolJob::work(3, 0)).unwrap();
        // A status query waits behind its sender's own queued work, as every message keeps
        // its sender's order: ask from another client.
        let observer = sys.private().unwrap();
        let waiting = status_when(&observer, troupe, |r| r.queued >= 1);
        assert_eq!((waiting.workers, waiting.busy), (1, 1), "{waiting:?}");
        assert!((1..=2).contains(&waiting.queued), "{waiting:?}");
        // Well past the idle timeout, jobs 2 and 3 still wait and the busy worker is kept.
        assert!(sys.listen(Duration::from_millis(300)).unwrap().is_none(), "a job ran during work in progress");
        let report = status(&observer, troupe);
        assert_eq!(
            (report.workers, report.busy, report.queued),
            (1, 1, waiting.queued),
            "{report:?}"
        );
        // Clearing the mark frees the worker: jobs 2 and 3 run on it, in order.
        sys.tell(long.worker, FinishWork).unwrap();
        let (_, first) = sys.listen(T).unwrap().expect("WorkFinished");
        assert_eq!(first.downcast::<WorkFinished>(), Some(WorkFinished));
        for id in [2, 3] {
            let (_, answer) = sys.listen(T).unwrap().expect("the job's answer");
            let job = answer.downcast::<JobDone>().expect("a JobDone");
            assert_eq!((job.id, job.worker), (id, long.worker));
        }
        // Now idle with idle_workers = 0: stopped after the timeout.
        wait_for_workers(&sys, troupe, 0, Duration::from_secs(10));
    }

    fn a_job_that_fails_twice_goes_back_to_its_sender_and_the_troupe_carries_on(sys) {
        let troupe = sys.create_actor::<PoolWorker>().unwrap().address();
        let err = sys.ask::<_, JobDone>(troupe, PoolJob::Panic { id: 5 }, T).unwrap_err();
        match err {
            Error::Poisoned { message, details, .. } => {
                assert_eq!(message.downcast::<PoolJob>(), Some(PoolJob::Panic { id: 5 }));
                assert!(details.contains("job 5 fails on purpose"), "{details}");
            }
            other => panic!("expected the job back as poison, got {other}"),
        }
        let done: JobDone = sys.ask(troupe, PoolJob::work(6, 0), T).unwrap();
        assert_eq!(done.id, 6);
    }

    fn a_worker_can_send_work_to_its_own_full_troupe(sys) {
        // One worker, busy with the relay job when it sends the sub-job, and nothing handed
        // ahead: the sub-job waits in the manager, and the worker's "free" notice must not
        // wait behind it.
        let settings = Troupe { max_workers: 1, prefetch: 0, ..Troupe::default() };
        let troupe = sys.create_troupe::<PoolWorker>(settings, ChildSpec::default()).unwrap().address();
        let relay: JobDone = sys.ask(troupe, PoolJob::Relay { id: 1, sub: 2, troupe }, T).unwrap();
        let (_, forwarded) = sys.listen(T).unwrap().expect("the sub-job's answer, forwarded");
        let sub = forwarded.downcast::<JobDone>().expect("a JobDone");
        assert_eq!(sub.id, 2);
        assert_eq!(sub.worker, relay.worker, "the one worker ran both");
        assert_eq!(sub.sender_seen, relay.worker, "the sub-job's sender was the worker");
    }

    fn settings_are_read_and_changed_at_run_time(sys) {
        let troupe = sys.create_actor::<PoolWorker>().unwrap().address();
        let report = status(&sys, troupe);
        assert_eq!((report.max_workers, report.idle_workers, report.idle_timeout), (3, 1, Duration::from_millis(300)));
        assert_eq!(report.workers, 0, "workers start with the first message");
        let update = UpdateTroupeSettings { max_workers: Some(5), idle_workers: Some(0), prefetch: Some(0), idle_timeout: None };
        let report: TroupeReport = sys.ask(troupe, update, T).unwrap();
        assert_eq!((report.max_workers, report.idle_workers, report.prefetch), (5, 0, 0), "the values in effect come back");
        let ms = job_ms(&sys, 100);
        let done = burst(&sys, troupe, (0..15).map(|id| PoolJob::work(id, ms)).collect());
        assert_eq!(workers_of(&done).len(), 5);
        // Lowering the bound stops the idle extras at once, and only them.
        let update = UpdateTroupeSettings { max_workers: Some(2), ..UpdateTroupeSettings::default() };
        let report: TroupeReport = sys.ask(troupe, update, T).unwrap();
        assert_eq!(report.max_workers, 2);
        assert_eq!(report.workers, 2, "{report:?}");
        // Nonsense is made sensible: at least one worker.
        let update = UpdateTroupeSettings { max_workers: Some(0), ..UpdateTroupeSettings::default() };
        let report: TroupeReport = sys.ask(troupe, update, T).unwrap();
        assert_eq!(report.max_workers, 1);
    }
}

/// Binds a datagram socket for jobs to report their pid on.
fn pid_socket(sys: &TestSystem, name: &str) -> (UnixDatagram, std::path::PathBuf) {
    let path = sys.runtime_base().join(name);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(T)).unwrap();
    (socket, path)
}

fn recv_pid(socket: &UnixDatagram) -> u32 {
    let mut buf = [0u8; 32];
    let n = socket.recv(&mut buf).expect("the job reports its pid");
    std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap()
}

/// Collects answers to the client until `count` have come: (done, returned as poison).
fn collect(sys: &TestSystem, count: usize) -> (Vec<JobDone>, Vec<PoolJob>) {
    let (mut done, mut returned) = (Vec::new(), Vec::new());
    while done.len() + returned.len() < count {
        match sys.listen(T) {
            Ok(Some((_, msg))) => done.push(msg.downcast::<JobDone>().expect("a JobDone")),
            Ok(None) => panic!(
                "only {} of {count} answers came: {done:?} {returned:?}",
                done.len() + returned.len()
            ),
            Err(Error::Poisoned { message, .. }) => returned.push(message.downcast::<PoolJob>().expect("a PoolJob")),
            Err(e) => panic!("{e}"),
        }
    }
    (done, returned)
}

#[test]
fn a_worker_killed_mid_job_returns_it_as_poison_is_replaced_and_the_queue_drains() {
    let sys = TestSystem::start(env!("CARGO_BIN_EXE_greenroom-test-host"));
    let settings = Troupe {
        max_workers: 2,
        ..Troupe::default()
    };
    let troupe = sys
        .create_troupe::<PoolWorker>(settings, ChildSpec::default())
        .unwrap()
        .address();
    let (socket, path) = pid_socket(&sys, "victim");
    let victim_job = PoolJob::Work {
        id: 0,
        ms: 60_000,
        notify: Some(path),
    };
    sys.tell(troupe, victim_job.clone()).unwrap();
    let victim = recv_pid(&socket);
    // More work than the one other worker takes at once: most of it queues in the manager.
    for id in 1..=8 {
        sys.tell(troupe, PoolJob::work(id, 50)).unwrap();
    }
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let (done, returned) = collect(&sys, 9);
    assert_eq!(
        returned,
        vec![victim_job],
        "the job the worker died on comes back to its sender"
    );
    let ids: BTreeSet<u64> = done.iter().map(|d| d.id).collect();
    assert_eq!(ids, (1..=8).collect(), "the queued work is not lost");
    assert!(done.iter().all(|d| d.pid != victim));
    let report = status(&sys, troupe);
    assert!(report.workers <= 2 && report.queued == 0, "{report:?}");
    // The replacement serves at the dead worker's address.
    let workers: BTreeSet<Address> = done.iter().map(|d| d.worker).collect();
    assert!(workers.len() <= 2, "{workers:?}");
    assert!(harness::wait_for_exit(victim, Duration::from_secs(5)));
}

#[test]
fn a_killed_manager_loses_none_of_the_work_it_held() {
    let sys = TestSystem::start(env!("CARGO_BIN_EXE_greenroom-test-host"));
    let settings = Troupe {
        max_workers: 1,
        ..Troupe::default()
    };
    let troupe = sys
        .create_troupe::<PoolWorker>(settings, ChildSpec::default())
        .unwrap()
        .address();
    let (socket, path) = pid_socket(&sys, "first");
    sys.tell(
        troupe,
        PoolJob::Work {
            id: 1,
            ms: 500,
            notify: Some(path),
        },
    )
    .unwrap();
    recv_pid(&socket);
    for id in 2..=5 {
        sys.tell(troupe, PoolJob::work(id, 0)).unwrap();
    }
    // Job 2 is handed ahead to the worker; the queue of 3..=5 is the manager's unprocessed
    // mailbox: once it holds all three, kill it.
    let observer = sys.private().unwrap();
    let deadline = Instant::now() + T;
    while status(&observer, troupe).queued < 3 {
        assert!(Instant::now() < deadline, "the manager never held the queued work");
        std::thread::sleep(Duration::from_millis(10));
    }
    let description = sys.describe(false).unwrap();
    let manager = description.actors.iter().find(|a| a.address == troupe).unwrap();
    let row = manager.troupe.expect("the manager's row shows its troupe");
    assert_eq!((row.workers, row.busy, row.max_workers), (1, 1, 1));
    assert_eq!(manager.queued, Some(3), "status counts the held work as queued");
    let manager_pid = manager.pid.unwrap();
    kill(Pid::from_raw(manager_pid as i32), Signal::SIGKILL).unwrap();
    // The old worker, stopped with its manager, finishes job 1, and runs job 2 or returns it
    // to its sender; 3..=5 are sent again to the restarted manager and run.
    let (done, returned) = collect(&sys, 5);
    assert!(returned.iter().all(|job| *job == PoolJob::work(2, 0)), "{returned:?}");
    let mut ids: Vec<u64> = done.iter().map(|d| d.id).collect();
    ids.extend(returned.iter().map(|_| 2));
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "each job answered exactly once");
    assert!(
        sys.listen(Duration::from_millis(200)).unwrap().is_none(),
        "no duplicate answer"
    );
    assert!(harness::wait_for_exit(manager_pid, Duration::from_secs(5)));
    assert_eq!(sys.actor_info(troupe).unwrap().incarnation, 2);
}

#[test]
fn a_worker_killed_with_work_in_progress_is_used_again_after_its_restart() {
    let sys = TestSystem::start(env!("CARGO_BIN_EXE_greenroom-test-host"));
    let settings = Troupe {
        max_workers: 1,
        prefetch: 0,
        ..Troupe::default()
    };
    let troupe = sys
        .create_troupe::<PoolWorker>(settings, ChildSpec::default())
        .unwrap()
        .address();
    let long: JobDone = sys.ask(troupe, PoolJob::Long { id: 1 }, T).unwrap();
    kill(Pid::from_raw(long.pid as i32), Signal::SIGKILL).unwrap();
    // Its mark died with its process: the restarted worker takes the next job.
    sys.tell(troupe, PoolJob::work(2, 0)).unwrap();
    let next = loop {
        match sys.listen(T) {
            Ok(Some((_, msg))) => break msg.downcast::<JobDone>().expect("a JobDone"),
            Ok(None) => panic!("job 2 was never answered: the restarted worker is not used"),
            // Killed after its reply left but before the job was recorded done: the job also
            // comes back (see "Reply and poison" in ARCHITECTURE.md).
            Err(Error::Poisoned { message, .. }) if message.downcast() == Some(PoolJob::Long { id: 1 }) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!((next.id, next.worker), (2, long.worker), "the same address, restarted");
    assert_ne!(next.pid, long.pid);
}

#[test]
fn after_a_group_restart_of_its_workers_the_troupe_uses_them_all_again() {
    let sys = TestSystem::start(env!("CARGO_BIN_EXE_greenroom-test-host"));
    let settings = Troupe {
        max_workers: 2,
        ..Troupe::default()
    };
    let mut spec = ChildSpec::default();
    spec.supervision.strategy = greenroom::Strategy::OneForAll;
    let troupe = sys.create_troupe::<PoolWorker>(settings, spec).unwrap().address();
    // Worker A marks work in progress; worker B runs a job that hangs, with one handed ahead.
    let long: JobDone = sys.ask(troupe, PoolJob::Long { id: 1 }, T).unwrap();
    let (socket, path) = pid_socket(&sys, "hung");
    let hung = PoolJob::Work {
        id: 2,
        ms: 60_000,
        notify: Some(path),
    };
    sys.tell(troupe, hung.clone()).unwrap();
    let victim = recv_pid(&socket);
    sys.tell(troupe, PoolJob::work(3, 0)).unwrap();
    // Killing B restarts both (one for all).
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let (done, returned) = collect(&sys, 2);
    assert_eq!(returned, vec![hung]);
    assert_eq!(done.iter().map(|d| d.id).collect::<Vec<_>>(), vec![3]);
    // Both workers are free again and both are used.
    let ms = 100;
    let burst_done = burst(&sys, troupe, (10..16).map(|id| PoolJob::work(id, ms)).collect());
    assert_eq!(burst_done.done.len(), 6, "{burst_done:?}");
    let workers = workers_of(&burst_done);
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(workers.contains(&long.worker));
    let report = settled_status(&sys, troupe);
    assert_eq!((report.workers, report.busy, report.queued), (2, 0, 0), "{report:?}");
}

#[test]
fn a_job_running_when_its_exiting_troupe_kills_the_worker_goes_back_to_its_sender() {
    let sys = TestSystem::start(env!("CARGO_BIN_EXE_greenroom-test-host"));
    let settings = Troupe {
        max_workers: 1,
        prefetch: 0,
        ..Troupe::default()
    };
    let mut spec = ChildSpec::default();
    spec.supervision.stop_timeout = Duration::from_millis(300);
    let troupe = sys.create_troupe::<PoolWorker>(settings, spec).unwrap().address();
    let (socket, path) = pid_socket(&sys, "slow");
    let slow = PoolJob::Work {
        id: 1,
        ms: 60_000,
        notify: Some(path),
    };
    sys.tell(troupe, slow.clone()).unwrap();
    let worker = recv_pid(&socket);
    // The manager exits; its worker does not finish in the stop timeout and is killed.
    sys.tell(troupe, greenroom::ActorExitRequest).unwrap();
    assert!(harness::wait_for_exit(worker, T));
    let (done, returned) = collect(&sys, 1);
    assert!(done.is_empty());
    assert_eq!(returned, vec![slow], "the job comes back through the exiting manager");
}
