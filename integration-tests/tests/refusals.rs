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
    stream.read_to_end(&mut got).expect("the actor closes the connection");
    got
}

#[test]
fn garbage_and_wrong_versions_are_refused_and_the_actor_keeps_answering() {
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap();
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
