//! Hostile input against a live actor's socket and against the admin's `admin.sock`,
//! generated with proptest: the connection is refused or the frame rejected, nothing panics,
//! the actor and the admin keep answering, and their fd counts and memory come back to where
//! they were. Then 500 connections opened and abandoned on each.
//!
//! Cases per run: 2,000 by default; set `GREENROOM_HOSTILE_CASES` for more.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    time::Duration,
};

use greenroom::runtime_dir::socket_path;
use greenroom_integration_tests::{actors::Echo, harness, TestSystem};
use greenroom_protocol::{
    encode_frame, Address, ChildSpec, DataFrame, Handshake, Payload, PeerRole, ToAdmin, MAGIC, PROTOCOL_VERSION,
};
use proptest::{prelude::*, test_runner::TestRunner};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

/// What a hostile peer sends after connecting.
#[derive(Debug, Clone)]
enum Attack {
    /// Any bytes at all.
    Garbage(Vec<u8>),
    /// A length prefix (possibly huge or zero) and whatever follows.
    Prefix(u32, Vec<u8>),
    /// A handshake frame with the given magic and version.
    Hello([u8; 4], u16, Vec<u8>),
    /// A proper handshake cut short.
    TruncatedHello(usize),
    /// A proper handshake, then frames that are not data frames.
    BadFrames(Vec<Vec<u8>>),
    /// A proper handshake, then well-formed messages with any tag and bytes, and any seq.
    Messages(Vec<(u64, String, Vec<u8>)>),
    /// A handshake addressed to another actor (a message for an address this socket is not),
    /// then a well-formed message.
    ForAnother(u64),
}

/// A data handshake from a stranger to `to`.
fn handshake(to: Address) -> Vec<u8> {
    harness::data_handshake(Address::local(777_777), to)
}

fn bytes_of(attack: &Attack, to: Address) -> Vec<u8> {
    match attack {
        Attack::Garbage(b) => b.clone(),
        Attack::Prefix(len, rest) => {
            let mut b = len.to_le_bytes().to_vec();
            b.extend_from_slice(rest);
            b
        }
        Attack::Hello(magic, version, rest) => {
            let mut body = magic.to_vec();
            body.extend_from_slice(&version.to_le_bytes());
            body.extend_from_slice(rest);
            let mut b = (body.len() as u32).to_le_bytes().to_vec();
            b.extend_from_slice(&body);
            b
        }
        Attack::TruncatedHello(n) => {
            let h = handshake(to);
            h[..(*n).min(h.len() - 1)].to_vec()
        }
        Attack::BadFrames(frames) => {
            let mut b = handshake(to);
            for f in frames {
                let _ = encode_frame(&mut b, f, u32::MAX, "garbage");
            }
            b
        }
        Attack::Messages(msgs) => {
            let mut b = handshake(to);
            for (seq, tag, bytes) in msgs {
                let payload = Payload {
                    tag: tag.clone().into(),
                    bytes: bytes.clone(),
                };
                let _ =
                    DataFrame::encode_message(&mut b, *seq, greenroom_protocol::Correlation::None, &payload, u32::MAX);
            }
            b
        }
        Attack::ForAnother(id) => {
            let mut b = handshake(Address::local(*id));
            let payload = Payload {
                tag: "alloc::string::String".into(),
                bytes: vec![2, b'h', b'i'],
            };
            let _ = DataFrame::encode_message(&mut b, 1, greenroom_protocol::Correlation::None, &payload, u32::MAX);
            b
        }
    }
}

fn attacks() -> impl Strategy<Value = Attack> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        bytes().prop_map(Attack::Garbage),
        (any::<u32>(), bytes()).prop_map(|(l, r)| Attack::Prefix(l, r)),
        (
            prop_oneof![Just(*b"HTTP"), Just(MAGIC), any::<[u8; 4]>()],
            prop_oneof![Just(PROTOCOL_VERSION), any::<u16>()],
            bytes()
        )
            .prop_map(|(m, v, r)| Attack::Hello(m, v, r)),
        (0usize..40).prop_map(Attack::TruncatedHello),
        proptest::collection::vec(bytes(), 1..5).prop_map(Attack::BadFrames),
        proptest::collection::vec((any::<u64>(), ".{0,30}", bytes()), 1..5).prop_map(Attack::Messages),
        any::<u64>().prop_map(Attack::ForAnother),
    ]
}

/// Sends the attack and waits (bounded) for the actor to close or answer; returns nothing:
/// what matters is that the actor survives.
fn launch(path: &std::path::Path, bytes: &[u8]) {
    let Ok(mut s) = UnixStream::connect(path) else { return };
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

/// The proptest runner for hostile cases: 2,000 by default, `GREENROOM_HOSTILE_CASES` for
/// more; also returns the count.
fn hostile_runner() -> (TestRunner, u32) {
    let cases = std::env::var("GREENROOM_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    (runner, cases)
}

/// 500 connections to `path` opened at once and left hanging, every other one after the
/// first 5 bytes of `hello` (mid-handshake); dropping them abandons them.
fn abandoned_connections(path: &std::path::Path, hello: &[u8]) -> Vec<UnixStream> {
    (0..500)
        .filter_map(|i| {
            let mut s = UnixStream::connect(path).ok()?;
            if i % 2 == 0 {
                let _ = s.write_all(&hello[..5]);
            }
            Some(s)
        })
        .collect()
}

#[test]
fn hostile_bytes_never_hurt_the_actor_and_leave_nothing_behind() {
    // Thousands of refusals would each log a warning; keep the output readable.
    std::env::set_var("GREENROOM_LOG", "error");
    let sys = TestSystem::start(HOST);
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let path = socket_path(sys.runtime_dir(), echo);
    let host = sys.actor_info(echo).unwrap().pid.unwrap();
    let ask = || sys.ask::<_, String>(echo, "alive?".to_string(), T).unwrap();

    assert_eq!(ask(), "alive?");
    // Warm up the paths that allocate once (a first bad connection, a first message).
    launch(&path, b"warm-up");
    assert_eq!(ask(), "alive?");
    let (fds, rss) = (harness::fd_count(host), harness::rss_kib(host));

    let (mut runner, cases) = hostile_runner();
    let n = std::cell::Cell::new(0u32);
    runner
        .run(&attacks(), |attack| {
            launch(&path, &bytes_of(&attack, echo));
            n.set(n.get() + 1);
            if n.get() % 50 == 0 {
                prop_assert!(harness::is_alive(host), "the host died on {attack:?}");
                prop_assert_eq!(ask(), "alive?");
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(n.get(), cases, "every generated case was sent");

    let abandoned = abandoned_connections(&path, &handshake(echo));
    assert_eq!(ask(), "alive?", "the actor serves others while 500 peers hang");
    drop(abandoned);

    assert_eq!(ask(), "alive?");
    assert_eq!(sys.actor_info(echo).unwrap().pid, Some(host), "same process throughout");
    // Every hostile connection is closed (or times out its handshake) and its fd released.
    let deadline = std::time::Instant::now() + greenroom::net::endpoint::HANDSHAKE_TIMEOUT + Duration::from_secs(2);
    while harness::fd_count(host) > fds && std::time::Instant::now() < deadline {
        // Each ask is a round trip through the host's loop, which closes expired handshakes.
        assert_eq!(ask(), "alive?");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        harness::fd_count(host) <= fds,
        "fds: {} now, {fds} before",
        harness::fd_count(host)
    );
    assert!(
        harness::rss_kib(host) <= rss + 2048,
        "RSS grew from {rss} KiB to {} KiB",
        harness::rss_kib(host)
    );
}

/// What a hostile peer of the admin sends after connecting to `admin.sock`.
#[derive(Debug, Clone)]
enum AdminAttack {
    /// Any bytes, a lying length prefix, a handshake of any magic, version or role: as on a
    /// data socket.
    Raw(Attack),
    /// A proper client handshake, then frames that are not control frames.
    BadFrames(Vec<Vec<u8>>),
    /// A proper client handshake, then well-formed control frames of every kind a client
    /// might send, with hostile contents (all but `Shutdown`, which a same-user client may
    /// legitimately send).
    Requests(Vec<ToAdmin>),
}

fn client_handshake() -> Vec<u8> {
    let mut buf = Vec::new();
    Handshake { role: PeerRole::Client }.encode(&mut buf).unwrap();
    buf
}

fn admin_bytes(attack: &AdminAttack) -> Vec<u8> {
    match attack {
        AdminAttack::Raw(raw) => bytes_of(raw, Address::local(0)),
        AdminAttack::BadFrames(frames) => {
            let mut b = client_handshake();
            for f in frames {
                let _ = encode_frame(&mut b, f, u32::MAX, "garbage");
            }
            b
        }
        AdminAttack::Requests(requests) => {
            let mut b = client_handshake();
            for r in requests {
                let _ = encode_frame(&mut b, r, u32::MAX, "request");
            }
            b
        }
    }
}

fn control_requests() -> impl Strategy<Value = ToAdmin> {
    let address = || (0u64..1_000_000).prop_map(Address::local);
    let payload = || {
        (".{0,20}", proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(tag, bytes)| Payload { tag: tag.into(), bytes })
    };
    prop_oneof![
        Just(ToAdmin::RegisterClient),
        (any::<u64>(), "[a-z:]{0,30}", proptest::option::of("[a-z]{1,8}")).prop_map(
            |(request, type_name, global_name)| {
                // Unknown type names only: a known one would (rightly) start a process per case.
                ToAdmin::CreateActor {
                    request,
                    type_name: format!("no::such::{type_name}"),
                    spec: ChildSpec::default(),
                    global_name,
                    requirements: greenroom::Capabilities::new(),
                    on: None,
                }
            }
        ),
        (any::<u64>(), address(), proptest::option::of(any::<u32>()))
            .prop_map(|(request, actor, settle)| ToAdmin::ActorStatus { request, actor, settle }),
        proptest::collection::vec(".{0,20}", 0..3).prop_map(|types| ToAdmin::HostReady { types }),
        Just(ToAdmin::Exiting),
        any::<bool>().prop_map(|start| ToAdmin::HandleDeadLetters { start }),
        (address(), address(), proptest::collection::vec(payload(), 0..3)).prop_map(|(target, sender, messages)| {
            ToAdmin::DeadLetters {
                target,
                sender,
                messages,
            }
        }),
        (".{0,20}", proptest::option::of(payload())).prop_map(|(key, value)| ToAdmin::UpdateCapability { key, value }),
        (any::<u64>(), any::<bool>()).prop_map(|(request, include_gone)| ToAdmin::Describe { request, include_gone }),
    ]
}

fn admin_attacks() -> impl Strategy<Value = AdminAttack> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        attacks().prop_map(AdminAttack::Raw),
        proptest::collection::vec(bytes(), 1..5).prop_map(AdminAttack::BadFrames),
        proptest::collection::vec(control_requests(), 1..6).prop_map(AdminAttack::Requests),
    ]
}

#[test]
fn hostile_bytes_never_hurt_the_admin_and_leave_nothing_behind() {
    std::env::set_var("GREENROOM_LOG", "error");
    let sys = TestSystem::start(HOST);
    let admin = sys.admin_pid();
    let path = greenroom::runtime_dir::admin_socket_path(sys.runtime_dir());
    let echo = sys.create_actor::<Echo>().unwrap().address();
    let alive = || {
        // The admin answers a status query, creates an actor, and that actor answers.
        assert!(sys.actor_info(echo).is_ok());
        let fresh = sys.create_actor::<Echo>().unwrap().address();
        let back: String = sys.ask(fresh, "alive?".to_string(), T).unwrap();
        sys.tell(fresh, greenroom::ActorExitRequest).unwrap();
        back == "alive?"
    };
    assert!(alive());
    launch(&path, b"warm-up");
    launch(
        &path,
        &admin_bytes(&AdminAttack::Requests(vec![
            ToAdmin::RegisterClient,
            ToAdmin::Describe {
                request: 1,
                include_gone: true,
            },
        ])),
    );
    assert!(alive());
    let (fds, rss) = (harness::fd_count(admin), harness::rss_kib(admin));

    let (mut runner, cases) = hostile_runner();
    let n = std::cell::Cell::new(0u32);
    runner
        .run(&admin_attacks(), |attack| {
            launch(&path, &admin_bytes(&attack));
            n.set(n.get() + 1);
            if n.get() % 100 == 0 {
                prop_assert!(harness::is_alive(admin), "the admin died on {attack:?}");
                prop_assert!(alive());
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(n.get(), cases, "every generated case was sent");

    let abandoned = abandoned_connections(&path, &client_handshake());
    assert!(alive(), "the admin serves others while 500 peers hang");
    drop(abandoned);

    assert!(alive());
    // Every hostile connection is closed (or times out its handshake) and its fd released.
    let deadline = std::time::Instant::now() + greenroom::net::endpoint::HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    while harness::fd_count(admin) > fds && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        harness::fd_count(admin) <= fds,
        "admin fds: {} now, {fds} before",
        harness::fd_count(admin)
    );
    assert!(
        harness::rss_kib(admin) <= rss + 4096,
        "admin RSS grew from {rss} KiB to {} KiB",
        harness::rss_kib(admin)
    );
}
