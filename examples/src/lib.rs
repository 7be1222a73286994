//! What the example programs share: choosing the base from the command line, and the actor
//! types of the CLI walk-through ([`demo`]).
//!
//! Every example that makes sense on both bases takes `--base processes` (the default) or
//! `--base simple`; nothing else in the program changes.

pub mod demo;

use greenroom::Base;

/// The base named by `--base` in this program's arguments: [`Base::Processes`] unless
/// `--base simple` is given. An unknown name exits with status 2 and says what is accepted.
pub fn base_from_args() -> Base {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--base").map(|i| args.get(i + 1)) {
        None => Base::Processes,
        Some(Some(name)) if name == "processes" => Base::Processes,
        Some(Some(name)) if name == "simple" => Base::Simple,
        Some(other) => {
            eprintln!("--base takes `processes` or `simple`, not {other:?}");
            std::process::exit(2)
        }
    }
}

/// The demo actors in process-base systems started by this library's own unit tests: the
/// unit-test binary is their admin and host executable through `test_support!`.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use greenroom::{Base, SystemConfig};
    use greenroom_integration_tests::TestSystem;

    use crate::demo::{Add, Counter, Greet, Pool, Total};

    greenroom_host::test_support!(crate::demo::registry());

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn a_counter_counts_on_both_bases() {
        for base in [Base::Processes, Base::Simple] {
            let system = TestSystem::own(SystemConfig::default().base(base));
            let counter = system.create_actor::<Counter>().unwrap();
            system.tell(counter, Add(2)).unwrap();
            system.tell(counter, Add(3)).unwrap();
            let total = system.request(counter, Total, T).unwrap();
            assert_eq!(total, 5, "{base:?}");
        }
    }

    #[test]
    fn a_pool_answers_through_greeters_in_processes_of_their_own() {
        let system = TestSystem::own(SystemConfig::default());
        let pool = system.create_actor::<Pool>().unwrap();
        for name in ["Ada", "Grace", "Edsger"] {
            let reply = system.request(pool, Greet(name.to_string()), T).unwrap();
            assert_eq!(reply, format!("Hello, {name}!"));
        }
        // The pool and the two greeters it created, each a host process of the admin.
        assert_eq!(system.host_pids().len(), 3, "{:?}", system.host_pids());
    }
}
