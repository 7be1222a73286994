//! The process base: the client side of a system whose actors each run in their own OS
//! process.
//!
//! Starting it starts an **admin** process (the host executable, re-run with
//! `GREENROOM_ROLE=admin`), which creates the runtime directory and spawns one host process
//! per actor. The client is itself an endpoint with an address and a socket, so actors reply
//! to it directly — the admin is never on the data path.
//!
//! ## Several threads, one client
//! Calls take `&self` and may come from several threads at once. The endpoint is used by one
//! thread at a time, but no call holds it while it waits:
//!
//! ```text
//! waiting threads ── one of them pumps the endpoint (outside the lock) ──▶ what arrives is
//!                    sorted into `Shared`: answers by request id, plain messages in the
//!                    mailbox ──▶ every waiter checks its own slot (condvar)
//! a thread that wants to send ── wakes the pump (mio Waker), takes the endpoint, sends,
//!                                 gives it back
//! ```
//!
//! So a `tell` never waits behind another thread's `request`, `ask` or `listen`, and each
//! request gets its own answer. A `tell` waiting for room in a full send window shares what
//! arrives and hands the endpoint over between its waits; a create and the other admin
//! requests hold it while they wait for the admin (milliseconds).

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Child,
    sync::{
        atomic::{AtomicU64, Ordering},
        Condvar, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use greenroom_protocol::{
    Address, Capabilities, ChildSpec, Correlation, FromAdmin, NodeId, Payload, PeerRole, SystemDescription, ToAdmin,
};
use rustc_hash::FxHashMap as HashMap;

use super::{deadline_after, for_client, ActorInfo, SystemConfig};
use crate::{
    admin,
    error::{Error, Result},
    logging,
    message::AnyMessage,
    net::endpoint::{Endpoint, Inbound, LostCause, SentId},
    process_role::Role,
    runtime_dir,
};

/// How long `create_actor` waits for the new actor to report ready.
const CREATE_TIMEOUT: Duration = Duration::from_secs(50);
/// How long `tell` waits for room when an actor is not keeping up.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closing client waits to write its last acknowledgements.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// How long a closing client waits for the admin's word on a connection it lost (across
/// members the answer may take the other admin's 5 s), so that what the connection held is
/// delivered or handed to the dead-letter path rather than dropped with the client.
const CLOSE_SETTLE: Duration = Duration::from_secs(6);
/// How long `shutdown` waits for every actor to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long attaching to a running admin (`ActorSystem::connect`, `connect_dir`, a private
/// client, every CLI command) waits for it to accept the connection and welcome the client:
/// a running admin answers in milliseconds, so one that has not within this is stopped,
/// hung or swamped, and is reported ([`Error::AdminNotAnswering`]) rather than waited on.
pub(crate) const ATTACH_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the program that starts a system waits for its new admin's welcome (the admin
/// process is being started: a loaded machine may take a while).
const START_WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a description of the system (`describe`, `greenroom status`) may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer a request or an ask waits for: `None` until it comes (or its call fails).
type Answer = Option<Result<(Address, AnyMessage)>>;

/// How many plain messages a client keeps for `listen` and `ask`: more, while nobody takes
/// them, go to the dead-letter path (with a warning) rather than grow the client's memory
/// without bound.
const MAILBOX_LIMIT: usize = 65_536;

/// The client's state shared by its threads, behind one mutex.
struct Shared {
    /// `None` while a thread uses it outside the lock (see the module docs), and for good
    /// once the client is closed.
    endpoint: Option<Box<Endpoint>>,
    closed: bool,
    /// The admin process, for the client that started it (the owner).
    admin: Option<Child>,
    /// Threads waiting for the endpoint: a thread pumping it gives it up at once.
    wanted: usize,
    /// Threads asleep on `changed` (the others need no wake-up: a lone caller's calls cost
    /// no futex call).
    sleepers: usize,
    /// Plain messages for `listen` and `ask`, oldest first. They are acknowledged when
    /// they arrive (answers taken out of order would otherwise hold back the cumulative
    /// acks of everything behind them); those still here when the client closes go to the
    /// dead-letter path.
    mailbox: VecDeque<(Address, AnyMessage)>,
    /// Plain messages that found the mailbox full (for the warning's count).
    overflowed: u64,
    /// The answers pending requests and asks wait for, by request id.
    answers: HashMap<u64, Answer>,
    /// Sends a `tell` waits on for room, and why each came back, once it did.
    watched: HashMap<SentId, Option<LostCause>>,
    /// The control connection to the admin ended.
    admin_lost: bool,
}

/// The endpoint, taken by one thread: given back (with what arrived sorted) when dropped,
/// also if the thread panics, so that the client's other threads never wait for it forever.
struct Held<'a> {
    client: &'a ProcessSystem,
    endpoint: Option<Box<Endpoint>>,
}

impl Held<'_> {
    /// Gives the endpoint back under `shared`, the lock the caller already holds.
    fn give_back(mut self, shared: MutexGuard<'_, Shared>) {
        if let Some(endpoint) = self.endpoint.take() {
            self.client.put_back(shared, endpoint);
        }
    }
}

impl std::ops::Deref for Held<'_> {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        self.endpoint
            .as_ref()
            .expect("a Held owns its endpoint until it is given back")
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Endpoint {
        self.endpoint
            .as_mut()
            .expect("a Held owns its endpoint until it is given back")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            self.client.put_back(self.client.lock(), endpoint);
        }
    }
}

/// A client of the process base: an endpoint with its own address, talking to the admin
/// over a control connection. The owner started the admin and shuts it down; a private
/// client connected later through `admin.sock` and only goes away itself.
pub(crate) struct ProcessSystem {
    shared: Mutex<Shared>,
    /// Signalled whenever the endpoint is given back or something arrived.
    changed: Condvar,
    /// Makes a pump in progress return, for a thread that wants the endpoint.
    waker: mio::Waker,
    next_request: AtomicU64,
    address: Address,
    rundir: PathBuf,
    admin_pid: u32,
    max_frame: u32,
    send_window: usize,
    max_pending: usize,
}

impl ProcessSystem {
    /// Starts an admin and registers with it as its owner.
    pub(crate) fn start(config: &SystemConfig) -> Result<Self> {
        if Role::current() != Role::Client {
            return Err(Error::NotStartedByGreenroom(
                "ActorSystem::start called in an admin or host process: call greenroom_host::init(registry) first thing in main \
                 (in a test binary, invoke greenroom_host::test_support!(registry))"
                    .into(),
            ));
        }
        // A convention's secret file is checked here, so that a missing or exposed one fails
        // the start with its fix rather than as an admin that exited.
        if let Some(convention) = &config.convention {
            convention.check()?;
        }
        static SYSTEMS: AtomicU64 = AtomicU64::new(0);
        // Each actor this client talks to costs it up to two sockets.
        crate::process_role::raise_open_files_limit();
        let base = config.runtime_base.clone().unwrap_or_else(runtime_dir::default_base);
        runtime_dir::reclaim_stale(&base);
        let rundir = base.join(runtime_dir::system_dir_name(
            std::process::id(),
            SYSTEMS.fetch_add(1, Ordering::Relaxed),
        ));
        let exe = match &config.host_executable {
            Some(p) => p.clone(),
            None => {
                crate::process_role::check_own_entry()?;
                std::env::current_exe().map_err(Error::io("finding the current executable"))?
            }
        };
        if let Some(spec) = &config.log_filter {
            logging::check_filter(spec).map_err(|why| Error::InvalidSetting {
                setting: "log_filter",
                why,
            })?;
        }
        let log_file = match &config.log_file {
            Some(path) => Some(logging::open_log_file(path)?),
            None => None,
        };
        let settings = admin::AdminSettings {
            convention: config.convention.as_ref(),
            max_frame: config.max_frame,
            send_window: config.send_window,
            max_pending: config.max_pending,
            root_spec: &config.root_supervision,
            capabilities: &config.capabilities,
            log: admin::LogSettings {
                filter: logging::effective_filter(config.log_filter.as_deref()),
                file: log_file,
                path: config.log_file.clone(),
            },
        };
        let (mut child, control) = admin::start_admin(&exe, &rundir, settings)?;
        let admin_pid = child.id();
        let registered = register_client(control, config.max_frame, &rundir, START_WELCOME_TIMEOUT).map(
            |(mut endpoint, address)| {
                endpoint.set_max_pending(config.max_pending);
                (endpoint, address)
            },
        );
        let registered = registered.and_then(|(endpoint, address)| Ok((endpoint.waker()?, endpoint, address)));
        let (waker, endpoint, address) = match registered {
            Ok(r) => r,
            Err(e) => {
                // The admin logs its own reason on stderr; stop and reap it so that nothing
                // is left behind. One that exited by itself is named with its status.
                let e = match admin::exited_early(&mut child) {
                    Some(status) => Error::AdminExited { exe, status },
                    None => e,
                };
                let _ = child.kill();
                let _ = child.wait();
                runtime_dir::remove(&rundir);
                return Err(e);
            }
        };
        let limits = (config.max_frame, config.send_window, config.max_pending);
        Ok(ProcessSystem::new(
            (endpoint, waker),
            Some(child),
            address,
            &rundir,
            admin_pid,
            limits,
        ))
    }

    /// `limits`: the frame limit, the send window and the bound on pending connections.
    fn new(
        (endpoint, waker): (Endpoint, mio::Waker),
        admin: Option<Child>,
        address: Address,
        rundir: &Path,
        admin_pid: u32,
        limits: (u32, usize, usize),
    ) -> Self {
        let (max_frame, send_window, max_pending) = limits;
        ProcessSystem {
            shared: Mutex::new(Shared {
                endpoint: Some(Box::new(endpoint)),
                closed: false,
                admin,
                wanted: 0,
                sleepers: 0,
                mailbox: VecDeque::new(),
                overflowed: 0,
                answers: HashMap::default(),
                watched: HashMap::default(),
                admin_lost: false,
            }),
            changed: Condvar::new(),
            waker,
            next_request: AtomicU64::new(1),
            address,
            rundir: rundir.to_path_buf(),
            admin_pid,
            max_frame,
            send_window,
            max_pending,
        }
    }

    /// A new client of the same admin with its own address (a private client).
    pub(crate) fn connect_private(&self) -> Result<Self> {
        Self::attach(&self.rundir, self.max_frame, self.send_window, self.max_pending)
    }

    /// A client of the admin already running in `rundir`: a private client of its owner, or
    /// a program attaching to a system started with `greenroom start`.
    pub(crate) fn attach(rundir: &Path, max_frame: u32, send_window: usize, max_pending: usize) -> Result<Self> {
        let path = runtime_dir::admin_socket_path(rundir);
        let started = Instant::now();
        let control = crate::net::peer::connect_within(&path, ATTACH_TIMEOUT).map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Error::admin_not_answering(None, ATTACH_TIMEOUT)
            } else {
                Error::NoSuchSystem {
                    runtime_dir: rundir.to_path_buf(),
                    why: e.to_string(),
                }
            }
        })?;
        // The kernel's word for who answered, the same check the admin makes of us.
        let admin = crate::net::peer::check_same_user(&control).map_err(|why| Error::NoSuchSystem {
            runtime_dir: rundir.to_path_buf(),
            why,
        })?;
        let left = ATTACH_TIMEOUT.saturating_sub(started.elapsed());
        let (mut endpoint, address) = register_client(control, max_frame, rundir, left).map_err(|e| match e {
            // Named by the whole wait, not by what was left of it after the connect.
            Error::AdminNotAnswering { pid, state, .. } => Error::AdminNotAnswering {
                pid,
                waited: ATTACH_TIMEOUT,
                state,
            },
            other => other,
        })?;
        endpoint.set_max_pending(max_pending);
        let waker = endpoint.waker()?;
        let limits = (max_frame, send_window, max_pending);
        Ok(ProcessSystem::new(
            (endpoint, waker),
            None,
            address,
            rundir,
            admin.pid as u32,
            limits,
        ))
    }

    /// What the admin says of the system and every actor in it.
    pub(crate) fn describe(&self, include_gone: bool) -> Result<SystemDescription> {
        let answer = self.with_endpoint(|endpoint| {
            let request = endpoint.next_request();
            endpoint.control_request(
                &ToAdmin::Describe { request, include_gone },
                DESCRIBE_TIMEOUT,
                |f| matches!(f, FromAdmin::Description { request: r, .. } if *r == request),
            )
        })?;
        match answer {
            FromAdmin::Description { system, .. } => Ok(*system),
            other => Err(Error::AdminProtocol(format!("expected a description, got {other:?}"))),
        }
    }

    pub(crate) fn address(&self) -> Address {
        self.address
    }

    pub(crate) fn runtime_dir(&self) -> &Path {
        &self.rundir
    }

    pub(crate) fn admin_pid(&self) -> u32 {
        self.admin_pid
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the endpoint for this thread, first making a thread that pumps it give it up;
    /// `prepare` runs under the same lock (registering an answer slot costs no extra lock).
    /// `None` if `deadline` passes first.
    fn take_endpoint(&self, deadline: Option<Instant>, prepare: impl FnOnce(&mut Shared)) -> Result<Option<Held<'_>>> {
        let mut shared = self.lock();
        loop {
            if shared.closed {
                return Err(Error::SystemStopped);
            }
            if let Some(endpoint) = shared.endpoint.take() {
                prepare(&mut shared);
                return Ok(Some(Held {
                    client: self,
                    endpoint: Some(endpoint),
                }));
            }
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            shared.wanted += 1;
            shared.sleepers += 1;
            let _ = self.waker.wake();
            shared = match left {
                Some(left) => {
                    self.changed
                        .wait_timeout(shared, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.changed.wait(shared).unwrap_or_else(|p| p.into_inner()),
            };
            shared.sleepers -= 1;
            shared.wanted -= 1;
        }
    }

    /// Gives the endpoint back, sorting what arrived meanwhile into the shared state, and
    /// wakes the threads asleep on `changed`.
    fn put_back(&self, mut shared: MutexGuard<'_, Shared>, mut endpoint: Box<Endpoint>) {
        shared.sort_arrivals(&mut endpoint, self.address);
        shared.endpoint = Some(endpoint);
        let asleep = shared.sleepers > 0;
        drop(shared);
        if asleep {
            self.changed.notify_all();
        }
    }

    /// Runs `f` with the endpoint, taken for this thread.
    fn with_endpoint<T>(&self, f: impl FnOnce(&mut Endpoint) -> Result<T>) -> Result<T> {
        let mut held = self.take_endpoint(None, |_| {})?.ok_or(Error::SystemStopped)?;
        f(&mut held)
    }

    /// Waits until `check` finds what this thread waits for in the shared state, or until
    /// `deadline` (`None`). While no other thread pumps the endpoint, this one does, outside
    /// the lock (starting with `held`, the endpoint this thread already has), and gives it
    /// up at once to a thread that wants it.
    fn wait_for<'a, T>(
        &'a self,
        deadline: Instant,
        mut held: Option<Held<'a>>,
        mut check: impl FnMut(&mut Shared) -> Option<T>,
    ) -> Result<Option<T>> {
        loop {
            let mut shared = match held.take() {
                None => self.lock(),
                Some(mut endpoint) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let pumped = endpoint.pump(Some(left));
                    let mut shared = self.lock();
                    if let Some(inner) = endpoint.endpoint.as_mut() {
                        shared.sort_arrivals(inner, self.address);
                    }
                    if pumped.is_ok() && shared.wanted == 0 && Instant::now() < deadline {
                        // Others may wait for what arrived; the endpoint stays this thread's
                        // unless what it waits for came.
                        if shared.sleepers > 0 {
                            self.changed.notify_all();
                        }
                        if let Some(found) = check(&mut shared) {
                            endpoint.give_back(shared);
                            return Ok(Some(found));
                        }
                        held = Some(endpoint);
                        continue;
                    }
                    endpoint.give_back(shared);
                    pumped?;
                    self.lock()
                }
            };
            if let Some(found) = check(&mut shared) {
                return Ok(Some(found));
            }
            if shared.closed {
                return Err(Error::SystemStopped);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if shared.wanted == 0 {
                if let Some(endpoint) = shared.endpoint.take() {
                    held = Some(Held {
                        client: self,
                        endpoint: Some(endpoint),
                    });
                    continue;
                }
            }
            shared.sleepers += 1;
            let (mut shared, _) = self
                .changed
                .wait_timeout(shared, deadline - now)
                .unwrap_or_else(|p| p.into_inner());
            shared.sleepers -= 1;
        }
    }

    pub(crate) fn create_actor(
        &self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        self.with_endpoint(|endpoint| {
            endpoint.create_actor(type_name, spec, global_name, requirements, None, CREATE_TIMEOUT)
        })
    }

    /// Creates a top-level actor on the convention's member of node `node`.
    pub(crate) fn create_actor_on(
        &self,
        node: NodeId,
        type_name: &str,
        spec: ChildSpec,
        requirements: &Capabilities,
    ) -> Result<Address> {
        self.with_endpoint(|endpoint| {
            endpoint.create_actor(type_name, spec, None, requirements, Some(node), CREATE_TIMEOUT)
        })
    }

    /// The other members of the convention and their capabilities.
    pub(crate) fn convention_members(&self) -> Result<Vec<greenroom_protocol::ConventionMember>> {
        self.with_endpoint(|endpoint| endpoint.convention_members(CREATE_TIMEOUT))
    }

    /// Sends `msg`; waits (up to 60 s) while `to` has more than the send window of
    /// unprocessed messages from this client.
    pub(crate) fn tell(&self, to: Address, msg: &AnyMessage) -> Result<()> {
        let held = self.take_endpoint(None, |_| {})?.ok_or(Error::SystemStopped)?;
        self.send(held, to, msg, Correlation::None).map(drop)
    }

    /// Sends `msg` with `correlation` and waits while `to` has more than the send window of
    /// this client's messages: which send it was, and the endpoint. A message that cannot
    /// be sent because `to` is gone goes to the dead-letter path (and the call fails); one
    /// that comes back while the call waits for room fails it too. While it waits for room
    /// it shares what arrives and lets another thread that wants the endpoint have it.
    fn send<'a>(
        &'a self,
        mut held: Held<'a>,
        to: Address,
        msg: &AnyMessage,
        correlation: Correlation,
    ) -> Result<(SentId, Held<'a>)> {
        let sent = held.send_live(to, msg, correlation, None)?;
        held.flush();
        // A lost connection waits for the admin's word on its receiver, which only a pump
        // reads: without one, a client that only tells would keep its messages to that
        // receiver unsent (and anything the loss handed back unsorted) until its window
        // filled. One poll that does not block, only then.
        if held.is_settling() {
            let _ = held.pump(Some(Duration::ZERO));
            held.flush();
        }
        if let Some(cause) = held.returned_send(sent) {
            return Err(cause.into_error(to));
        }
        if held.unacked_bytes(to) <= self.send_window {
            return Ok((sent, held));
        }
        // Full: wait for room, without keeping the client to this thread.
        let deadline = Instant::now() + SEND_TIMEOUT;
        self.lock().watched.insert(sent, None);
        let outcome = loop {
            let bytes = held.unacked_bytes(to);
            if bytes <= self.send_window {
                break Ok(held);
            }
            let backpressure = Error::Backpressure {
                address: to,
                bytes,
                limit: self.send_window,
            };
            let now = Instant::now();
            if now >= deadline {
                break Err(backpressure);
            }
            if let Err(e) = held.pump(Some(deadline - now)) {
                break Err(e);
            }
            let mut shared = self.lock();
            if let Some(inner) = held.endpoint.as_mut() {
                shared.sort_arrivals(inner, self.address);
            }
            if let Some(Some(cause)) = shared.watched.get(&sent) {
                break Err(cause.clone().into_error(to));
            }
            if shared.wanted > 0 {
                held.give_back(shared);
                held = match self.take_endpoint(Some(deadline), |_| {}) {
                    Ok(Some(held)) => held,
                    Ok(None) => break Err(backpressure),
                    Err(e) => break Err(e),
                };
            } else if shared.sleepers > 0 {
                self.changed.notify_all();
            }
        };
        // (Its own statement: the lock is released before a `Held` may give itself back.)
        let came_back = self.lock().watched.remove(&sent).flatten();
        match came_back {
            Some(cause) => Err(cause.into_error(to)),
            None => outcome.map(|held| (sent, held)),
        }
    }

    /// Sends `msg` as a request (or an ask), its answer's slot registered first, and keeps
    /// the endpoint for the wait that follows: the request id and the endpoint (`None` if
    /// the endpoint could not be had before `deadline`).
    fn send_awaiting(
        &self,
        to: Address,
        msg: &AnyMessage,
        ask: bool,
        deadline: Instant,
    ) -> Result<(u64, Option<Held<'_>>)> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let correlation = if ask {
            Correlation::Ask(id)
        } else {
            Correlation::Request(id)
        };
        let held = self.take_endpoint(Some(deadline), |shared| {
            shared.answers.insert(id, None);
        })?;
        let Some(held) = held else {
            return Ok((id, None));
        };
        match self.send(held, to, msg, correlation) {
            Ok((_, held)) => Ok((id, Some(held))),
            Err(e) => {
                self.forget_answer(id);
                Err(e)
            }
        }
    }

    /// Forgets the answer slot of request `id` once its call is over without taking it (a
    /// later answer is then a dead letter).
    fn forget_answer(&self, id: u64) {
        self.lock().answers.remove(&id);
    }

    /// Sends `msg` as a request and waits for its own answer (undecoded): `None` at the
    /// deadline, after which a late answer is a dead letter.
    pub(crate) fn request(
        &self,
        to: Address,
        msg: &AnyMessage,
        timeout: Duration,
    ) -> Result<Option<(Address, AnyMessage)>> {
        let deadline = deadline_after(timeout);
        let (id, held) = self.send_awaiting(to, msg, false, deadline)?;
        if held.is_none() {
            self.forget_answer(id);
            return Ok(None);
        }
        let answer = self.wait_for(deadline, held, |shared| shared.take_answer(id));
        if !matches!(answer, Ok(Some(_))) {
            self.forget_answer(id);
        }
        answer?.transpose()
    }

    /// Sends `msg` and waits for its own answer or the next plain message to this client
    /// (Thespian's `ask`).
    pub(crate) fn ask(&self, to: Address, msg: &AnyMessage, timeout: Duration) -> Result<(Address, AnyMessage)> {
        let deadline = deadline_after(timeout);
        let (id, held) = self.send_awaiting(to, msg, true, deadline)?;
        let mut own = false;
        let answer = match held {
            None => Ok(None),
            Some(held) => self.wait_for(deadline, Some(held), |shared| match shared.take_answer(id) {
                Some(answer) => {
                    own = true;
                    Some(answer.and_then(|(sender, msg)| for_client(sender, msg)))
                }
                None => shared.take_message(),
            }),
        };
        if !own {
            self.forget_answer(id);
        }
        match answer?.transpose()? {
            Some(Some(delivered)) => Ok(delivered),
            // Its own answer was a runtime notice, which is not for clients: as a timeout.
            Some(None) | None => Err(Error::Timeout { address: to, timeout }),
        }
    }

    pub(crate) fn listen(&self, timeout: Duration) -> Result<Option<(Address, AnyMessage)>> {
        let answer = self.wait_for(deadline_after(timeout), None, Shared::take_message)?;
        Ok(answer.transpose()?.flatten())
    }

    /// The capabilities as the admin last said, after reading whatever it has sent.
    pub(crate) fn capabilities(&self) -> Result<Capabilities> {
        self.with_endpoint(|endpoint| {
            endpoint.pump(Some(Duration::ZERO))?;
            Ok(endpoint.capabilities().clone())
        })
    }

    pub(crate) fn update_capability(&self, key: &str, value: Option<Payload>) -> Result<()> {
        self.with_endpoint(|endpoint| endpoint.update_capability(key, value))
    }

    pub(crate) fn actor_info(&self, address: Address) -> Result<ActorInfo> {
        let (state, pid, incarnation) =
            self.with_endpoint(|endpoint| endpoint.actor_status(address, Duration::from_secs(10)))?;
        Ok(ActorInfo {
            state,
            pid,
            incarnation,
        })
    }

    /// The owner: stops every actor and the admin, and removes the runtime directory. Any
    /// other client: closes (its address is then gone), the system runs on.
    pub(crate) fn shutdown(&self) -> Result<()> {
        let owner = self.lock().admin.is_some();
        self.finish(owner)
    }

    /// Stops every actor and the admin, from any client.
    pub(crate) fn stop_system(&self) -> Result<()> {
        self.finish(true)
    }

    /// Closes this client — its control connection, its socket, its connections — first
    /// stopping the whole system if `stop_admin`. A second call does nothing.
    fn finish(&self, stop_admin: bool) -> Result<()> {
        let mut endpoint = match self.take_endpoint(None, |_| {}) {
            Ok(Some(mut held)) => match held.endpoint.take() {
                Some(endpoint) => endpoint,
                None => return Ok(()),
            },
            _ => return Ok(()), // closed already
        };
        let admin = {
            let mut shared = self.lock();
            shared.closed = true;
            shared.admin.take()
        };
        self.changed.notify_all();
        self.dead_letter_untaken(&mut endpoint);
        let _ = std::fs::remove_file(runtime_dir::socket_path(&self.rundir, self.address));
        if !stop_admin {
            // Acknowledge what this client took before it goes, or its senders would count
            // those messages as never delivered (acks are batched). Dropping the endpoint then
            // closes the control connection, which unregisters the client.
            endpoint.flush_acks();
            endpoint.flush_blocking(Instant::now() + CLOSE_FLUSH);
            self.hand_back_before_closing(&mut endpoint);
            return Ok(());
        }
        let request = endpoint.next_request();
        let answer = endpoint.control_request(&ToAdmin::Shutdown { request }, SHUTDOWN_TIMEOUT, |f| {
            matches!(f, FromAdmin::ShutdownComplete { .. })
        });
        if let Some(mut admin) = admin {
            if answer.is_err() {
                let _ = admin.kill();
            }
            let _ = admin.wait();
            // The admin removes the directory; make sure of it if the admin died early.
            runtime_dir::remove(&self.rundir);
        }
        answer.map(|_| ())
    }
}

impl ProcessSystem {
    /// A closing client's: sorts what reached the endpoint, and hands what reached this
    /// client and was never taken to the dead-letter path (not for silence). How many
    /// arrivals were sorted, and how many messages handed on.
    fn dead_letter_untaken(&self, endpoint: &mut Endpoint) -> (usize, usize) {
        let (sorted, untaken) = {
            let mut shared = self.lock();
            let sorted = shared.sort_arrivals(endpoint, self.address);
            (sorted, std::mem::take(&mut shared.mailbox))
        };
        let handed = untaken.len();
        if handed > 0 {
            tracing::debug!(client = %self.address, count = handed, "closing with untaken messages: dead letters");
        }
        for (sender, msg) in untaken {
            endpoint.dead_letters_from(sender, self.address, vec![msg]);
        }
        (sorted, handed)
    }

    /// A closing client's last word on what it sent: a connection it lost whose receiver's
    /// fate the admin has not yet told is waited for (up to [`CLOSE_SETTLE`]), and what
    /// comes back meanwhile (a settle answered while the last messages were flushed) goes to
    /// the dead-letter path like everything else returned, not away with the client.
    fn hand_back_before_closing(&self, endpoint: &mut Endpoint) {
        let deadline = Instant::now() + CLOSE_SETTLE;
        loop {
            while endpoint.is_settling() && Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if endpoint.pump(Some(left.min(Duration::from_millis(50)))).is_err() {
                    break;
                }
                endpoint.flush();
            }
            let (sorted, untaken) = self.dead_letter_untaken(endpoint);
            // Writes the dead letters, and what a settled connection sends again.
            endpoint.flush_blocking(Instant::now() + CLOSE_FLUSH);
            let calm = sorted == 0 && untaken == 0 && !endpoint.is_settling();
            if calm || Instant::now() >= deadline {
                return;
            }
        }
    }
}

impl Shared {
    /// Sorts what reached the endpoint: answers into the slots their calls wait on (or the
    /// dead-letter path, if no call waits any more), plain messages into the mailbox, and
    /// messages that came back to the calls they fail and the dead-letter path.
    fn sort_arrivals(&mut self, endpoint: &mut Endpoint, me: Address) -> usize {
        let mut sorted = 0;
        while let Some(inbound) = endpoint.next_inbound() {
            sorted += 1;
            match inbound {
                Inbound::Message {
                    sender,
                    msg,
                    receipt,
                    correlation,
                } => {
                    endpoint.processed(receipt);
                    match correlation {
                        Correlation::Reply(id) => match self.answers.get_mut(&id) {
                            Some(slot @ None) => *slot = Some(Ok((sender, msg))),
                            _ => {
                                tracing::debug!(%sender, request = id, message_type = msg.tag(),
                                    "an answer whose caller gave up: a dead letter");
                                endpoint.dead_letters_from(sender, me, vec![msg]);
                            }
                        },
                        _ if self.mailbox.len() < MAILBOX_LIMIT => self.mailbox.push_back((sender, msg)),
                        _ => {
                            self.overflowed += 1;
                            if self.overflowed.is_power_of_two() {
                                tracing::warn!(client = %me, limit = MAILBOX_LIMIT, overflowed = self.overflowed,
                                    "the client's mailbox is full (nobody calls listen or ask): further plain messages are dead letters");
                            }
                            endpoint.dead_letters_from(sender, me, vec![msg]);
                        }
                    }
                }
                Inbound::PeerLost { peer, cause, returned } => {
                    let mut messages = Vec::with_capacity(returned.len());
                    for back in returned {
                        if let Some(Some(slot @ None)) =
                            back.correlation.request_id().map(|id| self.answers.get_mut(&id))
                        {
                            *slot = Some(Err(cause.clone().into_error(peer)));
                        }
                        if let Some(watched) = self.watched.get_mut(&back.id) {
                            *watched = Some(cause.clone());
                        }
                        messages.push(back.msg);
                    }
                    endpoint.dead_letters(peer, messages);
                }
                Inbound::Control(frame) => tracing::debug!(?frame, "unexpected control frame for a client"),
                Inbound::AdminLost => {
                    self.admin_lost = true;
                    for slot in self.answers.values_mut().filter(|slot| slot.is_none()) {
                        *slot = Some(Err(Error::AdminGone));
                    }
                }
            }
        }
        sorted
    }

    /// The answer to request `id`, once it came.
    fn take_answer(&mut self, id: u64) -> Option<Result<(Address, AnyMessage)>> {
        match self.answers.get(&id) {
            Some(Some(_)) => self.answers.remove(&id).flatten(),
            Some(None) => None,
            None => Some(Err(Error::SystemStopped)),
        }
    }

    /// The next plain message for `listen` or `ask` (`Some(Ok(None))`: only runtime
    /// notices, which are not for clients, were there), or the admin's loss.
    fn take_message(&mut self) -> Option<Result<Option<(Address, AnyMessage)>>> {
        while let Some((sender, msg)) = self.mailbox.pop_front() {
            match for_client(sender, msg) {
                Ok(None) => continue,
                other => return Some(other),
            }
        }
        self.admin_lost.then_some(Err(Error::AdminGone))
    }
}

impl Drop for ProcessSystem {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "actor system shutdown on drop did not complete cleanly");
        }
    }
}

/// Handshakes with the admin over `control`, registers as a client, and binds the client's
/// own socket: the endpoint and its address.
fn register_client(
    control: std::os::unix::net::UnixStream,
    max_frame: u32,
    rundir: &Path,
    timeout: Duration,
) -> Result<(Endpoint, Address)> {
    let mut endpoint = Endpoint::new(control, PeerRole::Client, max_frame)?;
    let welcome = endpoint.control_request(&ToAdmin::RegisterClient, timeout, |f| {
        matches!(f, FromAdmin::ClientWelcome { .. })
    })?;
    let FromAdmin::ClientWelcome {
        address,
        max_frame,
        capabilities,
        ..
    } = welcome
    else {
        return Err(Error::AdminProtocol(format!("expected a welcome, got {welcome:?}")));
    };
    endpoint.set_capabilities(capabilities);
    let path = runtime_dir::socket_path(rundir, address);
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(Error::io(format!("binding the client socket {}", path.display())))?;
    endpoint.attach(address, rundir, max_frame, listener, None)?;
    Ok((endpoint, address))
}
