//! Starting a process with exactly the sockets it needs at fixed fd numbers.
//!
//! The admin starts hosts this way, and a client starts its admin this way. Every fd the
//! runtime opens is close-on-exec, so a child inherits nothing by accident; the ones it must
//! have are duplicated onto fds 3, 4, … in the child between `fork` and `exec`.

use std::{
    io,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    process::{Child, Command},
};

use greenroom_protocol::ResourceLimits;
use nix::fcntl::{fcntl, FcntlArg};

/// Fds at or above this number are safe sources for `dup2` onto the low fixed numbers
/// (3, 4, 5): above them, and low enough for a process with a small open-files limit.
const HIGH_FD: RawFd = 10;

/// How the child should react when its parent dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParentDeath {
    /// SIGKILL the child (hosts: no orphans, ever).
    Kill,
    /// Nothing; the child notices its control socket's EOF (the admin, which must clean up).
    Ignore,
}

/// The `setrlimit` calls that apply `limits` (nothing for an unlimited resource).
pub(crate) fn rlimits_of(limits: &ResourceLimits) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    [
        (libc::RLIMIT_AS, limits.memory_bytes, 0),
        // The hard CPU limit one second later: SIGXCPU first, then SIGKILL if ignored.
        (libc::RLIMIT_CPU, limits.cpu_seconds, 1),
        (libc::RLIMIT_NOFILE, limits.open_files, 0),
    ]
    .into_iter()
    .filter_map(
        |(resource, soft, slack): (libc::__rlimit_resource_t, Option<u64>, u64)| {
            soft.map(|soft| {
                (
                    resource,
                    libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: soft.saturating_add(slack),
                    },
                )
            })
        },
    )
    .collect()
}

/// What a freshly forked child does before exec: `sources` onto `first_target`,
/// `first_target + 1`, …; the resource limits; and, with `kill_with: Some(parent)`,
/// `PR_SET_PDEATHSIG(SIGKILL)` plus a check that `parent` is still its parent (if it died
/// before prctl took effect, nobody would send the signal: refuse to start an orphan).
/// `Err` is the errno of the first failure.
///
/// # Safety
/// Only for a child between fork (or clone) and exec: it calls only async-signal-safe
/// functions (dup2, setrlimit, prctl, getppid) and allocates nothing.
pub(crate) unsafe fn prepare_child(
    sources: &[RawFd],
    first_target: RawFd,
    rlimits: &[(libc::__rlimit_resource_t, libc::rlimit)],
    kill_with: Option<libc::pid_t>,
) -> Result<(), i32> {
    let errno = || *libc::__errno_location();
    for (i, src) in sources.iter().enumerate() {
        if libc::dup2(*src, first_target + i as RawFd) < 0 {
            return Err(errno());
        }
    }
    for (resource, limit) in rlimits {
        if libc::setrlimit(*resource, limit) < 0 {
            return Err(errno());
        }
    }
    if let Some(parent) = kill_with {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
            return Err(errno());
        }
        if libc::getppid() != parent {
            return Err(libc::ESRCH);
        }
    }
    Ok(())
}

/// Spawns `cmd` with each of `fds` duplicated onto 3, 4, … in order, and `limits` applied
/// with `setrlimit` before it runs.
pub(crate) fn spawn_with_fds(
    cmd: &mut Command,
    fds: &[&dyn AsFd],
    on_parent_death: ParentDeath,
    limits: &ResourceLimits,
) -> io::Result<Child> {
    // Duplicate the sources high (close-on-exec) so that no dup2 below clobbers another.
    let mut high: Vec<OwnedFd> = Vec::with_capacity(fds.len());
    for fd in fds {
        let raw = fcntl(fd.as_fd().as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD)).map_err(io::Error::from)?;
        // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor, owned by nobody else.
        high.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
    }
    let sources: Vec<RawFd> = high.iter().map(|f| f.as_raw_fd()).collect();
    let rlimits = rlimits_of(limits);
    let parent_pid = nix::unistd::getpid().as_raw();
    let kill_with = (on_parent_death == ParentDeath::Kill).then_some(parent_pid);
    // SAFETY: the closure runs in the forked child before exec and only calls
    // `prepare_child`, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || prepare_child(&sources, 3, &rlimits, kill_with).map_err(io::Error::from_raw_os_error));
    }
    let child = cmd.spawn();
    drop(high);
    child
}
