//! Requests (`greenroom::request`): each gets the answer to itself and nothing else, on both
//! bases, from threads sharing one client, from actors that never block, and across a
//! convention; only the request's own fate fails it, and a late answer is a dead letter.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use greenroom::{ActorRef, ActorSystem, ChildSpec, Error, OnFailure, SystemConfig};
use greenroom_integration_tests::{
    actors::{DeadSeen, Echo, Mortuary, Silent, TakeDeadLetters},
    lab::lab,
    on_both_bases,
    request_actors::*,
    TestSystem,
};

const T: Duration = Duration::from_secs(10);
const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");

/// The next message to the client of type `M`, skipping others.
fn next_of<M: greenroom::Message>(sys: &ActorSystem) -> M {
    loop {
        let (_, msg) = sys.listen(T).unwrap().expect("a message before the timeout");
        if let Some(m) = msg.downcast::<M>() {
            return m;
        }
    }
}

/// The plain messages waiting for the client now (on the simple base everything has run
/// when a call returns; on the process base, they were read while a request waited).
fn strays(sys: &ActorSystem, expected: usize) -> Vec<String> {
    (0..expected)
        .map(|_| {
            let (_, msg) = sys.listen(T).unwrap().expect("a stray message stays for listen");
            msg.downcast::<String>().expect("a stray string")
        })
        .collect()
}

/// Makes `sys`'s client the dead-letter handler's watcher: dead letters come back as
/// [`DeadSeen`].
fn watch_dead_letters(sys: &ActorSystem) {
    let mortuary = sys.create_actor::<Mortuary>().unwrap().address();
    let registered: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
    assert!(registered);
}

on_both_bases! {
    fn stray_messages_never_disturb_a_request(sys) {
        let calc = sys.create_actor::<Calculator>().unwrap();
        // Each request's answer comes after strays to the same client: the request takes its
        // own answer, the strays stay for listen, and every later answer is its own.
        for value in 1..=5 {
            let got = sys.request(calc, StraysThenAnswer { strays: 2, value }, T).unwrap();
            assert_eq!(got, value);
        }
        assert_eq!(sys.request(calc, Add(20, 22), T).unwrap(), 42);
        let seen = strays(&sys, 10);
        assert_eq!(seen.iter().filter(|s| *s == "stray 0").count(), 5, "{seen:?}");
        assert_eq!(seen.iter().filter(|s| *s == "stray 1").count(), 5, "{seen:?}");
        // Thespian's ask, on a typed handler, gets the handler's answer too.
        let sum: u64 = sys.ask(calc, Add(1, 2), T).unwrap();
        assert_eq!(sum, 3);
    }

    fn a_request_times_out_and_its_late_answer_is_a_dead_letter_never_the_next_answer(sys) {
        watch_dead_letters(&sys);
        let calc = sys.create_actor::<Calculator>().unwrap();
        let timeout = Duration::from_millis(300);
        let started = sys.now();
        let err = sys.request(calc, Hold, timeout).unwrap_err();
        assert!(matches!(err, Error::Timeout { address, timeout: t } if address == calc && t == timeout), "{err}");
        assert!(sys.now() - started >= timeout, "it waited its timeout");
        // The answer comes after the caller gave up: a dead letter addressed to the client,
        // from the calculator.
        sys.tell(calc, Release("too late".into())).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.sender, seen.text.as_deref()), (sys.address(), calc.address(), Some("too late")));
        // The next request gets its own answer.
        assert_eq!(sys.request(calc, Add(2, 3), T).unwrap(), 5);
        assert!(sys.listen(Duration::from_millis(50)).unwrap().is_none(), "nothing else came");
    }

    fn a_request_the_receiver_fails_on_comes_back_as_its_own_poison_and_no_one_else_s(sys) {
        let calc = sys.create_actor::<Calculator>().unwrap();
        let err = sys.request(calc, Explode, T).unwrap_err();
        match &err {
            Error::Poisoned { address, message, details } => {
                assert_eq!(*address, calc);
                assert!(message.is::<Explode>(), "{message:?}");
                assert!(details.contains("told to explode"), "{details}");
            }
            other => panic!("expected the request back as poison, got {other}"),
        }
        // A tell the receiver fails on comes back too, but it is no request's fate: it waits
        // for listen (which reports it as its error), and the request after it gets its
        // answer.
        sys.tell(calc, Explode).unwrap();
        assert_eq!(sys.request(calc, Add(1, 1), T).unwrap(), 2);
        match sys.listen(T) {
            Err(Error::Poisoned { address, message, .. }) => {
                assert_eq!(address, calc);
                assert!(message.is::<Explode>(), "{message:?}");
            }
            other => panic!("expected the tell's poison, got {other:?}"),
        }
    }

    fn a_request_to_an_actor_gone_for_good_fails_and_is_a_dead_letter(sys) {
        watch_dead_letters(&sys);
        let calc = sys.create_actor::<Calculator>().unwrap();
        sys.stop(calc).unwrap();
        let gone = loop {
            match sys.request(calc, Add(1, 2), T) {
                Err(e @ Error::ActorGone { .. }) => break e,
                // The exit request may still be on its way: its answer came first.
                Ok(3) => continue,
                other => panic!("expected ActorGone, got {other:?}"),
            }
        };
        assert!(gone.to_string().contains("is gone"), "{gone}");
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!(seen.target, calc.address(), "the request's message reached the dead-letter handler");
        // A request queued behind the exit request is never processed: it fails too.
        let calc = sys.create_actor::<Calculator>().unwrap();
        sys.stop(calc).unwrap();
        let err = sys.request(calc, Add(4, 5), T).unwrap_err();
        assert!(matches!(err, Error::ActorGone { .. }), "{err}");
    }

    fn an_actor_requests_from_others_without_blocking_and_sums_their_answers(sys) {
        let calculators: Vec<ActorRef<Calculator>> =
            (0..3).map(|_| sys.create_actor::<Calculator>().unwrap()).collect();
        let aggregator = sys.create_actor::<Aggregator>().unwrap();
        let pairs: Vec<(u64, u64)> = (0..30).map(|n| (n, 2 * n)).collect();
        let expected: u64 = pairs.iter().map(|(a, b)| a + b).sum();
        let sum = SumVia { calculators: calculators.clone(), pairs, timeout: T };
        assert_eq!(sys.request(aggregator, sum, T).unwrap(), Ok(expected));
        // Two sums at once, each answered from its own requests.
        let first = SumVia { calculators: calculators.clone(), pairs: vec![(1, 1); 10], timeout: T };
        let second = SumVia { calculators, pairs: vec![(5, 5); 3], timeout: T };
        std::thread::scope(|s| {
            let one = s.spawn(|| sys.request(aggregator, first, T).unwrap());
            let two = s.spawn(|| sys.request(aggregator, second, T).unwrap());
            assert_eq!(one.join().unwrap(), Ok(20));
            assert_eq!(two.join().unwrap(), Ok(30));
        });
    }

    fn two_actors_requesting_from_each_other_never_hang_and_a_timeout_names_its_request(sys) {
        let a = sys.create_actor::<Peer>().unwrap();
        let b = sys.create_actor::<Peer>().unwrap();
        // a asks b, which asks a (while a's own request waits), and so on: six hops deep.
        let relay = Relay { via: vec![b, a, b, a, b], hold_at_end: false, timeout: T };
        assert_eq!(sys.request(a, relay, T).unwrap(), Ok(5));
        // b never answers a's request: a's request times out, and the error a passes on
        // names that request, its type and who was asked.
        let timeout = Duration::from_millis(300);
        let relay = Relay { via: vec![b], hold_at_end: true, timeout };
        let err = sys.request(a, relay, T).unwrap().unwrap_err();
        assert!(err.contains("request #"), "{err}");
        assert!(err.contains("Relay"), "{err}");
        assert!(err.contains(&format!("to {b}")), "{err}");
        assert!(err.contains("no answer within 300ms"), "{err}");
        // Both go on answering.
        let relay = Relay { via: vec![b, a], hold_at_end: false, timeout: T };
        assert_eq!(sys.request(a, relay, T).unwrap(), Ok(2));
    }

    fn an_actor_s_request_to_a_missing_actor_or_one_that_never_answers_gets_a_reply_saying_why(sys) {
        watch_dead_letters(&sys);
        let calc = sys.create_actor::<Calculator>().unwrap();
        let aggregator = sys.create_actor::<Aggregator>().unwrap();
        // A calculator that is gone: the Response says so, at once.
        sys.stop(calc).unwrap();
        let _ = sys.request(calc, Add(0, 0), T); // the exit request has been processed
        let _ = next_of::<DeadSeen>(&sys); // that request's own message
        let sum = SumVia { calculators: vec![calc], pairs: vec![(1, 2)], timeout: T };
        let err = sys.request(aggregator, sum, T).unwrap().unwrap_err();
        assert!(err.contains("is gone"), "{err}");
        assert_eq!(next_of::<DeadSeen>(&sys).target, calc.address(), "the actor's request is a dead letter");
        // A calculator that holds the request: the aggregator's Reply is the timeout, and
        // the answer that comes after it is a dead letter, addressed to the aggregator.
        let calc = sys.create_actor::<Calculator>().unwrap();
        let via = HoldVia { calculator: calc, timeout: Duration::from_millis(300) };
        let err = sys.request(aggregator, via, T).unwrap().unwrap_err();
        assert!(err.contains("(`greenroom_integration_tests::request_actors::Hold`)"), "{err}");
        assert!(err.contains("no answer within 300ms"), "{err}");
        sys.tell(calc, Release("after the timeout".into())).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.text.as_deref()), (aggregator.address(), Some("after the timeout")));
    }

    fn a_slow_answer_is_its_request_s_even_with_other_requests_answered_meanwhile(sys) {
        let calc = sys.create_actor::<Calculator>().unwrap();
        std::thread::scope(|s| {
            let slow = s.spawn(|| {
                sys.request(calc, SlowAdd { a: 40, b: 2, delay: Duration::from_millis(200) }, T).unwrap()
            });
            for n in 0..20 {
                assert_eq!(sys.request(calc, Add(n, 1), T).unwrap(), n + 1);
            }
            assert_eq!(slow.join().unwrap(), 42);
        });
    }
}

on_both_bases! {
    fn a_request_nothing_answers_fails_at_once_saying_so(sys) {
        let forgetful = sys.create_actor::<Forgetful>().unwrap();
        // A handler the actor's dispatch! does not list: the request cannot be answered.
        let err = sys.request(forgetful.address(), Forgotten, T).unwrap_err();
        match &err {
            Error::Unanswered { address, details } => {
                assert_eq!(*address, forgetful);
                assert!(details.contains("Forgotten") && details.contains("dispatch!"), "{details}");
            }
            other => panic!("expected Unanswered, got {other}"),
        }
        assert_eq!(sys.request(forgetful, Add(3, 4), T).unwrap(), 7);
        // A hand-written receive that sends its value back instead of answering: the request
        // fails at once, and the plain message waits for listen.
        let echo = sys.create_actor::<Echo>().unwrap().address();
        let err = sys.request(echo, Add(1, 1), T).unwrap_err();
        assert!(matches!(&err, Error::Unanswered { details, .. } if details.contains("ctx.reply")), "{err}");
        let (_, plain) = sys.listen(T).unwrap().expect("the plain send");
        assert!(plain.is::<Add>());
        // And one that does nothing with it.
        let silent = sys.create_actor::<Silent>().unwrap().address();
        assert!(matches!(sys.request(silent, Add(1, 1), T), Err(Error::Unanswered { .. })));
    }

    fn a_response_its_requester_fails_on_is_a_dead_letter_never_poison_for_the_one_asked(sys) {
        watch_dead_letters(&sys);
        let calc = sys.create_actor::<Calculator>().unwrap();
        let requester = sys.create_actor::<Requester>().unwrap();
        sys.tell(requester, AskHold { to: calc.address(), timeout: Duration::from_millis(300) }).unwrap();
        // Its handler of the made-up timeout fails: the Response goes to the dead-letter
        // path, and the calculator, which never got it, gets no poison for it.
        let (_, report) = sys.listen(T).unwrap().expect("the requester reports its response");
        assert!(report.downcast::<String>().is_some_and(|r| r.contains("Timeout")));
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.sender), (requester.address(), calc.address()));
        // A real answer it fails on is a dead letter too, not returned to the calculator.
        sys.tell(requester, AskHold { to: calc.address(), timeout: T }).unwrap();
        // The calculator still holds the first request (timed out at the requester): both
        // are answered, the first as a dead letter.
        while sys.request(calc, HeldCount, T).unwrap() < 2 {}
        sys.tell(calc, Release("held".into())).unwrap();
        // (Each failed response is offered twice, retry included: skip the timeout's.)
        loop {
            let (_, report) = sys.listen(T).unwrap().expect("the requester reports its response");
            if report.downcast::<String>().is_some_and(|r| r.contains("held")) {
                break;
            }
        }
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.sender), (requester.address(), calc.address()));
        assert_eq!(sys.request(calc, Add(1, 1), T).unwrap(), 2, "the calculator was never poisoned");
    }

    fn a_restarted_actor_never_gets_its_earlier_incarnation_s_answer(sys) {
        watch_dead_letters(&sys);
        let calc = sys.create_actor::<Calculator>().unwrap();
        let spec = ChildSpec { on_failure: OnFailure::Restart, ..ChildSpec::default() };
        let requester = sys.create_actor_with::<Requester>(spec).unwrap();
        sys.tell(requester, AskHold { to: calc.address(), timeout: T }).unwrap();
        while sys.request(calc, HeldCount, T).unwrap() == 0 {}
        sys.tell(requester, Die).unwrap();
        let _ = sys.listen(T); // Die's own poison
        while sys.actor_info(requester).unwrap().incarnation < 2 {
            let _ = sys.listen(Duration::from_millis(10));
        }
        // The answer to the first incarnation's request: a dead letter, not the new one's.
        sys.tell(calc, Release("late".into())).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.text.as_deref()), (requester.address(), Some("late")));
    }

    fn the_answer_to_an_ask_that_failed_on_another_message_is_a_dead_letter(sys) {
        watch_dead_letters(&sys);
        let calc = sys.create_actor::<Calculator>().unwrap();
        sys.tell(calc, Explode).unwrap();
        // The tell's poison reaches the client first and fails the ask (Thespian's ask).
        let err = sys.ask::<_, String>(calc, Hold, T).unwrap_err();
        assert!(matches!(err, Error::Poisoned { ref message, .. } if message.is::<Explode>()), "{err}");
        // The ask's own answer, later: nobody waits for it.
        sys.tell(calc, Release("late".into())).unwrap();
        let seen = next_of::<DeadSeen>(&sys);
        assert_eq!((seen.target, seen.text.as_deref()), (sys.address(), Some("late")));
    }
}

#[test]
fn an_exiting_actor_gets_no_made_up_response() {
    let sys = TestSystem::start(HOST);
    watch_dead_letters(&sys);
    let calc = sys.create_actor::<Calculator>().unwrap();
    let requester = sys.create_actor::<Requester>().unwrap();
    // Its request times out while it waits for its slow child to exit.
    sys.tell(
        requester,
        AskHold {
            to: calc.address(),
            timeout: Duration::from_millis(300),
        },
    )
    .unwrap();
    while sys.request(calc, HeldCount, T).unwrap() == 0 {}
    sys.stop(requester).unwrap();
    let seen = next_of::<DeadSeen>(&sys);
    assert_eq!((seen.target, seen.sender), (requester.address(), calc.address()));
    // Nothing reached its receive while it was exiting.
    while let Some((_, msg)) = sys.listen(Duration::from_millis(500)).unwrap() {
        assert!(!msg.is::<String>(), "{:?}", msg.downcast::<String>());
    }
}

#[test]
fn a_plain_message_a_client_never_takes_is_a_dead_letter_when_it_closes() {
    let sys = TestSystem::start(HOST);
    watch_dead_letters(&sys);
    let calc = sys.create_actor::<Calculator>().unwrap();
    let private = sys.private().unwrap();
    let client = private.address();
    // A stray, then the answer: the answer is taken, the stray never is.
    assert_eq!(
        private
            .request(calc, StraysThenAnswer { strays: 1, value: 3 }, T)
            .unwrap(),
        3
    );
    drop(private);
    let seen = next_of::<DeadSeen>(&sys);
    assert_eq!(
        (seen.target, seen.sender, seen.text.as_deref()),
        (client, calc.address(), Some("stray 0"))
    );
}

#[test]
fn a_request_is_answered_while_another_thread_waits_for_room_to_tell() {
    let sys = TestSystem::start_with(HOST, SystemConfig::default().send_window(4096));
    let calc = sys.create_actor::<Calculator>().unwrap();
    let sleeper = sys.create_actor::<Sleeper>().unwrap().address();
    sys.tell(sleeper, Nap { ms: 2500, pad: vec![] }).unwrap();
    std::thread::scope(|s| {
        let telling = s.spawn(|| {
            // Over the window while the sleeper naps: this tell waits for room.
            sys.tell(
                sleeper,
                Nap {
                    ms: 0,
                    pad: vec![0; 8192],
                },
            )
            .unwrap();
            Instant::now()
        });
        // Answered after 300 ms, well within its timeout, while the tell still waits.
        let slow = SlowAdd {
            a: 1,
            b: 2,
            delay: Duration::from_millis(300),
        };
        assert_eq!(sys.request(calc, slow, Duration::from_secs(2)).unwrap(), 3);
        let answered = Instant::now();
        assert_eq!(sys.request(calc, Add(2, 2), Duration::from_secs(2)).unwrap(), 4);
        assert!(
            telling.join().unwrap() > answered,
            "the tell was still waiting for room"
        );
    });
}

#[test]
fn eight_threads_sharing_one_client_each_get_their_own_answers() {
    for base in [greenroom::Base::Processes, greenroom::Base::Simple] {
        let sys = TestSystem::on(base, HOST);
        let calcs: Vec<ActorRef<Calculator>> = (0..2).map(|_| sys.create_actor::<Calculator>().unwrap()).collect();
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let sys = &sys;
                let calc = calcs[(t % 2) as usize];
                s.spawn(move || {
                    for n in 0..100u64 {
                        let value = t * 1000 + n;
                        let got = if n % 10 == 0 {
                            // Strays to the shared client while other threads wait.
                            sys.request(calc, StraysThenAnswer { strays: 1, value }, T).unwrap()
                        } else {
                            sys.request(calc, Add(value, 0), T).unwrap()
                        };
                        assert_eq!(got, value, "thread {t}, request {n} ({base:?})");
                    }
                });
            }
        });
        assert_eq!(strays(&sys, 80).len(), 80, "{base:?}");
    }
}

#[test]
fn a_tell_never_waits_behind_another_thread_s_pending_request() {
    let sys = TestSystem::start(HOST);
    let calc = sys.create_actor::<Calculator>().unwrap();
    let (done, finished) = mpsc::channel();
    std::thread::scope(|s| {
        // One thread waits for an answer that only comes when the other thread says so.
        s.spawn(|| {
            let answer = sys.request(calc, Hold, Duration::from_secs(60));
            done.send(answer).unwrap();
        });
        while sys.request(calc, HeldCount, T).unwrap() == 0 {}
        // Meanwhile this thread tells and requests, and each call returns while the other
        // still waits (the old client held its endpoint for the whole wait: a tell then
        // took as long as the other thread's timeout).
        let started = Instant::now();
        for n in 0..50 {
            sys.tell(calc, Add(n, n)).unwrap();
            assert_eq!(sys.request(calc, Add(n, 1), T).unwrap(), n + 1);
        }
        eprintln!("100 calls beside a pending request took {:?}", started.elapsed());
        assert!(
            finished.try_recv().is_err(),
            "the held request is still waiting while the other thread's calls completed"
        );
        sys.tell(calc, Release("now".into())).unwrap();
        assert_eq!(finished.recv_timeout(T).unwrap().unwrap(), "now");
    });
}

#[test]
fn a_request_crosses_a_convention_and_gets_its_own_answer() {
    let lab = lab([Default::default(), Default::default()]);
    let [a, b] = &lab.systems;
    let calc = b.create_actor::<Calculator>().unwrap();
    assert_ne!(
        calc.node(),
        a.address().node(),
        "the calculator lives on the other member"
    );
    // From a client of the other member, with strays before each answer.
    for value in 0..20 {
        assert_eq!(
            a.request(calc, StraysThenAnswer { strays: 1, value }, T).unwrap(),
            value
        );
    }
    assert_eq!(strays(a, 20).len(), 20);
    // From an actor of the other member: its requests cross the link both ways.
    let aggregator = a.create_actor::<Aggregator>().unwrap();
    let sum = SumVia {
        calculators: vec![calc],
        pairs: vec![(1, 2), (3, 4)],
        timeout: T,
    };
    assert_eq!(a.request(aggregator, sum, T).unwrap(), Ok(10));
    // Its poison comes back across too, as the request's own.
    let err = a.request(calc, Explode, T).unwrap_err();
    assert!(
        matches!(&err, Error::Poisoned { address, .. } if *address == calc),
        "{err}"
    );
    // And a timeout across the link leaves nothing to take the next answer.
    let err = a.request(calc, Hold, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    a.tell(calc, Release("late".into())).unwrap();
    assert_eq!(a.request(calc, Add(7, 8), T).unwrap(), 15);
}
