//! Chaos: a pipeline client → A → B → C → client under steady load while a chaos thread
//! SIGKILLs a random stage every 50–200 ms and now and then pauses one (SIGSTOP/SIGCONT).
//! Every message carries a unique id; at the end each id must have arrived exactly once or
//! come back as poison — none unaccounted, none delivered twice.
//!
//! Bounded to about 20 s of load by default; set `GREENROOM_CHAOS_SECS` for longer.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use greenroom::Error;
use greenroom_integration_tests::{
    actors::{Returned, Stage, Tracked},
    harness, TestSystem,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Sent,
    Delivered,
    Returned,
    /// Delivered, and also returned as poison: the stage died after forwarding it but
    /// before recording it as done ("may not have finished"). Counts as delivered.
    DeliveredAndReturned,
}

/// A small deterministic generator, so a failing run can be replayed from its seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn nothing_is_lost_or_duplicated_while_stages_are_killed_and_paused() {
    std::env::set_var("GREENROOM_LOG", "error");
    let load_for = Duration::from_secs(
        std::env::var("GREENROOM_CHAOS_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    let config = harness::restart_at_once(100_000);
    let sys = TestSystem::start_with(HOST, config);
    let stages: Vec<_> = (0..3).map(|_| sys.create_actor::<Stage>().unwrap().address()).collect();
    let admin = sys.admin_pid();
    let admin_fds = harness::fd_count(admin);
    let admin_rss = harness::rss_kib(admin);

    let stop = AtomicBool::new(false);
    let kills = AtomicU64::new(0);
    let pauses = AtomicU64::new(0);
    let mut fates: HashMap<u64, Fate> = HashMap::new();
    let (mut delivered_twice, mut unknown) = (0u64, 0u64);

    std::thread::scope(|scope| {
        // The chaos thread.
        scope.spawn(|| {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                let wait = 50 + next_random(&mut seed) % 150;
                std::thread::sleep(Duration::from_millis(wait));
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let victim = stages[(next_random(&mut seed) % 3) as usize];
                let Ok(Some(pid)) = sys.actor_info(victim).map(|i| i.pid) else {
                    continue;
                };
                let pid = Pid::from_raw(pid as i32);
                if next_random(&mut seed) % 5 == 0 {
                    let _ = kill(pid, Signal::SIGSTOP);
                    std::thread::sleep(Duration::from_millis(30));
                    let _ = kill(pid, Signal::SIGCONT);
                    pauses.fetch_add(1, Ordering::Relaxed);
                } else if kill(pid, Signal::SIGKILL).is_ok() {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        });

        // The load: one message every 200 µs or so, draining answers as it goes.
        let route = vec![stages[1], stages[2], sys.address()];
        let mut record = |result: Result<Option<(greenroom::Address, greenroom::AnyMessage)>, Error>,
                          fates: &mut HashMap<u64, Fate>| {
            let (id, returned) = match result {
                Ok(Some((_, msg))) => {
                    if let Some(t) = msg.downcast::<Tracked>() {
                        (t.id, false)
                    } else if let Some(r) = msg.downcast::<Returned>() {
                        (r.id, true)
                    } else {
                        return;
                    }
                }
                Err(Error::Poisoned { message, .. }) => match message.downcast::<Tracked>() {
                    Some(t) => (t.id, true),
                    None => return,
                },
                Ok(None) => return,
                Err(e) => panic!("the client failed: {e}"),
            };
            let fate = fates.entry(id).or_insert(Fate::Sent);
            *fate = match (*fate, returned) {
                (Fate::Sent, false) => Fate::Delivered,
                (Fate::Sent, true) => Fate::Returned,
                (Fate::Delivered, true) | (Fate::Returned, false) => Fate::DeliveredAndReturned,
                (Fate::Delivered | Fate::DeliveredAndReturned, false) => {
                    delivered_twice += 1;
                    *fate
                }
                (_, true) => *fate,
            };
        };
        let started = Instant::now();
        let mut id = 0u64;
        while started.elapsed() < load_for {
            id += 1;
            fates.insert(id, Fate::Sent);
            let msg = Tracked {
                id,
                route: route.clone(),
                origin: sys.address(),
            };
            sys.tell(stages[0], msg).unwrap();
            while let r @ (Ok(Some(_)) | Err(_)) = sys.listen(Duration::from_micros(200)) {
                record(r, &mut fates);
            }
        }
        stop.store(true, Ordering::Relaxed);
        // Let everything in flight settle.
        let deadline = Instant::now() + Duration::from_secs(30);
        while fates.values().any(|f| *f == Fate::Sent) && Instant::now() < deadline {
            let r = sys.listen(Duration::from_millis(100));
            record(r, &mut fates);
        }
        unknown = fates.values().filter(|f| **f == Fate::Sent).count() as u64;
    });

    let count = |f: Fate| fates.values().filter(|x| **x == f).count();
    println!(
        "chaos: sent={} delivered={} returned={} delivered_and_returned={} unaccounted={unknown} delivered_twice={delivered_twice} kills={} pauses={}",
        fates.len(),
        count(Fate::Delivered),
        count(Fate::Returned),
        count(Fate::DeliveredAndReturned),
        kills.load(Ordering::Relaxed),
        pauses.load(Ordering::Relaxed),
    );
    assert!(kills.load(Ordering::Relaxed) > 0, "the chaos thread killed nothing");
    assert_eq!(unknown, 0, "messages neither delivered nor returned");
    assert_eq!(delivered_twice, 0, "messages delivered more than once");
    // One more message through the whole pipeline: every stage is up again after the last
    // kill, so the admin's bookkeeping has settled.
    let last = Tracked {
        id: u64::MAX,
        route: vec![stages[1], stages[2], sys.address()],
        origin: sys.address(),
    };
    sys.tell(stages[0], last).unwrap();
    loop {
        match sys.listen(Duration::from_secs(10)) {
            Ok(Some((_, msg))) if msg.downcast::<Tracked>().is_some_and(|t| t.id == u64::MAX) => break,
            Ok(Some(_)) | Err(Error::Poisoned { .. }) => continue,
            other => panic!("the pipeline did not come back: {other:?}"),
        }
    }
    assert_eq!(harness::zombie_children_of(admin), Vec::<u32>::new());
    assert_eq!(sys.host_pids().len(), 3, "exactly the three stages are running");
    // The admin holds 3 fds per actor and its own; kills must not leak any.
    assert_eq!(harness::fd_count(admin), admin_fds, "admin fds back to baseline");
    let rss = harness::rss_kib(admin);
    assert!(
        rss <= admin_rss + 4096,
        "admin RSS grew from {admin_rss} KiB to {rss} KiB"
    );
}
