//! Signals and resource exhaustion at the admin: graceful stop on SIGTERM/SIGINT, and a clear
//! `create_actor` error (with the admin still running) when it runs out of fds.

use std::time::Duration;

use greenroom::Error;
use greenroom_integration_tests::{actors::Echo, harness, TestSystem};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

fn graceful_stop_on(signal: Signal) {
    let sys = TestSystem::start(HOST);
    for _ in 0..3 {
        sys.create_actor::<Echo>().unwrap().address();
    }
    let hosts = sys.host_pids();
    assert_eq!(hosts.len(), 3);
    let rundir = sys.runtime_dir().to_path_buf();
    kill(Pid::from_raw(sys.admin_pid() as i32), signal).unwrap();
    assert!(
        harness::wait_for_exit(sys.admin_pid(), T),
        "the admin stops on {signal}"
    );
    for pid in hosts {
        assert!(!harness::is_alive(pid), "host {pid} outlived the admin's graceful stop");
    }
    assert!(!rundir.exists(), "the admin removed its runtime directory");
    let err = sys.create_actor::<Echo>().unwrap_err();
    assert!(matches!(err, Error::AdminGone), "{err}");
}

#[test]
fn sigterm_stops_the_system_gracefully() {
    graceful_stop_on(Signal::SIGTERM);
}

#[test]
fn sigint_stops_the_system_gracefully() {
    graceful_stop_on(Signal::SIGINT);
}

/// Sets the soft open-files limit of another process (the hard limit is left alone);
/// returns the previous soft limit.
fn set_open_files(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new-limit pointer only writes the current limits to `old`.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: prlimit reads `new` and writes nothing (the old-limit pointer is null).
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

#[test]
fn running_out_of_fds_fails_create_clearly_and_the_admin_keeps_running() {
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let admin = sys.admin_pid();
    let in_use = harness::fd_count(admin) as u64;
    // Room for no more than one more actor's sockets.
    let before = set_open_files(admin, in_use + 2);
    let err = loop {
        match sys.create_actor::<Echo>() {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    let text = err.to_string();
    assert!(matches!(err, Error::Create { .. }), "{text}");
    assert!(
        text.contains("Too many open files"),
        "the error names the cause: {text}"
    );
    assert!(text.contains("raise its open-files limit"), "and what to do: {text}");
    assert!(harness::is_alive(admin));
    // The running actor is unaffected, and with room again creating works.
    let back: String = sys.ask(echo, "fine".to_string(), T).unwrap();
    assert_eq!(back, "fine");
    set_open_files(admin, before);
    let more = sys.create_actor::<Echo>().unwrap().address();
    let back: String = sys.ask(more, "again".to_string(), T).unwrap();
    assert_eq!(back, "again");
}

/// A pids cgroup (v1) holding some processes and allowing no more, removed (after moving
/// them back out) on drop: a fork or clone in them fails with EAGAIN while the limit holds.
struct PidsLimit {
    dir: std::path::PathBuf,
    pids: Vec<u32>,
}

impl PidsLimit {
    /// `None` (and why) where the pids controller is not mounted writable here.
    fn confine(pids: Vec<u32>) -> Result<PidsLimit, String> {
        let root = std::path::Path::new("/sys/fs/cgroup/pids");
        if !root.join("cgroup.procs").exists() {
            return Err("no cgroup v1 pids controller at /sys/fs/cgroup/pids".into());
        }
        let dir = root.join(format!("greenroom-test-{}-{}", std::process::id(), pids[0]));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let limit = PidsLimit { dir, pids };
        limit.write("pids.max", &limit.pids.len().to_string())?;
        for pid in &limit.pids {
            limit.write("cgroup.procs", &pid.to_string())?;
        }
        Ok(limit)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(file), value).map_err(|e| format!("cannot write {file}: {e}"))
    }
}

impl Drop for PidsLimit {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = std::fs::write("/sys/fs/cgroup/pids/cgroup.procs", pid.to_string());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn fork_failing_fails_create_clearly_and_the_admin_keeps_running() {
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let admin = sys.admin_pid();
    // The admin and its spawner (its child that hosts no actor) in a cgroup that allows no
    // more processes: the next host's fork (or clone) gets EAGAIN.
    let mut confined = vec![admin];
    confined.extend(
        harness::children_of(admin)
            .into_iter()
            .filter(|p| !harness::is_host(*p)),
    );
    let limit = match PidsLimit::confine(confined) {
        Ok(limit) => limit,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let err = sys.create_actor::<Echo>().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Create { .. }), "{text}");
    assert!(
        text.contains("Resource temporarily unavailable"),
        "the error names the cause: {text}"
    );
    assert!(
        text.contains("cannot start another process"),
        "and what it means: {text}"
    );
    assert!(harness::is_alive(admin));
    let back: String = sys.ask(echo, "fine".to_string(), T).unwrap();
    assert_eq!(back, "fine", "the running actor is unaffected");
    // With room again, creating works.
    limit.write("pids.max", "max").unwrap();
    let more = sys.create_actor::<Echo>().unwrap().address();
    let back: String = sys.ask(more, "again".to_string(), T).unwrap();
    assert_eq!(back, "again");
    drop(limit);
}

#[test]
fn a_foreground_admin_stopped_by_sigterm_exits_0_after_stopping_every_actor() {
    let base = tempfile::Builder::new().prefix("grsig").tempdir_in("/tmp").unwrap();
    let mut admin = std::process::Command::new(harness::workspace_bin("greenroom"))
        .args(["start", "--foreground", "--name", "sig", "--host-bin", HOST])
        .env("XDG_RUNTIME_DIR", base.path())
        // A daemon's usual stderr, which epoll cannot watch: the log sink must cope.
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = base.path().join("greenroom/n-sig");
    let deadline = std::time::Instant::now() + T;
    let client = loop {
        match greenroom::ActorSystem::connect_dir(&dir) {
            Ok(c) => break c,
            Err(e) => assert!(std::time::Instant::now() < deadline, "the admin never answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let echo = client.create_actor::<Echo>().unwrap().address();
    let host = client.actor_info(echo).unwrap().pid.unwrap();
    kill(Pid::from_raw(admin.id() as i32), Signal::SIGTERM).unwrap();
    let status = admin.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a graceful stop exits 0: {status:?}");
    assert!(harness::wait_for_exit(host, T), "the actor's host is gone");
    assert!(!dir.exists(), "the runtime directory is removed");
    drop(client);
}
