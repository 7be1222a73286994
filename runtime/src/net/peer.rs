//! Who is on the other end of a Unix socket: the kernel's word (`SO_PEERCRED`), checked on
//! every accepted connection before a byte of it is read.

use std::{
    os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd},
    path::Path,
    time::Duration,
};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The peer's pid and uid as the kernel recorded them at `connect`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerCred {
    pub pid: i32,
    pub uid: u32,
}

/// Reads the peer credentials of a connected Unix socket.
pub(crate) fn peer_cred(socket: &impl AsFd) -> std::io::Result<PeerCred> {
    let cred = getsockopt(socket, PeerCredentials).map_err(std::io::Error::from)?;
    Ok(PeerCred {
        pid: cred.pid(),
        uid: cred.uid(),
    })
}

/// `Ok` if the peer runs as this process's user; otherwise a reason fit for a log line.
pub(crate) fn check_same_user(socket: &impl AsFd) -> Result<PeerCred, String> {
    let cred = peer_cred(socket).map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let me = nix::unistd::getuid().as_raw();
    if cred.uid != me {
        return Err(format!(
            "peer pid {} runs as uid {}, not as this system's uid {me}",
            cred.pid, cred.uid
        ));
    }
    Ok(cred)
}

/// Connects to the Unix socket at `path`, waiting at most `timeout`: `connect` blocks while
/// the listener's backlog is full (a stopped or hung admin accepts nothing), and a socket's
/// send timeout bounds that wait (`EAGAIN` when it runs out). The stream returned blocks,
/// without timeouts.
pub(crate) fn connect_within(path: &Path, timeout: Duration) -> std::io::Result<std::os::unix::net::UnixStream> {
    use nix::sys::socket::{
        connect, setsockopt, socket, sockopt::SendTimeout, AddressFamily, SockFlag, SockType, UnixAddr,
    };
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let addr = UnixAddr::new(path)?;
    let bound = nix::sys::time::TimeVal::new(
        timeout.as_secs().min(i64::MAX as u64) as i64,
        timeout.subsec_micros().max(1) as _,
    );
    setsockopt(&fd, SendTimeout, &bound)?;
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect did not complete within {timeout:?}: nobody accepts"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    setsockopt(&fd, SendTimeout, &nix::sys::time::TimeVal::new(0, 0))?;
    // SAFETY: `fd` is a connected stream socket this function owns; ownership moves.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd.into_raw_fd()) })
}
