//! # Greenroom: actors in their own OS processes
//!
//! Greenroom is an actor runtime in the spirit of Python's Thespian where **every actor is
//! its own OS process**: a panic, an abort or a segfault in one actor never takes down
//! another. An admin process spawns one host process per actor; actors and clients talk
//! directly over Unix sockets with a small framed protocol.
//!
//! A complete program — the executable doubles as admin and host binary:
//!
//! ```no_run
//! use greenroom::{dispatch, ActorResult, ActorSystem, Address, Context, Handle, Registry, Request};
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! /// Asks for a greeting.
//! #[derive(Serialize, Deserialize)]
//! struct Hi;
//! impl Request for Hi {
//!     type Reply = String;
//! }
//!
//! #[derive(Default)]
//! struct Hello;
//! impl Handle<Hi> for Hello {
//!     type Reply = String;
//!     fn handle(&mut self, _: &mut Context<'_>, _: Hi, _: Address) -> ActorResult<String> {
//!         Ok("Hello, World!".to_string())
//!     }
//! }
//! dispatch!(Hello { Hi });
//!
//! fn main() -> Result<(), greenroom::Error> {
//!     // In an admin or host process this call runs that role and never returns.
//!     greenroom_host::init(Registry::new().register::<Hello>());
//!     let system = ActorSystem::start()?;
//!     let hello = system.create_actor::<Hello>()?;
//!     let reply = system.request(hello, Hi, Duration::from_secs(1))?;
//!     println!("{reply}");
//!     system.stop(hello)?;
//!     system.shutdown()
//! }
//! # mod greenroom_host { pub fn init(_: greenroom::Registry) {} }
//! ```
//!
//! The guide is `docs/guide.md` in the repository; `ARCHITECTURE.md` says how the processes
//! and sockets fit together.

pub mod actor;
pub mod actor_ref;
pub mod admin;
pub mod convention;
pub mod dispatch;
pub mod error;
pub mod ledger;
pub mod logging;
pub mod message;
#[doc(hidden)]
pub mod net;
pub mod process_role;
pub mod request;
pub mod runtime_dir;
pub mod system;
pub mod tag;
pub mod troupe;

/// What `message_tag!` expands to needs; not public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}

pub use actor::{actor_type_name, Actor, ActorResult, Backend, Context, Registry};
pub use actor_ref::{ActorRef, Answers, Recipient};
pub use dispatch::Handle;
pub use error::{Error, Result};
pub use greenroom_protocol::{
    ActorRow, ActorState, Address, Backoff, Capabilities, ChildSpec, CreateFailure, ExitCause, NodeId, OnFailure,
    ProtocolError, Resource, ResourceLimits, RestartType, Strategy, SupervisorSpec, SystemDescription, TroupeLoad,
};
pub use message::{
    ActorExitRequest, ActorSystemConventionUpdate, AnyMessage, ChildActorExited, ChildRestarted, DeadEnvelope, Message,
    PoisonMessage, WakeupMessage,
};
pub use request::{IntoReply, Later, ReplyTo, Request, RequestError, RequestId, Response};
pub use system::{ActorInfo, ActorSystem, Base, Delivery, SystemConfig};
pub use troupe::{Troupe, TroupeReport, TroupeStatus, UpdateTroupeSettings};

/// The README and the guide in `docs/`, compiled (and, on the simple base, run) as doctests
/// so that their examples cannot drift from the API. Every file is included, even one
/// without Rust, so that a fenced block without a language (which rustdoc takes for Rust)
/// fails here rather than go unchecked. Only `cargo test --doc` sees this module.
#[cfg(doctest)]
pub mod markdown_doctests {
    #[doc = include_str!("../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../docs/guide.md")]
    pub struct Guide;
    #[doc = include_str!("../../docs/conventions.md")]
    pub struct Conventions;
    #[doc = include_str!("../../docs/cli.md")]
    pub struct Cli;
    #[doc = include_str!("../../docs/logging.md")]
    pub struct Logging;
    #[doc = include_str!("../../docs/security.md")]
    pub struct Security;
    #[doc = include_str!("../../docs/performance.md")]
    pub struct Performance;
}
