//! The seed's "Hello World, Distributed": the actors of Hello World Redux, unchanged but for
//! one capability check, on two actor systems joined in a convention.
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
//! beside `Hello`. The greeting travels alpha → beta → alpha → the asking client over the
//! convention's authenticated links, and each actor writes where it ran (the `site`
//! capability of its system) into it. Nothing in the actors knows about machines.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use greenroom::{
    convention::{ClusterSecret, ConventionConfig},
    Actor, ActorExitRequest, ActorResult, ActorSystem, Address, AnyMessage, Capabilities, Context, Registry,
    SystemConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    message: String,
    send_to: Vec<Address>,
    /// Each actor's name and the site of the system it ran on, in the order they ran.
    ran_on: Vec<(String, String)>,
}

/// The site of the system this actor runs on (its `site` capability).
fn site(ctx: &Context<'_>) -> String {
    ctx.capabilities().get::<String>("site").unwrap_or_default()
}

#[derive(Default)]
struct Hello;

impl Actor for Hello {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if msg.downcast::<String>().as_deref() == Some("hi") {
            let world = ctx.create_actor::<World>()?.address();
            let punct = ctx.create_actor::<Punctuate>()?.address();
            let greeting = Greeting {
                message: "Hello".into(),
                send_to: vec![punct, sender],
                ran_on: vec![("Hello".into(), site(ctx))],
            };
            ctx.send(world, greeting)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct World;

impl Actor for World {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(mut greeting) = msg.downcast::<Greeting>() {
            greeting.message.push_str(", World");
            greeting.ran_on.push(("World".into(), site(ctx)));
            let next = greeting.send_to.remove(0);
            ctx.send(next, greeting)?;
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

impl Actor for Punctuate {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, _sender: Address) -> ActorResult {
        if let Some(mut greeting) = msg.downcast::<Greeting>() {
            greeting.message.push('!');
            greeting.ran_on.push(("Punctuate".into(), site(ctx)));
            let next = greeting.send_to.remove(0);
            ctx.send(next, greeting)?;
        }
        Ok(())
    }
}

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

    let hello = alpha.create_actor::<Hello>()?.address();
    let greeting: Greeting = alpha.ask(hello, "hi".to_string(), Duration::from_secs(10))?;
    println!("{}", greeting.message);
    let ran_on: Vec<String> = greeting
        .ran_on
        .iter()
        .map(|(actor, site)| format!("{actor} on {site}"))
        .collect();
    println!("{}", ran_on.join(", ").replacen(" on ", " ran on ", 1));

    // Hello's exit asks its children to exit too, the World on beta among them.
    alpha.tell(hello, ActorExitRequest)?;
    alpha.shutdown()?;
    beta.shutdown()?;
    Ok(())
}
