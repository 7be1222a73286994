//! The system's log: records and raw stderr output of actor hosts reach the one log file
//! given at start, through the admin, tagged with the actor's type, address and pid, and
//! filtered at the level given at start.

use std::{
    collections::BTreeSet,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use greenroom::{actor_type_name, Address, Error, SystemConfig};
use greenroom_integration_tests::{actors::*, TestSystem};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);
/// How long a line may take to reach the file.
const ARRIVAL: Duration = Duration::from_secs(20);

/// A system logging at `level` to a file in a fresh temporary directory (returned, so that
/// it outlives the system: declare it first).
fn system(level: tracing::Level) -> (tempfile::TempDir, PathBuf, TestSystem) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("system.log");
    let sys = TestSystem::start_with(HOST, SystemConfig::default().log_level(level).log_file(&path));
    (dir, path, sys)
}

/// A string no other test (or earlier run) writes.
fn nonce(what: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}-{}-{n}", std::process::id())
}

fn pid_of(sys: &TestSystem, actor: Address) -> u32 {
    sys.actor_info(actor)
        .expect("actor info")
        .pid
        .expect("a running actor has a pid")
}

/// ` actor=@N actor_type=… pid=P `, as the admin tags a line of that host.
fn attribution(actor: Address, pid: u32) -> String {
    format!(" actor={actor} actor_type={} pid={pid} ", actor_type_name::<Logger>())
}

/// Reads a growing log file line by line.
struct LogTail {
    file: File,
    partial: Vec<u8>,
    lines: Vec<String>,
}

impl LogTail {
    /// The client creates the file when it starts the system.
    fn open(path: &Path) -> LogTail {
        LogTail {
            file: File::open(path).unwrap_or_else(|e| panic!("no log file at {}: {e}", path.display())),
            partial: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Reads what was appended since the last call; returns the number of new lines.
    fn poll(&mut self) -> usize {
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes).expect("read the log file");
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let before = self.lines.len();
        self.lines
            .extend(String::from_utf8_lossy(&complete).lines().map(str::to_owned));
        self.lines.len() - before
    }

    /// Waits until a line satisfies `found`; returns its index. Panics with the log at the
    /// deadline.
    fn wait_for(&mut self, what: &str, found: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + ARRIVAL;
        let mut checked = 0;
        loop {
            if let Some(i) = self.lines[checked..].iter().position(|l| found(l)) {
                return checked + i;
            }
            checked = self.lines.len();
            assert!(
                Instant::now() < deadline,
                "no log line {what} within {ARRIVAL:?}; the log has:\n{}",
                self.lines.join("\n")
            );
            if self.poll() == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn an_actors_record_reaches_the_log_file_with_its_type_address_and_pid() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("system.log");
    std::fs::write(&path, "a line written before the system started\n").unwrap();
    let sys = TestSystem::start_with(
        HOST,
        SystemConfig::default().log_level(tracing::Level::INFO).log_file(&path),
    );
    let logger = sys.create_actor::<Logger>().unwrap().address();
    let text = nonce("hello from an actor");
    assert!(sys.ask::<_, bool>(logger, LogCommand::Info(text.clone()), T).unwrap());
    let pid = pid_of(&sys, logger);

    let mut log = LogTail::open(&path);
    let i = log.wait_for(&text, |l| l.contains(&text));
    let line = &log.lines[i];
    assert!(
        line.contains(&format!(" INFO greenroom_integration_tests::actors: {text} answer=42")),
        "{line}"
    );
    assert!(line.contains(&attribution(logger, pid)), "{line}");
    assert!(line.ends_with(" incarnation=1"), "{line}");
    assert_eq!(
        log.lines[0], "a line written before the system started",
        "the file is appended to"
    );
    // The admin's own records go to the same place.
    log.wait_for("from the admin", |l| {
        l.contains(" INFO greenroom::admin: spawned actor host") && l.contains(&format!("pid={pid}"))
    });
}

#[test]
fn records_below_the_level_are_not_written() {
    let (_dir, path, sys) = system(tracing::Level::INFO);
    let logger = sys.create_actor::<Logger>().unwrap().address();
    let hidden = nonce("debug at info level");
    let marker = nonce("info after it");
    assert!(sys
        .ask::<_, bool>(logger, LogCommand::Debug(hidden.clone()), T)
        .unwrap());
    assert!(sys.ask::<_, bool>(logger, LogCommand::Info(marker.clone()), T).unwrap());
    let mut log = LogTail::open(&path);
    // One host's lines arrive in order: once the later record is there, the earlier one
    // would be too.
    log.wait_for(&marker, |l| l.contains(&marker));
    assert!(
        !log.lines.iter().any(|l| l.contains(&hidden)),
        "a debug record at level info:\n{}",
        log.lines.join("\n")
    );
    assert!(
        !log.lines.iter().any(|l| l.contains(" DEBUG ")),
        "no debug record at all"
    );
}

#[test]
fn records_at_the_level_are_written() {
    let (_dir, path, sys) = system(tracing::Level::DEBUG);
    let logger = sys.create_actor::<Logger>().unwrap().address();
    let shown = nonce("debug at debug level");
    assert!(sys.ask::<_, bool>(logger, LogCommand::Debug(shown.clone()), T).unwrap());
    let pid = pid_of(&sys, logger);
    let mut log = LogTail::open(&path);
    let i = log.wait_for(&shown, |l| l.contains(&shown));
    let line = &log.lines[i];
    assert!(line.contains(" DEBUG greenroom_integration_tests::actors: "), "{line}");
    assert!(line.contains(&attribution(logger, pid)), "{line}");
}

#[test]
fn raw_stderr_and_the_last_words_of_an_aborting_actor_are_in_the_log() {
    // The default level: raw output is never filtered.
    let (_dir, path, sys) = system(tracing::Level::WARN);
    let logger = sys.create_actor::<Logger>().unwrap().address();
    let pid = pid_of(&sys, logger);
    let raw = nonce("plain eprintln");
    assert!(sys.ask::<_, bool>(logger, LogCommand::Eprint(raw.clone()), T).unwrap());
    let mut log = LogTail::open(&path);
    let i = log.wait_for(&raw, |l| l.contains(&raw));
    let line = log.lines[i].clone();
    assert!(
        line.contains(&format!(" WARN stderr: {raw}")),
        "marked as raw stderr: {line}"
    );
    assert!(line.contains(&attribution(logger, pid)), "{line}");

    let last_words = nonce("about to abort");
    match sys.ask::<_, bool>(logger, LogCommand::AbortAfter(last_words.clone()), T) {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("the actor should have died on the message: {other:?}"),
    }
    let i = log.wait_for(&last_words, |l| l.contains(&last_words));
    assert!(log.lines[i].contains(&attribution(logger, pid)), "{}", log.lines[i]);

    // A panic that aborts the process (it escapes a destructor during unwinding): its
    // message is logged as an error record, and Rust's own last line as raw output.
    let restarted = pid_of(&sys, logger);
    assert_ne!(restarted, pid);
    let boom = nonce("first of two panics");
    match sys.ask::<_, bool>(logger, LogCommand::DoublePanic(boom.clone()), T) {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("the actor should have died on the message: {other:?}"),
    }
    let i = log.wait_for(&boom, |l| l.contains(&boom) && l.contains("PanicOnDrop"));
    let line = &log.lines[i];
    assert!(line.contains(" ERROR "), "{line}");
    assert!(line.contains(&attribution(logger, restarted)), "{line}");
    log.wait_for("Rust's abort message", |l| {
        l.contains(" WARN stderr: ") && l.contains("aborting") && l.contains(&format!("pid={restarted} "))
    });
}

#[test]
fn a_chatty_actor_does_not_stall_the_system_and_every_line_arrives() {
    let (_dir, path, sys) = system(tracing::Level::INFO);
    let chatty = sys.create_actor::<Logger>().unwrap().address();
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let prefix = nonce("chatty");
    let count = 50_000u64;
    sys.tell(
        chatty,
        LogCommand::Lines {
            prefix: prefix.clone(),
            count,
        },
    )
    .unwrap();

    // While the lines pour in, other actors answer and the admin serves requests promptly.
    let bound = Duration::from_secs(2);
    let mut log = LogTail::open(&path);
    let mut seen = BTreeSet::new();
    let mut checks = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let marker = format!(" INFO greenroom_integration_tests::actors: {prefix} ");
    while (seen.len() as u64) < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} lines arrived",
            seen.len()
        );
        let started = Instant::now();
        let text = format!("check {checks}");
        let mut answer = sys.ask_any(echo, text.clone(), bound).expect("the echo answers");
        if answer.0 == chatty {
            // The chatty actor's `true` for its finished command came first.
            answer = sys.listen(bound).expect("the echo answers").expect("the echo answers");
        }
        assert_eq!((answer.0, answer.1.downcast::<String>()), (echo, Some(text)));
        sys.actor_info(chatty).expect("the admin answers");
        assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
        checks += 1;
        let from = log.lines.len();
        log.poll();
        for line in &log.lines[from..] {
            if let Some(at) = line.find(&marker) {
                let rest = &line[at + marker.len()..];
                let n: u64 = rest
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("a line number");
                assert!(seen.insert(n), "line {n} arrived twice");
            }
        }
    }
    assert_eq!(seen.len() as u64, count);
    assert_eq!(seen.last(), Some(&(count - 1)));
    assert!(checks >= 1);
    // The chatty actor is fine too.
    assert!(sys.ask::<_, bool>(chatty, LogCommand::Info(nonce("done")), T).unwrap());
}

#[test]
fn each_actors_records_are_attributed_to_it() {
    let (_dir, path, sys) = system(tracing::Level::INFO);
    let a = sys.create_actor::<Logger>().unwrap().address();
    let b = sys.create_actor::<Logger>().unwrap().address();
    let (pid_a, pid_b) = (pid_of(&sys, a), pid_of(&sys, b));
    let (tag_a, tag_b) = (nonce("from-a"), nonce("from-b"));
    for i in 0..20 {
        sys.tell(a, LogCommand::Info(format!("{tag_a} {i}"))).unwrap();
        sys.tell(b, LogCommand::Eprint(format!("{tag_b} {i}"))).unwrap();
    }
    for (actor, text) in [(a, &tag_a), (b, &tag_b)] {
        assert!(sys
            .ask::<_, bool>(actor, LogCommand::Info(format!("{text} end")), T)
            .unwrap());
    }
    let mut log = LogTail::open(&path);
    log.wait_for("from a", |l| l.contains(&format!("{tag_a} end")));
    log.wait_for("from b", |l| l.contains(&format!("{tag_b} end")));
    for (tag, actor, pid, other) in [(&tag_a, a, pid_a, pid_b), (&tag_b, b, pid_b, pid_a)] {
        let lines: Vec<&String> = log.lines.iter().filter(|l| l.contains(tag.as_str())).collect();
        assert_eq!(lines.len(), 21, "{tag}: {lines:#?}");
        for line in lines {
            assert!(line.contains(&attribution(actor, pid)), "{line}");
            assert!(!line.contains(&format!("pid={other} ")), "{line}");
        }
    }
}

#[test]
fn an_invalid_filter_fails_the_start() {
    let err = match greenroom::ActorSystem::start_with(
        SystemConfig::default()
            .host_executable(HOST)
            .log_filter("my_app=loudest"),
    ) {
        Err(e) => e,
        Ok(_) => panic!("a system started with an invalid log filter"),
    };
    assert!(
        matches!(
            err,
            Error::InvalidSetting {
                setting: "log_filter",
                ..
            }
        ),
        "{err}"
    );
}

/// Whether `pid` is in a `write(2, ..)` call right now (blocked on its stderr).
fn writing_to_stderr(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| s.split_whitespace().take(2).eq(["1", "0x2"]))
}

#[test]
fn a_log_sink_nobody_reads_holds_up_only_the_actor_that_logs() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    // The log's reader, which reads nothing until told (the write end needs one to open).
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the fifo for reading");
    let sys = TestSystem::start_with(
        HOST,
        SystemConfig::default().log_level(tracing::Level::INFO).log_file(&fifo),
    );
    let chatty = sys.create_actor::<Logger>().unwrap().address();
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let chatty_pid = pid_of(&sys, chatty);
    let prefix = nonce("unread");
    // Far more than the fifo, the admin's buffer and the host's pipe hold together.
    let count = 200_000u64;
    sys.tell(
        chatty,
        LogCommand::Lines {
            prefix: prefix.clone(),
            count,
        },
    )
    .unwrap();

    // The whole chain fills up until the chatty host waits in its write to stderr...
    let deadline = Instant::now() + ARRIVAL;
    while !writing_to_stderr(chatty_pid) {
        assert!(Instant::now() < deadline, "the chatty host never had to wait");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...while the admin and the other actors carry on.
    let bound = Duration::from_secs(2);
    for i in 0..5 {
        let started = Instant::now();
        assert_eq!(
            sys.ask::<_, String>(echo, format!("still here {i}"), bound).unwrap(),
            format!("still here {i}")
        );
        sys.actor_info(echo).expect("the admin answers");
        let fresh = sys.create_actor::<Echo>().expect("the admin creates actors").address();
        assert_eq!(sys.ask::<_, String>(fresh, "new".to_string(), bound).unwrap(), "new");
        assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
    }
    // Still held up: found waiting in its write again (a single look could land in the
    // moment between two writes, after the admin took a little from its pipe).
    let deadline = Instant::now() + Duration::from_secs(2);
    while !writing_to_stderr(chatty_pid) {
        assert!(Instant::now() < deadline, "the chatty host is still held up");
        std::thread::sleep(Duration::from_millis(5));
    }

    // Once the log is read, every line comes through.
    let (mut partial, mut seen) = (Vec::new(), 0u64);
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < count {
        assert!(Instant::now() < deadline, "only {seen} of {count} lines arrived");
        match reader.read(&mut chunk) {
            Ok(n) => partial.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => panic!("reading the log: {e}"),
        }
        if let Some(end) = partial.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = partial.drain(..=end).collect();
            seen += String::from_utf8_lossy(&complete)
                .lines()
                .filter(|l| l.contains(&prefix))
                .count() as u64;
        }
    }
    assert_eq!(seen, count);
    // Without a reader, the admin's last records have nowhere to go: it drops them rather
    // than wait at shutdown.
    drop(reader);
}

/// How long these tests let a record take from being made (its timestamp) to being in the
/// file: generous, for a loaded machine; the aim is 100 ms, and the figures they print are
/// what was measured.
const PROMPT: Duration = Duration::from_secs(1);

/// The time a sink line's record was made: its leading RFC 3339 UTC timestamp
/// (`2026-11-25T10:00:00.123456Z`), as a duration since the Unix epoch.
fn stamped(line: &str) -> Duration {
    let stamp = line.split_whitespace().next().expect("a timestamp");
    let num = |range: std::ops::Range<usize>| -> i64 { stamp[range].parse().expect("a timestamp") };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    let frac: f64 = format!("0{}", stamp[19..].trim_end_matches('Z')).parse().unwrap_or(0.0);
    Duration::from_secs(secs as u64) + Duration::from_secs_f64(frac)
}

/// Waits (polling every millisecond) for a line after the first `skip` that satisfies
/// `found`; how long after the record was made (its timestamp) it was in the file.
fn arrival(log: &mut LogTail, skip: usize, since: Instant, found: impl Fn(&str) -> bool) -> Duration {
    let deadline = since + ARRIVAL;
    loop {
        log.poll();
        if let Some(line) = log.lines.iter().skip(skip).find(|l| found(l)) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            return now.saturating_sub(stamped(line));
        }
        assert!(
            Instant::now() < deadline,
            "no such log line within {ARRIVAL:?}; the log has:\n{}",
            log.lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Keeps a system busy until dropped: a thread creates, asks and stops actors through a
/// private client while another has a [`Logger`] write a thousand records at a time.
struct Busy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start(sys: &TestSystem) -> Busy {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = sys.private().unwrap();
        let chatter = sys.private().unwrap();
        let logger = chatter.create_actor::<Logger>().unwrap().address();
        let threads = vec![
            std::thread::spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Relaxed) {
                        let echo = churn.create_actor::<Echo>().unwrap().address();
                        let _: String = churn.ask(echo, "busy".to_string(), T).unwrap();
                        churn.tell(echo, greenroom::ActorExitRequest).unwrap();
                    }
                }
            }),
            std::thread::spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Relaxed) {
                        let lines = LogCommand::Lines {
                            prefix: "busy line".into(),
                            count: 1000,
                        };
                        let _: bool = chatter.ask(logger, lines, T).unwrap();
                    }
                }
            }),
        ];
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Makes the admin log a warning from its loop: a connection to `admin.sock` whose first
/// bytes announce a frame far larger than a handshake.
fn provoke_admin_warning(sys: &TestSystem) {
    use std::io::Write;
    let path = greenroom::runtime_dir::admin_socket_path(sys.runtime_dir());
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.write_all(b"GARBAGE!").unwrap();
}

#[test]
fn records_of_hosts_and_the_admin_reach_the_log_file_promptly_idle_or_busy() {
    let (_dir, path, sys) = system(tracing::Level::INFO);
    let logger = sys.create_actor::<Logger>().unwrap().address();
    assert!(sys.ask::<_, bool>(logger, LogCommand::Info(nonce("first")), T).unwrap());
    let mut log = LogTail::open(&path);
    let mut figures = Vec::new();
    for state in ["idle", "busy"] {
        let busy = (state == "busy").then(|| Busy::start(&sys));
        // Idle: every loop of the system has gone to sleep by now. Busy: churning.
        std::thread::sleep(Duration::from_secs(1));

        let text = nonce("a host's record");
        log.poll();
        let (skip, since) = (log.lines.len(), Instant::now());
        assert!(sys.ask::<_, bool>(logger, LogCommand::Info(text.clone()), T).unwrap());
        let host = arrival(&mut log, skip, since, |l| l.contains(&text));

        let (skip, since) = (log.lines.len(), Instant::now());
        provoke_admin_warning(&sys);
        let admin = arrival(&mut log, skip, since, |l| {
            l.contains("greenroom::admin") && l.contains("broke the protocol")
        });
        drop(busy);
        eprintln!("{state} system: a host's record took {host:?}, the admin's {admin:?}");
        figures.push((state, host, admin));
    }
    for (state, host, admin) in figures {
        assert!(host <= PROMPT, "{state}: a host's record took {host:?}");
        assert!(admin <= PROMPT, "{state}: the admin's record took {admin:?}");
    }
}

#[test]
fn a_record_of_a_thread_of_the_admin_reaches_the_log_file_promptly_idle_or_busy() {
    use std::io::Write;
    // A convention member: its links are served by threads of the admin, which log a
    // refused link (and waited for the admin's loop to wake before they were written).
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    greenroom::convention::ClusterSecret::generate(&secret).unwrap();
    let path = dir.path().join("system.log");
    let listen = greenroom_integration_tests::lab::free_addr("127.0.0.1");
    let config = SystemConfig::default()
        .convention(greenroom_integration_tests::lab::convention(&secret, listen, None))
        .log_file(&path);
    let sys = TestSystem::start_with(HOST, config);
    let mut log = LogTail::open(&path);
    let mut figures = Vec::new();
    for state in ["idle", "busy"] {
        let busy = (state == "busy").then(|| Busy::start(&sys));
        std::thread::sleep(Duration::from_secs(1));
        log.poll();
        let (skip, since) = (log.lines.len(), Instant::now());
        let mut stranger = std::net::TcpStream::connect(listen).unwrap();
        stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let took = arrival(&mut log, skip, since, |l| l.contains("convention link refused"));
        drop(busy);
        eprintln!("{state} system: a record of an admin's thread took {took:?}");
        figures.push((state, took));
    }
    for (state, took) in figures {
        assert!(took <= PROMPT, "{state}: a record of an admin's thread took {took:?}");
    }
}
