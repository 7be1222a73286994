//! Test support for Greenroom's black-box tests: the actor types the tests create, and a
//! harness that owns a real actor system and leaves nothing behind.
//!
//! The actors run in `greenroom-test-host`, this crate's binary, which is the admin and host
//! executable of every test system.

pub mod actors;
pub mod harness;
pub mod lab;
pub mod ledger_actors;
pub mod request_actors;
pub mod troupe_actors;

pub use harness::TestSystem;

/// Every actor type the test host binary can run.
pub fn registry() -> greenroom::Registry {
    use actors::*;
    greenroom::Registry::new()
        .register::<Echo>()
        .register::<Silent>()
        .register::<Recorder>()
        .register::<Tally>()
        .register::<Blaster>()
        .register::<Forwarder>()
        .register::<Spawner>()
        .register::<Panicker>()
        .register::<Whoami>()
        .register::<Crasher>()
        .register::<Stage>()
        .register::<Timer>()
        .register::<Mortuary>()
        .register::<TypedGreeter>()
        .register::<GpuWorker>()
        .register::<Broker>()
        .register::<Logger>()
        .register::<ConventionWatcher>()
        .register::<request_actors::Calculator>()
        .register::<request_actors::Aggregator>()
        .register::<request_actors::Peer>()
        .register::<request_actors::Requester>()
        .register::<request_actors::Sleeper>()
        .register::<request_actors::Forgetful>()
        .register::<Stillborn>()
        .register::<Ephemeral>()
        .register::<Alarm>()
        .register::<troupe_actors::PoolWorker>()
        .register::<troupe_actors::Burster>()
        .register::<ledger_actors::Ledger>()
        .register::<ledger_actors::DeadLedger>()
        .register::<ledger_actors::Pump>()
}
