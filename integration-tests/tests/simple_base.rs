//! What only the simple base promises: one fixed order of `receive` calls, the order messages
//! were sent in, the same every run; and a virtual clock that tests move.

use std::time::{Duration, Instant};

use greenroom::{ActorExitRequest, ActorSystem, Address, Base, Delivery, Error, SystemConfig};
use greenroom_integration_tests::{actors::*, registry, TestSystem};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

fn simple() -> ActorSystem {
    let config = SystemConfig::default()
        .base(Base::Simple)
        .registry(registry())
        .record_deliveries(true);
    ActorSystem::start_with(config).expect("a simple-base system")
}

/// A busy little program: children, grandchildren, streams between actors, timers, a panic,
/// dead letters and a recursive exit. Returns every `receive` call in order.
fn busy_program() -> Vec<Delivery> {
    let sys = simple();
    let mortuary = sys.create_actor::<Mortuary>().unwrap().address();
    let _: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
    let top = sys.create_actor::<Spawner>().unwrap().address();
    let req = SpawnChildren {
        children: 3,
        grandchildren: 2,
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(top, req, T).unwrap();
    let recorder = sys.create_actor::<Recorder>().unwrap().address();
    let blasters: Vec<Address> = (0..3)
        .map(|_| sys.create_actor::<Blaster>().unwrap().address())
        .collect();
    for b in &blasters {
        sys.tell(
            *b,
            Blast {
                to: recorder,
                count: 20,
            },
        )
        .unwrap();
    }
    let timer = sys.create_actor::<Timer>().unwrap().address();
    for (delay_ms, label) in [(30, "c"), (10, "a"), (20, "b")] {
        let _: bool = sys
            .ask(
                timer,
                Arm {
                    delay_ms,
                    label: label.into(),
                },
                T,
            )
            .unwrap();
    }
    let panicker = sys.create_actor::<Panicker>().unwrap().address();
    sys.tell(panicker, PanicCommand::Always).unwrap();
    sys.tell(children[0], ActorExitRequest).unwrap();
    let forwarder = sys.create_actor::<Forwarder>().unwrap().address();
    sys.tell(
        forwarder,
        Forward {
            to: children[0],
            text: "too late".into(),
        },
    )
    .unwrap();
    sys.advance_clock(Duration::from_millis(25)).unwrap();
    sys.tell(top, ActorExitRequest).unwrap();
    // Drain what came to the client (the poison comes back as an error).
    loop {
        match sys.listen(Duration::from_millis(100)) {
            Ok(Some(_)) | Err(Error::Poisoned { .. }) => continue,
            Ok(None) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let trace = sys.take_deliveries().unwrap();
    sys.shutdown().unwrap();
    trace
}

#[test]
fn two_runs_of_the_same_program_make_the_same_receive_calls_in_the_same_order() {
    let first = busy_program();
    let second = busy_program();
    assert!(first.len() > 100, "a busy program: {} receives", first.len());
    for (n, (a, b)) in first.iter().zip(&second).enumerate() {
        assert_eq!(a, b, "receive #{n} differs between runs");
    }
    assert_eq!(first.len(), second.len());
    // It covered what it meant to: timers, dead letters, exit notices, a failing receive.
    for tag in ["WakeupMessage", "DeadEnvelope", "ChildActorExited", "PanicCommand"] {
        assert!(
            first.iter().any(|d| d.message_type.ends_with(tag)),
            "no {tag} in the trace"
        );
    }
}

#[test]
fn receives_run_in_the_order_messages_were_sent() {
    let sys = simple();
    let a = sys.create_actor::<Forwarder>().unwrap().address();
    let b = sys.create_actor::<Forwarder>().unwrap().address();
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let client = sys.address();
    // Each tell runs to completion before it returns: a, then what a sent; then b, ...
    sys.tell(
        a,
        Forward {
            to: echo,
            text: "1".into(),
        },
    )
    .unwrap();
    sys.tell(
        b,
        Forward {
            to: echo,
            text: "2".into(),
        },
    )
    .unwrap();
    let order: Vec<(Address, Address)> = sys
        .take_deliveries()
        .unwrap()
        .into_iter()
        .map(|d| (d.sender, d.receiver))
        .collect();
    // The echo replies to the forwarders, which ignore strings.
    assert_eq!(
        order,
        vec![(client, a), (a, echo), (echo, a), (client, b), (b, echo), (echo, b)]
    );
}

#[test]
fn the_virtual_clock_fires_timers_only_when_moved() {
    let sys = simple();
    let timer = sys.create_actor::<Timer>().unwrap().address();
    let started = Instant::now();
    let _: bool = sys
        .ask(
            timer,
            Arm {
                delay_ms: 3_600_000,
                label: "an hour".into(),
            },
            T,
        )
        .unwrap();
    let _: bool = sys
        .ask(
            timer,
            Arm {
                delay_ms: 60_000,
                label: "a minute".into(),
            },
            T,
        )
        .unwrap();
    assert!(sys.listen(Duration::ZERO).unwrap().is_none(), "nothing rings at once");
    sys.advance_clock(Duration::from_secs(59)).unwrap();
    assert!(sys.listen(Duration::ZERO).unwrap().is_none(), "not before its minute");
    sys.advance_clock(Duration::from_secs(1)).unwrap();
    let (_, msg) = sys.listen(Duration::ZERO).unwrap().expect("the minute rang");
    assert_eq!(msg.downcast::<Rang>().map(|r| r.label).as_deref(), Some("a minute"));
    // Waiting lets virtual time pass too: a listen of two hours hears the hour.
    let (_, msg) = sys.listen(Duration::from_secs(7200)).unwrap().expect("the hour rang");
    assert_eq!(msg.downcast::<Rang>().map(|r| r.label).as_deref(), Some("an hour"));
    assert_eq!(sys.virtual_time().unwrap(), Duration::from_secs(3600));
    // A day's timeout passes in no real time.
    let silent = sys.create_actor::<Silent>().unwrap().address();
    let err = sys
        .ask::<_, String>(silent, "?".to_string(), Duration::from_secs(86_400))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(sys.virtual_time().unwrap(), Duration::from_secs(3600 + 86_400));
    assert!(started.elapsed() < T, "virtual time is not real time");
}

#[test]
fn simple_base_calls_are_refused_clearly_on_the_process_base() {
    let sys = TestSystem::start(HOST);
    let err = sys.advance_clock(Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, Error::WrongBase(_)), "{err}");
    assert!(err.to_string().contains("real clock"), "{err}");
    assert!(matches!(sys.take_deliveries(), Err(Error::WrongBase(_))));
}

#[test]
fn a_simple_base_without_a_registry_says_how_to_give_it_one() {
    let err = ActorSystem::start_with(SystemConfig::default().base(Base::Simple))
        .err()
        .expect("no registry, no system");
    assert!(matches!(err, Error::NoRegistry), "{err}");
    assert!(err.to_string().contains("SystemConfig::registry"), "{err}");
}

#[test]
fn a_simple_system_refuses_calls_after_shutdown() {
    let sys = simple();
    let echo = sys.create_actor::<Echo>().unwrap().address();
    sys.shutdown().unwrap();
    assert!(matches!(sys.tell(echo, 1u8), Err(Error::SystemStopped)));
    sys.shutdown().unwrap();
}

/// A dead-letter handler that fails on every dead letter.
#[derive(Default)]
struct BrokenMortuary;

impl greenroom::Actor for BrokenMortuary {
    fn receive(
        &mut self,
        ctx: &mut greenroom::Context<'_>,
        msg: &greenroom::AnyMessage,
        sender: Address,
    ) -> greenroom::ActorResult {
        if msg.is::<TakeDeadLetters>() {
            ctx.handle_dead_letters(true)?;
            ctx.send(sender, true)?;
            return Ok(());
        }
        Err(format!("cannot take {}", msg.tag()).into())
    }
}

#[test]
fn a_failing_dead_letter_handler_does_not_loop_on_the_poison_it_cannot_return() {
    // The poison for a dead letter goes back to its sender, the dead target: it is logged,
    // not turned into another dead letter for the same handler (which would never end).
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let registry = registry().register::<BrokenMortuary>();
        let sys = ActorSystem::start_with(SystemConfig::default().base(Base::Simple).registry(registry)).unwrap();
        let handler = sys.create_actor::<BrokenMortuary>().unwrap().address();
        let _: bool = sys.ask(handler, TakeDeadLetters, T).unwrap();
        let doomed = sys.create_actor::<Echo>().unwrap().address();
        sys.tell(doomed, ActorExitRequest).unwrap();
        let forwarder = sys.create_actor::<Forwarder>().unwrap().address();
        sys.tell(
            forwarder,
            Forward {
                to: doomed,
                text: "for the dead".into(),
            },
        )
        .unwrap();
        let echo = sys.create_actor::<Echo>().unwrap().address();
        let back: String = sys.ask(echo, "still running".to_string(), T).unwrap();
        let _ = done_tx.send(back);
    });
    let back = done.recv_timeout(T).expect("the system came back from the dead letter");
    assert_eq!(back, "still running");
}
