//! A convention of real admins on 127.0.0.1, 127.0.0.2, … for tests that cross machines:
//! [`lab`] starts one and waits until every member knows every other.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    time::{Duration, Instant},
};

use greenroom::{convention::ClusterSecret, convention::ConventionConfig, Capabilities, SystemConfig};

use crate::TestSystem;

/// A free port on `ip` (bound, then released for the admin to take).
pub fn free_addr(ip: &str) -> SocketAddr {
    TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap()
}

pub fn member(secret: &Path, listen: SocketAddr, leader: Option<SocketAddr>) -> TestSystem {
    member_with(secret, listen, leader, Capabilities::new())
}

pub fn member_with(secret: &Path, listen: SocketAddr, leader: Option<SocketAddr>, caps: Capabilities) -> TestSystem {
    let config = SystemConfig::default().convention(convention(secret, listen, leader));
    let host = crate::harness::workspace_bin("greenroom-test-host");
    TestSystem::start_with(&host.to_string_lossy(), config.capabilities(caps))
}

/// Convention "lab" with the secret at `secret`, listening at `listen`, joining through
/// `leader` (or leading), with a new static key at each start.
pub fn convention(secret: &Path, listen: SocketAddr, leader: Option<SocketAddr>) -> ConventionConfig {
    ConventionConfig {
        name: "lab".into(),
        listen,
        advertise: None,
        leader,
        secret_file: secret.to_owned(),
        key_file: None,
    }
}

/// A convention "lab" of real admins on 127.0.0.1, 127.0.0.2, …: the first leads, the
/// others join it, each with the capabilities given. [`lab`] returns once every member
/// lists all the others and has heard their capabilities. The secret's directory lives as
/// long as the lab; the systems are dropped (stopped) first.
pub struct Lab<const N: usize> {
    pub systems: [TestSystem; N],
    pub addrs: [SocketAddr; N],
    pub secret: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub fn lab<const N: usize>(caps: [Capabilities; N]) -> Lab<N> {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    ClusterSecret::generate(&secret).unwrap();
    let addrs: [SocketAddr; N] = std::array::from_fn(|i| free_addr(&format!("127.0.0.{}", i + 1)));
    let systems: [TestSystem; N] = std::array::from_fn(|i| {
        let leader = (i > 0).then_some(addrs[0]);
        member_with(&secret, addrs[i], leader, caps[i].clone())
    });
    let within = Duration::from_secs(10);
    for (i, sys) in systems.iter().enumerate() {
        let others: Vec<SocketAddr> = (0..N).filter(|j| *j != i).map(|j| addrs[j]).collect();
        wait_for_members(sys, &others, within);
        for j in (0..N).filter(|j| *j != i) {
            for key in caps[j].keys() {
                wait_for_capability(sys, addrs[j], key, within);
            }
        }
    }
    Lab {
        systems,
        addrs,
        secret,
        _dir: dir,
    }
}

/// Capabilities with `gpus` = 2.
pub fn gpus() -> Capabilities {
    Capabilities::new().with("gpus", &2u32).unwrap()
}

/// Waits until `sys` has heard `member` claim capability `key` (asking every 20 ms).
pub fn wait_for_capability(sys: &TestSystem, member: SocketAddr, key: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let view = sys.describe(false).unwrap().convention.unwrap();
        let row = view.members.iter().find(|m| m.address == member.to_string());
        if row.is_some_and(|m| m.capabilities.contains(key)) {
            return;
        }
        assert!(started.elapsed() < within, "{member} never claimed {key:?}: {row:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The other members `sys` lists now, by address.
pub fn members(sys: &greenroom::ActorSystem) -> Vec<String> {
    let view = sys.describe(false).unwrap().convention.expect("a convention member");
    let mut addrs: Vec<String> = view.members.into_iter().map(|m| m.address).collect();
    addrs.sort();
    addrs
}

/// Waits until `sys` lists exactly `wanted`; returns how long it took. (Membership changes
/// are not pushed to clients yet: this asks the admin every 20 ms, up to `within`.)
pub fn wait_for_members(sys: &greenroom::ActorSystem, wanted: &[SocketAddr], within: Duration) -> Duration {
    let mut wanted: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    wanted.sort();
    let started = Instant::now();
    loop {
        let now = members(sys);
        if now == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "after {within:?}: {now:?}, wanted {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
