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
        sys.create_actor::<Echo>().unwrap();
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
    let echo = sys.create_actor::<Echo>().unwrap();
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
    let more = sys.create_actor::<Echo>().unwrap();
    let back: String = sys.ask(more, "again".to_string(), T).unwrap();
    assert_eq!(back, "again");
}
