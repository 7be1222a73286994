//! [`ActorSystem`]: how a program outside any actor creates actors and talks to them, on
//! either of the two bases that run the same actor code.
//!
//! | base | where actors run | for |
//! |---|---|---|
//! | [`Base::Processes`] (default) | each in its own OS process, supervised by an admin process (`system/process.rs`) | production: fault isolation, restarts |
//! | [`Base::Simple`] | in the calling process, one `receive` at a time, in the order messages were sent, with a virtual clock (`system/simple.rs`) | deterministic tests and debugging |
//!
//! Switching base is one setting; actors, messages and the calls below are the same:
//!
//! ```
//! use greenroom::{dispatch, ActorResult, ActorSystem, Address, Base, Context, Handle, Registry, Request, SystemConfig};
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Hi;
//! impl Request for Hi {
//!     type Reply = String;
//! }
//!
//! #[derive(Default)]
//! struct Hello;
//! impl Handle<Hi> for Hello {
//!     type Reply = String;
//!     fn handle(&mut self, _: &mut Context<'_>, _: Hi, _: Address) -> ActorResult<String> {
//!         Ok("Hello, World!".to_string())
//!     }
//! }
//! dispatch!(Hello { Hi });
//!
//! let config = SystemConfig::default()
//!     .base(Base::Simple)
//!     .registry(Registry::new().register::<Hello>());
//! let system = ActorSystem::start_with(config)?;
//! let hello = system.create_actor::<Hello>()?;
//! assert_eq!(system.request(hello, Hi, Duration::from_secs(1))?, "Hello, World!");
//! # Ok::<(), greenroom::Error>(())
//! ```

mod process;
mod simple;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use greenroom_protocol::{
    ActorState, Address, Capabilities, ChildSpec, SupervisorSpec, SystemDescription, DEFAULT_MAX_FRAME,
};

use crate::{
    actor::{check_capabilities, create_on_a_member, created_type_name, no_compatible_system, Actor, Registry},
    actor_ref::{ActorRef, Answers, Recipient},
    error::{Error, Result},
    message::{is_system_tag, AnyMessage, Message, PoisonMessage},
    request::Request,
};

pub use simple::Delivery;

/// Which base runs the actors. See the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Base {
    /// One OS process per actor, supervised by an admin process.
    #[default]
    Processes,
    /// Every actor in the calling process, run sequentially and deterministically in the
    /// order messages are sent, with a virtual clock for timers and timeouts.
    Simple,
}

/// Settings for [`ActorSystem::start_with`]. Every field has a default.
///
/// | setting | default | base |
/// |---|---|---|
/// | `base` | [`Base::Processes`] | |
/// | `runtime_base` | `$XDG_RUNTIME_DIR/greenroom`, else `/tmp/greenroom-<uid>` | processes |
/// | `host_executable` | the current executable | processes |
/// | `max_frame` | 16 MiB | processes |
/// | `send_window` | 8 MiB of unprocessed messages per sender and target: beyond it `tell` waits (then fails), an actor's `send` fails with [`Error::Backpressure`] | processes |
/// | `max_pending_connections` | 256 accepted connections waiting for their handshake, per listening socket: more are closed at once | processes |
/// | `root_supervision` | [`SupervisorSpec::default`]: one-for-one, 5 restarts in 10 s | processes |
/// | `log_level` / `log_filter` | `warn` (the `GREENROOM_LOG` environment variable, when set, takes precedence) | processes |
/// | `log_file` | none: the admin and every actor log to this program's stderr | processes |
/// | `capabilities` | none | both |
/// | `convention` | none: this system is on its own | processes |
/// | `registry` | the one given to `greenroom_host::init` | simple |
/// | `record_deliveries` | off | simple |
#[derive(Debug, Clone)]
pub struct SystemConfig {
    base: Base,
    runtime_base: Option<PathBuf>,
    host_executable: Option<PathBuf>,
    max_frame: u32,
    send_window: usize,
    root_supervision: SupervisorSpec,
    registry: Option<Registry>,
    record_deliveries: bool,
    capabilities: Capabilities,
    log_filter: Option<String>,
    log_file: Option<PathBuf>,
    max_pending: usize,
    convention: Option<crate::convention::ConventionConfig>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            base: Base::default(),
            runtime_base: None,
            host_executable: None,
            max_frame: DEFAULT_MAX_FRAME,
            send_window: crate::process_role::DEFAULT_SEND_WINDOW,
            root_supervision: SupervisorSpec::default(),
            registry: None,
            record_deliveries: false,
            capabilities: Capabilities::new(),
            log_filter: None,
            log_file: None,
            max_pending: crate::net::pending::DEFAULT_MAX_PENDING,
            convention: None,
        }
    }
}

impl SystemConfig {
    /// Which base runs the actors.
    pub fn base(mut self, base: Base) -> Self {
        self.base = base;
        self
    }

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

    /// How many accepted connections may wait for their handshake at once on each listening
    /// socket (every actor's, the client's, the admin's): beyond it, new connections are
    /// closed at once and one warning per burst is logged. Each must complete its handshake
    /// within 3 s in any case. A defence against a flood of connections that say nothing.
    pub fn max_pending_connections(mut self, limit: usize) -> Self {
        self.max_pending = limit.max(1);
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
    /// without a rebuild). On the simple base actors log through this program's own
    /// subscriber.
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

    /// The system's capabilities at start (Thespian's capabilities dictionary): what actor
    /// types' [`Actor::accepts`] checks see. Change them later with
    /// [`ActorSystem::update_capability`].
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Makes this system a member of a convention (several machines' systems joined; see
    /// [`crate::convention`]). The start fails if the secret file is missing, malformed or
    /// readable by others.
    pub fn convention(mut self, convention: crate::convention::ConventionConfig) -> Self {
        self.convention = Some(convention);
        self
    }

    /// The actor types a simple-base system can create. Without it, the registry the
    /// program gave `greenroom_host::init` is used. (The process base constructs actors in
    /// the host executable, from the registry that executable was built with.)
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Simple base: record every message delivered to an actor, read back with
    /// [`ActorSystem::take_deliveries`] — how a test shows that two runs did the same thing.
    pub fn record_deliveries(mut self, on: bool) -> Self {
        self.record_deliveries = on;
        self
    }
}

/// What the system reports about one actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    pub state: ActorState,
    /// The pid of the host process serving it now, if any (never on the simple base).
    pub pid: Option<u32>,
    /// 1 for the first process, +1 per restart.
    pub incarnation: u32,
}

enum Inner {
    // Boxed: the process client is large, and the enum is moved when the system is.
    Processes(Box<process::ProcessSystem>),
    Simple(simple::SimpleSystem),
}

/// A running actor system, seen from a program outside the actors.
///
/// Every method takes `&self`, and threads may share one `ActorSystem`: each
/// [`request`](ActorSystem::request) gets its own answer, and a `tell` never waits for
/// another thread's call. Thespian's [`ask`](ActorSystem::ask) and
/// [`listen`](ActorSystem::listen) take the next plain message to the client, whichever
/// call waits; threads that use them concurrently each take a
/// [private client](ActorSystem::private), so that none takes another's message.
///
/// ```no_run
/// # use greenroom::{ActorSystem, Request};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Hi;
/// # impl Request for Hi { type Reply = String; }
/// # #[derive(Default)] struct Hello;
/// # impl greenroom::Handle<Hi> for Hello {
/// #     type Reply = String;
/// #     fn handle(&mut self, _: &mut greenroom::Context<'_>, _: Hi, _: greenroom::Address) -> greenroom::ActorResult<String> { Ok("Hello".into()) }
/// # }
/// # greenroom::dispatch!(Hello { Hi });
/// # fn main() -> Result<(), greenroom::Error> {
/// let system = ActorSystem::start()?;
/// let hello = system.create_actor::<Hello>()?;
/// let reply: String = system.request(hello, Hi, std::time::Duration::from_secs(1))?;
/// system.stop(hello)?;
/// system.shutdown()?;
/// # Ok(()) }
/// ```
pub struct ActorSystem {
    inner: Inner,
}

impl ActorSystem {
    /// Starts a new actor system with default settings (the process base).
    pub fn start() -> Result<Self> {
        Self::start_with(SystemConfig::default())
    }

    /// Starts a new actor system.
    pub fn start_with(config: SystemConfig) -> Result<Self> {
        let inner = match config.base {
            Base::Processes => Inner::Processes(Box::new(process::ProcessSystem::start(&config)?)),
            Base::Simple => Inner::Simple(simple::SimpleSystem::start(&config)?),
        };
        Ok(ActorSystem { inner })
    }

    /// Attaches to the system started with `greenroom start --name NAME` (Thespian's
    /// `ActorSystem()` reaching an existing admin), under the default runtime base. The
    /// client creates, tells and asks as if it had started the system; its `shutdown` (and
    /// dropping it) only closes this client, and [`ActorSystem::stop_system`] stops the
    /// system. Several programs may be attached at once.
    ///
    /// Fails with [`Error::NoSuchSystem`] if no admin listens under that name, and with
    /// [`Error::AdminNotAnswering`] (naming the admin's pid) if its admin has not accepted
    /// and welcomed this client within 4 s: a stopped (`SIGSTOP`) or hung admin is
    /// reported, not waited on. The same bound applies to [`ActorSystem::connect_dir`] and
    /// [`ActorSystem::private`].
    pub fn connect(name: &str) -> Result<Self> {
        let dir = crate::runtime_dir::named_system_dir(&crate::runtime_dir::default_base(), name)?;
        Self::connect_dir(&dir)
    }

    /// Like [`ActorSystem::connect`], given the system's runtime directory.
    pub fn connect_dir(runtime_dir: &Path) -> Result<Self> {
        let client = process::ProcessSystem::attach(
            runtime_dir,
            DEFAULT_MAX_FRAME,
            crate::process_role::DEFAULT_SEND_WINDOW,
            crate::net::pending::DEFAULT_MAX_PENDING,
        )?;
        Ok(ActorSystem {
            inner: Inner::Processes(Box::new(client)),
        })
    }

    /// What the admin says of the system and its live actors, and of those gone for good if
    /// `include_gone` (process base): the data behind `greenroom status`.
    pub fn describe(&self, include_gone: bool) -> Result<SystemDescription> {
        match &self.inner {
            Inner::Processes(p) => p.describe(include_gone),
            Inner::Simple(_) => Err(Error::WrongBase("describe: the simple base has no admin to describe")),
        }
    }

    /// Stops the whole system, from any client: every actor is asked to exit, then the admin
    /// stops. (For the program that started the system this is [`ActorSystem::shutdown`].)
    pub fn stop_system(&self) -> Result<()> {
        match &self.inner {
            Inner::Processes(p) => p.stop_system(),
            Inner::Simple(s) => s.stop_system(),
        }
    }

    /// A private client of this system (Thespian's `private()`): the same system, seen
    /// through a new address of its own, so that replies to it go to it alone. Give one to
    /// each thread that asks; the owner's calls and theirs never take each other's messages.
    ///
    /// Everything works through it as through the owner, except that its `shutdown` — and
    /// dropping it — only closes the private client (its address is then gone, and messages
    /// still sent to it are dead letters); the system runs on until its owner shuts it down.
    ///
    /// ```
    /// # use greenroom::{Actor, ActorResult, ActorSystem, Address, AnyMessage, Base, Context, Registry, SystemConfig};
    /// # #[derive(Default)] struct Echo;
    /// # impl Actor for Echo {
    /// #     fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
    /// #         ctx.send_any(sender, msg.clone())?; Ok(())
    /// #     }
    /// # }
    /// # let config = SystemConfig::default().base(Base::Simple).registry(Registry::new().register::<Echo>());
    /// let system = ActorSystem::start_with(config)?;
    /// let echo = system.create_actor::<Echo>()?.address(); // Echo takes any message
    /// std::thread::scope(|s| {
    ///     for n in 0..4u32 {
    ///         let client = system.private()?;
    ///         s.spawn(move || {
    ///             let back: u32 = client.ask(echo, n, std::time::Duration::from_secs(10)).unwrap();
    ///             assert_eq!(back, n);
    ///         });
    ///     }
    ///     Ok::<(), greenroom::Error>(())
    /// })?;
    /// # Ok::<(), greenroom::Error>(())
    /// ```
    pub fn private(&self) -> Result<ActorSystem> {
        let inner = match &self.inner {
            Inner::Processes(p) => Inner::Processes(Box::new(p.connect_private()?)),
            Inner::Simple(s) => Inner::Simple(s.connect_private()?),
        };
        Ok(ActorSystem { inner })
    }

    /// The base this system runs on.
    pub fn base(&self) -> Base {
        match &self.inner {
            Inner::Processes(_) => Base::Processes,
            Inner::Simple(_) => Base::Simple,
        }
    }

    /// This client's own address (the `sender` actors see).
    pub fn address(&self) -> Address {
        match &self.inner {
            Inner::Processes(p) => p.address(),
            Inner::Simple(s) => s.address(),
        }
    }

    /// The system's runtime directory (process base only).
    pub fn runtime_dir(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Processes(p) => Some(p.runtime_dir()),
            Inner::Simple(_) => None,
        }
    }

    /// The admin process's pid (process base only).
    pub fn admin_pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Processes(p) => Some(p.admin_pid()),
            Inner::Simple(_) => None,
        }
    }

    /// Creates a top-level actor of type `A`, supervised by the root supervisor with the
    /// default [`ChildSpec`] (permanent).
    ///
    /// Returns once the actor exists; messages sent to it wait until it is up. On the process
    /// base the first create of a system waits until the host is ready, so an unregistered
    /// type fails here with [`Error::Create`]; after that, a constructor that panics shows as
    /// the actor being gone ([`Error::ActorGone`] with `StartFailed`). On the simple base the
    /// constructor runs in this call, and either failure is [`Error::Create`].
    ///
    /// If `A`'s [`Actor::accepts`] refuses the system's capabilities, it is
    /// [`Error::NoCompatibleSystem`] and nothing is created.
    pub fn create_actor<A: Actor>(&self) -> Result<ActorRef<A>> {
        self.create_checked::<A>(ChildSpec::default(), None, &Capabilities::new())
            .map(ActorRef::from_address)
    }

    /// Creates a top-level actor of type `A`, supervised as `spec` says.
    pub fn create_actor_with<A: Actor>(&self, spec: ChildSpec) -> Result<ActorRef<A>> {
        self.create_checked::<A>(spec, None, &Capabilities::new())
            .map(ActorRef::from_address)
    }

    /// Creates a top-level actor of type `A` if `A`'s [`Actor::accepts`] takes this system
    /// for `requirements` (Thespian's `targetActorRequirements`); else
    /// [`Error::NoCompatibleSystem`]. In a convention, a member that qualifies gets it
    /// instead (the least loaded).
    pub fn create_actor_requiring<A: Actor>(&self, requirements: &Capabilities) -> Result<ActorRef<A>> {
        self.create_checked::<A>(ChildSpec::default(), None, requirements)
            .map(ActorRef::from_address)
    }

    fn create_checked<A: Actor>(
        &self,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        let capabilities = self.capabilities()?;
        let type_name = created_type_name::<A>();
        if A::accepts(&capabilities, requirements) {
            return self.create(type_name, spec, global_name, requirements);
        }
        // Not here: another member of the convention that qualifies (the same rule as in
        // `Context::create_actor_requiring`). A named actor is this system's.
        let refused = no_compatible_system::<A>(&capabilities, requirements);
        let Inner::Processes(p) = &self.inner else {
            return Err(refused);
        };
        if global_name.is_some() {
            return Err(refused);
        }
        let members = p.convention_members()?;
        create_on_a_member::<A>(&members, type_name, requirements, refused, |node| {
            p.create_actor_on(node, type_name, spec, requirements)
        })
    }

    /// Creates a top-level [troupe](crate::troupe) of `A` workers with these settings
    /// (whatever `A` declares with [`Actor::troupe`]), and returns the troupe's address.
    /// `spec` is the manager's: its `supervision` bounds how often workers may be restarted.
    ///
    /// ```
    /// # use greenroom::{Actor, ActorResult, ActorSystem, Address, AnyMessage, Base, ChildSpec, Context, Registry, SystemConfig, Troupe, TroupeReport, TroupeStatus};
    /// # use std::time::Duration;
    /// #[derive(Default)]
    /// struct Doubler;
    /// impl Actor for Doubler {
    ///     fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
    ///         if let Some(n) = msg.downcast::<u64>() {
    ///             ctx.send(sender, 2 * n)?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// # let system = ActorSystem::start_with(SystemConfig::default().base(Base::Simple).registry(Registry::new().register::<Doubler>()))?;
    /// let settings = Troupe { max_workers: 2, ..Troupe::default() };
    /// let pool = system.create_troupe::<Doubler>(settings, ChildSpec::default())?.address();
    /// let doubled: u64 = system.ask(pool, 21u64, Duration::from_secs(5))?;
    /// assert_eq!(doubled, 42);
    /// let report: TroupeReport = system.ask(pool, TroupeStatus, Duration::from_secs(5))?;
    /// assert_eq!((report.max_workers, report.workers), (2, 1));
    /// # Ok::<(), greenroom::Error>(())
    /// ```
    pub fn create_troupe<A: Actor>(&self, settings: crate::Troupe, spec: ChildSpec) -> Result<ActorRef<A>> {
        check_capabilities::<A>(&self.capabilities()?, &Capabilities::new())?;
        let troupe = self.create(
            crate::troupe::manager_type_name::<A>(),
            spec,
            None,
            &Capabilities::new(),
        )?;
        self.tell(troupe, crate::troupe::ConfigureTroupe(settings))?;
        Ok(ActorRef::from_address(troupe))
    }

    /// The actor of type `A` known system-wide as `name`: the live actor holding the name
    /// (whatever its type) if there is one, else a new top-level actor that takes it. The
    /// name survives restarts and is freed when the actor is gone for good.
    pub fn create_actor_global<A: Actor>(&self, name: &str) -> Result<Address> {
        self.create_checked::<A>(ChildSpec::default(), Some(name), &Capabilities::new())
    }

    /// Creates a top-level actor by registered type name (see [`ActorSystem::create_actor`]).
    /// Without the type, no capability check runs.
    pub fn create_actor_named(&self, type_name: &str, spec: ChildSpec) -> Result<Address> {
        self.create(type_name, spec, None, &Capabilities::new())
    }

    fn create(
        &self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        match &self.inner {
            Inner::Processes(p) => p.create_actor(type_name, spec, global_name, requirements),
            Inner::Simple(s) => s.create_actor(type_name, spec, global_name, requirements),
        }
    }

    /// Sends `msg` to `to` (an [`Address`], or an [`ActorRef`] whose actor handles `M`)
    /// without waiting for an answer.
    ///
    /// Fails at once if `to` is gone (the message then goes to the dead-letter path). On the
    /// process base it waits (up to 60 s) while `to` has more than the send window of
    /// unprocessed messages from this client; on the simple base it runs every actor until
    /// no message is left to process (timers wait for the virtual clock). It never waits for
    /// another thread's `request`, `ask` or `listen` on the same `ActorSystem`.
    pub fn tell<M: Message>(&self, to: impl Recipient<M>, msg: M) -> Result<()> {
        self.tell_any(to.to_address(), AnyMessage::new(&msg)?)
    }

    /// Asks the actor to stop: sends it [`ActorExitRequest`](crate::ActorExitRequest), which
    /// it sees first (to clean up or answer), then its children are asked to exit, and once
    /// they are gone it is gone and its parent is told. It is never restarted. The same as
    /// `tell(address, ActorExitRequest)`, for an [`ActorRef`] of any type.
    pub fn stop(&self, actor: impl Into<Address>) -> Result<()> {
        self.tell(actor.into(), crate::ActorExitRequest)
    }

    /// Sends the [`Request`] `msg` to `to` and waits up to `timeout` for the answer to
    /// *this* request: other messages arriving meanwhile stay for [`listen`](Self::listen)
    /// and [`ask`](Self::ask), and several threads sharing this `ActorSystem` each get their
    /// own answers. See the [`request`](crate::request) module.
    ///
    /// `to` is an [`ActorRef`] whose actor answers `M` (checked at compile time), or an
    /// [`Address`] (the answer's type is checked when it arrives).
    ///
    /// Errors, each about this request only: [`Error::Timeout`] (a later answer is a dead
    /// letter); [`Error::Poisoned`] if `to` failed on it (panicked or returned an error
    /// twice, or its process died processing it); [`Error::ActorGone`] or
    /// [`Error::UnknownActor`] if `to` is not there or is gone for good before processing
    /// it (the message goes to the dead-letter path); [`Error::InDoubt`] across a broken
    /// link; [`Error::UnexpectedReply`] if the answer has another type.
    ///
    /// On the simple base the timeout is virtual time: timers due within it fire.
    pub fn request<M: Request>(&self, to: impl Answers<M>, msg: M, timeout: Duration) -> Result<M::Reply> {
        let to = to.to_address();
        let msg = AnyMessage::new(&msg)?;
        let answer = match &self.inner {
            Inner::Processes(p) => p.request(to, &msg, timeout)?,
            Inner::Simple(s) => s.request(to, msg, timeout)?,
        };
        let Some((sender, answer)) = answer else {
            return Err(Error::Timeout { address: to, timeout });
        };
        match for_client(sender, answer)? {
            Some((sender, answer)) => decode_reply(sender, answer),
            None => Err(Error::UnexpectedReply {
                address: sender,
                expected: M::Reply::type_tag(),
                got: "a runtime notice".to_owned(),
            }),
        }
    }

    /// Sends an already-encoded message (for example one received, to forward it).
    pub fn tell_any(&self, to: Address, msg: AnyMessage) -> Result<()> {
        match &self.inner {
            Inner::Processes(p) => p.tell(to, &msg),
            Inner::Simple(s) => s.tell(to, msg),
        }
    }

    /// Thespian's `ask`: sends `msg` to `to` and waits up to `timeout` for the next message
    /// to this client, decoded as `R` — the answer to this message if its handler gives one
    /// (a [`Handle`](crate::Handle)'s return value other than `()`, or
    /// [`Context::reply`](crate::Context::reply)), or else whatever message arrives first,
    /// from anyone. Prefer [`request`](Self::request), which takes its own answer only.
    ///
    /// Errors: [`Error::Timeout`]; [`Error::ActorGone`] or [`Error::UnknownActor`] at once if
    /// `to` is not there; [`Error::Poisoned`] if `to` failed on the message twice (or on an
    /// earlier `tell` of this client's: see its `message`); [`Error::UnexpectedReply`] if the
    /// reply has another type.
    ///
    /// On the simple base the timeout is virtual time: timers due within it fire.
    pub fn ask<M: Message, R: Message>(&self, to: impl Recipient<M>, msg: M, timeout: Duration) -> Result<R> {
        let (sender, reply) = self.ask_any(to, msg, timeout)?;
        decode_reply(sender, reply)
    }

    /// Like [`ActorSystem::ask`], but returns the reply undecoded with its sender.
    pub fn ask_any<M: Message>(
        &self,
        to: impl Recipient<M>,
        msg: M,
        timeout: Duration,
    ) -> Result<(Address, AnyMessage)> {
        let to = to.to_address();
        let msg = AnyMessage::new(&msg)?;
        match &self.inner {
            Inner::Processes(p) => p.ask(to, &msg, timeout),
            Inner::Simple(s) => s.ask(to, msg, timeout),
        }
    }

    /// Waits up to `timeout` for the next message to this client, without sending.
    pub fn listen(&self, timeout: Duration) -> Result<Option<(Address, AnyMessage)>> {
        match &self.inner {
            Inner::Processes(p) => p.listen(timeout),
            Inner::Simple(s) => s.listen(timeout),
        }
    }

    /// The system's capabilities now.
    pub fn capabilities(&self) -> Result<Capabilities> {
        match &self.inner {
            Inner::Processes(p) => p.capabilities(),
            Inner::Simple(s) => s.capabilities(),
        }
    }

    /// Sets one of the system's capabilities (Thespian's `updateCapability`). Every process
    /// of the system hears of it shortly; this client's own next create sees it at once.
    /// If the set changes, every running actor whose [`Actor::accepts`] refuses it (with its
    /// creator's requirements) is asked to exit; setting a value the key already has does
    /// nothing.
    pub fn update_capability<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let value = greenroom_protocol::capabilities::encode_value(value).map_err(Error::Capability)?;
        self.change_capability(key, Some(value))
    }

    /// Removes one of the system's capabilities.
    pub fn remove_capability(&self, key: &str) -> Result<()> {
        self.change_capability(key, None)
    }

    fn change_capability(&self, key: &str, value: Option<greenroom_protocol::Payload>) -> Result<()> {
        match &self.inner {
            Inner::Processes(p) => p.update_capability(key, value),
            Inner::Simple(s) => s.update_capability(key, value),
        }
    }

    /// What the system knows of the actor at `address`: its state and host pid.
    pub fn actor_info(&self, address: impl Into<Address>) -> Result<ActorInfo> {
        let address = address.into();
        match &self.inner {
            Inner::Processes(p) => p.actor_info(address),
            Inner::Simple(s) => s.actor_info(address),
        }
    }

    /// Simple base: moves the virtual clock forward by `by`, firing the timers that fall due
    /// on the way in time order (each followed by everything it causes). The process base
    /// runs on the real clock: there this is [`Error::WrongBase`].
    pub fn advance_clock(&self, by: Duration) -> Result<()> {
        match &self.inner {
            Inner::Processes(_) => Err(Error::WrongBase(
                "advance_clock: the process base runs on the real clock",
            )),
            Inner::Simple(s) => s.advance_clock(by),
        }
    }

    /// Simple base: the virtual time since the system started.
    pub fn virtual_time(&self) -> Result<Duration> {
        match &self.inner {
            Inner::Processes(_) => Err(Error::WrongBase(
                "virtual_time: the process base runs on the real clock",
            )),
            Inner::Simple(s) => s.virtual_time(),
        }
    }

    /// Simple base, with [`SystemConfig::record_deliveries`]: every message delivered to an
    /// actor since the last take, in the order they ran (one entry per message: a retry after
    /// a failure is not recorded again).
    pub fn take_deliveries(&self) -> Result<Vec<Delivery>> {
        match &self.inner {
            Inner::Processes(_) => Err(Error::WrongBase(
                "take_deliveries: only the simple base runs receives in one recorded order",
            )),
            Inner::Simple(s) => s.take_deliveries(),
        }
    }

    /// Stops every actor (each gets `ActorExitRequest`; on the process base stragglers are
    /// killed after their supervisor's stop timeout, and anything left 10 s after shutdown
    /// began), stops the admin, and removes the runtime directory. A second call does
    /// nothing. On a [private client](ActorSystem::private) it closes only that client.
    pub fn shutdown(&self) -> Result<()> {
        match &self.inner {
            Inner::Processes(p) => p.shutdown(),
            Inner::Simple(s) => s.shutdown(),
        }
    }
}

/// Decodes a reply as `R`, or says what came instead.
fn decode_reply<R: Message>(sender: Address, reply: AnyMessage) -> Result<R> {
    match reply.try_downcast::<R>()? {
        Some(r) => Ok(r),
        None => Err(Error::UnexpectedReply {
            address: sender,
            expected: R::type_tag(),
            got: reply.tag().to_owned(),
        }),
    }
}

/// What a client makes of a message that reached it: a returned message is an error, the
/// runtime's own notices are not for clients (`None`), anything else is for the caller.
fn for_client(sender: Address, msg: AnyMessage) -> Result<Option<(Address, AnyMessage)>> {
    if let Some(unanswered) = msg.try_downcast::<crate::message::Unanswered>()? {
        return Err(Error::Unanswered {
            address: sender,
            details: unanswered.details,
        });
    }
    if let Some(poison) = msg.try_downcast::<PoisonMessage>()? {
        return Err(Error::Poisoned {
            address: sender,
            message: poison.message,
            details: poison.details,
        });
    }
    if is_system_tag(msg.tag()) {
        return Ok(None);
    }
    Ok(Some((sender, msg)))
}

/// `timeout` from now; a timeout too long for the clock (e.g. `Duration::MAX`) waits as good
/// as forever instead of overflowing.
#[doc(hidden)]
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + greenroom_protocol::supervision::LONGEST)
}
