//! The admin: one process, one thread, one `mio` loop. It never runs user code and is never
//! on the data path.
//!
//! It owns:
//! * the **actor table** — every address it issued, its type, parent, children, host pid and
//!   [`ActorState`];
//! * **spawning** — one host process per actor, started with its control socket (fd 3) and
//!   the actor's listening socket (fd 4), `PR_SET_PDEATHSIG(SIGKILL)` set;
//! * **reaping** — `SIGCHLD` arrives as a poll event (signal-hook-mio); each one drains
//!   `waitpid(-1, WNOHANG)`, because signals coalesce;
//! * **exit and shutdown** — the recursive `ActorExitRequest` protocol, deadlines after which
//!   stragglers are SIGKILLed, and removal of the runtime directory.
//!
//! The admin keeps each actor's listening socket open for the actor's whole life, so the
//! address (a path in the runtime directory) exists from `create_actor` until the actor is
//! gone for good: messages sent before the host is up wait in the socket.
//!
//! ## Life of an actor
//! ```text
//! CreateActor ─▶ bind <id>.sock, spawn host ─▶ Starting ─HostReady─▶ Running
//!   Running ─host: Exiting─▶ Exiting ─(children gone)─ ExitNow ─▶ host exits ─▶ reaped ─▶ Gone
//!   any state ─host dies─▶ reaped ─▶ Gone(cause); parent gets ChildActorExited; children stopped
//! ```

mod exit;
pub(crate) mod spawn;

use std::{
    collections::{BTreeMap, HashMap},
    os::{
        fd::FromRawFd,
        unix::{net::UnixListener, process::CommandExt},
    },
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use greenroom_protocol::{
    frame::decode, ActorState, Address, CreateFailure, ExitCause, FromAdmin, Handshake, HandshakeReply, PeerRole,
    ToAdmin, DEFAULT_MAX_FRAME,
};
use mio::{net::UnixStream, Events, Interest, Poll, Token};
use nix::{
    sys::{
        signal::{kill, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::{
    error::{Error, Result},
    message::{ActorExitRequest, AnyMessage, ChildActorExited},
    net::framed::{Framed, ReadError},
    net::peer::check_same_user,
    process_role::{self, CONTROL_FD},
    runtime_dir,
};

const SIGNALS: Token = Token(0);
const OWNER: Token = Token(1);
const FIRST_PEER: usize = 2;

/// How long an exiting actor's children get before they are SIGKILLed, and how long a
/// shutdown waits for actors to finish before killing them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a host that closed its control connection may take to exit before it is killed.
const CLOSED_CONTROL_GRACE: Duration = Duration::from_secs(1);
/// How long a host has to report ready (or fail) before it is killed.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Entry point of an admin process: reads its settings from the environment, serves until
/// shutdown, and exits. Called by `greenroom_host::init` when `GREENROOM_ROLE=admin`.
pub fn run_from_env() -> ! {
    process_role::init_process_logging();
    let code = match Admin::from_env().and_then(|admin| admin.run()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "the admin failed");
            1
        }
    };
    std::process::exit(code)
}

/// Who is on the other end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerKind {
    /// A client program; its endpoint id once it registered.
    Client(Option<u64>),
    /// The host of this actor id.
    Host(u64),
}

struct ControlPeer {
    framed: Framed,
    kind: PeerKind,
    handshake_done: bool,
}

struct ActorRecord {
    address: Address,
    type_name: String,
    parent: Option<u64>,
    /// Live children, in start order.
    children: Vec<u64>,
    pid: Option<Pid>,
    control: Option<Token>,
    /// Kept open for the actor's life: its address on disk.
    listener: Option<UnixListener>,
    state: ActorState,
    /// A top-level create waiting for this actor to be ready: (client connection, request).
    creator: Option<(Token, u64)>,
    start_failure: Option<CreateFailure>,
    /// Kill the host (or, when exiting, its remaining children) if this passes.
    deadline: Option<Instant>,
}

impl ActorRecord {
    fn is_live(&self) -> bool {
        !matches!(self.state, ActorState::Gone(_))
    }
}

struct ShutdownState {
    reply_to: Option<(Token, u64)>,
    deadline: Instant,
    killed: bool,
}

struct Admin {
    poll: Poll,
    events: Events,
    signals: Signals,
    rundir: PathBuf,
    host_exe: PathBuf,
    max_frame: u32,
    next_id: u64,
    peers: HashMap<Token, ControlPeer>,
    next_token: usize,
    actors: BTreeMap<u64, ActorRecord>,
    by_pid: HashMap<Pid, u64>,
    clients: HashMap<u64, Token>,
    known_types: Option<Vec<String>>,
    settle_waiters: Vec<(Token, u64, Address)>,
    shutdown: Option<ShutdownState>,
}

impl Admin {
    fn from_env() -> Result<Self> {
        let rundir = std::env::var_os(process_role::RUNTIME_DIR_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::NotStartedByGreenroom(format!(
                    "admin started without {}; admins are started by ActorSystem::start",
                    process_role::RUNTIME_DIR_ENV
                ))
            })?;
        let host_exe = match std::env::var_os(process_role::HOST_EXE_ENV) {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe().map_err(Error::io("finding the host executable"))?,
        };
        let max_frame = std::env::var(process_role::MAX_FRAME_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_FRAME);
        runtime_dir::create(&rundir)?;

        let poll = Poll::new().map_err(Error::io("creating an epoll instance"))?;
        let mut signals =
            Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP]).map_err(Error::io("installing signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(Error::io("registering signals"))?;

        // SAFETY: fd 3 is the owner's control socket, put there by the client that started
        // this admin (see `ActorSystem::start`); nothing else in this process owns it.
        let owner = unsafe { std::os::unix::net::UnixStream::from_raw_fd(CONTROL_FD) };
        // Make sure no later child inherits the owner's socket.
        nix::fcntl::fcntl(
            CONTROL_FD,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| Error::io("marking the owner socket close-on-exec")(e.into()))?;
        owner
            .set_nonblocking(true)
            .map_err(Error::io("making the owner socket non-blocking"))?;
        let mut owner = UnixStream::from_std(owner);
        poll.registry()
            .register(&mut owner, OWNER, Interest::READABLE | Interest::WRITABLE)
            .map_err(Error::io("registering the owner socket"))?;

        let mut peers = HashMap::new();
        peers.insert(
            OWNER,
            ControlPeer {
                framed: Framed::new(owner, DEFAULT_MAX_FRAME),
                kind: PeerKind::Client(None),
                handshake_done: false,
            },
        );
        tracing::info!(rundir = %rundir.display(), pid = std::process::id(), "admin started");
        Ok(Admin {
            poll,
            events: Events::with_capacity(256),
            signals,
            rundir,
            host_exe,
            max_frame,
            next_id: 1,
            peers,
            next_token: FIRST_PEER,
            actors: BTreeMap::new(),
            by_pid: HashMap::new(),
            clients: HashMap::new(),
            known_types: None,
            settle_waiters: Vec::new(),
            shutdown: None,
        })
    }

    fn run(mut self) -> Result<()> {
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("waiting for events")(e)),
            }
            let ready: Vec<(Token, bool, bool)> = self
                .events
                .iter()
                .map(|e| {
                    (
                        e.token(),
                        e.is_readable() || e.is_read_closed() || e.is_error(),
                        e.is_writable(),
                    )
                })
                .collect();
            for (token, readable, writable) in ready {
                if token == SIGNALS {
                    self.on_signals();
                    continue;
                }
                if writable {
                    self.flush_peer(token);
                }
                if readable {
                    self.read_peer(token);
                }
            }
            self.check_deadlines();
            if self.shutdown_finished() {
                self.finish_shutdown();
                return Ok(());
            }
        }
    }

    // ---- signals and reaping ----

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGCHLD => self.reap_all(),
                _ => {
                    tracing::info!(signal, "admin asked to stop by a signal");
                    self.begin_shutdown(None);
                }
            }
        }
    }

    fn reap_all(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { return };
                    if let Some(id) = self.by_pid.remove(&pid) {
                        self.on_host_exit(id, status);
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return, // ECHILD: nothing left to reap
            }
        }
    }

    fn on_host_exit(&mut self, id: u64, status: WaitStatus) {
        let Some(rec) = self.actors.get_mut(&id) else { return };
        let exiting = rec.state == ActorState::Exiting;
        let cause = match rec.start_failure.clone() {
            Some(failure) => ExitCause::StartFailed(failure.to_string()),
            None => exit::cause_of(status, exiting).unwrap_or(ExitCause::ExitCode(-1)),
        };
        let pid = rec.pid.take().map_or(0, |p| p.as_raw());
        tracing::info!(actor = %rec.address, actor_type = %rec.type_name, pid, %cause, "actor host exited");
        rec.state = ActorState::Gone(cause.clone());
        rec.deadline = None;
        rec.listener = None;
        let address = rec.address;
        let parent = rec.parent;
        let orphans = std::mem::take(&mut rec.children);
        let creator = rec.creator.take();
        let failure = rec.start_failure.take();
        let control = rec.control.take();
        let _ = std::fs::remove_file(runtime_dir::socket_path(&self.rundir, address));
        if let Some(token) = control {
            self.drop_peer(token);
        }
        if let Some((token, request)) = creator {
            let failure = failure.unwrap_or_else(|| CreateFailure::StartFailed(cause.to_string()));
            self.send(
                token,
                &FromAdmin::Created {
                    request,
                    result: Err(failure),
                },
            );
        }
        // Children never outlive their parent.
        for child in orphans {
            self.stop_actor(child, address);
        }
        if let Some(parent_id) = parent {
            self.child_gone(parent_id, id, cause);
        }
        self.answer_settled(address);
    }

    /// Tells a parent that its child is gone and lets an exiting parent finish.
    fn child_gone(&mut self, parent_id: u64, child_id: u64, cause: ExitCause) {
        let Some(parent) = self.actors.get_mut(&parent_id) else {
            return;
        };
        parent.children.retain(|c| *c != child_id);
        if !parent.is_live() {
            return;
        }
        let (control, exiting, no_children) = (
            parent.control,
            parent.state == ActorState::Exiting,
            parent.children.is_empty(),
        );
        let child = Address::local(child_id);
        if let Some(token) = control {
            match AnyMessage::new(&ChildActorExited { child, cause }) {
                Ok(msg) => self.send(
                    token,
                    &FromAdmin::Deliver {
                        sender: child,
                        payload: msg.into_payload(),
                    },
                ),
                Err(e) => tracing::error!(error = %e, "could not encode ChildActorExited"),
            }
            if exiting && no_children {
                self.send(token, &FromAdmin::ExitNow);
            }
        }
    }

    /// Asks a live actor to exit, on behalf of `on_behalf_of` (its dead parent, or the admin).
    fn stop_actor(&mut self, id: u64, on_behalf_of: Address) {
        let Some(rec) = self.actors.get(&id) else { return };
        if !rec.is_live() {
            return;
        }
        let control = rec.control;
        let pid = rec.pid;
        if let (Some(token), Ok(msg)) = (control, AnyMessage::new(&ActorExitRequest)) {
            self.send(
                token,
                &FromAdmin::Deliver {
                    sender: on_behalf_of,
                    payload: msg.into_payload(),
                },
            );
            if let Some(rec) = self.actors.get_mut(&id) {
                rec.deadline = Some(Instant::now() + STOP_TIMEOUT);
            }
        } else if let Some(pid) = pid {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    // ---- deadlines ----

    fn next_deadline(&self) -> Option<Instant> {
        let actor_deadlines = self.actors.values().filter_map(|a| a.deadline);
        let shutdown = self.shutdown.as_ref().filter(|s| !s.killed).map(|s| s.deadline);
        actor_deadlines.chain(shutdown).min()
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .actors
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(rec) = self.actors.get_mut(&id) else { continue };
            rec.deadline = None;
            match rec.state {
                ActorState::Exiting if rec.control.is_some() => {
                    // Its children did not finish in time: kill them (their reaping lets the
                    // parent finish).
                    let children = rec.children.clone();
                    tracing::warn!(actor = %rec.address, "children did not exit in time; killing them");
                    for child in children {
                        self.kill_tree(child);
                    }
                }
                _ => {
                    tracing::warn!(actor = %rec.address, state = ?rec.state, "actor host did not respond in time; killing it");
                    self.kill_tree(id);
                }
            }
        }
        if let Some(s) = self.shutdown.as_mut() {
            if !s.killed && s.deadline <= now {
                s.killed = true;
                tracing::warn!("actors did not stop in time for shutdown; killing them");
                let live: Vec<u64> = self
                    .actors
                    .iter()
                    .filter(|(_, a)| a.is_live())
                    .map(|(id, _)| *id)
                    .collect();
                for id in live {
                    self.kill_tree(id);
                }
            }
        }
    }

    fn kill_tree(&mut self, id: u64) {
        let Some(rec) = self.actors.get(&id) else { return };
        let children = rec.children.clone();
        if let Some(pid) = rec.pid {
            let _ = kill(pid, Signal::SIGKILL);
        }
        for child in children {
            self.kill_tree(child);
        }
    }

    // ---- control connections ----

    fn send(&mut self, token: Token, frame: &FromAdmin) {
        let Some(peer) = self.peers.get_mut(&token) else { return };
        if let Err(e) = peer.framed.queue(frame, "control frame") {
            tracing::error!(error = %e, "could not encode a control frame");
            return;
        }
        self.flush_peer(token);
    }

    fn flush_peer(&mut self, token: Token) {
        let Some(peer) = self.peers.get_mut(&token) else { return };
        if let Err(e) = peer.framed.flush() {
            tracing::debug!(error = %e, "control connection write failed");
            // Act on whatever the peer sent before it went away, then forget it.
            self.read_peer(token);
            self.peer_closed(token);
        }
    }

    fn read_peer(&mut self, token: Token) {
        loop {
            let Some(peer) = self.peers.get_mut(&token) else { return };
            let outcome = match peer.framed.read() {
                Ok(o) => o,
                Err(ReadError::Io(e)) => {
                    // A reset is how a peer that exits with unread frames says goodbye.
                    tracing::debug!(peer = ?peer.kind, error = %e, "control connection ended");
                    self.peer_closed(token);
                    return;
                }
                Err(ReadError::Protocol(e)) => {
                    tracing::warn!(peer = ?peer.kind, reason = %e, "closing a control connection that broke the protocol");
                    self.peer_closed(token);
                    return;
                }
            };
            for body in outcome.frames {
                let Some(peer) = self.peers.get_mut(&token) else { return };
                if !peer.handshake_done {
                    match Handshake::decode(&body) {
                        Ok(Handshake { role }) if role_fits(&role, peer.kind) => {
                            peer.handshake_done = true;
                            let mut buf = Vec::new();
                            let _ = HandshakeReply { refusal: None }.encode(&mut buf);
                            peer.framed.queue_raw(&buf);
                            if let PeerKind::Host(id) = peer.kind {
                                self.send_start(token, id);
                            }
                            self.flush_peer(token);
                        }
                        other => {
                            let why = match other {
                                Ok(Handshake { role }) => format!("unexpected role {role:?} on this control socket"),
                                Err(e) => e.to_string(),
                            };
                            tracing::warn!(peer = ?peer.kind, reason = %why, "refused a control connection");
                            let mut buf = Vec::new();
                            let _ = HandshakeReply { refusal: Some(why) }.encode(&mut buf);
                            peer.framed.queue_raw(&buf);
                            let _ = peer.framed.flush();
                            self.peer_closed(token);
                            return;
                        }
                    }
                    continue;
                }
                match decode::<ToAdmin>(&body, "control frame") {
                    Ok(frame) => self.on_frame(token, frame),
                    Err(e) => {
                        tracing::warn!(peer = ?peer.kind, reason = %e, "closing a control connection that sent an undecodable frame");
                        self.peer_closed(token);
                        return;
                    }
                }
            }
            if outcome.closed {
                self.peer_closed(token);
                return;
            }
            if !outcome.more {
                return;
            }
        }
    }

    fn drop_peer(&mut self, token: Token) -> Option<PeerKind> {
        let mut peer = self.peers.remove(&token)?;
        let _ = self.poll.registry().deregister(&mut peer.framed.stream);
        self.settle_waiters.retain(|(t, _, _)| *t != token);
        Some(peer.kind)
    }

    fn peer_closed(&mut self, token: Token) {
        let Some(kind) = self.drop_peer(token) else { return };
        match kind {
            PeerKind::Host(id) => {
                // A host closes its control connection when it exits; reaping reports the
                // outcome. One that closed it and lingers cannot be managed: it is killed
                // after a grace period.
                if let Some(rec) = self.actors.get_mut(&id) {
                    rec.control = None;
                    if rec.pid.is_some() {
                        rec.deadline = Some(Instant::now() + CLOSED_CONTROL_GRACE);
                    }
                }
            }
            PeerKind::Client(client) => {
                if let Some(id) = client {
                    self.clients.remove(&id);
                    let _ = std::fs::remove_file(runtime_dir::socket_path(&self.rundir, Address::local(id)));
                    self.answer_settled(Address::local(id));
                }
                if token == OWNER {
                    tracing::info!("the program that started this system has gone; shutting down");
                    self.begin_shutdown(None);
                }
            }
        }
    }

    fn on_frame(&mut self, token: Token, frame: ToAdmin) {
        let Some(kind) = self.peers.get(&token).map(|p| p.kind) else {
            return;
        };
        match (frame, kind) {
            (ToAdmin::RegisterClient, PeerKind::Client(None)) => {
                let id = self.allocate_id();
                if let Some(p) = self.peers.get_mut(&token) {
                    p.kind = PeerKind::Client(Some(id));
                }
                self.clients.insert(id, token);
                self.send(
                    token,
                    &FromAdmin::ClientWelcome {
                        address: Address::local(id),
                        runtime_dir: self.rundir.to_string_lossy().into_owned(),
                        max_frame: self.max_frame,
                    },
                );
            }
            (ToAdmin::CreateActor { request, type_name }, kind) => self.create_actor(token, kind, request, type_name),
            (ToAdmin::ActorStatus { request, actor, settle }, _) => {
                let (state, pid) = self.status_of(actor);
                let unsettled = matches!(state, ActorState::Starting | ActorState::Running | ActorState::Exiting);
                if settle && unsettled {
                    self.settle_waiters.push((token, request, actor));
                } else {
                    self.send(
                        token,
                        &FromAdmin::Status {
                            request,
                            actor,
                            state,
                            pid,
                        },
                    );
                }
            }
            (ToAdmin::HostReady { types }, PeerKind::Host(id)) => {
                self.known_types = Some(types);
                let Some(rec) = self.actors.get_mut(&id) else { return };
                if rec.state == ActorState::Starting {
                    rec.state = ActorState::Running;
                }
                rec.deadline = None;
                let address = rec.address;
                tracing::info!(actor = %address, actor_type = %rec.type_name, pid = rec.pid.map(|p| p.as_raw()), "actor ready");
                if let Some((creator, request)) = rec.creator.take() {
                    self.send(
                        creator,
                        &FromAdmin::Created {
                            request,
                            result: Ok(address),
                        },
                    );
                }
            }
            (ToAdmin::HostStartFailed { failure }, PeerKind::Host(id)) => {
                if let CreateFailure::UnknownType { known, .. } = &failure {
                    self.known_types = Some(known.clone());
                }
                if let Some(rec) = self.actors.get_mut(&id) {
                    tracing::warn!(actor = %rec.address, %failure, "actor failed to start");
                    rec.start_failure = Some(failure);
                }
            }
            (ToAdmin::Exiting, PeerKind::Host(id)) => {
                let Some(rec) = self.actors.get_mut(&id) else { return };
                rec.state = ActorState::Exiting;
                if rec.children.is_empty() {
                    self.send(token, &FromAdmin::ExitNow);
                } else {
                    rec.deadline = Some(Instant::now() + STOP_TIMEOUT);
                }
            }
            (ToAdmin::Shutdown { request }, PeerKind::Client(Some(_))) => self.begin_shutdown(Some((token, request))),
            (frame, kind) => {
                tracing::warn!(
                    ?kind,
                    ?frame,
                    "control frame not allowed from this peer; closing its connection"
                );
                self.peer_closed(token);
            }
        }
    }

    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn status_of(&self, actor: Address) -> (ActorState, Option<u32>) {
        if let Some(rec) = self.actors.get(&actor.id()) {
            return (rec.state.clone(), rec.pid.map(|p| p.as_raw() as u32));
        }
        if self.clients.contains_key(&actor.id()) {
            return (ActorState::Running, None);
        }
        if actor.id() > 0 && actor.id() < self.next_id {
            // A client that has disconnected.
            return (ActorState::Gone(ExitCause::Normal), None);
        }
        (ActorState::Unknown, None)
    }

    fn answer_settled(&mut self, actor: Address) {
        let (state, pid) = self.status_of(actor);
        if matches!(state, ActorState::Starting | ActorState::Running | ActorState::Exiting) {
            return;
        }
        let waiting: Vec<(Token, u64)> = self
            .settle_waiters
            .iter()
            .filter(|(_, _, a)| *a == actor)
            .map(|(t, r, _)| (*t, *r))
            .collect();
        self.settle_waiters.retain(|(_, _, a)| *a != actor);
        for (token, request) in waiting {
            self.send(
                token,
                &FromAdmin::Status {
                    request,
                    actor,
                    state: state.clone(),
                    pid,
                },
            );
        }
    }

    // ---- creating actors ----

    fn create_actor(&mut self, token: Token, kind: PeerKind, request: u64, type_name: String) {
        let parent = match kind {
            PeerKind::Host(id) => Some(id),
            PeerKind::Client(Some(_)) => None,
            PeerKind::Client(None) => {
                tracing::warn!("CreateActor before RegisterClient; closing the connection");
                self.peer_closed(token);
                return;
            }
        };
        let refuse = |failure| FromAdmin::Created {
            request,
            result: Err(failure),
        };
        if self.shutdown.is_some() {
            self.send(token, &refuse(CreateFailure::ShuttingDown));
            return;
        }
        if let Some(known) = &self.known_types {
            if !known.contains(&type_name) {
                let failure = CreateFailure::UnknownType {
                    type_name,
                    known: known.clone(),
                };
                self.send(token, &refuse(failure));
                return;
            }
        }
        if let Some(pid) = parent {
            if self.actors.get(&pid).is_some_and(|p| p.state == ActorState::Exiting) {
                self.send(token, &refuse(CreateFailure::ParentExiting));
                return;
            }
        }
        let id = self.allocate_id();
        let address = Address::local(id);
        match self.spawn_host(address, &type_name, parent) {
            Ok(()) => {
                if let Some(parent_id) = parent {
                    if let Some(p) = self.actors.get_mut(&parent_id) {
                        p.children.push(id);
                    }
                    // An actor's create returns at once; messages wait in the socket.
                    self.send(
                        token,
                        &FromAdmin::Created {
                            request,
                            result: Ok(address),
                        },
                    );
                } else if let Some(rec) = self.actors.get_mut(&id) {
                    // A client's create returns once the actor is up (or failed).
                    rec.creator = Some((token, request));
                }
            }
            Err(why) => {
                tracing::error!(actor = %address, actor_type = %type_name, reason = %why, "could not start a host");
                self.send(token, &refuse(CreateFailure::SpawnFailed(why)));
            }
        }
    }

    fn spawn_host(
        &mut self,
        address: Address,
        type_name: &str,
        parent: Option<u64>,
    ) -> std::result::Result<(), String> {
        let path = runtime_dir::socket_path(&self.rundir, address);
        let listener = UnixListener::bind(&path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        let (admin_end, host_end) =
            std::os::unix::net::UnixStream::pair().map_err(|e| format!("cannot create a socket pair: {e}"))?;
        let mut cmd = Command::new(&self.host_exe);
        cmd.env(process_role::ROLE_ENV, process_role::Role::Host.env_value())
            .arg0(format!("greenroom-host {}", short_type_name(type_name)))
            .stdin(Stdio::null());
        let child =
            spawn::spawn_with_fds(&mut cmd, &[&host_end, &listener], spawn::ParentDeath::Kill).map_err(|e| {
                let _ = std::fs::remove_file(&path);
                format!("cannot run {}: {e}", self.host_exe.display())
            })?;
        drop(host_end);
        let pid = Pid::from_raw(child.id() as i32);
        // The admin reaps with waitpid(-1); the std handle is not needed.
        drop(child);

        admin_end
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the control socket non-blocking: {e}"))?;
        let mut stream = UnixStream::from_std(admin_end);
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            let _ = kill(pid, Signal::SIGKILL);
            return Err(format!("cannot register the host's control socket: {e}"));
        }
        self.peers.insert(
            token,
            ControlPeer {
                framed: Framed::new(stream, DEFAULT_MAX_FRAME),
                kind: PeerKind::Host(address.id()),
                handshake_done: false,
            },
        );
        self.by_pid.insert(pid, address.id());
        self.actors.insert(
            address.id(),
            ActorRecord {
                address,
                type_name: type_name.to_owned(),
                parent,
                children: Vec::new(),
                pid: Some(pid),
                control: Some(token),
                listener: Some(listener),
                state: ActorState::Starting,
                creator: None,
                start_failure: None,
                deadline: Some(Instant::now() + START_TIMEOUT),
            },
        );
        tracing::info!(actor = %address, actor_type = %type_name, pid = pid.as_raw(), "spawned actor host");
        Ok(())
    }

    /// Tells a host that has completed its handshake which actor it hosts.
    fn send_start(&mut self, token: Token, id: u64) {
        let Some(rec) = self.actors.get(&id) else { return };
        let start = FromAdmin::Start {
            actor: rec.address,
            type_name: rec.type_name.clone(),
            parent: rec.parent.map(Address::local),
            runtime_dir: self.rundir.to_string_lossy().into_owned(),
            max_frame: self.max_frame,
        };
        self.send(token, &start);
    }

    // ---- shutdown ----

    fn begin_shutdown(&mut self, reply_to: Option<(Token, u64)>) {
        if let Some(s) = self.shutdown.as_mut() {
            if s.reply_to.is_none() {
                s.reply_to = reply_to;
            }
            return;
        }
        tracing::info!("shutting down");
        self.shutdown = Some(ShutdownState {
            reply_to,
            deadline: Instant::now() + STOP_TIMEOUT,
            killed: false,
        });
        let top_level: Vec<u64> = self
            .actors
            .iter()
            .filter(|(_, a)| a.is_live() && a.parent.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in top_level {
            self.stop_actor(id, Address::local(0));
        }
    }

    fn shutdown_finished(&self) -> bool {
        self.shutdown.is_some() && self.actors.values().all(|a| !a.is_live())
    }

    fn finish_shutdown(&mut self) {
        if let Some((token, request)) = self.shutdown.as_mut().and_then(|s| s.reply_to.take()) {
            runtime_dir::remove(&self.rundir);
            self.send(token, &FromAdmin::ShutdownComplete { request });
            if let Some(peer) = self.peers.get_mut(&token) {
                // Best effort: the client may already be gone.
                let deadline = Instant::now() + Duration::from_secs(1);
                while peer.framed.has_pending_output() && Instant::now() < deadline {
                    if peer.framed.flush().is_err() {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        } else {
            runtime_dir::remove(&self.rundir);
        }
        tracing::info!("admin stopped");
    }
}

/// Which handshake roles may open which control connections.
fn role_fits(role: &PeerRole, kind: PeerKind) -> bool {
    matches!(
        (role, kind),
        (PeerRole::Client, PeerKind::Client(_)) | (PeerRole::Host, PeerKind::Host(_))
    )
}

/// `my_app::actors::Hello` → `Hello`, for process titles.
fn short_type_name(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// Starts an admin process for a new system rooted at `rundir`; returns it and the client's
/// end of the owner control connection.
pub(crate) fn start_admin(
    exe: &std::path::Path,
    rundir: &std::path::Path,
    max_frame: u32,
) -> Result<(std::process::Child, std::os::unix::net::UnixStream)> {
    let (client_end, admin_end) =
        std::os::unix::net::UnixStream::pair().map_err(Error::io("creating a socket pair"))?;
    if let Err(reason) = check_same_user(&client_end) {
        return Err(Error::AdminProtocol(reason));
    }
    let mut cmd = Command::new(exe);
    cmd.env(process_role::ROLE_ENV, process_role::Role::Admin.env_value())
        .env(process_role::RUNTIME_DIR_ENV, rundir)
        .env(process_role::HOST_EXE_ENV, exe)
        .env(process_role::MAX_FRAME_ENV, max_frame.to_string())
        .arg0("greenroom-admin")
        .stdin(Stdio::null());
    let child = spawn::spawn_with_fds(&mut cmd, &[&admin_end], spawn::ParentDeath::Ignore).map_err(|source| {
        Error::SpawnAdmin {
            exe: exe.to_path_buf(),
            source,
        }
    })?;
    Ok((child, client_end))
}
