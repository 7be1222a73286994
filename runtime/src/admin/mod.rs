//! The admin: one process, one thread, one `mio` loop. It never runs user code and is never
//! on the data path.
//!
//! It owns:
//! * the **supervision tree** ([`supervisor`]) — every actor's parent, children, phase,
//!   incarnation and restart policy, and every decision to restart, stop or give up;
//! * the **resources** behind each address — the actor's listening socket (held for the
//!   actor's whole life, across restarts, so its address never disappears while it is
//!   down), its delivery ledger ([`crate::ledger`]), its current host pid and control
//!   connection;
//! * **spawning** — one host process per incarnation, started with its control socket (fd
//!   3), the listening socket (fd 4) and the ledger (fd 5), its stderr a pipe to the admin,
//!   `PR_SET_PDEATHSIG(SIGKILL)` set;
//! * **reaping** — `SIGCHLD` arrives as a poll event (signal-hook-mio); each one drains
//!   `wait4(-1, WNOHANG)`, because signals coalesce (and `wait4` reports CPU time). A new incarnation is only spawned
//!   after the old process was reaped;
//! * **recovery answers** — a sender that lost its connection asks (`ActorStatus` with
//!   `settle`) and is told, from the dead incarnation's ledger, which of its messages were
//!   processed and which one was in flight;
//! * **clients** — the owner's control connection (fd 3), and further clients that connect
//!   to `admin.sock` in the runtime directory (a private client of the owner's program, for
//!   one): same user only, handshake first, then `RegisterClient` gives each an address;
//! * **exit and shutdown** — and removal of the runtime directory;
//! * **the log** — each host's stderr is a pipe to the admin, read in this loop and written,
//!   attributed to the actor, to the system's one log sink (`logs.rs`), with the admin's own
//!   records.
//!
//! The loop is: wait for events (sockets, signals) or the tree's next deadline; turn each
//! into events for the tree; carry out the [`supervisor::Command`]s it returns.

mod exit;
mod gateway;
mod logs;
mod names;
pub(crate) mod spawn;
pub mod supervisor;
mod zygote;

use std::{
    collections::{HashMap, VecDeque},
    os::{
        fd::{AsFd, AsRawFd, FromRawFd},
        unix::{net::UnixListener, process::CommandExt},
    },
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use greenroom_protocol::{
    convention::{ChildEvent, GatewayFrame},
    frame::decode,
    ActorRow, ActorState, Address, Capabilities, ChildSpec, CreateFailure, ExitCause, FromAdmin, Handshake,
    HandshakeReply, NodeId, PeerRole, SupervisorSpec, SystemDescription, ToAdmin, DEFAULT_MAX_FRAME,
};
use mio::{net::UnixStream, Events, Interest, Poll, Token};
use nix::{
    sys::{
        signal::{kill, Signal},
        wait::WaitStatus,
    },
    unistd::Pid,
};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use supervisor::{ActorId, Notice, Tree};

use crate::{
    convention::{
        membership::{MemberId, MembershipEvent},
        ConventionConfig, ConventionEvent, GatewayHandle,
    },
    error::{Error, Result},
    ledger::{LedgerFile, LedgerReport},
    message::{
        ActorExitRequest, ActorSystemConventionUpdate, AnyMessage, ChildActorExited, ChildRestarted, DeadEnvelope,
    },
    net::framed::{Framed, ReadError},
    net::pending::{AcceptRetry, Pending, ACCEPT_RETRY, HANDSHAKE_TIMEOUT},
    net::{set_write_interest, spin::Spinner, Ready},
    process_role::{self, CONTROL_FD},
    runtime_dir,
};

const SIGNALS: Token = Token(0);
const OWNER: Token = Token(1);
const CLIENT_LISTENER: Token = Token(2);
/// The log sink (a pipe, terminal or socket) can take more.
const LOG_SINK: Token = Token(3);
/// The control socket of the convention's gateway process.
const CONVENTION: Token = Token(4);
/// Control peers and host stderr pipes get tokens from here on.
const FIRST_PEER: usize = 5;

/// How long a shutdown waits for actors to finish before killing whatever is left.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a host that closed its control connection may take to exit before it is killed.
const CLOSED_CONTROL_GRACE: Duration = Duration::from_millis(500);
/// How many dead incarnations' ledgers an actor keeps for late recovery questions.
const REPORTS_KEPT: usize = 4;
/// How long an exiting admin waits for its log sink to write what is left.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Environment variable carrying the root supervisor's spec (postcard, hex) to the admin.
pub(crate) const ROOT_SPEC_ENV: &str = "GREENROOM_ROOT_SUPERVISION";
/// Environment variable carrying the system's initial capabilities (postcard, hex).
pub(crate) const CAPABILITIES_ENV: &str = "GREENROOM_CAPABILITIES";
/// The convention to join, if any (postcard, hex): a `ConventionConfig`. For the admin
/// only: hosts never inherit it, and a system started without a convention has it removed.
pub(crate) const CONVENTION_ENV: &str = "GREENROOM_CONVENTION";

/// Entry point of an admin process: reads its settings from the environment, serves until
/// shutdown, and exits. Called by `greenroom_host::init` when `GREENROOM_ROLE=admin`.
pub fn run_from_env() -> ! {
    // Before the spawner, which inherits it: the raised open-files limit (a spawner left with
    // a low soft limit could start no host, and the error blamed the admin).
    process_role::raise_open_files_limit();
    // First, while this process holds nothing but its owner socket: the spawner, whose small
    // fd table every host spawn then copies instead of the admin's.
    let spawner = host_exe_from_env().ok().and_then(|exe| zygote::Spawner::start(&exe));
    let sink = logs::Sink::stderr();
    crate::logging::init_admin_logging(sink.clone());
    let code = match Admin::from_env(sink.clone(), spawner).and_then(|admin| admin.run()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "the admin failed");
            1
        }
    };
    sink.finish(LOG_FLUSH_TIMEOUT);
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
    /// Registered for writable events: only while frames wait for room (see
    /// `net::set_write_interest`).
    write_armed: bool,
}

/// The resources behind one address.
struct ActorRecord {
    address: Address,
    type_name: String,
    /// What its creator required of the system, for its hosts to check again.
    requirements: Capabilities,
    pid: Option<Pid>,
    control: Option<Token>,
    /// The current process's stderr pipe, to read what is left of it when it is reaped.
    log_pipe: Option<Token>,
    /// When the current process was spawned.
    spawned_at: Option<std::time::SystemTime>,
    /// The address on disk, held across restarts; dropped when the actor is gone.
    listener: Option<UnixListener>,
    /// Its delivery ledger; dropped (its fd closed) once the actor is gone for good.
    ledger: Option<LedgerFile>,
    /// A create waiting for the first incarnation to be ready.
    creator: Option<(Asker, u64)>,
    /// The actor of another member that had it created here, its parent of record: told
    /// of its restarts and its end (`GatewayFrame::ChildNotice`), and whose end stops it
    /// (`GatewayFrame::ParentGone`, or its member lost).
    remote_parent: Option<Address>,
    start_failure: Option<CreateFailure>,
    /// An `ActorExitRequest` to deliver once the host has completed its handshake.
    stop_pending: bool,
    /// The host closed its control connection without being reaped yet: kill it if it is
    /// still there at this time (it usually is already dying; reaping will tell).
    orphaned_at: Option<Instant>,
    /// What its creator decided for it, for every incarnation's `Start`: its liveness
    /// timeout and the kernel limits of each of its processes among them.
    spec: ChildSpec,
    /// When its lifetime (`ChildSpec::lifetime`, counted from its creation) is up.
    ends_at: Option<Instant>,
    /// The message seen in progress at the last liveness probe, and since when.
    busy_since: Option<((u64, u64), Instant)>,
    /// When to look at the ledger next.
    next_probe: Option<Instant>,
    /// Why the admin killed the current process, when it did (overrides the wait status).
    kill_cause: Option<ExitCause>,
    /// What the current process said failed, before it ended itself under
    /// `OnFailure::Restart` (`ToAdmin::ReceiveFailed`).
    receive_failure: Option<String>,
    /// What recent dead incarnations did: (incarnation, ledger, cause).
    reports: VecDeque<(u32, LedgerReport, ExitCause)>,
    /// Its pending wakeups, by id, as its hosts told them (`ToAdmin::WakeupSet`, until
    /// `WakeupFired`): handed to each new incarnation in `Start`, so that they survive a
    /// crash; dropped when it exits or is gone.
    wakeups: std::collections::BTreeMap<u64, greenroom_protocol::PendingWakeup>,
}

/// Who is waiting for a create's answer: a host or client of this system, or the admin of
/// another member (which created it here for one of its actors).
#[derive(Debug, Clone, Copy)]
enum Asker {
    Local(Token),
    Remote(NodeId),
}

/// A `ToAdmin::CreateActor`, taken apart.
struct CreateRequest {
    request: u64,
    type_name: String,
    spec: ChildSpec,
    global_name: Option<String>,
    requirements: Capabilities,
}

/// Who this admin is, for `Describe`.
struct Identity {
    name: Option<String>,
    started: std::time::SystemTime,
    log_file: Option<String>,
}

/// A create asked of another member's admin, waiting for its answer.
struct RemoteCreate {
    node: NodeId,
    /// The creator's control connection, and its request number.
    token: Token,
    request: u64,
    /// The creating actor and its incarnation (`None`: a client).
    parent: Option<(ActorId, u32)>,
}

/// A settle query asked of another member's admin, waiting for its answer.
struct RemoteSettle {
    node: NodeId,
    /// The asker's control connection, and its request number.
    token: Token,
    request: u64,
    actor: Address,
    /// When to stop waiting (the answer was lost with a broken link) and answer "in doubt".
    deadline: Instant,
}

/// A sender waiting to hear what became of an incarnation it lost its connection to.
struct SettleWaiter {
    asker: SettleAsker,
    request: u64,
    actor: Address,
    incarnation: u32,
}

/// Who asks a settle query, and how it is answered.
enum SettleAsker {
    /// A host or client of this system, on its control connection.
    Local(Token),
    /// `sender`, an endpoint of another member, through that member's admin
    /// ([`GatewayFrame::Settle`]). Its connection may have ended for a reason other than
    /// the actor's death (a broken link): if the incarnation still runs at `deadline`, what
    /// it processed is in doubt, and the answer says the actor is unknown.
    Remote { sender: Address, deadline: Instant },
}

/// How long a remote sender's settle query waits for the incarnation to be reaped before
/// it is answered as in doubt. A death is reaped within milliseconds; this is for the
/// incarnation that did not die at all.
const REMOTE_SETTLE_WAIT: Duration = Duration::from_secs(2);

/// How much longer than [`REMOTE_SETTLE_WAIT`] this admin waits for another member's answer
/// to a settle query before it answers "unknown" itself (the answer was lost with a link).
const REMOTE_ANSWER_GRACE: Duration = Duration::from_secs(3);

struct ShutdownState {
    reply_to: Option<(Token, u64)>,
    deadline: Instant,
    killed: bool,
}

struct Admin {
    poll: Poll,
    events: Events,
    ready: Vec<Ready>,
    spinner: Spinner,
    signals: Signals,
    rundir: PathBuf,
    host_exe: PathBuf,
    max_frame: u32,
    send_window: u64,
    next_id: u64,
    peers: HashMap<Token, ControlPeer>,
    /// `admin.sock`: where further clients connect.
    client_listener: mio::net::UnixListener,
    /// Clients accepted on `admin.sock` that have not completed their handshake.
    handshake_deadlines: Pending,
    /// When to try accepting clients again after an accept failed for lack of resources.
    accept_retry: AcceptRetry,
    next_token: usize,
    tree: Tree,
    actors: HashMap<ActorId, ActorRecord>,
    by_pid: HashMap<Pid, ActorId>,
    clients: HashMap<u64, Token>,
    known_types: Option<Vec<String>>,
    settle_waiters: Vec<SettleWaiter>,
    shutdown: Option<ShutdownState>,
    /// Control peers and stderr pipes whose read budget ran out: read again after the others
    /// were served.
    rescan: Vec<Token>,
    /// Where every record of the system is written.
    sink: logs::Sink,
    /// Host stderr pipes, until their end of file (which may come after the host is reaped).
    log_pipes: HashMap<Token, logs::LogPipe>,
    /// Pipes left unread because the sink was full; read again once it has taken some.
    logs_paused: Vec<Token>,
    /// Global names and the actors holding them.
    global_names: HashMap<String, ActorId>,
    /// The actor receiving `DeadEnvelope`s, if one registered.
    dead_letter_handler: Option<ActorId>,
    /// The system's capabilities: kept here, copied to every host and client.
    capabilities: Capabilities,
    /// The spawner that starts hosts (`zygote.rs`); `None`: spawn directly.
    spawner: Option<zygote::Spawner>,
    /// What `Describe` reports about the system itself.
    identity: Identity,
    /// Actors with timed checks of their own (a liveness timeout, or a host that closed its
    /// control connection): kept apart so that the loop's timing work does not grow with the
    /// number of actors.
    watched: std::collections::BTreeSet<ActorId>,
    /// The convention this system is a member of: its settings, and the membership threads.
    convention: Option<GatewayHandle>,
    /// The node id of this admin's addresses: its convention member's, else 0.
    node: NodeId,
    /// Creates sent to other members, by our request number: (node, creator, its request,
    /// the creating actor if it is one).
    /// Creates asked of other members' admins, by our request number.
    remote_creates: HashMap<u64, RemoteCreate>,
    /// Settle queries asked of other members' admins, by our request number.
    remote_settles: HashMap<u64, RemoteSettle>,
    /// Actors of other members created for actors here: (parent, child). When the child's
    /// member is lost, the parent is told `ChildActorExited` from here (nobody else can).
    remote_children: Vec<(ActorId, Address)>,
    /// Dead letters logged without a handler: 20 per 10 s one by one, then a count.
    dead_letter_log: crate::net::log_limit::LogLimit,
    /// This member's copy of the convention's global names (see `names.rs`).
    convention_names: HashMap<String, Address>,
    /// The table itself, if this admin leads the convention.
    leader_table: Option<names::LeaderTable>,
    /// Global-name creates waiting for the leader's answer, by our request number.
    name_claims: HashMap<u64, (Token, CreateRequest)>,
    next_remote_request: u64,
    /// Actors that asked for `ActorSystemConventionUpdate`s.
    convention_watchers: std::collections::BTreeSet<ActorId>,
}

impl Admin {
    fn from_env(sink: logs::Sink, spawner: Option<zygote::Spawner>) -> Result<Self> {
        let rundir = std::env::var_os(process_role::RUNTIME_DIR_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::NotStartedByGreenroom(format!(
                    "admin started without {}; admins are started by ActorSystem::start",
                    process_role::RUNTIME_DIR_ENV
                ))
            })?;
        let host_exe = host_exe_from_env()?;
        let max_frame = std::env::var(process_role::MAX_FRAME_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_FRAME);
        let send_window = std::env::var(process_role::SEND_WINDOW_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(process_role::DEFAULT_SEND_WINDOW as u64);
        let root_spec = std::env::var(ROOT_SPEC_ENV)
            .ok()
            .and_then(|hex| decode_hex::<SupervisorSpec>(&hex))
            .unwrap_or_default()
            .clamped();
        let capabilities = std::env::var(CAPABILITIES_ENV)
            .ok()
            .and_then(|hex| decode_hex::<Capabilities>(&hex))
            .unwrap_or_default();
        runtime_dir::create(&rundir)?;
        let open_files = process_role::raise_open_files_limit();
        let listener_path = runtime_dir::admin_socket_path(&rundir);
        let mut client_listener = mio::net::UnixListener::bind(&listener_path)
            .map_err(Error::io(format!("binding {}", listener_path.display())))?;

        let poll = Poll::new().map_err(Error::io("creating an epoll instance"))?;
        let mut signals =
            Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP]).map_err(Error::io("installing signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(Error::io("registering signals"))?;
        sink.register(poll.registry(), LOG_SINK)
            .map_err(Error::io("registering the log sink"))?;

        poll.registry()
            .register(&mut client_listener, CLIENT_LISTENER, Interest::READABLE)
            .map_err(Error::io("registering the client listener"))?;
        // A convention whose secret is missing or exposed fails the start, with the fix.
        let convention = match std::env::var(CONVENTION_ENV) {
            Ok(hex) => {
                let config = decode_hex::<ConventionConfig>(&hex).ok_or_else(|| {
                    Error::NotStartedByGreenroom(format!("{CONVENTION_ENV} does not decode as a convention's settings"))
                })?;
                let handle = GatewayHandle::new(
                    config,
                    capabilities.clone(),
                    rundir.clone(),
                    max_frame,
                    process_role::max_pending_connections(),
                )?;
                tracing::info!(convention = %handle.config.name, me = %handle.me().addr, node = handle.me().node().0,
                    leader = ?handle.config.leader, "joining the convention (its gateway starts now)");
                Some(handle)
            }
            Err(_) => None,
        };
        let leads = convention.as_ref().is_some_and(|handle| handle.config.leader.is_none());
        let mut peers = HashMap::new();
        // A detached admin (`greenroom start`) has no owner: it runs until it is told to stop.
        if std::env::var_os(process_role::DETACHED_ENV).is_none() {
            let owner = Self::owner_connection(&poll)?;
            peers.insert(
                OWNER,
                ControlPeer {
                    framed: Framed::accepting(owner, DEFAULT_MAX_FRAME),
                    kind: PeerKind::Client(None),
                    handshake_done: false,
                    write_armed: false,
                },
            );
        }
        let identity = Identity {
            name: std::env::var(process_role::SYSTEM_NAME_ENV).ok(),
            started: std::time::SystemTime::now(),
            log_file: std::env::var(process_role::LOG_PATH_ENV).ok(),
        };
        tracing::info!(rundir = %rundir.display(), pid = std::process::id(), open_files, "admin started");
        Ok(Admin {
            poll,
            events: Events::with_capacity(256),
            ready: Vec::new(),
            spinner: Spinner::new(),
            signals,
            rundir,
            host_exe,
            max_frame,
            send_window,
            next_id: 1,
            peers,
            client_listener,
            handshake_deadlines: Pending::new(process_role::max_pending_connections(), "admin.sock"),
            accept_retry: AcceptRetry::default(),
            next_token: FIRST_PEER,
            tree: Tree::new(root_spec),
            actors: HashMap::new(),
            by_pid: HashMap::new(),
            clients: HashMap::new(),
            known_types: None,
            settle_waiters: Vec::new(),
            shutdown: None,
            watched: Default::default(),
            rescan: Vec::new(),
            global_names: HashMap::new(),
            dead_letter_handler: None,
            capabilities,
            identity,
            spawner,
            node: convention.as_ref().map_or(NodeId(0), |handle| handle.me().node()),
            convention,
            remote_creates: HashMap::new(),
            remote_settles: HashMap::new(),
            remote_children: Vec::new(),
            convention_names: HashMap::new(),
            dead_letter_log: crate::net::log_limit::LogLimit::with_rate(
                "dead letters without a handler",
                20,
                Duration::from_secs(10),
            ),
            leader_table: leads.then(names::LeaderTable::default),
            name_claims: HashMap::new(),
            next_remote_request: 0,
            convention_watchers: Default::default(),
            sink,
            log_pipes: HashMap::new(),
            logs_paused: Vec::new(),
        })
    }

    /// The owner's control connection: fd 3, put there by the client that started this
    /// admin (see `start_admin`), registered with `poll`.
    fn owner_connection(poll: &Poll) -> Result<UnixStream> {
        // SAFETY: fd 3 is the owner's control socket, put there by the client that started
        // this admin; nothing else in this process owns it.
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
            .register(&mut owner, OWNER, Interest::READABLE)
            .map_err(Error::io("registering the owner socket"))?;
        Ok(owner)
    }

    fn run(mut self) -> Result<()> {
        loop {
            let next = [
                self.tree.next_deadline(),
                self.shutdown.as_ref().filter(|s| !s.killed).map(|s| s.deadline),
                self.handshake_deadlines.next_deadline(),
                self.accept_retry.deadline(),
                self.watched
                    .iter()
                    .filter_map(|id| self.actors.get(id))
                    .flat_map(|r| [r.orphaned_at, r.next_probe])
                    .flatten()
                    .min(),
                self.settle_waiters
                    .iter()
                    .filter_map(|w| match w.asker {
                        SettleAsker::Remote { deadline, .. } => Some(deadline),
                        SettleAsker::Local(_) => None,
                    })
                    .chain(self.remote_settles.values().map(|asked| asked.deadline))
                    .min(),
                self.convention.as_ref().and_then(|handle| handle.next_deadline()),
                self.dead_letter_log.deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let mut timeout = next.map(|d| d.saturating_duration_since(Instant::now()));
            if !self.rescan.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            let mut ready = std::mem::take(&mut self.ready);
            self.spinner
                .wait(&mut self.poll, &mut self.events, timeout, &mut ready)
                .map_err(Error::io("waiting for events"))?;
            for token in std::mem::take(&mut self.rescan) {
                self.read_source(token);
            }
            for &Ready {
                token,
                readable,
                writable,
                ..
            } in &ready
            {
                if token == SIGNALS {
                    self.on_signals();
                    continue;
                }
                if token == CLIENT_LISTENER {
                    self.accept_clients();
                    continue;
                }
                if token == LOG_SINK {
                    // Written below, with what this turn adds.
                    continue;
                }
                if token == CONVENTION {
                    self.on_gateway_ready(readable);
                    continue;
                }
                if self.log_pipes.contains_key(&token) {
                    self.read_log(token);
                    continue;
                }
                if writable {
                    self.flush_peer(token);
                }
                if readable {
                    self.read_peer(token);
                }
            }
            self.ready = ready;
            if self.accept_retry.due(Instant::now()) {
                self.accept_clients();
            }
            let cmds = self.tree.tick(Instant::now());
            self.execute(cmds);
            self.kill_lingering_hosts();
            self.probe_liveness();
            self.check_shutdown_deadline();
            self.expire_handshakes();
            self.expire_remote_settles();
            self.tend_gateway();
            self.dead_letter_log.tick(Instant::now());
            if self.shutdown_finished() {
                self.finish_shutdown();
                return Ok(());
            }
            self.flush_log();
        }
    }

    // ---- carrying out the supervisor's decisions ----

    fn execute(&mut self, cmds: Vec<supervisor::Command>) {
        let mut queue: VecDeque<supervisor::Command> = cmds.into();
        while let Some(cmd) = queue.pop_front() {
            use supervisor::Command as C;
            match cmd {
                C::Spawn { id, incarnation } => {
                    if let Err(why) = self.spawn_host(id, incarnation) {
                        tracing::error!(actor = %self.address_of(id), reason = %why, "could not start a host");
                        if let Some(rec) = self.actors.get_mut(&id) {
                            rec.start_failure = Some(CreateFailure::SpawnFailed(why.clone()));
                        }
                        queue.extend(self.tree.died(id, ExitCause::StartFailed(why), Instant::now()));
                    }
                }
                C::RequestStop { id } => self.request_stop(id),
                C::Kill { id } => {
                    if let Some(pid) = self.actors.get(&id).and_then(|r| r.pid) {
                        tracing::warn!(actor = %self.address_of(id), pid = pid.as_raw(), "killing an actor host that did not stop in time");
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
                C::ExitNow { id } => {
                    if let Some(token) = self.actors.get(&id).and_then(|r| r.control) {
                        self.send(token, &FromAdmin::ExitNow);
                    }
                }
                C::Notify { parent, notice } => self.notify(parent, notice),
                C::Release { id, cause } => self.release(id, cause),
            }
        }
    }

    fn request_stop(&mut self, id: ActorId) {
        let Some(rec) = self.actors.get_mut(&id) else { return };
        let ready_for_frames = rec
            .control
            .and_then(|t| self.peers.get(&t))
            .is_some_and(|p| p.handshake_done);
        if !ready_for_frames {
            rec.stop_pending = true;
            return;
        }
        if let Some(token) = rec.control {
            let system = self.address_of(0);
            self.deliver_runtime(token, system, &ActorExitRequest);
        }
    }

    /// Tells the creator of a create the outcome: on its control connection, or through the
    /// gateway to the admin of its member.
    fn answer_create(&mut self, asker: Asker, request: u64, result: std::result::Result<Address, CreateFailure>) {
        match asker {
            Asker::Local(token) => self.send(token, &FromAdmin::Created { request, result }),
            Asker::Remote(node) => {
                if let Some(gateway) = &mut self.convention {
                    gateway.send(node, GatewayFrame::Created { request, result });
                }
            }
        }
    }

    /// A notice about `child`, a top-level actor here, for its parent of record on another
    /// member (if it has one): relayed to that member's admin, which delivers it while the
    /// parent is the incarnation that created the child.
    fn notify_remote_parent(&mut self, notice: Notice) {
        let (child, event) = match notice {
            Notice::Restarted {
                child,
                cause,
                restart_count,
            } => (child, ChildEvent::Restarted { cause, restart_count }),
            Notice::Exited { child, cause } => (child, ChildEvent::Exited { cause }),
        };
        let child_address = self.address_of(child);
        let (Some(parent), Some(gateway)) = (
            self.actors.get(&child).and_then(|r| r.remote_parent),
            &mut self.convention,
        ) else {
            return;
        };
        let child = child_address;
        gateway.send(parent.node(), GatewayFrame::ChildNotice { parent, child, event });
    }

    /// `child`, created on another member for incarnation `incarnation` of `parent`, is
    /// its child from now on — unless that process is gone already (it died while the
    /// create was on its way): then the child is an orphan at birth, and its admin stops it.
    fn adopt_remote_child(&mut self, parent: ActorId, incarnation: u32, child: Address) {
        let alive = self.actors.get(&parent).is_some_and(|r| r.pid.is_some())
            && self
                .tree
                .state(parent)
                .is_some_and(|(_, current)| current == incarnation);
        if alive {
            self.remote_children.push((parent, child));
            return;
        }
        let parent = self.address_of(parent);
        if let Some(gateway) = &mut self.convention {
            gateway.send(child.node(), GatewayFrame::ParentGone { parent, child });
        }
    }

    /// The process of `parent` is gone (it died, restarted or exited): its children on
    /// other members are stopped for good by their admins, as its children here are by the
    /// tree. It hears no more of them.
    fn orphan_remote_children(&mut self, parent: ActorId) {
        let (orphans, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.remote_children)
            .into_iter()
            .partition(|(p, _)| *p == parent);
        self.remote_children = kept;
        let parent = self.address_of(parent);
        let Some(gateway) = &mut self.convention else {
            return;
        };
        for (_, child) in orphans {
            gateway.send(child.node(), GatewayFrame::ParentGone { parent, child });
        }
    }

    /// What other members' admins sent this one: creates for their actors, the answers to
    /// ours, notices for our actors.
    /// A frame from the admin of node `sender` (the gateway checked that a frame about a
    /// stream or an actor speaks for that node; answers to this admin's questions are
    /// checked here, against the node each question went to).
    fn on_gateway_frame(&mut self, sender: NodeId, frame: GatewayFrame) {
        {
            if let Err(why) = self.answer_is_from(sender, &frame) {
                tracing::warn!(node = sender.0, reason = %why, "a frame from another member refused");
                return;
            }
            match frame {
                GatewayFrame::Create {
                    request,
                    from,
                    parent,
                    type_name,
                    spec,
                    requirements,
                } => {
                    let create = CreateRequest {
                        request,
                        type_name,
                        spec: spec.clamped(),
                        global_name: None,
                        requirements,
                    };
                    self.create_here(Asker::Remote(from), None, create, parent);
                }
                GatewayFrame::Created { request, result } => {
                    if let Some(asked) = self.remote_creates.remove(&request) {
                        if let (Some((parent, incarnation)), Ok(child)) = (asked.parent, &result) {
                            self.adopt_remote_child(parent, incarnation, *child);
                        }
                        self.answer_create(Asker::Local(asked.token), asked.request, result);
                    }
                }
                GatewayFrame::ChildNotice { parent, child, event } => {
                    let entry = (parent.id(), child);
                    if parent.node() != self.node || !self.remote_children.contains(&entry) {
                        tracing::debug!(%parent, %child, ?event, "a notice for a parent incarnation that is gone; dropped");
                        return;
                    }
                    let Some(token) = self.actors.get(&parent.id()).and_then(|r| r.control) else {
                        return;
                    };
                    match event {
                        ChildEvent::Restarted { cause, restart_count } => {
                            let notice = ChildRestarted {
                                child,
                                cause,
                                restart_count,
                            };
                            self.deliver_runtime(token, child, &notice);
                        }
                        ChildEvent::Exited { cause } => {
                            self.remote_children.retain(|e| *e != entry);
                            self.deliver_runtime(token, child, &ChildActorExited { child, cause });
                        }
                    }
                }
                GatewayFrame::Settle {
                    request,
                    actor,
                    incarnation,
                    asker,
                } => {
                    if actor.node() != self.node {
                        let w = SettleWaiter {
                            asker: SettleAsker::Remote {
                                sender: asker,
                                deadline: Instant::now(),
                            },
                            request,
                            actor,
                            incarnation,
                        };
                        self.answer_settle(w, ActorState::Unknown, None, 0, None, false);
                        return;
                    }
                    self.settle_waiters.push(SettleWaiter {
                        asker: SettleAsker::Remote {
                            sender: asker,
                            deadline: Instant::now() + REMOTE_SETTLE_WAIT,
                        },
                        request,
                        actor,
                        incarnation,
                    });
                    self.answer_settled(actor.id());
                }
                GatewayFrame::Settled {
                    request,
                    state,
                    pid,
                    incarnation,
                    recovery,
                    in_doubt,
                } => {
                    if let Some(asked) = self.remote_settles.remove(&request) {
                        let status = FromAdmin::Status {
                            request: asked.request,
                            actor: asked.actor,
                            state,
                            pid,
                            incarnation,
                            recovery,
                            in_doubt,
                        };
                        self.send(asked.token, &status);
                    }
                }
                GatewayFrame::ParentGone { parent, child } => {
                    let ours = child.node() == self.node
                        && self.actors.get(&child.id()).and_then(|r| r.remote_parent) == Some(parent);
                    if ours {
                        tracing::info!(actor = %child, %parent, "stopping an actor whose parent on another member is gone");
                        let cmds = self
                            .tree
                            .stop_for_good(child.id(), ExitCause::ParentGone, Instant::now());
                        self.execute(cmds);
                    }
                }
                GatewayFrame::ClaimName { request, name, by } => {
                    let result = match self.leader_table.as_mut().map(|t| t.claim(&name, by, Instant::now())) {
                        Some(names::Claim::Granted) => Ok(None),
                        Some(names::Claim::Held(holder)) => Ok(Some(holder)),
                        Some(names::Claim::Busy(node)) => Err(format!(
                            "the global name {name:?} is being created on another member (node {})",
                            node.0
                        )),
                        None => Err("this member does not lead the convention".into()),
                    };
                    if let Some(gateway) = &mut self.convention {
                        gateway.send(by, GatewayFrame::NameClaim { request, result });
                    }
                }
                GatewayFrame::NameClaim { request, result } => {
                    let Some((token, create)) = self.name_claims.remove(&request) else {
                        return;
                    };
                    let name = create.global_name.clone().unwrap_or_default();
                    match result {
                        Ok(Some(holder)) => {
                            self.convention_names.insert(name, holder);
                            let result = Ok(holder);
                            self.answer_create(Asker::Local(token), create.request, result);
                        }
                        Ok(None) => {
                            self.create_here(Asker::Local(token), None, create, None);
                            self.bind_created(&name);
                        }
                        Err(why) => {
                            let result = Err(CreateFailure::Remote(why));
                            self.answer_create(Asker::Local(token), create.request, result);
                        }
                    }
                }
                GatewayFrame::NameBound { name, holder, bound } => {
                    if self.leader_table.is_some() {
                        self.name_changed(&name, holder, bound);
                    } else if bound {
                        self.convention_names.insert(name, holder);
                    } else if self.convention_names.get(&name) == Some(&holder) {
                        self.convention_names.remove(&name);
                    }
                }
                other => tracing::debug!(?other, "a data-path frame for the admin; ignored"),
            }
        }
    }

    /// Whether an answer to one of this admin's questions (or a global-name change) came
    /// from the member it was asked of (or from the leader).
    fn answer_is_from(&self, sender: NodeId, frame: &GatewayFrame) -> std::result::Result<(), String> {
        let asked = match frame {
            GatewayFrame::Created { request, .. } => self.remote_creates.get(request).map(|c| c.node),
            GatewayFrame::Settled { request, .. } => self.remote_settles.get(request).map(|s| s.node),
            GatewayFrame::NameClaim { .. } => self.leader_node(),
            // The leader tells every change; a member tells its own actors' names.
            GatewayFrame::NameBound { holder, .. } if self.leader_node() != Some(sender) => Some(holder.node()),
            _ => return Ok(()),
        };
        match asked {
            Some(node) if node != sender => Err(format!(
                "an answer that belongs to node {}, from node {}",
                node.0, sender.0
            )),
            _ => Ok(()),
        }
    }

    /// Creates and global-name claims waiting for an answer from the admin of `node` fail
    /// now: it is gone, or the link to it broke (and the question or its answer with it).
    fn fail_waiting_on(&mut self, node: NodeId, why: &str) {
        let failed: Vec<u64> = self
            .remote_creates
            .iter()
            .filter(|(_, create)| create.node == node)
            .map(|(r, _)| *r)
            .collect();
        for request in failed {
            if let Some(asked) = self.remote_creates.remove(&request) {
                let result = Err(CreateFailure::Remote(why.to_owned()));
                self.answer_create(Asker::Local(asked.token), asked.request, result);
            }
        }
        // Settle queries: the member is gone or its answer may be lost; what its actor
        // processed is in doubt.
        self.settles_in_doubt(|n, _| n == node);
        if self.leader_node() == Some(node) || self.leader_node().is_none() {
            for (_, (token, create)) in std::mem::take(&mut self.name_claims) {
                let result = Err(CreateFailure::Remote(format!(
                    "the convention's leader did not answer: {why}"
                )));
                self.answer_create(Asker::Local(token), create.request, result);
            }
        }
    }

    /// A member is gone: creates waiting on it fail, and the parents here of its actors are
    /// told they are gone (`ExitCause::MemberLost`).
    fn member_lost(&mut self, member: &MemberId) {
        let node = member.node();
        let why = format!("the member at {} left or died", member.addr);
        self.convention_names.retain(|_, holder| holder.node() != node);
        if let Some(table) = self.leader_table.as_mut() {
            for (name, holder) in table.node_lost(node) {
                self.broadcast_name(&name, holder, false);
            }
        }
        self.fail_waiting_on(node, &why);
        let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.remote_children)
            .into_iter()
            .partition(|(_, child)| child.node() == node);
        self.remote_children = kept;
        for (parent, child) in lost {
            let cause = ExitCause::MemberLost {
                member: member.addr.to_string(),
            };
            let Some(token) = self.actors.get(&parent).and_then(|r| r.control) else {
                continue;
            };
            self.deliver_runtime(token, child, &ChildActorExited { child, cause });
        }
        // And the actors here whose parents were there are orphans: stopped for good, as
        // the children of a parent whose process is gone always are.
        let orphans: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|(_, r)| r.remote_parent.is_some_and(|p| p.node() == node))
            .map(|(id, _)| *id)
            .collect();
        for id in orphans {
            let cmds = self.tree.stop_for_good(id, ExitCause::ParentGone, Instant::now());
            self.execute(cmds);
        }
    }

    /// Delivers a runtime message (a notice, an exit request, a dead envelope) to the
    /// process on control connection `token`, as from `sender`.
    fn deliver_runtime<M: crate::message::Message>(&mut self, token: Token, sender: Address, msg: &M) {
        match AnyMessage::new(msg) {
            Ok(msg) => self.send(
                token,
                &FromAdmin::Deliver {
                    sender,
                    payload: msg.into_payload(),
                },
            ),
            Err(e) => tracing::error!(error = %e, message_type = M::type_tag(), "could not encode a runtime message"),
        }
    }

    fn notify(&mut self, parent: Option<ActorId>, notice: Notice) {
        let Some(parent) = parent else {
            self.notify_remote_parent(notice);
            return;
        };
        let Some(token) = self.actors.get(&parent).and_then(|r| r.control) else {
            return;
        };
        match notice {
            Notice::Restarted {
                child,
                cause,
                restart_count,
            } => {
                let child = self.address_of(child);
                let notice = ChildRestarted {
                    child,
                    cause,
                    restart_count,
                };
                self.deliver_runtime(token, child, &notice);
            }
            Notice::Exited { child, cause } => {
                let child = self.address_of(child);
                self.deliver_runtime(token, child, &ChildActorExited { child, cause });
            }
        }
    }

    /// The actor is gone for good: its address goes with it.
    fn release(&mut self, id: ActorId, cause: ExitCause) {
        self.watched.remove(&id);
        // Its global name is free again (restarts keep it: the address does not change), and
        // if it handled dead letters, nobody does now.
        let held: Vec<String> = self
            .global_names
            .iter()
            .filter(|(_, holder)| **holder == id)
            .map(|(name, _)| name.clone())
            .collect();
        self.global_names.retain(|_, holder| *holder != id);
        if self.convention.is_some() {
            let address = self.address_of(id);
            for name in held {
                self.name_changed(&name, address, false);
            }
        }
        self.orphan_remote_children(id);
        if self.dead_letter_handler == Some(id) {
            self.dead_letter_handler = None;
        }
        let Some(rec) = self.actors.get_mut(&id) else { return };
        let level_error = matches!(cause, ExitCause::RestartLimit { .. });
        if level_error {
            tracing::error!(actor = %rec.address, actor_type = %rec.type_name, %cause, "supervisor gave up on the actor");
        } else {
            tracing::info!(actor = %rec.address, actor_type = %rec.type_name, %cause, "actor is gone");
        }
        rec.listener = None;
        rec.ledger = None;
        let address = rec.address;
        let creator = rec.creator.take();
        let failure = rec.start_failure.take();
        self.drop_wakeups(id, "it is gone");
        let _ = std::fs::remove_file(runtime_dir::socket_path(&self.rundir, address));
        if let Some((asker, request)) = creator {
            let failure = failure.unwrap_or_else(|| CreateFailure::StartFailed(cause.to_string()));
            self.answer_create(asker, request, Err(failure));
        }
        self.report_load();
        self.answer_settled(id);
    }

    /// The actor's pending wakeups will never fire: it exits (its host drops them too) or
    /// is gone.
    fn drop_wakeups(&mut self, id: ActorId, why: &str) {
        let Some(rec) = self.actors.get_mut(&id) else { return };
        if !rec.wakeups.is_empty() {
            tracing::debug!(actor = %rec.address, pending = rec.wakeups.len(), reason = why, "dropping the actor's pending wakeups");
            rec.wakeups.clear();
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
            let mut raw_status: libc::c_int = 0;
            // SAFETY: `rusage` is plain integers, valid when zeroed.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 only writes the status and the usage into the two locals passed.
            let pid = unsafe { libc::wait4(-1, &mut raw_status, libc::WNOHANG, &mut usage) };
            if pid == 0 {
                return; // children remain, none has exited
            }
            if pid < 0 {
                if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                    continue;
                }
                return; // ECHILD: nothing left to reap
            }
            let pid = Pid::from_raw(pid);
            let Ok(status) = WaitStatus::from_raw(pid, raw_status) else {
                continue;
            };
            let seconds = |tv: libc::timeval| Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) as u32) * 1000);
            let cpu_used = seconds(usage.ru_utime) + seconds(usage.ru_stime);
            if let Some(id) = self.by_pid.remove(&pid) {
                self.on_host_exit(id, status, cpu_used);
            } else if self.reap_gateway(pid, &status) {
                // The convention's gateway: reaped, and restarted after its backoff.
            } else if self.spawner.as_ref().is_some_and(|s| s.pid() == pid.as_raw()) {
                tracing::warn!(?status, "the spawner exited; spawning hosts directly from now on");
                self.spawner = None;
            }
        }
    }

    fn on_host_exit(&mut self, id: ActorId, status: WaitStatus, cpu_used: Duration) {
        // What the process wrote to stderr before it died (an abort's last words) goes to the
        // log before the news of its death. The pipe stays open until its end of file.
        if let Some(token) = self.actors.get_mut(&id).and_then(|r| r.log_pipe.take()) {
            self.read_log(token);
        }
        // Frames it wrote before dying (HostReady, HostStartFailed, ReceiveFailed) count,
        // for the cause too.
        if let Some(token) = self.actors.get_mut(&id).and_then(|r| r.control.take()) {
            self.read_peer(token);
            self.drop_peer(token);
        }
        let exit_requested = self.tree.exit_was_requested(id);
        let incarnation = self.tree.state(id).map_or(0, |(_, inc)| inc);
        let Some(rec) = self.actors.get_mut(&id) else { return };
        let cause = match (&rec.start_failure, rec.kill_cause.take(), rec.receive_failure.take()) {
            (Some(failure), _, _) => ExitCause::StartFailed(failure.to_string()),
            (None, Some(cause), _) => cause,
            (None, None, said) => {
                let cause = exit::cause_of(status, exit_requested, said).unwrap_or(ExitCause::ExitCode(-1));
                exit::limit_cause(&cause, &rec.spec.limits, cpu_used).unwrap_or(cause)
            }
        };
        rec.busy_since = None;
        rec.next_probe = None;
        let pid = rec.pid.take().map_or(0, |p| p.as_raw());
        rec.orphaned_at = None;
        tracing::info!(actor = %rec.address, actor_type = %rec.type_name, pid, incarnation, %cause, "actor host exited");
        // What the dead incarnation did with each sender's messages, before the next one
        // starts writing.
        if let Some(ledger) = &rec.ledger {
            match ledger.read() {
                Ok(report) => {
                    rec.reports.push_back((incarnation, report, cause.clone()));
                    if rec.reports.len() > REPORTS_KEPT {
                        rec.reports.pop_front();
                    }
                }
                Err(e) => tracing::error!(actor = %rec.address, error = %e, "could not read the delivery ledger"),
            }
            if let Err(e) = ledger.reset() {
                tracing::error!(actor = %rec.address, error = %e, "could not reset the delivery ledger");
            }
        }
        self.orphan_remote_children(id);
        let cmds = self.tree.died(id, cause, Instant::now());
        self.execute(cmds);
        self.answer_settled(id);
    }

    // ---- host stderr pipes ----

    /// Reads one host's stderr pipe, up to one read budget, into the sink; closes it at its
    /// end of file. Left unread while the sink is full (until it has taken some), so that a
    /// host logging faster than the sink is written waits on its own full pipe.
    fn read_log(&mut self, token: Token) {
        let Some(pipe) = self.log_pipes.get_mut(&token) else {
            return;
        };
        if !self.sink.has_room() {
            self.logs_paused.push(token);
            return;
        }
        match pipe.read(&self.sink, logs::READ_BUDGET) {
            logs::PipeRead::Drained => {}
            logs::PipeRead::More => self.rescan.push(token),
            logs::PipeRead::Closed => {
                if let Some(mut pipe) = self.log_pipes.remove(&token) {
                    let _ = self.poll.registry().deregister(&mut pipe.rx);
                }
            }
        }
    }

    /// Writes what the sink takes now; pipes paused for lack of room are read again once
    /// there is some (next turn, with the rescans).
    fn flush_log(&mut self) {
        self.sink.flush();
        if !self.logs_paused.is_empty() && self.sink.has_room() {
            self.rescan.append(&mut self.logs_paused);
        }
    }

    /// Reads a source whose read budget ran out last time: a stderr pipe or a control peer.
    fn read_source(&mut self, token: Token) {
        if self.log_pipes.contains_key(&token) {
            self.read_log(token);
        } else {
            self.read_peer(token);
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
        match peer.framed.flush() {
            Ok(written) => {
                let registry = self.poll.registry();
                set_write_interest(
                    registry,
                    &mut peer.framed.stream,
                    token,
                    &mut peer.write_armed,
                    !written,
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "control connection write failed");
                // Act on whatever the peer sent before it went away, then forget it.
                self.read_peer(token);
                self.peer_closed(token);
            }
        }
    }

    /// Reads what one control peer has sent, up to one read budget (so that a peer that
    /// keeps writing cannot hold the loop), and acts on each frame.
    fn read_peer(&mut self, token: Token) {
        let Some(peer) = self.peers.get_mut(&token) else { return };
        let outcome = match peer.framed.read() {
            Ok(o) => o,
            Err(ReadError::Io(e)) => {
                tracing::debug!(peer = ?peer.kind, error = %e, "control connection ended");
                self.peer_closed(token);
                return;
            }
            Err(ReadError::Protocol(e)) => {
                if self.handshake_deadlines.logs.broke_protocol.allow() {
                    tracing::warn!(peer = ?peer.kind, reason = %e, "closing a control connection that broke the protocol");
                }
                self.peer_closed(token);
                return;
            }
        };
        for body in outcome.frames {
            let Some(peer) = self.peers.get_mut(&token) else { return };
            if !peer.handshake_done {
                if !self.accept_handshake(token, &body) {
                    return;
                }
                continue;
            }
            match decode::<ToAdmin>(&body, "control frame") {
                Ok(frame) => self.on_frame(token, frame),
                Err(e) => {
                    if self.handshake_deadlines.logs.broke_protocol.allow() {
                        tracing::warn!(peer = ?peer.kind, reason = %e, "closing a control connection that sent an undecodable frame");
                    }
                    self.peer_closed(token);
                    return;
                }
            }
        }
        if outcome.closed {
            self.peer_closed(token);
            return;
        }
        if outcome.more {
            // Its read budget is spent: serve everyone else first, then come back.
            self.rescan.push(token);
        }
    }

    /// Accepts clients on `admin.sock` (edge-triggered: until it would block). A peer of
    /// another user is closed before a byte of it is read.
    fn accept_clients(&mut self) {
        loop {
            let mut stream = match self.client_listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds, most likely: see `AcceptRetry`.
                    self.accept_retry.failed(Instant::now());
                    if self.handshake_deadlines.logs.refused.allow() {
                        tracing::warn!(reason = %explain(&e), retry_in = ?ACCEPT_RETRY, "cannot accept a client connection");
                    }
                    return;
                }
            };
            if let Err(why) = crate::net::peer::check_same_user(&stream) {
                if self.handshake_deadlines.logs.refused.allow() {
                    tracing::warn!(reason = %why, "refused a client connection from another user");
                }
                continue;
            }
            if !self.handshake_deadlines.admit(awaiting_handshake(&self.peers)) {
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                tracing::warn!(error = %e, "cannot watch a client connection; closing it");
                continue;
            }
            self.peers.insert(
                token,
                ControlPeer {
                    framed: Framed::accepting(stream, DEFAULT_MAX_FRAME),
                    kind: PeerKind::Client(None),
                    handshake_done: false,
                    write_armed: false,
                },
            );
            self.handshake_deadlines.push(token);
            // Whatever it sent before the registration took effect.
            self.read_peer(token);
        }
    }

    /// Checks a control connection's handshake; `false` if it was refused and closed.
    fn accept_handshake(&mut self, token: Token, body: &[u8]) -> bool {
        let Some(peer) = self.peers.get_mut(&token) else {
            return false;
        };
        let refusal = match Handshake::decode(body) {
            Ok(Handshake { role }) if role_fits(&role, peer.kind) => None,
            Ok(Handshake { role }) => Some(format!("unexpected role {role:?} on this control socket")),
            Err(e) => Some(e.to_string()),
        };
        let mut buf = Vec::new();
        let _ = HandshakeReply {
            refusal: refusal.clone(),
            incarnation: 0,
        }
        .encode(&mut buf);
        peer.framed.queue_raw(&buf);
        if let Some(why) = refusal {
            if self.handshake_deadlines.logs.broke_protocol.allow() {
                tracing::warn!(peer = ?peer.kind, reason = %why, "refused a control connection");
            }
            let _ = peer.framed.flush();
            self.peer_closed(token);
            return false;
        }
        peer.handshake_done = true;
        peer.framed.handshake_accepted();
        if let PeerKind::Host(id) = peer.kind {
            self.send_start(token, id);
        }
        self.flush_peer(token);
        true
    }

    fn drop_peer(&mut self, token: Token) -> Option<PeerKind> {
        let mut peer = self.peers.remove(&token)?;
        let _ = self.poll.registry().deregister(&mut peer.framed.stream);
        self.settle_waiters
            .retain(|w| !matches!(w.asker, SettleAsker::Local(t) if t == token));
        Some(peer.kind)
    }

    fn peer_closed(&mut self, token: Token) {
        let Some(kind) = self.drop_peer(token) else { return };
        match kind {
            PeerKind::Host(id) => {
                // A host closes its control connection when it exits; reaping reports the
                // outcome. One that closed it and lingers cannot be managed: kill it.
                if let Some(rec) = self.actors.get_mut(&id) {
                    if rec.control == Some(token) {
                        rec.control = None;
                        if rec.pid.is_some() {
                            rec.orphaned_at = Some(Instant::now() + CLOSED_CONTROL_GRACE);
                            self.watched.insert(id);
                        }
                    }
                }
            }
            PeerKind::Client(client) => {
                if let Some(id) = client {
                    self.clients.remove(&id);
                    let _ = std::fs::remove_file(runtime_dir::socket_path(&self.rundir, self.address_of(id)));
                    self.answer_settled(id);
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
                        address: self.address_of(id),
                        runtime_dir: self.rundir.to_string_lossy().into_owned(),
                        max_frame: self.max_frame,
                        capabilities: self.capabilities.clone(),
                    },
                );
            }
            (
                ToAdmin::CreateActor {
                    request,
                    type_name,
                    spec,
                    global_name,
                    requirements,
                    on,
                },
                kind,
            ) => self.create_actor(
                token,
                kind,
                CreateRequest {
                    request,
                    type_name,
                    spec: spec.clamped(),
                    global_name,
                    requirements,
                },
                on,
            ),
            (ToAdmin::ActorStatus { request, actor, settle }, _) => match settle {
                Some(incarnation) if actor.node() == self.node => {
                    self.settle_waiters.push(SettleWaiter {
                        asker: SettleAsker::Local(token),
                        request,
                        actor,
                        incarnation,
                    });
                    self.answer_settled(actor.id());
                }
                // A registered sender's question about another member's actor: that
                // member's admin answers it.
                Some(incarnation)
                    if self.convention.is_some()
                        && actor.node() != NodeId(0)
                        && matches!(kind, PeerKind::Host(_) | PeerKind::Client(Some(_))) =>
                {
                    if let PeerKind::Host(id) | PeerKind::Client(Some(id)) = kind {
                        let asker = self.address_of(id);
                        self.settle_elsewhere(token, request, actor, incarnation, asker);
                    }
                }
                // Not settled here: what is known of it is known now (nothing, for another
                // node's address).
                _ => {
                    let (state, pid, incarnation) = self.status_of(actor);
                    self.send(
                        token,
                        &FromAdmin::Status {
                            request,
                            actor,
                            state,
                            pid,
                            incarnation,
                            recovery: None,
                            in_doubt: false,
                        },
                    );
                }
            },
            (ToAdmin::HostReady { types }, PeerKind::Host(id)) => {
                self.learn_types(types);
                self.tree.ready(id, Instant::now());
                let Some(rec) = self.actors.get_mut(&id) else { return };
                let address = rec.address;
                tracing::info!(actor = %address, actor_type = %rec.type_name, pid = rec.pid.map(|p| p.as_raw()), "actor ready");
                if let Some((asker, request)) = rec.creator.take() {
                    self.answer_create(asker, request, Ok(address));
                }
            }
            (ToAdmin::HostStartFailed { failure }, PeerKind::Host(id)) => {
                if let CreateFailure::UnknownType { known, .. } = &failure {
                    self.learn_types(known.clone());
                }
                if let Some(rec) = self.actors.get_mut(&id) {
                    tracing::warn!(actor = %rec.address, %failure, "actor failed to start");
                    rec.start_failure = Some(failure);
                }
            }
            (ToAdmin::WakeupSet(wakeup), PeerKind::Host(id)) => {
                if let Some(rec) = self.actors.get_mut(&id) {
                    rec.wakeups.insert(wakeup.id, wakeup);
                }
            }
            (ToAdmin::WakeupFired { id: wakeup }, PeerKind::Host(id)) => {
                if let Some(rec) = self.actors.get_mut(&id) {
                    rec.wakeups.remove(&wakeup);
                }
            }
            (ToAdmin::ReceiveFailed { details }, PeerKind::Host(id)) => {
                if let Some(rec) = self.actors.get_mut(&id) {
                    tracing::debug!(actor = %rec.address, %details, "receive failed; the actor's failure policy ends its process");
                    rec.receive_failure = Some(details);
                }
            }
            (ToAdmin::Exiting, PeerKind::Host(id)) => {
                // An exiting actor takes only exit traffic: dead letters are logged from now on.
                if self.dead_letter_handler == Some(id) {
                    self.dead_letter_handler = None;
                }
                self.drop_wakeups(id, "it is exiting");
                let cmds = self.tree.exit_requested(id, Instant::now());
                self.execute(cmds);
            }
            (ToAdmin::Shutdown { request }, PeerKind::Client(Some(_))) => self.begin_shutdown(Some((token, request))),
            (ToAdmin::ConventionNotices { on }, PeerKind::Host(id)) => {
                if !on {
                    self.convention_watchers.remove(&id);
                } else if self.convention_watchers.insert(id) {
                    // It hears of every member there is now, then of every change.
                    let members = self
                        .convention
                        .as_ref()
                        .map(|node| node.member_infos().to_vec())
                        .unwrap_or_default();
                    for member in members {
                        self.tell_convention_watcher(id, &member.id, member.capabilities, true);
                    }
                }
            }
            (ToAdmin::HandleDeadLetters { start }, PeerKind::Host(id)) => {
                if start {
                    self.dead_letter_handler = Some(id);
                } else if self.dead_letter_handler == Some(id) {
                    self.dead_letter_handler = None;
                }
            }
            (
                ToAdmin::DeadLetters {
                    target,
                    sender,
                    messages,
                },
                PeerKind::Host(_) | PeerKind::Client(Some(_)),
            ) => {
                self.dead_letters(sender, target, messages);
            }
            (ToAdmin::Describe { request, include_gone }, PeerKind::Client(Some(_))) => {
                let system = self.describe(include_gone);
                self.send(
                    token,
                    &FromAdmin::Description {
                        request,
                        system: Box::new(system),
                    },
                );
            }
            (ToAdmin::UpdateCapability { key, value }, PeerKind::Host(_) | PeerKind::Client(Some(_))) => {
                self.update_capability(key, value);
            }
            (ToAdmin::ConventionMembers { request }, PeerKind::Host(_) | PeerKind::Client(Some(_))) => {
                let mut members = self
                    .convention
                    .as_ref()
                    .map(|node| node.member_infos().to_vec())
                    .unwrap_or_default();
                members.sort_by_key(|m| m.id.addr);
                let members = members
                    .into_iter()
                    .map(|m| greenroom_protocol::ConventionMember {
                        node: m.node,
                        capabilities: m.capabilities,
                        load: m.load,
                        types: m.types,
                    })
                    .collect();
                self.send(token, &FromAdmin::ConventionMembers { request, members });
            }
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

    /// The system and its actors (gone ones only if asked for: a long-running system may
    /// have retired many), for `greenroom status`.
    fn describe(&self, include_gone: bool) -> SystemDescription {
        let unix_ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let names: HashMap<ActorId, &String> = self.global_names.iter().map(|(n, id)| (*id, n)).collect();
        let mut ids: Vec<&ActorId> = self.actors.keys().collect();
        ids.sort_unstable();
        let actors = ids
            .into_iter()
            .filter_map(|id| {
                let rec = self.actors.get(id)?;
                let (state, incarnation) = self.tree.state(*id)?;
                if !include_gone && matches!(state, ActorState::Gone(_)) {
                    return None;
                }
                let live = rec.pid.is_some();
                let reported = rec
                    .ledger
                    .as_ref()
                    .filter(|_| live)
                    .and_then(|l| l.reported().ok().flatten());
                Some(ActorRow {
                    address: rec.address,
                    type_name: rec.type_name.clone(),
                    global_name: names.get(id).map(|n| (*n).clone()),
                    parent: self.tree.parent(*id).map(|p| self.address_of(p)),
                    state,
                    pid: rec.pid.map(|p| p.as_raw() as u32),
                    incarnation,
                    started_unix_ms: rec.spawned_at.filter(|_| live).map(unix_ms),
                    queued: reported.map(|(queued, _)| queued),
                    troupe: reported.and_then(|(_, troupe)| troupe),
                })
            })
            .collect();
        SystemDescription {
            name: self.identity.name.clone(),
            admin_pid: std::process::id(),
            host_executable: self.host_exe.to_string_lossy().into_owned(),
            runtime_dir: self.rundir.to_string_lossy().into_owned(),
            started_unix_ms: unix_ms(self.identity.started),
            log_file: self.identity.log_file.clone(),
            actors,
            convention: self
                .convention
                .as_ref()
                .map(|handle| convention_view(handle, &self.capabilities, self.live_actors())),
        }
    }

    /// Changes one capability and tells every host and registered client the new set.
    fn update_capability(&mut self, key: String, value: Option<greenroom_protocol::Payload>) {
        let mut updated = self.capabilities.clone();
        updated.set_encoded(&key, value);
        if updated == self.capabilities {
            // Thespian's rule: a change that changes nothing re-checks no actor.
            return;
        }
        tracing::info!(%key, set = updated.contains(&key), "capability updated");
        self.capabilities = updated;
        // The convention's other members hear of it too (they own no copy to update).
        if let Some(node) = &mut self.convention {
            node.set_capabilities(self.capabilities.clone());
        }
        let frame = FromAdmin::CapabilitiesChanged {
            capabilities: self.capabilities.clone(),
        };
        let told: Vec<Token> = self
            .peers
            .iter()
            .filter(|(_, p)| p.handshake_done && p.kind != PeerKind::Client(None))
            .map(|(t, _)| *t)
            .collect();
        for token in told {
            self.send(token, &frame);
        }
    }

    /// Passes the membership's news to the actors that asked: a member whose capabilities are
    /// (first or newly) known is added; one that left or died is not.
    fn on_convention_events(&mut self) {
        let events = match &mut self.convention {
            Some(handle) => handle.take_events(),
            None => return,
        };
        let (mut updates, mut lost, mut joined) = (Vec::new(), Vec::new(), Vec::new());
        for event in events {
            match event {
                ConventionEvent::Frame { from, frame } => self.on_gateway_frame(from, frame),
                ConventionEvent::LinkBroke(node) => {
                    let why = format!("the link to node {} broke before it answered", node.0);
                    self.fail_waiting_on(node, &why);
                }
                ConventionEvent::Membership(MembershipEvent::Capabilities(member, capabilities)) => {
                    joined.push(member.node());
                    updates.push((member, capabilities, true));
                }
                ConventionEvent::Membership(MembershipEvent::Down(member)) => {
                    lost.push(member.clone());
                    updates.push((member, Capabilities::new(), false));
                }
                // Not sent by the gateway: a member is taken in with its capabilities,
                // which follow its join at once.
                ConventionEvent::Membership(MembershipEvent::Up(_)) => {}
            }
        }
        for member in lost {
            self.member_lost(&member);
        }
        // A leader that joins (restarted, it knows no names) hears the names this member's
        // actors hold.
        let leader = self.convention.as_ref().and_then(|handle| {
            let leader = handle.config.leader?;
            handle.member_at(leader).map(|m| m.node)
        });
        if let Some(leader) = leader.filter(|node| joined.contains(node)) {
            let held: Vec<GatewayFrame> = self
                .global_names
                .iter()
                .map(|(name, id)| GatewayFrame::NameBound {
                    name: name.clone(),
                    holder: self.address_of(*id),
                    bound: true,
                })
                .collect();
            if let Some(gateway) = &mut self.convention {
                for frame in held {
                    gateway.send(leader, frame);
                }
            }
        }
        // The leader gives a member that joins (or is heard of again) the whole table.
        if let (Some(table), Some(gateway)) = (&self.leader_table, &mut self.convention) {
            for node in joined {
                for (name, holder) in table.bindings() {
                    let frame = GatewayFrame::NameBound {
                        name: name.clone(),
                        holder: *holder,
                        bound: true,
                    };
                    gateway.send(node, frame);
                }
            }
        }
        self.convention_watchers.retain(|id| self.actors.contains_key(id));
        let watchers: Vec<ActorId> = self.convention_watchers.iter().copied().collect();
        for (member, capabilities, added) in updates {
            tracing::info!(member = %member.addr, added, "convention membership changed");
            for &id in &watchers {
                self.tell_convention_watcher(id, &member, capabilities.clone(), added);
            }
        }
    }

    fn tell_convention_watcher(&mut self, id: ActorId, member: &MemberId, capabilities: Capabilities, added: bool) {
        let Some(token) = self.actors.get(&id).and_then(|r| r.control) else {
            return;
        };
        let update = ActorSystemConventionUpdate {
            member: member.addr.to_string(),
            capabilities,
            added,
        };
        let sender = self.address_of(id);
        self.deliver_runtime(token, sender, &update);
    }

    /// Hands undeliverable messages to the dead-letter handler, or logs them.
    fn dead_letters(&mut self, sender: Address, target: Address, messages: Vec<greenroom_protocol::Payload>) {
        let handler = self
            .dead_letter_handler
            .and_then(|h| self.actors.get(&h))
            .and_then(|r| r.control);
        for payload in messages {
            let message = AnyMessage::from_payload(payload);
            let Some(token) = handler else {
                // A sender flooding a gone address must not flood the log: a burst per window
                // one by one, then a count.
                if self.dead_letter_log.allow() {
                    tracing::warn!(target_actor = %target, %sender, message_type = message.tag(),
                        "dead letter: no handler registered; message dropped");
                }
                continue;
            };
            self.deliver_runtime(
                token,
                target,
                &DeadEnvelope {
                    target,
                    sender,
                    message,
                },
            );
        }
    }

    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The actor types the host binary registers, as a host reported them; the other
    /// members of a convention hear of them (for placement) when they change.
    fn learn_types(&mut self, types: Vec<String>) {
        if self.known_types.as_ref() == Some(&types) {
            return;
        }
        if let Some(node) = &mut self.convention {
            node.set_types(types.clone());
        }
        self.known_types = Some(types);
    }

    /// The address of endpoint `id` of this system: on this admin's node.
    fn address_of(&self, id: u64) -> Address {
        Address::new(self.node, id)
    }

    /// State, host pid and incarnation of any address. An address of another node is
    /// `Unknown` here: this admin knows only its own actors (a sender whose connection to
    /// the gateway ended then hands its messages back).
    fn status_of(&self, actor: Address) -> (ActorState, Option<u32>, u32) {
        if actor.node() != self.node {
            return (ActorState::Unknown, None, 0);
        }
        if let Some((state, incarnation)) = self.tree.state(actor.id()) {
            let pid = self
                .actors
                .get(&actor.id())
                .and_then(|r| r.pid)
                .map(|p| p.as_raw() as u32);
            return (state, pid, incarnation);
        }
        if self.clients.contains_key(&actor.id()) {
            return (ActorState::Running, None, 0);
        }
        if actor.id() > 0 && actor.id() < self.next_id {
            // A client that has disconnected.
            return (ActorState::Gone(ExitCause::Normal), None, 0);
        }
        (ActorState::Unknown, None, 0)
    }

    /// Answers the senders waiting to learn what became of `id`'s lost incarnation, once it
    /// is known: the incarnation they saw has been reaped (or the actor is gone).
    fn answer_settled(&mut self, id: ActorId) {
        let (state, pid, current) = self.status_of(self.address_of(id));
        let reaped = self.actors.get(&id).is_none_or(|r| r.pid.is_none());
        let gone = matches!(state, ActorState::Gone(_) | ActorState::Unknown);
        let settled = |w: &SettleWaiter| {
            w.actor.id() == id
                && (gone
                    || match w.asker {
                        // A local sender's incarnation 0: the receiver never accepted its
                        // connection, so processed nothing of it.
                        SettleAsker::Local(_) => {
                            w.incarnation == 0 || current > w.incarnation || (current == w.incarnation && reaped)
                        }
                        // A remote sender may not have heard the incarnation that accepted
                        // its stream (a broken link): 0 is in doubt, as is a client (it has
                        // no ledger), unless it is gone. They wait for the deadline.
                        SettleAsker::Remote { .. } => {
                            w.incarnation > 0
                                && self.actors.contains_key(&id)
                                && (current > w.incarnation || (current == w.incarnation && reaped))
                        }
                    })
        };
        let (ready, waiting): (Vec<SettleWaiter>, Vec<SettleWaiter>) =
            std::mem::take(&mut self.settle_waiters).into_iter().partition(settled);
        self.settle_waiters = waiting;
        for w in ready {
            // The sender as the receiver's ledger knows it.
            let ledger_key = match w.asker {
                SettleAsker::Local(token) => match self.peers.get(&token).map(|p| p.kind) {
                    Some(PeerKind::Host(a) | PeerKind::Client(Some(a))) => a,
                    _ => continue,
                },
                SettleAsker::Remote { sender, .. } => crate::net::endpoint::ledger_key(w.actor, sender),
            };
            let recovery = self.actors.get(&id).and_then(|r| {
                r.reports
                    .iter()
                    .find(|(inc, _, _)| *inc == w.incarnation)
                    .map(|(_, report, cause)| report.recovery_for(ledger_key, cause.clone()))
            });
            self.answer_settle(w, state.clone(), pid, current, recovery, false);
        }
    }

    /// Answers one settle query: on the asker's control connection, or through the gateway
    /// to the admin of a remote asker.
    fn answer_settle(
        &mut self,
        w: SettleWaiter,
        state: ActorState,
        pid: Option<u32>,
        incarnation: u32,
        recovery: Option<greenroom_protocol::Recovery>,
        in_doubt: bool,
    ) {
        match w.asker {
            SettleAsker::Local(token) => self.send(
                token,
                &FromAdmin::Status {
                    request: w.request,
                    actor: w.actor,
                    state,
                    pid,
                    incarnation,
                    recovery,
                    in_doubt,
                },
            ),
            SettleAsker::Remote { sender, .. } => {
                if let Some(gateway) = &mut self.convention {
                    let settled = GatewayFrame::Settled {
                        request: w.request,
                        state,
                        pid,
                        incarnation,
                        recovery,
                        in_doubt,
                    };
                    gateway.send(sender.node(), settled);
                }
            }
        }
    }

    /// Answers as unknown (in doubt) the settle queries asked of other members that
    /// `give_up(node, deadline)` selects.
    fn settles_in_doubt(&mut self, give_up: impl Fn(NodeId, Instant) -> bool) {
        let unanswered: Vec<u64> = self
            .remote_settles
            .iter()
            .filter(|(_, asked)| give_up(asked.node, asked.deadline))
            .map(|(r, _)| *r)
            .collect();
        for request in unanswered {
            if let Some(asked) = self.remote_settles.remove(&request) {
                self.send(asked.token, &unknown_status(asked.request, asked.actor, true));
            }
        }
    }

    /// Remote senders whose incarnation still runs at their deadline: their connection
    /// ended for another reason than its death, and what it processed is in doubt. They
    /// are told it is unknown, and hand their unacknowledged messages back.
    fn expire_remote_settles(&mut self) {
        let now = Instant::now();
        // Ours, asked of other members, whose answer never came.
        self.settles_in_doubt(|_, deadline| deadline <= now);
        let expired = |w: &SettleWaiter| matches!(w.asker, SettleAsker::Remote { deadline, .. } if deadline <= now);
        if !self.settle_waiters.iter().any(expired) {
            return;
        }
        let (expired, waiting): (Vec<SettleWaiter>, Vec<SettleWaiter>) =
            std::mem::take(&mut self.settle_waiters).into_iter().partition(expired);
        self.settle_waiters = waiting;
        for w in expired {
            tracing::info!(actor = %w.actor, incarnation = w.incarnation,
                "a remote sender's connection ended while the actor kept running: its unacknowledged messages are in doubt");
            self.answer_settle(w, ActorState::Unknown, None, 0, None, true);
        }
    }

    /// A settle query about an actor of another member: asked of that member's admin,
    /// which answers once it knows (`GatewayFrame::Settle`); unknown at once if no member
    /// is that node.
    fn settle_elsewhere(&mut self, token: Token, request: u64, actor: Address, incarnation: u32, asker: Address) {
        let node = actor.node();
        let member = self.convention.as_mut().filter(|handle| handle.addr_of(node).is_some());
        let Some(gateway) = member else {
            self.send(token, &unknown_status(request, actor, false));
            return;
        };
        self.next_remote_request += 1;
        let ours = self.next_remote_request;
        gateway.send(
            node,
            GatewayFrame::Settle {
                request: ours,
                actor,
                incarnation,
                asker,
            },
        );
        let asked = RemoteSettle {
            node,
            token,
            request,
            actor,
            deadline: Instant::now() + REMOTE_SETTLE_WAIT + REMOTE_ANSWER_GRACE,
        };
        self.remote_settles.insert(ours, asked);
    }

    // ---- creating actors ----

    /// A create asked for by a host or client of this system: here, or (`on`) on another
    /// member of the convention.
    fn create_actor(&mut self, token: Token, kind: PeerKind, create: CreateRequest, on: Option<NodeId>) {
        let parent = match (kind, &create.global_name) {
            // A named actor belongs to the system, not to whoever asked first.
            (PeerKind::Host(_) | PeerKind::Client(Some(_)), Some(_)) => None,
            (PeerKind::Host(id), None) => Some(id),
            (PeerKind::Client(Some(_)), None) => None,
            (PeerKind::Client(None), _) => {
                tracing::warn!("CreateActor before RegisterClient; closing the connection");
                self.peer_closed(token);
                return;
            }
        };
        if create.global_name.is_some() && self.convention.is_some() {
            self.create_global(token, create);
            return;
        }
        match on.filter(|node| *node != self.node) {
            Some(node) => self.create_elsewhere(token, node, create, parent),
            None => self.create_here(Asker::Local(token), parent, create, None),
        }
    }

    /// A create with a global name in a convention: one actor per name across the
    /// convention, the leader deciding (see `names.rs`). A name already bound is answered
    /// from this member's copy, even while the leader is unreachable.
    fn create_global(&mut self, token: Token, create: CreateRequest) {
        let name = create.global_name.clone().unwrap_or_default();
        if let Some(holder) = self.convention_names.get(&name).copied() {
            let result = Ok(holder);
            self.answer_create(Asker::Local(token), create.request, result);
            return;
        }
        if let Some(table) = self.leader_table.as_mut() {
            match table.claim(&name, self.node, Instant::now()) {
                names::Claim::Held(holder) => {
                    let result = Ok(holder);
                    self.answer_create(Asker::Local(token), create.request, result);
                }
                names::Claim::Busy(node) => {
                    let why = format!(
                        "the global name {name:?} is being created on another member (node {})",
                        node.0
                    );
                    self.answer_create(Asker::Local(token), create.request, Err(CreateFailure::Remote(why)));
                }
                names::Claim::Granted => {
                    self.create_here(Asker::Local(token), None, create, None);
                    self.bind_created(&name);
                }
            }
            return;
        }
        let leader = self.convention.as_ref().and_then(|handle| handle.config.leader);
        match (self.leader_node(), &mut self.convention) {
            (Some(node), Some(gateway)) => {
                self.next_remote_request += 1;
                let request = self.next_remote_request;
                gateway.send(
                    node,
                    GatewayFrame::ClaimName {
                        request,
                        name,
                        by: self.node,
                    },
                );
                self.name_claims.insert(request, (token, create));
            }
            _ => {
                let why = format!(
                    "a new global name needs the convention's leader{}, which is unreachable now (names already bound are still found)",
                    leader.map(|l| format!(" at {l}")).unwrap_or_default()
                );
                self.answer_create(Asker::Local(token), create.request, Err(CreateFailure::Remote(why)));
            }
        }
    }

    /// How many actors this admin runs: those not gone for good.
    fn live_actors(&self) -> u64 {
        self.actors.values().filter(|r| r.listener.is_some()).count() as u64
    }

    /// Tells the convention how many actors this admin runs (for placement elsewhere).
    fn report_load(&mut self) {
        let load = self.live_actors();
        if let Some(members) = &mut self.convention {
            members.set_load(load);
        }
    }

    /// The node of the convention's leader, while it is a live member (this one, if it leads).
    fn leader_node(&self) -> Option<NodeId> {
        let members = self.convention.as_ref()?;
        let config = &members.config;
        match config.leader {
            None => Some(self.node),
            Some(leader) => members.member_at(leader).map(|m| m.node),
        }
    }

    /// After a global-name create here: the actor that took the name is bound in the
    /// leader's table (or its reservation is given back, if the create failed).
    fn bind_created(&mut self, name: &str) {
        let holder = self
            .global_names
            .get(name)
            .filter(|id| self.actors.contains_key(id))
            .map(|id| self.address_of(*id));
        let (holder, bound) = match holder {
            Some(holder) => (holder, true),
            None => (self.address_of(0), false),
        };
        self.name_changed(name, holder, bound);
    }

    /// `holder` took (`bound`) or left `name`: the leader's table changes and every member
    /// hears of it; a member tells the leader.
    fn name_changed(&mut self, name: &str, holder: Address, bound: bool) {
        if let Some(table) = self.leader_table.as_mut() {
            let changed = if bound {
                table.bind(name, holder)
            } else {
                table.free(name, holder)
            };
            if changed {
                self.broadcast_name(name, holder, bound);
            } else if let (true, Some(actual)) = (bound, table.holder(name)) {
                // Not the claimant's to take: it learns who holds the name.
                if let Some(gateway) = &mut self.convention {
                    let frame = GatewayFrame::NameBound {
                        name: name.to_owned(),
                        holder: actual,
                        bound: true,
                    };
                    gateway.send(holder.node(), frame);
                }
            }
            return;
        }
        if bound {
            self.convention_names.insert(name.to_owned(), holder);
        } else if self.convention_names.get(name) == Some(&holder) {
            self.convention_names.remove(name);
        }
        if let (Some(leader), Some(gateway)) = (self.leader_node(), &mut self.convention) {
            let frame = GatewayFrame::NameBound {
                name: name.to_owned(),
                holder,
                bound,
            };
            gateway.send(leader, frame);
        }
    }

    /// The leader tells every member (and its own copy) that the table changed.
    fn broadcast_name(&mut self, name: &str, holder: Address, bound: bool) {
        if bound {
            self.convention_names.insert(name.to_owned(), holder);
        } else {
            self.convention_names.remove(name);
        }
        if let Some(gateway) = &mut self.convention {
            let nodes: Vec<NodeId> = gateway.member_infos().iter().map(|m| m.node).collect();
            for node in nodes {
                let frame = GatewayFrame::NameBound {
                    name: name.to_owned(),
                    holder,
                    bound,
                };
                gateway.send(node, frame);
            }
        }
    }

    /// Asks the admin of `node` to create the actor, with `parent` (an actor here; `None`
    /// for a client) as its parent of record, and answers the creator when it replies.
    fn create_elsewhere(&mut self, token: Token, node: NodeId, create: CreateRequest, parent: Option<ActorId>) {
        let parent_address = parent.map(|p| self.address_of(p));
        let member = self
            .convention
            .as_mut()
            .and_then(|handle| handle.addr_of(node).map(|addr| (addr, handle)));
        let Some((addr, gateway)) = member else {
            let why = format!("no member of the convention is node {}", node.0);
            self.answer_create(Asker::Local(token), create.request, Err(CreateFailure::Remote(why)));
            return;
        };
        self.next_remote_request += 1;
        let request = self.next_remote_request;
        tracing::info!(actor_type = %create.type_name, member = %addr, "creating an actor on another member");
        gateway.send(
            node,
            GatewayFrame::Create {
                request,
                from: self.node,
                parent: parent_address,
                type_name: create.type_name,
                spec: create.spec,
                requirements: create.requirements,
            },
        );
        let parent = parent.map(|p| (p, self.tree.state(p).map_or(0, |(_, incarnation)| incarnation)));
        let asked = RemoteCreate {
            node,
            token,
            request: create.request,
            parent,
        };
        self.remote_creates.insert(request, asked);
    }

    /// Creates an actor in this system, for a local creator or (`remote_parent`) for an
    /// actor of another member.
    fn create_here(
        &mut self,
        asker: Asker,
        parent: Option<ActorId>,
        create: CreateRequest,
        remote_parent: Option<Address>,
    ) {
        let CreateRequest {
            request,
            type_name,
            spec,
            global_name,
            requirements,
        } = create;
        if let Some(existing) = global_name.as_ref().and_then(|n| self.global_names.get(n)) {
            if self
                .tree
                .state(*existing)
                .is_some_and(|(s, _)| !matches!(s, ActorState::Gone(_)))
            {
                let address = self.address_of(*existing);
                self.answer_create(asker, request, Ok(address));
                return;
            }
        }
        if self.shutdown.is_some() {
            self.answer_create(asker, request, Err(CreateFailure::ShuttingDown));
            return;
        }
        if let Some(known) = &self.known_types {
            if !known.contains(&type_name) {
                let failure = CreateFailure::UnknownType {
                    type_name,
                    known: known.clone(),
                };
                self.answer_create(asker, request, Err(failure));
                return;
            }
        }
        if let Some(p) = parent {
            if !matches!(
                self.tree.state(p),
                Some((ActorState::Running | ActorState::Starting, _))
            ) {
                self.answer_create(asker, request, Err(CreateFailure::ParentExiting));
                return;
            }
        }
        let id = self.allocate_id();
        let address = self.address_of(id);
        if let Some(name) = global_name {
            self.global_names.insert(name, id);
        }
        let path = runtime_dir::socket_path(&self.rundir, address);
        let resources = UnixListener::bind(&path)
            .map_err(|e| format!("cannot bind {}: {}", path.display(), explain(&e)))
            .and_then(|l| {
                LedgerFile::create()
                    .map(|ledger| (l, ledger))
                    .map_err(|e| format!("cannot create a delivery ledger: {}", explain(&e)))
            });
        let (listener, ledger) = match resources {
            Ok(r) => r,
            Err(why) => {
                let _ = std::fs::remove_file(&path);
                self.answer_create(asker, request, Err(CreateFailure::SpawnFailed(why)));
                return;
            }
        };
        self.actors.insert(
            id,
            ActorRecord {
                address,
                type_name,
                requirements,
                remote_parent,
                pid: None,
                control: None,
                log_pipe: None,
                spawned_at: None,
                listener: Some(listener),
                ledger: Some(ledger),
                creator: None,
                start_failure: None,
                stop_pending: false,
                orphaned_at: None,
                spec,
                ends_at: spec.lifetime.map(|l| Instant::now() + l),
                busy_since: None,
                next_probe: None,
                kill_cause: None,
                receive_failure: None,
                reports: VecDeque::new(),
                wakeups: Default::default(),
            },
        );
        // Once the host binary is known to register the type, a create returns as soon as
        // the process is spawned: the first messages wait in the socket while it starts (a
        // constructor that panics then shows as the actor being gone, `StartFailed`). The
        // first create of a system waits for the host to report, so that an unknown type is
        // refused by `create_actor` itself. The waiting creator is recorded before the spawn,
        // so that a spawn that fails at once answers it too.
        let type_known = self.known_types.as_ref().is_some_and(|known| {
            known
                .iter()
                .any(|t| Some(t) == self.actors.get(&id).map(|r| &r.type_name))
        });
        let answer_now = parent.is_some() || type_known;
        if !answer_now {
            if let Some(rec) = self.actors.get_mut(&id) {
                rec.creator = Some((asker, request));
            }
        }
        let cmds = self.tree.add(id, parent, spec, Instant::now());
        self.execute(cmds);
        self.report_load();
        if answer_now {
            let result = match self.tree.state(id) {
                Some((ActorState::Gone(cause), _)) => Err(CreateFailure::SpawnFailed(cause.to_string())),
                _ => Ok(address),
            };
            self.answer_create(asker, request, result);
        }
    }

    fn spawn_host(&mut self, id: ActorId, incarnation: u32) -> std::result::Result<(), String> {
        let Some(rec) = self.actors.get_mut(&id) else {
            return Err("no such actor".into());
        };
        let (Some(listener), Some(ledger)) = (rec.listener.as_ref(), rec.ledger.as_ref()) else {
            return Err("the actor's socket is gone".into());
        };
        let (admin_end, host_end) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| format!("cannot create a socket pair: {}", explain(&e)))?;
        let (host_stderr, log_end) =
            logs::stderr_pipe().map_err(|e| format!("cannot create a pipe for the host's stderr: {}", explain(&e)))?;
        let argv0 = format!("greenroom-host {}", short_type_name(&rec.type_name));
        let pid = run_host_binary(
            &mut self.spawner,
            &self.host_exe,
            process_role::Role::Host,
            &argv0,
            &rec.spec.limits,
            &host_stderr,
            [&host_end, listener, ledger],
        )?;
        // The admin's copies of the host's ends: with the pipe's write end closed, its end of
        // file comes when the host (and whatever inherited its stderr) is gone.
        drop(host_end);
        drop(host_stderr);
        rec.pid = Some(pid);
        rec.spawned_at = Some(std::time::SystemTime::now());
        rec.start_failure = None;
        rec.orphaned_at = None;
        rec.kill_cause = None;
        rec.receive_failure = None;
        rec.busy_since = None;
        rec.next_probe = rec.spec.liveness.map(|l| Instant::now() + probe_interval(l));
        if rec.spec.liveness.is_some() {
            self.watched.insert(id);
        }
        self.by_pid.insert(pid, id);

        // From here on the process exists: a failure kills it and reaping reports the end
        // (returning an error would let a new incarnation start before this one is reaped).
        // A host whose stderr is not read would block on its first log line once the pipe is
        // full: it cannot be run either.
        let log_token = Token(self.next_token);
        self.next_token += 1;
        let mut log_pipe = logs::LogPipe::new(log_end, rec.address, &rec.type_name, pid.as_raw(), incarnation);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut log_pipe.rx, log_token, Interest::READABLE)
        {
            tracing::error!(actor = %rec.address, pid = pid.as_raw(), error = %e, "cannot watch the new host's stderr; killing it");
            let _ = kill(pid, Signal::SIGKILL);
            return Ok(());
        }
        rec.log_pipe = Some(log_token);
        self.log_pipes.insert(log_token, log_pipe);
        let token = Token(self.next_token);
        self.next_token += 1;
        let registered = admin_end.set_nonblocking(true).and_then(|()| {
            let mut stream = UnixStream::from_std(admin_end);
            self.poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
                .map(|()| stream)
        });
        let stream = match registered {
            Ok(stream) => stream,
            Err(e) => {
                tracing::error!(actor = %rec.address, pid = pid.as_raw(), error = %e, "cannot watch the new host's control socket; killing it");
                let _ = kill(pid, Signal::SIGKILL);
                return Ok(());
            }
        };
        rec.control = Some(token);
        self.peers.insert(
            token,
            ControlPeer {
                framed: Framed::accepting(stream, DEFAULT_MAX_FRAME),
                kind: PeerKind::Host(id),
                handshake_done: false,
                write_armed: false,
            },
        );
        tracing::info!(actor = %rec.address, actor_type = %rec.type_name, pid = pid.as_raw(), incarnation, "spawned actor host");
        Ok(())
    }

    /// Tells a host that has completed its handshake which actor it hosts.
    fn send_start(&mut self, token: Token, id: ActorId) {
        let incarnation = self.tree.state(id).map_or(1, |(_, inc)| inc);
        let parent = self.tree.parent(id).map(|p| self.address_of(p));
        let Some(rec) = self.actors.get_mut(&id) else { return };
        let start = FromAdmin::Start {
            actor: rec.address,
            incarnation,
            type_name: rec.type_name.clone(),
            parent,
            runtime_dir: self.rundir.to_string_lossy().into_owned(),
            max_frame: self.max_frame,
            send_window: self.send_window,
            capabilities: self.capabilities.clone(),
            requirements: rec.requirements.clone(),
            spec: Box::new(rec.spec),
            lifetime_left: rec.ends_at.map(|t| t.saturating_duration_since(Instant::now())),
            wakeups: rec.wakeups.values().cloned().collect(),
        };
        if !rec.wakeups.is_empty() {
            tracing::warn!(actor = %rec.address, actor_type = %rec.type_name, incarnation, pending = rec.wakeups.len(),
                "re-arming the wakeups the actor's last process left pending, at their original due times");
        }
        let stop_pending = std::mem::take(&mut rec.stop_pending);
        self.send(token, &start);
        if stop_pending {
            self.request_stop(id);
        }
    }

    /// Kills hosts that closed their control connection but did not exit: the admin cannot
    /// manage them, so they are treated as failed.
    fn kill_lingering_hosts(&mut self) {
        let now = Instant::now();
        for id in &self.watched {
            let Some(rec) = self.actors.get_mut(id) else { continue };
            if rec.orphaned_at.is_some_and(|t| t <= now) {
                rec.orphaned_at = None;
                if let Some(pid) = rec.pid {
                    tracing::warn!(actor = %rec.address, pid = pid.as_raw(), "host closed its control connection but kept running; killing it");
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
        }
    }

    /// Kills hosts stuck on one message for longer than their liveness timeout, judged from
    /// the ledger they write anyway (no ping, no round trip to the host).
    fn probe_liveness(&mut self) {
        let now = Instant::now();
        for id in &self.watched {
            let Some(rec) = self.actors.get_mut(id) else { continue };
            let (Some(liveness), Some(at), Some(pid)) = (rec.spec.liveness, rec.next_probe, rec.pid) else {
                continue;
            };
            if at > now {
                continue;
            }
            rec.next_probe = Some(now + probe_interval(liveness));
            let busy = rec.ledger.as_ref().and_then(|l| l.busy().ok().flatten());
            match (busy, rec.busy_since) {
                (Some(b), Some((seen, since))) if b == seen => {
                    if now.duration_since(since) >= liveness && rec.kill_cause.is_none() {
                        tracing::warn!(actor = %rec.address, pid = pid.as_raw(), timeout_ms = liveness.as_millis() as u64,
                            "actor is stuck on one message past its liveness timeout; killing it");
                        rec.kill_cause = Some(ExitCause::Unresponsive {
                            after_ms: liveness.as_millis() as u64,
                        });
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
                (Some(b), _) => rec.busy_since = Some((b, now)),
                (None, _) => rec.busy_since = None,
            }
        }
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
            deadline: Instant::now() + SHUTDOWN_TIMEOUT,
            killed: false,
        });
        let cmds = self.tree.shutdown(Instant::now());
        self.execute(cmds);
    }

    /// Closes clients of `admin.sock` that have not completed their handshake in time, so
    /// that a peer that connects and says nothing holds nothing for long.
    fn expire_handshakes(&mut self) {
        for token in self
            .handshake_deadlines
            .expired(Instant::now(), awaiting_handshake(&self.peers))
        {
            if self.handshake_deadlines.logs.timed_out.allow() {
                tracing::warn!(timeout = ?HANDSHAKE_TIMEOUT, "closing a client connection that did not complete its handshake in time");
            }
            self.peer_closed(token);
        }
    }

    /// The safety net: whatever is still running at the shutdown deadline is killed.
    fn check_shutdown_deadline(&mut self) {
        let Some(s) = self.shutdown.as_mut() else { return };
        if s.killed || s.deadline > Instant::now() {
            return;
        }
        s.killed = true;
        tracing::warn!("actors did not stop in time for shutdown; killing them");
        for pid in self.by_pid.keys() {
            let _ = kill(*pid, Signal::SIGKILL);
        }
    }

    fn shutdown_finished(&self) -> bool {
        self.shutdown.is_some() && !self.tree.any_live() && self.by_pid.is_empty()
    }

    fn finish_shutdown(&mut self) {
        // The gateway first: it may be the spawner's last child to reap.
        if let Some(mut handle) = self.convention.take() {
            handle.stop();
        }
        if let Some(spawner) = self.spawner.take() {
            spawner.stop();
        }
        // Every host is reaped: what is left in their pipes is all there will be (an orphan
        // of a host that still holds one is not waited for).
        for (_, mut pipe) in std::mem::take(&mut self.log_pipes) {
            pipe.read_final(&self.sink);
            let _ = self.poll.registry().deregister(&mut pipe.rx);
        }
        runtime_dir::remove(&self.rundir);
        if let Some((token, request)) = self.shutdown.as_mut().and_then(|s| s.reply_to.take()) {
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
        }
        tracing::info!("admin stopped");
    }
}

/// Whether a control connection has yet to complete its handshake (for [`Pending`]).
fn awaiting_handshake(peers: &HashMap<Token, ControlPeer>) -> impl Fn(Token) -> bool + '_ {
    |t| peers.get(&t).is_some_and(|p| !p.handshake_done)
}

/// Which handshake roles may open which control connections.
fn role_fits(role: &PeerRole, kind: PeerKind) -> bool {
    matches!(
        (role, kind),
        (PeerRole::Client, PeerKind::Client(_)) | (PeerRole::Host, PeerKind::Host(_))
    )
}

/// Starts `host_exe` in `role`, with `stderr` as its stderr and `fds` as its fds 3, 4 and
/// 5: through `spawner` while it works (so that the process copies none of the admin's
/// fds), else directly, and directly from then on (`spawner` is emptied). The process is the
/// admin's child, killed if the admin dies, and reaped by the admin's `wait4(-1)`. (A
/// function of the two fields it needs, so that callers may hold other parts of the admin.)
fn run_host_binary(
    spawner: &mut Option<zygote::Spawner>,
    host_exe: &std::path::Path,
    role: process_role::Role,
    argv0: &str,
    limits: &greenroom_protocol::ResourceLimits,
    stderr: &std::os::fd::OwnedFd,
    fds: [&dyn AsFd; 3],
) -> Result<Pid, String> {
    let cannot_run = |e: &std::io::Error| format!("cannot run {}: {}", host_exe.display(), explain(e));
    let by_spawner = spawner.as_ref().map(|spawner| {
        let [a, b, c] = fds.map(|fd| fd.as_fd().as_raw_fd());
        spawner.spawn(role, argv0, limits, [stderr.as_raw_fd(), a, b, c])
    });
    match by_spawner {
        Some(Ok(pid)) => return Ok(Pid::from_raw(pid)),
        Some(Err(e))
            if !matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Err(cannot_run(&e));
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the spawner is gone; spawning processes directly from now on");
            *spawner = None;
        }
        None => {}
    }
    let mut cmd = Command::new(host_exe);
    cmd.env(process_role::ROLE_ENV, role.env_value())
        .env_remove(CONVENTION_ENV)
        .arg0(argv0)
        .stdin(Stdio::null())
        .stderr(Stdio::from(stderr.try_clone().map_err(|e| explain(&e))?));
    let child = spawn::spawn_with_fds(&mut cmd, &fds, spawn::ParentDeath::Kill, limits).map_err(|e| cannot_run(&e))?;
    // The admin reaps with wait4(-1); the std handle is not needed.
    Ok(Pid::from_raw(child.id() as i32))
}

/// An OS error with what to do about the common resource limits.
fn explain(e: &std::io::Error) -> String {
    if let Some(which) = process_role::fd_exhaustion(e, "the admin", std::process::id()) {
        return format!(
            "{e}: {which}; it holds 4 file descriptors per actor: raise its open-files limit (ulimit -n) or stop some actors"
        );
    }
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::ENOMEM) => {
            format!("{e}: the system cannot start another process now (process or memory limit)")
        }
        _ => e.to_string(),
    }
}

/// How often to look at an actor's ledger for a liveness timeout of `liveness`.
fn probe_interval(liveness: Duration) -> Duration {
    (liveness / 4).max(Duration::from_millis(5))
}

/// `my_app::actors::Hello` → `Hello`, for process titles.
fn short_type_name(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// The executable the admin runs for hosts: `GREENROOM_HOST_EXE`, else its own.
fn host_exe_from_env() -> Result<PathBuf> {
    match std::env::var_os(process_role::HOST_EXE_ENV) {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe().map_err(Error::io("finding the host executable")),
    }
}

/// The answer to a settle query about an actor nobody here can settle: unknown, and
/// (`in_doubt`) whether what was on the wire may still have been processed.
fn unknown_status(request: u64, actor: Address, in_doubt: bool) -> FromAdmin {
    FromAdmin::Status {
        request,
        actor,
        state: ActorState::Unknown,
        pid: None,
        incarnation: 0,
        recovery: None,
        in_doubt,
    }
}

/// What `Describe` says of the convention.
fn convention_view(node: &GatewayHandle, ours: &Capabilities, load: u64) -> greenroom_protocol::ConventionView {
    use crate::convention::secret::fingerprint;
    let me = node.me();
    greenroom_protocol::ConventionView {
        name: node.config.name.clone(),
        me: greenroom_protocol::MemberRow {
            address: me.addr.to_string(),
            incarnation: me.incarnation,
            capabilities: ours.clone(),
            load,
            key: fingerprint(node.public_key()),
            last_seen_ms: None,
        },
        leader: node.config.leader.map(|l| l.to_string()),
        members: node
            .member_infos()
            .iter()
            .map(|m| greenroom_protocol::MemberRow {
                address: m.id.addr.to_string(),
                incarnation: m.id.incarnation,
                capabilities: m.capabilities.clone(),
                load: m.load,
                key: m.key.as_deref().map(fingerprint).unwrap_or_default(),
                last_seen_ms: m.heard.map(|at| at.elapsed().as_millis() as u64),
            })
            .collect(),
        gateway_pid: node.pid().map(|p| p.as_raw() as u32),
        gateway_restarts: node.restarts(),
    }
}

/// A setting for the admin's environment: postcard, in hex.
fn encode_hex<T: serde::Serialize>(value: &T) -> String {
    postcard::to_allocvec(value)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// The inverse of [`encode_hex`]; `None` for anything malformed.
fn decode_hex<T: serde::de::DeserializeOwned>(hex: &str) -> Option<T> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    postcard::from_bytes(&bytes?).ok()
}

/// Where a new system logs, and what.
/// What a client's `SystemConfig` tells the admin it starts (hosts inherit the environment
/// settings from the admin).
pub(crate) struct AdminSettings<'a> {
    pub convention: Option<&'a ConventionConfig>,
    pub max_frame: u32,
    pub send_window: usize,
    pub max_pending: usize,
    pub root_spec: &'a SupervisorSpec,
    pub capabilities: &'a Capabilities,
    pub log: LogSettings,
}

pub(crate) struct LogSettings {
    /// The filter for the admin and its hosts (`GREENROOM_LOG`); `None`: the default.
    pub filter: Option<String>,
    /// The log file, opened for appending, to be the admin's stderr; `None`: the client's.
    pub file: Option<std::fs::File>,
    /// Its path, for `Describe`.
    pub path: Option<PathBuf>,
}

/// Starts an admin process for a new system rooted at `rundir`; returns it and the client's
/// end of the owner control connection.
pub(crate) fn start_admin(
    exe: &std::path::Path,
    rundir: &std::path::Path,
    settings: AdminSettings<'_>,
) -> Result<(std::process::Child, std::os::unix::net::UnixStream)> {
    let AdminSettings {
        convention,
        max_frame,
        send_window,
        max_pending,
        root_spec,
        capabilities,
        log,
    } = settings;
    let (client_end, admin_end) =
        std::os::unix::net::UnixStream::pair().map_err(Error::io("creating a socket pair"))?;
    let mut cmd = Command::new(exe);
    cmd.env(process_role::ROLE_ENV, process_role::Role::Admin.env_value())
        .env(process_role::RUNTIME_DIR_ENV, rundir)
        .env(process_role::HOST_EXE_ENV, exe)
        .env(process_role::MAX_FRAME_ENV, max_frame.to_string())
        .env(process_role::SEND_WINDOW_ENV, send_window.to_string())
        .env(process_role::MAX_PENDING_ENV, max_pending.to_string())
        .env(ROOT_SPEC_ENV, encode_hex(root_spec))
        .env(CAPABILITIES_ENV, encode_hex(capabilities))
        .arg0("greenroom-admin")
        .stdin(Stdio::null());
    match convention {
        Some(convention) => cmd.env(CONVENTION_ENV, encode_hex(convention)),
        None => cmd.env_remove(CONVENTION_ENV),
    };
    // Hosts inherit the filter from the admin's environment.
    if let Some(filter) = log.filter {
        cmd.env(process_role::LOG_ENV, filter);
    }
    // The admin's stderr is the system's log sink.
    if let Some(file) = log.file {
        cmd.stderr(file);
    }
    if let Some(path) = log.path {
        cmd.env(process_role::LOG_PATH_ENV, path);
    }
    let child = spawn::spawn_with_fds(
        &mut cmd,
        &[&admin_end],
        spawn::ParentDeath::Ignore,
        &greenroom_protocol::ResourceLimits::default(),
    )
    .map_err(|source| Error::SpawnAdmin {
        exe: exe.to_path_buf(),
        source,
    })?;
    Ok((child, client_end))
}

/// How long an owner whose admin hung up before answering waits for it to exit.
const EARLY_EXIT_WAIT: Duration = Duration::from_secs(1);

/// The exit status of an admin that hung up on its owner before answering, once it has
/// exited (within [`EARLY_EXIT_WAIT`]); `None` if it is still running. An admin closes its
/// end only by exiting, so a closed connection means it is on its way out.
pub(crate) fn exited_early(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + EARLY_EXIT_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// What `greenroom start` needs to start an admin on its own.
#[derive(Debug, Clone)]
pub struct DetachedAdmin {
    /// The host binary: run as the admin and for every actor.
    pub host_executable: PathBuf,
    /// The system's name; its runtime directory is derived from it.
    pub name: String,
    /// The runtime directory ([`runtime_dir::named_system_dir`]).
    pub runtime_dir: PathBuf,
    pub capabilities: Capabilities,
    /// The log file (the admin's stderr), reported by `Describe`.
    pub log_file: Option<PathBuf>,
    /// The log filter (`GREENROOM_LOG` syntax); `None`: the default.
    pub log_filter: Option<String>,
    /// The convention to join, if any.
    pub convention: Option<ConventionConfig>,
}

impl DetachedAdmin {
    /// The command that runs this admin: the host binary in the admin role, with no owner
    /// connection (it runs until a client or a signal stops it). The caller chooses stdio and
    /// whether to detach it from its session.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.host_executable);
        cmd.env(process_role::ROLE_ENV, process_role::Role::Admin.env_value())
            .env(process_role::DETACHED_ENV, "1")
            .env(process_role::SYSTEM_NAME_ENV, &self.name)
            .env(process_role::RUNTIME_DIR_ENV, &self.runtime_dir)
            .env(process_role::HOST_EXE_ENV, &self.host_executable)
            .env(CAPABILITIES_ENV, encode_hex(&self.capabilities))
            .arg0(format!("greenroom-admin {}", self.name))
            .stdin(Stdio::null());
        if let Some(path) = &self.log_file {
            cmd.env(process_role::LOG_PATH_ENV, path);
        }
        match &self.convention {
            Some(convention) => cmd.env(CONVENTION_ENV, encode_hex(convention)),
            None => cmd.env_remove(CONVENTION_ENV),
        };
        if let Some(filter) = crate::logging::effective_filter(self.log_filter.as_deref()) {
            cmd.env(process_role::LOG_ENV, filter);
        }
        cmd
    }
}
