//! Promises kept on both bases: a child whose constructor panics, transient actors, the
//! per-actor failure policy, and wakeups that survive a crash. Behaviour runs on both bases
//! (`on_both_bases!`); what needs processes (kills, pids) runs on the process base.

use std::time::Duration;

use greenroom::{Address, Error, ExitCause};
use greenroom_integration_tests::{actors::*, on_both_bases, TestSystem};

const T: Duration = Duration::from_secs(10);

/// The next message to the client of type `M`, skipping others.
fn next_of<M: greenroom::Message>(sys: &TestSystem) -> M {
    loop {
        let (_, msg) = sys.listen(T).unwrap().expect("a message before the timeout");
        if let Some(m) = msg.downcast::<M>() {
            return m;
        }
    }
}

/// Asks `parent` (a [`Spawner`]) for a child of type `A` with `spec`, reporting to the
/// client; returns the child's address.
fn spawn_child<A: greenroom::Actor>(sys: &TestSystem, parent: Address, spec: greenroom::ChildSpec) -> Address {
    let spawn = SpawnTyped {
        type_name: greenroom::actor_type_name::<A>().to_string(),
        spec,
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(parent, spawn, T).unwrap();
    children[0]
}

on_both_bases! {
    fn a_child_whose_constructor_panics_has_an_address_and_its_parent_hears_it_exited(sys) {
        let parent = sys.create_actor::<Spawner>().unwrap();
        let child = spawn_child::<Stillborn>(&sys, parent, Default::default());
        let seen = next_of::<ChildExitSeen>(&sys);
        assert_eq!((seen.parent, seen.child), (parent, child));
        match &seen.cause {
            ExitCause::StartFailed(why) => {
                assert!(why.contains("the constructor panicked"), "{why}");
                assert!(why.contains("Stillborn's constructor always panics"), "{why}");
            }
            other => panic!("expected StartFailed, got {other:?}"),
        }
        // Its address is dead: an actor's message to it is a dead letter, a client's ask
        // fails at once with the cause.
        let mortuary = sys.create_actor::<Mortuary>().unwrap();
        let _: bool = sys.ask(mortuary, TakeDeadLetters, T).unwrap();
        let forwarder = sys.create_actor::<Forwarder>().unwrap();
        sys.tell(forwarder, Forward { to: child, text: "anyone there?".into() }).unwrap();
        let dead = next_of::<DeadSeen>(&sys);
        assert_eq!(dead, DeadSeen { target: child, text: Some("anyone there?".into()) });
        let err = sys.ask::<_, String>(child, "hello?".to_string(), T).unwrap_err();
        assert!(matches!(&err, Error::ActorGone { cause: ExitCause::StartFailed(_), .. }), "{err}");
    }
}
