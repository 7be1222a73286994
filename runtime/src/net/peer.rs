//! Who is on the other end of a Unix socket: the kernel's word (`SO_PEERCRED`), checked on
//! every accepted connection before a byte of it is read.

use std::os::fd::AsFd;

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
