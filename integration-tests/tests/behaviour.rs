//! The actor API's behaviour, asserted on both bases: every test here runs once with actors
//! in their own processes and once on the simple, in-process base, through
//! `on_both_bases!`. Checks that only make sense for processes (pids, parents) are guarded
//! by the base.

use std::time::Duration;

use greenroom::{ActorExitRequest, ActorState, Address, Base, Error, ExitCause};
use greenroom_integration_tests::{actors::*, harness, on_both_bases, TestSystem};

const T: Duration = Duration::from_secs(10);

/// Asserts that `recorder` saw exactly the numbers `0..count`, in order.
fn assert_recorded_in_order(sys: &TestSystem, recorder: Address, count: u64) {
    let rec: Recorded = sys.ask(recorder, Report, T).unwrap();
    assert_eq!(
        rec,
        Recorded {
            count,
            in_order: true,
            last: Some(count - 1)
        }
    );
}

/// The next message to the client of type `M`, skipping others.
fn next_of<M: greenroom::Message>(sys: &TestSystem) -> M {
    loop {
        let (_, msg) = sys.listen(T).unwrap().expect("a message before the timeout");
        if let Some(m) = msg.downcast::<M>() {
            return m;
        }
    }
}

on_both_bases! {
    fn an_address_passed_in_a_message_is_used_by_a_third_actor(sys) {
        let forwarder = sys.create_actor::<Forwarder>().unwrap().address();
        let recorder = sys.create_actor::<Recorder>().unwrap().address();
        let echo = sys.create_actor::<Echo>().unwrap().address();
        // The forwarder never heard of the client or the echo actor before these messages.
        sys.tell(forwarder, Forward { to: echo, text: "via a third actor".into() }).unwrap();
        sys.tell(forwarder, Forward { to: sys.address(), text: "to the client".into() }).unwrap();
        let (sender, msg) = sys.listen(T).unwrap().expect("the forwarded text reaches the client");
        assert_eq!(sender, forwarder);
        assert_eq!(msg.downcast::<String>().as_deref(), Some("to the client"));
        // Blaster gets the recorder's address in a message and streams to it.
        let blaster = sys.create_actor::<Blaster>().unwrap().address();
        let done: bool = sys.ask(blaster, Blast { to: recorder, count: 5 }, T).unwrap();
        assert!(done);
        assert_recorded_in_order(&sys, recorder, 5);
    }

    fn ten_thousand_messages_arrive_in_order(sys) {
        let recorder = sys.create_actor::<Recorder>().unwrap().address();
        for n in 0..10_000u64 {
            sys.tell(recorder, n).unwrap();
        }
        assert_recorded_in_order(&sys, recorder, 10_000);
        // And actor to actor.
        let recorder = sys.create_actor::<Recorder>().unwrap().address();
        let blaster = sys.create_actor::<Blaster>().unwrap().address();
        let done: bool = sys.ask(blaster, Blast { to: recorder, count: 10_000 }, T).unwrap();
        assert!(done);
        assert_recorded_in_order(&sys, recorder, 10_000);
    }

    fn ask_times_out_when_no_reply_comes(sys) {
        let silent = sys.create_actor::<Silent>().unwrap().address();
        let before = sys.now();
        let err = sys
            .ask::<_, String>(silent, "anyone?".to_string(), Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { address, .. } if address == silent), "{err}");
        let waited = sys.now() - before;
        assert!(waited >= Duration::from_millis(300), "returned early after {waited:?}");
        assert!(err.to_string().contains("no reply from"), "{err}");
    }

    fn ask_to_an_exited_actor_fails_fast(sys) {
        let echo = sys.create_actor::<Echo>().unwrap().address();
        sys.tell(echo, ActorExitRequest).unwrap();
        // The exit request may still be in flight; the ask must fail, not wait 30 s.
        let started = std::time::Instant::now();
        let err = sys.ask::<_, String>(echo, "hello?".to_string(), Duration::from_secs(30)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        match err {
            Error::ActorGone { address, cause } => {
                assert_eq!(address, echo);
                assert_eq!(cause, ExitCause::Normal);
            }
            other => panic!("expected ActorGone, got {other}"),
        }
        let err = sys.ask::<_, String>(echo, "still there?".to_string(), T).unwrap_err();
        assert!(matches!(err, Error::ActorGone { .. }), "{err}");
        assert!(err.to_string().contains("is gone"), "{err}");
        assert!(matches!(sys.tell(echo, 1u8), Err(Error::ActorGone { .. })));
        // An address nobody created.
        let err = sys.ask::<_, String>(Address::local(999_999), "?".to_string(), T).unwrap_err();
        assert!(matches!(err, Error::UnknownActor(_)), "{err}");
        assert_eq!(sys.actor_info(Address::local(999_999)).unwrap().state, ActorState::Unknown);
    }

    fn exit_request_is_recursive_and_parents_hear_of_it(sys) {
        let top = sys.create_actor::<Spawner>().unwrap().address();
        let req = SpawnChildren { children: 2, grandchildren: 1, watcher: sys.address() };
        let Spawned(children) = sys.ask(top, req, T).unwrap();
        for c in &children {
            spawner_barrier(&sys, *c, sys.address(), T);
        }
        let hosts = sys.host_pids();
        if sys.base() == Base::Processes {
            assert_eq!(hosts.len(), 5, "top + 2 children + 2 grandchildren");
        }
        sys.tell(top, ActorExitRequest).unwrap();
        // Each child reports its grandchild's exit, and the top reports each child's exit.
        let seen: Vec<ChildExitSeen> = (0..4).map(|_| next_of::<ChildExitSeen>(&sys)).collect();
        for child in &children {
            assert!(seen.iter().any(|s| s.parent == top && s.child == *child && s.cause == ExitCause::Normal));
            assert!(seen.iter().any(|s| s.parent == *child && s.cause == ExitCause::Normal));
        }
        for pid in hosts {
            assert!(harness::wait_for_exit(pid, T), "host {pid} did not exit");
        }
        let err = sys.ask::<_, Spawned>(top, Report, T).unwrap_err();
        assert!(matches!(&err, Error::ActorGone { cause: ExitCause::Normal, .. }), "{err}");
        assert_eq!(sys.actor_info(top).unwrap().state, ActorState::Gone(ExitCause::Normal));
        for child in children {
            assert_eq!(sys.actor_info(child).unwrap().state, ActorState::Gone(ExitCause::Normal));
        }
    }

    fn a_failing_receive_is_retried_once_then_returned_as_poison(sys) {
        let p = sys.create_actor::<Panicker>().unwrap().address();
        let first: Pong = sys.ask(p, PanicCommand::Ping, T).unwrap();
        assert_eq!(first.deliveries, 1);
        // Fails twice (first try and retry): the message comes back as poison.
        let err = sys.ask::<_, Pong>(p, PanicCommand::Always, T).unwrap_err();
        match &err {
            Error::Poisoned { address, message, details } => {
                assert_eq!(*address, p);
                assert!(matches!(message.downcast::<PanicCommand>(), Some(PanicCommand::Always)), "{message:?}");
                assert!(details.contains("told to panic"), "{details}");
            }
            other => panic!("expected Poisoned, got {other}"),
        }
        // An error return is treated the same way.
        let err = sys.ask::<_, Pong>(p, PanicCommand::Error, T).unwrap_err();
        assert!(matches!(&err, Error::Poisoned { details, .. } if details.contains("told to fail")), "{err}");
        // Same actor, state kept: 1 + 2 + 2 deliveries so far, then this one.
        let pong: Pong = sys.ask(p, PanicCommand::Ping, T).unwrap();
        assert_eq!(pong.pid, first.pid, "the actor's process survived");
        assert_eq!(pong.deliveries, 6);
        // A failure on the first delivery only is invisible from outside: the retry answers.
        let pong: Pong = sys.ask(p, PanicCommand::Once, T).unwrap();
        assert_eq!(pong.deliveries, 8);
    }

    fn unknown_actor_types_are_refused_clearly(sys) {
        let err = sys.create_actor_named("no::such::Actor", Default::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown actor type `no::such::Actor`"), "{text}");
        assert!(text.contains("Echo"), "the error lists what is registered: {text}");
        sys.create_actor::<Echo>().unwrap().address();
        let err = sys.create_actor_named("no::such::Actor", Default::default()).unwrap_err();
        assert!(matches!(err, Error::Create { .. }), "{err}");
        let echo = sys.create_actor::<Echo>().unwrap().address();
        let back: String = sys.ask(echo, "ok".to_string(), T).unwrap();
        assert_eq!(back, "ok");
    }

    fn typed_dispatch_routes_each_type_to_its_handler(sys) {
        let greeter = sys.create_actor::<TypedGreeter>().unwrap();
        let hello: String = sys.ask(greeter, Greet("World".into()), T).unwrap();
        assert_eq!(hello, "Hello, World!");
        // Types it has no handler for: only an untyped address takes them.
        sys.tell(greeter.address(), 42u64).unwrap();
        sys.tell(greeter.address(), "not a Greet".to_string()).unwrap();
        let others: u32 = sys.ask(greeter, HowManyOthers, T).unwrap();
        assert_eq!(others, 2, "the two other messages went to the fallback");
    }

    fn replies_of_the_wrong_type_are_named(sys) {
        let echo = sys.create_actor::<Echo>().unwrap().address();
        let err = sys.ask::<_, u64>(echo, "text".to_string(), T).unwrap_err();
        assert!(matches!(err, Error::UnexpectedReply { .. }), "{err}");
        assert!(err.to_string().contains("alloc::string::String"), "{err}");
    }

    fn wakeups_arrive_in_time_order_and_not_before_their_delay(sys) {
        let timer = sys.create_actor::<Timer>().unwrap().address();
        let start = sys.now();
        for (delay_ms, label) in [(300, "late"), (50, "early"), (150, "middle"), (150, "middle too")] {
            let armed: bool = sys.ask(timer, Arm { delay_ms, label: label.into() }, T).unwrap();
            assert!(armed);
        }
        let mut rang = Vec::new();
        while rang.len() < 4 {
            let r = next_of::<Rang>(&sys);
            let elapsed = sys.now() - start;
            assert!(elapsed >= Duration::from_millis(r.delay_ms), "{} rang after {elapsed:?}", r.label);
            rang.push(r.label);
        }
        // Equal delays ring in the order they were asked.
        assert_eq!(rang, vec!["early", "middle", "middle too", "late"]);
    }

    fn pending_wakeups_are_dropped_when_the_actor_exits(sys) {
        let timer = sys.create_actor::<Timer>().unwrap().address();
        let _: bool = sys.ask(timer, Arm { delay_ms: 200, label: "never".into() }, T).unwrap();
        sys.tell(timer, ActorExitRequest).unwrap();
        assert!(sys.listen(Duration::from_millis(600)).unwrap().is_none(), "no wakeup after the actor exited");
    }

    fn a_global_name_gives_one_actor_to_everyone_until_it_is_gone(sys) {
        let first = sys.create_actor_global::<Echo>("registry").unwrap();
        assert_eq!(sys.create_actor_global::<Echo>("registry").unwrap(), first);
        // Any type: the name decides.
        assert_eq!(sys.create_actor_global::<Silent>("registry").unwrap(), first);
        // From inside an actor too, and the named actor is not that actor's child.
        let spawner = sys.create_actor::<Spawner>().unwrap().address();
        let Spawned(found) = sys.ask(spawner, SpawnGlobal { name: "registry".into() }, T).unwrap();
        assert_eq!(found, vec![first]);
        let Spawned(other) = sys.ask(spawner, SpawnGlobal { name: "other".into() }, T).unwrap();
        assert_ne!(other[0], first);
        sys.tell(spawner, ActorExitRequest).unwrap();
        let back: String = sys.ask(other[0], "not its child".to_string(), T).unwrap();
        assert_eq!(back, "not its child", "a named actor does not exit with its creator");
        // Gone for good: the name is free again.
        sys.tell(first, ActorExitRequest).unwrap();
        let err = sys.ask::<_, String>(first, "gone?".to_string(), T).unwrap_err();
        assert!(matches!(err, Error::ActorGone { .. }), "{err}");
        let second = sys.create_actor_global::<Echo>("registry").unwrap();
        assert_ne!(second, first);
        let back: String = sys.ask(second, "new".to_string(), T).unwrap();
        assert_eq!(back, "new");
    }

    fn messages_to_a_gone_actor_reach_the_dead_letter_handler(sys) {
        let mortuary = sys.create_actor::<Mortuary>().unwrap().address();
        let registered: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
        assert!(registered);
        let doomed = sys.create_actor::<Echo>().unwrap().address();
        sys.tell(doomed, ActorExitRequest).unwrap();
        let err = sys.ask::<_, String>(doomed, "are you there?".to_string(), T).unwrap_err();
        assert!(matches!(err, Error::ActorGone { .. }), "{err}");
        // The client's message failed its call and is a dead letter too: nothing vanishes.
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.text.as_deref()), (doomed, Some("are you there?")));
        let err = sys.tell(doomed, "still there?".to_string()).unwrap_err();
        assert!(matches!(err, Error::ActorGone { .. }), "{err}");
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.text.as_deref()), (doomed, Some("still there?")));
        // An actor sends to the dead address: not its failure, a dead letter.
        let forwarder = sys.create_actor::<Forwarder>().unwrap().address();
        sys.tell(forwarder, Forward { to: doomed, text: "for the dead".into() }).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!(seen.target, doomed);
        assert_eq!(seen.text.as_deref(), Some("for the dead"));
    }

    fn a_message_that_does_not_decode_as_its_tag_goes_to_the_dead_letter_path(sys) {
        let mortuary = sys.create_actor::<Mortuary>().unwrap().address();
        let _: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
        let recorder = sys.create_actor::<Recorder>().unwrap().address();
        // Tagged as a u64, but not a valid postcard u64 (a varint that never ends).
        let forged = greenroom::AnyMessage::from_payload(greenroom_protocol::Payload {
            tag: "u64".into(),
            bytes: vec![0xff; 12],
        });
        sys.tell_any(recorder, forged).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!(seen.target, recorder);
        let rec: Recorded = sys.ask(recorder, Report, T).unwrap();
        assert_eq!(rec.count, 0);
    }

    fn private_clients_asking_from_two_threads_never_take_each_others_replies(sys) {
        let echo = sys.create_actor::<Echo>().unwrap().address();
        let owner = sys.address();
        std::thread::scope(|scope| {
            for thread in 0..2u64 {
                let client = sys.private().unwrap();
                assert_ne!(client.address(), owner);
                scope.spawn(move || {
                    for n in 0..1000u64 {
                        let mine = thread * 1_000_000 + n;
                        let back: u64 = client.ask(echo, mine, T).unwrap();
                        assert_eq!(back, mine, "thread {thread} got another's reply");
                    }
                });
            }
        });
        assert!(sys.listen(Duration::from_millis(100)).unwrap().is_none(), "nothing strayed to the owner");
        let back: String = sys.ask(echo, "owner".to_string(), T).unwrap();
        assert_eq!(back, "owner");
    }

    fn a_closed_private_client_is_gone_and_the_system_runs_on(sys) {
        let echo = sys.create_actor::<Echo>().unwrap().address();
        let client = sys.private().unwrap();
        let address = client.address();
        let _: String = client.ask(echo, "hi".to_string(), T).unwrap();
        // Shut down (not yet dropped): closed all the same, and says so if used.
        client.shutdown().unwrap();
        assert!(matches!(client.tell(echo, 1u8), Err(Error::SystemStopped)));
        // The admin hears of the close asynchronously on the process base.
        let deadline = std::time::Instant::now() + T;
        while !matches!(sys.actor_info(address).unwrap().state, ActorState::Gone(_)) {
            assert!(std::time::Instant::now() < deadline, "the private client was never gone");
            sys.listen(Duration::from_millis(10)).unwrap();
        }
        let mortuary = sys.create_actor::<Mortuary>().unwrap().address();
        let _: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
        let forwarder = sys.create_actor::<Forwarder>().unwrap().address();
        sys.tell(forwarder, Forward { to: address, text: "after it left".into() }).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.text.as_deref()), (address, Some("after it left")));
        let back: String = sys.ask(echo, "still here".to_string(), T).unwrap();
        assert_eq!(back, "still here");
    }

    fn a_capability_check_refuses_a_system_that_does_not_qualify_with_a_clear_error(sys) {
        let err = sys.create_actor::<GpuWorker>().unwrap_err();
        assert!(matches!(&err, Error::NoCompatibleSystem { type_name, .. } if type_name.ends_with("GpuWorker")), "{err}");
        assert!(err.to_string().contains("no compatible actor system"), "{err}");
        sys.update_capability("gpus", &2u32).unwrap();
        assert_eq!(sys.capabilities().unwrap().get::<u32>("gpus"), Some(2));
        let worker = sys.create_actor::<GpuWorker>().unwrap().address();
        assert_eq!(sys.ask::<_, String>(worker, (), T).unwrap(), "gpu ok");
        let four = greenroom::Capabilities::new().with("gpus", &4u32).unwrap();
        let err = sys.create_actor_requiring::<GpuWorker>(&four).unwrap_err();
        assert!(matches!(&err, Error::NoCompatibleSystem { requirements, .. } if requirements == &["gpus"]), "{err}");
        // Inside an actor: the same check, against what its process has heard.
        let broker = sys.create_actor::<Broker>().unwrap().address();
        let hired: Result<Address, String> = sys.ask(broker, HireGpu { gpus: 2 }, T).unwrap();
        let hired = hired.expect("two GPUs are enough");
        assert_eq!(sys.ask::<_, String>(hired, (), T).unwrap(), "gpu ok");
        let refused: Result<Address, String> = sys.ask(broker, HireGpu { gpus: 3 }, T).unwrap();
        assert!(refused.unwrap_err().contains("no compatible actor system"));
        // An actor's update reaches the client (and every other process).
        let _: bool = sys.ask(broker, OfferGpus(8), T).unwrap();
        let deadline = std::time::Instant::now() + T;
        while sys.capabilities().unwrap().get::<u32>("gpus") != Some(8) {
            assert!(std::time::Instant::now() < deadline, "the update never reached the client");
            sys.listen(Duration::from_millis(10)).unwrap();
        }
        sys.create_actor_requiring::<GpuWorker>(&four).unwrap().address();
        sys.remove_capability("gpus").unwrap();
        assert!(matches!(sys.create_actor::<GpuWorker>(), Err(Error::NoCompatibleSystem { .. })));
    }

    fn a_message_an_exiting_actor_leaves_comes_back_even_if_exit_traffic_follows_it(sys) {
        let mortuary = sys.create_actor::<Mortuary>().unwrap().address();
        let _: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
        let echo = sys.create_actor::<Echo>().unwrap().address();
        // On one connection: the exit request, a message the exiting actor will not run,
        // and another exit request, which it does run: that must not acknowledge the message.
        sys.tell(echo, ActorExitRequest).unwrap();
        let late = sys.tell(echo, "too late".to_string());
        if sys.is_simple() {
            // The simple base runs each tell to its end: the actor is gone by now, and the
            // message is refused at once instead.
            assert!(matches!(late, Err(Error::ActorGone { .. })), "{late:?}");
            return;
        }
        late.unwrap();
        sys.tell(echo, ActorExitRequest).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.text.as_deref()), (echo, Some("too late")));
    }

    fn a_running_actor_whose_check_refuses_changed_capabilities_is_asked_to_exit(sys) {
        let gone = |address: Address| {
            let deadline = std::time::Instant::now() + T;
            while !matches!(sys.actor_info(address).unwrap().state, ActorState::Gone(_)) {
                assert!(std::time::Instant::now() < deadline, "{address} was never asked to exit");
                sys.listen(Duration::from_millis(10)).unwrap();
            }
            sys.actor_info(address).unwrap().state
        };
        sys.update_capability("gpus", &4u32).unwrap();
        let any_gpu = sys.create_actor::<GpuWorker>().unwrap().address();
        let four = greenroom::Capabilities::new().with("gpus", &4u32).unwrap();
        let four_gpus = sys.create_actor_requiring::<GpuWorker>(&four).unwrap().address();
        let echo = sys.create_actor::<Echo>().unwrap().address();

        // A change that changes nothing checks nothing again.
        sys.update_capability("gpus", &4u32).unwrap();
        assert_eq!(sys.ask::<_, String>(four_gpus, (), T).unwrap(), "gpu ok");

        // Down to two: the actor created for four refuses, with its creator's requirements,
        // and is asked to exit; the others keep running.
        sys.update_capability("gpus", &2u32).unwrap();
        assert_eq!(gone(four_gpus), ActorState::Gone(ExitCause::Normal));
        assert_eq!(sys.ask::<_, String>(any_gpu, (), T).unwrap(), "gpu ok");
        assert_eq!(sys.ask::<_, String>(echo, "still here".to_string(), T).unwrap(), "still here");

        // Changed from inside an actor: the same rule, everywhere.
        let broker = sys.create_actor::<Broker>().unwrap().address();
        let _: bool = sys.ask(broker, OfferGpus(0), T).unwrap();
        assert_eq!(gone(any_gpu), ActorState::Gone(ExitCause::Normal));
        assert_eq!(sys.ask::<_, String>(echo, "and here".to_string(), T).unwrap(), "and here");
    }
}

#[test]
fn capabilities_given_at_start_are_seen_on_both_bases() {
    for base in [Base::Processes, Base::Simple] {
        let caps = greenroom::Capabilities::new()
            .with("gpus", &1u32)
            .unwrap()
            .with("site", &"lab".to_string())
            .unwrap();
        let config = greenroom::SystemConfig::default().base(base).capabilities(caps);
        let sys = TestSystem::start_with(env!("CARGO_BIN_EXE_greenroom-test-host"), config);
        assert_eq!(
            sys.capabilities().unwrap().get::<String>("site").as_deref(),
            Some("lab")
        );
        let broker = sys.create_actor::<Broker>().unwrap().address();
        let hired: Result<Address, String> = sys.ask(broker, HireGpu { gpus: 1 }, T).unwrap();
        assert!(hired.is_ok(), "{base:?}: {hired:?}");
    }
}
