//! [`ActorSystem`]: how a program outside any actor creates actors and talks to them.
//!
//! Starting a system starts an **admin** process (the current executable, re-run with
//! `GREENROOM_ROLE=admin`), which creates the runtime directory and spawns one host process
//! per actor. The `ActorSystem` value is itself an endpoint with an address and a socket, so
//! actors reply to it directly — the admin is never on the data path.
//!
//! `tell`, `ask` and `listen` take `&self` and may be called from several threads, but one
//! at a time: each call holds the system's endpoint until it returns (a `listen(60 s)` delays
//! another thread's `tell`). The next message to the client goes to the call that is
//! waiting, as with Thespian's `ActorSystem`.

use std::{
    path::{Path, PathBuf},
    process::Child,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use greenroom_protocol::{
    ActorState, Address, ChildSpec, FromAdmin, PeerRole, SupervisorSpec, ToAdmin, DEFAULT_MAX_FRAME,
};

use crate::{
    actor::{actor_type_name, Actor},
    admin,
    error::{Error, Result},
    logging,
    message::{is_system_tag, AnyMessage, Message, PoisonMessage},
    net::endpoint::{Endpoint, Inbound},
    process_role::Role,
    runtime_dir,
};

/// How long `create_actor` waits for the new actor to report ready.
const CREATE_TIMEOUT: Duration = Duration::from_secs(50);
/// How long `tell` waits for room when an actor is not keeping up.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `shutdown` waits for every actor to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings for [`ActorSystem::start_with`]. Every field has a default.
///
/// | setting | default |
/// |---|---|
/// | `runtime_base` | `$XDG_RUNTIME_DIR/greenroom`, else `/tmp/greenroom-<uid>` |
/// | `host_executable` | the current executable |
/// | `max_frame` | 16 MiB |
/// | `send_window` | 8 MiB of unprocessed messages per sender and target: beyond it `tell` waits (then fails), an actor's `send` fails with [`Error::Backpressure`] |
/// | `root_supervision` | [`SupervisorSpec::default`]: one-for-one, 5 restarts in 10 s |
/// | `log_level` / `log_filter` | `warn` (the `GREENROOM_LOG` environment variable, when set, takes precedence) |
/// | `log_file` | none: the admin and every actor log to this program's stderr |
#[derive(Debug, Clone)]
pub struct SystemConfig {
    runtime_base: Option<PathBuf>,
    host_executable: Option<PathBuf>,
    max_frame: u32,
    send_window: usize,
    root_supervision: SupervisorSpec,
    log_filter: Option<String>,
    log_file: Option<PathBuf>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            runtime_base: None,
            host_executable: None,
            max_frame: DEFAULT_MAX_FRAME,
            send_window: crate::process_role::DEFAULT_SEND_WINDOW,
            root_supervision: SupervisorSpec::default(),
            log_filter: None,
            log_file: None,
        }
    }
}

impl SystemConfig {
    /// Where the system's runtime directory is created (a fresh subdirectory per system).
    pub fn runtime_base(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runtime_base = Some(dir.into());
        self
    }

    /// The executable run for the admin and for every host. It must call
    /// `greenroom_host::init` (or `serve`) first thing in `main`.
    pub fn host_executable(mut self, exe: impl Into<PathBuf>) -> Self {
        self.host_executable = Some(exe.into());
        self
    }

    /// The largest message frame accepted, in bytes.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How many bytes of unprocessed messages one sender may have outstanding to one receiver
    /// (held while the receiver is slow, or down and restarting). Beyond it a client's `tell`
    /// waits up to 60 s and then fails, and an actor's `send` fails at once (an actor must
    /// never block), both with [`Error::Backpressure`].
    pub fn send_window(mut self, bytes: usize) -> Self {
        self.send_window = bytes;
        self
    }

    /// How the root supervisor restarts top-level actors. When it gives up on one (too many
    /// restarts), only that actor is gone; the others keep running.
    pub fn root_supervision(mut self, spec: SupervisorSpec) -> Self {
        self.root_supervision = spec;
        self
    }

    /// The least severe `tracing` level the admin and the actors log (default `warn`).
    /// Records below it are not even written by the actor's process. The `GREENROOM_LOG`
    /// environment variable, when set, overrides this (so an operator can turn logging up
    /// without a rebuild).
    pub fn log_level(mut self, level: tracing::Level) -> Self {
        self.log_filter = Some(level.as_str().to_ascii_lowercase());
        self
    }

    /// Like [`SystemConfig::log_level`], with a filter in `tracing-subscriber`'s `EnvFilter`
    /// syntax, e.g. `"warn,my_app=debug"`. An invalid filter makes
    /// [`ActorSystem::start_with`] fail with [`Error::InvalidSetting`].
    pub fn log_filter(mut self, spec: impl Into<String>) -> Self {
        self.log_filter = Some(spec.into());
        self
    }

    /// Where the system's log goes: this file, created if missing and appended to, instead of
    /// this program's stderr. Every record of the admin and of every actor (and anything else
    /// an actor's process writes to its stderr) is written there, each actor's lines tagged
    /// with its type, address and pid. This program's own logging is not affected.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }
}

/// What the admin reports about one actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    pub state: ActorState,
    /// The pid of the host process serving it now, if any.
    pub pid: Option<u32>,
    /// 1 for the first process, +1 per restart.
    pub incarnation: u32,
}

struct Client {
    endpoint: Endpoint,
    admin: Option<Child>,
    stopped: bool,
}

/// A running actor system, seen from a program outside the actors.
///
/// ```no_run
/// # use greenroom::{ActorSystem, ActorExitRequest};
/// # #[derive(Default)] struct Hello;
/// # impl greenroom::Actor for Hello {
/// #     fn receive(&mut self, _: &mut greenroom::Context<'_>, _: &greenroom::AnyMessage, _: greenroom::Address) -> greenroom::ActorResult { Ok(()) }
/// # }
/// # fn main() -> Result<(), greenroom::Error> {
/// let system = ActorSystem::start()?;
/// let hello = system.create_actor::<Hello>()?;
/// let reply: String = system.ask(hello, "hi".to_string(), std::time::Duration::from_secs(1))?;
/// system.tell(hello, ActorExitRequest)?;
/// system.shutdown()?;
/// # Ok(()) }
/// ```
pub struct ActorSystem {
    client: Mutex<Client>,
    address: Address,
    rundir: PathBuf,
    admin_pid: u32,
    send_window: usize,
}

impl ActorSystem {
    /// Starts a new actor system with default settings.
    pub fn start() -> Result<Self> {
        Self::start_with(SystemConfig::default())
    }

    /// Starts a new actor system.
    pub fn start_with(config: SystemConfig) -> Result<Self> {
        if Role::current() != Role::Client {
            return Err(Error::NotStartedByGreenroom(
                "ActorSystem::start called in an admin or host process: call greenroom_host::init(registry) first thing in main".into(),
            ));
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
            None => std::env::current_exe().map_err(Error::io("finding the current executable"))?,
        };
        if let Some(spec) = &config.log_filter {
            logging::check_filter(spec).map_err(|why| Error::InvalidSetting {
                setting: "log_filter",
                why,
            })?;
        }
        let log_file = match &config.log_file {
            Some(path) => Some(open_log_file(path)?),
            None => None,
        };
        let (mut child, control) = admin::start_admin(
            &exe,
            &rundir,
            config.max_frame,
            config.send_window,
            &config.root_supervision,
            admin::LogSettings {
                filter: logging::effective_filter(config.log_filter.as_deref()),
                file: log_file,
            },
        )?;
        let admin_pid = child.id();
        let mut endpoint = match Endpoint::new(control, PeerRole::Client, config.max_frame) {
            Ok(e) => e,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let welcome = endpoint.control_request(&ToAdmin::RegisterClient, Duration::from_secs(30), |f| {
            matches!(f, FromAdmin::ClientWelcome { .. })
        });
        let (address, max_frame) = match welcome {
            Ok(FromAdmin::ClientWelcome { address, max_frame, .. }) => (address, max_frame),
            Ok(other) => return Err(Error::AdminProtocol(format!("expected a welcome, got {other:?}"))),
            Err(e) => {
                // The admin logs its own reason on stderr; reap it so nothing is left behind.
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let path = runtime_dir::socket_path(&rundir, address);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(Error::io(format!("binding the client socket {}", path.display())))?;
        endpoint.attach(address, &rundir, max_frame, listener, None)?;
        Ok(ActorSystem {
            client: Mutex::new(Client {
                endpoint,
                admin: Some(child),
                stopped: false,
            }),
            address,
            rundir,
            admin_pid,
            send_window: config.send_window,
        })
    }

    /// This client's own address (the `sender` actors see).
    pub fn address(&self) -> Address {
        self.address
    }

    /// The system's runtime directory.
    pub fn runtime_dir(&self) -> &Path {
        &self.rundir
    }

    /// The admin process's pid.
    pub fn admin_pid(&self) -> u32 {
        self.admin_pid
    }

    fn lock(&self) -> Result<MutexGuard<'_, Client>> {
        let client = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if client.stopped {
            return Err(Error::AdminGone);
        }
        Ok(client)
    }

    /// Creates a top-level actor of type `A`, supervised by the root supervisor with the
    /// default [`ChildSpec`] (permanent).
    ///
    /// Returns once the actor's process is started; messages sent to it wait until it is
    /// up. The first create of a system waits until the host is ready, so an unregistered
    /// type fails here with [`Error::Create`]; after that, a constructor that panics shows as
    /// the actor being gone ([`Error::ActorGone`] with `StartFailed`).
    pub fn create_actor<A: Actor>(&self) -> Result<Address> {
        self.create_actor_named(actor_type_name::<A>(), ChildSpec::default())
    }

    /// Creates a top-level actor of type `A`, supervised as `spec` says.
    pub fn create_actor_with<A: Actor>(&self, spec: ChildSpec) -> Result<Address> {
        self.create_actor_named(actor_type_name::<A>(), spec)
    }

    /// The actor of type `A` known system-wide as `name`: the live actor holding the name
    /// (whatever its type) if there is one, else a new top-level actor that takes it. The
    /// name survives restarts and is freed when the actor is gone for good.
    pub fn create_actor_global<A: Actor>(&self, name: &str) -> Result<Address> {
        let mut client = self.lock()?;
        client
            .endpoint
            .create_actor(actor_type_name::<A>(), ChildSpec::default(), Some(name), CREATE_TIMEOUT)
    }

    /// Creates a top-level actor by registered type name (see [`ActorSystem::create_actor`]).
    pub fn create_actor_named(&self, type_name: &str, spec: ChildSpec) -> Result<Address> {
        let mut client = self.lock()?;
        client.endpoint.create_actor(type_name, spec, None, CREATE_TIMEOUT)
    }

    /// Sends `msg` to `to` without waiting for an answer.
    ///
    /// Fails at once if `to` is gone; waits (up to 60 s) if `to` has more than the send
    /// window of unprocessed messages from this client.
    pub fn tell<M: Message>(&self, to: Address, msg: M) -> Result<()> {
        let msg = AnyMessage::new(&msg)?;
        let mut client = self.lock()?;
        self.send_locked(&mut client, to, &msg)
    }

    /// Sends an already-encoded message (for example one received, to forward it).
    pub fn tell_any(&self, to: Address, msg: AnyMessage) -> Result<()> {
        let mut client = self.lock()?;
        self.send_locked(&mut client, to, &msg)
    }

    fn send_locked(&self, client: &mut Client, to: Address, msg: &AnyMessage) -> Result<()> {
        client.endpoint.send(to, msg)?;
        client.endpoint.flush();
        let deadline = Instant::now() + SEND_TIMEOUT;
        loop {
            let bytes = client.endpoint.unacked_bytes(to);
            if bytes <= self.send_window {
                return Ok(());
            }
            // Surface a lost peer now rather than waiting out the timeout.
            if let Some(lost) = client.endpoint.take_peer_lost(to).map(|c| c.into_error(to)) {
                return Err(lost);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Backpressure {
                    address: to,
                    bytes,
                    limit: self.send_window,
                });
            }
            client.endpoint.pump(Some(deadline - now))?;
        }
    }

    /// Sends `msg` to `to` and waits up to `timeout` for the next message to this client,
    /// decoded as `R`.
    ///
    /// Errors: [`Error::Timeout`]; [`Error::ActorGone`] or [`Error::UnknownActor`] at once if
    /// `to` is not there; [`Error::Poisoned`] if `to` failed on the message twice;
    /// [`Error::UnexpectedReply`] if the reply has another type.
    pub fn ask<M: Message, R: Message>(&self, to: Address, msg: M, timeout: Duration) -> Result<R> {
        let (sender, reply) = self.ask_any(to, msg, timeout)?;
        match reply.try_downcast::<R>()? {
            Some(r) => Ok(r),
            None => Err(Error::UnexpectedReply {
                address: sender,
                expected: R::type_tag(),
                got: reply.tag().to_owned(),
            }),
        }
    }

    /// Like [`ActorSystem::ask`], but returns the reply undecoded with its sender.
    pub fn ask_any<M: Message>(&self, to: Address, msg: M, timeout: Duration) -> Result<(Address, AnyMessage)> {
        let msg = AnyMessage::new(&msg)?;
        let mut client = self.lock()?;
        let deadline = deadline_after(timeout);
        self.send_locked(&mut client, to, &msg)?;
        match wait_for_message(&mut client.endpoint, Some(to), deadline)? {
            Some(reply) => Ok(reply),
            None => Err(Error::Timeout { address: to, timeout }),
        }
    }

    /// Waits up to `timeout` for the next message to this client, without sending.
    pub fn listen(&self, timeout: Duration) -> Result<Option<(Address, AnyMessage)>> {
        let mut client = self.lock()?;
        wait_for_message(&mut client.endpoint, None, deadline_after(timeout))
    }

    /// What the admin knows of the actor at `address`: its state and host pid.
    pub fn actor_info(&self, address: Address) -> Result<ActorInfo> {
        let mut client = self.lock()?;
        let (state, pid, incarnation) = client.endpoint.actor_status(address, Duration::from_secs(10))?;
        Ok(ActorInfo {
            state,
            pid,
            incarnation,
        })
    }

    /// Stops every actor (each gets `ActorExitRequest`; stragglers are killed after their
    /// supervisor's stop timeout, and anything left 10 s after shutdown began),
    /// stops the admin, and removes the runtime directory. A second call does nothing.
    pub fn shutdown(&self) -> Result<()> {
        let mut client = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if client.stopped {
            return Ok(());
        }
        client.stopped = true;
        let request = client.endpoint.next_request();
        let answer = client
            .endpoint
            .control_request(&ToAdmin::Shutdown { request }, SHUTDOWN_TIMEOUT, |f| {
                matches!(f, FromAdmin::ShutdownComplete { .. })
            });
        let _ = std::fs::remove_file(runtime_dir::socket_path(&self.rundir, self.address));
        if let Some(mut admin) = client.admin.take() {
            if answer.is_err() {
                let _ = admin.kill();
            }
            let _ = admin.wait();
        }
        // The admin removes the directory; make sure of it if the admin died early.
        runtime_dir::remove(&self.rundir);
        answer.map(|_| ())
    }
}

impl Drop for ActorSystem {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "actor system shutdown on drop did not complete cleanly");
        }
    }
}

/// Opens (or creates, readable by this user only) the file a system logs to, for appending.
fn open_log_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("opening the log file {}", path.display())))
}

/// `timeout` from now; a timeout too long for the clock (e.g. `Duration::MAX`) waits as good
/// as forever instead of overflowing.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + greenroom_protocol::supervision::LONGEST)
}

/// The client's receive loop: the next message for the caller, an error if `target` is lost
/// or the admin is gone, or `None` at the deadline.
fn wait_for_message(
    endpoint: &mut Endpoint,
    target: Option<Address>,
    deadline: Instant,
) -> Result<Option<(Address, AnyMessage)>> {
    loop {
        while let Some(inbound) = endpoint.next_inbound() {
            match inbound {
                Inbound::Message { sender, msg, receipt } => {
                    endpoint.processed(receipt);
                    if let Some(poison) = msg.try_downcast::<PoisonMessage>()? {
                        return Err(Error::Poisoned {
                            address: sender,
                            message: poison.message,
                            details: poison.details,
                        });
                    }
                    if is_system_tag(msg.tag()) {
                        continue;
                    }
                    return Ok(Some((sender, msg)));
                }
                Inbound::PeerLost {
                    peer,
                    cause,
                    undelivered,
                } => {
                    if Some(peer) == target {
                        return Err(cause.into_error(peer));
                    }
                    endpoint.dead_letters(peer, undelivered);
                }
                Inbound::Control(frame) => tracing::debug!(?frame, "unexpected control frame for a client"),
                Inbound::AdminLost => return Err(Error::AdminGone),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        endpoint.pump(Some(deadline - now))?;
    }
}
