//! The seed's "Hello World, Distributed": the actors of Hello World Redux (`hello_redux`),
//! with one capability check and a note of where each ran, on two actor systems joined in a
//! convention.
//!
//! ```text
//! $ cargo run -p greenroom-examples --bin hello_distributed
//! Hello, World!
//! Hello ran on alpha, World on beta, Punctuate on alpha
//! ```
//!
//! Two admins start on loopback, as two machines would: `alpha` leads the convention,
//! `beta` joins it with the capability `world = true`. `Hello` is created on `alpha` and
//! creates a `World` and a `Punctuate`. `World::accepts` wants `world = true`, which `alpha`
//! lacks, so the create goes to `beta`, where the `World` process runs; `Punctuate` runs
//! beside `Hello`. The greeting travels alpha → beta → alpha over the convention's
//! authenticated links, each actor writing where it ran (the `site` capability of its
//! system) into it, and `Punctuate` answers the client's request through the `ReplyTo` that
//! travelled with it: the answer reaches the request it belongs to even after a detour
//! through another machine. Nothing in the actors knows about machines.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use greenroom::{
    convention::{ClusterSecret, ConventionConfig},
    dispatch, Actor, ActorResult, ActorSystem, Address, AnyMessage, Capabilities, Context, Handle, Later, Registry,
    ReplyTo, Request, SystemConfig,
};
use serde::{Deserialize, Serialize};

/// Asks for a greeting.
#[derive(Debug, Serialize, Deserialize)]
struct Hi;

impl Request for Hi {
    type Reply = Greeting;
}

/// A greeting, and where it was made: the answer to [`Hi`].
#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    message: String,
    /// Each actor's name and the site of the system it ran on, in the order they ran.
    ran_on: Vec<(String, String)>,
}

/// A [`Greeting`] on its way, with the answer owed to whoever said `Hi`.
#[derive(Debug, Serialize, Deserialize)]
struct Passing {
    greeting: Greeting,
    send_to: Vec<Address>,
    answer: ReplyTo<Greeting>,
}

impl Passing {
    /// Passes the greeting to the next actor on its list, or, at the end of the list,
    /// answers the request it carries (across the convention if need be).
    fn pass_on(mut self, ctx: &mut Context<'_>) -> ActorResult {
        if self.send_to.is_empty() {
            ctx.answer(self.answer, self.greeting)?;
        } else {
            let next = self.send_to.remove(0);
            ctx.send(next, self)?;
        }
        Ok(())
    }
}

/// The site of the system this actor runs on (its `site` capability).
fn site(ctx: &Context<'_>) -> String {
    ctx.capabilities().get::<String>("site").unwrap_or_default()
}

#[derive(Default)]
struct Hello;

impl Handle<Hi> for Hello {
    type Reply = Later<Greeting>;
    fn handle(&mut self, ctx: &mut Context<'_>, _: Hi, _: Address) -> ActorResult<Later<Greeting>> {
        let world = ctx.create_actor::<World>()?;
        let punct = ctx.create_actor::<Punctuate>()?;
        // The answer is the last actor's to give.
        let (later, answer) = ctx.reply_later();
        let passing = Passing {
            greeting: Greeting {
                message: "Hello".into(),
                ran_on: vec![("Hello".into(), site(ctx))],
            },
            send_to: vec![punct.address()],
            answer,
        };
        // `World` has no `Handle<Passing>` for an `ActorRef` to check: send to its address.
        ctx.send(world.address(), passing)?;
        Ok(later)
    }
}

dispatch!(Hello { Hi });

#[derive(Default)]
struct World;

/// Written by hand rather than with `dispatch!`, which writes `receive` only: a `World` also
/// says where it may run (`accepts`).
impl Actor for World {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(mut passing) = msg.downcast::<Passing>() {
            passing.greeting.message.push_str(", World");
            passing.greeting.ran_on.push(("World".into(), site(ctx)));
            passing.pass_on(ctx)?;
        }
        Ok(())
    }

    /// The one line that makes this example distributed: only a system that says it has
    /// the world runs a `World`.
    fn accepts(capabilities: &Capabilities, _requirements: &Capabilities) -> bool {
        capabilities.get::<bool>("world") == Some(true)
    }
}

#[derive(Default)]
struct Punctuate;

impl Handle<Passing> for Punctuate {
    type Reply = ();
    fn handle(&mut self, ctx: &mut Context<'_>, mut passing: Passing, _: Address) -> ActorResult {
        passing.greeting.message.push('!');
        passing.greeting.ran_on.push(("Punctuate".into(), site(ctx)));
        passing.pass_on(ctx)
    }
}

dispatch!(Punctuate { Passing });

/// A free port on loopback (bound, then released for the admin to take).
fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// One member of the convention `hello`: its site, its capabilities, where it listens.
fn member(
    secret: &Path,
    site: &str,
    world: bool,
    listen: SocketAddr,
    leader: Option<SocketAddr>,
) -> Result<ActorSystem, Box<dyn std::error::Error>> {
    let capabilities = Capabilities::new()
        .with("site", &site.to_string())?
        .with("world", &world)?;
    let convention = ConventionConfig {
        name: "hello".into(),
        listen,
        advertise: None,
        leader,
        secret_file: secret.to_owned(),
        key_file: None,
    };
    Ok(ActorSystem::start_with(
        SystemConfig::default()
            .capabilities(capabilities)
            .convention(convention),
    )?)
}

/// Waits until `system` has heard of a member whose capabilities include `key`.
fn wait_for_member_with(system: &ActorSystem, key: &str) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let members = system
            .describe(false)?
            .convention
            .map(|c| c.members)
            .unwrap_or_default();
        if members.iter().any(|m| m.capabilities.contains(key)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("no member with `{key}` joined within 15 s").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private directory for the convention's secret, removed on drop.
struct SecretDir(PathBuf);

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    greenroom_host::init(
        Registry::new()
            .register::<Hello>()
            .register::<World>()
            .register::<Punctuate>(),
    );

    // One secret for the convention (`greenroom keygen` makes one for real deployments).
    let dir = SecretDir(std::env::temp_dir().join(format!("greenroom-hello-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let secret = dir.0.join("cluster.key");
    ClusterSecret::generate(&secret)?;

    let (alpha_addr, beta_addr) = (free_port()?, free_port()?);
    let alpha = member(&secret, "alpha", false, alpha_addr, None)?;
    let beta = member(&secret, "beta", true, beta_addr, Some(alpha_addr))?;
    wait_for_member_with(&alpha, "world")?;

    let hello = alpha.create_actor::<Hello>()?;
    let greeting = alpha.request(hello, Hi, Duration::from_secs(10))?;
    println!("{}", greeting.message);
    let ran_on: Vec<String> = greeting
        .ran_on
        .iter()
        .map(|(actor, site)| format!("{actor} on {site}"))
        .collect();
    println!("{}", ran_on.join(", ").replacen(" on ", " ran on ", 1));

    // Hello's exit asks its children to exit too, the World on beta among them.
    alpha.stop(hello)?;
    alpha.shutdown()?;
    beta.shutdown()?;
    Ok(())
}
