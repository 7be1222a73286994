//! Global names: one actor per name in a system, found by anyone, kept across restarts,
//! freed when the actor is gone for good.

use std::time::Duration;

use greenroom::{ActorExitRequest, Error};
use greenroom_integration_tests::{actors::*, harness, TestSystem};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

#[test]
fn a_global_name_gives_one_actor_to_everyone_and_survives_restarts() {
    let sys = TestSystem::start(HOST);
    let first = sys.create_actor_global::<Echo>("registry").unwrap();
    assert_eq!(sys.create_actor_global::<Echo>("registry").unwrap(), first);
    // Any type: the name decides.
    assert_eq!(sys.create_actor_global::<Silent>("registry").unwrap(), first);
    // From inside an actor too, and the named actor is not that actor's child.
    let spawner = sys.create_actor::<Spawner>().unwrap();
    let Spawned(found) = sys
        .ask(
            spawner,
            SpawnGlobal {
                name: "registry".into(),
            },
            T,
        )
        .unwrap();
    assert_eq!(found, vec![first]);
    let Spawned(other) = sys.ask(spawner, SpawnGlobal { name: "other".into() }, T).unwrap();
    assert_ne!(other[0], first);
    let spawner_pid = sys.actor_info(spawner).unwrap().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spawner_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(harness::wait_for_exit(spawner_pid, T));
    let back: String = sys.ask(other[0], "not its child".to_string(), T).unwrap();
    assert_eq!(back, "not its child", "a named actor does not die with its creator");

    // A restart keeps the name.
    let pid = sys.actor_info(first).unwrap().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(harness::wait_for_exit(pid, T));
    let back: String = sys.ask(first, "back".to_string(), T).unwrap();
    assert_eq!(back, "back");
    assert_eq!(sys.create_actor_global::<Echo>("registry").unwrap(), first);

    // Gone for good: the name is free again.
    sys.tell(first, ActorExitRequest).unwrap();
    let err = sys.ask::<_, String>(first, "gone?".to_string(), T).unwrap_err();
    assert!(matches!(err, Error::ActorGone { .. }), "{err}");
    let second = sys.create_actor_global::<Echo>("registry").unwrap();
    assert_ne!(second, first);
    let back: String = sys.ask(second, "new".to_string(), T).unwrap();
    assert_eq!(back, "new");
}
