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
//! A dedicated host binary calls [`serve`] instead.
//!
//! ## Exit codes of a host process
//! | code | meaning |
//! |---|---|
//! | 0 | the actor finished an `ActorExitRequest` |
//! | 2 | the actor could not be started (unknown type, constructor panic) |
//! | 3 | the admin went away |
//! | 70 | the host itself failed (a socket error it cannot recover from) |

mod host;

use greenroom::{process_role::Role, Registry};

/// Hands Greenroom the registry of actor types.
///
/// In a process Greenroom started as an admin or a host, this runs that role and **never
/// returns**; in a client program it returns the registry unchanged. Call it first in
/// `main`, before anything with side effects.
pub fn init(registry: Registry) -> Registry {
    // Conflicting `message_tag!` declarations fail here, in every role, not on a message.
    greenroom::tag::check_tags();
    match Role::current() {
        Role::Client => {
            // Kept for a simple-base system, which runs the actors in this process.
            greenroom::actor::set_program_registry(&registry);
            registry
        }
        Role::Admin => greenroom::admin::run_from_env(),
        Role::Host => host::run(&registry),
    }
}

/// The `main` of a dedicated host binary: serves as an admin or a host and never returns.
/// Run directly (not by Greenroom), it prints what it is and exits with status 2.
pub fn serve(registry: Registry) -> ! {
    greenroom::tag::check_tags();
    match Role::current() {
        Role::Admin => greenroom::admin::run_from_env(),
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
