//! The CLI walk-through of `docs/cli.md`, run exactly as a user runs it: the real `greenroom`
//! binary starts a detached admin for `demo_host`, `demo_client` attaches by name, `greenroom
//! kill` SIGKILLs an actor, `status --json` shows it back at the same address with one restart, the
//! client's next ask succeeds, and `greenroom stop` leaves nothing running.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use greenroom_integration_tests::harness::{is_alive, wait_for_exit, workspace_bin};
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

/// The walk-through's environment: a private runtime base, and cleanup of whatever the test
/// started, even when it fails half-way.
struct Walkthrough {
    base: tempfile::TempDir,
    greenroom: PathBuf,
    name: &'static str,
    pids: Vec<u32>,
}

impl Walkthrough {
    fn new(name: &'static str) -> Self {
        Walkthrough {
            base: tempfile::Builder::new().prefix("grcli").tempdir_in("/tmp").unwrap(),
            greenroom: workspace_bin("greenroom"),
            name,
            pids: Vec::new(),
        }
    }

    /// Runs a program with this walk-through's runtime base.
    fn run(&self, program: &Path, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("XDG_RUNTIME_DIR", self.base.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    }

    fn greenroom(&self, args: &[&str]) -> Output {
        self.run(&self.greenroom, args)
    }

    fn status(&mut self) -> Value {
        let out = self.greenroom(&["status", self.name, "--json"]);
        assert_success(&out, "greenroom status --json");
        let status: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
        self.pids.extend(status["admin_pid"].as_u64().map(|p| p as u32));
        for actor in status["actors"].as_array().into_iter().flatten() {
            self.pids.extend(actor["pid"].as_u64().map(|p| p as u32));
        }
        status
    }
}

impl Drop for Walkthrough {
    fn drop(&mut self) {
        // A failed test must not leave a detached admin behind.
        let _ = self.greenroom(&["stop", self.name]);
        for pid in &self.pids {
            if is_alive(*pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn actor<'a>(status: &'a Value, global_name: &str) -> &'a Value {
    status["actors"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["global_name"] == global_name))
        .unwrap_or_else(|| panic!("no actor {global_name:?} in {status:#}"))
}

#[test]
fn start_status_kill_status_ask_stop_leaves_nothing_running() {
    let mut w = Walkthrough::new("walk");
    let demo_host = workspace_bin("demo_host");
    let demo_client = workspace_bin("demo_client");

    let out = w.greenroom(&[
        "start",
        "--host-bin",
        demo_host.to_str().unwrap(),
        "--name",
        "walk",
        "--log-level",
        "info",
    ]);
    assert_success(&out, "greenroom start");
    let started = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(started.contains("started actor system \"walk\""), "{started}");
    // The same name again is refused while it runs.
    let again = w.greenroom(&["start", "--host-bin", demo_host.to_str().unwrap(), "--name", "walk"]);
    assert_eq!(again.status.code(), Some(4), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    let out = w.run(&demo_client, &["walk"]);
    assert_success(&out, "demo_client");
    let first = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        first.contains(": total 1") && first.contains("Hello, World!"),
        "{first}"
    );

    // Several client programs attached at once.
    let clients: Vec<std::process::Child> = (0..3)
        .map(|_| {
            Command::new(&demo_client)
                .arg("walk")
                .env("XDG_RUNTIME_DIR", w.base.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for client in clients {
        let out = client.wait_with_output().unwrap();
        assert_success(&out, "a concurrent demo_client");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Hello, World!"));
    }

    let status = w.status();
    let admin_pid = status["admin_pid"].as_u64().unwrap() as u32;
    let counter = actor(&status, "counter").clone();
    let address = counter["address"].as_str().unwrap().to_owned();
    let old_pid = counter["pid"].as_u64().expect("a running counter has a pid") as u32;
    assert_eq!(counter["state"], "running");
    assert_eq!(counter["restarts"], 0);
    assert!(first.contains(&format!("counter {address}: total 1")), "{first}");
    let tree = w.greenroom(&["status", "walk"]);
    assert_success(&tree, "greenroom status");
    let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
    assert!(tree.contains("demo::Counter \"counter\"  running"), "{tree}");
    assert!(
        tree.contains("    @"),
        "the pool's greeters are indented under it: {tree}"
    );

    let out = w.greenroom(&["kill", "counter", "--system", "walk"]);
    assert_success(&out, "greenroom kill");
    assert!(wait_for_exit(old_pid, T), "the killed host exited");

    // Back at the same address, one restart, a new process.
    let deadline = Instant::now() + T;
    let counter = loop {
        let status = w.status();
        let counter = actor(&status, "counter").clone();
        if counter["state"] == "running" && counter["restarts"] == 1 {
            break counter;
        }
        assert!(Instant::now() < deadline, "the counter never came back: {status:#}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(counter["address"], address.as_str());
    assert_ne!(counter["pid"].as_u64(), Some(u64::from(old_pid)));

    // The client's next ask succeeds (a fresh process: its total starts again).
    let out = w.run(&demo_client, &["walk"]);
    assert_success(&out, "demo_client after the kill");
    let second = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(second.contains(&format!("counter {address}: total 1")), "{second}");

    let status = w.status();
    let hosts: Vec<u32> = status["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["pid"].as_u64().map(|p| p as u32))
        .collect();
    let out = w.greenroom(&["stop", "walk"]);
    assert_success(&out, "greenroom stop");
    assert!(wait_for_exit(admin_pid, T), "the admin exited");
    for pid in hosts {
        assert!(wait_for_exit(pid, T), "host {pid} exited");
    }
    assert!(
        !w.base.path().join("greenroom/n-walk").exists(),
        "runtime directory removed"
    );
    let out = w.greenroom(&["status", "walk"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no actor system named \"walk\" is running"));
    // The log outlives the system: the admin's records and the actors', attributed.
    let out = w.greenroom(&["logs", "walk"]);
    assert_success(&out, "greenroom logs");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(log.contains("admin stopped"), "{log}");
    assert!(
        log.contains("greeting name=World") && log.contains("actor_type=greenroom_examples::demo::Greeter"),
        "{log}"
    );
}

#[test]
fn a_foreground_admin_serves_until_stopped_and_logs_follow_it_to_the_end() {
    let mut w = Walkthrough::new("fg");
    let demo_host = workspace_bin("demo_host");
    let log = w.base.path().join("fg.log");
    let mut admin = Command::new(&w.greenroom)
        .args(["start", "--foreground", "--name", "fg", "--log-level", "info", "--log"])
        .arg(&log)
        .arg("--host-bin")
        .arg(&demo_host)
        .env("XDG_RUNTIME_DIR", w.base.path())
        .spawn()
        .unwrap();
    // `start --foreground` becomes the admin: the same pid serves until it is stopped.
    w.pids.push(admin.id());
    let deadline = Instant::now() + T;
    let status = loop {
        let out = w.greenroom(&["status", "fg", "--json"]);
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(admin.try_wait().unwrap().is_none(), "the foreground admin exited early");
        assert!(Instant::now() < deadline, "the foreground admin never answered");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["admin_pid"].as_u64(), Some(u64::from(admin.id())));
    assert_eq!(status["log_file"].as_str(), log.to_str());

    let mut follower = Command::new(&w.greenroom)
        .args(["logs", "fg", "--follow"])
        .env("XDG_RUNTIME_DIR", w.base.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read what it prints as it prints it, and stop the system only once it is following.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + T;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the follower prints the log so far");
        if line.contains("admin started") {
            break;
        }
    }
    assert_success(&w.greenroom(&["stop", "fg"]), "greenroom stop");
    let exit = admin.wait().unwrap();
    assert!(exit.success(), "a stopped admin exits 0: {exit:?}");
    // The follower sees the system's last words, then ends by itself.
    let exit = follower.wait().unwrap();
    reader.join().unwrap();
    assert!(exit.success(), "greenroom logs --follow: {exit:?}");
    assert!(lines.try_iter().any(|l| l.contains("admin stopped")));
}
