//! Two binaries built apart agree on a message type through its declared tag: the client
//! (this test) and the host (`greenroom-tag-host`) define the same structs in differently
//! named modules, so their paths differ, and declare the same stable tags. Real processes:
//! the actor runs in the other executable.

use std::time::Duration;

use greenroom::{ActorExitRequest, ChildSpec};
use greenroom_integration_tests::TestSystem;

const TAG_HOST: &str = env!("CARGO_BIN_EXE_greenroom-tag-host");
/// `TagEcho`'s registered name: its path in the host binary (crate `greenroom_tag_host`).
const TAG_ECHO: &str = "greenroom_tag_host::TagEcho";
const T: Duration = Duration::from_secs(10);

mod client_wire {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Greeting {
        pub text: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct GreetingReply {
        pub text: String,
        pub host_type_name: String,
    }

    /// The same shape as `Greeting`, without a declaration: it goes by its path.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Untagged {
        pub text: String,
    }
}

greenroom::message_tag!(
    client_wire::Greeting = "greenroom-tests.Greeting/v1",
    client_wire::GreetingReply = "greenroom-tests.GreetingReply/v1",
);

/// A system whose admin and hosts run the tag host, with a `TagEcho` in it.
fn start() -> (TestSystem, greenroom::Address) {
    let sys = TestSystem::start(TAG_HOST);
    let echo = sys.create_actor_named(TAG_ECHO, ChildSpec::default()).unwrap();
    (sys, echo)
}

#[test]
fn a_host_built_apart_decodes_a_declared_message_and_replies() {
    let (sys, echo) = start();
    let reply: client_wire::GreetingReply = sys
        .ask(echo, client_wire::Greeting { text: "client".into() }, T)
        .unwrap();
    assert_eq!(reply.text, "hello, client");
    // The two sides really disagree on the path; only the declared tag joined them.
    let client_path = std::any::type_name::<client_wire::Greeting>();
    assert_eq!(reply.host_type_name, "greenroom_tag_host::host_wire::Greeting");
    assert_ne!(reply.host_type_name, client_path);
    // And the actor ran in the other executable, not in this one.
    let pid = sys.actor_info(echo).unwrap().pid.expect("a running host");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, std::fs::canonicalize(TAG_HOST).unwrap());
    sys.tell(echo, ActorExitRequest).unwrap();
}

#[test]
fn without_a_declaration_the_host_does_not_recognise_the_clients_path() {
    let (sys, echo) = start();
    let reply: String = sys
        .ask(echo, client_wire::Untagged { text: "client".into() }, T)
        .unwrap();
    assert_eq!(
        reply,
        format!("unrecognised: {}", std::any::type_name::<client_wire::Untagged>())
    );
}
