//! Global names across restarts (a process-base matter; the rest of their behaviour is in
//! `behaviour.rs`, on both bases).

use std::time::Duration;

use greenroom_integration_tests::{actors::*, harness, TestSystem};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

#[test]
fn a_global_name_survives_restarts() {
    let sys = TestSystem::start(HOST);
    let first = sys.create_actor_global::<Echo>("registry").unwrap();
    assert_eq!(sys.create_actor_global::<Echo>("registry").unwrap(), first);
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
}
