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
