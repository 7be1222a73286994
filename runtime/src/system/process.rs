//! The process base: the client side of a system whose actors each run in their own OS
//! process.
//!
//! Starting it starts an **admin** process (the host executable, re-run with
//! `GREENROOM_ROLE=admin`), which creates the runtime directory and spawns one host process
//! per actor. The client is itself an endpoint with an address and a socket, so actors reply
//! to it directly — the admin is never on the data path.
//!
//! Calls take `&self` and may come from several threads, but one at a time: each holds the
//! client's endpoint until it returns (a `listen(60 s)` delays another thread's `tell`). The
//! next message to the client goes to the call that is waiting, as with Thespian's
//! `ActorSystem`.

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
    Address, Capabilities, ChildSpec, FromAdmin, NodeId, Payload, PeerRole, SystemDescription, ToAdmin,
};

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
/// How long `shutdown` waits for every actor to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

struct Client {
    endpoint: Endpoint,
    /// The admin process, for the client that started it (the owner).
    admin: Option<Child>,
}

/// The client, while it is open: `lock` hands it out only then.
struct Open<'a>(MutexGuard<'a, Option<Client>>);

impl std::ops::Deref for Open<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("Open is only made for an open client")
    }
}

impl std::ops::DerefMut for Open<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("Open is only made for an open client")
    }
}

/// A client of the process base: an endpoint with its own address, talking to the admin
/// over a control connection. The owner started the admin and shuts it down; a private
/// client connected later through `admin.sock` and only goes away itself.
pub(crate) struct ProcessSystem {
    /// `None` once closed: its sockets are gone with it.
    client: Mutex<Option<Client>>,
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
        let registered = register_client(control, config.max_frame, &rundir).map(|(mut endpoint, address)| {
            endpoint.set_max_pending(config.max_pending);
            (endpoint, address)
        });
        let (endpoint, address) = match registered {
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
        Ok(ProcessSystem {
            client: Mutex::new(Some(Client {
                endpoint,
                admin: Some(child),
            })),
            address,
            rundir,
            admin_pid,
            max_frame: config.max_frame,
            send_window: config.send_window,
            max_pending: config.max_pending,
        })
    }

    /// A new client of the same admin with its own address (a private client).
    pub(crate) fn connect_private(&self) -> Result<Self> {
        Self::attach(&self.rundir, self.max_frame, self.send_window, self.max_pending)
    }

    /// A client of the admin already running in `rundir`: a private client of its owner, or
    /// a program attaching to a system started with `greenroom start`.
    pub(crate) fn attach(rundir: &Path, max_frame: u32, send_window: usize, max_pending: usize) -> Result<Self> {
        let path = runtime_dir::admin_socket_path(rundir);
        let control = std::os::unix::net::UnixStream::connect(&path).map_err(|e| Error::NoSuchSystem {
            runtime_dir: rundir.to_path_buf(),
            why: e.to_string(),
        })?;
        // The kernel's word for who answered, the same check the admin makes of us.
        let admin = crate::net::peer::check_same_user(&control).map_err(|why| Error::NoSuchSystem {
            runtime_dir: rundir.to_path_buf(),
            why,
        })?;
        let (mut endpoint, address) = register_client(control, max_frame, rundir)?;
        endpoint.set_max_pending(max_pending);
        Ok(ProcessSystem {
            client: Mutex::new(Some(Client { endpoint, admin: None })),
            address,
            rundir: rundir.to_path_buf(),
            admin_pid: admin.pid as u32,
            max_frame,
            send_window,
            max_pending,
        })
    }

    /// What the admin says of the system and every actor in it.
    pub(crate) fn describe(&self, include_gone: bool) -> Result<SystemDescription> {
        let mut client = self.lock()?;
        let request = client.endpoint.next_request();
        let answer = client.endpoint.control_request(
            &ToAdmin::Describe { request, include_gone },
            Duration::from_secs(10),
            |f| matches!(f, FromAdmin::Description { request: r, .. } if *r == request),
        )?;
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

    fn lock(&self) -> Result<Open<'_>> {
        let client = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if client.is_none() {
            return Err(Error::SystemStopped);
        }
        Ok(Open(client))
    }

    pub(crate) fn create_actor(
        &self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        let mut client = self.lock()?;
        client
            .endpoint
            .create_actor(type_name, spec, global_name, requirements, None, CREATE_TIMEOUT)
    }

    /// Creates a top-level actor on the convention's member of node `node`.
    pub(crate) fn create_actor_on(
        &self,
        node: NodeId,
        type_name: &str,
        spec: ChildSpec,
        requirements: &Capabilities,
    ) -> Result<Address> {
        let mut client = self.lock()?;
        client
            .endpoint
            .create_actor(type_name, spec, None, requirements, Some(node), CREATE_TIMEOUT)
    }

    /// The other members of the convention and their capabilities.
    pub(crate) fn convention_members(&self) -> Result<Vec<greenroom_protocol::ConventionMember>> {
        self.lock()?.endpoint.convention_members(CREATE_TIMEOUT)
    }

    /// Sends `msg`; waits (up to 60 s) while `to` has more than the send window of
    /// unprocessed messages from this client.
    pub(crate) fn tell(&self, to: Address, msg: &AnyMessage) -> Result<()> {
        let mut client = self.lock()?;
        self.send_locked(&mut client, to, msg).map(drop)
    }

    /// Sends `msg`, waiting while `to` has more than the send window of this client's
    /// messages; returns which send it was.
    fn send_locked(&self, client: &mut Client, to: Address, msg: &AnyMessage) -> Result<SentId> {
        // What came back from `to` before this message left is about earlier ones: to the
        // dead-letter path, so that only this message's own fate can fail this call.
        while let Some((_, undelivered, _)) = client.endpoint.take_peer_lost(to) {
            client.endpoint.dead_letters(to, undelivered);
        }
        let sent = client.endpoint.send_tracked(to, msg)?;
        client.endpoint.flush();
        let deadline = Instant::now() + SEND_TIMEOUT;
        loop {
            let bytes = client.endpoint.unacked_bytes(to);
            if bytes <= self.send_window {
                return Ok(sent);
            }
            // Surface a lost peer now rather than waiting out the timeout.
            if let Some((cause, undelivered, ids)) = client.endpoint.take_peer_lost(to) {
                if let Some(lost) = came_back(&mut client.endpoint, to, cause, undelivered, &ids, sent) {
                    return Err(lost);
                }
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

    /// Sends `msg` and waits for the next message to this client.
    pub(crate) fn ask(&self, to: Address, msg: &AnyMessage, timeout: Duration) -> Result<(Address, AnyMessage)> {
        let mut client = self.lock()?;
        let deadline = deadline_after(timeout);
        let sent = self.send_locked(&mut client, to, msg)?;
        match wait_for_message(&mut client.endpoint, Some((to, sent)), deadline)? {
            Some(reply) => Ok(reply),
            None => Err(Error::Timeout { address: to, timeout }),
        }
    }

    pub(crate) fn listen(&self, timeout: Duration) -> Result<Option<(Address, AnyMessage)>> {
        let mut client = self.lock()?;
        wait_for_message(&mut client.endpoint, None, deadline_after(timeout))
    }

    /// The capabilities as the admin last said, after reading whatever it has sent.
    pub(crate) fn capabilities(&self) -> Result<Capabilities> {
        let mut client = self.lock()?;
        client.endpoint.pump(Some(Duration::ZERO))?;
        Ok(client.endpoint.capabilities().clone())
    }

    pub(crate) fn update_capability(&self, key: &str, value: Option<Payload>) -> Result<()> {
        self.lock()?.endpoint.update_capability(key, value)
    }

    pub(crate) fn actor_info(&self, address: Address) -> Result<ActorInfo> {
        let mut client = self.lock()?;
        let (state, pid, incarnation) = client.endpoint.actor_status(address, Duration::from_secs(10))?;
        Ok(ActorInfo {
            state,
            pid,
            incarnation,
        })
    }

    /// The owner: stops every actor and the admin, and removes the runtime directory. Any
    /// other client: closes (its address is then gone), the system runs on.
    pub(crate) fn shutdown(&self) -> Result<()> {
        let owner = self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|c| c.admin.is_some());
        self.finish(owner)
    }

    /// Stops every actor and the admin, from any client.
    pub(crate) fn stop_system(&self) -> Result<()> {
        self.finish(true)
    }

    /// Closes this client — its control connection, its socket, its connections — first
    /// stopping the whole system if `stop_admin`. A second call does nothing.
    fn finish(&self, stop_admin: bool) -> Result<()> {
        let Some(mut client) = self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return Ok(());
        };
        let _ = std::fs::remove_file(runtime_dir::socket_path(&self.rundir, self.address));
        if !stop_admin {
            // Acknowledge what this client took before it goes, or its senders would count
            // those messages as never delivered (acks are batched). Dropping the endpoint then
            // closes the control connection, which unregisters the client.
            client.endpoint.flush_acks();
            client.endpoint.flush_blocking(Instant::now() + CLOSE_FLUSH);
            return Ok(());
        }
        let request = client.endpoint.next_request();
        let answer = client
            .endpoint
            .control_request(&ToAdmin::Shutdown { request }, SHUTDOWN_TIMEOUT, |f| {
                matches!(f, FromAdmin::ShutdownComplete { .. })
            });
        if let Some(mut admin) = client.admin.take() {
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
) -> Result<(Endpoint, Address)> {
    let mut endpoint = Endpoint::new(control, PeerRole::Client, max_frame)?;
    let welcome = endpoint.control_request(&ToAdmin::RegisterClient, Duration::from_secs(30), |f| {
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

/// Messages to `peer` came back (`ids` names their sends): the error for the caller whose
/// send was `mine`, if it is among them; the others (earlier tells still on their way when
/// it was sent) go to the dead-letter path. If `mine` is not among them it is still on its
/// way (a connection in doubt goes on with what was sent after the loss), and so is its
/// reply.
fn came_back(
    endpoint: &mut Endpoint,
    peer: Address,
    cause: LostCause,
    mut undelivered: Vec<AnyMessage>,
    ids: &[SentId],
    mine: SentId,
) -> Option<Error> {
    let returned = ids
        .iter()
        .position(|id| *id == mine)
        .filter(|at| *at < undelivered.len())
        .map(|at| undelivered.remove(at));
    endpoint.dead_letters(peer, undelivered);
    returned.map(|_| cause.into_error(peer))
}

/// The client's receive loop: the next message for the caller, an error if the message
/// `asked` of `target` came back undelivered (or the admin is gone), or `None` at the
/// deadline. Other messages that come back undelivered (earlier tells) go to the
/// dead-letter path.
fn wait_for_message(
    endpoint: &mut Endpoint,
    asked: Option<(Address, SentId)>,
    deadline: Instant,
) -> Result<Option<(Address, AnyMessage)>> {
    loop {
        while let Some(inbound) = endpoint.next_inbound() {
            match inbound {
                Inbound::Message { sender, msg, receipt } => {
                    endpoint.processed(receipt);
                    if let Some(delivered) = for_client(sender, msg)? {
                        return Ok(Some(delivered));
                    }
                }
                Inbound::PeerLost {
                    peer,
                    cause,
                    undelivered,
                    ids,
                } => match asked.filter(|(to, _)| *to == peer) {
                    Some((_, question)) => {
                        if let Some(lost) = came_back(endpoint, peer, cause, undelivered, &ids, question) {
                            return Err(lost);
                        }
                    }
                    None => endpoint.dead_letters(peer, undelivered),
                },
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
