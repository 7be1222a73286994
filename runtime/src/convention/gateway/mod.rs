//! The gateway process: everything of a convention that touches the network, in one
//! process per admin, in one non-blocking loop.
//!
//! The admin is the process that must outlive every fault, so it parses no byte a
//! stranger sent. It starts this process (the host executable, `GREENROOM_ROLE=gateway`,
//! through the spawner like a host, so it dies with the admin) with four fds: its stderr
//! (a pipe into the admin's log), the control socketpair (fd 3), the convention's TCP
//! listener (fd 4) and `gateway.sock`'s listener (fd 5). The admin binds both listeners and
//! keeps them, so a restarted gateway takes over the same port and socket, and connections
//! made meanwhile wait in their backlogs.
//!
//! ```text
//!           admin ══ control (fd 3): ToGateway / FromGateway ══ gateway
//!                                                                 │ one mio loop:
//!   local senders ──gateway.sock (fd 5)──▶ Streams ◀──────────────┤
//!                    local receivers ◀──── Streams                │
//!                                          Members (foca, caps)   │
//!   other members ══convention port (fd 4)══ Links (Noise) ◀──────┘
//! ```
//!
//! The parts, each in its own file:
//!
//! * `links.rs`: the TCP side — the port's budgets before authentication
//!   ([`admission`]), one [`LinkMachine`](super::link::LinkMachine) per link, each link
//!   bound to the member whose key it proved;
//! * [`Members`] (in `membership.rs`): SWIM, capabilities, keys;
//! * `streams.rs`: the Unix side of the cross-machine data path;
//! * this file: the loop that moves frames between them and the admin. Every frame from a
//!   member about a stream is checked against the member whose link carried it
//!   ([`GatewayFrame::check_sender`]) before anything acts on it.
//!
//! **Restarts.** A gateway that dies is restarted by its admin (with a backoff, see
//! `convention/handle.rs`), with the same identity (the last renewal it reported), so that
//! the others take it for the same member. What was in flight is accounted for as when a
//! link breaks: see `streams.rs`.

pub mod admission;
mod links;
mod streams;

use std::{
    collections::HashSet,
    io,
    os::fd::{FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use greenroom_protocol::{
    convention::{ConventionFrame, GatewayFrame},
    gateway::{FromGateway, GatewayStart, ToGateway},
    NodeId,
};
use mio::{Events, Interest, Poll, Token};

use self::{
    links::{LinkEvent, Links},
    streams::Streams,
};
use super::{
    link::LinkConfig,
    membership::{Life, MemberId, Members},
    secret::{ClusterSecret, StaticKey},
};
use crate::{
    error::{Error, Result},
    net::{framed::Framed, log_limit::LogLimit, spin::Spinner, Ready},
    process_role::CONTROL_FD,
};

/// The convention's TCP listener a gateway inherits.
pub const TCP_LISTENER_FD: i32 = 4;
/// `gateway.sock`'s listener a gateway inherits.
pub const UNIX_LISTENER_FD: i32 = 5;

const CONTROL: Token = Token(0);
/// `Streams` takes tokens from here (its listener one below), `Links` from [`LINKS`].
const STREAMS: usize = 2;
const LINKS: usize = 1 << 40;

/// How long a gateway waits for its admin's first frame.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a gateway whose admin has gone keeps writing its links (its goodbye, the
/// admin's last frames) before it exits.
const FAREWELL: Duration = Duration::from_millis(300);
/// How often the gateway asks whether its admin is answering.
const ADMIN_PING: Duration = Duration::from_millis(250);
/// How long the admin may be silent before the gateway pauses this member's membership
/// ([`Members::pause`](super::membership::Members::pause)): the others then notice a failed
/// member within the detection time, as for a dead one.
pub const ADMIN_SILENCE: Duration = Duration::from_millis(1500);

/// Entry point of a gateway process: reads its start from the admin, serves until the
/// admin goes, and exits. Called by `greenroom_host::init` when `GREENROOM_ROLE=gateway`.
pub fn run_from_env() -> ! {
    crate::logging::init_host_logging();
    let code = match Gateway::from_inherited_fds().and_then(|gateway| gateway.run()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "the gateway failed");
            1
        }
    };
    std::process::exit(code)
}

/// The gateway's state: see [the module docs](self).
pub(crate) struct Gateway {
    poll: Poll,
    control: Framed,
    links: Links,
    streams: Streams,
    members: Members,
    me: NodeId,
    /// Frames from members that broke the rules of their stream or their identity.
    refused_frames: LogLimit,
    /// The live members' nodes, as `streams` was last told.
    live: HashSet<NodeId>,
    /// When the admin last said anything, and when it is next asked.
    admin_heard: Instant,
    next_ping: Instant,
    /// Spins briefly before blocking while the gateway is in a conversation.
    spinner: Spinner,
}

impl Gateway {
    /// The gateway of a process its admin started: fds 3, 4 and 5, and the start frame.
    fn from_inherited_fds() -> Result<Gateway> {
        // SAFETY: the admin started this process with these three fds open and meant for
        // it (`process_role::CONTROL_FD`, the listeners); nothing else in the process owns
        // them.
        let (control, tcp, unix) = unsafe {
            (
                OwnedFd::from_raw_fd(CONTROL_FD),
                OwnedFd::from_raw_fd(TCP_LISTENER_FD),
                OwnedFd::from_raw_fd(UNIX_LISTENER_FD),
            )
        };
        let control = std::os::unix::net::UnixStream::from(control);
        let tcp = std::net::TcpListener::from(tcp);
        let unix = std::os::unix::net::UnixListener::from(unix);
        let start = read_start(&control)?;
        let prepared = (|| {
            control
                .set_nonblocking(true)
                .map_err(Error::io("making the control socket non-blocking"))?;
            tcp.set_nonblocking(true)
                .map_err(Error::io("making the convention listener non-blocking"))?;
            unix.set_nonblocking(true)
                .map_err(Error::io("making gateway.sock's listener non-blocking"))?;
            Ok(())
        })();
        let started = prepared.and_then(|()| {
            let control = control.try_clone().map_err(Error::io("cloning the control socket"))?;
            Gateway::start(
                &start,
                mio::net::UnixStream::from_std(control),
                mio::net::TcpListener::from_std(tcp),
                mio::net::UnixListener::from_std(unix),
            )
        });
        if let Err(e) = &started {
            // The admin hears why, then sees this process exit.
            let mut frame = Vec::new();
            let failed = FromGateway::Failed { reason: e.to_string() };
            if greenroom_protocol::encode_frame(&mut frame, &failed, u32::MAX, "failure").is_ok() {
                let _ = control.set_nonblocking(false);
                let _ = std::io::Write::write_all(&mut &control, &frame);
            }
        }
        started
    }

    /// A gateway for `start`, talking to its admin on `control`, serving the two listeners.
    pub fn start(
        start: &GatewayStart,
        control: mio::net::UnixStream,
        tcp: mio::net::TcpListener,
        unix: mio::net::UnixListener,
    ) -> Result<Gateway> {
        let poll = Poll::new().map_err(Error::io("creating the gateway's epoll instance"))?;
        let mut control = Framed::new(control, u32::MAX);
        poll.registry()
            .register(&mut control.stream, CONTROL, Interest::READABLE | Interest::WRITABLE)
            .map_err(Error::io("registering the control socket"))?;
        let secret = ClusterSecret::load(&start.secret_file)?;
        let key = StaticKey::from_private_bytes(&start.static_key).ok_or_else(|| Error::ConventionLink {
            peer: "-".into(),
            reason: "the admin gave its gateway a static key that is not 32 bytes".into(),
        })?;
        let mut config = LinkConfig::new(&start.convention, secret)?.with_static_key(key.clone());
        config.max_frame = start.max_frame.saturating_add(64 * 1024);
        let me = MemberId::renewed(start.advertise, start.incarnation, start.bump);
        let node = me.node();
        let life = (me.addr, me.incarnation);
        let registry = || {
            poll.registry()
                .try_clone()
                .map_err(Error::io("cloning the poll's registry"))
        };
        let links = Links::new(registry()?, tcp, LINKS, config, life, admission::Limits::default())
            .map_err(Error::io("registering the convention listener"))?;
        let streams = Streams::new(
            registry()?,
            unix,
            STREAMS,
            start.runtime_dir.clone(),
            node,
            start.max_frame,
            start.max_pending as usize,
        )
        .map_err(Error::io("registering gateway.sock's listener"))?;
        let mut members = Members::new(
            me,
            start.leader,
            start.capabilities.clone(),
            start.load,
            start.types.clone(),
            Instant::now(),
        );
        if !start.members.is_empty() {
            members.seed(start.members.clone(), Instant::now());
        }
        let mut gateway = Gateway {
            poll,
            control,
            links,
            streams,
            members,
            me: node,
            refused_frames: LogLimit::new("convention links: frames refused"),
            live: HashSet::new(),
            admin_heard: Instant::now(),
            next_ping: Instant::now(),
            spinner: Spinner::new(),
        };
        gateway.tell_admin(&FromGateway::Ready {
            public_key: key.public().to_vec(),
        });
        tracing::info!(convention = %start.convention, me = %start.advertise, node = node.0, bump = start.bump,
            leader = ?start.leader, "gateway started");
        Ok(gateway)
    }

    /// Serves until the admin closes the control socket.
    pub fn run(mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        let mut ready = Vec::with_capacity(256);
        loop {
            let turn = Instant::now();
            self.route(turn);
            self.links.flush();
            match self.control.flush() {
                Ok(_) => {}
                // The admin died (its end of the socketpair closed) before its closing was
                // read: the same goodbye as for a close.
                Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                    tracing::info!("the admin is gone; the gateway says goodbye and exits");
                    self.farewell(&mut events);
                    return Ok(());
                }
                Err(e) => return Err(Error::io("writing to the admin")(e)),
            }
            self.links.accept_waiting(turn);
            let busy = self.links.wants_rescan() || self.streams.wants_rescan();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                let next = [
                    self.members.next_deadline(),
                    Some(self.next_ping),
                    self.links.next_deadline(),
                    self.streams.next_deadline(),
                ]
                .into_iter()
                .flatten()
                .min();
                next.map(|at| at.saturating_duration_since(Instant::now()))
            };
            // A short adaptive spin first, as endpoints do: every hop of a cross-machine
            // message passes through two gateways, and a gateway asleep on a halted CPU
            // costs tens of microseconds to wake (see `net/spin.rs`).
            self.spinner
                .wait(&mut self.poll, &mut events, timeout, &mut ready)
                .map_err(Error::io("waiting for events"))?;
            let now = Instant::now();
            for &Ready {
                token,
                readable,
                writable,
                ..
            } in &ready
            {
                if token == CONTROL {
                    if readable && !self.read_control(now)? {
                        tracing::info!("the admin closed the control socket; the gateway says goodbye and exits");
                        self.farewell(&mut events);
                        return Ok(());
                    }
                    continue;
                }
                if self.streams.owns(token) {
                    self.streams.ready(token, readable, writable);
                } else if self.links.owns(token) {
                    let members = &mut self.members;
                    self.links
                        .ready(token, readable, writable, now, &mut |life, key| members.bind(life, key));
                }
            }
            let members = &mut self.members;
            self.links.rescan(now, &mut |life, key| members.bind(life, key));
            self.streams.rescan();
            self.members.tick(now);
            self.links.tick(now);
            self.streams.tick(now);
            self.refused_frames.tick(now);
            self.watch_admin(now);
        }
    }

    /// The admin is gone (it stopped, or died): what it sent last goes out, the others are
    /// told this member leaves (so that they need not wait to notice), and the links are
    /// written for up to [`FAREWELL`].
    fn farewell(&mut self, events: &mut Events) {
        let now = Instant::now();
        // Gone rather than silent: the goodbye goes out even if it had paused.
        self.members.resume(now);
        self.members.leave(now);
        let deadline = now + FAREWELL;
        loop {
            self.route(Instant::now());
            self.links.flush();
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.links.unwritten() || left.is_zero() {
                return;
            }
            if self.poll.poll(events, Some(left)).is_err() {
                return;
            }
            let ready: Vec<(Token, bool)> = events.iter().map(|e| (e.token(), e.is_writable())).collect();
            for (token, writable) in ready {
                if writable && self.links.owns(token) {
                    let members = &mut self.members;
                    self.links.ready(token, false, true, Instant::now(), &mut |life, key| {
                        members.bind(life, key)
                    });
                }
            }
        }
    }

    /// Asks the admin whether it answers, and pauses this member's membership while it does
    /// not: a member whose admin is stopped or hung must look failed to the others, though
    /// its gateway runs on.
    fn watch_admin(&mut self, now: Instant) {
        if now >= self.next_ping {
            self.next_ping = now + ADMIN_PING;
            self.tell_admin(&FromGateway::Ping);
        }
        if !self.members.paused() && now.saturating_duration_since(self.admin_heard) >= ADMIN_SILENCE {
            self.members.pause(now);
            tracing::warn!(silent = ?ADMIN_SILENCE, "the admin does not answer; this member stops speaking in the convention until it does");
        }
    }

    /// Reads the admin's frames; `false` once it has closed the socket.
    fn read_control(&mut self, now: Instant) -> Result<bool> {
        loop {
            let outcome = match self.control.read() {
                Ok(outcome) => outcome,
                Err(e) => {
                    return Err(Error::ConventionLink {
                        peer: "admin".into(),
                        reason: format!("the control socket broke: {e:?}"),
                    })
                }
            };
            if !outcome.frames.is_empty() {
                self.admin_heard = now;
                if self.members.paused() {
                    self.members.resume(now);
                    tracing::warn!("the admin answers again; this member speaks in the convention again");
                }
            }
            for body in outcome.frames {
                match greenroom_protocol::frame::decode::<ToGateway>(&body, "admin's frame") {
                    Ok(frame) => self.admin_frame(frame, now),
                    Err(e) => tracing::error!(error = %e, "a frame from the admin that does not decode"),
                }
            }
            if outcome.closed {
                return Ok(false);
            }
            if !outcome.more {
                return Ok(true);
            }
        }
    }

    fn admin_frame(&mut self, frame: ToGateway, now: Instant) {
        match frame {
            ToGateway::Start(_) => tracing::warn!("a second start from the admin; ignored"),
            ToGateway::Pong => {}
            ToGateway::Capabilities(capabilities) => self.members.set_capabilities(capabilities),
            ToGateway::Types(types) => self.members.set_types(types),
            ToGateway::Load(load) => self.members.set_load(load),
            ToGateway::Send { node, frame } => match self.members.addr_of(node) {
                Some(addr) => self.links.send_data(addr, frame, now),
                None => {
                    tracing::warn!(
                        node = node.0,
                        "a frame for the admin of a node that is no member now; not sent"
                    );
                    self.tell_admin(&FromGateway::LinkBroke(node));
                }
            },
        }
    }

    /// Moves what each part produced to where it goes, until nothing is left.
    fn route(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            let out = self.members.take_output();
            moved |= !out.send.is_empty() || !out.events.is_empty() || out.changed || out.renewed.is_some();
            for (addr, frame) in out.send {
                self.links.send_control(addr, &frame, now);
            }
            if let Some(bump) = out.renewed {
                self.tell_admin(&FromGateway::Renewed { bump });
            }
            for event in out.events {
                self.membership_event(event);
            }
            if out.changed {
                let views = self.members.views(now);
                let live: HashSet<NodeId> = views.iter().map(|v| v.node()).collect();
                if live != self.live {
                    self.live = live.clone();
                    self.streams.set_live(live);
                }
                self.tell_admin(&FromGateway::Members(views));
            }
            for event in self.links.take_events() {
                moved = true;
                self.link_event(event, now);
            }
            for (node, frame) in self.streams.take_outbox() {
                moved = true;
                match self.members.addr_of(node) {
                    Some(addr) => self.links.send_data(addr, frame, now),
                    None => tracing::debug!(node = node.0, "a gateway frame for a member gone; dropped"),
                }
            }
            for frame in self.streams.take_for_admin() {
                moved = true;
                self.tell_admin(&frame);
            }
            if !moved {
                return;
            }
        }
    }

    fn membership_event(&mut self, event: super::MembershipEvent) {
        use super::MembershipEvent as E;
        let frame = match event {
            // The admin takes a member in with its capabilities, which follow at once.
            E::Up(_) => return,
            E::Down(m) => {
                // Its streams end, and what our link to it still holds never arrives.
                self.links.reset(m.addr);
                let reason = format!("the member at {} left or died", m.addr);
                self.streams.link_lost(m.node(), &reason, true);
                FromGateway::Down {
                    addr: m.addr,
                    incarnation: m.incarnation,
                }
            }
            E::Capabilities(m, capabilities) => FromGateway::Capabilities {
                addr: m.addr,
                incarnation: m.incarnation,
                capabilities,
            },
        };
        self.tell_admin(&frame);
    }

    fn link_event(&mut self, event: LinkEvent, now: Instant) {
        match event {
            LinkEvent::Frame {
                from,
                node,
                link,
                frame,
            } => self.member_frame(from, node, link, frame, now),
            LinkEvent::Ended { from, link } => {
                tracing::debug!(member = %from.0, "a member's link to this one ended; the streams it carried are over");
                self.streams.link_ended(link);
            }
            LinkEvent::Broke {
                addr,
                carried_data,
                reason,
            } => {
                if !carried_data {
                    return;
                }
                let nodes: Vec<NodeId> = self
                    .members
                    .alive()
                    .iter()
                    .filter(|m| m.addr == addr)
                    .map(MemberId::node)
                    .collect();
                for node in nodes {
                    self.streams
                        .link_lost(node, &format!("the link to {addr} broke: {reason}"), false);
                }
            }
        }
    }

    /// A frame from the member `from` (node `sender`), whose link it came on.
    fn member_frame(&mut self, from: Life, sender: NodeId, link: u64, frame: ConventionFrame, now: Instant) {
        match frame {
            ConventionFrame::Membership(bytes) => self.members.membership_data(&bytes, now),
            ConventionFrame::Capabilities {
                version,
                capabilities,
                load,
                types,
            } => self.members.capabilities(from, version, capabilities, load, types, now),
            ConventionFrame::Gateway(frame) => match frame.check_sender(sender, self.me) {
                Ok(()) => self.streams.remote(sender, link, frame),
                Err(why) => {
                    if self.refused_frames.allow() {
                        tracing::warn!(member = %from.0, incarnation = from.1, reason = %why, frame = gateway_frame_name(&frame),
                                "a gateway frame from a member refused: it is not that member's to send");
                    }
                }
            },
            ConventionFrame::Hello { .. } => {}
        }
    }

    fn tell_admin(&mut self, frame: &FromGateway) {
        if let Err(e) = self.control.queue(frame, "frame for the admin") {
            tracing::error!(error = %e, "could not encode a frame for the admin");
        }
    }
}

/// The kind of a gateway frame, for logs (never its contents).
fn gateway_frame_name(frame: &GatewayFrame) -> &'static str {
    match frame {
        GatewayFrame::Message { .. } => "Message",
        GatewayFrame::Ack { .. } => "Ack",
        GatewayFrame::Lost { .. } => "Lost",
        GatewayFrame::Closed { .. } => "Closed",
        GatewayFrame::Accepted { .. } => "Accepted",
        GatewayFrame::Create { .. } => "Create",
        GatewayFrame::Created { .. } => "Created",
        GatewayFrame::ChildNotice { .. } => "ChildNotice",
        GatewayFrame::ParentGone { .. } => "ParentGone",
        GatewayFrame::Settle { .. } => "Settle",
        GatewayFrame::Settled { .. } => "Settled",
        GatewayFrame::ClaimName { .. } => "ClaimName",
        GatewayFrame::NameClaim { .. } => "NameClaim",
        GatewayFrame::NameBound { .. } => "NameBound",
    }
}

/// The largest start frame a gateway takes.
const MAX_START: u32 = 1 << 20;

/// Reads the admin's start frame from `control` (blocking, up to [`START_TIMEOUT`]), and not
/// a byte past it: the admin writes on without waiting for [`FromGateway::Ready`]
/// (capabilities, types, frames for other admins), and what follows the start is the loop's
/// to read.
fn read_start(control: &std::os::unix::net::UnixStream) -> Result<GatewayStart> {
    use std::io::Read;
    let refused = |reason: String| Error::ConventionLink {
        peer: "admin".into(),
        reason,
    };
    let read_exact = |buf: &mut [u8]| {
        let mut stream = control;
        stream.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                refused("the admin closed the control socket before starting the gateway".into())
            }
            _ => Error::io("reading the admin's start frame")(e),
        })
    };
    control
        .set_read_timeout(Some(START_TIMEOUT))
        .map_err(Error::io("setting the control socket's timeout"))?;
    let mut prefix = [0u8; greenroom_protocol::LEN_PREFIX];
    read_exact(&mut prefix)?;
    let len = u32::from_le_bytes(prefix);
    if len == 0 || len > MAX_START {
        return Err(refused(format!(
            "the admin's start frame announces {len} bytes (1 to {MAX_START})"
        )));
    }
    let mut body = vec![0u8; len as usize];
    read_exact(&mut body)?;
    match greenroom_protocol::frame::decode::<ToGateway>(&body, "start frame") {
        Ok(ToGateway::Start(start)) => Ok(*start),
        Ok(_) => Err(refused("the admin's first frame is not Start".into())),
        Err(e) => Err(refused(format!("the admin's start frame: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenroom_protocol::Capabilities;

    #[test]
    fn the_start_is_read_alone_and_what_the_admin_wrote_behind_it_stays_for_the_loop() {
        let (admin, gateway) = std::os::unix::net::UnixStream::pair().unwrap();
        let start = GatewayStart {
            convention: "lab".into(),
            advertise: "127.0.0.1:7400".parse().unwrap(),
            leader: None,
            incarnation: 1,
            bump: 0,
            secret_file: "/nonexistent".into(),
            static_key: vec![7; 32],
            runtime_dir: "/nonexistent".into(),
            max_frame: 1 << 20,
            max_pending: 16,
            capabilities: Capabilities::new(),
            load: 0,
            types: None,
            members: Vec::new(),
        };
        // The admin queues more behind the start before the gateway has read anything.
        let mut bytes = Vec::new();
        for frame in [
            ToGateway::Start(Box::new(start.clone())),
            ToGateway::Types(vec!["app::Worker".into()]),
        ] {
            greenroom_protocol::encode_frame(&mut bytes, &frame, u32::MAX, "test").unwrap();
        }
        std::io::Write::write_all(&mut &admin, &bytes).unwrap();
        assert_eq!(read_start(&gateway).unwrap(), start);
        gateway.set_nonblocking(true).unwrap();
        let mut control = Framed::new(mio::net::UnixStream::from_std(gateway), u32::MAX);
        let frames = control.read().unwrap().frames;
        assert_eq!(frames.len(), 1, "the frame behind the start is still there");
        let types = greenroom_protocol::frame::decode::<ToGateway>(&frames[0], "test").unwrap();
        assert_eq!(types, ToGateway::Types(vec!["app::Worker".into()]));

        // An admin that goes before starting its gateway: said so.
        let (admin, gateway) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(admin);
        let err = read_start(&gateway).unwrap_err().to_string();
        assert!(err.contains("before starting the gateway"), "{err}");
    }
}
