//! An admin in trouble, with real processes and real signals:
//!
//! * a stopped (`SIGSTOP`) admin is reported, not waited on: a client's attach and every CLI
//!   command fail within their bound (4 s), naming the admin's pid;
//! * a system started under a low open-files limit starts its actors (the admin raises the
//!   limit before it forks its spawner), and one that cannot raise it says, when it runs
//!   out, which process ran out and of which limit;
//! * an admin that ran out of fds accepts the client that waited meanwhile once it has fds
//!   again, though nothing announces that client again.

use std::{
    io::BufRead,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use greenroom::{process_role::process_state, runtime_dir, ActorSystem, Error};
use greenroom_integration_tests::{
    actors::Echo,
    harness::{self, is_alive, wait_for_exit, workspace_bin},
    TestSystem,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);
/// How long a client or a CLI command may take to report a stopped admin: its 4 s bound,
/// and some slack for a loaded machine.
const REPORTED_WITHIN: Duration = Duration::from_secs(5);

fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Stops `pid` with SIGSTOP, waits until `/proc` shows it stopped, and resumes it with
/// SIGCONT when dropped (also when the test fails), so that nothing is left stopped.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        signal(pid, Signal::SIGSTOP);
        let stopped = Stopped(pid);
        let until = Instant::now() + T;
        while process_state(pid) != Some('T') {
            assert!(Instant::now() < until, "pid {pid} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, Signal::SIGCONT);
    }
}

/// Asserts that `err` reports admin `pid` as not answering, stopped.
fn assert_not_answering(err: &Error, pid: u32) {
    match err {
        Error::AdminNotAnswering { pid: Some(p), .. } if *p == pid => {}
        other => panic!("expected the admin (pid {pid}) reported as not answering, got: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("the admin (pid {pid}) is not answering")),
        "{text}"
    );
    assert!(text.contains("stopped (SIGSTOP)"), "{text}");
}

#[test]
fn a_stopped_admin_is_reported_to_a_client_attaching_within_its_bound() {
    let sys = harness::TestSystem::start(HOST);
    let admin = sys.admin_pid();
    let dir = sys.runtime_dir().to_path_buf();
    {
        let _stopped = Stopped::new(admin);
        let started = Instant::now();
        let err = ActorSystem::connect_dir(&dir)
            .err()
            .expect("a stopped admin cannot welcome a client");
        let connect_took = started.elapsed();
        assert_not_answering(&err, admin);

        let started = Instant::now();
        let err = sys.private().err().expect("nor a private client");
        let private_took = started.elapsed();
        assert_not_answering(&err, admin);
        eprintln!(
            "a stopped admin was reported to connect_dir after {connect_took:?}, to private() after {private_took:?}"
        );
        assert!(connect_took < REPORTED_WITHIN, "connect_dir took {connect_took:?}");
        assert!(private_took < REPORTED_WITHIN, "private() took {private_took:?}");
    }
    // Resumed, it answers again: what the stop left queued did no harm.
    let client = ActorSystem::connect_dir(&dir).unwrap();
    let echo = client.create_actor::<Echo>().unwrap().address();
    let back: String = client.ask(echo, "back".to_string(), T).unwrap();
    assert_eq!(back, "back");
}

/// A named system started with the real `greenroom` binary in a private runtime base; on
/// drop (also when the test fails) it is resumed, stopped, and killed if still there.
struct CliSystem {
    base: tempfile::TempDir,
    greenroom: PathBuf,
    name: &'static str,
    admin: u32,
}

impl CliSystem {
    fn start(name: &'static str) -> CliSystem {
        let base = tempfile::Builder::new().prefix("grhung").tempdir_in("/tmp").unwrap();
        let mut system = CliSystem {
            base,
            greenroom: workspace_bin("greenroom"),
            name,
            admin: 0,
        };
        let out = system.run(&["start", "--host-bin", HOST, "--name", name]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "greenroom start failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        system.admin = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("admin pid")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no admin pid in: {stdout}"));
        system
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.greenroom)
            .args(args)
            .env("XDG_RUNTIME_DIR", self.base.path())
            .output()
            .unwrap()
    }

    /// Runs a command; its output and how long it took.
    fn timed(&self, args: &[&str]) -> (Output, Duration) {
        let started = Instant::now();
        let out = self.run(args);
        (out, started.elapsed())
    }
}

impl Drop for CliSystem {
    fn drop(&mut self) {
        signal(self.admin, Signal::SIGCONT);
        let _ = self.run(&["stop", self.name]);
        if is_alive(self.admin) {
            signal(self.admin, Signal::SIGKILL);
            wait_for_exit(self.admin, T);
        }
    }
}

#[test]
fn every_cli_command_reports_a_stopped_admin_within_five_seconds() {
    let system = CliSystem::start("hung");
    let admin = system.admin;
    let said = format!("the admin (pid {admin}) is not answering");
    {
        let _stopped = Stopped::new(admin);
        for args in [
            &["status", "hung"][..],
            &["status", "hung", "--json"],
            &["kill", "--system", "hung", "@2"],
            &["stop", "hung"],
        ] {
            let (out, took) = system.timed(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!("greenroom {} with a stopped admin: {took:?}", args.join(" "));
            assert_eq!(out.status.code(), Some(1), "greenroom {args:?}: {stderr}");
            assert!(stderr.contains(&said), "greenroom {args:?}: {stderr}");
            assert!(took < REPORTED_WITHIN, "greenroom {args:?} took {took:?}");
        }
        let (out, took) = system.timed(&["list"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("greenroom list with a stopped admin: {took:?}");
        assert!(out.status.success());
        assert!(
            stdout.contains("hung  not answering") && stdout.contains(&format!("admin pid {admin}")),
            "listed as not answering, not as a stale directory: {stdout}"
        );
        assert!(took < REPORTED_WITHIN, "greenroom list took {took:?}");
        // `logs` still shows the log (what may say why), and says what is wrong.
        let (out, took) = system.timed(&["logs", "hung"]);
        eprintln!("greenroom logs with a stopped admin: {took:?}");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(&said));
        assert!(took < REPORTED_WITHIN, "greenroom logs took {took:?}");
        assert!(is_alive(admin), "a command on a stopped admin leaves it alone");
    }
    // Resumed, it answers every command again.
    let out = system.run(&["status", "hung"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("admin pid {admin}")));
}

/// A client program (the test host's `--hold-system`) started with `RLIMIT_NOFILE` set to
/// (`soft`, `hard`), so that the admin it starts, and that admin's spawner and hosts, inherit
/// it; killed with its admin when dropped.
struct Holder {
    child: Child,
    admin: u32,
    dir: PathBuf,
    _base: tempfile::TempDir,
}

impl Holder {
    fn start(soft: u64, hard: u64) -> Holder {
        let base = tempfile::Builder::new().prefix("grfd").tempdir_in("/tmp").unwrap();
        let mut cmd = Command::new(HOST);
        cmd.args(["--hold-system", base.path().to_str().unwrap()])
            .stdout(Stdio::piped());
        // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent; it
        // runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let (admin, dir) = match words[..] {
            ["admin", pid, "dir", dir] => (pid.parse().unwrap(), PathBuf::from(dir)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the client program did not start its system: {line}");
            }
        };
        Holder {
            child,
            admin,
            dir,
            _base: base,
        }
    }

    /// The admin's children that host no actor: its spawner.
    fn spawner(&self) -> Option<u32> {
        harness::children_of(self.admin)
            .into_iter()
            .find(|pid| !harness::is_host(*pid))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Its owner gone, the admin shuts the system down and removes its directory.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !wait_for_exit(self.admin, T) {
            signal(self.admin, Signal::SIGKILL);
            wait_for_exit(self.admin, T);
        }
    }
}

/// `(soft, hard)` open-files limits of `pid`, from `/proc/PID/limits`.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

fn hard_open_files_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .1
}

#[test]
fn under_a_low_soft_open_files_limit_the_spawner_gets_the_raised_limit_and_actors_start() {
    let hard = hard_open_files_limit();
    let holder = Holder::start(40, hard);
    let spawner = holder.spawner().expect("the admin's spawner");
    assert_eq!(
        open_files_limit(holder.admin),
        (hard, hard),
        "the admin raised its limit"
    );
    assert_eq!(
        open_files_limit(spawner),
        (hard, hard),
        "the spawner was forked with the raised limit"
    );
    let client = ActorSystem::connect_dir(&holder.dir).unwrap();
    for i in 0..20 {
        let echo = client.create_actor::<Echo>().unwrap().address();
        let back: String = client.ask(echo, format!("echo {i}"), T).unwrap();
        assert_eq!(back, format!("echo {i}"));
    }
    assert_eq!(holder.spawner(), Some(spawner), "every host came from the spawner");
}

#[test]
fn running_out_of_file_descriptors_names_the_process_and_its_limit() {
    // A limit the admin cannot raise: it runs out after a few actors.
    let limit = 32;
    let holder = Holder::start(limit, limit);
    let client = ActorSystem::connect_dir(&holder.dir).unwrap();
    let mut started = 0;
    let err = loop {
        match client.create_actor::<Echo>() {
            Ok(echo) => {
                let back: String = client.ask(echo.address(), "up".to_string(), T).unwrap();
                assert_eq!(back, "up");
                started += 1;
                assert!(started < 50, "{started} actors under an open-files limit of {limit}");
            }
            Err(e) => break e,
        }
    };
    let text = err.to_string();
    eprintln!("after {started} actors: {text}");
    assert!(started >= 1, "some actors start: {text}");
    assert!(
        text.contains(&format!(
            "the admin (pid {}) reached its open-files limit (RLIMIT_NOFILE: soft {limit}, hard {limit})",
            holder.admin
        )),
        "{text}"
    );
}

#[test]
fn an_admin_out_of_fds_accepts_the_waiting_client_once_it_has_fds_again() {
    let sys = TestSystem::start(HOST);
    let admin = sys.admin_pid();
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let back: String = sys.ask(echo, "up".to_string(), T).unwrap();
    assert_eq!(back, "up");
    let fds = harness::fd_count(admin);
    // Not one fd more: the admin's accept of the client below fails (EMFILE).
    let limit = harness::set_open_files_limit(admin, harness::lowest_free_fd(admin));
    let waiting = std::os::unix::net::UnixStream::connect(runtime_dir::admin_socket_path(sys.runtime_dir())).unwrap();
    // A round trip through the admin's loop: it has seen the connection, and failed to
    // accept it.
    sys.describe(false).unwrap();
    assert_eq!(harness::fd_count(admin), fds, "nothing was accepted without an fd");
    // Room again, and nothing new on admin.sock: the admin must come back to the waiting
    // client by itself (readiness is edge-triggered, and was announced once).
    harness::set_open_files_limit(admin, limit);
    let deadline = Instant::now() + T;
    while harness::fd_count(admin) <= fds {
        assert!(Instant::now() < deadline, "the waiting client was not accepted");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(waiting);
    let back: String = sys.ask(echo, "still up".to_string(), T).unwrap();
    assert_eq!(back, "still up");
}
