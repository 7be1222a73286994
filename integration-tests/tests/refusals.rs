//! Strangers on an actor's socket are refused with a reason, and the actor keeps answering.
//! (The full hostile-input suite lives with the reliability work; this guards the basics.)

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    time::Duration,
};

use greenroom::runtime_dir::socket_path;
use greenroom_integration_tests::{actors::Echo, TestSystem};
use greenroom_protocol::{FrameReader, HandshakeReply, MAGIC, PROTOCOL_VERSION};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

/// Reads until the peer closes (bounded by the socket timeout); returns what it sent.
fn read_to_close(stream: &mut UnixStream) -> Vec<u8> {
    stream.set_read_timeout(Some(T)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        // Closing with our bytes unread makes the close a reset; what came before is in `got`.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the actor did not close the connection: {e}"),
    }
    got
}

/// Asserts that `stalled`, opened at `opened`, is closed without a reply, and not before the
/// handshake timeout.
fn assert_closed_at_the_handshake_timeout(stalled: &mut UnixStream, opened: std::time::Instant) {
    assert!(read_to_close(stalled).is_empty(), "closed without a reply");
    let after = opened.elapsed();
    assert!(
        after >= greenroom::net::endpoint::HANDSHAKE_TIMEOUT - Duration::from_millis(100),
        "closed after {after:?}, before the handshake timeout"
    );
}

#[test]
fn garbage_and_wrong_versions_are_refused_and_the_actor_keeps_answering() {
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let path = socket_path(sys.runtime_dir(), echo);

    // Not our protocol at all: the length prefix is absurd, the connection is closed.
    let mut stranger = UnixStream::connect(&path).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_to_close(&mut stranger).is_empty());

    // Our framing, a future version: refused with a reply that names the versions.
    let mut future = UnixStream::connect(&path).unwrap();
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&(PROTOCOL_VERSION + 98).to_le_bytes());
    body.push(0);
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    future.write_all(&frame).unwrap();
    let reply = read_to_close(&mut future);
    let mut reader = FrameReader::new(1024);
    reader.push(&reply);
    let body = reader.next_frame().unwrap().expect("a refusal frame before the close");
    let refusal = HandshakeReply::decode(body).unwrap().refusal.expect("refused");
    assert!(
        refusal.contains(&format!("version {}", PROTOCOL_VERSION + 98)),
        "{refusal}"
    );

    // A zero-length frame.
    let mut empty = UnixStream::connect(&path).unwrap();
    empty.write_all(&[0, 0, 0, 0]).unwrap();
    assert!(read_to_close(&mut empty).is_empty());

    // A half handshake, then the stranger gives up: nothing else is disturbed.
    let mut half = UnixStream::connect(&path).unwrap();
    half.write_all(&[40, 0, 0, 0, b'G', b'R']).unwrap();
    drop(half);

    let back: String = sys.ask(echo, "still here".to_string(), T).unwrap();
    assert_eq!(back, "still here");
}

/// Runs the test host binary as `nobody` (uid 65534), connecting to `path`.
fn probe_as_nobody(path: &std::path::Path) -> String {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(HOST)
        .arg("--probe-connect")
        .arg(path)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the probe as nobody");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn other_users_are_kept_out_by_the_directory_and_refused_by_the_peer_check() {
    if !nix::unistd::getuid().is_root() {
        println!(
            "skipped: running as another user needs root (uid {})",
            nix::unistd::getuid()
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let path = socket_path(sys.runtime_dir(), echo);

    // First line of defence: the runtime directory is 0700.
    let mode = std::fs::metadata(sys.runtime_dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(probe_as_nobody(&path), "connect-failed: PermissionDenied");

    // Second line: even with the directory and socket opened up, the peer's uid is checked
    // at accept and the connection is closed before a byte is read.
    let open = |p: &std::path::Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    open(sys.runtime_base(), 0o711);
    open(sys.runtime_dir(), 0o711);
    open(&path, 0o777);
    assert_eq!(
        probe_as_nobody(&path),
        "closed-after: 0",
        "no handshake reply for a stranger"
    );
    // The same on the admin's own socket.
    let admin = greenroom::runtime_dir::admin_socket_path(sys.runtime_dir());
    open(&admin, 0o777);
    assert_eq!(
        probe_as_nobody(&admin),
        "closed-after: 0",
        "the admin refuses a stranger too"
    );
    open(sys.runtime_dir(), 0o700);
    open(sys.runtime_base(), 0o700);

    let back: String = sys.ask(echo, "still here".to_string(), T).unwrap();
    assert_eq!(back, "still here");
}

#[test]
fn a_stalled_half_handshake_is_timed_out_without_blocking_anyone() {
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let path = socket_path(sys.runtime_dir(), echo);
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled.write_all(&[40, 0, 0, 0, b'G']).unwrap();
    let opened = std::time::Instant::now();
    // Meanwhile the actor serves everyone else.
    let back: String = sys.ask(echo, "not blocked".to_string(), T).unwrap();
    assert_eq!(back, "not blocked");
    assert_closed_at_the_handshake_timeout(&mut stalled, opened);
}

#[test]
fn a_host_writing_garbage_to_the_admin_is_cut_off_and_the_admin_carries_on() {
    use greenroom_integration_tests::actors::{Crash, Crasher, Echoed};
    let sys = TestSystem::start(HOST);
    let bad = sys.create_actor::<Crasher>().unwrap().address();
    let bystander = sys.create_actor::<Echo>().unwrap().address();
    let pid = sys.actor_info(bad).unwrap().pid.unwrap();
    sys.tell(bad, Crash::CorruptControl).unwrap();
    // The admin drops the connection, then kills the host it can no longer manage.
    assert!(greenroom_integration_tests::harness::wait_for_exit(pid, T));
    let back: String = sys.ask(bystander, "admin ok?".to_string(), T).unwrap();
    assert_eq!(back, "admin ok?");
    // And the misbehaving actor's supervisor brings it back in a fresh process.
    let echoed: Echoed = loop {
        match sys.ask(bad, Crash::Ping(1), T) {
            Ok(e) => break e,
            Err(greenroom::Error::Poisoned { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_ne!(echoed.pong.pid, pid);
}

#[test]
fn strangers_on_the_admin_socket_are_refused_and_the_admin_carries_on() {
    use greenroom::runtime_dir::admin_socket_path;
    use greenroom_protocol::{Address, Handshake, PeerRole};
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let path = admin_socket_path(sys.runtime_dir());

    // Not our protocol: closed without a reply.
    let mut stranger = UnixStream::connect(&path).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_to_close(&mut stranger).is_empty());

    // Our protocol, but a data connection's role: refused with the reason.
    let mut wrong_role = UnixStream::connect(&path).unwrap();
    let mut hello = Vec::new();
    Handshake {
        role: PeerRole::Data {
            from: Address::local(77),
            to: Address::local(0),
        },
    }
    .encode(&mut hello)
    .unwrap();
    wrong_role.write_all(&hello).unwrap();
    let reply = read_to_close(&mut wrong_role);
    let mut reader = FrameReader::new(1024);
    reader.push(&reply);
    let body = reader.next_frame().unwrap().expect("a refusal frame before the close");
    let refusal = HandshakeReply::decode(body).unwrap().refusal.expect("refused");
    assert!(refusal.contains("unexpected role"), "{refusal}");

    // The owner and a well-behaved private client are served as before.
    let back: String = sys.ask(echo, "still here".to_string(), T).unwrap();
    assert_eq!(back, "still here");
    let private = sys.private().unwrap();
    let back: String = private.ask(echo, "me too".to_string(), T).unwrap();
    assert_eq!(back, "me too");
}

#[test]
fn a_stalled_handshake_on_the_admin_socket_is_timed_out_without_blocking_anyone() {
    let sys = TestSystem::start(HOST);
    let path = greenroom::runtime_dir::admin_socket_path(sys.runtime_dir());
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled.write_all(&[40, 0, 0, 0, b'G']).unwrap();
    let silent = UnixStream::connect(&path).unwrap();
    let opened = std::time::Instant::now();
    // Meanwhile the admin serves everyone else: creates, and a new client.
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let private = sys.private().unwrap();
    let back: String = private.ask(echo, "not blocked".to_string(), T).unwrap();
    assert_eq!(back, "not blocked");
    assert_closed_at_the_handshake_timeout(&mut stalled, opened);
    let mut silent = silent;
    assert!(
        read_to_close(&mut silent).is_empty(),
        "a peer that never wrote is closed too"
    );
}

/// Opens `n` connections to `path` that send nothing; once `expect_closed` of them have been
/// closed by the listener (waiting at most 2 s, well inside the handshake timeout), returns
/// how many are closed then, and the connections.
fn flood(path: &std::path::Path, n: usize, expect_closed: usize) -> (usize, Vec<UnixStream>) {
    let streams: Vec<UnixStream> = (0..n).map(|_| UnixStream::connect(path).unwrap()).collect();
    for s in &streams {
        s.set_nonblocking(true).unwrap();
    }
    let mut closed = vec![false; n];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        for (i, s) in streams.iter().enumerate() {
            if matches!((&*s).read(&mut [0u8; 16]), Ok(0)) {
                closed[i] = true;
            }
        }
        let count = closed.iter().filter(|c| **c).count();
        if count >= expect_closed || std::time::Instant::now() >= deadline {
            return (count, streams);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn connections_waiting_for_their_handshake_are_bounded_on_every_listener() {
    let config = greenroom::SystemConfig::default().max_pending_connections(8);
    let sys = TestSystem::start_with(HOST, config);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let back: String = sys.ask(echo, "before".to_string(), T).unwrap();
    assert_eq!(back, "before");

    // On an actor's socket: 8 may wait, the other 12 are closed at once.
    let (closed, held) = flood(&socket_path(sys.runtime_dir(), echo), 20, 12);
    assert_eq!(closed, 12, "past the limit, connections are closed on accept");
    // Connections already made are not affected.
    let back: String = sys.ask(echo, "during".to_string(), T).unwrap();
    assert_eq!(back, "during");

    // The same on the admin's socket; the owner's connection is not affected.
    let (closed, held_admin) = flood(&greenroom::runtime_dir::admin_socket_path(sys.runtime_dir()), 20, 12);
    assert_eq!(closed, 12);
    let more = sys.create_actor::<Echo>().unwrap().address();
    let back: String = sys.ask(more, "admin ok".to_string(), T).unwrap();
    assert_eq!(back, "admin ok");

    // Once the stalled ones are gone (the listeners see them close), newcomers get in again.
    drop((held, held_admin));
    let deadline = std::time::Instant::now() + T;
    let private = loop {
        match sys.private() {
            Ok(p) => break p,
            Err(e) => assert!(std::time::Instant::now() < deadline, "never let in again: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let back: String = private.ask(echo, "after".to_string(), T).unwrap();
    assert_eq!(back, "after");
}
