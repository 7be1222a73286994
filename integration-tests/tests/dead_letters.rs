//! Dead letters: messages for actors gone for good reach the registered handler as
//! `DeadEnvelope`s.

use std::time::Duration;

use greenroom::{ActorExitRequest, Error};
use greenroom_integration_tests::{actors::*, TestSystem};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

#[test]
fn messages_to_a_gone_actor_reach_the_dead_letter_handler() {
    let sys = TestSystem::start(HOST);
    let mortuary = sys.create_actor::<Mortuary>().unwrap();
    let registered: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
    assert!(registered);

    let doomed = sys.create_actor::<Echo>().unwrap();
    sys.tell(doomed, ActorExitRequest).unwrap();
    let err = sys
        .ask::<_, String>(doomed, "are you there?".to_string(), T)
        .unwrap_err();
    assert!(matches!(err, Error::ActorGone { .. }), "{err}");

    // An actor sends to the dead address: not its failure, a dead letter.
    let forwarder = sys.create_actor::<Forwarder>().unwrap();
    sys.tell(
        forwarder,
        Forward {
            to: doomed,
            text: "for the dead".into(),
        },
    )
    .unwrap();
    let seen = loop {
        let (_, msg) = sys.listen(T).unwrap().expect("the handler reports the dead letter");
        if let Some(seen) = msg.downcast::<DeadSeen>() {
            break seen;
        }
    };
    assert_eq!(seen.target, doomed);
    assert_eq!(seen.text.as_deref(), Some("for the dead"));
}

#[test]
fn a_message_that_does_not_decode_as_its_tag_goes_to_the_dead_letter_path() {
    let sys = TestSystem::start(HOST);
    let mortuary = sys.create_actor::<Mortuary>().unwrap();
    let _: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
    let recorder = sys.create_actor::<Recorder>().unwrap();
    // Tagged as a u64, but not a valid postcard u64 (a varint that never ends).
    let forged = greenroom::AnyMessage::from_payload(greenroom_protocol::Payload {
        tag: "u64".into(),
        bytes: vec![0xff; 12],
    });
    sys.tell_any(recorder, forged).unwrap();
    let seen = loop {
        let (_, msg) = sys.listen(T).unwrap().expect("the handler reports the forged message");
        if let Some(seen) = msg.downcast::<DeadSeen>() {
            break seen;
        }
    };
    assert_eq!(seen.target, recorder);
    // The connection and the actor are fine.
    let rec: Recorded = sys.ask(recorder, Report, T).unwrap();
    assert_eq!(rec.count, 0);
}
