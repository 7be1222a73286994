//! How one executable knows whether it was started as a client, an admin, an actor host or
//! a convention gateway.
//!
//! Greenroom starts the admin and every host by running an executable (the user's own, by
//! default) with `GREENROOM_ROLE` set and the sockets it needs already open at fixed fd
//! numbers. `greenroom_host::init` reads the role first thing in `main` (or
//! `greenroom_host::test_support!` before `main`, in a test binary).
//!
//! A client records how it reached Greenroom ([`Entry`]), so that `ActorSystem::start` can
//! refuse to re-run an executable that would not become an admin: a test binary whose test
//! called `init` would run its test suite again instead.

use std::os::fd::RawFd;

/// Environment variable naming the role of a process Greenroom started.
pub const ROLE_ENV: &str = "GREENROOM_ROLE";
/// Environment variable: the runtime directory an admin should create and own.
pub const RUNTIME_DIR_ENV: &str = "GREENROOM_RUNTIME_DIR";
/// Environment variable: the executable an admin runs for hosts.
pub const HOST_EXE_ENV: &str = "GREENROOM_HOST_EXE";
/// Environment variable: the largest frame body accepted, in bytes.
pub const MAX_FRAME_ENV: &str = "GREENROOM_MAX_FRAME";
/// Environment variable: how many bytes of unprocessed messages a sender may have
/// outstanding to one receiver.
pub const SEND_WINDOW_ENV: &str = "GREENROOM_SEND_WINDOW";
/// The default send window: 8 MiB.
pub const DEFAULT_SEND_WINDOW: usize = 8 * 1024 * 1024;
/// Environment variable: log filter for admin and host processes (`tracing-subscriber`'s
/// `EnvFilter` syntax, default `warn`), e.g. `GREENROOM_LOG=greenroom=debug`. When set in a
/// client's environment it overrides `SystemConfig::log_level`; see [`crate::logging`].
pub const LOG_ENV: &str = "GREENROOM_LOG";

/// Environment variable: set for an admin started on its own (`greenroom start`), which has
/// no owner connection and runs until it is told to stop.
pub const DETACHED_ENV: &str = "GREENROOM_DETACHED";
/// Environment variable: the name a detached system was started under.
pub const SYSTEM_NAME_ENV: &str = "GREENROOM_SYSTEM_NAME";
/// Environment variable: the file a detached admin's log goes to (for `Describe`).
pub const LOG_PATH_ENV: &str = "GREENROOM_LOG_PATH";

/// Environment variable: how many accepted connections may wait for their handshake at once,
/// per listening socket (default [`crate::net::pending::DEFAULT_MAX_PENDING`]). Hosts inherit
/// it from the admin.
pub const MAX_PENDING_ENV: &str = "GREENROOM_MAX_PENDING";

/// The bound on connections waiting for their handshake in this process.
pub fn max_pending_connections() -> usize {
    std::env::var(MAX_PENDING_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::net::pending::DEFAULT_MAX_PENDING)
}

/// The control socket a started process inherits (to its admin, or from its owner).
pub const CONTROL_FD: RawFd = 3;
/// The listening socket a host inherits: its actor's address on disk.
pub const LISTENER_FD: RawFd = 4;
/// The exit status of a host whose actor's `receive` failed under `OnFailure::Restart`
/// (after it told the admin, `ToAdmin::ReceiveFailed`): the admin records
/// `ExitCause::ReceiveFailed`.
pub const EXIT_RECEIVE_FAILED: i32 = 4;

/// What this process is in a Greenroom system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A user program (the default).
    Client,
    /// An admin started by a client.
    Admin,
    /// An actor host started by an admin.
    Host,
    /// An admin's convention gateway (`convention/gateway/mod.rs`): the process that owns
    /// the network, so that the admin touches none of it.
    Gateway,
}

impl Role {
    /// The role this process was started in, from `GREENROOM_ROLE`.
    pub fn current() -> Role {
        match std::env::var(ROLE_ENV).as_deref() {
            Ok("admin") => Role::Admin,
            Ok("host") => Role::Host,
            Ok("gateway") => Role::Gateway,
            _ => Role::Client,
        }
    }

    pub fn env_value(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Admin => "admin",
            Role::Host => "host",
            Role::Gateway => "gateway",
        }
    }
}

/// How this program handed Greenroom its registry, as a client: what a re-run of its
/// executable as an admin or host would reach. Recorded by `greenroom_host`.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `greenroom_host::init` ran on the main thread (or a thread with no name).
    Main,
    /// `greenroom_host::init` ran on this named thread: a test's, in practice, which a
    /// re-run does not reach first.
    Thread(String),
    /// `greenroom_host::test_support!` ran before `main`.
    BeforeMain,
}

static ENTRY: std::sync::Mutex<Option<Entry>> = std::sync::Mutex::new(None);

/// Records how this client reached Greenroom; `BeforeMain`, once recorded, stays (an `init`
/// in a test of a binary with `test_support!` changes nothing).
#[doc(hidden)]
pub fn record_entry(entry: Entry) {
    let mut recorded = ENTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *recorded != Some(Entry::BeforeMain) {
        *recorded = Some(entry);
    }
}

/// What `ActorSystem::start` adds to its refusal to run this program as its own admin.
const ENTRY_FIX: &str =
    "in a program, call greenroom_host::init(registry) first thing in main; in a test binary (whose main is \
     libtest's), invoke greenroom_host::test_support!(registry) once in the test crate; or point \
     SystemConfig::host_executable at a host binary that calls greenroom_host::serve(registry)";

/// Whether this program, re-run as an admin (the default host executable), becomes one:
/// only if it reached Greenroom through `init` in `main` or through `test_support!`.
/// Anything else would run the program again (a test binary: its whole suite) instead.
pub(crate) fn check_own_entry() -> Result<(), crate::Error> {
    let recorded = ENTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let why = match recorded {
        Some(Entry::Main | Entry::BeforeMain) => return Ok(()),
        Some(Entry::Thread(thread)) => format!(
            "greenroom_host::init was called on thread `{thread}`, not first thing in main, so this executable, re-run as \
             the system's admin and hosts, would not reach it"
        ),
        None => "this program never called greenroom_host::init, so this executable, re-run as the system's admin and \
                 hosts, would not become them"
            .to_owned(),
    };
    Err(crate::Error::NoHostEntry(format!(
        "ActorSystem::start re-runs this program's executable unless SystemConfig::host_executable is set: {why}. Fix: {ENTRY_FIX}"
    )))
}

/// Raises this process's open-files limit to its hard limit. An admin holds four fds per
/// actor and a busy client two per peer, so the usual soft limit of 1024 would cap a system at
/// a few hundred actors. Returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-files limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// The open-files limit of process `pid` (this process for 0): (soft, hard). `(0, 0)` if it
/// cannot be read (the process is gone, or belongs to another user).
pub fn open_files_limit_of(pid: u32) -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new limit only writes the current one into `limit`.
    let ok = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) } == 0;
    if ok {
        (limit.rlim_cur, limit.rlim_max)
    } else {
        (0, 0)
    }
}

/// If `e` says a process ran out of file descriptors, which process and which limit:
/// `"the admin (pid 4711) reached its open-files limit (RLIMIT_NOFILE: soft 64, hard 64)"`
/// for `EMFILE`, the system-wide limit for `ENFILE`; `None` for any other error. `process`
/// names the process that got the error ("the admin", "the spawner"), `pid` is its pid.
pub fn fd_exhaustion(e: &std::io::Error, process: &str, pid: u32) -> Option<String> {
    match e.raw_os_error()? {
        libc::EMFILE => {
            let (soft, hard) = open_files_limit_of(pid);
            Some(format!(
                "{process} (pid {pid}) reached its open-files limit (RLIMIT_NOFILE: soft {soft}, hard {hard})"
            ))
        }
        libc::ENFILE => Some(format!(
            "the system-wide limit on open files (fs.file-max) is reached: {process} (pid {pid}) could not open another"
        )),
        _ => None,
    }
}

/// The state letter of process `pid` from `/proc/<pid>/stat` (`R` running, `S` sleeping,
/// `D` waiting on the disk or the kernel, `T` stopped, `t` traced, `Z` a zombie awaiting
/// its parent, ...), or `None` if there is no such process (or its `stat` cannot be read).
///
/// ```
/// use greenroom::process_role::process_state;
///
/// assert!(process_state(std::process::id()).is_some(), "this process");
/// assert_eq!(process_state(u32::MAX), None, "no process has that pid");
/// ```
pub fn process_state(pid: u32) -> Option<char> {
    state_in_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The state field of a `/proc/<pid>/stat` line. It follows the command name, which is in
/// parentheses and may itself hold spaces and parentheses: so it is read after the last `)`.
fn state_in_stat(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_read_after_the_command_name_whatever_it_holds() {
        assert_eq!(state_in_stat("42 (sleepy) S 1 42 42 0 -1"), Some('S'));
        assert_eq!(state_in_stat("42 (a) Z (b) T 1 42 42 0 -1"), Some('T'));
        assert_eq!(state_in_stat("42 (x) "), None);
        assert_eq!(state_in_stat(""), None);
    }

    #[test]
    fn a_child_is_a_zombie_until_reaped_and_then_has_no_state() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_state(pid) != Some('Z') {
            assert!(std::time::Instant::now() < deadline, "{pid} never became a zombie");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert_eq!(process_state(pid), None);
    }

    #[test]
    fn fd_exhaustion_names_the_process_and_its_limit() {
        let me = std::process::id();
        let (soft, hard) = open_files_limit_of(me);
        assert!(soft > 0 && hard >= soft, "{soft} {hard}");
        let why = fd_exhaustion(&std::io::Error::from_raw_os_error(libc::EMFILE), "the admin", me).unwrap();
        assert_eq!(
            why,
            format!("the admin (pid {me}) reached its open-files limit (RLIMIT_NOFILE: soft {soft}, hard {hard})")
        );
        let why = fd_exhaustion(&std::io::Error::from_raw_os_error(libc::ENFILE), "the spawner", 7).unwrap();
        assert!(
            why.contains("system-wide") && why.contains("the spawner (pid 7)"),
            "{why}"
        );
        assert_eq!(
            fd_exhaustion(&std::io::Error::from_raw_os_error(libc::EACCES), "x", 1),
            None
        );
    }
}
