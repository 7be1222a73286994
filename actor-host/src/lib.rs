//! The worker side of Greenroom: the process that hosts one actor, and the entry point a
//! binary calls with its registry of actor types.
//!
//! Every Greenroom binary starts with one call:
//!
//! ```no_run
//! # use greenroom::Registry;
//! # #[derive(Default)] struct Hello;
//! # impl greenroom::Actor for Hello {
//! #     fn receive(&mut self, _: &mut greenroom::Context<'_>, _: &greenroom::AnyMessage, _: greenroom::Address) -> greenroom::ActorResult { Ok(()) }
//! # }
//! fn main() {
//!     let registry = greenroom_host::init(Registry::new().register::<Hello>());
//!     // Only a client program gets here; admins and hosts ran their role and exited.
//! #   let _ = registry;
//! }
//! ```
//!
//! Greenroom runs the same executable for its admin (`GREENROOM_ROLE=admin`) and for each
//! actor host (`GREENROOM_ROLE=host`), so that a one-file program needs no other binary.
//! A dedicated host binary calls [`serve`] instead, and a test binary, whose `main` is
//! libtest's, invokes [`test_support!`] once instead (see there).
//!
//! ## Exit codes of a host process
//! | code | meaning |
//! |---|---|
//! | 0 | the actor finished an `ActorExitRequest` |
//! | 2 | the actor could not be started (unknown type, constructor panic); or [`init`] was reached on a test's thread (a test binary without [`test_support!`]) |
//! | 3 | the admin went away |
//! | 4 | a `receive` failed and the actor's failure policy is `OnFailure::Restart` (the host told the admin why first) |
//! | 70 | the host itself failed (a socket error it cannot recover from); or [`test_support!`] failed before `main` |

mod host;
mod lifespan;
#[doc(hidden)]
pub mod test_support;
mod wakeups;

use std::io::Write;

use greenroom::{
    process_role::{self, Entry, Role},
    Registry,
};

/// The registry type, for [`test_support!`]'s expansion in crates that name it otherwise.
#[doc(hidden)]
pub use greenroom::Registry as __Registry;

/// Hands Greenroom the registry of actor types.
///
/// In a process Greenroom started as an admin or a host, this runs that role and **never
/// returns**; in a client program it returns the registry unchanged. Call it first in
/// `main`, before anything with side effects. In a test binary use [`test_support!`]
/// instead: called from a `#[test]`, `init` is not reached when the binary is re-run.
pub fn init(registry: Registry) -> Registry {
    // Conflicting `message_tag!` declarations fail here, in every role, not on a message.
    greenroom::tag::check_tags();
    match Role::current() {
        Role::Client => {
            // Kept for a simple-base system, which runs the actors in this process.
            greenroom::actor::set_program_registry(&registry);
            // So that `ActorSystem::start` knows whether re-running this executable reaches
            // `init` again (not if it was called from a test).
            process_role::record_entry(match named_thread_other_than_main() {
                Some(thread) => Entry::Thread(thread),
                None => Entry::Main,
            });
            registry
        }
        role => {
            // In practice a libtest test thread: this is a test binary without
            // `test_support!`, re-run with its whole suite. It must neither serve from a test
            // nor go on running the others.
            if let Some(thread) = named_thread_other_than_main() {
                let _ = writeln!(
                    std::io::stderr(),
                    "greenroom_host::init was reached on thread `{thread}`, not first thing in main, in a process \
                     started as a Greenroom {}: a test binary invokes greenroom_host::test_support!(registry) instead",
                    role.env_value(),
                );
                std::process::exit(EXIT_NOT_AN_ENTRY)
            }
            match role {
                Role::Admin => greenroom::admin::run_from_env(),
                Role::Gateway => greenroom::convention::gateway::run_from_env(),
                _ => host::run(&registry),
            }
        }
    }
}

/// The exit status of an admin or host process that reached [`init`] on a test's thread.
const EXIT_NOT_AN_ENTRY: i32 = 2;

/// The name of the calling thread if it is not the main thread and has one (libtest names
/// each test's thread after the test).
fn named_thread_other_than_main() -> Option<String> {
    // SAFETY: gettid takes no arguments and cannot fail. The main thread's id is the pid, and
    // comparing them spares the usual case `thread::current()`'s allocation.
    if unsafe { libc::gettid() } as u32 == std::process::id() {
        return None;
    }
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_owned)
}

/// The `main` of a dedicated host binary: serves as an admin or a host and never returns.
/// Run directly (not by Greenroom), it prints what it is and exits with status 2.
pub fn serve(registry: Registry) -> ! {
    greenroom::tag::check_tags();
    match Role::current() {
        Role::Admin => greenroom::admin::run_from_env(),
        Role::Gateway => greenroom::convention::gateway::run_from_env(),
        Role::Host => host::run(&registry),
        Role::Client => {
            eprintln!(
                "this is a Greenroom host binary for actor types {:?}; it is started by an actor system \
                 (point SystemConfig::host_executable at it), not run by hand",
                registry.type_names()
            );
            std::process::exit(2)
        }
    }
}
