//! A real actor system per test that cleans up after itself, and /proc helpers.
//!
//! [`TestSystem`] starts an admin from the test host binary in a private temporary runtime
//! base. On drop — including when the test panics — it shuts the system down, kills any
//! process of the system that is still alive, and removes the temporary directory, so a
//! failing test leaves nothing behind for the next one.
//!
//! [`TestSystem::on`] starts the same on either base, and [`crate::on_both_bases!`] runs one
//! test body on each: the behaviour a test asserts must not depend on where actors run.

use std::{
    collections::BTreeSet,
    fs,
    ops::Deref,
    os::fd::{FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use greenroom::{ActorSystem, Base, SystemConfig};
use nix::{
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// An actor system started for one test.
pub struct TestSystem {
    system: Option<ActorSystem>,
    base: tempfile::TempDir,
    admin_pid: Option<u32>,
    started: Instant,
    seen_hosts: std::sync::Mutex<BTreeSet<u32>>,
}

impl TestSystem {
    /// Starts a system whose admin and hosts run `host_exe` (pass
    /// `env!("CARGO_BIN_EXE_greenroom-test-host")`).
    pub fn start(host_exe: &str) -> TestSystem {
        Self::start_with(host_exe, SystemConfig::default())
    }

    /// A system on `base`: the process base runs `host_exe`, the simple base this crate's
    /// [`crate::registry`] in the test process.
    pub fn on(base: Base, host_exe: &str) -> TestSystem {
        Self::start_with(host_exe, SystemConfig::default().base(base))
    }

    /// Like [`TestSystem::start`], with settings (a simple-base config gets this crate's
    /// registry).
    pub fn start_with(host_exe: &str, config: SystemConfig) -> TestSystem {
        Self::start_config(|base| {
            config
                .runtime_base(base)
                .host_executable(host_exe)
                .registry(crate::registry())
        })
    }

    /// A system whose admin and hosts run the test binary itself (a test crate that invokes
    /// `greenroom_host::test_support!`), with its registry: `config` as given, plus only
    /// the private runtime base.
    pub fn own(config: SystemConfig) -> TestSystem {
        Self::start_config(|base| config.runtime_base(base))
    }

    fn start_config(config: impl FnOnce(&Path) -> SystemConfig) -> TestSystem {
        let base = tempfile::Builder::new()
            .prefix("gr")
            .tempdir_in("/tmp")
            .expect("create a temporary runtime base");
        let system = ActorSystem::start_with(config(base.path())).expect("start an actor system");
        let admin_pid = system.admin_pid();
        TestSystem {
            system: Some(system),
            base,
            admin_pid,
            started: Instant::now(),
            seen_hosts: Default::default(),
        }
    }

    /// Whether this system runs on the simple base.
    pub fn is_simple(&self) -> bool {
        self.admin_pid.is_none()
    }

    /// The admin's pid (a process-base test).
    pub fn admin_pid(&self) -> u32 {
        self.admin_pid
            .expect("a process-base test: the simple base has no admin process")
    }

    /// The system's runtime directory (a process-base test).
    pub fn runtime_dir(&self) -> &Path {
        self.system
            .as_ref()
            .and_then(|s| s.runtime_dir())
            .expect("a process-base test: the simple base has no runtime directory")
    }

    /// How long the system has run: virtual time on the simple base, real time on the
    /// process base. For asserting that a timer did not fire early on either.
    pub fn now(&self) -> Duration {
        match self.virtual_time() {
            Ok(virtual_now) => virtual_now,
            Err(_) => self.started.elapsed(),
        }
    }

    /// The temporary base under which the system's runtime directory lives.
    pub fn runtime_base(&self) -> &Path {
        self.base.path()
    }

    /// Live processes whose parent is the admin: the actor hosts.
    pub fn host_pids(&self) -> Vec<u32> {
        let Some(admin) = self.admin_pid else { return Vec::new() };
        // The admin's spawner is its child too, but hosts no actor.
        let pids: Vec<u32> = children_of(admin).into_iter().filter(|pid| is_host(*pid)).collect();
        self.seen_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(pids.iter().copied());
        pids
    }

    /// Shuts the system down and returns the result, leaving the harness only its cleanup.
    pub fn shutdown(&mut self) -> greenroom::Result<()> {
        self.host_pids();
        match self.system.take() {
            Some(system) => system.shutdown(),
            None => Ok(()),
        }
    }
}

impl Deref for TestSystem {
    type Target = ActorSystem;
    fn deref(&self) -> &ActorSystem {
        self.system.as_ref().expect("the test system was shut down")
    }
}

impl Drop for TestSystem {
    fn drop(&mut self) {
        self.host_pids();
        if let Some(system) = self.system.take() {
            if let (Err(_), Some(admin)) = (system.shutdown(), self.admin_pid) {
                let _ = kill(Pid::from_raw(admin as i32), Signal::SIGKILL);
            }
        }
        for pid in self.seen_hosts.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if is_alive(*pid) {
                eprintln!("harness: host {pid} outlived its test system; killing it");
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// Runs each test body on both bases, as two tests `<name>::processes` and
/// `<name>::simple`, with `$sys` bound to a [`TestSystem`] on that base. Use it in this
/// crate's integration tests (it names the test host binary).
///
/// ```ignore
/// on_both_bases! {
///     fn echo_replies(sys) {
///         let echo = sys.create_actor::<Echo>().unwrap().address();
///         assert_eq!(sys.ask::<_, String>(echo, "hi".to_string(), T).unwrap(), "hi");
///     }
/// }
/// ```
#[macro_export]
macro_rules! on_both_bases {
    ($( $(#[$meta:meta])* fn $name:ident($sys:ident) $body:block )*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn run($sys: $crate::TestSystem) $body

                #[test]
                fn processes() {
                    run($crate::TestSystem::on(greenroom::Base::Processes, env!("CARGO_BIN_EXE_greenroom-test-host")));
                }

                #[test]
                fn simple() {
                    run($crate::TestSystem::on(greenroom::Base::Simple, env!("CARGO_BIN_EXE_greenroom-test-host")));
                }
            }
        )*
    };
}

/// Settings whose root supervisor restarts a failed actor at once (no backoff) and allows
/// `max_restarts` restarts within its window: for tests that kill actors over and over.
pub fn restart_at_once(max_restarts: u32) -> SystemConfig {
    SystemConfig::default().root_supervision(greenroom::SupervisorSpec {
        max_restarts,
        backoff: greenroom::Backoff {
            initial: Duration::ZERO,
            ..greenroom::Backoff::default()
        },
        ..greenroom::SupervisorSpec::default()
    })
}

/// Parses `/proc/<pid>/stat`: (state, ppid).
fn stat_of(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is an actor host (its title is `greenroom-host <Type>`).
pub fn is_host(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"greenroom-host"))
}

/// Whether `pid` is a running (not zombie, not reaped) process.
pub fn is_alive(pid: u32) -> bool {
    matches!(stat_of(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// The parent pid of `pid`, if it is alive.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_of(pid).filter(|(s, _)| *s != 'Z').map(|(_, ppid)| ppid)
}

/// Live children of `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matches!(stat_of(*pid), Some((state, ppid)) if ppid == parent && state != 'Z'))
        .collect();
    pids.sort_unstable();
    pids
}

/// Children of `parent` that have exited but were not reaped.
pub fn zombie_children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matches!(stat_of(*pid), Some((state, ppid)) if ppid == parent && state == 'Z'))
        .collect()
}

/// The executable of `pid`.
pub fn exe_of(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Memory the process's own allocations hold, in KiB: `Private_Dirty` of
/// `/proc/PID/smaps_rollup` (shared pages of the executable do not count), else its RSS.
pub fn private_dirty_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Private_Dirty:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or_else(|| rss_kib(pid))
}

/// The handshake of a data connection from `from` to `to`, as a peer sends it first.
pub fn data_handshake(from: greenroom::Address, to: greenroom::Address) -> Vec<u8> {
    let mut buf = Vec::new();
    greenroom_protocol::Handshake {
        role: greenroom_protocol::PeerRole::Data { from, to },
    }
    .encode(&mut buf)
    .expect("a handshake encodes");
    buf
}

/// Sets `pid`'s soft limit on open files (its hard limit unchanged); returns the old one.
pub fn set_open_files_limit(pid: u32, soft: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads and writes only the rlimit structs passed; the first call only
    // reads `pid`'s limits into `limit`, the second sets them from it.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let old = limit.rlim_cur;
    limit.rlim_cur = soft;
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old
}

/// Number of open fds of `pid`.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The lowest fd number `pid` has free: the number its next new fd takes. An open-files
/// limit of this value (RLIMIT_NOFILE bounds fd *numbers*) makes its next `accept` or
/// `open` fail with EMFILE.
pub fn lowest_free_fd(pid: u32) -> u64 {
    let open: BTreeSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    (0..).find(|fd| !open.contains(fd)).unwrap_or(0)
}

/// Waits until `pid` has exited (an event: its pidfd becoming readable), up to `timeout`.
/// Returns whether it exited in time. A pid that is already gone counts as exited.
pub fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return !is_alive(pid);
    }
    // SAFETY: the syscall just returned this fd; we own it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&fd), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(n) if n > 0 => return true,
            _ => {}
        }
    }
}

/// A binary of another package of this workspace (the `greenroom` CLI, an example), from the
/// target directory this test was built into. `cargo test --workspace` builds them all before
/// any test runs; run alone, a test needs them built first.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo test --workspace`, or `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}
