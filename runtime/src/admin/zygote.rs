//! The spawner: a small process, forked from the admin before it holds any socket, that
//! starts host processes for it.
//!
//! Why: `fork` copies the caller's fd table and `exec` closes it again, so an admin holding
//! four fds per live actor pays more for every spawn as the system grows (creating thousands
//! of actors becomes quadratic). The spawner holds three fds, whatever the system's size.
//!
//! How: the admin sends a request (the process title and resource limits, postcard) with the
//! host's four fds (stderr pipe, control socket, listener, ledger) over a `SOCK_SEQPACKET`
//! pair. The spawner creates the host with `clone(CLONE_PARENT)`, so that **the host is the
//! admin's child**, as if the admin had forked it: the admin reaps it with `wait4`, gets its
//! `SIGCHLD` and rusage, and `PR_SET_PDEATHSIG` follows the admin. The reply is the pid, or
//! the errno of the failure and which process it happened in (the spawner, or the new
//! process before its exec), so that an error such as running out of file descriptors names
//! the process and the limit that ran out.
//!
//! The spawner inherits the admin's open-files limit, raised before the fork
//! (`super::run_from_env`).
//!
//! ```text
//! admin ──[SpawnRequest + fds 2,3,4,5]──▶ spawner ──clone(CLONE_PARENT)──▶ host (child of admin)
//! admin ◀──────────[pid | -errno]──────── spawner
//! ```
//!
//! If the spawner is not there (it could not be started, or it died), the admin spawns
//! directly, as before ([`super::spawn::spawn_with_fds`]).

use std::{
    ffi::CString,
    io::{self, IoSlice, IoSliceMut},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::ffi::OsStrExt,
    path::Path,
    time::Duration,
};

use greenroom_protocol::ResourceLimits;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::process_role;

/// How long the admin waits for the spawner's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Received fds are moved at or above this number before the clone, so that the child's
/// `dup2` onto 2..5 clobbers none of them. Just above the targets, so that a spawner with a
/// low open-files limit can still use it.
const HIGH_FD: RawFd = 6;
/// The spawner's reply: the pid or `-errno`, then where a failure happened.
const REPLY_LEN: usize = 8;
/// A failure in the spawner itself.
const IN_SPAWNER: i32 = 0;
/// A failure in the new process, before its exec.
const IN_CHILD: i32 = 1;

/// One spawn, as the admin asks for it.
#[derive(Debug, Serialize, Deserialize)]
struct SpawnRequest {
    argv0: String,
    limits: ResourceLimits,
    /// The gateway (`true`) or a host.
    gateway: bool,
}

/// The admin's handle on its spawner.
pub(crate) struct Spawner {
    socket: OwnedFd,
    pid: i32,
}

impl Spawner {
    /// Forks the spawner. Call first thing in the admin, while it is single-threaded and holds
    /// nothing it must not share. `None` if it cannot be started (the admin then spawns
    /// directly).
    pub(crate) fn start(host_exe: &Path) -> Option<Spawner> {
        let (admin_end, spawner_end) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).ok()?;
        let exe = CString::new(host_exe.as_os_str().as_bytes()).ok()?;
        let env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k != process_role::ROLE_ENV && k != super::CONVENTION_ENV)
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let admin_pid = std::process::id() as libc::pid_t;
        // SAFETY: the admin is single-threaded here (it calls this before starting anything),
        // so the child may run ordinary code; it never returns from `serve`.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(admin_end);
                serve(spawner_end, &exe, &env, admin_pid)
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Some(Spawner {
                socket: admin_end,
                pid: child.as_raw(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the spawner; spawning hosts directly");
                None
            }
        }
    }

    /// The spawner's pid (a child of the admin, not an actor).
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Ends the spawner (it exits when its socket closes) and reaps it, so that a stopped
    /// admin leaves no process behind.
    pub(crate) fn stop(self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        drop(self.socket);
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
    }

    /// Starts the host binary in `role` with `fds` as its stderr and fds 3, 4, 5 (a host's
    /// control socket, listener and ledger; the gateway's control socket and its two
    /// listeners); returns its pid, a child of the admin. An `Err` of kind `BrokenPipe` or
    /// `TimedOut` means the spawner is unusable.
    pub(crate) fn spawn(
        &self,
        role: process_role::Role,
        argv0: &str,
        limits: &ResourceLimits,
        fds: [RawFd; 4],
    ) -> io::Result<i32> {
        let request = postcard::to_allocvec(&SpawnRequest {
            argv0: argv0.to_owned(),
            limits: *limits,
            gateway: role == process_role::Role::Gateway,
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let rights = [ControlMessage::ScmRights(&fds)];
        // Signals (SIGCHLD above all) interrupt these calls: retry them.
        loop {
            match sendmsg::<()>(
                self.socket.as_raw_fd(),
                &[IoSlice::new(&request)],
                &rights,
                MsgFlags::empty(),
                None,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => break,
            }
        }
        let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the spawner did not answer"));
            }
            let mut poll_fd = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&self.socket),
                nix::poll::PollFlags::POLLIN,
            )];
            let timeout = nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX);
            match nix::poll::poll(&mut poll_fd, timeout) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let mut reply = [0u8; REPLY_LEN];
        let n = loop {
            match nix::sys::socket::recv(self.socket.as_raw_fd(), &mut reply, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                got => break got.map_err(io::Error::from)?,
            }
        };
        if n != REPLY_LEN {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the spawner has gone"));
        }
        let answer = i32::from_le_bytes([reply[0], reply[1], reply[2], reply[3]]);
        let origin = i32::from_le_bytes([reply[4], reply[5], reply[6], reply[7]]);
        if answer < 0 {
            let e = io::Error::from_raw_os_error(-answer);
            // Out of fds: say whose, and which limit (the new process has the spawner's).
            let process = match origin {
                IN_CHILD => "the new host process, before its exec, under the spawner",
                _ => "the spawner",
            };
            if let Some(which) = process_role::fd_exhaustion(&e, process, self.pid as u32) {
                return Err(io::Error::other(format!(
                    "{e}: {which}; it inherits the admin's limit: raise it (ulimit -n)"
                )));
            }
            return Err(e);
        }
        Ok(answer)
    }
}

/// The spawner's loop: one request, one clone, one reply, until the admin goes.
fn serve(socket: OwnedFd, exe: &CString, env: &[CString], admin_pid: libc::pid_t) -> ! {
    // Keep only the socket and stdio: close every other fd the admin had.
    let sock = socket.as_raw_fd();
    std::mem::forget(socket);
    // SAFETY: close_range takes fd numbers only; the ranges leave out `sock` and 0..=2.
    unsafe {
        if sock > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (sock - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (sock + 1) as u32, u32::MAX, 0u32);
    }
    // SAFETY: prctl with integer arguments; the spawner dies with the admin.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: getppid has no arguments.
    if unsafe { libc::getppid() } != admin_pid {
        // SAFETY: _exit ends the process at once.
        unsafe { libc::_exit(0) };
    }
    // The environment of each role: the admin's, with the role set.
    let role_env = |role: process_role::Role| {
        CString::new(format!("{}={}", process_role::ROLE_ENV, role.env_value())).unwrap_or_default()
    };
    let (host_role, gateway_role) = (
        role_env(process_role::Role::Host),
        role_env(process_role::Role::Gateway),
    );
    let env_of = |role: &CString| -> Vec<*const libc::c_char> {
        env.iter()
            .chain(std::iter::once(role))
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (host_env, gateway_env) = (env_of(&host_role), env_of(&gateway_role));
    loop {
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (len, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) if msg.bytes == 0 => {
                    // The admin closed its end: nothing more to do.
                    // SAFETY: _exit ends the process at once.
                    unsafe { libc::_exit(0) }
                }
                Ok(msg) => {
                    let mut fds: Vec<OwnedFd> = Vec::new();
                    for c in msg.cmsgs().into_iter().flatten() {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: SCM_RIGHTS just installed these fds in this process.
                            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                    (msg.bytes, fds)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                // SAFETY: _exit ends the process at once.
                Err(_) => unsafe { libc::_exit(0) },
            }
        };
        let (answer, origin) = match postcard::from_bytes::<SpawnRequest>(&buf[..len]) {
            Ok(request) if fds.len() == 4 => {
                let env = if request.gateway { &gateway_env } else { &host_env };
                spawn_one(&request, &fds, exe, env, admin_pid)
            }
            _ => (-libc::EINVAL, IN_SPAWNER),
        };
        drop(fds);
        let mut reply = [0u8; REPLY_LEN];
        reply[..4].copy_from_slice(&answer.to_le_bytes());
        reply[4..].copy_from_slice(&origin.to_le_bytes());
        let _ = nix::sys::socket::send(sock, &reply, MsgFlags::empty());
    }
}

/// Clones a child of the admin that becomes the host: its pid, or `-errno` and where the
/// failure happened ([`IN_SPAWNER`] or [`IN_CHILD`]).
fn spawn_one(
    request: &SpawnRequest,
    fds: &[OwnedFd],
    exe: &CString,
    env: &[*const libc::c_char],
    admin_pid: libc::pid_t,
) -> (i32, i32) {
    let Ok(argv0) = CString::new(request.argv0.as_str()) else {
        return (-libc::EINVAL, IN_SPAWNER);
    };
    // The child reports a failure before or at exec on this pipe; a successful exec closes
    // it (close-on-exec). So the answer comes after the exec, as with `std::process::Command`:
    // the host runs its own code by then, and an exec error is the admin's error.
    let mut report = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(report.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return (
            -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EMFILE),
            IN_SPAWNER,
        );
    }
    let [report_read, report_write] = report;
    let argv = [argv0.as_ptr(), std::ptr::null()];
    // Move the sources high so that no dup2 below clobbers another.
    let mut high = [0 as RawFd; 4];
    for (slot, fd) in high.iter_mut().zip(fds) {
        // SAFETY: F_DUPFD_CLOEXEC on an fd this process owns.
        let h = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_FD) };
        if h < 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EBADF);
            for made in high.iter().take_while(|h| **h > 0) {
                // SAFETY: closing the copies this loop made so far.
                unsafe { libc::close(*made) };
            }
            // SAFETY: closing the report pipe made above.
            unsafe {
                libc::close(report_read);
                libc::close(report_write);
            }
            return (-errno, IN_SPAWNER);
        }
        *slot = h;
    }
    let limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = super::spawn::rlimits_of(&request.limits);
    // SAFETY: a fork-like clone: the child gets a copy of this single-threaded process and
    // only calls async-signal-safe functions (dup2, setrlimit, prctl, getppid, execve, _exit)
    // on data prepared above. CLONE_PARENT makes it the admin's child.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: see above; every path ends in execve or _exit, a failure reported first.
        unsafe {
            let fail = |errno: i32| -> ! {
                let bytes = errno.to_le_bytes();
                libc::write(report_write, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127)
            };
            // stderr, then the control socket, the listener and the ledger on 3, 4, 5.
            if let Err(errno) = super::spawn::prepare_child(&high, 2, &limits, Some(admin_pid)) {
                fail(errno);
            }
            libc::execve(exe.as_ptr(), argv.as_ptr(), env.as_ptr());
            fail(*libc::__errno_location());
        }
    }
    for h in high {
        // SAFETY: closing the copies made above.
        unsafe { libc::close(h) };
    }
    // SAFETY: closing our copy of the write end, so that the read below ends at the exec.
    unsafe { libc::close(report_write) };
    let answer = if pid < 0 {
        (
            -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN),
            IN_SPAWNER,
        )
    } else {
        let mut bytes = [0u8; 4];
        let n = loop {
            // SAFETY: read writes at most 4 bytes into `bytes`.
            let n = unsafe { libc::read(report_read, bytes.as_mut_ptr().cast(), bytes.len()) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        if n == 4 {
            // It failed before running the host; the admin reaps it like any child of its own.
            (-i32::from_le_bytes(bytes).max(1), IN_CHILD)
        } else {
            (pid as i32, IN_SPAWNER)
        }
    };
    // SAFETY: closing the read end made above.
    unsafe { libc::close(report_read) };
    answer
}
