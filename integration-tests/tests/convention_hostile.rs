//! A convention under attack and under faults, with real admins and gateways on 127.0.0.x:
//!
//! * a flood of connections before authentication from one address, with half-open ones
//!   held, does not keep a new member out, does not slow the members' messages, writes a
//!   bounded number of log lines and costs the gateway and the admin bounded memory;
//! * an insider holding the cluster secret cannot ack, lose, close or accept another
//!   member's stream, nor speak for a member whose life another key proved;
//! * a half-open connection on `gateway.sock` costs the gateway at most 64 KiB, and a
//!   stalled one is cut at the handshake timeout;
//! * a gateway that ran out of fds accepts the connections that waited meanwhile once it
//!   has fds again, though nothing announces them again;
//! * the admin of a convention runs one thread;
//! * a gateway SIGKILLed under traffic both ways is restarted, and every message across is
//!   delivered once, or returned to its sender (both, when in doubt), never lost, never
//!   delivered twice.

use std::{
    collections::{BTreeMap, HashMap},
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use greenroom::{
    convention::{
        gateway::admission::HANDSHAKE_DEADLINE,
        link::{Link, LinkConfig},
        membership::DETECTION_TIME,
        ClusterSecret,
    },
    net::{endpoint::HANDSHAKE_TIMEOUT, log_limit::DEFAULT_BURST, log_limit::DEFAULT_WINDOW},
    runtime_dir, Address, Capabilities, Error, SystemConfig,
};
use greenroom_integration_tests::{
    actors::{Blast, Blaster, Echo, Recorded, Recorder, Report},
    harness,
    lab::{convention, free_addr, lab, members},
    ledger_actors::{
        Asked, DeadBook, DeadLedger, DeadReport, KeepDeadLetters, Ledger, LedgerReport, Pump, PumpRun, Receipt, Told,
    },
    TestSystem,
};
use greenroom_protocol::convention::{encode_hello, ConventionFrame, GatewayFrame};
use nix::{
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");

/// Taken by every test of this file for its whole length: the flood compares latencies
/// measured before, during and after it, and the other tests' traffic and kills, run
/// meanwhile on a 2-core machine, would weigh on one window and not the others.
static ALONE: Mutex<()> = Mutex::new(());

/// This file's tests run one at a time (see [`ALONE`]); one that failed frees the others.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A member of convention "lab" listening at `listen`, joining through `leader` (or
/// leading), logging to `log` if given.
fn start_member(secret: &Path, listen: SocketAddr, leader: Option<SocketAddr>, log: Option<&Path>) -> TestSystem {
    let mut config = SystemConfig::default().convention(convention(secret, listen, leader));
    if let Some(log) = log {
        config = config.log_file(log);
    }
    TestSystem::start_with(HOST, config)
}

/// A fresh secret in a new temporary directory.
fn new_secret() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    ClusterSecret::generate(&secret).unwrap();
    (dir, secret)
}

/// `sys`'s gateway pid and restart count, once a gateway runs (asking every 10 ms, up to
/// `within`).
fn gateway_of(sys: &TestSystem, within: Duration) -> (u32, u64) {
    let deadline = Instant::now() + within;
    loop {
        let view = sys.describe(false).unwrap().convention.expect("a convention member");
        if let Some(pid) = view.gateway_pid {
            return (pid, view.gateway_restarts);
        }
        assert!(Instant::now() < deadline, "no gateway runs after {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether every system of `systems` lists exactly the others (by their addresses).
fn all_list_each_other(systems: &[(&TestSystem, SocketAddr)]) -> bool {
    systems.iter().all(|(sys, me)| {
        let mut wanted: Vec<String> = systems
            .iter()
            .filter(|(_, addr)| addr != me)
            .map(|(_, addr)| addr.to_string())
            .collect();
        wanted.sort();
        members(sys) == wanted
    })
}

/// Waits until every system lists all the others (every 20 ms, up to `within`): how long.
fn wait_all_list_each_other(systems: &[(&TestSystem, SocketAddr)], within: Duration) -> Duration {
    let started = Instant::now();
    while !all_list_each_other(systems) {
        assert!(
            started.elapsed() < within,
            "after {within:?}: {:?}",
            systems.iter().map(|(sys, _)| members(sys)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Lines of the file at `path` now (0 if it does not exist yet).
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The count a summary line reports: `"<label>: N more in the last …"`, summed over `lines`.
fn reported(lines: &[String], label: &str) -> u64 {
    let marker = format!("{label}: ");
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find(&marker)? + marker.len()..];
            rest.split(" more in the last").next()?.parse::<u64>().ok()
        })
        .sum()
}

/// The `q`-quantile of sorted `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

/// Asks `echo` through `client`, one ask every `pace` (or back to back if late), until
/// `stop` or `count` samples: the round trips, sorted.
fn ask_round_trips(
    client: &greenroom::ActorSystem,
    echo: Address,
    stop: &AtomicBool,
    count: usize,
    pace: Duration,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    let started = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && samples.len() < count {
        let due = started + pace * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let t = Instant::now();
        let back: u64 = client.ask(echo, i, T).expect("an ask across members");
        samples.push(t.elapsed());
        assert_eq!(back, i);
        i += 1;
    }
    samples.sort();
    samples
}

fn describe_samples(what: &str, samples: &[Duration]) -> String {
    format!(
        "{what}: {} asks, p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        quantile(samples, 0.5),
        quantile(samples, 0.99),
        samples.last().copied().unwrap_or_default()
    )
}

/// A TCP connection from `source` (port chosen by the kernel) to `target`, closed with a
/// reset (SO_LINGER 0: no TIME_WAIT to exhaust the source's ports); `None` if it did not
/// connect within `within`.
fn connect_from(source: IpAddr, target: SocketAddr, within: Duration) -> Option<TcpStream> {
    use nix::sys::socket::{
        bind, connect, getsockopt, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&fd, sockopt::Linger, &linger).ok()?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(source, 0))).ok()?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS) => {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
            let ms = PollTimeout::try_from(within.as_millis() as i32).unwrap_or(PollTimeout::MAX);
            if poll(&mut fds, ms).ok()? == 0 {
                return None;
            }
            if getsockopt(&fd, sockopt::SocketError).ok()? != 0 {
                return None;
            }
        }
        Err(_) => return None,
    }
    Some(TcpStream::from(fd))
}

/// What a connection of the flood sends before it is reset: nothing, garbage, or a link's
/// opening cut short.
fn flood_bytes(i: u64) -> Vec<u8> {
    match i % 3 {
        0 => Vec::new(),
        1 => b"\x16\x03\x01 not a greenroom link, just noise".to_vec(),
        _ => encode_hello("lab").unwrap()[..4].to_vec(),
    }
}

/// What the flood did.
#[derive(Debug, Default)]
struct FloodCounts {
    /// Connections opened and reset by the flooders.
    connected: AtomicU64,
    /// Connections that did not connect in time.
    failed: AtomicU64,
    /// Half-open connections (re)opened by the holder.
    held_opened: AtomicU64,
    /// Half-open connections the gateway cut.
    held_cut: AtomicU64,
    /// The longest a half-open connection lived before it was cut, in ms.
    longest_held_ms: AtomicU64,
    /// The most half-open connections open at once.
    most_held: AtomicU64,
}

/// One flooding thread: `rate` connections per second from `source` to `target`, each
/// reset at once after sending [`flood_bytes`], until `stop`.
fn flooder(source: IpAddr, target: SocketAddr, rate: f64, stop: &AtomicBool, counts: &FloodCounts) {
    let started = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Paced: connection i is due at i / rate (a burst catches up after a slow connect).
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        match connect_from(source, target, Duration::from_millis(200)) {
            Some(mut stream) => {
                counts.connected.fetch_add(1, Ordering::Relaxed);
                let bytes = flood_bytes(i);
                if !bytes.is_empty() {
                    let _ = stream.write(&bytes);
                }
            }
            None => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        i += 1;
    }
}

/// How long a cut half-open connection waits before it is opened again.
const REOPEN_AFTER: Duration = Duration::from_millis(100);

/// The holder: keeps `n` connections from `source` to `target` open and silent (even ones)
/// or stalled after half a link opening (odd ones), opening each again [`REOPEN_AFTER`]
/// after the gateway cuts it, until `stop`. Every socket is closed when it returns.
fn holder(source: IpAddr, target: SocketAddr, n: usize, stop: &AtomicBool, counts: &FloodCounts) {
    let half_hello = encode_hello("lab").unwrap();
    let half_hello = &half_hello[..half_hello.len() / 2];
    let mut slots: Vec<Option<(TcpStream, Instant)>> = (0..n).map(|_| None).collect();
    let mut reopen_at: Vec<Instant> = vec![Instant::now(); n];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() && reopen_at[i] <= now {
                match connect_from(source, target, Duration::from_millis(200)) {
                    Some(mut stream) => {
                        if i % 2 == 1 {
                            let _ = stream.write(half_hello);
                        }
                        counts.held_opened.fetch_add(1, Ordering::Relaxed);
                        *slot = Some((stream, Instant::now()));
                    }
                    None => reopen_at[i] = now + REOPEN_AFTER,
                }
            }
        }
        let open = slots.iter().filter(|s| s.is_some()).count() as u64;
        counts.most_held.fetch_max(open, Ordering::Relaxed);
        // Which of them the gateway has cut (reset, or closed: readable with nothing to read).
        let open: Vec<usize> = (0..n).filter(|i| slots[*i].is_some()).collect();
        let mut fds: Vec<PollFd> = open
            .iter()
            .filter_map(|i| slots[*i].as_ref())
            .map(|(stream, _)| PollFd::new(stream.as_fd(), PollFlags::POLLIN))
            .collect();
        let _ = poll(&mut fds, PollTimeout::from(20u8));
        let cut: Vec<usize> = open
            .iter()
            .zip(&fds)
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| *i)
            .collect();
        drop(fds);
        for i in cut {
            let Some((stream, opened)) = slots[i].as_mut() else {
                continue;
            };
            let mut byte = [0u8; 64];
            let gone = match stream.read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false, // an answer (a refusal's reason): the end follows
                Err(e) => e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::Interrupted,
            };
            if gone {
                let lived = opened.elapsed().as_millis() as u64;
                counts.longest_held_ms.fetch_max(lived, Ordering::Relaxed);
                counts.held_cut.fetch_add(1, Ordering::Relaxed);
                slots[i] = None;
                reopen_at[i] = Instant::now() + REOPEN_AFTER;
            }
        }
    }
}

/// CPU time `pid` has used (user and system), from `/proc/PID/stat` (in clock ticks of
/// 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // After the command: state is field 3, utime 14 and stime 15.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The machine's load average over the last minute, for the record.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// Open fds of this test process.
fn own_fds() -> usize {
    harness::fd_count(std::process::id())
}

// ---------------------------------------------------------------------------------------
// 1. A flood before authentication
// ---------------------------------------------------------------------------------------

/// The flood's length.
const FLOOD: Duration = Duration::from_secs(30);
/// The flood's source: an address no member listens on.
const ATTACKER: &str = "127.0.0.9";
/// Connections per second of each of the two flooding threads.
const FLOOD_RATE_PER_THREAD: f64 = 650.0;
/// Half-open connections held at once.
const HELD: usize = 200;
/// Log lines the convention port may write in a flood of `FLOOD`: three kinds of event
/// (refused, handshake timed out, protocol error), each at most `DEFAULT_BURST` lines and
/// one count line per `DEFAULT_WINDOW`; a window opens at the first event after the last
/// one closed, so a flood of 30 s touches at most 30 / 10 + 1 = 4 windows of each kind.
fn port_log_bound() -> usize {
    let windows = (FLOOD.as_secs() / DEFAULT_WINDOW.as_secs()) as usize + 1;
    3 * windows * (DEFAULT_BURST as usize + 1)
}
/// Other lines the leader may log meanwhile (a member joining, its links): a stated margin.
const OTHER_LOG_LINES: usize = 30;
/// One ask every `PACE` while round trips are measured: far below what the path carries, so
/// that the figure is a message's latency, not the queue behind a saturated CPU (the test
/// host is a debug build, whose encryption costs the gateway about half a millisecond of
/// CPU per ask).
const PACE: Duration = Duration::from_millis(4);
/// Round trips measured without the flood, before and after it.
const SAMPLES: usize = 1000;
/// Memory the leader's gateway and admin may each hold (VmRSS) during the flood.
const RSS_BOUND_KIB: u64 = 64 * 1024;

#[test]
fn a_flood_before_authentication_keeps_no_member_out_slows_no_message_and_costs_bounded_log_and_memory() {
    let _alone = alone();
    greenroom::process_role::raise_open_files_limit();
    let (dir, secret) = new_secret();
    let log = dir.path().join("leader.log");
    let [a_addr, b_addr, c_addr, d_addr] = [1, 2, 3, 4].map(|i| free_addr(&format!("127.0.0.{i}")));
    let a = start_member(&secret, a_addr, None, Some(&log));
    let b = start_member(&secret, b_addr, Some(a_addr), None);
    wait_all_list_each_other(&[(&a, a_addr), (&b, b_addr)], T);

    // Unflooded: a member joins, and asks cross between the two.
    let t = Instant::now();
    let c = start_member(&secret, c_addr, Some(a_addr), None);
    wait_all_list_each_other(&[(&a, a_addr), (&b, b_addr), (&c, c_addr)], T);
    let quiet_join = t.elapsed();
    let echo = b.create_actor::<Echo>().unwrap().address();
    let client = a.private().unwrap();
    let never = AtomicBool::new(false);
    ask_round_trips(&client, echo, &never, 50, Duration::ZERO); // links opened, caches warm
    let (gateway, _) = gateway_of(&a, T);
    let (quiet_cpu, quiet_started) = (cpu_time(gateway), Instant::now());
    let quiet = ask_round_trips(&client, echo, &never, SAMPLES, PACE);
    let quiet_cpu = (cpu_time(gateway) - quiet_cpu, quiet_started.elapsed());
    eprintln!("{}", describe_samples("unflooded", &quiet));
    eprintln!("unflooded: a member joined in {quiet_join:?}");

    // The control, measured at the same time as the flooded asks: asks from the third
    // member to the same one, whose path crosses no flooded gateway.
    let control_echo = b.create_actor::<Echo>().unwrap().address();
    let control_client = c.private().unwrap();
    ask_round_trips(&control_client, control_echo, &never, 50, Duration::ZERO);

    let admin = a.admin_pid();
    let rss_before = (harness::rss_kib(gateway), harness::rss_kib(admin));
    let gateway_fds_before = harness::fd_count(gateway);
    let fds_before = own_fds();
    let log_before = lines_of(&log).len();
    let cpu_before = [gateway, admin, std::process::id()].map(cpu_time);

    let source: IpAddr = ATTACKER.parse().unwrap();
    let counts = FloodCounts::default();
    let stop = AtomicBool::new(false);
    let sampling = AtomicBool::new(false);
    let load_before = load_average();
    let (flooded, control, join, rss_max, flood_took, d) = std::thread::scope(|s| {
        let _stop = (StopOnDrop(&stop), StopOnDrop(&sampling));
        let flooders: Vec<_> = (0..2)
            .map(|_| s.spawn(|| flooder(source, a_addr, FLOOD_RATE_PER_THREAD, &stop, &counts)))
            .collect();
        let held = s.spawn(|| holder(source, a_addr, HELD, &stop, &counts));
        let flood_started = Instant::now();
        let sampler = s.spawn(|| ask_round_trips(&client, echo, &sampling, usize::MAX, PACE));
        let control = s.spawn(|| ask_round_trips(&control_client, control_echo, &sampling, usize::MAX, PACE));
        let mut rss_max = rss_before;
        let mut join = None;
        let mut d = None;
        while flood_started.elapsed() < FLOOD {
            rss_max.0 = rss_max.0.max(harness::rss_kib(gateway));
            rss_max.1 = rss_max.1.max(harness::rss_kib(admin));
            // A third of the way in, with the flood at full strength, a new member joins.
            if d.is_none() && flood_started.elapsed() >= FLOOD / 3 {
                let t = Instant::now();
                let new = start_member(&secret, d_addr, Some(a_addr), None);
                let all = [(&a, a_addr), (&b, b_addr), (&c, c_addr), (&new, d_addr)];
                wait_all_list_each_other(&all, 3 * T);
                join = Some(t.elapsed());
                d = Some(new);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        sampling.store(true, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let took = flood_started.elapsed();
        for f in flooders {
            f.join().expect("a flooder");
        }
        held.join().expect("the holder");
        let flooded = sampler.join().expect("the sampler");
        let control = control.join().expect("the control sampler");
        (flooded, control, join.expect("the member joined"), rss_max, took, d)
    });
    let load_during = load_average();
    let log_during = lines_of(&log);
    let cpu = [gateway, admin, std::process::id()].map(cpu_time);
    let share = |i: usize| 100.0 * (cpu[i] - cpu_before[i]).as_secs_f64() / flood_took.as_secs_f64();
    let after = ask_round_trips(&client, echo, &never, SAMPLES, PACE);
    let load_after = load_average();
    // Without the flood: before it and after it, so that what else runs on the machine
    // meanwhile weighs on both sides of the comparison.
    let mut unflooded: Vec<Duration> = quiet.iter().chain(&after).copied().collect();
    unflooded.sort();

    // The figures.
    let connected = counts.connected.load(Ordering::Relaxed);
    let rate = connected as f64 / flood_took.as_secs_f64();
    eprintln!(
        "flood from {ATTACKER}: {connected} connections in {flood_took:?} ({rate:.0}/s), {} did not connect; \
         half-open: {} opened, {} cut by the gateway, at most {} open at once, the longest held {} ms",
        counts.failed.load(Ordering::Relaxed),
        counts.held_opened.load(Ordering::Relaxed),
        counts.held_cut.load(Ordering::Relaxed),
        counts.most_held.load(Ordering::Relaxed),
        counts.longest_held_ms.load(Ordering::Relaxed),
    );
    let per_ask = quiet_cpu.0.as_secs_f64() / quiet.len() as f64;
    eprintln!(
        "gateway CPU without the flood: {:?} in {:?} for {} asks ({:.0} µs per ask: {:.0}% of the flood's length \
         for the flooded asks)",
        quiet_cpu.0,
        quiet_cpu.1,
        quiet.len(),
        per_ask * 1e6,
        100.0 * per_ask * flooded.len() as f64 / flood_took.as_secs_f64()
    );
    eprintln!(
        "CPU during the flood: gateway {:.1}%, admin {:.1}%, this test process (flooders, holder, asks) {:.1}%",
        share(0),
        share(1),
        share(2)
    );
    eprintln!("{}", describe_samples("before the flood", &quiet));
    eprintln!("{}", describe_samples("during the flood", &flooded));
    eprintln!("{}", describe_samples("after the flood", &after));
    eprintln!(
        "{}",
        describe_samples("meanwhile, the control (no flooded gateway on its path)", &control)
    );
    eprintln!("{}", describe_samples("unflooded (before and after)", &unflooded));
    eprintln!("load average (1 min): {load_before} before, {load_during} at the end of the flood, {load_after} after");
    eprintln!("a member joined in {join:?} during the flood ({quiet_join:?} without)");
    eprintln!(
        "RSS: gateway {} KiB -> at most {} KiB, admin {} KiB -> at most {} KiB",
        rss_before.0, rss_max.0, rss_before.1, rss_max.1
    );
    let new_lines = &log_during[log_before..];
    let port_lines = new_lines
        .iter()
        .filter(|l| l.contains("convention port") || l.contains("convention link refused"))
        .count();
    eprintln!(
        "the leader logged {} lines during the flood, {port_lines} of them about the port (bounds {} and {OTHER_LOG_LINES} more)",
        new_lines.len(),
        port_log_bound()
    );

    // (The flood was a flood.)
    assert!(rate >= 1000.0, "only {rate:.0} connections per second");
    assert!(
        counts.held_opened.load(Ordering::Relaxed) >= HELD as u64,
        "the half-open connections were opened"
    );
    // Half-open connections are cut at the handshake deadline, however many. (As the holder
    // sees it: it notices a cut only between its connects, each of which may wait 200 ms
    // for a port whose backlog the flood keeps full, so its figure runs late by up to a
    // second or two; the gateway.sock test measures the cut precisely.)
    let longest = Duration::from_millis(counts.longest_held_ms.load(Ordering::Relaxed));
    assert!(
        longest <= 2 * HANDSHAKE_DEADLINE,
        "a half-open connection was held {longest:?}"
    );
    // (a) A member joins as fast as a member is noticed.
    assert!(
        join <= 2 * DETECTION_TIME,
        "a new member took {join:?} to join during the flood"
    );
    // (b) Messages between members are not slowed: the flooded p99 within twice the
    // unflooded one. Unflooded is measured three ways: before and after the flood (the
    // machine quiet), and during it on a path that crosses no flooded gateway (the third
    // member asking the same one: the same moment, the same load on the machine, the
    // attacker included, who here shares the members' two cores). A p99 is a handful of
    // slow asks, and on this shared VM the same quiet workload's p99 moved 1.0–13 ms
    // between windows a minute apart, as the host's other tenants came and went; the
    // control taken at the same moment is what makes the comparison fair. The baseline is
    // the slowest of the three.
    let p99_unflooded = [&quiet, &after, &control]
        .iter()
        .map(|w| quantile(w, 0.99))
        .max()
        .unwrap_or_default();
    let p99_flooded = quantile(&flooded, 0.99);
    assert!(
        p99_flooded <= 2 * p99_unflooded,
        "ask p99 {p99_flooded:?} during the flood, {p99_unflooded:?} in the slowest unflooded window"
    );
    // (c) The log grows by a bounded number of lines.
    assert!(port_lines <= port_log_bound(), "{port_lines} lines about the port");
    assert!(
        new_lines.len() <= port_log_bound() + OTHER_LOG_LINES,
        "{} lines logged during the flood:\n{}",
        new_lines.len(),
        new_lines.join("\n")
    );
    // (d) Memory stays bounded.
    assert!(rss_max.0 <= RSS_BOUND_KIB, "the gateway held {} KiB", rss_max.0);
    assert!(rss_max.1 <= RSS_BOUND_KIB, "the admin held {} KiB", rss_max.1);

    // Every socket of the flood is closed, here and in the gateway (the held ones it
    // admitted end at their deadline at the latest; the member that joined leaves first).
    drop(d);
    assert!(
        own_fds() <= fds_before + 2,
        "{} fds here, {fds_before} before",
        own_fds()
    );
    let deadline = Instant::now() + HANDSHAKE_DEADLINE + T;
    while harness::fd_count(gateway) > gateway_fds_before + 2 {
        assert!(
            Instant::now() < deadline,
            "the gateway holds {} fds, {gateway_fds_before} before the flood",
            harness::fd_count(gateway)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gateway_of(&a, T).0, gateway, "the same gateway throughout");
}

// ---------------------------------------------------------------------------------------
// 2. Forged frames from an insider
// ---------------------------------------------------------------------------------------

/// Stream numbers to forge frames for: stream numbers are the gateway's clock at its start
/// (µs since the epoch) plus a count, which no one outside can read, so a spread of guesses
/// around the time the gateways started, and the small numbers.
fn stream_guesses(started_us: u64, now_us: u64) -> Vec<u64> {
    let mut guesses: Vec<u64> = (0..4).collect();
    let step = ((now_us - started_us) / 16).max(1);
    guesses.extend((0..=16).map(|i| started_us + i * step));
    guesses.push(u64::MAX);
    guesses
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Every frame an insider might forge about the stream `from` → `to` (`stream`), and about
/// the answers going back.
fn forgeries(from: Address, to: Address, stream: u64) -> Vec<GatewayFrame> {
    let payload = greenroom::AnyMessage::new(&424_242u64).unwrap().into_payload();
    let mut frames = Vec::new();
    for (from, to) in [(from, to), (to, from)] {
        frames.extend([
            GatewayFrame::Ack {
                from,
                to,
                stream,
                upto: u64::MAX / 2,
                incarnation: 1,
            },
            GatewayFrame::Lost {
                from,
                to,
                stream,
                reason: "forged".into(),
                incarnation: 1,
                refused: true,
            },
            GatewayFrame::Closed { from, to, stream },
            GatewayFrame::Accepted {
                from,
                to,
                stream,
                incarnation: 77,
            },
            GatewayFrame::Message {
                from,
                to,
                stream,
                seq: 1,
                correlation: greenroom_protocol::Correlation::None,
                payload: payload.clone(),
            },
        ]);
    }
    frames
}

/// An insider's link to `target`, its Hello sent for the member life `life`.
fn insider_link(target: SocketAddr, config: &LinkConfig, life: (SocketAddr, u64)) -> Link {
    let mut link = Link::connect(TcpStream::connect(target).unwrap(), config).unwrap();
    let hello = ConventionFrame::Hello {
        member: life.0,
        incarnation: life.1,
    };
    link.send(&postcard::to_allocvec(&hello).unwrap()).unwrap();
    link
}

const FRAMES_REFUSED: &str = "a gateway frame from a member refused";

#[test]
fn an_insider_cannot_ack_lose_close_or_accept_another_member_s_stream() {
    let _alone = alone();
    let (dir, secret) = new_secret();
    let (a_log, b_log) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let (a_addr, b_addr) = (free_addr("127.0.0.1"), free_addr("127.0.0.2"));
    let started_us = unix_us();
    let a = start_member(&secret, a_addr, None, Some(&a_log));
    let b = start_member(&secret, b_addr, Some(a_addr), Some(&b_log));
    wait_all_list_each_other(&[(&a, a_addr), (&b, b_addr)], T);
    let b_incarnation = b.describe(false).unwrap().convention.unwrap().me.incarnation;

    // Two real streams from the first member to the second: a client's, and an actor's.
    let recorder = b.create_actor::<Recorder>().unwrap().address();
    let recorder2 = b.create_actor::<Recorder>().unwrap().address();
    let blaster = a.create_actor::<Blaster>().unwrap().address();
    let client = a.address();
    a.tell(recorder, 0u64).unwrap();
    let seen: Recorded = a.ask(recorder, Report, T).unwrap();
    assert_eq!(seen.count, 1, "the client's stream is open");

    // An insider: the cluster secret, its own static key, and a member life of its own.
    let insider = LinkConfig::new("lab", ClusterSecret::load(&secret).unwrap()).unwrap();
    let fake_life = ("127.0.0.66:4242".parse().unwrap(), 7);
    let mut to_a = insider_link(a_addr, &insider, fake_life);
    let mut to_b = insider_link(b_addr, &insider, fake_life);
    let guesses = stream_guesses(started_us, unix_us());
    let mut forged = 0usize;
    const TOLD: u64 = 2000;
    std::thread::scope(|s| {
        // Meanwhile the real senders send numbered messages.
        let blasting = s.spawn(|| {
            let done: bool = a
                .ask(
                    blaster,
                    Blast {
                        to: recorder2,
                        count: TOLD,
                    },
                    T,
                )
                .unwrap();
            assert!(done);
        });
        for n in 1..=TOLD {
            a.tell(recorder, n).unwrap();
            // A burst of forgeries every 100 messages.
            if n % 100 == 0 {
                let stream = guesses[(n / 100) as usize % guesses.len()];
                for (from, to) in [(client, recorder), (blaster, recorder2)] {
                    for frame in forgeries(from, to, stream) {
                        let bytes = postcard::to_allocvec(&ConventionFrame::Gateway(frame)).unwrap();
                        to_a.send(&bytes).unwrap();
                        to_b.send(&bytes).unwrap();
                        forged += 1;
                    }
                }
            }
        }
        blasting.join().unwrap();
    });
    // And every guess once more, after the messages.
    for &stream in &guesses {
        for (from, to) in [(client, recorder), (blaster, recorder2)] {
            for frame in forgeries(from, to, stream) {
                let bytes = postcard::to_allocvec(&ConventionFrame::Gateway(frame)).unwrap();
                to_a.send(&bytes).unwrap();
                to_b.send(&bytes).unwrap();
                forged += 1;
            }
        }
    }
    let forged_at = Instant::now();

    // Nothing changed: every message arrived, once, in order, on both streams.
    let seen: Recorded = a.ask(recorder, Report, T).unwrap();
    assert_eq!(
        (seen.count, seen.in_order, seen.last),
        (TOLD + 1, true, Some(TOLD)),
        "the client's stream"
    );
    let deadline = Instant::now() + T;
    let seen = loop {
        // (The blaster's stream and this ask are two streams: ask until all have come.)
        let seen: Recorded = a.ask(recorder2, Report, T).unwrap();
        assert!(seen.in_order, "{seen:?}");
        if seen.count >= TOLD || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((seen.count, seen.last), (TOLD, Some(TOLD - 1)), "the actor's stream");
    let again: Recorded = a.ask(recorder, Report, T).unwrap();
    assert_eq!(again.count, TOLD + 1, "no forged message arrived later");

    // A link that claims the life of a live member with another key is cut at its Hello,
    // and said so in the log; what it sends after is not taken.
    let mut claims_b = insider_link(a_addr, &insider, (b_addr, b_incarnation));
    let forged_ack = forgeries(client, recorder, guesses[4]).remove(0);
    let _ = claims_b.send(&postcard::to_allocvec(&ConventionFrame::Gateway(forged_ack)).unwrap());
    assert!(claims_b.recv().is_err(), "the link is cut");
    let a_view = a.describe(false).unwrap().convention.unwrap();
    assert_eq!(members(&a), vec![b_addr.to_string()]);
    assert_eq!(a_view.members[0].incarnation, b_incarnation);

    // Every forged frame was refused (logged one by one up to the burst, then counted),
    // on both members; the count comes when the window ends.
    let deadline = forged_at + DEFAULT_WINDOW + T;
    for (what, log) in [("a", &a_log), ("b", &b_log)] {
        let (lines, count) = loop {
            let lines = lines_of(log);
            let one_by_one = lines.iter().filter(|l| l.contains(FRAMES_REFUSED)).count();
            let count = reported(&lines, "convention links: frames refused");
            if one_by_one as u64 + count >= forged as u64 || Instant::now() > deadline {
                break (lines, (one_by_one, count));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!(
            "{what}: {forged} forged frames: {} refusals logged one by one, {} counted",
            count.0, count.1
        );
        assert!(
            count.0 >= 1 && count.0 <= 2 * DEFAULT_BURST as usize,
            "{what}: {count:?}"
        );
        assert_eq!(
            count.0 as u64 + count.1,
            forged as u64,
            "{what}: every forged frame was refused:\n{}",
            lines
                .iter()
                .filter(|l| l.contains("refused"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        if what == "a" {
            let claimed = lines
                .iter()
                .any(|l| l.contains("convention link refused") && l.contains(&format!("the member at {b_addr}")));
            assert!(claimed, "the claim to b's life is logged");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Half-open connections on gateway.sock
// ---------------------------------------------------------------------------------------

/// Half-open connections per measurement, below the bound on pending connections (256).
const CONNS: usize = 200;
/// What one may cost the gateway, at most.
const BUDGET_KIB: f64 = 64.0;

/// Whether the other end closed `s` within `until` (read to its end, or reset).
fn closed_by_peer(s: &mut UnixStream, until: Instant) -> bool {
    let left = until
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let _ = s.set_read_timeout(Some(left));
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// An ask from `sys` to `echo` on another member and its answer: a round trip through both
/// gateways' loops, so that whatever reached them before has been seen.
fn round_trip(sys: &TestSystem, echo: Address) {
    let back: String = sys.ask(echo, "sync".to_string(), T).unwrap();
    assert_eq!(back, "sync");
}

#[test]
fn a_gateway_out_of_fds_accepts_the_waiting_connections_once_it_has_fds_again() {
    let _alone = alone();
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let ([a, b], [a_addr, _]) = (&lab.systems, lab.addrs);
    let echo = b.create_actor::<Echo>().unwrap().address();
    // Links up and connections open both ways: what follows needs no new fd in the gateway.
    let sync = || round_trip(a, echo);
    sync();
    let (gateway, _) = gateway_of(a, T);
    let fds = harness::fd_count(gateway);
    // Not one fd more: the accepts of the two connections below fail (EMFILE).
    let limit = harness::set_open_files_limit(gateway, harness::lowest_free_fd(gateway));
    let tcp = TcpStream::connect(a_addr).unwrap();
    let unix = UnixStream::connect(runtime_dir::gateway_socket_path(a.runtime_dir())).unwrap();
    // A round trip through the gateway's loop: it has seen both connections, and failed
    // to accept them.
    sync();
    assert_eq!(harness::fd_count(gateway), fds, "nothing was accepted without an fd");
    // Room again, and nothing new happens on either socket: the gateway must come back to
    // them by itself (readiness is edge-triggered, and was announced once).
    harness::set_open_files_limit(gateway, limit);
    let deadline = Instant::now() + T;
    while harness::fd_count(gateway) < fds + 2 {
        assert!(
            Instant::now() < deadline,
            "the waiting connections were not accepted: {} fds, {fds} before",
            harness::fd_count(gateway)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop((tcp, unix));
    sync();
}

#[test]
fn half_open_connections_on_gateway_sock_cost_the_gateway_at_most_64_kib_each_and_are_cut_in_time() {
    let _alone = alone();
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let [a, b] = &lab.systems;
    let echo = b.create_actor::<Echo>().unwrap().address();
    let sync = || round_trip(a, echo);
    sync();
    let (gateway, _) = gateway_of(a, T);
    let path = runtime_dir::gateway_socket_path(a.runtime_dir());
    let hello = harness::data_handshake(Address::new(a.address().node(), 777_777), echo);

    for round in 1..=2 {
        sync();
        let fds_before = harness::fd_count(gateway);
        let before = harness::private_dirty_kib(gateway);
        // Half announce a 16 MiB frame and send 512 KiB of it; half send half a handshake.
        let mut huge: Vec<UnixStream> = (0..CONNS / 2)
            .map(|_| {
                let mut s = UnixStream::connect(&path).expect("connect");
                s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut bytes = (16u32 * 1024 * 1024 - 1).to_le_bytes().to_vec();
                bytes.resize(4 + 512 * 1024, 0xab);
                let _ = s.write_all(&bytes); // closed under the write: fine
                s
            })
            .collect();
        let opened = Instant::now();
        let mut stalled: Vec<UnixStream> = (0..CONNS / 2)
            .map(|_| {
                let mut s = UnixStream::connect(&path).expect("connect");
                s.write_all(&hello[..hello.len() / 2]).unwrap();
                s
            })
            .collect();
        let until = Instant::now() + Duration::from_secs(2);
        let refused = huge.iter_mut().map(|s| closed_by_peer(s, until)).filter(|c| *c).count();
        while harness::fd_count(gateway) < fds_before + stalled.len() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        sync();
        let after = harness::private_dirty_kib(gateway);
        let held = harness::fd_count(gateway).saturating_sub(fds_before);
        let per = after.saturating_sub(before) as f64 / CONNS as f64;
        eprintln!(
            "gateway.sock round {round}: {CONNS} half-open connections: {before} KiB -> {after} KiB private dirty: \
             {per:.1} KiB each"
        );
        assert_eq!(refused, huge.len(), "announcing a 16 MiB frame is refused at once");
        assert!(held >= stalled.len(), "the stalled ones are held: {held}");
        assert!(per <= BUDGET_KIB, "a half-open connection cost {per:.1} KiB");

        // The stalled ones are cut at the handshake timeout: not before, not much after.
        let until = opened + HANDSHAKE_TIMEOUT + T;
        let mut cut_after = Vec::new();
        for s in stalled.iter_mut() {
            assert!(closed_by_peer(s, until), "a stalled connection is still open");
            cut_after.push(opened.elapsed());
        }
        let (first, last) = (cut_after[0], *cut_after.last().unwrap());
        eprintln!("gateway.sock round {round}: stalled connections cut after {first:?} to {last:?}");
        assert!(
            first >= HANDSHAKE_TIMEOUT - Duration::from_millis(100),
            "cut early: {first:?}"
        );
        assert!(last <= HANDSHAKE_TIMEOUT + Duration::from_secs(2), "cut late: {last:?}");
        drop(stalled);
        drop(huge);
        let deadline = Instant::now() + T;
        while harness::fd_count(gateway) > fds_before {
            assert!(Instant::now() < deadline, "the gateway keeps fds of closed connections");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    sync();
}

// ---------------------------------------------------------------------------------------
// 4. One admin thread
// ---------------------------------------------------------------------------------------

fn threads_of(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| {
            let tid = e.ok()?.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
            Some(format!("{tid} ({})", comm.trim()))
        })
        .collect()
}

#[test]
fn the_admin_of_a_convention_member_runs_one_thread() {
    let _alone = alone();
    let lab = lab([Capabilities::new(), Capabilities::new(), Capabilities::new()]);
    let [a, b, c] = &lab.systems;
    for sys in [a, b, c] {
        let threads = threads_of(sys.admin_pid());
        assert_eq!(threads.len(), 1, "a settled admin's threads: {threads:?}");
    }
    // Traffic across every pair, both ways: asks, tells, an actor's blast.
    let echoes: Vec<Address> = [a, b, c]
        .iter()
        .map(|sys| sys.create_actor::<Echo>().unwrap().address())
        .collect();
    for sys in [a, b, c] {
        for &echo in &echoes {
            for i in 0..20u64 {
                let back: u64 = sys.ask(echo, i, T).unwrap();
                assert_eq!(back, i);
            }
        }
    }
    let recorder = c.create_actor::<Recorder>().unwrap().address();
    let blaster = a.create_actor::<Blaster>().unwrap().address();
    let done: bool = a
        .ask(
            blaster,
            Blast {
                to: recorder,
                count: 500,
            },
            T,
        )
        .unwrap();
    assert!(done);
    for sys in [a, b, c] {
        let threads = threads_of(sys.admin_pid());
        assert_eq!(threads.len(), 1, "an admin's threads after traffic: {threads:?}");
        let (gateway, _) = gateway_of(sys, T);
        assert_eq!(
            harness::parent_of(gateway),
            Some(sys.admin_pid()),
            "the gateway is the admin's child"
        );
        assert!(
            std::fs::read(format!("/proc/{gateway}/cmdline"))
                .unwrap()
                .starts_with(b"greenroom-gateway"),
            "the gateway's title"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. A gateway SIGKILLed under traffic
// ---------------------------------------------------------------------------------------

/// How long a client waits for a receipt: an answer lost on its way back (in doubt, and
/// returned to the ledger's dead-letter path) is learnt only this way.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Nonce ranges: one per sender, so that every nonce names who sent it and how.
const ASKS: u64 = 1_000_000;
const TELLS: u64 = 2_000_000;
const PUMPED: u64 = 3_000_000;
/// Added to a nonce sent from the second member.
const FROM_B: u64 = 10_000_000;

/// What the senders of one member sent, and what came of their asks.
#[derive(Debug, Default)]
struct Sent {
    /// Every nonce sent (a call that failed included: it came back, or is in doubt).
    nonces: Vec<u64>,
    /// Asks answered with their receipt.
    asks_ok: Vec<u64>,
    /// Calls that failed, with the error's kind.
    failed: Vec<(u64, String)>,
}

fn error_kind(e: &Error) -> String {
    match e {
        Error::InDoubt(_) => "InDoubt".into(),
        Error::ActorGone { .. } => "ActorGone".into(),
        Error::Timeout { .. } => "Timeout".into(),
        Error::UnknownActor(_) => "UnknownActor".into(),
        Error::Backpressure { .. } => "Backpressure".into(),
        other => format!("other: {other}"),
    }
}

/// The traffic of one member to a ledger on the other, until `stop`: a client asking (one
/// ask every 5 ms), a client telling (5 every 25 ms), and an actor ([`Pump`]) telling (10
/// every 50 ms): about 600 messages a second each way, a fraction of what the debug build's
/// gateways carry (a saturated path is another test's subject). Each sender records what it
/// sent in `sent`.
fn traffic<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    sys: &'s TestSystem,
    to: Address,
    pump: Address,
    base: u64,
    stop: &'s AtomicBool,
    sent: &'s Mutex<Sent>,
) {
    s.spawn(move || {
        let client = sys.private().unwrap();
        let mut n = base + ASKS;
        let mut pace = Pace::every(Duration::from_millis(5));
        while !stop.load(Ordering::Relaxed) {
            pace.wait();
            n += 1;
            sent.lock().unwrap().nonces.push(n);
            match client.ask::<_, Receipt>(to, Asked(n), ASK_TIMEOUT) {
                Ok(Receipt(m)) => {
                    assert_eq!(m, n, "an ask's own answer");
                    sent.lock().unwrap().asks_ok.push(n);
                }
                Err(e) => sent.lock().unwrap().failed.push((n, error_kind(&e))),
            }
        }
    });
    s.spawn(move || {
        let client = sys.private().unwrap();
        let mut n = base + TELLS;
        let mut pace = Pace::every(Duration::from_millis(25));
        while !stop.load(Ordering::Relaxed) {
            pace.wait();
            for _ in 0..5 {
                n += 1;
                sent.lock().unwrap().nonces.push(n);
                if let Err(e) = client.tell(to, Told(n)) {
                    sent.lock().unwrap().failed.push((n, error_kind(&e)));
                }
            }
        }
    });
    s.spawn(move || {
        let client = sys.private().unwrap();
        let mut first = base + PUMPED + 1;
        let mut pace = Pace::every(Duration::from_millis(50));
        while !stop.load(Ordering::Relaxed) {
            pace.wait();
            let run = PumpRun { to, first, count: 10 };
            let done: bool = client.ask(pump, run, 4 * T).expect("the pump is local");
            assert!(done);
            sent.lock().unwrap().nonces.extend(first..first + 10);
            first += 10;
        }
    });
}

/// A fixed rate: [`Pace::wait`] returns at each tick (at once if late, without bursts to
/// catch up).
struct Pace {
    every: Duration,
    next: Instant,
}

impl Pace {
    fn every(every: Duration) -> Pace {
        Pace {
            every,
            next: Instant::now(),
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        }
        self.next = self.next.max(now) + self.every;
    }
}

/// Sets its flag when dropped: the threads of a scope that watch it stop even when the
/// scope's body panics (the scope waits for them before it unwinds).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// SIGKILLs `sys`'s gateway; returns once a new one runs (a child of the same admin,
/// counted as a restart): when it was killed, and how long the new one took.
fn kill_gateway(sys: &TestSystem) -> (Instant, Duration) {
    let (old, restarts) = gateway_of(sys, T);
    let killed = Instant::now();
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(old, T), "the gateway died");
    let deadline = Instant::now() + T;
    let (new, restarts_now) = loop {
        let (pid, now) = gateway_of(sys, T);
        if pid != old {
            break (pid, now);
        }
        assert!(Instant::now() < deadline, "no new gateway");
        std::thread::sleep(Duration::from_millis(5));
    };
    let restarted = killed.elapsed();
    assert!(
        restarts_now > restarts,
        "restarts counted: {restarts} -> {restarts_now}"
    );
    assert_eq!(
        harness::parent_of(new),
        Some(sys.admin_pid()),
        "the new gateway is the admin's"
    );
    eprintln!("gateway {old} SIGKILLed: gateway {new} runs after {restarted:?} (restarts: {restarts_now})");
    (killed, restarted)
}

/// The incarnation each system lists for each other member, by address.
fn identities(all: &[(&TestSystem, SocketAddr)]) -> Vec<Vec<(String, u64)>> {
    all.iter()
        .map(|(sys, _)| {
            let view = sys.describe(false).unwrap().convention.unwrap();
            view.members.into_iter().map(|m| (m.address, m.incarnation)).collect()
        })
        .collect()
}

/// Waits until `ledger` (asked through `sys`) has a tell of the client whose nonces start at
/// `base` that was sent after this call began: how long that took.
fn wait_for_tells(sys: &TestSystem, ledger: Address, sent: &Mutex<Sent>, base: u64, within: Duration) -> Duration {
    let ours = |n: &u64| (base..base + 1_000_000).contains(n);
    let mark = sent
        .lock()
        .unwrap()
        .nonces
        .iter()
        .copied()
        .filter(ours)
        .max()
        .unwrap_or(base);
    let started = Instant::now();
    loop {
        let seen: Vec<u64> = sys.ask(ledger, LedgerReport, T).unwrap();
        if seen.iter().any(|n| ours(n) && *n > mark) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no tell sent after {mark} arrived within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How much `sent` has had answered so far.
fn progress(sent: &Mutex<Sent>) -> (usize, usize) {
    let sent = sent.lock().unwrap();
    (sent.asks_ok.len(), sent.nonces.len())
}

/// Waits until the asks of each member have had `more` answers since `from` (up to
/// `within`): the traffic flows.
fn wait_for_traffic(sents: [&Mutex<Sent>; 2], more: usize, within: Duration) {
    let from = sents.map(|s| progress(s).0);
    let deadline = Instant::now() + within;
    while sents.iter().zip(from).any(|(s, f)| progress(s).0 < f + more) {
        assert!(
            Instant::now() < deadline,
            "the traffic does not flow: {:?} answered, from {from:?}",
            sents.map(progress)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_gateway_killed_under_traffic_is_restarted_and_every_message_is_delivered_once_or_returned() {
    let _alone = alone();
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let ([a, b], [a_addr, b_addr]) = (&lab.systems, lab.addrs);
    let all = [(a, a_addr), (b, b_addr)];
    let ledger = [a, b].map(|sys| sys.create_actor::<Ledger>().unwrap().address());
    let pump = [a, b].map(|sys| sys.create_actor::<Pump>().unwrap().address());
    let dead = [a, b].map(|sys| {
        let dead = sys.create_actor::<DeadLedger>().unwrap().address();
        let taken: bool = sys.ask(dead, KeepDeadLetters, T).unwrap();
        assert!(taken);
        dead
    });
    let sent = [Mutex::new(Sent::default()), Mutex::new(Sent::default())];
    let stop = AtomicBool::new(false);
    let before = identities(&all);
    let mut downtime = Vec::new();
    std::thread::scope(|s| {
        // However this ends (a failed assertion included), the traffic stops with it.
        let _stop = StopOnDrop(&stop);
        traffic(s, a, ledger[1], pump[0], 0, &stop, &sent[0]);
        traffic(s, b, ledger[0], pump[1], FROM_B, &stop, &sent[1]);
        wait_for_traffic([&sent[0], &sent[1]], 50, T);
        // Phase 1: the first member's gateway; phase 2: the second's.
        for (what, sys) in [("a", a), ("b", b)] {
            let (killed, restarted) = kill_gateway(sys);
            // The members list each other again, as the same lives (node ids unchanged: the
            // addresses of their actors still good), and asks cross again both ways.
            wait_all_list_each_other(&all, 2 * DETECTION_TIME);
            wait_for_traffic([&sent[0], &sent[1]], 1, ASK_TIMEOUT + T);
            let flowing = killed.elapsed();
            // A client that only tells carries on too: its tells sent from now on arrive.
            for (sys, ledger, sent, base) in [
                (b, ledger[1], &sent[0], TELLS),
                (a, ledger[0], &sent[1], FROM_B + TELLS),
            ] {
                let took = wait_for_tells(sys, ledger, sent, base, ASK_TIMEOUT + T);
                eprintln!("{what}'s gateway: new client tells from the other member arrive {took:?} later");
            }
            wait_for_traffic([&sent[0], &sent[1]], 50, ASK_TIMEOUT + T);
            assert!(all_list_each_other(&all), "{:?}", identities(&all));
            assert_eq!(identities(&all), before, "the same member lives");
            eprintln!("{what}'s gateway: restarted after {restarted:?}, asks answered both ways after {flowing:?}");
            downtime.push((restarted, flowing));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let sent = sent.map(|s| s.into_inner().unwrap());

    // Settled: every nonce sent is delivered or has come back (a returned one's dead letter
    // may still be on its way: ask until all are accounted for, up to a bound).
    let deadline = Instant::now() + 3 * T;
    let (delivered, books) = loop {
        let delivered: [Vec<u64>; 2] =
            [(a, ledger[0]), (b, ledger[1])].map(|(sys, ledger)| sys.ask(ledger, LedgerReport, T).unwrap());
        let books: [DeadBook; 2] =
            [(a, dead[0]), (b, dead[1])].map(|(sys, dead)| sys.ask(dead, DeadReport, T).unwrap());
        let known: std::collections::HashSet<u64> = delivered
            .iter()
            .flatten()
            .chain(books.iter().flat_map(|b| b.returned.iter()))
            .copied()
            .collect();
        let missing = sent
            .iter()
            .flat_map(|s| s.nonces.iter())
            .filter(|n| !known.contains(n))
            .count();
        if missing == 0 || Instant::now() > deadline {
            break (delivered, books);
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    // The accounting, per direction: the first member's senders to the second's ledger, and
    // back.
    let receipts: std::collections::HashSet<u64> = books.iter().flat_map(|b| b.receipts.iter().copied()).collect();
    let mut failures = Vec::new();
    for (dir, (sent, (delivered, book))) in sent.iter().zip(delivered.iter().rev().zip(books.iter())).enumerate() {
        let what = if dir == 0 { "a -> b" } else { "b -> a" };
        let mut times: HashMap<u64, u32> = HashMap::new();
        for n in delivered {
            *times.entry(*n).or_default() += 1;
        }
        let twice: Vec<u64> = times.iter().filter(|(_, t)| **t > 1).map(|(n, _)| *n).collect();
        let returned: std::collections::HashSet<u64> = book.returned.iter().copied().collect();
        let sent_set: std::collections::HashSet<u64> = sent.nonces.iter().copied().collect();
        let strangers: Vec<u64> = times.keys().filter(|n| !sent_set.contains(n)).copied().collect();
        let lost: Vec<u64> = sent
            .nonces
            .iter()
            .filter(|n| !times.contains_key(n) && !returned.contains(n))
            .copied()
            .collect();
        let ok_not_delivered: Vec<u64> = sent
            .asks_ok
            .iter()
            .filter(|n| !times.contains_key(n))
            .copied()
            .collect();
        // An ask that timed out was returned, or processed and its receipt came back (to the
        // ledger's dead-letter path, or to the asker's after it gave up): not silence.
        let unexplained_timeouts: Vec<u64> = sent
            .failed
            .iter()
            .filter(|(n, kind)| kind == "Timeout" && !returned.contains(n) && !receipts.contains(n))
            .map(|(n, _)| *n)
            .collect();
        let both = sent
            .nonces
            .iter()
            .filter(|n| times.contains_key(n) && returned.contains(n))
            .count();
        let only_returned = sent
            .nonces
            .iter()
            .filter(|n| !times.contains_key(n) && returned.contains(n))
            .count();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for (_, kind) in &sent.failed {
            *kinds.entry(kind.clone()).or_default() += 1;
        }
        let by_sender = |range: u64| {
            let base = if dir == 0 { range } else { FROM_B + range };
            sent.nonces
                .iter()
                .filter(|n| (base..base + 1_000_000).contains(*n))
                .count()
        };
        eprintln!(
            "{what}: sent {} ({} asks, {} client tells, {} actor tells); delivered {}, of which {both} also came back \
             (in doubt); {only_returned} came back undelivered; asks answered {}; failed calls {kinds:?}",
            sent.nonces.len(),
            by_sender(ASKS),
            by_sender(TELLS),
            by_sender(PUMPED),
            times.len(),
            sent.asks_ok.len(),
        );
        if !twice.is_empty() {
            failures.push(format!("{what}: delivered twice: {twice:?}"));
        }
        if !strangers.is_empty() {
            failures.push(format!("{what}: delivered but never sent: {strangers:?}"));
        }
        if !lost.is_empty() {
            failures.push(format!(
                "{what}: neither delivered nor returned: {} ({lost:?})",
                lost.len()
            ));
        }
        if !ok_not_delivered.is_empty() {
            failures.push(format!("{what}: answered but not delivered: {ok_not_delivered:?}"));
        }
        if !unexplained_timeouts.is_empty() {
            failures.push(format!(
                "{what}: asks timed out, neither returned nor their receipt: {unexplained_timeouts:?}"
            ));
        }
    }
    for (what, book) in ["a", "b"].iter().zip(&books) {
        eprintln!(
            "{what}'s dead letters: {} returned messages, {} receipts that did not reach their asker, others {:?}",
            book.returned.len(),
            book.receipts.len(),
            book.other
        );
    }
    eprintln!("gateways restarted, and asks answered both ways again, after {downtime:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(threads_of(a.admin_pid()).len(), 1);
}
