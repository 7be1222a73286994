//! The host (and admin) binary of the integration tests: every test actor type, linked in.
//!
//! Run by a test with `--probe-connect PATH` (and no `GREENROOM_ROLE`), it is instead a
//! stranger: it connects to the Unix socket at PATH, sends a well-formed data handshake, and
//! prints what happened, so a test can run it as another user.
//!
//! With `--hold-system BASE` it is a client program: it starts a system under runtime base
//! BASE (itself as the host binary), prints `admin <pid> dir <runtime dir>`, and waits to be
//! killed, so a test can kill a client and its admin together.
//!
//! With `--echo-client DIR` it is a client attached to the system running in runtime
//! directory DIR: it prints `client <address id> pid <pid>` and sends every message it
//! receives back to its sender, until its system is gone, so a test has a client process
//! (and its socket) of its own to measure.

use std::{io::Read, io::Write, os::unix::net::UnixStream, time::Duration};

use greenroom_protocol::{Address, Handshake, PeerRole};

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--probe-connect") => probe(&args.next().unwrap_or_default()),
        Some("--hold-system") => hold_system(&args.next().unwrap_or_default()),
        Some("--echo-client") => echo_client(&args.next().unwrap_or_default()),
        _ => greenroom_host::serve(greenroom_integration_tests::registry()),
    }
}

/// Starts a system under `base` and waits (for a SIGKILL, in practice) with it running.
fn hold_system(base: &str) {
    let registry = greenroom_host::init(greenroom_integration_tests::registry());
    let _ = registry;
    let config = greenroom::SystemConfig::default().runtime_base(base);
    let system = match greenroom::ActorSystem::start_with(config) {
        Ok(s) => s,
        Err(e) => {
            println!("failed: {e}");
            return;
        }
    };
    let dir = system
        .runtime_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    println!("admin {} dir {dir}", system.admin_pid().unwrap_or_default());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Attaches to the system in `dir` and echoes every message back to its sender.
fn echo_client(dir: &str) {
    let system = match greenroom::ActorSystem::connect_dir(std::path::Path::new(dir)) {
        Ok(s) => s,
        Err(e) => {
            println!("failed: {e}");
            return;
        }
    };
    println!("client {} pid {}", system.address().id(), std::process::id());
    loop {
        match system.listen(Duration::from_secs(3600)) {
            Ok(Some((sender, msg))) => {
                let _ = system.tell_any(sender, msg);
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

/// Prints `connect-failed: <error kind>`, or `closed-after: <bytes received>`.
fn probe(path: &str) {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            println!("connect-failed: {:?}", e.kind());
            return;
        }
    };
    let mut hello = Vec::new();
    let role = PeerRole::Data {
        from: Address::local(999_999),
        to: Address::local(2),
    };
    let handshake = Handshake { role };
    if handshake.encode(&mut hello).is_err() || stream.write_all(&hello).is_err() {
        println!("closed-after: 0");
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        // A reset is a close by a peer that did not read what we sent.
        Ok(_) => println!("closed-after: {}", got.len()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => println!("closed-after: {}", got.len()),
        Err(e) => println!("still-open: {:?}", e.kind()),
    }
}
