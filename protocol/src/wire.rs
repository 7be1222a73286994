//! The types that travel inside frames, one enum per direction of each kind of connection.
//!
//! | connection                      | connector → acceptor | acceptor → connector |
//! |---------------------------------|----------------------|----------------------|
//! | data (endpoint → endpoint)      | [`DataFrame`]        | [`DataReply`]        |
//! | control (host or client → admin)| [`ToAdmin`]          | [`FromAdmin`]        |
//!
//! A message is carried as a [`Payload`]: a stable type tag and the postcard bytes of the
//! value. Only the receiver that asks "is this a `Greeting`?" decodes the bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which admin (machine) an address lives on. `0` is a system in no convention. In a
/// convention, each admin's node id is [`NodeId::for_member`] of its advertised address and
/// start time, so an admin restarted at the same address is a new node: addresses of its
/// previous life name no actor of the new one, and mail for them goes to dead letters.
///
/// ```
/// use greenroom_protocol::NodeId;
/// let first = NodeId::for_member("10.0.0.7:7000", 1_700_000_000_000);
/// let restarted = NodeId::for_member("10.0.0.7:7000", 1_700_000_090_000);
/// assert_ne!(first, restarted);
/// assert_ne!(first, NodeId(0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The node id of the convention member advertised at `addr` that started at
    /// `incarnation` (ms since the Unix epoch): a 32-bit FNV-1a hash of both, never 0.
    /// Every member computes every other's from what membership tells it.
    pub fn for_member(addr: &str, incarnation: u64) -> NodeId {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in addr.bytes().chain(incarnation.to_le_bytes()) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        NodeId(hash.max(1))
    }
}

/// The name of an endpoint — an actor or an external client — in an actor system.
///
/// An address names a *supervised actor*, not a process: it stays the same for the actor's
/// whole life. It is small (12 bytes), `Copy`, and serialisable, so it travels inside
/// messages.
///
/// ```
/// use greenroom_protocol::Address;
/// let a = Address::local(7);
/// assert_eq!(a.to_string(), "@7");
/// assert_eq!(a.id(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address {
    node: NodeId,
    id: u64,
}

impl Address {
    /// The address of endpoint `id` on the local node.
    pub const fn local(id: u64) -> Self {
        Address { node: NodeId(0), id }
    }

    /// The address of endpoint `id` on node `node`.
    pub const fn new(node: NodeId, id: u64) -> Self {
        Address { node, id }
    }

    /// The endpoint number, unique within its node for the life of the system.
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// The node the endpoint lives on.
    pub const fn node(&self) -> NodeId {
        self.node
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.node.0 == 0 {
            write!(f, "@{}", self.id)
        } else {
            write!(f, "@{}.{}", self.node.0, self.id)
        }
    }
}

/// One encoded message: its type tag and its postcard bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The message type's stable tag (see `greenroom::Message`). Borrowed from the type's
    /// `'static` name when sending (no allocation per message), owned when received.
    pub tag: std::borrow::Cow<'static, str>,
    /// The value, postcard-encoded.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// How a message takes part in a conversation: whether its sender waits for an answer to
/// it, or it is the answer to one of its receiver's own requests.
///
/// Request ids are chosen by the requester and unique among its own requests (an actor's
/// include its incarnation, so that a late answer to a dead incarnation's request is never
/// taken for one of the new incarnation's); an answer goes back to the requester, which is
/// the only endpoint that can tell what the id means. One byte on the wire when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Correlation {
    /// A plain message (`tell`, `send`): nobody waits for an answer to it.
    #[default]
    None,
    /// A request (`request`): its handler's answer goes back as `Reply(id)`, even `()`.
    Request(u64),
    /// Thespian's `ask`: answered like a request, except that a handler's `()` answer is not
    /// sent (the asker takes the next message it gets, as in Thespian).
    Ask(u64),
    /// The answer to the receiver's request (or ask) `id`.
    Reply(u64),
}

impl Correlation {
    /// The correlation of an answer to a message that came with this one: `Reply(id)` for a
    /// request or an ask, `None` otherwise (an answer to a plain message is a plain message).
    pub fn answer(self) -> Correlation {
        match self {
            Correlation::Request(id) | Correlation::Ask(id) => Correlation::Reply(id),
            Correlation::None | Correlation::Reply(_) => Correlation::None,
        }
    }

    /// The id of the request or ask this message is, if it is one.
    pub fn request_id(self) -> Option<u64> {
        match self {
            Correlation::Request(id) | Correlation::Ask(id) => Some(id),
            Correlation::None | Correlation::Reply(_) => None,
        }
    }
}

/// Sender → receiver on a data connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataFrame {
    /// One message. `seq` numbers the messages of this connection from 1, without gaps.
    Message {
        seq: u64,
        correlation: Correlation,
        payload: Payload,
    },
}

impl DataFrame {
    /// Appends `DataFrame::Message { seq, correlation, payload }` to `buf` as one frame
    /// without cloning the payload (the hot path: a sender keeps its own copy of nothing but
    /// these bytes). Returns the frame's length in bytes.
    pub fn encode_message(
        buf: &mut Vec<u8>,
        seq: u64,
        correlation: Correlation,
        payload: &Payload,
        max_frame: u32,
    ) -> Result<usize, crate::ProtocolError> {
        /// Serialises exactly like [`DataFrame`]: same variant, same field order.
        #[derive(Serialize)]
        enum DataFrameRef<'a> {
            Message {
                seq: u64,
                correlation: Correlation,
                payload: &'a Payload,
            },
        }
        let frame = DataFrameRef::Message {
            seq,
            correlation,
            payload,
        };
        crate::encode_frame(buf, &frame, max_frame, "data frame")
    }
}

/// Receiver → sender on a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataReply {
    /// Every message up to and including `upto` has been processed (cumulative; sent in
    /// batches, not once per message). The sender may forget them.
    Ack { upto: u64 },
}

/// A `wakeup_after` an actor has pending, as its host tells the admin (`ToAdmin::WakeupSet`)
/// and the admin hands it to the actor's next incarnation (`FromAdmin::Start`) if the process
/// dies before it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWakeup {
    /// Unique among the actor's pending wakeups, across its incarnations; wakeups due at the
    /// same time fire in the order of their ids.
    pub id: u64,
    /// When it is due, in nanoseconds of `CLOCK_MONOTONIC`, which every process of one
    /// machine shares (unlike `Instant`, it can be sent).
    pub due_ns: u64,
    /// The delay the actor asked for (the `WakeupMessage`'s `delay`).
    pub delay: std::time::Duration,
    pub payload: Payload,
}

/// Why an actor's host process ended.
///
/// Built from the wait status the admin reaps, so it says what really happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitCause {
    /// The actor finished an `ActorExitRequest` and its host exited cleanly.
    Normal,
    /// The host exited on its own with this status code.
    ExitCode(i32),
    /// The host was killed by a signal.
    Signal { signal: i32, core_dumped: bool },
    /// The host could not start the actor (unknown type, constructor panic, exec failure).
    StartFailed(String),
    /// The system shut down (the actor was stopped by its admin).
    Shutdown,
    /// Its supervisor gave up: more than `max_restarts` restarts within `within_ms`; `last`
    /// is the failure that tipped it over.
    RestartLimit {
        restarts: u32,
        within_ms: u64,
        last: Box<ExitCause>,
    },
    /// Its parent is gone for good, so it was stopped.
    ParentGone,
    /// It spent longer than its liveness timeout on one message and was killed.
    Unresponsive { after_ms: u64 },
    /// It went over one of its resource limits.
    ResourceLimit { resource: Resource, detail: String },
    /// It ran on another member of the convention, which left or died (advertised at
    /// `member`): what became of it is unknown, and it is unreachable for good.
    MemberLost { member: String },
    /// Its `receive` failed (the error text or panic message) and its failure policy,
    /// `OnFailure::Restart`, ended its process: the host said so, then exited with status 4.
    ReceiveFailed(String),
}

/// A kernel-enforced resource an actor can run out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resource {
    /// Its address-space limit (`RLIMIT_AS`).
    Memory,
    /// Its CPU-time limit (`RLIMIT_CPU`).
    CpuTime,
}

impl ExitCause {
    /// Whether this ending is a failure: anything but a requested stop or a clean exit
    /// with status 0. `Transient` actors are restarted only after abnormal endings.
    pub fn is_abnormal(&self) -> bool {
        !matches!(
            self,
            ExitCause::Normal | ExitCause::ExitCode(0) | ExitCause::Shutdown | ExitCause::ParentGone
        )
    }
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Normal => write!(f, "exited normally"),
            ExitCause::ExitCode(code) => write!(f, "exited with status {code}"),
            ExitCause::Signal { signal, core_dumped } => {
                write!(f, "killed by signal {signal}")?;
                if *core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            ExitCause::StartFailed(why) => write!(f, "failed to start: {why}"),
            ExitCause::Shutdown => write!(f, "stopped at system shutdown"),
            ExitCause::RestartLimit {
                restarts,
                within_ms,
                last,
            } => write!(
                f,
                "its supervisor gave up after {restarts} restarts within {within_ms} ms (last failure: {last})"
            ),
            ExitCause::ParentGone => write!(f, "stopped because its parent is gone"),
            ExitCause::Unresponsive { after_ms } => {
                write!(f, "killed after {after_ms} ms on one message (liveness timeout)")
            }
            ExitCause::ResourceLimit { resource, detail } => {
                let what = match resource {
                    Resource::Memory => "memory",
                    Resource::CpuTime => "CPU time",
                };
                write!(f, "over its {what} limit ({detail})")
            }
            ExitCause::MemberLost { member } => {
                write!(f, "the convention member it ran on ({member}) left or died")
            }
            ExitCause::ReceiveFailed(details) => {
                write!(
                    f,
                    "its receive failed and its failure policy ends the process ({details})"
                )
            }
        }
    }
}

/// An actor's state as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorState {
    /// Its host has been spawned and has not yet reported ready.
    Starting,
    /// Its host is up and serving.
    Running,
    /// It received `ActorExitRequest` and waits for its children before stopping.
    Exiting,
    /// Its process ended and its supervisor will start it again; messages to it wait.
    Restarting,
    /// It is gone for good; its address is dead.
    Gone(ExitCause),
    /// This admin never issued that address.
    Unknown,
}

/// What a dead incarnation did with one sender's messages, read from its delivery ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Every message of the sender's connection up to this sequence number was processed.
    pub processed_upto: Option<u64>,
    /// This message was being processed when the process died.
    pub in_flight: Option<u64>,
    /// How the process ended.
    pub cause: ExitCause,
}

/// Why `create_actor` failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateFailure {
    /// The host binary has no actor type registered under that name.
    UnknownType { type_name: String, known: Vec<String> },
    /// The admin could not start a host process.
    SpawnFailed(String),
    /// The host started but could not construct the actor.
    StartFailed(String),
    /// The system is shutting down and creates no more actors.
    ShuttingDown,
    /// The actor asking is itself exiting.
    ParentExiting,
    /// Creating it on another member of the convention failed.
    Remote(String),
}

impl fmt::Display for CreateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateFailure::UnknownType { type_name, known } => write!(
                f,
                "unknown actor type `{type_name}`: the host binary registers {known:?}; add it to the registry passed to greenroom_host"
            ),
            CreateFailure::SpawnFailed(why) => write!(f, "could not start a host process: {why}"),
            CreateFailure::StartFailed(why) => write!(f, "the host could not start the actor: {why}"),
            CreateFailure::ShuttingDown => write!(f, "the actor system is shutting down"),
            CreateFailure::ParentExiting => write!(f, "the creating actor is exiting"),
            CreateFailure::Remote(why) => write!(f, "creating it on another member failed: {why}"),
        }
    }
}

/// What an admin says of its system: the answer to [`ToAdmin::Describe`], behind
/// `greenroom status` and `greenroom list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemDescription {
    /// The name it was started under (`greenroom start --name`), if any.
    pub name: Option<String>,
    pub admin_pid: u32,
    /// The executable run for every host.
    pub host_executable: String,
    pub runtime_dir: String,
    /// When the admin started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Where the system's log goes, if it is a file.
    pub log_file: Option<String>,
    /// The actors, in creation order: live ones, and gone ones if asked for.
    pub actors: Vec<ActorRow>,
    /// The convention this system is a member of, if any.
    pub convention: Option<ConventionView>,
}

/// A system's view of its convention, in a [`SystemDescription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConventionView {
    pub name: String,
    /// This admin, as the others know it.
    pub me: MemberRow,
    /// The leader's address, as configured (`None`: this admin is the leader).
    pub leader: Option<String>,
    /// The other members believed alive, by address.
    pub members: Vec<MemberRow>,
    /// The pid of this admin's gateway process (`None` while it is being restarted).
    pub gateway_pid: Option<u32>,
    /// How many times the gateway was started again after it died.
    pub gateway_restarts: u64,
}

/// One admin of a convention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    /// Its advertised address (`host:port`).
    pub address: String,
    /// When it started (milliseconds since the Unix epoch): a restarted admin is a new member.
    pub incarnation: u64,
    /// Its capabilities, as it last told this member (empty until it has).
    pub capabilities: crate::Capabilities,
    /// How many actors it runs, as it last told this member (a few seconds old at most).
    pub load: u64,
    /// Its static key's fingerprint (the first 8 bytes of the public key, in hex), as its
    /// link proved it; empty until it has told its capabilities. The same after a restart
    /// when the admin keeps its key in a key file.
    pub key: String,
    /// How long ago it last told this member its capabilities, in milliseconds (it does at
    /// least every 2 s); `None` for this member itself, or one not heard from yet.
    pub last_seen_ms: Option<u64>,
}

/// Another member of the convention, as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConventionMember {
    pub node: NodeId,
    /// Its capabilities, as it last told this member.
    pub capabilities: crate::Capabilities,
    /// How many actors it runs, as it last told this member (a few seconds old at most).
    pub load: u64,
    /// The actor types its host binary registers, once it knows them (`None` until one of
    /// its hosts has started): placement skips a member known not to have the type.
    pub types: Option<Vec<String>>,
}

/// One actor in a [`SystemDescription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRow {
    pub address: Address,
    pub type_name: String,
    pub global_name: Option<String>,
    /// Its supervisor (`None`: the root).
    pub parent: Option<Address>,
    pub state: ActorState,
    /// The host process serving it now, if any.
    pub pid: Option<u32>,
    /// 1 for the first process, +1 per restart.
    pub incarnation: u32,
    /// When its current process was started, in milliseconds since the Unix epoch.
    pub started_unix_ms: Option<u64>,
    /// Messages its host has read and not yet processed, as the host last reported (not
    /// counting what still waits in its sockets); for a troupe's manager, with the messages
    /// it holds back for a free worker.
    pub queued: Option<u64>,
    /// Set for a troupe's manager: its workers, as it last reported them.
    pub troupe: Option<TroupeLoad>,
}

/// A troupe manager's load, for `greenroom status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TroupeLoad {
    /// Workers running or starting.
    pub workers: u32,
    /// Workers with a message in hand.
    pub busy: u32,
    pub max_workers: u32,
}

/// Host or client → admin, on a control connection.
// Control frames are few (a handful per actor's life, none per message): a `ChildSpec`
// inline costs nothing that matters, where a box would cost every user an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAdmin {
    /// Client: give me an endpoint address (answered by [`FromAdmin::ClientWelcome`]).
    RegisterClient,
    /// Create an actor of the registered type `type_name`. The asker becomes its parent
    /// (a client's actors are top-level). Answered by [`FromAdmin::Created`].
    CreateActor {
        request: u64,
        type_name: String,
        spec: crate::ChildSpec,
        /// A system-wide name: if a live actor holds it, its address is the answer; else the
        /// new actor takes it, as a top-level actor (the admin is its parent, not the asker).
        global_name: Option<String>,
        /// What the creator required of the system (`create_actor_requiring`; empty for a
        /// plain create): its host checks them again whenever the capabilities change.
        requirements: crate::Capabilities,
        /// Create it on the member of this node of the convention (`None`: here); the
        /// creator chose it by the type's capability check.
        on: Option<NodeId>,
    },
    /// What state is `actor` in? With `settle: Some(n)`, the asker saw its connection to
    /// incarnation `n` end (0: before learning the incarnation), and the admin answers once
    /// that incarnation's process has been reaped, with a [`Recovery`] for the asker.
    ActorStatus {
        request: u64,
        actor: Address,
        settle: Option<u32>,
    },
    /// Host: the actor is constructed and serving; these are the types this binary hosts.
    HostReady { types: Vec<String> },
    /// Host: the actor could not be constructed.
    HostStartFailed { failure: CreateFailure },
    /// Host: the actor has handled `ActorExitRequest` and sent one to each of its children.
    Exiting,
    /// Host: the actor set this wakeup (told once the `receive` that set it has returned).
    WakeupSet(PendingWakeup),
    /// Host: the wakeup is about to be delivered (told, and written, before its `receive`
    /// runs: a wakeup fires at most once, even if its `receive` kills the process).
    WakeupFired { id: u64 },
    /// Host: the actor's `receive` failed (`details`) and its failure policy is
    /// `OnFailure::Restart`: the process ends now (status 4), to be restarted by its
    /// supervisor.
    ReceiveFailed { details: String },
    /// Client: stop every actor and the admin. Answered by [`FromAdmin::ShutdownComplete`].
    Shutdown { request: u64 },
    /// Host: this actor starts (or stops) being the system's dead-letter handler. The last
    /// to start wins; a stop from an actor that is not the handler does nothing.
    HandleDeadLetters { start: bool },
    /// Host: this actor wants (or no longer wants) an `ActorSystemConventionUpdate` for every
    /// change in the convention's membership.
    ConventionNotices { on: bool },
    /// Messages that can never be delivered to `target` (it is gone for good). The admin
    /// hands each to the dead-letter handler as a `DeadEnvelope`, or logs it.
    DeadLetters {
        target: Address,
        /// Who sent them: the reporting endpoint for its own messages that came back, or
        /// the sender of messages that reached the reporter too late (an answer whose
        /// request timed out) or found its mailbox full.
        sender: Address,
        messages: Vec<Payload>,
    },
    /// Client: describe the system and its actors (those gone for good too, if
    /// `include_gone`). Answered by [`FromAdmin::Description`].
    Describe { request: u64, include_gone: bool },
    /// Set (`Some`) or remove (`None`) one of the system's capabilities. The admin tells every
    /// host and client the new set ([`FromAdmin::CapabilitiesChanged`]).
    UpdateCapability { key: String, value: Option<Payload> },
    /// The other members of the convention and their capabilities, for placing an actor.
    /// Answered by [`FromAdmin::ConventionMembers`].
    ConventionMembers { request: u64 },
}

/// Admin → host or client, on a control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromAdmin {
    /// To a client: your endpoint address and the system's runtime directory.
    ClientWelcome {
        address: Address,
        runtime_dir: String,
        max_frame: u32,
        /// The system's capabilities now.
        capabilities: crate::Capabilities,
    },
    /// To a new host: the actor you host.
    Start {
        actor: Address,
        incarnation: u32,
        type_name: String,
        parent: Option<Address>,
        runtime_dir: String,
        max_frame: u32,
        /// Bytes of unprocessed messages the actor may have outstanding to one receiver.
        send_window: u64,
        /// The system's capabilities now.
        capabilities: crate::Capabilities,
        /// What the actor's creator required (see [`ToAdmin::CreateActor`]).
        requirements: crate::Capabilities,
        /// What its creator decided for it (clamped by the admin). Boxed: a host's inbox
        /// holds control frames beside its messages, and should not grow for this one.
        spec: Box<crate::ChildSpec>,
        /// What is left of `spec.lifetime`, which counts from the actor's creation.
        lifetime_left: Option<std::time::Duration>,
        /// Wakeups an earlier incarnation set that have not fired: re-armed at their due
        /// times (at once if passed).
        wakeups: Vec<PendingWakeup>,
    },
    /// The answer to [`ToAdmin::CreateActor`].
    Created {
        request: u64,
        result: Result<Address, CreateFailure>,
    },
    /// The answer to [`ToAdmin::ActorStatus`].
    Status {
        request: u64,
        actor: Address,
        state: ActorState,
        /// The host process serving the actor now, if any.
        pid: Option<u32>,
        /// The current incarnation (1 for the first process, +1 per restart).
        incarnation: u32,
        /// For a settle query: what the dead incarnation did with the asker's messages.
        recovery: Option<Recovery>,
        /// For a settle query about an actor of another member: nobody can say what it
        /// processed (a link broke while it lived), so `state` (`Unknown`) is not final:
        /// what was on the wire is in doubt, and what was not can still be sent.
        in_doubt: bool,
    },
    /// A system notice for the actor (e.g. `ChildActorExited`), from `sender`.
    Deliver { sender: Address, payload: Payload },
    /// To an exiting host: all its children are gone; finish and exit.
    ExitNow,
    /// The answer to [`ToAdmin::Shutdown`]: every actor is stopped.
    ShutdownComplete { request: u64 },
    /// The answer to [`ToAdmin::Describe`].
    Description {
        request: u64,
        system: Box<SystemDescription>,
    },
    /// To every host and client: the system's capabilities changed; this is the new set.
    CapabilitiesChanged { capabilities: crate::Capabilities },
    /// The answer to [`ToAdmin::ConventionMembers`]: each live member, by advertised
    /// address (none in no convention).
    ConventionMembers {
        request: u64,
        members: Vec<ConventionMember>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_frame, frame::decode, FrameReader, DEFAULT_MAX_FRAME};
    use proptest::prelude::*;

    fn round_trip<T>(value: &T) -> T
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let mut buf = Vec::new();
        encode_frame(&mut buf, value, DEFAULT_MAX_FRAME, "value").unwrap();
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
        r.push(&buf);
        decode(r.next_frame().unwrap().unwrap(), "value").unwrap()
    }

    fn arb_address() -> impl Strategy<Value = Address> {
        (any::<u32>(), any::<u64>()).prop_map(|(n, id)| Address { node: NodeId(n), id })
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        (".{0,40}", proptest::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(tag, bytes)| Payload { tag: tag.into(), bytes })
    }

    proptest! {
        #[test]
        fn data_frames_round_trip(seq in any::<u64>(), id in any::<u64>(), kind in 0u8..4, payload in arb_payload()) {
            let correlation = match kind {
                0 => Correlation::None,
                1 => Correlation::Request(id),
                2 => Correlation::Ask(id),
                _ => Correlation::Reply(id),
            };
            let f = DataFrame::Message { seq, correlation, payload };
            prop_assert_eq!(round_trip(&f), f);
        }

        #[test]
        fn control_frames_round_trip(request in any::<u64>(), actor in arb_address(), payload in arb_payload(), name in ".{0,30}") {
            let frames = vec![
                FromAdmin::Created { request, result: Ok(actor) },
                FromAdmin::Created { request, result: Err(CreateFailure::UnknownType { type_name: name.clone(), known: vec![name.clone()] }) },
                FromAdmin::Status { request, actor, state: ActorState::Gone(ExitCause::Signal { signal: 9, core_dumped: false }), pid: Some(7), incarnation: 2, recovery: Some(Recovery { processed_upto: Some(3), in_flight: None, cause: ExitCause::Normal }), in_doubt: false },
                FromAdmin::Deliver { sender: actor, payload },
                FromAdmin::Start { actor, incarnation: 1, type_name: name.clone(), parent: Some(actor), runtime_dir: name, max_frame: 7, send_window: 9, capabilities: crate::Capabilities::new().with("k", &1u8).unwrap(), requirements: crate::Capabilities::new().with("gpu", &true).unwrap(), spec: Box::new(crate::ChildSpec { idle_timeout: Some(std::time::Duration::from_millis(5)), ..Default::default() }), lifetime_left: Some(std::time::Duration::from_secs(3)), wakeups: vec![PendingWakeup { id: 3, due_ns: 17, delay: std::time::Duration::from_millis(2), payload: Payload { tag: "t".into(), bytes: vec![1] } }] },
            ];
            for f in frames {
                prop_assert_eq!(round_trip(&f), f);
            }
            let t = ToAdmin::ActorStatus { request, actor, settle: Some(4) };
            prop_assert_eq!(round_trip(&t), t);
            let set = ToAdmin::WakeupSet(PendingWakeup { id: request, due_ns: request / 2, delay: std::time::Duration::from_nanos(request), payload: Payload { tag: "w".into(), bytes: vec![7] } });
            prop_assert_eq!(round_trip(&set), set);
        }

        #[test]
        fn garbage_bodies_are_decode_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 1..256)) {
            let _ = decode::<DataFrame>(&bytes, "data frame");
            let _ = decode::<DataReply>(&bytes, "data reply");
            let _ = decode::<ToAdmin>(&bytes, "control frame");
            let _ = decode::<FromAdmin>(&bytes, "control frame");
        }
    }

    #[test]
    fn borrowed_encoding_matches_owned() {
        let payload = Payload {
            tag: "t".into(),
            bytes: vec![1, 2, 3],
        };
        let mut a = Vec::new();
        let correlation = Correlation::Request(7);
        DataFrame::encode_message(&mut a, 9, correlation, &payload, DEFAULT_MAX_FRAME).unwrap();
        let mut b = Vec::new();
        let owned = DataFrame::Message {
            seq: 9,
            correlation,
            payload,
        };
        encode_frame(&mut b, &owned, DEFAULT_MAX_FRAME, "x").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn address_display() {
        assert_eq!(Address::local(3).to_string(), "@3");
        assert_eq!(Address { node: NodeId(2), id: 5 }.to_string(), "@2.5");
    }
}
