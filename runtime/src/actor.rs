//! What a user writes: the [`Actor`] trait, and the [`Context`] its `receive` acts through.
//!
//! An actor handles one message at a time. Whatever it sends during `receive` is buffered
//! and written when `receive` returns — a natural batching point — so `send` itself never
//! blocks; a send past the receiver's window fails with `Error::Backpressure` instead.
//!
//! ```
//! use greenroom::{Actor, ActorResult, Address, AnyMessage, Context};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Actor for Hello {
//!     fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
//!         if msg.is::<String>() {
//!             ctx.send(sender, "Hello, World!".to_string())?;
//!         }
//!         Ok(())
//!     }
//! }
//! ```

use std::time::Duration;

use greenroom_protocol::{Address, Capabilities, ChildSpec, ConventionMember, Correlation, NodeId, Payload};

use crate::{
    actor_ref::{ActorRef, Answers, Recipient},
    error::{Error, Result},
    message::{AnyMessage, Message},
    request::{is_unit, Later, ReplyTo, Request, RequestId, RequestKind},
};

/// What `receive` (and a [`Handle`](crate::Handle), with its answer as `T`) returns. An
/// error counts like a panic: the message is retried once, then returned to its sender as a
/// [`crate::PoisonMessage`].
pub type ActorResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An actor: state plus a `receive` that reacts to one message at a time.
///
/// Register each actor type in a [`Registry`] so that hosts can construct it by name.
pub trait Actor: Send + 'static {
    /// Handles one message from `sender`.
    ///
    /// `msg` is borrowed because a failed message is offered once more before it is returned
    /// to its sender; use [`AnyMessage::downcast`] to decode it.
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult;

    /// Whether this actor type may run on a system with `capabilities`, given the
    /// `requirements` its creator passed (empty for a plain create) — Thespian's
    /// `actorSystemCapabilityCheck`. Checked in the creating process before every typed
    /// create; a refusal is [`Error::NoCompatibleSystem`]. The default accepts any system.
    ///
    /// ```
    /// use greenroom::{Actor, ActorResult, Address, AnyMessage, Capabilities, Context};
    /// #[derive(Default)]
    /// struct Trainer;
    /// impl Actor for Trainer {
    ///     fn receive(&mut self, _: &mut Context<'_>, _: &AnyMessage, _: Address) -> ActorResult { Ok(()) }
    ///
    ///     // `u64`: what `greenroom start --capability gpus=2` stores for a number.
    ///     fn accepts(capabilities: &Capabilities, requirements: &Capabilities) -> bool {
    ///         let gpus = capabilities.get::<u64>("gpus").unwrap_or(0);
    ///         gpus >= requirements.get::<u64>("gpus").unwrap_or(1)
    ///     }
    /// }
    /// let lab = Capabilities::new().with("gpus", &2u64)?;
    /// assert!(Trainer::accepts(&lab, &Capabilities::new()));
    /// assert!(!Trainer::accepts(&lab, &Capabilities::new().with("gpus", &4u64)?));
    /// # Ok::<(), greenroom::ProtocolError>(())
    /// ```
    fn accepts(capabilities: &Capabilities, requirements: &Capabilities) -> bool
    where
        Self: Sized,
    {
        let _ = (capabilities, requirements);
        true
    }

    /// `Some` makes every typed create of this type (`create_actor::<Self>()` and its
    /// variants) create a [troupe](crate::troupe) of such actors behind one address instead
    /// of a single actor. The default, `None`, creates one actor.
    fn troupe() -> Option<crate::Troupe>
    where
        Self: Sized,
    {
        None
    }

    /// Whether the base should leave `msg` in the mailbox, unprocessed and unacknowledged, for
    /// now (a troupe manager with no free worker). Held messages are offered again, oldest
    /// first, after each `receive`; a later message of a sender with a message held waits
    /// behind it (per-sender order), unless the actor lets it [overtake](Actor::overtakes).
    #[doc(hidden)]
    fn holds_back(&self, msg: &AnyMessage) -> bool {
        let _ = msg;
        false
    }

    /// Whether `msg` may be processed ahead of its sender's held messages (a troupe worker's
    /// "free" notice, which must reach the manager even while work the worker sent to its own
    /// troupe waits).
    #[doc(hidden)]
    fn overtakes(&self, msg: &AnyMessage) -> bool {
        let _ = msg;
        false
    }

    /// A troupe manager's load, recorded for `greenroom status` after each `receive`.
    #[doc(hidden)]
    fn troupe_load(&self) -> Option<greenroom_protocol::TroupeLoad> {
        None
    }
}

/// The registered type a typed create of `A` starts: `A`, or its troupe manager when `A`
/// declares a troupe.
pub(crate) fn created_type_name<A: Actor>() -> &'static str {
    match A::troupe() {
        Some(_) => crate::troupe::manager_type_name::<A>(),
        None => actor_type_name::<A>(),
    }
}

/// The members whose capabilities `A`'s check accepts for `requirements`, and which are
/// not known to lack `type_name`, least loaded first (ties in the order given, that of
/// their addresses): where a typed create goes when this system does not qualify
/// (Thespian's placement; the target's host checks again at start).
pub(crate) fn members_accepting<A: Actor>(
    members: &[ConventionMember],
    type_name: &str,
    requirements: &Capabilities,
) -> Vec<NodeId> {
    let mut fit: Vec<&ConventionMember> = members
        .iter()
        .filter(|m| A::accepts(&m.capabilities, requirements))
        .filter(|m| {
            m.types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == type_name))
        })
        .collect();
    fit.sort_by_key(|m| m.load);
    fit.into_iter().map(|m| m.node).collect()
}

/// A typed create this system does not qualify for: tried on each member that qualifies
/// ([`members_accepting`]) until one creates it; `refused` if none qualifies, else the
/// last member's error. The one placement rule of `ActorSystem` and `Context`.
pub(crate) fn create_on_a_member<A: Actor>(
    members: &[ConventionMember],
    type_name: &str,
    requirements: &Capabilities,
    refused: Error,
    mut create_on: impl FnMut(NodeId) -> Result<Address>,
) -> Result<Address> {
    let mut last = None;
    for node in members_accepting::<A>(members, type_name, requirements) {
        match create_on(node) {
            Ok(address) => return Ok(address),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(refused))
}

/// Runs `A`'s capability check against a system's capabilities.
pub(crate) fn check_capabilities<A: Actor>(capabilities: &Capabilities, requirements: &Capabilities) -> Result<()> {
    if A::accepts(capabilities, requirements) {
        return Ok(());
    }
    Err(no_compatible_system::<A>(capabilities, requirements))
}

/// The error of a typed create that no system qualifies for.
pub(crate) fn no_compatible_system<A: Actor>(capabilities: &Capabilities, requirements: &Capabilities) -> Error {
    Error::NoCompatibleSystem {
        type_name: actor_type_name::<A>().to_owned(),
        capabilities: capabilities.keys().map(str::to_owned).collect(),
        requirements: requirements.keys().map(str::to_owned).collect(),
    }
}

/// The name an actor type is registered and created under: its Rust type name.
pub fn actor_type_name<A: Actor>() -> &'static str {
    std::any::type_name::<A>()
}

/// What a base provides to `receive`: the process host (`greenroom-host`) or the simple,
/// in-process base ([`crate::system`]).
///
/// Users do not implement this; it is the seam that lets the same actor code run on every
/// base.
pub trait Backend {
    /// Queues an encoded message for `to`, to be written when `receive` returns, with its
    /// correlation (an answer's, or none).
    fn send(&mut self, to: Address, msg: AnyMessage, correlation: Correlation) -> Result<()>;
    /// Sends `msg` to `to` as a request of `kind`, whose answer (or timeout, after
    /// `timeout`) this actor receives later as a `Response`: never blocks.
    fn request(&mut self, to: Address, msg: AnyMessage, kind: RequestKind, timeout: Duration) -> Result<RequestId>;
    /// Creates a child actor of the registered type `type_name`, supervised as `spec` says,
    /// and returns its address at once; messages to it wait until it is up.
    /// `requirements` are what the creator required of the system (empty for a plain
    /// create); the child's base checks them again whenever the capabilities change.
    fn create_actor(
        &mut self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address>;
    /// Delivers `WakeupMessage { delay, payload }` to this actor after `delay`.
    fn wakeup_after(&mut self, delay: std::time::Duration, payload: AnyMessage) -> Result<()>;
    /// Makes this actor the system's dead-letter handler (`start`), or stops it being one.
    fn handle_dead_letters(&mut self, start: bool) -> Result<()>;
    /// Starts or stops convention updates for this actor.
    fn notify_on_convention_changes(&mut self, on: bool) -> Result<()>;
    /// The system's capabilities as this base last heard them.
    fn capabilities(&self) -> &Capabilities;
    /// Sets (`Some`) or removes one of the system's capabilities.
    fn update_capability(&mut self, key: &str, value: Option<Payload>) -> Result<()>;
    /// Sets or clears a troupe worker's work-in-progress mark.
    fn set_work_in_progress(&mut self, on: bool) -> Result<()>;
    /// Sends a troupe manager's hand-off, past the send window: hand-offs are bounded by the
    /// troupe's prefetch, and a manager must not fail one for acks that lag behind.
    fn hand_off(&mut self, to: Address, msg: AnyMessage) -> Result<()>;
    /// How many messages this actor holds back (see `Actor::holds_back`).
    fn held_back(&self) -> usize;
    /// The other members of the system's convention, their capabilities and loads (how
    /// many actors each runs), in the order of their addresses: none outside a convention
    /// (and on the simple base).
    fn convention_members(&mut self) -> Result<Vec<ConventionMember>> {
        Ok(Vec::new())
    }
    /// Creates a child of the registered type `type_name` on the convention's member of
    /// node `node` (chosen by the type's capability check).
    fn create_actor_on(
        &mut self,
        node: NodeId,
        type_name: &str,
        spec: ChildSpec,
        requirements: &Capabilities,
    ) -> Result<Address> {
        let _ = (node, spec, requirements);
        Err(Error::Create {
            type_name: type_name.to_owned(),
            failure: greenroom_protocol::CreateFailure::Remote("this base is in no convention".into()),
        })
    }
}

/// The actor's handle on the system during one `receive` call.
pub struct Context<'a> {
    me: Address,
    backend: &'a mut dyn Backend,
    /// The sender of the message being handled.
    sender: Address,
    /// Whether that message is a request or an ask, whose answer goes back correlated.
    correlation: Correlation,
    /// An answer to it has been sent or handed to a [`ReplyTo`].
    answered: bool,
}

impl<'a> Context<'a> {
    /// A context for the actor at `me`, acting through `backend`, while it handles a message
    /// from `sender` that came with `correlation`. Called by the bases.
    #[doc(hidden)]
    pub fn new(me: Address, backend: &'a mut dyn Backend, sender: Address, correlation: Correlation) -> Self {
        Context {
            me,
            backend,
            sender,
            correlation,
            answered: false,
        }
    }

    /// This actor's own address.
    pub fn my_address(&self) -> Address {
        self.me
    }

    /// Sends `msg` to `to`: an [`Address`], or an [`ActorRef`] whose actor handles `M`.
    /// Messages from one sender to one receiver arrive in order.
    pub fn send<M: Message>(&mut self, to: impl Recipient<M>, msg: M) -> Result<()> {
        let msg = AnyMessage::new(&msg)?;
        self.backend.send(to.to_address(), msg, Correlation::None)
    }

    /// Asks `actor` to stop (sends it [`ActorExitRequest`](crate::ActorExitRequest)): the
    /// same as `send(address, ActorExitRequest)`, for an [`ActorRef`] of any type.
    pub fn stop(&mut self, actor: impl Into<Address>) -> Result<()> {
        self.send(actor.into(), crate::ActorExitRequest)
    }

    /// Sends an already-encoded message (e.g. forwards one received).
    pub fn send_any(&mut self, to: Address, msg: AnyMessage) -> Result<()> {
        self.backend.send(to, msg, Correlation::None)
    }

    /// Sends the request `msg` to `to` without waiting: the answer arrives later as a
    /// [`Response<M>`](crate::Response) message with the returned id (its sender is `to`), or, if
    /// none comes within `timeout`, a `Response` whose `result` says why (timed out, failed on
    /// by the receiver, receiver gone, in doubt). Exactly one `Response` arrives per request
    /// while this actor's process lives; an answer that comes later is a dead letter, and so
    /// is one for a request of an earlier incarnation of this actor.
    ///
    /// Two actors that request from each other never block: each goes on with its mailbox.
    ///
    /// ```
    /// use greenroom::{dispatch, ActorResult, Address, Context, Handle, Request, Response};
    /// use std::time::Duration;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Count(String);
    /// # impl Request for Count { type Reply = usize; }
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Tally { counter: Address, text: String }
    ///
    /// #[derive(Default)]
    /// struct Aggregator { total: usize }
    ///
    /// impl Handle<Tally> for Aggregator {
    ///     type Reply = ();
    ///     fn handle(&mut self, ctx: &mut Context<'_>, t: Tally, _: Address) -> ActorResult {
    ///         ctx.request(t.counter, Count(t.text), Duration::from_secs(5))?;
    ///         Ok(()) // back to the mailbox; the answer comes as a Response<Count>
    ///     }
    /// }
    /// impl Handle<Response<Count>> for Aggregator {
    ///     type Reply = ();
    ///     fn handle(&mut self, _: &mut Context<'_>, reply: Response<Count>, _: Address) -> ActorResult {
    ///         self.total += reply.into_result()?; // names the request if it failed
    ///         Ok(())
    ///     }
    /// }
    /// dispatch!(Aggregator { Tally, Response<Count> });
    /// ```
    pub fn request<M: Request>(&mut self, to: impl Answers<M>, msg: M, timeout: Duration) -> Result<RequestId> {
        let msg = AnyMessage::new(&msg)?;
        self.backend
            .request(to.to_address(), msg, RequestKind::of::<M>(), timeout)
    }

    /// Answers the message being handled, to its sender: correlated with it if it is a
    /// request or an ask (so that it reaches that call), as a plain message otherwise (what
    /// Thespian's `ask` takes). Only the first answer to a message is sent; a second one is
    /// logged and dropped.
    ///
    /// A [`Handle`](crate::Handle) answers by returning its reply instead; `reply` is for a
    /// hand-written `receive`.
    pub fn reply<R: Message>(&mut self, value: R) -> Result<()> {
        let to = ReplyTo::<R>::new(self.sender, self.correlation);
        if std::mem::replace(&mut self.answered, true) {
            tracing::warn!(actor = %self.me, to = %self.sender, reply_type = R::type_tag(),
                "a second answer to the same message was not sent: only the first one is");
            return Ok(());
        }
        self.answer(to, value)
    }

    /// Takes the answer to the message being handled into the actor's own hands: the
    /// [`ReplyTo`] answers it later, from this actor ([`Context::answer`]) or from any other
    /// it is sent to; a [`Handle`](crate::Handle) returns the [`Later`] as its reply, which
    /// sends nothing now.
    ///
    /// ```
    /// use greenroom::{ActorResult, Address, Context, Handle, Later, Request, ReplyTo};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Lookup(String);
    /// # impl Request for Lookup { type Reply = Option<String>; }
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Fetch { key: String, answer: ReplyTo<Option<String>> }
    /// struct Front { backend: Address }
    /// impl Handle<Lookup> for Front {
    ///     type Reply = Later<Option<String>>;
    ///     fn handle(&mut self, ctx: &mut Context<'_>, Lookup(key): Lookup, _: Address) -> ActorResult<Self::Reply> {
    ///         let (later, answer) = ctx.reply_later();
    ///         // The backend answers the original requester itself, with `ctx.answer(answer, value)`.
    ///         ctx.send(self.backend, Fetch { key, answer })?;
    ///         Ok(later)
    ///     }
    /// }
    /// ```
    pub fn reply_later<R: Message>(&mut self) -> (Later<R>, ReplyTo<R>) {
        self.answered = true;
        (Later::new(), ReplyTo::new(self.sender, self.correlation))
    }

    /// Sends the answer a [`ReplyTo`] stands for (see [`Context::reply_later`]).
    pub fn answer<R: Message>(&mut self, to: ReplyTo<R>, value: R) -> Result<()> {
        match to.route(is_unit::<R>()) {
            Some((address, correlation)) => self.backend.send(address, AnyMessage::new(&value)?, correlation),
            None => Ok(()),
        }
    }

    /// What [`dispatch!`](macro@crate::dispatch) does with a handler's return value: answer a
    /// request or an ask (not a plain message), unless the handler already did.
    #[doc(hidden)]
    pub fn answer_current<R: Message>(&mut self, value: R) -> Result<()> {
        if self.correlation.request_id().is_none() || self.answered {
            return Ok(());
        }
        self.reply(value)
    }

    /// Whether the message being handled is a request or an ask, or an answer.
    #[doc(hidden)]
    pub fn correlation(&self) -> Correlation {
        self.correlation
    }

    /// The answer to the message being handled is someone else's to give (a troupe manager
    /// handing a request to a worker, which answers its requester directly).
    pub(crate) fn pass_on_answer(&mut self) {
        self.answered = true;
    }

    /// The id of the request being handled if nothing answered it (nor took the answer in
    /// hand): the base then answers it with [`Unanswered`](crate::message::Unanswered), so
    /// that it fails at once rather than time out.
    #[doc(hidden)]
    pub fn unanswered_request(&self) -> Option<u64> {
        match self.correlation {
            Correlation::Request(id) if !self.answered => Some(id),
            _ => None,
        }
    }

    /// Sends `msg` with a correlation of the caller's choosing (a troupe manager returning a
    /// request that a worker died on to its requester, as that request's answer).
    pub(crate) fn send_correlated<M: Message>(&mut self, to: Address, msg: M, correlation: Correlation) -> Result<()> {
        self.backend.send(to, AnyMessage::new(&msg)?, correlation)
    }

    /// Creates a child actor of type `A` with the default [`ChildSpec`] (permanent, restarted
    /// on failure). This actor becomes its supervisor: it receives
    /// [`crate::ChildRestarted`] when the child is restarted and
    /// [`crate::ChildActorExited`] when it is gone for good.
    ///
    /// Fails with [`Error::NoCompatibleSystem`] if `A`'s [`Actor::accepts`] refuses the
    /// system's capabilities.
    pub fn create_actor<A: Actor>(&mut self) -> Result<ActorRef<A>> {
        self.create_checked::<A>(
            created_type_name::<A>(),
            ChildSpec::default(),
            None,
            &Capabilities::new(),
        )
        .map(ActorRef::from_address)
    }

    /// Creates a child actor of type `A` if `A`'s [`Actor::accepts`] takes this system for
    /// `requirements` (Thespian's `targetActorRequirements`); else
    /// [`Error::NoCompatibleSystem`]. Placement on other systems comes with conventions.
    pub fn create_actor_requiring<A: Actor>(&mut self, requirements: &Capabilities) -> Result<ActorRef<A>> {
        self.create_checked::<A>(created_type_name::<A>(), ChildSpec::default(), None, requirements)
            .map(ActorRef::from_address)
    }

    /// Creates `type_name` (`A` itself, or `A`'s troupe manager) if `A` accepts the system.
    fn create_checked<A: Actor>(
        &mut self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> Result<Address> {
        if A::accepts(self.backend.capabilities(), requirements) {
            return self.backend.create_actor(type_name, spec, global_name, requirements);
        }
        // A named actor is this system's: it is not placed elsewhere.
        let refused = no_compatible_system::<A>(self.backend.capabilities(), requirements);
        if global_name.is_some() {
            return Err(refused);
        }
        let members = self.backend.convention_members()?;
        create_on_a_member::<A>(&members, type_name, requirements, refused, |node| {
            self.backend.create_actor_on(node, type_name, spec, requirements)
        })
    }

    /// Creates a child [troupe](crate::troupe) of `A` workers with these settings (whatever
    /// `A` declares), and returns the troupe's address. `spec` is the manager's: its
    /// `supervision` bounds how often workers may be restarted.
    pub fn create_troupe<A: Actor>(&mut self, settings: crate::Troupe, spec: ChildSpec) -> Result<ActorRef<A>> {
        let manager = crate::troupe::manager_type_name::<A>();
        let troupe = self.create_checked::<A>(manager, spec, None, &Capabilities::new())?;
        self.send(troupe, crate::troupe::ConfigureTroupe(settings))?;
        Ok(ActorRef::from_address(troupe))
    }

    /// In a troupe worker: `true` keeps this worker busy after `receive` returns, so that its
    /// troupe hands it nothing new (and does not stop it for idleness) until it calls this
    /// again with `false` — for work that spans several messages. Outside a troupe it does
    /// nothing.
    pub fn set_work_in_progress(&mut self, on: bool) -> Result<()> {
        self.backend.set_work_in_progress(on)
    }

    /// Creates one actor of type `A` even if `A` declares a troupe: a troupe's worker.
    pub(crate) fn create_worker<A: Actor>(&mut self, spec: ChildSpec) -> Result<Address> {
        self.create_checked::<A>(actor_type_name::<A>(), spec, None, &Capabilities::new())
    }

    /// A troupe manager's hand-off to a worker (see [`Backend::hand_off`]).
    pub(crate) fn hand_off<M: Message>(&mut self, to: Address, msg: &M) -> Result<()> {
        let msg = AnyMessage::new(msg)?;
        self.backend.hand_off(to, msg)
    }

    /// How many messages this actor's base holds back for it (a troupe manager's queue).
    #[doc(hidden)]
    pub fn held_back(&self) -> usize {
        self.backend.held_back()
    }

    /// The actor of type `A` known system-wide as `name`: if a live actor holds the name
    /// (whatever its type), its address; otherwise a new top-level actor that takes the name.
    /// A named actor belongs to the system, not to its creator (no notices reach the
    /// creator); the name survives restarts and is freed when the actor is gone for good.
    pub fn create_actor_global<A: Actor>(&mut self, name: &str) -> Result<Address> {
        self.create_checked::<A>(
            created_type_name::<A>(),
            ChildSpec::default(),
            Some(name),
            &Capabilities::new(),
        )
    }

    /// Creates a child actor of type `A`, supervised as `spec` says.
    ///
    /// ```
    /// # use greenroom::{Context, ChildSpec, RestartType, Strategy, SupervisorSpec};
    /// # fn example(ctx: &mut Context<'_>) -> greenroom::Result<()> {
    /// # #[derive(Default)] struct Worker;
    /// # impl greenroom::Actor for Worker {
    /// #     fn receive(&mut self, _: &mut Context<'_>, _: &greenroom::AnyMessage, _: greenroom::Address) -> greenroom::ActorResult { Ok(()) }
    /// # }
    /// let spec = ChildSpec { restart: RestartType::Transient, ..ChildSpec::default() };
    /// let worker = ctx.create_actor_with::<Worker>(spec)?;
    /// # let _ = worker; Ok(()) }
    /// ```
    pub fn create_actor_with<A: Actor>(&mut self, spec: ChildSpec) -> Result<ActorRef<A>> {
        self.create_checked::<A>(created_type_name::<A>(), spec, None, &Capabilities::new())
            .map(ActorRef::from_address)
    }

    /// Asks for a [`crate::WakeupMessage`] carrying `payload` to be delivered to this actor
    /// (with itself as sender) after `delay`. Any number can be pending at once; they are
    /// delivered in time order, and dropped when the actor exits. They survive a crash: if
    /// the actor's process dies and it is restarted, its pending wakeups fire in the new
    /// incarnation at their original due times (at once if that passed while it was down),
    /// each at most once (one whose `receive` killed the process is not delivered again, and
    /// one set by a `receive` that never returned goes with it).
    ///
    /// ```
    /// # use greenroom::{Actor, ActorResult, Address, AnyMessage, Context, WakeupMessage};
    /// # use std::time::Duration;
    /// #[derive(Default)]
    /// struct Ticker;
    /// impl Actor for Ticker {
    ///     fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
    ///         if let Some(tick) = msg.downcast::<WakeupMessage>() {
    ///             // ... periodic work ...
    ///             ctx.wakeup_after(tick.delay, tick.payload)?; // and again
    ///         } else if msg.is::<String>() {
    ///             ctx.wakeup_after(Duration::from_secs(1), "tick".to_string())?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn wakeup_after<P: Message>(&mut self, delay: std::time::Duration, payload: P) -> Result<()> {
        let payload = AnyMessage::new(&payload)?;
        self.backend.wakeup_after(delay, payload)
    }

    /// Makes this actor the system's dead-letter handler: it receives a
    /// [`crate::DeadEnvelope`] for every message sent to an actor that is gone for good.
    /// There is one handler per system and the last to register wins; `false` stops this
    /// actor being the handler (and does nothing if it is not). Without a handler, dead
    /// letters are logged by the admin with their target, sender and type.
    pub fn handle_dead_letters(&mut self, start: bool) -> Result<()> {
        self.backend.handle_dead_letters(start)
    }

    /// `true`: this actor receives a [`crate::ActorSystemConventionUpdate`] for each member
    /// of the system's convention now, and for every later join, capability change and
    /// departure (Thespian's `notifyOnSystemRegistrationChanges`); `false` stops them. A
    /// system in no convention sends none.
    pub fn notify_on_convention_changes(&mut self, on: bool) -> Result<()> {
        self.backend.notify_on_convention_changes(on)
    }

    /// Creates a child actor by registered type name. (Without the type, no capability
    /// check runs.)
    pub fn create_actor_named(&mut self, type_name: &str, spec: ChildSpec) -> Result<Address> {
        self.backend.create_actor(type_name, spec, None, &Capabilities::new())
    }

    /// The system's capabilities, as this actor's process last heard them (changes reach
    /// every process shortly after they are made).
    pub fn capabilities(&self) -> &Capabilities {
        self.backend.capabilities()
    }

    /// Sets one of the system's capabilities (Thespian's `updateCapability`); every process
    /// of the system hears of it, and every running actor whose [`Actor::accepts`] then
    /// refuses the system (this one included) is asked to exit.
    pub fn update_capability<T: serde::Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        let value = greenroom_protocol::capabilities::encode_value(value).map_err(Error::Capability)?;
        self.backend.update_capability(key, Some(value))
    }

    /// Removes one of the system's capabilities.
    pub fn remove_capability(&mut self, key: &str) -> Result<()> {
        self.backend.update_capability(key, None)
    }
}

type Factory = std::sync::Arc<dyn Fn() -> Box<dyn Actor> + Send + Sync>;

/// An actor type's capability check, [`Actor::accepts`]: (capabilities, requirements).
pub type CapabilityCheck = fn(&Capabilities, &Capabilities) -> bool;

/// The actor types a host binary can run, by name.
///
/// ```
/// use greenroom::{Actor, ActorResult, Address, AnyMessage, Context, Registry};
/// #[derive(Default)]
/// struct Echo;
/// impl Actor for Echo {
///     fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
///         ctx.send_any(sender, msg.clone())?;
///         Ok(())
///     }
/// }
/// let registry = Registry::new().register::<Echo>();
/// assert!(registry.contains(greenroom::actor_type_name::<Echo>()));
/// ```
///
/// Cloning a registry is cheap (the constructors are shared).
#[derive(Default, Clone)]
pub struct Registry {
    factories: std::collections::BTreeMap<String, Factory>,
    checks: std::collections::BTreeMap<String, CapabilityCheck>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `A`, constructed with `A::default()`.
    pub fn register<A: Actor + Default>(self) -> Self {
        self.register_with(A::default)
    }

    /// Registers `A`, constructed by `make` — and the manager of a [troupe](crate::troupe) of
    /// `A` workers, so that `A` can run as a troupe too.
    pub fn register_with<A: Actor>(mut self, make: impl Fn() -> A + Send + Sync + 'static) -> Self {
        self.factories.insert(
            actor_type_name::<A>().to_owned(),
            std::sync::Arc::new(move || Box::new(make()) as Box<dyn Actor>),
        );
        self.factories.insert(
            crate::troupe::manager_type_name::<A>().to_owned(),
            std::sync::Arc::new(|| {
                Box::new(crate::troupe::TroupeManager::<A>::new(A::troupe().unwrap_or_default())) as Box<dyn Actor>
            }),
        );
        // A troupe is created on `A`'s check, and stands or falls by it.
        self.checks.insert(actor_type_name::<A>().to_owned(), A::accepts);
        self.checks
            .insert(crate::troupe::manager_type_name::<A>().to_owned(), A::accepts);
        self
    }

    /// Whether the actor type `type_name` still accepts a system with `capabilities`, for the
    /// `requirements` its creator gave: Thespian's re-check of running actors after a
    /// capability change. An unregistered type is not refused here (it cannot be running).
    ///
    /// ```
    /// use greenroom::{Actor, ActorResult, Address, AnyMessage, Capabilities, Context, Registry};
    /// #[derive(Default)]
    /// struct Gpu;
    /// impl Actor for Gpu {
    ///     fn receive(&mut self, _: &mut Context<'_>, _: &AnyMessage, _: Address) -> ActorResult { Ok(()) }
    ///     fn accepts(capabilities: &Capabilities, _: &Capabilities) -> bool {
    ///         capabilities.get::<bool>("gpu") == Some(true)
    ///     }
    /// }
    /// let registry = Registry::new().register::<Gpu>();
    /// let name = greenroom::actor_type_name::<Gpu>();
    /// let none = Capabilities::new();
    /// assert!(registry.still_accepts(name, &Capabilities::new().with("gpu", &true)?, &none));
    /// assert!(!registry.still_accepts(name, &none, &none));
    /// # Ok::<(), greenroom::ProtocolError>(())
    /// ```
    pub fn still_accepts(&self, type_name: &str, capabilities: &Capabilities, requirements: &Capabilities) -> bool {
        self.checks
            .get(type_name)
            .is_none_or(|accepts| accepts(capabilities, requirements))
    }

    /// Whether `type_name` is registered.
    pub fn contains(&self, type_name: &str) -> bool {
        self.factories.contains_key(type_name)
    }

    /// The registered type names, sorted.
    pub fn type_names(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// Constructs an actor of the registered type, or `None` if the name is unknown.
    pub fn construct(&self, type_name: &str) -> Option<Box<dyn Actor>> {
        self.factories.get(type_name).map(|make| make())
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

/// The registry this program handed to `greenroom_host::init`, kept for the simple base,
/// which constructs actors in the calling process.
static PROGRAM_REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();

/// Records the program's registry (the first call wins). Called by `greenroom_host::init` in
/// a client program.
#[doc(hidden)]
pub fn set_program_registry(registry: &Registry) {
    let _ = PROGRAM_REGISTRY.set(registry.clone());
}

/// The registry recorded by [`set_program_registry`], if any.
pub(crate) fn program_registry() -> Option<Registry> {
    PROGRAM_REGISTRY.get().cloned()
}

/// The text of a caught panic's payload (a `&str` or `String` message, as `panic!` makes).
#[doc(hidden)]
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// The delivery rule both bases apply: `receive` gets a message up to twice under
/// `OnFailure::RetryOnce`, once under the other policies, and once only for
/// `ActorExitRequest` and `PoisonMessage`, which are never retried; `once(attempt)` runs one
/// call and says what went wrong. Returns the last failure if every attempt failed, and
/// whether the message may go back to its sender as poison (anything but those two).
#[doc(hidden)]
pub fn receive_with_retry(
    msg: &AnyMessage,
    on_failure: greenroom_protocol::OnFailure,
    mut once: impl FnMut(u32) -> std::result::Result<(), String>,
) -> Option<(String, bool)> {
    let returnable = !(msg.is::<crate::ActorExitRequest>() || msg.is::<crate::PoisonMessage>());
    let retried = returnable && on_failure == greenroom_protocol::OnFailure::RetryOnce;
    let attempts = if retried { 2 } else { 1 };
    let mut failure = None;
    for attempt in 1..=attempts {
        match once(attempt) {
            Ok(()) => return None,
            Err(details) => failure = Some(details),
        }
    }
    failure.map(|details| (details, returnable))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wants `gpus` of at least what is required (1 by default).
    struct Trainer;
    impl Actor for Trainer {
        fn receive(&mut self, _: &mut Context<'_>, _: &AnyMessage, _: Address) -> ActorResult {
            Ok(())
        }
        fn accepts(capabilities: &Capabilities, requirements: &Capabilities) -> bool {
            capabilities.get::<u64>("gpus").unwrap_or(0) >= requirements.get::<u64>("gpus").unwrap_or(1)
        }
    }

    fn member(node: u32, gpus: u64, load: u64, types: Option<&[&str]>) -> ConventionMember {
        ConventionMember {
            node: NodeId(node),
            capabilities: Capabilities::new().with("gpus", &gpus).unwrap(),
            load,
            types: types.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn placement_takes_members_that_qualify_and_may_have_the_type_least_loaded_first() {
        let name = actor_type_name::<Trainer>();
        let members = [
            member(1, 0, 0, None),               // no GPUs
            member(2, 4, 9, None),               // types not known yet: may have it
            member(3, 4, 0, Some(&["other"])),   // known not to have it
            member(4, 4, 5, Some(&[name, "x"])), // has it
            member(5, 2, 1, Some(&[name])),      // too few GPUs for 4
        ];
        let four = Capabilities::new().with("gpus", &4u64).unwrap();
        assert_eq!(
            members_accepting::<Trainer>(&members, name, &four),
            [NodeId(4), NodeId(2)]
        );
        assert_eq!(
            members_accepting::<Trainer>(&members, name, &Capabilities::new()),
            [NodeId(5), NodeId(4), NodeId(2)]
        );
        // Tried in that order until one creates it; the last error if none does.
        let mut tried = Vec::new();
        let refused = Error::UnknownActor(Address::local(0));
        let made = create_on_a_member::<Trainer>(&members, name, &four, refused, |node| {
            tried.push(node);
            if node == NodeId(2) {
                Ok(Address::new(node, 7))
            } else {
                Err(Error::AdminGone)
            }
        });
        assert_eq!(made.unwrap(), Address::new(NodeId(2), 7));
        assert_eq!(tried, [NodeId(4), NodeId(2)]);
        let none = Capabilities::new().with("gpus", &64u64).unwrap();
        let refused = Error::UnknownActor(Address::local(0));
        let err = create_on_a_member::<Trainer>(&members, name, &none, refused, |_| unreachable!()).unwrap_err();
        assert!(matches!(err, Error::UnknownActor(_)), "{err}");
    }
}
