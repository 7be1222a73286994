//! Strangers on every kind of Unix socket of a system — the admin's `admin.sock`, an actor's
//! socket, a client's socket — measured against the processes that listen on them:
//!
//! * a connection that has not completed its handshake costs its listener at most what a
//!   handshake needs (asserted: at most 64 KiB each, measured from `/proc`), however large a
//!   frame it announces;
//! * a flood of connections that never say anything costs the log a few lines per window
//!   and one line with the count of the rest, not a line each.

use std::{
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use greenroom::{net::endpoint::HANDSHAKE_TIMEOUT, runtime_dir, Address, SystemConfig};
use greenroom_integration_tests::{actors::Echo, harness, TestSystem};
use greenroom_protocol::{Handshake, PeerRole};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);
/// Half-open connections per measurement: below the default bound on pending connections
/// (256), so that every one is accepted and held.
const CONNS: usize = 200;
/// What one half-open connection may cost its listener, at most.
const BUDGET_KIB: f64 = 64.0;
/// What a connection announcing a huge frame sends after its length prefix.
const HUGE_BODY: usize = 512 * 1024;

fn client_hello() -> Vec<u8> {
    let mut buf = Vec::new();
    Handshake { role: PeerRole::Client }.encode(&mut buf).unwrap();
    buf
}

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

/// Whether `s` is still open at the other end (nothing to read, no end of stream).
fn still_open(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    matches!((&*s).read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// One listening socket to measure: the process behind it, its path, the handshake a peer
/// would send it, and a round trip through that process's loop.
struct Target<'a> {
    what: &'static str,
    pid: u32,
    path: PathBuf,
    hello: Vec<u8>,
    sync: Box<dyn Fn() + 'a>,
}

/// Opens [`CONNS`] half-open connections to `target` — half of them send a handshake cut
/// short and stall, half announce a 16 MiB frame, send 512 KiB of it and stall — and
/// returns what each cost the listening process, in KiB. Asserts that the listener closed
/// the ones announcing a huge frame and holds the others.
fn cost_per_half_open_connection(target: &Target) -> f64 {
    (target.sync)();
    let fds_before = harness::fd_count(target.pid);
    let before = harness::private_dirty_kib(target.pid);

    let mut huge: Vec<UnixStream> = (0..CONNS / 2)
        .map(|_| {
            let mut s = UnixStream::connect(&target.path).expect("connect");
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut bytes = (16u32 * 1024 * 1024 - 1).to_le_bytes().to_vec();
            bytes.resize(4 + HUGE_BODY, 0xab);
            // Refused at its prefix, the connection is closed under the write: that is fine.
            let _ = s.write_all(&bytes);
            s
        })
        .collect();
    let half = target.hello.len() / 2;
    let stalled: Vec<UnixStream> = (0..CONNS / 2)
        .map(|_| {
            let mut s = UnixStream::connect(&target.path).expect("connect");
            s.write_all(&target.hello[..half]).unwrap();
            s
        })
        .collect();

    // Events: the listener closes every connection that announced a huge frame, and holds
    // (its fd count shows) every stalled one.
    let until = Instant::now() + Duration::from_secs(2);
    let closed = huge.iter_mut().map(|s| closed_by_peer(s, until)).filter(|c| *c).count();
    while harness::fd_count(target.pid) < fds_before + stalled.len() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    (target.sync)();
    let after = harness::private_dirty_kib(target.pid);
    let held = stalled.iter().filter(|s| still_open(s)).count();
    let per = after.saturating_sub(before) as f64 / CONNS as f64;
    eprintln!(
        "{}: {CONNS} half-open connections: {before} KiB -> {after} KiB private dirty: {per:.1} KiB each",
        target.what
    );
    assert_eq!(
        closed,
        huge.len(),
        "{}: connections announcing a 16 MiB frame before their handshake are refused at once",
        target.what
    );
    assert_eq!(
        held,
        stalled.len(),
        "{}: stalled handshakes are still held",
        target.what
    );
    assert!(
        harness::fd_count(target.pid) >= fds_before + stalled.len(),
        "{}: the listener accepted every stalled connection",
        target.what
    );
    // Abandoned: the listener closes them at their end of stream, and holds nothing more.
    drop(stalled);
    drop(huge);
    let until = Instant::now() + HANDSHAKE_TIMEOUT + T;
    while harness::fd_count(target.pid) > fds_before && Instant::now() < until {
        (target.sync)();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        harness::fd_count(target.pid) <= fds_before,
        "{}: every connection's fd is released",
        target.what
    );
    per
}

/// A client process of the system in `dir` that echoes what it gets (the test host's
/// `--echo-client`), killed and reaped when dropped.
struct EchoClient {
    child: Child,
    address: Address,
    pid: u32,
}

impl EchoClient {
    fn start(dir: &Path) -> EchoClient {
        use std::io::BufRead;
        let mut child = Command::new(HOST)
            .args(["--echo-client", dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["client", id, "pid", pid] => EchoClient {
                address: Address::local(id.parse().unwrap()),
                pid: pid.parse().unwrap(),
                child,
            },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the echo client did not start: {line}");
            }
        }
    }
}

impl Drop for EchoClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn half_open_connections_on_each_kind_of_unix_socket_cost_at_most_64_kib_each() {
    // Hundreds of refusals; their log lines are another test's subject.
    let sys = TestSystem::start_with(HOST, SystemConfig::default().log_level(tracing::Level::ERROR));
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let client = EchoClient::start(sys.runtime_dir());
    let ask = |to: Address| {
        let back: String = sys.ask(to, "sync".to_string(), T).unwrap();
        assert_eq!(back, "sync");
    };
    ask(client.address);

    let targets = [
        Target {
            what: "admin.sock (admin)",
            pid: sys.admin_pid(),
            path: runtime_dir::admin_socket_path(sys.runtime_dir()),
            hello: client_hello(),
            sync: Box::new(|| {
                sys.describe(false).unwrap();
            }),
        },
        Target {
            what: "actor socket (host)",
            pid: sys.actor_info(echo).unwrap().pid.unwrap(),
            path: runtime_dir::socket_path(sys.runtime_dir(), echo),
            hello: harness::data_handshake(Address::local(777_777), echo),
            sync: Box::new(|| ask(echo)),
        },
        Target {
            what: "client socket (client)",
            pid: client.pid,
            path: runtime_dir::socket_path(sys.runtime_dir(), client.address),
            hello: harness::data_handshake(Address::local(777_777), client.address),
            sync: Box::new(|| ask(client.address)),
        },
    ];
    for target in &targets {
        // Twice: the first round also pays for what the listener allocates once (tables
        // grown, buffers the allocator keeps), the second shows what stays per connection.
        for round in 1..=2 {
            let per = cost_per_half_open_connection(target);
            assert!(
                per <= BUDGET_KIB,
                "{}: a half-open connection cost {per:.1} KiB in round {round}, more than {BUDGET_KIB} KiB",
                target.what
            );
        }
    }
    ask(echo);
    ask(client.address);
}

/// Lines of `log` that contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The count a summary line reports: `"<label>: N more in the last …"`, 0 if none.
fn reported(log: &str, label: &str) -> u64 {
    let marker = format!("{label}: ");
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find(&marker)? + marker.len()..];
            rest.split(" more in the last").next()?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn a_flood_of_idle_connections_logs_a_few_lines_and_a_count_per_socket() {
    // 600 connections from this process at once.
    greenroom::process_role::raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("system.log");
    let sys = TestSystem::start_with(HOST, SystemConfig::default().log_file(&log_path));
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let back: String = sys.ask(echo, "ready".to_string(), T).unwrap();
    assert_eq!(back, "ready");
    let limit = greenroom::net::pending::DEFAULT_MAX_PENDING;
    let flood = limit + 44;

    // Connections that never say a word: the first `limit` wait for their handshake and
    // time out, the rest are refused at once; on admin.sock and on the actor's socket.
    let admin_sock = runtime_dir::admin_socket_path(sys.runtime_dir());
    let actor_sock = runtime_dir::socket_path(sys.runtime_dir(), echo);
    let mut idle: Vec<UnixStream> = [&admin_sock, &actor_sock]
        .iter()
        .flat_map(|path| (0..flood).map(move |_| UnixStream::connect(path).expect("connect")))
        .collect();
    let until = Instant::now() + HANDSHAKE_TIMEOUT + T;
    let closed = idle.iter_mut().map(|s| closed_by_peer(s, until)).filter(|c| *c).count();
    assert_eq!(
        closed,
        idle.len(),
        "every idle connection is closed, refused or timed out"
    );

    // The counts come when each window ends (10 s after its first line).
    let labels = [
        ("admin.sock: handshake timeouts", limit),
        ("admin.sock: refused connections", flood - limit),
        ("actor socket: handshake timeouts", limit),
        ("actor socket: refused connections", flood - limit),
    ];
    let deadline = Instant::now() + greenroom::net::log_limit::DEFAULT_WINDOW + T;
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if labels.iter().all(|(label, _)| reported(&log, label) > 0) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = log.lines().count();
    eprintln!("{} idle connections on two sockets: {lines} log lines", 2 * flood);
    let burst = greenroom::net::log_limit::DEFAULT_BURST as usize;
    let one_by_one = [
        count(
            &log,
            "closing a client connection that did not complete its handshake in time",
        ),
        count(&log, "listener=\"admin.sock\"") + count(&log, "listener=admin.sock"),
        count(&log, "closing a connection that did not complete its handshake in time"),
        count(&log, "listener=\"actor socket\"") + count(&log, "listener=actor socket"),
    ];
    for ((label, events), logged) in labels.iter().zip(one_by_one) {
        assert!(
            logged <= burst,
            "{label}: {logged} lines one by one, at most {burst}:\n{log}"
        );
        assert_eq!(
            logged as u64 + reported(&log, label),
            *events as u64,
            "{label}: the lines and the count add up to every event:\n{log}"
        );
    }
    assert!(lines <= 40, "{lines} lines for {} idle connections:\n{log}", 2 * flood);
}
