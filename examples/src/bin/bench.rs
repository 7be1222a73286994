//! Greenroom against the raw Unix-socket limit, measured in the same run.
//!
//! ```text
//! cargo run --release -p greenroom-examples --bin bench [-- --quick]
//! ```
//!
//! Each figure measures the raw primitive first (plain std/libc, no Greenroom code), then the
//! same work through Greenroom, and prints both with their ratio. Figures so far:
//!
//! * **ask round trip** — 64-byte message, client → actor → client, against two processes
//!   ping-ponging 64 bytes over a Unix stream socketpair. p50 and p99.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use greenroom::{Actor, ActorResult, ActorSystem, Address, AnyMessage, Context, Registry};

/// Replies to every message with the same bytes.
#[derive(Default)]
struct Echo;

impl Actor for Echo {
    fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
        if msg.is::<Vec<u8>>() {
            ctx.send_any(sender, msg.clone())?;
        }
        Ok(())
    }
}

/// Latency percentiles of a sample, in microseconds.
struct Latency {
    p50: f64,
    p99: f64,
}

fn percentiles(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Raw baseline: a forked child echoes 64-byte messages over a socketpair.
fn raw_round_trip(rounds: usize) -> Latency {
    let (mut parent, mut child) = UnixStream::pair().expect("socketpair");
    // SAFETY: the process is single-threaded here (no ActorSystem yet), so fork is sound;
    // the child only echoes bytes and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(parent);
        let mut buf = [0u8; 64];
        while child.read_exact(&mut buf).is_ok() {
            if child.write_all(&buf).is_err() {
                break;
            }
        }
        // SAFETY: terminate the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(child);
    let mut buf = [7u8; 64];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let t = Instant::now();
        parent.write_all(&buf).expect("raw write");
        parent.read_exact(&mut buf).expect("raw read");
        if i >= rounds / 10 {
            samples.push(t.elapsed());
        }
    }
    drop(parent);
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    percentiles(samples)
}

fn greenroom_round_trip(system: &ActorSystem, rounds: usize) -> Result<Latency, greenroom::Error> {
    let echo = system.create_actor::<Echo>()?;
    // A 64-byte message: postcard bytes of a Vec<u8> of 63 bytes (1 length byte + 63).
    let payload = vec![7u8; 63];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let t = Instant::now();
        let back: Vec<u8> = system.ask(echo, payload.clone(), Duration::from_secs(5))?;
        if i >= rounds / 10 {
            samples.push(t.elapsed());
        }
        debug_assert_eq!(back.len(), 63);
    }
    system.tell(echo, greenroom::ActorExitRequest)?;
    Ok(percentiles(samples))
}

fn main() -> Result<(), greenroom::Error> {
    greenroom_host::init(Registry::new().register::<Echo>());
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 5_000 } else { 50_000 };

    let raw = raw_round_trip(rounds);
    let system = ActorSystem::start()?;
    let gr = greenroom_round_trip(&system, rounds)?;
    system.shutdown()?;

    println!("{:<34} {:>12} {:>12} {:>8}", "figure", "raw", "greenroom", "ratio");
    println!(
        "{:<34} {:>10.1}us {:>10.1}us {:>7.2}x",
        "ask round trip 64 B, p50",
        raw.p50,
        gr.p50,
        gr.p50 / raw.p50
    );
    println!(
        "{:<34} {:>10.1}us {:>10.1}us {:>7.2}x",
        "ask round trip 64 B, p99",
        raw.p99,
        gr.p99,
        gr.p99 / raw.p99
    );
    Ok(())
}
