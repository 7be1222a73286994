//! `wakeup_after`: timers in the actor's own process, delivered in time order, several at
//! once, dropped when the actor exits.

use std::time::{Duration, Instant};

use greenroom::ActorExitRequest;
use greenroom_integration_tests::{
    actors::{Arm, Rang, Timer},
    TestSystem,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

#[test]
fn wakeups_arrive_in_time_order_and_not_before_their_delay() {
    let sys = TestSystem::start(HOST);
    let timer = sys.create_actor::<Timer>().unwrap();
    let start = Instant::now();
    for (delay_ms, label) in [(300, "late"), (50, "early"), (150, "middle")] {
        let armed: bool = sys
            .ask(
                timer,
                Arm {
                    delay_ms,
                    label: label.into(),
                },
                T,
            )
            .unwrap();
        assert!(armed);
    }
    let mut rang = Vec::new();
    while rang.len() < 3 {
        let (_, msg) = sys.listen(T).unwrap().expect("a wakeup report");
        let r = msg.downcast::<Rang>().expect("a Rang");
        assert!(
            start.elapsed() >= Duration::from_millis(r.delay_ms),
            "{} rang after {:?}, before its {} ms",
            r.label,
            start.elapsed(),
            r.delay_ms
        );
        rang.push(r.label);
    }
    assert_eq!(rang, vec!["early", "middle", "late"]);
}

#[test]
fn pending_wakeups_are_dropped_when_the_actor_exits() {
    let sys = TestSystem::start(HOST);
    let timer = sys.create_actor::<Timer>().unwrap();
    let _: bool = sys
        .ask(
            timer,
            Arm {
                delay_ms: 200,
                label: "never".into(),
            },
            T,
        )
        .unwrap();
    sys.tell(timer, ActorExitRequest).unwrap();
    assert!(
        sys.listen(Duration::from_millis(600)).unwrap().is_none(),
        "no wakeup after the actor exited"
    );
}
