//! The admin's side of its gateway process (`gateway/mod.rs`): the listeners it keeps, the
//! control socket, the restart policy, and the admin's copy of what the gateway reports.
//!
//! The admin binds the convention's TCP port and `gateway.sock` once, and hands both to
//! every gateway it starts: a restarted gateway serves the same port and socket, and what
//! connected meanwhile waits in the listeners' backlogs. It keeps its static key and its
//! identity (advertised address, start time) for the same reason: the gateway is the
//! admin's voice, whichever process it is.
//!
//! | when the gateway dies | what happens |
//! |---|---|
//! | after running [`STEADY`] or more | it is started again after [`FIRST_BACKOFF`] |
//! | sooner (a crash at start, say) | each quick death doubles the wait, up to [`MAX_BACKOFF`] |
//! | meanwhile | frames for other admins fail at once (`LinkBroke`), as does what waits for an answer from another member; the member list is kept, as last heard |
//!
//! This type does no I/O of its own beyond the control socket: the admin spawns the
//! process (it owns the spawner and the log pipes) and tells this handle about it.

use std::{
    collections::VecDeque,
    os::fd::{AsFd, BorrowedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use greenroom_protocol::{
    convention::GatewayFrame,
    gateway::{FromGateway, GatewayStart, MemberView, ToGateway},
    Capabilities, NodeId,
};
use nix::unistd::Pid;

use super::{
    membership::{MemberId, MembershipEvent},
    ConventionConfig, StaticKey,
};
use crate::{
    error::{Error, Result},
    net::framed::Framed,
};

/// How long a gateway must have run for its death to count as not quick.
pub const STEADY: Duration = Duration::from_secs(10);
/// The wait before restarting a gateway that died after running steadily.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a gateway may say nothing (it pings its admin every 250 ms) before the admin
/// takes it for hung, kills it and starts another.
pub const GATEWAY_SILENCE: Duration = Duration::from_secs(5);

/// What this admin knows of another member believed alive.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub id: MemberId,
    /// Its node id (`id.node()`, kept: the data path looks members up by it).
    pub node: NodeId,
    /// Its capabilities, as it last told this admin (empty until it has).
    pub capabilities: Capabilities,
    /// How many actors it runs, as it last told this admin (a few seconds old at most).
    pub load: u64,
    /// The static public key its link proved (`None` until one has).
    pub key: Option<Vec<u8>>,
    /// The actor types its host binary registers, once it knows them and has said so.
    pub types: Option<Vec<String>>,
    /// When it last told this admin its capabilities (`None`: not yet).
    pub heard: Option<Instant>,
}

/// What the gateway brought the admin, in order.
// Rare enough (admin-to-admin frames, membership changes) that the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ConventionEvent {
    Membership(MembershipEvent),
    /// Another admin's frame, from the member of node `from`.
    Frame {
        from: NodeId,
        frame: GatewayFrame,
    },
    /// The link to `node` broke, or a frame for it could not be sent.
    LinkBroke(NodeId),
}

/// The gateway process of the moment.
struct Running {
    pid: Pid,
    control: Framed,
    started: Instant,
    /// When it last sent anything.
    heard: Instant,
    /// Killed for its silence: reaping it is all that is left.
    killed: bool,
}

/// The admin's handle on its gateway: see [the module docs](self).
pub struct GatewayHandle {
    pub config: ConventionConfig,
    me: MemberId,
    key: StaticKey,
    tcp: std::net::TcpListener,
    unix: std::os::unix::net::UnixListener,
    socket_path: PathBuf,
    rundir: PathBuf,
    max_frame: u32,
    max_pending: u32,
    running: Option<Running>,
    restart_at: Option<Instant>,
    quick_deaths: u32,
    restarts: u64,
    bump: u16,
    members: Vec<MemberInfo>,
    events: VecDeque<ConventionEvent>,
    capabilities: Capabilities,
    types: Option<Vec<String>>,
    load: u64,
}

impl GatewayHandle {
    /// Binds the convention's port and `gateway.sock` in `rundir`, and loads (or makes) the
    /// static key. The gateway itself is started by the admin ([`GatewayHandle::started`]).
    pub fn new(
        config: ConventionConfig,
        capabilities: Capabilities,
        rundir: PathBuf,
        max_frame: u32,
        max_pending: usize,
    ) -> Result<GatewayHandle> {
        config.check_secret()?;
        let key = match &config.key_file {
            Some(path) => {
                let (key, created) = StaticKey::load_or_create(path)?;
                let kept = if created { "made now and kept" } else { "kept" };
                tracing::info!(key = %key.fingerprint(), file = %path.display(), "static key {kept}");
                key
            }
            None => {
                let key = StaticKey::generate()?;
                tracing::info!(key = %key.fingerprint(), "static key new at this start (a key file keeps one)");
                key
            }
        };
        let tcp = std::net::TcpListener::bind(config.listen).map_err(|e| Error::ConventionLink {
            peer: "-".into(),
            reason: format!("cannot listen on {}: {e}", config.listen),
        })?;
        let socket_path = crate::runtime_dir::gateway_socket_path(&rundir);
        let unix = std::os::unix::net::UnixListener::bind(&socket_path)
            .map_err(Error::io(format!("binding {}", socket_path.display())))?;
        let me = MemberId::new(config.advertise.unwrap_or(config.listen));
        Ok(GatewayHandle {
            config,
            me,
            key,
            tcp,
            unix,
            socket_path,
            rundir,
            max_frame,
            max_pending: u32::try_from(max_pending).unwrap_or(u32::MAX),
            running: None,
            restart_at: Some(Instant::now()),
            quick_deaths: 0,
            restarts: 0,
            bump: 0,
            members: Vec::new(),
            events: VecDeque::new(),
            capabilities,
            types: None,
            load: 0,
        })
    }

    /// The two listeners a new gateway gets as its fds 4 and 5.
    pub fn listeners(&self) -> [BorrowedFd<'_>; 2] {
        [self.tcp.as_fd(), self.unix.as_fd()]
    }

    /// Whether a gateway should be started now: none runs, and its backoff is over.
    pub fn start_due(&self, now: Instant) -> bool {
        self.running.is_none() && self.restart_at.is_some_and(|at| at <= now)
    }

    /// When the next start is due, or the running gateway's silence would be too long,
    /// for the admin's wait.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.running {
            Some(running) if !running.killed => Some(running.heard + GATEWAY_SILENCE),
            Some(_) => None,
            None => self.restart_at,
        }
    }

    /// The running gateway, if it has said nothing for [`GATEWAY_SILENCE`]: hung (or
    /// stopped). The admin kills it; reaping it starts another.
    pub fn hung(&mut self, now: Instant) -> Option<Pid> {
        let running = self.running.as_mut().filter(|r| !r.killed)?;
        if now.saturating_duration_since(running.heard) < GATEWAY_SILENCE {
            return None;
        }
        running.killed = true;
        Some(running.pid)
    }

    /// The admin started gateway `pid`, talking on `control`: it is told who it is.
    pub fn started(&mut self, pid: Pid, control: mio::net::UnixStream) {
        let mut control = Framed::new(control, u32::MAX);
        let start = GatewayStart {
            convention: self.config.name.clone(),
            advertise: self.me.addr,
            leader: self.config.leader,
            incarnation: self.me.incarnation,
            bump: self.bump,
            secret_file: self.config.secret_file.clone(),
            static_key: self.key.private().to_vec(),
            runtime_dir: self.rundir.clone(),
            max_frame: self.max_frame,
            max_pending: self.max_pending,
            capabilities: self.capabilities.clone(),
            load: self.load,
            types: self.types.clone(),
            // What the last gateway knew: its successor starts from it.
            members: self.members.iter().map(member_view).collect(),
        };
        if let Err(e) = control.queue(&ToGateway::Start(Box::new(start)), "gateway start") {
            tracing::error!(error = %e, "could not encode the gateway's start");
        }
        self.restart_at = None;
        self.running = Some(Running {
            pid,
            control,
            started: Instant::now(),
            heard: Instant::now(),
            killed: false,
        });
    }

    /// Starting a gateway failed: try again after the backoff.
    pub fn start_failed(&mut self, why: &str) {
        tracing::error!(reason = %why, "could not start the convention gateway");
        self.schedule_restart(Duration::ZERO);
    }

    /// The running gateway's control socket, to register with the admin's poll.
    pub fn control_mut(&mut self) -> Option<&mut Framed> {
        self.running.as_mut().map(|r| &mut r.control)
    }

    /// The running gateway's pid.
    pub fn pid(&self) -> Option<Pid> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// How many times the gateway was started again after it died (or failed to start).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Reads what the gateway sent. `false` if its control socket ended (the process is
    /// dying: [`GatewayHandle::exited`] follows when it is reaped).
    pub fn read(&mut self) -> bool {
        loop {
            let Some(running) = self.running.as_mut() else {
                return false;
            };
            let outcome = match running.control.read() {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(error = %e, "the gateway's control socket broke");
                    return false;
                }
            };
            if !outcome.frames.is_empty() {
                running.heard = Instant::now();
            }
            for body in outcome.frames {
                match greenroom_protocol::frame::decode::<FromGateway>(&body, "gateway frame") {
                    Ok(frame) => self.gateway_frame(frame),
                    Err(e) => tracing::error!(error = %e, "a frame from the gateway that does not decode"),
                }
            }
            if outcome.closed {
                return false;
            }
            if !outcome.more {
                // Answers (pongs) go at once.
                self.flush();
                return true;
            }
        }
    }

    /// Writes what is queued for the gateway, as far as the socket takes it.
    pub fn flush(&mut self) {
        if let Some(running) = self.running.as_mut() {
            if let Err(e) = running.control.flush() {
                tracing::debug!(error = %e, "could not write to the gateway");
            }
        }
    }

    fn gateway_frame(&mut self, frame: FromGateway) {
        match frame {
            FromGateway::Ready { public_key } => {
                if public_key != self.key.public() {
                    tracing::error!("the gateway proves another static key than the admin gave it");
                }
                tracing::info!(pid = self.pid().map(|p| p.as_raw()), "the convention gateway is ready");
            }
            FromGateway::Ping => self.tell_gateway(ToGateway::Pong),
            FromGateway::Failed { reason } => {
                tracing::error!(%reason, "the convention gateway could not start");
            }
            FromGateway::Renewed { bump } => self.bump = self.bump.max(bump),
            FromGateway::Members(views) => {
                let now = Instant::now();
                self.members = views.into_iter().map(|view| member_info(view, now)).collect();
            }
            FromGateway::Down { addr, incarnation } => {
                self.events
                    .push_back(ConventionEvent::Membership(MembershipEvent::Down(member(
                        addr,
                        incarnation,
                    ))))
            }
            FromGateway::Capabilities {
                addr,
                incarnation,
                capabilities,
            } => self
                .events
                .push_back(ConventionEvent::Membership(MembershipEvent::Capabilities(
                    member(addr, incarnation),
                    capabilities,
                ))),
            FromGateway::Frame { from, frame } => self.events.push_back(ConventionEvent::Frame { from, frame: *frame }),
            FromGateway::LinkBroke(node) => self.events.push_back(ConventionEvent::LinkBroke(node)),
        }
    }

    /// The gateway process `pid` was reaped (`how`: its exit status): what it wrote before
    /// it died is read first (answers, membership news — its death may be reaped before its
    /// socket is read), then whatever still waits on another member fails, and a new
    /// gateway is started after the backoff.
    pub fn exited(&mut self, how: &str) {
        self.read();
        let Some(running) = self.running.take() else { return };
        let lived = running.started.elapsed();
        tracing::warn!(pid = running.pid.as_raw(), status = %how, lived = ?lived,
            "the convention gateway exited; cross-machine messages in flight come back to their senders or are in doubt");
        for member in &self.members {
            self.events.push_back(ConventionEvent::LinkBroke(member.node));
        }
        // Its successor speaks as the same identity (the last renewal it reported): to the
        // others, probes went unanswered for a moment, no more, unless it stayed away long
        // enough to be declared down (it then renews itself and joins again).
        self.schedule_restart(lived);
    }

    fn schedule_restart(&mut self, lived: Duration) {
        if lived >= STEADY {
            self.quick_deaths = 0;
        } else {
            self.quick_deaths = self.quick_deaths.saturating_add(1);
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << self.quick_deaths.min(16))
            .min(MAX_BACKOFF);
        self.restarts += 1;
        self.restart_at = Some(Instant::now() + backoff);
    }

    /// Whether `pid` is the gateway's.
    pub fn is_gateway(&self, pid: Pid) -> bool {
        self.pid() == Some(pid)
    }

    /// This admin's identity in the convention.
    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// The public half of this admin's static key.
    pub fn public_key(&self) -> &[u8] {
        self.key.public()
    }

    /// The other members believed alive, with what each last told this one.
    pub fn member_infos(&self) -> &[MemberInfo] {
        &self.members
    }

    /// The live member at `addr` (the leader's address, most often).
    pub fn member_at(&self, addr: std::net::SocketAddr) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id.addr == addr)
    }

    /// The convention address of the live member whose node id is `node`.
    pub fn addr_of(&self, node: NodeId) -> Option<std::net::SocketAddr> {
        self.members.iter().find(|m| m.node == node).map(|m| m.id.addr)
    }

    /// Tells every member this admin's new capabilities.
    pub fn set_capabilities(&mut self, capabilities: Capabilities) {
        self.capabilities = capabilities.clone();
        self.tell_gateway(ToGateway::Capabilities(capabilities));
    }

    /// Tells every member the actor types this admin's host binary registers.
    pub fn set_types(&mut self, types: Vec<String>) {
        self.types = Some(types.clone());
        self.tell_gateway(ToGateway::Types(types));
    }

    /// Tells every member how many actors this admin runs now.
    pub fn set_load(&mut self, load: u64) {
        if self.load != load {
            self.load = load;
            self.tell_gateway(ToGateway::Load(load));
        }
    }

    /// Sends a frame to the admin of `node`. One that cannot be sent (no gateway now, no
    /// such member, the link broke) comes back as [`ConventionEvent::LinkBroke`].
    pub fn send(&mut self, node: NodeId, frame: GatewayFrame) {
        if self.running.is_none() {
            self.events.push_back(ConventionEvent::LinkBroke(node));
            return;
        }
        self.tell_gateway(ToGateway::Send { node, frame });
    }

    fn tell_gateway(&mut self, frame: ToGateway) {
        let Some(running) = self.running.as_mut() else { return };
        if let Err(e) = running.control.queue(&frame, "frame for the gateway") {
            tracing::error!(error = %e, "could not encode a frame for the gateway");
        }
    }

    /// Whether events wait for the admin.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// What the gateway brought since the last call, in order.
    pub fn take_events(&mut self) -> Vec<ConventionEvent> {
        self.events.drain(..).collect()
    }

    /// Ends the gateway (it exits when its control socket closes; it is killed if it has
    /// not within a second) and reaps it.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else { return };
        let pid = running.pid;
        drop(running);
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(pid, None);
                    return;
                }
                Err(nix::errno::Errno::EINTR) => {}
                _ => return,
            }
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

fn member(addr: std::net::SocketAddr, incarnation: u64) -> MemberId {
    MemberId::renewed(addr, incarnation, 0)
}

fn member_view(info: &MemberInfo) -> MemberView {
    MemberView {
        addr: info.id.addr,
        incarnation: info.id.incarnation,
        capabilities: info.capabilities.clone(),
        load: info.load,
        key: info.key.clone(),
        types: info.types.clone(),
        heard_ms_ago: info.heard.map(|at| at.elapsed().as_millis() as u64),
    }
}

fn member_info(view: MemberView, now: Instant) -> MemberInfo {
    let id = member(view.addr, view.incarnation);
    MemberInfo {
        node: id.node(),
        id,
        capabilities: view.capabilities,
        load: view.load,
        key: view.key,
        types: view.types,
        heard: view
            .heard_ms_ago
            .and_then(|ms| now.checked_sub(Duration::from_millis(ms))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convention::ClusterSecret;

    #[test]
    fn what_a_dying_gateway_wrote_is_read_before_its_waiters_fail() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("cluster.key");
        ClusterSecret::generate(&secret_file).unwrap();
        let config = ConventionConfig {
            name: "lab".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            leader: None,
            secret_file,
            key_file: None,
        };
        let mut handle = GatewayHandle::new(config, Capabilities::new(), dir.path().to_owned(), 1 << 20, 16).unwrap();
        let (admin, gateway) = std::os::unix::net::UnixStream::pair().unwrap();
        admin.set_nonblocking(true).unwrap();
        // A pid that is surely no child of this process: `stop` at drop finds nothing to reap.
        handle.started(Pid::from_raw(i32::MAX), mio::net::UnixStream::from_std(admin));
        let member: std::net::SocketAddr = "127.0.0.2:7400".parse().unwrap();
        handle.members = vec![member_info(
            MemberView {
                addr: member,
                incarnation: 5,
                capabilities: Capabilities::new(),
                load: 0,
                key: None,
                types: None,
                heard_ms_ago: None,
            },
            Instant::now(),
        )];
        // Its last words: an answer from another admin, then the member's death.
        let mut bytes = Vec::new();
        let answer = FromGateway::Frame {
            from: NodeId(9),
            frame: Box::new(GatewayFrame::Created {
                request: 1,
                result: Err(greenroom_protocol::CreateFailure::Remote("x".into())),
            }),
        };
        let down = FromGateway::Down {
            addr: member,
            incarnation: 5,
        };
        for frame in [answer, down] {
            greenroom_protocol::encode_frame(&mut bytes, &frame, u32::MAX, "test").unwrap();
        }
        std::io::Write::write_all(&mut &gateway, &bytes).unwrap();
        drop(gateway);
        // Reaped before the admin read its socket.
        handle.exited("killed");
        let events = handle.take_events();
        assert!(
            matches!(events.first(), Some(ConventionEvent::Frame { from: NodeId(9), .. })),
            "{events:?}"
        );
        assert!(
            matches!(events.get(1), Some(ConventionEvent::Membership(MembershipEvent::Down(m))) if m.addr == member),
            "{events:?}"
        );
        assert!(
            matches!(events.get(2), Some(ConventionEvent::LinkBroke(_))),
            "{events:?}"
        );
        assert!(handle.pid().is_none());
    }
}
