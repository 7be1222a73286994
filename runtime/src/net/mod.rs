//! Sockets: the framed control connection, the peer-uid check, and the data-path endpoint
//! shared by actor hosts and clients.

pub mod endpoint;
pub(crate) mod framed;
pub mod log_limit;
pub(crate) mod peer;
pub mod pending;
pub(crate) mod spin;

use std::{io, time::Duration};

use mio::{net::UnixStream, Events, Interest, Poll, Registry, Token};

/// One readiness event, copied out of `mio::Events` so that a loop may handle it with
/// `&mut self`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    pub token: Token,
    /// Readable, or closed, or in error: a read will say which.
    pub readable: bool,
    /// The peer hung up, or the socket is in error: read to the end, not to a short read.
    pub hung_up: bool,
    pub writable: bool,
}

/// Waits up to `timeout` for events and copies them into `ready` (cleared first and reused,
/// so waiting allocates nothing). An interrupted wait returns no events.
pub(crate) fn wait_ready(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
    ready: &mut Vec<Ready>,
) -> io::Result<()> {
    ready.clear();
    match poll.poll(events, timeout) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(e),
    }
    ready.extend(events.iter().map(|e| Ready {
        token: e.token(),
        readable: e.is_readable() || e.is_read_closed() || e.is_error(),
        hung_up: e.is_read_closed() || e.is_error(),
        writable: e.is_writable(),
    }));
    Ok(())
}

/// Registers a socket for writable events only while a write is waiting for room.
///
/// Sockets are edge-triggered, and a Unix socket signals "writable" every time its peer
/// reads: registered for it all the time, each side of a request and reply woke up once more
/// per message for nothing (an extra `epoll_wait` and a wake-up across CPUs per round
/// trip). So data sockets, and the admin's control connections, are registered readable
/// only, and `WRITABLE` is added when a write would block and removed once the queue is
/// written. `epoll_ctl` reports a socket
/// that is already writable at once, so arming cannot miss the room it waits for.
pub(crate) fn set_write_interest(
    registry: &Registry,
    stream: &mut UnixStream,
    token: Token,
    armed: &mut bool,
    want: bool,
) {
    if *armed == want {
        return;
    }
    let interest = if want {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    match registry.reregister(stream, token, interest) {
        Ok(()) => *armed = want,
        // Only a closed fd fails here; its reader sees the end of the stream.
        Err(e) => tracing::debug!(error = %e, "could not change a socket's interest"),
    }
}
