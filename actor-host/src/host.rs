//! The host loop: one actor, one process, one thread.
//!
//! ```text
//! admin ──Start──▶ host constructs the actor ──HostReady──▶ admin
//! loop:
//!   pump sockets ─▶ for each message:
//!       ledger: busy(sender, seq) ─▶ receive (panic caught) ─▶ write what it sent
//!       ─▶ ledger: done(sender, seq) ─▶ acknowledge (batched)
//! ```
//!
//! Everything an actor sends during one `receive` leaves in one gathered write when the call
//! returns; the message is recorded as done only after that write, so a process killed in
//! between returns the message to its sender as poison rather than losing its replies.
//!
//! Fault rules, as Thespian's by default (`OnFailure::RetryOnce`): a `receive` that panics or
//! returns an error is given the same message once more; if it fails again the sender gets
//! [`PoisonMessage`] and the actor goes on with the next message, its state as the failed
//! call left it. `ActorExitRequest` and `PoisonMessage` are never retried. Under
//! `OnFailure::Poison` the message goes back at the first failure; under `OnFailure::Restart`
//! too, and then the process ends with status 4 once the message is recorded as processed,
//! after telling the admin why (`ToAdmin::ReceiveFailed`), so that the supervisor restarts
//! the actor with fresh state.

use std::{
    collections::VecDeque,
    os::fd::FromRawFd,
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    time::{Duration, Instant},
};

use greenroom::{
    actor::{panic_text, receive_with_retry},
    message::is_exit_traffic,
};
use greenroom::{
    ledger::{Ledger, LEDGER_FD},
    net::endpoint::{Endpoint, Inbound, LostCause, Receipt, Returned},
    process_role::{CONTROL_FD, EXIT_RECEIVE_FAILED, LISTENER_FD},
    request::{MadeUp, PendingRequests, RequestKind},
    troupe::{self, TroupeDone, TroupeWork, TroupeWorkInProgress, WorkerRole},
    ActorExitRequest, Address, AnyMessage, Backend, ChildActorExited, Context, CreateFailure, Error, PoisonMessage,
    Registry, RequestError, RequestId, WakeupMessage,
};
use greenroom_protocol::{
    Capabilities, ChildSpec, Correlation, FromAdmin, NodeId, OnFailure, Payload, PeerRole, ToAdmin, DEFAULT_MAX_FRAME,
};

use crate::{lifespan::Lifespan, wakeups::Wakeups};

const EXIT_OK: i32 = 0;
const EXIT_START_FAILED: i32 = 2;
const EXIT_ADMIN_GONE: i32 = 3;
const EXIT_INTERNAL: i32 = 70;

/// How long an actor's `create_actor` waits for the admin's answer.
const CREATE_TIMEOUT: Duration = Duration::from_secs(50);

/// How long an exiting troupe manager waits for the admin's word on its dead workers'
/// messages before its process ends.
const SETTLE_GRACE: Duration = Duration::from_secs(2);

/// How long a finishing host keeps trying to write what its actor sent.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

thread_local! {
    /// The last panic's message and location, recorded by the host's panic hook.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// Set on the host's loop thread, whose panics `catch_unwind` catches.
    static ON_HOST_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Replaces the default panic hook (which prints to stderr) with one that records the panic
/// for the `receive failed` log line and the `PoisonMessage` details.
///
/// A panic the host cannot catch is logged at once instead, as an error record (the default
/// hook's text would reach the log only as raw stderr): one on another thread of the actor,
/// one while an earlier panic is still unwinding (which aborts the process if it escapes a
/// destructor), and every panic when panics abort.
fn install_panic_hook() {
    // A flag of the loop's thread rather than its `ThreadId`: `thread::current()` costs a
    // host's start-up more pages than this does.
    ON_HOST_THREAD.with(|t| t.set(true));
    std::panic::set_hook(Box::new(move |info| {
        let text = match info.location() {
            Some(at) => format!("{} (at {}:{})", panic_text(info.payload()), at.file(), at.line()),
            None => panic_text(info.payload()),
        };
        let unwinding_from = LAST_PANIC.with(|p| p.borrow().clone());
        let on_host_thread = ON_HOST_THREAD.with(|t| t.get());
        if !on_host_thread || unwinding_from.is_some() || cfg!(panic = "abort") {
            let thread = std::thread::current();
            tracing::error!(thread = thread.name().unwrap_or("unnamed"), panic = %text,
                unwinding_from = unwinding_from.as_deref(), "a panic the actor host cannot catch");
        }
        if on_host_thread {
            let text = match unwinding_from {
                Some(first) => format!("{first}; then, while unwinding: {text}"),
                None => text,
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }
    }));
}

pub(crate) fn run(registry: &Registry) -> ! {
    greenroom::logging::init_host_logging();
    install_panic_hook();
    // SAFETY: fds 3, 4 and 5 are the control socket, the actor's listening socket and its
    // delivery ledger, put there by the admin that spawned this process (admin::spawn);
    // nothing else in this process owns them.
    let (control, listener, ledger) = unsafe {
        (
            std::os::unix::net::UnixStream::from_raw_fd(CONTROL_FD),
            std::os::unix::net::UnixListener::from_raw_fd(LISTENER_FD),
            std::os::fd::OwnedFd::from_raw_fd(LEDGER_FD),
        )
    };
    for fd in [CONTROL_FD, LISTENER_FD, LEDGER_FD] {
        // Keep them out of anything this actor spawns.
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    }
    let code = match Host::start(registry, control, listener, ledger) {
        Ok(Some(mut host)) => host.serve(),
        Ok(None) => EXIT_START_FAILED,
        Err(e) => {
            tracing::error!(error = %e, "actor host failed to start");
            EXIT_INTERNAL
        }
    };
    std::process::exit(code)
}

struct Host {
    /// Bytes of unprocessed messages the actor may have outstanding to one receiver.
    send_window: usize,
    endpoint: Endpoint,
    actor: Box<dyn greenroom::Actor>,
    me: Address,
    children: Vec<Address>,
    exiting: bool,
    /// Pending wakeups, earliest first (the admin keeps a copy: see `wakeups.rs`).
    wakeups: Wakeups,
    /// Messages the actor holds back for now (a troupe manager with no free worker), oldest
    /// first: read, but neither processed nor acknowledged.
    held: VecDeque<(Address, AnyMessage, Receipt, Correlation)>,
    /// The actor's requests waiting for their answers (`Context::request`).
    requests: PendingRequests<Instant>,
    /// `Response`s its requests made up (timeouts, messages that came back), to deliver in
    /// the loop like any message.
    made_up: VecDeque<MadeUp>,
    /// This actor's side of a troupe, if it works in one.
    worker: WorkerRole,
    /// What the actor's capability check is run again with when the capabilities change.
    fit: Fit,
    /// When a transient actor is to be asked to exit.
    lifespan: Lifespan,
    /// What a failed `receive` does (`ChildSpec::on_failure`).
    on_failure: OnFailure,
    /// Set when a `receive` failed under `OnFailure::Restart`: the process ends once the
    /// failed message is recorded as processed.
    failed: Option<String>,
}

/// An actor's capability check and what it was created with, for the re-check after a
/// capability change (Thespian's rule: an actor whose check refuses the new set is asked to
/// exit).
struct Fit {
    registry: Registry,
    type_name: String,
    requirements: Capabilities,
    /// The endpoint's capabilities version last checked.
    checked: u64,
}

impl Host {
    /// Handshakes with the admin, constructs the actor, reports ready. `Ok(None)` if the
    /// actor could not be constructed (the admin has been told why).
    fn start(
        registry: &Registry,
        control: std::os::unix::net::UnixStream,
        listener: std::os::unix::net::UnixListener,
        ledger: std::os::fd::OwnedFd,
    ) -> Result<Option<Host>, Error> {
        let mut endpoint = Endpoint::new(control, PeerRole::Host, DEFAULT_MAX_FRAME)?;
        let start = endpoint.wait_control(Duration::from_secs(30), |f| matches!(f, FromAdmin::Start { .. }))?;
        let FromAdmin::Start {
            actor: me,
            incarnation,
            type_name,
            runtime_dir,
            max_frame,
            send_window,
            capabilities,
            requirements,
            spec,
            lifetime_left,
            wakeups,
            ..
        } = start
        else {
            unreachable!("wait_control returned the frame it was asked for");
        };
        // The creator checked; this system checks again (a create placed from another
        // member, or a change since): a type that refuses it is not started here.
        let fits = registry.still_accepts(&type_name, &capabilities, &requirements);
        endpoint.set_capabilities(capabilities);
        LAST_PANIC.with(|p| p.borrow_mut().take());
        let constructed = if fits {
            catch_unwind(AssertUnwindSafe(|| registry.construct(&type_name)))
        } else {
            Ok(None)
        };
        let failure = match constructed {
            Ok(Some(actor)) => {
                let ledger = Ledger::map(ledger).map_err(Error::io("mapping the delivery ledger"))?;
                endpoint.attach(
                    me,
                    &PathBuf::from(runtime_dir),
                    max_frame,
                    listener,
                    Some((incarnation, ledger)),
                )?;
                endpoint.send_control(&ToAdmin::HostReady {
                    types: registry.type_names(),
                })?;
                tracing::debug!("actor host ready");
                return Ok(Some(Host {
                    send_window: usize::try_from(send_window).unwrap_or(usize::MAX),
                    endpoint,
                    actor,
                    me,
                    children: Vec::new(),
                    exiting: false,
                    wakeups: Wakeups::rearm(wakeups),
                    held: VecDeque::new(),
                    requests: PendingRequests::new(incarnation),
                    made_up: VecDeque::new(),
                    worker: WorkerRole::default(),
                    fit: Fit {
                        registry: registry.clone(),
                        type_name,
                        requirements,
                        checked: 0,
                    },
                    lifespan: Lifespan::new(lifetime_left, spec.idle_timeout),
                    on_failure: spec.on_failure,
                    failed: None,
                }));
            }
            Ok(None) if !fits => CreateFailure::StartFailed(format!(
                "this system's capabilities do not pass the capability check (Actor::accepts) of `{type_name}` for its requirements {:?}",
                requirements.keys().collect::<Vec<_>>()
            )),
            Ok(None) => CreateFailure::UnknownType {
                type_name: type_name.clone(),
                known: registry.type_names(),
            },
            Err(panic) => CreateFailure::StartFailed(format!("the constructor panicked: {}", last_panic_text(&*panic))),
        };
        tracing::error!(%failure, "cannot start the actor");
        endpoint.send_control(&ToAdmin::HostStartFailed { failure })?;
        endpoint.flush_blocking(Instant::now() + FINAL_FLUSH);
        Ok(None)
    }

    /// The main loop; returns the process exit code.
    fn serve(&mut self) -> i32 {
        // A transient actor restarted after its lifetime is over takes nothing else first.
        self.end_if_due();
        loop {
            while let Some(inbound) = self.endpoint.next_inbound() {
                match inbound {
                    Inbound::Message {
                        sender,
                        msg,
                        receipt,
                        correlation,
                    } => {
                        if let Err(e) = self.on_message(sender, msg, receipt, correlation) {
                            tracing::error!(error = %e, "host event loop failed");
                            return EXIT_INTERNAL;
                        }
                    }
                    Inbound::Control(FromAdmin::Deliver { sender, payload }) => {
                        self.deliver(sender, &AnyMessage::from_payload(payload), Correlation::None);
                        if let Err(e) = self.release_held() {
                            tracing::error!(error = %e, "host event loop failed");
                            return EXIT_INTERNAL;
                        }
                    }
                    Inbound::Control(FromAdmin::ExitNow) => {
                        self.take_back_hand_offs(Instant::now() + SETTLE_GRACE);
                        self.endpoint.flush_blocking(Instant::now() + FINAL_FLUSH);
                        tracing::debug!("actor exited");
                        return EXIT_OK;
                    }
                    Inbound::Control(other) => {
                        tracing::debug!(frame = ?other, "ignoring an unexpected control frame");
                    }
                    Inbound::PeerLost { peer, cause, returned } => self.on_peer_lost(peer, cause, returned),
                    Inbound::AdminLost => {
                        tracing::info!("the admin has gone; exiting");
                        return EXIT_ADMIN_GONE;
                    }
                }
                if let Some(details) = self.failed.take() {
                    return self.end_after_failure(details);
                }
            }
            self.recheck_capabilities();
            self.end_if_due();
            self.deliver_due_wakeups();
            self.deliver_made_up();
            if let Some(details) = self.failed.take() {
                return self.end_after_failure(details);
            }
            if let Err(e) = self.release_held() {
                tracing::error!(error = %e, "host event loop failed");
                return EXIT_INTERNAL;
            }
            self.endpoint.flush();
            let lifespan_end = self.lifespan.next_deadline().filter(|_| !self.exiting);
            let timeout = self
                .wakeups
                .next_due()
                .into_iter()
                .chain(lifespan_end)
                .chain(self.requests.next_due())
                .min()
                .map(|due| due.saturating_duration_since(Instant::now()));
            if let Err(e) = self.endpoint.pump(timeout) {
                tracing::error!(error = %e, "host event loop failed");
                return EXIT_INTERNAL;
            }
        }
    }

    /// A message from a peer: processed now, held for later, or (while exiting) left
    /// unprocessed.
    fn on_message(
        &mut self,
        sender: Address,
        msg: AnyMessage,
        receipt: Receipt,
        correlation: Correlation,
    ) -> Result<(), Error> {
        // The answer to one of the actor's requests becomes its `Response<M>`, processed in its
        // place among the sender's messages; an answer nothing waits for any more (its
        // request timed out, or was made by an earlier incarnation) is a dead letter.
        let msg = match correlation {
            Correlation::Reply(id) => match self.requests.answer(id, sender, msg) {
                Ok(response) => response,
                Err(late) => {
                    tracing::debug!(%sender, request = id, message_type = late.tag(),
                        "an answer to a request nothing waits for: a dead letter");
                    self.endpoint.dead_letters_from(sender, self.me, vec![late]);
                    self.endpoint.processed(receipt);
                    return Ok(());
                }
            },
            _ => msg,
        };
        if self.exiting && !is_exit_traffic(&msg) && !troupe::is_returned_hand_off(&msg) {
            if let Some(poison) = troupe::unrun(&msg) {
                return self.return_unrun_job(sender, poison, receipt);
            }
            // Left unprocessed and unacknowledged on purpose: when this host exits, the
            // sender gets the message back as undelivered (its `ask` fails at once, an actor
            // logs a dead letter). Held, so that exit traffic processed after it on the same
            // connection does not acknowledge it too.
            tracing::debug!(%sender, message_type = msg.tag(), "actor is exiting; message left unprocessed");
            self.endpoint.hold(&receipt);
            return Ok(());
        }
        if self.holds_back(sender, &msg) {
            self.endpoint.hold(&receipt);
            self.held.push_back((sender, msg, receipt, correlation));
            return Ok(());
        }
        self.process(sender, &msg, receipt, correlation)
    }

    /// Messages a peer that is gone never processed: a troupe manager's hand-offs go back to
    /// it as poison, to return to their senders; anything else is a dead letter, and a
    /// request among them fails with a `Response` saying why.
    fn on_peer_lost(&mut self, peer: Address, cause: LostCause, returned: Vec<Returned>) {
        tracing::debug!(target_actor = %peer, cause = ?cause, count = returned.len(),
            "messages never processed by a peer that is gone");
        let error = cause.request_error();
        for back in &returned {
            if let Some(id) = back.correlation.request_id() {
                self.made_up.extend(self.requests.returned(id, error.clone()));
            }
        }
        let (jobs, others): (Vec<_>, Vec<_>) = returned
            .into_iter()
            .map(|back| back.msg)
            .partition(|m| m.is::<TroupeWork>());
        self.endpoint.dead_letters(peer, others);
        if jobs.is_empty() {
            return;
        }
        let details = format!("never run: {}", cause.into_error(peer));
        for job in jobs {
            let poison = PoisonMessage {
                message: job,
                details: details.clone(),
            };
            match AnyMessage::new(&poison) {
                Ok(poison) => self.deliver(peer, &poison, Correlation::None),
                Err(e) => tracing::error!(error = %e, "could not encode a PoisonMessage"),
            }
        }
    }

    /// An exiting troupe manager told to exit now: first take back what its workers' deaths
    /// return (the admin may say "exit now" before it has answered what became of a dead
    /// worker's messages), so that it reaches the senders, waiting up to `deadline`.
    fn take_back_hand_offs(&mut self, deadline: Instant) {
        if self.actor.troupe_load().is_none() {
            return; // not a manager: nothing was handed off
        }
        loop {
            while let Some(inbound) = self.endpoint.next_inbound() {
                match inbound {
                    Inbound::Message {
                        sender,
                        msg,
                        receipt,
                        correlation,
                    } => {
                        if let Err(e) = self.on_message(sender, msg, receipt, correlation) {
                            tracing::warn!(error = %e, "could not return a worker's message while exiting");
                        }
                    }
                    Inbound::PeerLost { peer, cause, returned } => self.on_peer_lost(peer, cause, returned),
                    _ => {}
                }
            }
            let now = Instant::now();
            if !self.endpoint.is_settling() || now >= deadline {
                return;
            }
            if let Err(e) = self.endpoint.pump(Some(deadline - now)) {
                tracing::warn!(error = %e, "could not wait for a worker's messages while exiting");
                return;
            }
        }
    }

    /// Whether a message from a peer must wait in `held` (`troupe::must_wait`).
    fn holds_back(&self, sender: Address, msg: &AnyMessage) -> bool {
        let held = self.held.iter().map(|(s, _, _, _)| *s);
        troupe::must_wait(self.actor.as_ref(), &self.worker, msg, sender, held)
    }

    fn waits(&self, msg: &AnyMessage) -> bool {
        troupe::waits(self.actor.as_ref(), &self.worker, msg)
    }

    /// Processes one message from a peer, then whatever it frees among the held ones.
    fn process(
        &mut self,
        sender: Address,
        msg: &AnyMessage,
        receipt: Receipt,
        correlation: Correlation,
    ) -> Result<(), Error> {
        self.process_one(sender, msg, receipt, correlation)?;
        self.release_held()
    }

    fn process_one(
        &mut self,
        sender: Address,
        msg: &AnyMessage,
        receipt: Receipt,
        correlation: Correlation,
    ) -> Result<(), Error> {
        self.endpoint.begin(&receipt, self.held.len());
        self.deliver(sender, msg, correlation);
        // A message is done when what the actor sent for it has left this process: record it
        // only then, so that a death before the write returns the message as poison instead
        // of losing its replies.
        self.endpoint.flush_all()?;
        self.endpoint.processed(receipt);
        Ok(())
    }

    /// A hand-off this exiting worker will never run (`poison`, from `troupe::unrun`): back
    /// to its manager, which returns it to its sender and counts it out of this worker's hand;
    /// straight to the sender if the manager is gone.
    fn return_unrun_job(&mut self, manager: Address, poison: PoisonMessage, receipt: Receipt) -> Result<(), Error> {
        tracing::debug!(%manager, "troupe worker exiting; returning a message it will not run");
        let to_manager = AnyMessage::new(&poison).and_then(|p| self.endpoint.send(manager, &p));
        if let Err(e) = to_manager {
            tracing::debug!(%manager, error = %e, "returning it to its sender directly");
            if let Some(work) = poison.message.downcast::<TroupeWork>() {
                self.return_poisoned(work.sender, &work.message, poison.details, work.correlation);
            }
        }
        self.endpoint.flush_all()?;
        self.endpoint.processed(receipt);
        Ok(())
    }

    /// Processes held messages, oldest first, for as long as the actor takes them. Called
    /// after every message, so that whenever messages are held the actor holds back the
    /// oldest (and everything behind it is held back too, or waits behind an earlier message
    /// of its sender).
    fn release_held(&mut self) -> Result<(), Error> {
        while let Some((sender, msg, receipt, correlation)) = self.held.pop_front() {
            if self.exiting || self.failed.is_some() || self.waits(&msg) {
                // Still not wanted (or never will be, once exiting: left unprocessed, it goes
                // back to its sender when this host exits).
                self.held.push_front((sender, msg, receipt, correlation));
                break;
            }
            self.process_one(sender, &msg, receipt, correlation)?;
        }
        Ok(())
    }

    /// Runs the actor on one message (from a peer, the admin, or a wakeup): the retry,
    /// poison and exit rules, then the dead-letter path for a message that did not decode as
    /// the type its tag names. A troupe manager's hand-off runs on the message it carries,
    /// from its original sender, and the manager hears when the worker is free.
    fn deliver(&mut self, sender: Address, msg: &AnyMessage, correlation: Correlation) {
        greenroom::message::take_undecodable();
        let job = self.worker.take_job(sender, msg);
        let (sender, msg, correlation) = match &job {
            Some(work) => (work.sender, &work.message, work.correlation),
            None => (sender, msg, correlation),
        };
        self.run_receive(sender, msg, correlation);
        if greenroom::message::take_undecodable() {
            // Its tag named a type the actor expects, but the bytes did not decode (a sender
            // built from other source): not for silence.
            tracing::warn!(%sender, message_type = msg.tag(),
                "message does not decode as the type its tag names; handed to the dead-letter path");
            self.endpoint.dead_letters(self.me, vec![msg.clone()]);
        }
        if job.is_some() {
            if let Some(manager) = self.worker.job_finished() {
                tell_manager(&mut self.endpoint, manager, &TroupeDone);
            }
        }
        if let Some(load) = self.actor.troupe_load() {
            self.endpoint.record_troupe_load(load);
        }
    }

    fn run_receive(&mut self, sender: Address, msg: &AnyMessage, correlation: Correlation) {
        let is_exit = msg.is::<ActorExitRequest>();
        if let Some(exited) = msg.downcast::<ChildActorExited>() {
            self.children.retain(|c| *c != exited.child);
        }
        let mut unanswered = None;
        let failure = receive_with_retry(msg, self.on_failure, |attempt| {
            let outcome = self.receive_once(sender, msg, correlation);
            if let Err(details) = &outcome {
                tracing::warn!(%sender, message_type = msg.tag(), attempt, %details, "receive failed");
            }
            outcome.map(|request| unanswered = request)
        });
        if let Some(id) = unanswered {
            // A request nothing answered fails at once, saying so, rather than time out.
            let sent = greenroom::request::unanswered(&self.fit.type_name, msg.tag())
                .and_then(|m| self.endpoint.send_correlated(sender, &m, Correlation::Reply(id)));
            if let Err(e) = sent {
                tracing::warn!(%sender, message_type = msg.tag(), error = %e, "could not tell a requester its request went unanswered");
            }
        }
        if sender != self.me {
            self.lifespan.touch();
        }
        if let Some((details, returnable)) = failure {
            let restart = self.on_failure == OnFailure::Restart && !is_exit && !self.exiting;
            if returnable && matches!(correlation, Correlation::Reply(_)) {
                // The `Response` to one of its own requests: not its sender's to take back.
                tracing::warn!(%sender, message_type = msg.tag(),
                    "the actor failed on the response to its request; handed to the dead-letter path");
                self.endpoint.dead_letters_from(sender, self.me, vec![msg.clone()]);
            } else if returnable && sender != self.me {
                // A message the actor sent itself (a wakeup) has no one else to go back to.
                self.return_poisoned(sender, msg, details.clone(), correlation);
            }
            if restart {
                self.failed = Some(details);
            }
        }
        self.report_wakeups();
        if is_exit && !self.exiting {
            self.begin_exit();
        }
    }

    /// Tells the admin the wakeups the `receive` that just returned set, so that they outlive
    /// this process; not those of one that failed under `OnFailure::Restart`, which go with
    /// it (the actor's next incarnation starts afresh, and the message comes back).
    fn report_wakeups(&mut self) {
        let set = self.wakeups.take_unreported();
        if self.failed.is_some() {
            return;
        }
        for wakeup in set {
            if let Err(e) = self.endpoint.send_control(&ToAdmin::WakeupSet(wakeup)) {
                tracing::warn!(error = %e, "could not tell the admin of a wakeup; it will not outlive this process");
            }
        }
    }

    /// A `receive` failed under `OnFailure::Restart`, and the message is recorded as
    /// processed (its poison written): tell the admin why, write what is left, and end the
    /// process, for the supervisor to restart the actor with fresh state. What the actor
    /// had not processed goes back to its senders, who send it again to the next
    /// incarnation, as after a crash.
    fn end_after_failure(&mut self, details: String) -> i32 {
        tracing::warn!(%details, "receive failed; the failure policy (OnFailure::Restart) ends this process");
        if let Err(e) = self.endpoint.send_control(&ToAdmin::ReceiveFailed { details }) {
            tracing::error!(error = %e, "could not tell the admin why the actor ends");
        }
        self.endpoint.flush_blocking(Instant::now() + FINAL_FLUSH);
        EXIT_RECEIVE_FAILED
    }

    /// A transient actor whose lifetime is over, or which has been idle too long, is asked to
    /// exit by the system (`@0`), exactly as a supervisor would ask it.
    fn end_if_due(&mut self) {
        // Most actors have no end: they pay no clock reading per turn for it.
        if self.exiting || !self.lifespan.may_end() {
            return;
        }
        let Some(end) = self.lifespan.due(Instant::now()) else {
            return;
        };
        tracing::info!(reason = %end, "transient actor: asking it to exit");
        self.ask_to_exit();
    }

    /// After a capability change (from the admin, or this actor's own), runs the actor's
    /// check again with its creator's requirements; if it refuses, the actor is asked to
    /// exit, by the system (`@0`), as a supervisor would.
    fn recheck_capabilities(&mut self) {
        let version = self.endpoint.capabilities_version();
        if version == self.fit.checked {
            return;
        }
        self.fit.checked = version;
        let Fit {
            registry,
            type_name,
            requirements,
            ..
        } = &self.fit;
        if self.exiting || registry.still_accepts(type_name, self.endpoint.capabilities(), requirements) {
            return;
        }
        tracing::info!("the actor's capability check refuses the changed capabilities; asking it to exit");
        self.ask_to_exit();
    }

    /// Asks the actor to exit as the system (`@0`) would: an `ActorExitRequest` delivered
    /// to its `receive`, exactly as a supervisor's.
    fn ask_to_exit(&mut self) {
        match AnyMessage::new(&ActorExitRequest) {
            Ok(exit) => self.deliver(Address::local(0), &exit, Correlation::None),
            Err(e) => tracing::error!(error = %e, "could not encode an exit request"),
        }
    }

    /// Delivers the wakeups that are due, in time order (dropped once the actor is exiting:
    /// the admin drops its copies then). Each is marked fired with the admin, and that
    /// written, before its `receive` runs, so that it fires at most once.
    fn deliver_due_wakeups(&mut self) {
        let now = Instant::now();
        while self.failed.is_none() {
            let Some(w) = self.wakeups.pop_due(now) else { break };
            if self.exiting {
                continue;
            }
            let fired = self
                .endpoint
                .send_control(&ToAdmin::WakeupFired { id: w.id })
                .and_then(|()| self.endpoint.flush_all());
            if let Err(e) = fired {
                tracing::warn!(error = %e, "could not tell the admin a wakeup fired");
            }
            let wakeup = WakeupMessage {
                delay: w.delay,
                payload: AnyMessage::from_payload(w.into_payload()),
            };
            match AnyMessage::new(&wakeup) {
                Ok(msg) => self.deliver(self.me, &msg, Correlation::None),
                Err(e) => tracing::error!(error = %e, "could not encode a WakeupMessage"),
            }
        }
    }

    /// Delivers the `Response`s the actor's requests made up: those whose time is up, and
    /// those whose message came back. An exiting actor takes none: they are dead letters.
    fn deliver_made_up(&mut self) {
        if !self.requests.is_empty() {
            let expired = self.requests.expire(Instant::now());
            self.made_up.extend(expired);
        }
        while let Some(MadeUp { from, id, msg }) = self.made_up.pop_front() {
            if self.exiting {
                tracing::debug!(%from, request = id, "a response for an exiting actor: a dead letter");
                self.endpoint.dead_letters_from(from, self.me, vec![msg]);
                continue;
            }
            self.deliver(from, &msg, Correlation::Reply(id));
        }
    }

    /// One call of `receive`: the id of the request it handled without answering, if it was
    /// one, or what went wrong.
    fn receive_once(
        &mut self,
        sender: Address,
        msg: &AnyMessage,
        correlation: Correlation,
    ) -> Result<Option<u64>, String> {
        // A panic the actor caught itself in an earlier call left its record behind; it must
        // not read as "still unwinding" to the hook if this call panics.
        LAST_PANIC.with(|p| p.borrow_mut().take());
        let mut backend = HostBackend {
            held_back: self.held.len(),
            requests: &mut self.requests,
            made_up: &mut self.made_up,
            worker: &mut self.worker,
            wakeups: &mut self.wakeups,
            send_window: self.send_window,
            endpoint: &mut self.endpoint,
            children: &mut self.children,
            exiting: self.exiting,
        };
        let mut ctx = Context::new(self.me, &mut backend, sender, correlation);
        let actor = &mut self.actor;
        // A panic the actor caught itself leaves its text behind: not this call's.
        LAST_PANIC.with(|p| p.borrow_mut().take());
        match catch_unwind(AssertUnwindSafe(|| actor.receive(&mut ctx, msg, sender))) {
            Ok(Ok(())) => Ok(ctx.unanswered_request()),
            Ok(Err(e)) => Err(format!("receive returned an error: {e}")),
            Err(panic) => Err(format!("receive panicked: {}", last_panic_text(&*panic))),
        }
    }

    /// Returns `msg` to its sender as a [`PoisonMessage`]: the answer to it, if it was a
    /// request or an ask, so that it fails that call.
    fn return_poisoned(&mut self, sender: Address, msg: &AnyMessage, details: String, correlation: Correlation) {
        let poison = PoisonMessage {
            message: msg.clone(),
            details,
        };
        let sent =
            AnyMessage::new(&poison).and_then(|p| self.endpoint.send_correlated(sender, &p, correlation.answer()));
        if let Err(e) = sent {
            tracing::warn!(%sender, message_type = msg.tag(), error = %e, "could not return a poison message to its sender");
        }
    }

    /// After `receive(ActorExitRequest)`: ask every child to exit, then tell the admin, which
    /// answers `ExitNow` once the children are gone.
    fn begin_exit(&mut self) {
        self.exiting = true;
        // Hand-offs held while work was in progress will not run now.
        let (jobs, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(_, m, _, _)| m.is::<TroupeWork>());
        self.held = others;
        for (manager, job, receipt, _) in jobs {
            let Some(poison) = troupe::unrun(&job) else { continue };
            if let Err(e) = self.return_unrun_job(manager, poison, receipt) {
                tracing::error!(error = %e, "could not return a troupe message this worker will not run");
            }
        }
        let exit = match AnyMessage::new(&ActorExitRequest) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "could not encode ActorExitRequest");
                return;
            }
        };
        // Latest first, as a supervisor stops its children (reverse start order); all are
        // asked at once, and the admin kills any that are not gone by the stop timeout.
        for child in self.children.clone().into_iter().rev() {
            if let Err(e) = self.endpoint.send(child, &exit) {
                tracing::debug!(%child, error = %e, "child already gone");
            }
        }
        self.endpoint.flush();
        if let Err(e) = self.endpoint.send_control(&ToAdmin::Exiting) {
            tracing::error!(error = %e, "could not tell the admin that the actor is exiting");
        }
    }
}

/// What `Context` does inside a host process.
struct HostBackend<'a> {
    held_back: usize,
    requests: &'a mut PendingRequests<Instant>,
    made_up: &'a mut VecDeque<MadeUp>,
    worker: &'a mut WorkerRole,
    wakeups: &'a mut Wakeups,
    send_window: usize,
    endpoint: &'a mut Endpoint,
    children: &'a mut Vec<Address>,
    exiting: bool,
}

impl HostBackend<'_> {
    /// Asks the admin for a child, here or (`on`) on another member of the convention; the
    /// child is this actor's to stop when it exits (a named actor is the system's).
    fn create_child(
        &mut self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
        on: Option<NodeId>,
    ) -> greenroom::Result<Address> {
        if self.exiting {
            return Err(Error::Create {
                type_name: type_name.to_owned(),
                failure: CreateFailure::ParentExiting,
            });
        }
        let created = self
            .endpoint
            .create_actor(type_name, spec, global_name, requirements, on, CREATE_TIMEOUT)?;
        if global_name.is_none() {
            self.children.push(created);
        }
        Ok(created)
    }
}

impl Backend for HostBackend<'_> {
    fn send(&mut self, to: Address, msg: AnyMessage, correlation: Correlation) -> greenroom::Result<()> {
        // Past the window, a send fails and the actor decides what to do, rather than queue
        // without bound. (What it sent is written when `receive` returns; a receiver that
        // stops reading holds the actor there, see `Endpoint::flush_all`.)
        match self.endpoint.send_live(to, &msg, correlation, Some(self.send_window)) {
            // Thespian's rule: sending to a dead actor is not the sender's failure; the
            // message became a dead letter.
            Ok(_) | Err(Error::ActorGone { .. } | Error::UnknownActor(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn request(
        &mut self,
        to: Address,
        msg: AnyMessage,
        kind: RequestKind,
        timeout: Duration,
    ) -> greenroom::Result<RequestId> {
        let id = self.requests.next_id();
        self.requests
            .start(id, kind, to, greenroom::system::deadline_after(timeout), timeout);
        let correlation = Correlation::Request(id.get());
        match self.endpoint.send_live(to, &msg, correlation, Some(self.send_window)) {
            Ok(_) => Ok(id),
            Err(e) => match RequestError::from_send_error(&e) {
                // As a send to a dead actor: a dead letter, and the request's `Response`,
                // after this receive, says why.
                Some(error) => {
                    self.made_up.extend(self.requests.returned(id.get(), error));
                    Ok(id)
                }
                None => {
                    self.requests.cancel(id);
                    Err(e)
                }
            },
        }
    }

    fn handle_dead_letters(&mut self, start: bool) -> greenroom::Result<()> {
        self.endpoint.send_control(&ToAdmin::HandleDeadLetters { start })
    }

    fn notify_on_convention_changes(&mut self, on: bool) -> greenroom::Result<()> {
        self.endpoint.send_control(&ToAdmin::ConventionNotices { on })
    }

    fn capabilities(&self) -> &Capabilities {
        self.endpoint.capabilities()
    }

    fn update_capability(&mut self, key: &str, value: Option<Payload>) -> greenroom::Result<()> {
        self.endpoint.update_capability(key, value)
    }

    fn set_work_in_progress(&mut self, on: bool) -> greenroom::Result<()> {
        if let Some(manager) = self.worker.set_in_progress(on) {
            tell_manager(self.endpoint, manager, &TroupeWorkInProgress(on));
        }
        Ok(())
    }

    fn hand_off(&mut self, to: Address, msg: AnyMessage) -> greenroom::Result<()> {
        self.endpoint.send(to, &msg)
    }

    fn held_back(&self) -> usize {
        self.held_back
    }

    fn wakeup_after(&mut self, delay: Duration, payload: AnyMessage) -> greenroom::Result<()> {
        // An exiting actor's timers are dropped.
        if !self.exiting {
            self.wakeups.set(delay, payload);
        }
        Ok(())
    }

    fn create_actor(
        &mut self,
        type_name: &str,
        spec: ChildSpec,
        global_name: Option<&str>,
        requirements: &Capabilities,
    ) -> greenroom::Result<Address> {
        self.create_child(type_name, spec, global_name, requirements, None)
    }

    fn convention_members(&mut self) -> greenroom::Result<Vec<greenroom_protocol::ConventionMember>> {
        self.endpoint.convention_members(CREATE_TIMEOUT)
    }

    fn create_actor_on(
        &mut self,
        node: NodeId,
        type_name: &str,
        spec: ChildSpec,
        requirements: &Capabilities,
    ) -> greenroom::Result<Address> {
        self.create_child(type_name, spec, None, requirements, Some(node))
    }
}

/// Tells this worker's troupe manager `notice` (written with whatever the job sent).
fn tell_manager<M: greenroom::Message>(endpoint: &mut Endpoint, manager: Address, notice: &M) {
    let sent = AnyMessage::new(notice).and_then(|notice| endpoint.send(manager, &notice));
    if let Err(e) = sent {
        tracing::warn!(%manager, error = %e, notice = M::type_tag(), "could not tell the troupe manager");
    }
}

/// The recorded panic message with its location, or the payload's text.
fn last_panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| panic_text(panic))
}
