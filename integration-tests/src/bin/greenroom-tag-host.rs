//! A host binary whose message types live elsewhere than its client's (for
//! `tests/stable_tags.rs`): the same structs, in module `host_wire` here and `client_wire`
//! in the test, so their paths (the default tags) differ and only declared tags can match.

use greenroom::{message::is_system_tag, Actor, ActorResult, Address, AnyMessage, Context, Registry};

mod host_wire {
    use serde::{Deserialize, Serialize};

    /// Declared with a stable tag on both sides.
    #[derive(Serialize, Deserialize)]
    pub struct Greeting {
        pub text: String,
    }

    /// The answer to a [`Greeting`], declared on both sides too.
    #[derive(Serialize, Deserialize)]
    pub struct GreetingReply {
        pub text: String,
        /// This binary's path of [`Greeting`], to show the client that the paths differ.
        pub host_type_name: String,
    }
}

greenroom::message_tag!(
    host_wire::Greeting = "greenroom-tests.Greeting/v1",
    host_wire::GreetingReply = "greenroom-tests.GreetingReply/v1",
);

/// Answers a `Greeting`; tells the sender the tag of anything else it could not recognise.
#[derive(Default)]
struct TagEcho;

impl Actor for TagEcho {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if let Some(greeting) = msg.downcast::<host_wire::Greeting>() {
            let reply = host_wire::GreetingReply {
                text: format!("hello, {}", greeting.text),
                host_type_name: std::any::type_name::<host_wire::Greeting>().to_owned(),
            };
            ctx.send(sender, reply)?;
        } else if !is_system_tag(msg.tag()) {
            ctx.send(sender, format!("unrecognised: {}", msg.tag()))?;
        }
        Ok(())
    }
}

fn main() {
    greenroom_host::serve(Registry::new().register::<TagEcho>())
}
