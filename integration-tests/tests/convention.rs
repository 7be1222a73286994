//! Conventions (several machines' actor systems joined), with real admins on 127.0.0.1,
//! 127.0.0.2 and 127.0.0.3: they join through a leader over authenticated links, share
//! capabilities, place actors by them, carry asks and tells between machines in order,
//! keep global names, notice a SIGKILLed or stopped member and take back a restarted
//! leader; hostile peers on the convention port and on `gateway.sock` are cut off and
//! change nothing; and, when the test runs as root, two admins in network namespaces joined
//! by a veth pair notice a partition made of blackhole routes and heal.

use std::{
    net::{SocketAddr, TcpListener},
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, Instant},
};

use greenroom::{convention::ClusterSecret, convention::ConventionConfig, Capabilities, Error, SystemConfig};
use greenroom_integration_tests::{
    actors::{
        Blast, Blaster, Broker, ChildExitSeen, ChildRestartSeen, ConventionNews, ConventionWatcher, Crash, Crasher,
        DeadSeen, Echo, Echoed, Forward, Forwarder, GpuWorker, HireGpu, Mortuary, Recorded, Recorder, Report,
        TakeDeadLetters, Tallied, Tally, TallyReport, WatchConvention,
    },
    harness,
    lab::{convention, free_addr, gpus, lab, member, member_with, members, wait_for_capability, wait_for_members},
    TestSystem,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");

#[test]
fn three_admins_join_share_capabilities_tell_watching_actors_and_notice_a_killed_one() {
    let lab = lab([
        Capabilities::new(),
        Capabilities::new().with("gpu", &true).unwrap(),
        Capabilities::new(),
    ]);
    let ([a, b, c], [a_addr, b_addr, c_addr]) = (&lab.systems, lab.addrs);
    let within = Duration::from_secs(10);
    let view = a.describe(false).unwrap().convention.unwrap();
    assert_eq!(
        (view.name.as_str(), view.me.address.clone(), view.leader),
        ("lab", a_addr.to_string(), None)
    );

    // Each member's capabilities reach the others, and so does a change made at run time.
    wait_for_capability(a, b_addr, "gpu", within);
    wait_for_capability(c, b_addr, "gpu", within);
    b.update_capability("disk_gb", &500u64).unwrap();
    wait_for_capability(a, b_addr, "disk_gb", within);
    let view = a.describe(false).unwrap().convention.unwrap();
    let b_row = view.members.iter().find(|m| m.address == b_addr.to_string()).unwrap();
    assert_eq!(b_row.capabilities.get::<bool>("gpu"), Some(true));
    assert_eq!(b_row.capabilities.get::<u64>("disk_gb"), Some(500));

    // An actor that asks hears of every member, then of every change.
    let watcher = a.create_actor::<ConventionWatcher>().unwrap().address();
    let watching: bool = a.ask(watcher, WatchConvention, within).unwrap();
    assert!(watching);
    let heard = news_until(a, watcher, |heard| {
        [b_addr, c_addr]
            .iter()
            .all(|m| heard.iter().any(|u| u.added && u.member == m.to_string()))
    });
    let b_news = heard.iter().rev().find(|u| u.member == b_addr.to_string()).unwrap();
    assert_eq!(b_news.capabilities.get::<bool>("gpu"), Some(true), "{heard:?}");

    // SIGKILL the third admin: its hosts die with it, and the others drop it.
    let c_admin = c.admin_pid();
    kill(Pid::from_raw(c_admin as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(c_admin, Duration::from_secs(5)));
    let noticed = wait_for_members(a, &[b_addr], within);
    eprintln!("the leader noticed a killed member after {noticed:?}");
    assert!(noticed < Duration::from_secs(5), "noticed only after {noticed:?}");
    wait_for_members(b, &[a_addr], within);
    let heard = news_until(a, watcher, |heard| {
        heard.iter().any(|u| !u.added && u.member == c_addr.to_string())
    });
    assert!(
        heard.iter().all(|u| u.added || u.member == c_addr.to_string()),
        "{heard:?}"
    );
}

/// Asks the watcher what it has heard until `enough` holds (every 20 ms, up to 10 s).
fn news_until(
    sys: &TestSystem,
    watcher: greenroom::Address,
    enough: impl Fn(&[greenroom::ActorSystemConventionUpdate]) -> bool,
) -> Vec<greenroom::ActorSystemConventionUpdate> {
    let started = Instant::now();
    loop {
        let heard: Vec<greenroom::ActorSystemConventionUpdate> =
            sys.ask(watcher, ConventionNews, Duration::from_secs(10)).unwrap();
        if enough(&heard) {
            return heard;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not heard: {heard:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_member_cannot_start_with_a_missing_or_exposed_secret_or_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.key");
    let config = |secret: &Path| {
        SystemConfig::default()
            .host_executable(HOST)
            .convention(convention(secret, free_addr("127.0.0.1"), None))
    };
    let refused = |config: SystemConfig| match greenroom::ActorSystem::start_with(config) {
        Ok(_) => panic!("the system started"),
        Err(e) => e,
    };
    let err = refused(config(&missing));
    assert!(matches!(err, Error::ConventionKeyFile { .. }), "{err}");
    assert!(err.to_string().contains("greenroom keygen"), "{err}");

    let exposed = dir.path().join("exposed.key");
    ClusterSecret::generate(&exposed).unwrap();
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(config(&exposed));
    assert!(err.to_string().contains("chmod 600"), "{err}");

    // A static key file others may read is refused the same way, and named as what it is.
    let good = dir.path().join("cluster2.key");
    ClusterSecret::generate(&good).unwrap();
    let key_file = dir.path().join("node.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let with_key = ConventionConfig {
        key_file: Some(key_file),
        ..convention(&good, free_addr("127.0.0.1"), None)
    };
    let err = refused(SystemConfig::default().host_executable(HOST).convention(with_key));
    assert!(
        err.to_string().starts_with("static key file") && err.to_string().contains("chmod 600"),
        "{err}"
    );
}

/// Sends SIGCONT to a stopped process when dropped, so that a failing test leaves nothing
/// stopped behind.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

#[test]
fn a_stopped_admin_is_noticed_without_blaming_the_others_and_rejoins_when_resumed() {
    let lab = lab([Capabilities::new(), Capabilities::new(), Capabilities::new()]);
    let ([a, b, c], [a_addr, b_addr, c_addr]) = (&lab.systems, lab.addrs);
    let within = Duration::from_secs(10);

    // SIGSTOP: the kernel still accepts connections for it, but nothing answers (the case
    // that a connection refused cannot reveal).
    let c_admin = c.admin_pid();
    let resume = Resume(c_admin);
    kill(Pid::from_raw(c_admin as i32), Signal::SIGSTOP).unwrap();
    let noticed = wait_for_members(a, &[b_addr], within);
    eprintln!("the leader noticed a stopped member after {noticed:?}");
    assert!(noticed < Duration::from_secs(5), "noticed only after {noticed:?}");
    wait_for_members(b, &[a_addr], within);
    // The live two were never taken for dead meanwhile: their identities are the first ones.
    let a_view = a.describe(false).unwrap().convention.unwrap();
    let b_view = b.describe(false).unwrap().convention.unwrap();
    assert_eq!(a_view.members[0].incarnation, b_view.me.incarnation);
    assert_eq!(b_view.members[0].incarnation, a_view.me.incarnation);

    // Resumed, it finds it was declared down and rejoins.
    drop(resume);
    let healed = wait_for_members(a, &[b_addr, c_addr], Duration::from_secs(15));
    eprintln!("the stopped member was back after {healed:?}");
    wait_for_members(b, &[a_addr, c_addr], Duration::from_secs(15));
    wait_for_members(c, &[a_addr, b_addr], Duration::from_secs(15));
}

/// The incarnation `sys` lists for the member at `addr`, if it lists it.
fn incarnation_of(sys: &TestSystem, addr: SocketAddr) -> Option<u64> {
    let view = sys.describe(false).unwrap().convention.unwrap();
    view.members
        .iter()
        .find(|m| m.address == addr.to_string())
        .map(|m| m.incarnation)
}

/// The static key fingerprint `sys` has for the member at `addr`, once it has one.
fn key_of(sys: &TestSystem, addr: SocketAddr) -> String {
    let started = Instant::now();
    loop {
        let view = sys.describe(false).unwrap().convention.unwrap();
        let key = view
            .members
            .iter()
            .find(|m| m.address == addr.to_string())
            .map(|m| m.key.clone());
        match key {
            Some(key) if !key.is_empty() => return key,
            _ => assert!(started.elapsed() < Duration::from_secs(10), "no key for {addr}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_leader_is_noticed_members_keep_working_and_a_restarted_leader_rejoins_as_a_new_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    ClusterSecret::generate(&secret).unwrap();
    let (a_addr, b_addr, c_addr) = (free_addr("127.0.0.1"), free_addr("127.0.0.2"), free_addr("127.0.0.3"));
    // The leader keeps its static key in a file; the members make one at each start.
    let leader_key = dir.path().join("leader.key");
    let leader = || {
        let config = ConventionConfig {
            key_file: Some(leader_key.clone()),
            ..convention(&secret, a_addr, None)
        };
        TestSystem::start_with(HOST, SystemConfig::default().convention(config))
    };
    let a = leader();
    let b = member(&secret, b_addr, Some(a_addr));
    let c = member(&secret, c_addr, Some(a_addr));
    let within = Duration::from_secs(10);
    wait_for_members(&b, &[a_addr, c_addr], within);
    wait_for_members(&c, &[a_addr, b_addr], within);
    let me = a.describe(false).unwrap().convention.unwrap().me;
    let first = me.incarnation;
    assert_eq!(incarnation_of(&b, a_addr), Some(first));
    assert_eq!(me.key.len(), 16, "a fingerprint: {me:?}");
    assert_eq!(
        key_of(&b, a_addr),
        me.key,
        "the key its link proved is the one it holds"
    );
    let mode = std::fs::metadata(&leader_key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is its owner's only");
    let echo = b.create_actor::<Echo>().unwrap().address();

    // SIGKILL the leader: both members drop it, and the member's own actor keeps answering.
    let a_admin = a.admin_pid();
    kill(Pid::from_raw(a_admin as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(a_admin, Duration::from_secs(5)));
    let noticed = wait_for_members(&b, &[c_addr], within);
    eprintln!("a member noticed the killed leader after {noticed:?}");
    assert!(noticed < Duration::from_secs(5), "noticed only after {noticed:?}");
    wait_for_members(&c, &[b_addr], within);
    let answer: String = b.ask(echo, "still here".to_string(), within).unwrap();
    assert_eq!(answer, "still here");
    drop(a);

    // A leader restarted at the same address knows no one; the members, who still know
    // each other, ask it again and it is back, as a new incarnation with the same key.
    let a = leader();
    let second = a.describe(false).unwrap().convention.unwrap().me.incarnation;
    assert_ne!(second, first);
    let back = wait_for_members(&a, &[b_addr, c_addr], Duration::from_secs(15));
    eprintln!("the restarted leader had both members back after {back:?}");
    wait_for_members(&b, &[a_addr, c_addr], within);
    wait_for_members(&c, &[a_addr, b_addr], within);
    assert_eq!(incarnation_of(&b, a_addr), Some(second));
    assert_eq!(incarnation_of(&c, a_addr), Some(second));
    assert_eq!(key_of(&c, a_addr), me.key, "the same identity after the restart");
    assert_ne!(key_of(&a, b_addr), "", "the members' keys are known too");
}

/// Two network namespaces joined by a veth pair, `10.213.0.1` and `10.213.0.2`, removed
/// (with the pair) on drop; and the admins started in them, stopped on drop.
struct Namespaces {
    names: [String; 2],
    admins: Vec<u32>,
}

impl Namespaces {
    const IPS: [&'static str; 2] = ["10.213.0.1", "10.213.0.2"];

    /// `None`, with the reason, where namespaces cannot be made (not root, no `ip`).
    fn new() -> Result<Self, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("needs root to create network namespaces".into());
        }
        let tag = std::process::id() % 100_000;
        let ns = Namespaces {
            names: [format!("gr{tag}a"), format!("gr{tag}b")],
            admins: Vec::new(),
        };
        let [a, b] = &ns.names;
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        let (va, vb) = (format!("{a}v"), format!("{b}v"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        for (name, veth, addr) in [(a, &va, Self::IPS[0]), (b, &vb, Self::IPS[1])] {
            ip(&["link", "set", veth, "netns", name])?;
            ip(&["-n", name, "addr", "add", &format!("{addr}/24"), "dev", veth])?;
            ip(&["-n", name, "link", "set", veth, "up"])?;
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// Blackhole routes on both sides (`add`), or their removal (`del`).
    fn partition(&self, op: &str) {
        for (name, other) in [(&self.names[0], Self::IPS[1]), (&self.names[1], Self::IPS[0])] {
            ip(&["-n", name, "route", op, "blackhole", &format!("{other}/32")]).unwrap();
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for pid in &self.admins {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("`ip` could not run ({e})"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn a_partition_between_two_network_namespaces_is_detected_and_heals() {
    let mut ns = match Namespaces::new() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: {why}; the SIGSTOP variant covers a partition everywhere");
            return;
        }
    };
    let dir = tempfile::Builder::new().prefix("grns").tempdir_in("/tmp").unwrap();
    let secret = dir.path().join("cluster.key");
    ClusterSecret::generate(&secret).unwrap();
    let greenroom_cli = harness::workspace_bin("greenroom");
    let addrs: [SocketAddr; 2] = Namespaces::IPS.map(|ip| format!("{ip}:7101").parse().unwrap());
    let names = ["part-a", "part-b"];
    let mut systems = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            ns.names[i].clone(),
            greenroom_cli.display().to_string(),
            "start".into(),
            "--host-bin".into(),
            HOST.into(),
            "--name".into(),
            name.to_string(),
            "--convention-name".into(),
            "lab".into(),
            "--listen".into(),
            addrs[i].to_string(),
            "--secret-file".into(),
            secret.display().to_string(),
        ];
        if i == 1 {
            args.extend(["--convention".into(), addrs[0].to_string()]);
        }
        let out = std::process::Command::new("ip")
            .args(&args)
            .env("XDG_RUNTIME_DIR", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "start {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The admin's socket is a path: reachable from this namespace too.
        let sys = greenroom::ActorSystem::connect_dir(&dir.path().join("greenroom").join(format!("n-{name}"))).unwrap();
        ns.admins.push(sys.describe(false).unwrap().admin_pid);
        systems.push(sys);
    }
    let within = Duration::from_secs(10);
    wait_for_members(&systems[0], &[addrs[1]], within);
    wait_for_members(&systems[1], &[addrs[0]], within);
    // Traffic across: a client of the leader's system tells numbers to an actor of the other.
    let tally = systems[1].create_actor::<Tally>().unwrap().address();
    for n in 0..100u64 {
        systems[0].tell(tally, n).unwrap();
    }
    let before: Tallied = systems[0].ask(tally, TallyReport, within).unwrap();
    assert_eq!(
        before,
        Tallied {
            distinct: 100,
            repeats: 0
        }
    );

    // What comes back goes to a dead-letter handler, which reports to a second client (so
    // that its reports are not taken for the first client's answers).
    let mortuary = systems[0].create_actor::<Mortuary>().unwrap().address();
    let watcher = systems[0].private().unwrap();
    let taken: bool = watcher.ask(mortuary, TakeDeadLetters, within).unwrap();
    assert!(taken);

    // Blackhole routes on both sides: packets vanish, nothing is refused. Numbers told
    // meanwhile are accepted, then come back to the dead-letter path, in doubt, once the
    // other member is declared down.
    ns.partition("add");
    for n in 100..150u64 {
        systems[0].tell(tally, n).unwrap();
    }
    // A question with no answer across the partition: after the heal, the same question
    // again must get its own answer, not this one's fate.
    let unanswered = systems[0].ask::<_, Tallied>(tally, TallyReport, Duration::from_millis(500));
    assert!(matches!(unanswered, Err(Error::Timeout { .. })), "{unanswered:?}");
    let noticed = wait_for_members(&systems[0], &[], within);
    eprintln!("the leader noticed the partition after {noticed:?}");
    assert!(noticed < Duration::from_secs(5), "noticed only after {noticed:?}");
    wait_for_members(&systems[1], &[], within);

    // Healed: the member asks its leader again and both list each other.
    ns.partition("del");
    let healed = wait_for_members(&systems[0], &[addrs[1]], Duration::from_secs(15));
    eprintln!("healed after {healed:?}");
    wait_for_members(&systems[1], &[addrs[0]], Duration::from_secs(15));
    // The data path works again at the first call (what came back earlier is not taken for
    // its answer), and nothing was delivered twice: each number of the partition was
    // delivered once, or came back to the dead-letter path.
    let after: Tallied = systems[0].ask(tally, TallyReport, within).unwrap();
    eprintln!("after the partition: {after:?}");
    assert_eq!(after.repeats, 0, "{after:?}");
    assert!((100..=150).contains(&after.distinct), "{after:?}");
    let mut dead = 0;
    while dead < 150 - after.distinct {
        match watcher.listen(within).unwrap() {
            Some((_, msg)) if msg.downcast::<DeadSeen>().is_some_and(|d| d.target == tally) => dead += 1,
            Some(_) => {}
            None => panic!("{dead} of {} numbers came back", 150 - after.distinct),
        }
    }

    for (sys, pid) in systems.iter().zip(ns.admins.clone()) {
        sys.stop_system().unwrap();
        assert!(
            harness::wait_for_exit(pid, Duration::from_secs(15)),
            "admin {pid} did not stop"
        );
    }
}

#[test]
fn asks_and_tells_cross_members_in_order_and_come_back_when_the_receiver_is_gone() {
    let lab = lab([Capabilities::new(), Capabilities::new(), Capabilities::new()]);
    let [a, b, c] = &lab.systems;
    let within = Duration::from_secs(10);

    // Addresses name their node: each admin's differ.
    let echo = b.create_actor::<Echo>().unwrap().address();
    let recorder = c.create_actor::<Recorder>().unwrap().address();
    assert_ne!(echo.node(), recorder.node());
    assert_ne!(echo.node(), greenroom::NodeId(0));

    // A client of one member asks an actor of another, through both gateways.
    let started = Instant::now();
    let answer: String = a.ask(echo, "across".to_string(), within).unwrap();
    eprintln!("first cross-member ask (links opened) took {:?}", started.elapsed());
    assert_eq!(answer, "across");
    let mut samples: Vec<Duration> = (0..200)
        .map(|i| {
            let t = Instant::now();
            let back: u64 = a.ask(echo, i as u64, within).unwrap();
            assert_eq!(back, i as u64);
            t.elapsed()
        })
        .collect();
    samples.sort();
    eprintln!(
        "cross-member ask round trip on loopback: p50 {:?}, p99 {:?}",
        samples[100], samples[198]
    );

    // Tells from a client, and from an actor on a third member, arrive in order.
    for n in 0..500u64 {
        a.tell(recorder, n).unwrap();
    }
    let seen: Recorded = a.ask(recorder, Report, within).unwrap();
    assert_eq!((seen.count, seen.in_order, seen.last), (500, true, Some(499)));
    let recorder2 = c.create_actor::<Recorder>().unwrap().address();
    let blaster = b.create_actor::<Blaster>().unwrap().address();
    let done: bool = b
        .ask(
            blaster,
            Blast {
                to: recorder2,
                count: 1000,
            },
            within,
        )
        .unwrap();
    assert!(done);
    // The blaster's stream and this client's ask are two streams: the report may overtake
    // the blaster's last messages, so ask until all have come.
    let deadline = Instant::now() + within;
    let seen = loop {
        let seen: Recorded = b.ask(recorder2, Report, within).unwrap();
        assert!(seen.in_order, "{seen:?}");
        if seen.count == 1000 || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((seen.count, seen.in_order, seen.last), (1000, true, Some(999)));

    // The receiver gone: a cross-member ask fails at once with an error, not a timeout.
    b.tell(echo, greenroom::ActorExitRequest).unwrap();
    let deadline = Instant::now() + within;
    while !matches!(b.actor_info(echo).unwrap().state, greenroom::ActorState::Gone(_)) {
        assert!(Instant::now() < deadline, "the echo actor never left");
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    let err = a.ask::<_, String>(echo, "anyone?".to_string(), within).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}: {err}", t.elapsed());
    assert!(
        matches!(err, Error::ActorGone { .. }),
        "the other admin says why: {err}"
    );

    // An id the other member never issued is unknown there, not in doubt.
    let never = greenroom::Address::new(echo.node(), 9_999);
    let err = a.ask::<_, String>(never, "anyone?".to_string(), within).unwrap_err();
    assert!(matches!(err, Error::UnknownActor(_)), "{err}");

    // An address of a node that is no member: refused at once too.
    let stranger = greenroom::Address::new(greenroom::NodeId(12345), 2);
    let err = a.ask::<_, String>(stranger, "hello?".to_string(), within).unwrap_err();
    assert!(!matches!(err, Error::Timeout { .. }), "{err}");
}

#[test]
fn a_first_message_larger_than_a_handshake_crosses_members() {
    // The sender writes its first messages right behind its handshake, so the gateway
    // often reads both at once: the message must be read with the message limit, not the
    // handshake's (1 KiB).
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let [a, b] = &lab.systems;
    let big = "x".repeat(64 * 1024);
    for _ in 0..3 {
        // A new receiver each time: a new connection to each gateway, both ways, its
        // handshake and its first message written together.
        let echo = b.create_actor::<Echo>().unwrap().address();
        let answer: String = a.ask(echo, big.clone(), Duration::from_secs(10)).unwrap();
        assert_eq!(answer.len(), big.len());
    }
}

#[test]
fn the_actors_of_a_killed_member_are_dead_letters_and_their_remote_parents_are_told() {
    let lab = lab([Capabilities::new(), gpus()]);
    let ([a, b], [_, b_addr]) = (&lab.systems, lab.addrs);
    let within = Duration::from_secs(10);
    // An actor here with a child placed on the other member.
    let broker = a.create_actor::<Broker>().unwrap().address();
    let hired: Result<greenroom::Address, String> = a.ask(broker, HireGpu { gpus: 2 }, within).unwrap();
    let hired = hired.expect("the other member has two GPUs");
    let far = b.create_actor::<Echo>().unwrap().address();
    let hello: String = a.ask(far, "hello".to_string(), within).unwrap();
    assert_eq!(hello, "hello");
    let mortuary = a.create_actor::<Mortuary>().unwrap().address();
    let taken: bool = a.ask(mortuary, TakeDeadLetters, within).unwrap();
    assert!(taken);
    let forwarder = a.create_actor::<Forwarder>().unwrap().address();

    // SIGKILL the member with the actor: once it is declared down, an actor's message for
    // its address goes to the dead-letter handler, and a client's ask fails at once.
    let b_admin = b.admin_pid();
    kill(Pid::from_raw(b_admin as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(b_admin, Duration::from_secs(5)));
    wait_for_members(a, &[], within);
    a.tell(
        forwarder,
        Forward {
            to: far,
            text: "after it died".into(),
        },
    )
    .unwrap();
    // The dead letter reaches the handler, and the parent of the actor placed there hears
    // that it is gone, and why (in either order).
    let deadline = Instant::now() + within;
    let (mut dead, mut exit) = (None, None);
    while dead.is_none() || exit.is_none() {
        assert!(Instant::now() < deadline, "dead letter {dead:?}, exit notice {exit:?}");
        if let Some((_, msg)) = a.listen(Duration::from_millis(100)).unwrap() {
            dead = dead.or(msg.downcast::<DeadSeen>());
            exit = exit.or(msg.downcast::<ChildExitSeen>());
        }
    }
    let (seen, exit) = (dead.unwrap(), exit.unwrap());
    assert_eq!((seen.target, seen.text.as_deref()), (far, Some("after it died")));
    assert_eq!(
        (exit.parent, exit.child, exit.cause),
        (
            broker,
            hired,
            greenroom::ExitCause::MemberLost {
                member: b_addr.to_string()
            }
        )
    );
    let t = Instant::now();
    let err = a.ask::<_, String>(far, "anyone?".to_string(), within).unwrap_err();
    assert!(
        !matches!(err, Error::Timeout { .. }) && t.elapsed() < Duration::from_secs(5),
        "{err}"
    );
}

/// Waits until `sys` reports `actor` gone for `cause` (asking every 20 ms, up to 10 s);
/// returns how long that took.
fn wait_until_gone(sys: &TestSystem, actor: greenroom::Address, cause: &greenroom::ExitCause) -> Duration {
    let started = Instant::now();
    loop {
        let state = sys.actor_info(actor).unwrap().state;
        if state == greenroom::ActorState::Gone(cause.clone()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{actor} is {state:?}, not gone for {cause}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_remote_child_s_restart_reaches_its_parent_and_it_never_outlives_its_parent_s_process_or_member() {
    let lab = lab([Capabilities::new(), gpus()]);
    let [a, b] = &lab.systems;
    let within = Duration::from_secs(10);
    let broker = a.create_actor::<Broker>().unwrap().address();
    let hire = |a: &TestSystem| -> greenroom::Address {
        let hired: Result<greenroom::Address, String> = a.ask(broker, HireGpu { gpus: 2 }, within).unwrap();
        hired.expect("the other member has two GPUs")
    };
    let hired = hire(a);

    // SIGKILL the child's process: it comes back at its address, and its parent on the
    // other member hears so, with the cause.
    let child_pid = b.actor_info(hired).unwrap().pid.unwrap();
    kill(Pid::from_raw(child_pid as i32), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + within;
    let restart = loop {
        assert!(Instant::now() < deadline, "the parent never heard of the restart");
        if let Some((_, msg)) = a.listen(Duration::from_millis(100)).unwrap() {
            if let Some(seen) = msg.downcast::<ChildRestartSeen>() {
                break seen;
            }
        }
    };
    assert_eq!(
        restart,
        ChildRestartSeen {
            parent: broker,
            child: hired,
            cause: greenroom::ExitCause::Signal {
                signal: 9,
                core_dumped: false
            },
            restart_count: 1
        }
    );
    let answer: String = a.ask(hired, "still there?".to_string(), within).unwrap();
    assert_eq!(answer, "gpu ok");

    // SIGKILL the parent's process: the child on the other member is stopped for good, as
    // a local child would be, though the parent itself is restarted.
    let child_pid = b.actor_info(hired).unwrap().pid.unwrap();
    let broker_pid = a.actor_info(broker).unwrap().pid.unwrap();
    kill(Pid::from_raw(broker_pid as i32), Signal::SIGKILL).unwrap();
    let took = wait_until_gone(b, hired, &greenroom::ExitCause::ParentGone);
    eprintln!("a remote child was stopped {took:?} after its parent's process died");
    assert!(harness::wait_for_exit(child_pid, within), "its process is gone too");
    assert!(
        a.actor_info(broker).unwrap().incarnation >= 2,
        "the parent was restarted"
    );

    // The parent's new incarnation hires again; then its whole member is SIGKILLed. Once
    // the other member has noticed, the orphan there is stopped for good too.
    let hired_again = hire(a);
    assert_ne!(hired_again, hired);
    let a_admin = a.admin_pid();
    kill(Pid::from_raw(a_admin as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(a_admin, Duration::from_secs(5)));
    wait_for_members(b, &[], within);
    wait_until_gone(b, hired_again, &greenroom::ExitCause::ParentGone);
}

#[test]
fn a_remote_child_whose_parent_dies_while_it_is_being_created_is_stopped_and_a_client_s_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    ClusterSecret::generate(&secret).unwrap();
    let log = dir.path().join("a.log");
    let (a_addr, b_addr) = (free_addr("127.0.0.1"), free_addr("127.0.0.2"));
    let config = SystemConfig::default().convention(convention(&secret, a_addr, None));
    let a = TestSystem::start_with(HOST, config.log_file(&log).log_level(tracing::Level::INFO));
    let b = member_with(&secret, b_addr, Some(a_addr), gpus());
    let within = Duration::from_secs(10);
    wait_for_members(&a, &[b_addr], within);
    wait_for_members(&b, &[a_addr], within);
    wait_for_capability(&a, b_addr, "gpus", within);
    let broker = a.create_actor::<Broker>().unwrap().address();
    let broker_pid = a.actor_info(broker).unwrap().pid.unwrap();

    // The member that will create the child is stopped, so the create waits there; the
    // parent's process is killed meanwhile; then the member goes on and creates it.
    let b_admin = b.admin_pid();
    let resume = Resume(b_admin);
    kill(Pid::from_raw(b_admin as i32), Signal::SIGSTOP).unwrap();
    a.tell(broker, HireGpu { gpus: 2 }).unwrap();
    let asked = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("creating an actor on another member")
    {
        assert!(asked.elapsed() < within, "the create never left");
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(Pid::from_raw(broker_pid as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(broker_pid, within));
    while a.actor_info(broker).unwrap().pid == Some(broker_pid) {
        assert!(asked.elapsed() < within, "the parent was never reaped");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(resume);
    // The orphan is stopped for good as soon as it exists.
    let worker_type = greenroom::actor_type_name::<GpuWorker>();
    let started = Instant::now();
    loop {
        let rows = b.describe(true).unwrap().actors;
        let worker = rows.iter().find(|r| r.type_name == worker_type);
        if worker.is_some_and(|w| w.state == greenroom::ActorState::Gone(greenroom::ExitCause::ParentGone)) {
            break;
        }
        assert!(started.elapsed() < within, "the orphan is not stopped: {worker:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A client's remote actor has no parent of record: losing the client's member does not
    // stop it (a client's local actors outlive it too).
    let placed = a.create_actor::<GpuWorker>().unwrap().address();
    assert_eq!(
        placed.node(),
        b.create_actor::<Echo>().unwrap().address().node(),
        "placed on b"
    );
    let a_admin = a.admin_pid();
    kill(Pid::from_raw(a_admin as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(a_admin, within));
    wait_for_members(&b, &[], within);
    let answer: String = b.ask(placed, "still there?".to_string(), within).unwrap();
    assert_eq!(answer, "gpu ok");
    assert_eq!(b.actor_info(placed).unwrap().state, greenroom::ActorState::Running);
}

#[test]
fn an_insider_cannot_speak_for_another_live_member() {
    use greenroom::convention::link::{Link, LinkConfig};
    use greenroom_protocol::convention::ConventionFrame;
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let ([a, b], [a_addr, b_addr]) = (&lab.systems, lab.addrs);
    let within = Duration::from_secs(10);
    let b_incarnation = incarnation_of(a, b_addr).unwrap();
    // Someone with the cluster secret but another static key claims to be b: in b's own
    // life, and in a life to come that would shut b's real frames out.
    let secret = ClusterSecret::load(&lab.secret).unwrap();
    let insider = LinkConfig::new("lab", secret).unwrap();
    for (incarnation, version) in [(b_incarnation, 1_000), (b_incarnation + 1, 1), (u64::MAX, 1)] {
        let mut link = Link::connect(std::net::TcpStream::connect(a_addr).unwrap(), &insider).unwrap();
        let hello = ConventionFrame::Hello {
            member: b_addr,
            incarnation,
        };
        link.send(&postcard::to_allocvec(&hello).unwrap()).unwrap();
        let forged = ConventionFrame::Capabilities {
            version,
            capabilities: Capabilities::new().with("forged", &true).unwrap(),
            load: 0,
            types: None,
        };
        // In b's own life the link is cut at its Hello; in another, its word is not b's.
        let _ = link.send(&postcard::to_allocvec(&forged).unwrap());
    }
    // b's own word still counts, before and after; the forgery never shows.
    b.update_capability("disk_gb", &500u64).unwrap();
    wait_for_capability(a, b_addr, "disk_gb", within);
    b.update_capability("ssd", &true).unwrap();
    wait_for_capability(a, b_addr, "ssd", within);
    let view = a.describe(false).unwrap().convention.unwrap();
    let row = view.members.iter().find(|m| m.address == b_addr.to_string()).unwrap();
    assert!(!row.capabilities.contains("forged"), "{row:?}");
    assert_eq!(row.incarnation, b_incarnation);
    assert_eq!(row.key, b.describe(false).unwrap().convention.unwrap().me.key);
}

#[test]
fn a_remote_receiver_that_dies_comes_back_with_its_queued_messages_and_returns_the_fatal_one_as_poison() {
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let [a, b] = &lab.systems;
    let within = Duration::from_secs(10);
    let crasher = b.create_actor::<Crasher>().unwrap().address();
    let ping = |nonce: u64| -> Echoed {
        let echoed: Echoed = a.ask(crasher, Crash::Ping(nonce), within).unwrap();
        assert_eq!(echoed.nonce, nonce);
        echoed
    };
    let before = ping(1).pong.pid;

    // From the other member: a fatal message with twenty more queued behind it. The
    // receiver's admin tells the sender's what the dead incarnation did with them.
    a.tell(crasher, Crash::Abort).unwrap();
    for _ in 0..20 {
        a.tell(crasher, Crash::Inc).unwrap();
    }
    match a.listen(within) {
        Err(Error::Poisoned { address, details, .. }) => {
            assert_eq!(address, crasher);
            assert!(details.contains("process died while processing it"), "{details}");
            assert!(details.contains("killed by signal 6"), "{details}");
        }
        other => panic!("expected the fatal message back as poison, got {other:?}"),
    }
    assert!(harness::wait_for_exit(before, within), "the old process is gone");
    let after = ping(2).pong;
    assert_ne!(after.pid, before, "a new process serves the same address");
    assert_eq!(
        after.deliveries, 20,
        "each queued message reaches the new incarnation once"
    );
    assert_eq!(b.actor_info(crasher).unwrap().incarnation, 2);

    // SIGKILL from outside once ping 2 is answered: the next message goes to the next
    // incarnation. The host is not necessarily idle yet: it writes its answer before it
    // records ping 2 as done, and a kill in between (often, on two busy cores: the answer
    // wakes everything between it and this kill) brings ping 2 back as poison as well
    // ("Reply and poison" in ARCHITECTURE.md; made certain in the next test). That poison
    // is a late answer to an ask that has its own, so it goes to the dead-letter path and
    // is never taken for ping 3's answer.
    kill(Pid::from_raw(after.pid as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(after.pid, within));
    a.tell(crasher, Crash::Inc).unwrap();
    let last = ping(3).pong;
    assert_ne!(last.pid, after.pid);
    assert_eq!(last.deliveries, 1);
    assert_eq!(b.actor_info(crasher).unwrap().incarnation, 3);
}

#[test]
fn an_answer_written_just_before_its_remote_host_is_killed_never_answers_the_next_ask() {
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let [a, b] = &lab.systems;
    let within = Duration::from_secs(10);
    let crasher = b.create_actor::<Crasher>().unwrap().address();
    // A client of the receiver's own system that never reads: what is sent to it fills its
    // socket, and its sender waits in `flush_all`. (Across members the gateways would take
    // it all.)
    let stuck = b.private().unwrap();

    // The answer reaches `a`; the host, its answer written, waits to write the rest and has
    // not recorded the message as done.
    let stall = Crash::PingThenStall {
        nonce: 1,
        stall: stuck.address(),
        bytes: 4 << 20,
    };
    let answered: Echoed = a.ask(crasher, stall, within).unwrap();
    assert_eq!((answered.nonce, answered.pong.deliveries), (1, 1));
    let before = answered.pong.pid;
    // It takes nothing else meanwhile (asked from another client, whose answer may come
    // from the next incarnation without confusing `a`): a kill now is certain to land
    // where the previous test's kill lands by chance.
    let prober = a.private().unwrap();
    let probe = prober.ask::<_, Echoed>(crasher, Crash::Ping(100), Duration::from_millis(300));
    assert!(matches!(probe, Err(Error::Timeout { .. })), "{probe:?}");
    kill(Pid::from_raw(before as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(before, within));

    // The message comes back to `a` as poison (its process died before recording it done),
    // a late answer to an ask that has its answer: the next ask gets its own, from the next
    // incarnation, which was not given the message again (it would have counted it, and
    // stalled there too).
    let next: Echoed = a.ask(crasher, Crash::Ping(2), within).unwrap();
    assert_eq!(next.nonce, 2);
    assert_ne!(next.pong.pid, before, "a new process serves the same address");
    assert_eq!(next.pong.deliveries, 0, "the answered message is not delivered again");
    assert_eq!(b.actor_info(crasher).unwrap().incarnation, 2);
}

#[test]
fn a_typed_create_this_system_does_not_qualify_for_lands_on_a_member_that_does() {
    let lab = lab([Capabilities::new(), gpus(), Capabilities::new()]);
    let [a, b, _] = &lab.systems;
    let within = Duration::from_secs(10);
    let b_node = b.create_actor::<Echo>().unwrap().address().node();

    // From a client: this system has no GPU, the second member has two.
    let worker = a.create_actor::<GpuWorker>().unwrap().address();
    assert_eq!(worker.node(), b_node, "placed on the member with the GPUs");
    assert_eq!(a.ask::<_, String>(worker, (), within).unwrap(), "gpu ok");
    assert!(
        b.actor_info(worker).unwrap().pid.is_some(),
        "its process runs under the second admin"
    );

    // Requirements no member meets: refused, naming them.
    let eight = Capabilities::new().with("gpus", &8u32).unwrap();
    let err = a.create_actor_requiring::<GpuWorker>(&eight).unwrap_err();
    assert!(
        matches!(&err, Error::NoCompatibleSystem { requirements, .. } if requirements == &["gpus"]),
        "{err}"
    );

    // From inside an actor, which becomes the remote worker's parent and hears it exit.
    let broker = a.create_actor::<Broker>().unwrap().address();
    let hired: Result<greenroom::Address, String> = a.ask(broker, HireGpu { gpus: 2 }, within).unwrap();
    let hired = hired.expect("the second member has two GPUs");
    assert_eq!(hired.node(), b_node);
    assert_eq!(a.ask::<_, String>(hired, (), within).unwrap(), "gpu ok");
    a.tell(hired, greenroom::ActorExitRequest).unwrap();
    let deadline = Instant::now() + within;
    let seen = loop {
        assert!(
            Instant::now() < deadline,
            "the broker never heard its remote worker exit"
        );
        if let Some((_, msg)) = a.listen(Duration::from_millis(100)).unwrap() {
            if let Some(seen) = msg.downcast::<ChildExitSeen>() {
                break seen;
            }
        }
    };
    assert_eq!(
        (seen.parent, seen.child, seen.cause),
        (broker, hired, greenroom::ExitCause::Normal)
    );
    let refused: Result<greenroom::Address, String> = a.ask(broker, HireGpu { gpus: 8 }, within).unwrap();
    assert!(refused.unwrap_err().contains("no compatible actor system"));
}

#[test]
fn a_global_name_is_one_actor_across_the_convention_and_is_still_found_without_its_leader() {
    let lab = lab([Capabilities::new(), Capabilities::new(), Capabilities::new()]);
    let ([a, b, c], [_, b_addr, c_addr]) = (&lab.systems, lab.addrs);
    let within = Duration::from_secs(10);

    // Created once, on the member that asked first; every other member gets that actor.
    let registry = b.create_actor_global::<Echo>("registry").unwrap();
    let b_node = b.create_actor::<Echo>().unwrap().address().node();
    assert_eq!(registry.node(), b_node);
    assert_eq!(c.create_actor_global::<Echo>("registry").unwrap(), registry);
    assert_eq!(a.create_actor_global::<Echo>("registry").unwrap(), registry);
    let hi: String = c.ask(registry, "hi".to_string(), within).unwrap();
    assert_eq!(hi, "hi");
    // A name taken on the leader itself is the same for the others.
    let ledger = a.create_actor_global::<Echo>("ledger").unwrap();
    let deadline = Instant::now() + within;
    loop {
        // The leader's broadcast reaches c's copy shortly; until then c asks the leader.
        if c.create_actor_global::<Echo>("ledger").unwrap() == ledger {
            break;
        }
        assert!(Instant::now() < deadline, "c never found the leader's name");
    }

    // SIGKILL the leader: a new name cannot be bound (and says why, at once), names
    // already bound are still found, and the members' actors keep working.
    let a_admin = a.admin_pid();
    kill(Pid::from_raw(a_admin as i32), Signal::SIGKILL).unwrap();
    assert!(harness::wait_for_exit(a_admin, Duration::from_secs(5)));
    wait_for_members(c, &[b_addr], within);
    wait_for_members(b, &[c_addr], within);
    assert_eq!(c.create_actor_global::<Echo>("registry").unwrap(), registry);
    let t = Instant::now();
    let err = c.create_actor_global::<Echo>("new-name").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(err.to_string().contains("leader"), "{err}");
    let still: String = c.ask(registry, "still there".to_string(), within).unwrap();
    assert_eq!(still, "still there");
}

#[test]
fn of_several_members_that_qualify_the_least_loaded_gets_the_actor() {
    let lab = lab([Capabilities::new(), gpus(), gpus()]);
    let ([a, b, c], [_, b_addr, c_addr]) = (&lab.systems, lab.addrs);
    let within = Duration::from_secs(10);
    // The second member (first in address order) is busier: four actors against none.
    for _ in 0..4 {
        b.create_actor::<Echo>().unwrap().address();
    }
    let load_of = |addr: SocketAddr| {
        let view = a.describe(false).unwrap().convention.unwrap();
        view.members
            .iter()
            .find(|m| m.address == addr.to_string())
            .map(|m| m.load)
    };
    let deadline = Instant::now() + within;
    while load_of(b_addr) != Some(4) {
        assert!(
            Instant::now() < deadline,
            "the load never reached the leader: {:?}",
            load_of(b_addr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(load_of(c_addr), Some(0));
    let c_node = c.create_actor::<Echo>().unwrap().address().node();
    let worker = a.create_actor::<GpuWorker>().unwrap().address();
    assert_eq!(worker.node(), c_node, "placed on the less loaded of the two");
    assert_eq!(a.ask::<_, String>(worker, (), within).unwrap(), "gpu ok");
}

#[test]
fn the_gateway_refuses_bad_handshakes_and_closes_stalled_connections() {
    use std::{io::Read, io::Write, os::unix::net::UnixStream};
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    ClusterSecret::generate(&secret).unwrap();
    let a = member(&secret, free_addr("127.0.0.1"), None);
    let rundir = a.describe(false).unwrap().runtime_dir;
    let socket = Path::new(&rundir).join("gateway.sock");
    let closed_within = |mut stream: UnixStream, limit: Duration| {
        stream.set_read_timeout(Some(limit)).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return t.elapsed(),
                Ok(_) => {} // a refusal's reply, then the end
            }
        }
    };
    // Garbage instead of a handshake: refused and closed at once.
    let mut garbage = UnixStream::connect(&socket).unwrap();
    garbage
        .write_all(&[8, 0, 0, 0, b'n', b'o', b'p', b'e', 1, 2, 3, 4])
        .unwrap();
    assert!(closed_within(garbage, Duration::from_secs(10)) < Duration::from_secs(2));
    // Nothing at all: closed after the handshake deadline (3 s), not held forever.
    let stalled = UnixStream::connect(&socket).unwrap();
    let waited = closed_within(stalled, Duration::from_secs(10));
    assert!(waited < Duration::from_secs(8), "held for {waited:?}");
    // The system keeps working.
    let echo = a.create_actor::<Echo>().unwrap().address();
    let back: String = a.ask(echo, "fine".to_string(), Duration::from_secs(10)).unwrap();
    assert_eq!(back, "fine");
}

#[test]
fn remote_senders_that_go_away_leave_no_connection_behind() {
    let lab = lab([Capabilities::new(), Capabilities::new()]);
    let [a, b] = &lab.systems;
    let within = Duration::from_secs(10);
    let echo = b.create_actor::<Echo>().unwrap().address();
    let _: String = a.ask(echo, "warm up".to_string(), within).unwrap();
    let echo_pid = b.actor_info(echo).unwrap().pid.unwrap();
    let (admin_before, echo_before) = (harness::fd_count(b.admin_pid()), harness::fd_count(echo_pid));
    // Fifty clients of the first member each ask once and go: each was a stream through
    // both gateways, and each end closes the receiving gateway's connection too.
    for i in 0..50u64 {
        let client = a.private().unwrap();
        let back: u64 = client.ask(echo, i, within).unwrap();
        assert_eq!(back, i);
    }
    let deadline = Instant::now() + within;
    loop {
        let (admin_now, echo_now) = (harness::fd_count(b.admin_pid()), harness::fd_count(echo_pid));
        if admin_now <= admin_before + 2 && echo_now <= echo_before + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fds: admin {admin_before} -> {admin_now}, echo host {echo_before} -> {echo_now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many lines of `log` say a convention link was refused.
fn refusals_logged(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("convention link refused"))
        .count()
}

/// Connects to `addr`, writes `bytes`, and reads until the admin closes the connection;
/// returns what it answered and how long it held the connection. Fails the test if the
/// connection is still open after 10 s.
fn hostile_exchange(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, Duration) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let _ = stream.write_all(bytes);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the admin held a hostile connection open ({e}) after {:?}",
                started.elapsed()
            ),
        }
    }
    (answer, started.elapsed())
}

/// Relays one TCP connection to `target` and records what the connecting side sent; returns
/// the relay's address and, once both sides are done, the recording.
fn recording_relay(target: SocketAddr) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = listener.local_addr().unwrap();
    let recorder = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = std::net::TcpStream::connect(target).unwrap();
        let (mut client_back, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let answers = std::thread::spawn(move || {
            let _ = std::io::copy(&mut server, &mut client_back);
            let _ = client_back.shutdown(std::net::Shutdown::Write);
        });
        let mut recorded = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = client.read(&mut buf) {
            if n == 0 || server_out.write_all(&buf[..n]).is_err() {
                break;
            }
            recorded.extend_from_slice(&buf[..n]);
        }
        let _ = server_out.shutdown(std::net::Shutdown::Write);
        answers.join().unwrap();
        recorded
    });
    (relay, recorder)
}

#[test]
fn hostile_peers_on_the_convention_port_are_cut_off_change_nothing_and_are_logged_at_a_bounded_rate() {
    use greenroom::convention::link::{Link, LinkConfig};
    use greenroom_protocol::convention::encode_hello;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.key");
    ClusterSecret::generate(&secret).unwrap();
    let log = dir.path().join("leader.log");
    let (a_addr, b_addr) = (free_addr("127.0.0.1"), free_addr("127.0.0.2"));
    let config = SystemConfig::default().convention(convention(&secret, a_addr, None));
    let a = TestSystem::start_with(HOST, config.log_file(&log));
    let b = member(&secret, b_addr, Some(a_addr));
    let within = Duration::from_secs(10);
    wait_for_members(&a, &[b_addr], within);
    wait_for_members(&b, &[a_addr], within);
    let b_incarnation = incarnation_of(&a, b_addr);
    let echo = b.create_actor::<Echo>().unwrap().address();
    let _: String = a.ask(echo, "before".to_string(), within).unwrap();

    // A burst of strangers speaking other protocols: each is told why and cut off at once.
    let hostile_started = Instant::now();
    // (The third is what a client sends `admin.sock`: plaintext postcard of our own protocol.)
    let mut data_handshake = Vec::new();
    greenroom_protocol::Handshake {
        role: greenroom_protocol::PeerRole::Client,
    }
    .encode(&mut data_handshake)
    .unwrap();
    let strangers: Vec<Vec<u8>> = (0..6)
        .flat_map(|_| {
            [
                b"\xff\xfe\x00garbage, not a link".to_vec(),
                b"GET / HTTP/1.1\r\nHost: greenroom\r\n\r\n".to_vec(),
                data_handshake.clone(),
            ]
        })
        .collect();
    for bytes in &strangers {
        let (answer, held) = hostile_exchange(a_addr, bytes);
        assert!(
            String::from_utf8_lossy(&answer).contains("not a Greenroom convention link"),
            "told why: {answer:?}"
        );
        assert!(held < Duration::from_secs(2), "held for {held:?}");
    }

    // A member of another version is told which versions differ.
    let mut other_version = encode_hello("lab").unwrap();
    other_version[4..6].copy_from_slice(&(greenroom_protocol::PROTOCOL_VERSION + 1).to_le_bytes());
    let (answer, _) = hostile_exchange(a_addr, &other_version);
    assert!(String::from_utf8_lossy(&answer).contains("version"), "{answer:?}");

    // A good hello, then a first handshake message that does not authenticate: a peer
    // without the secret (XX without the pre-shared key: a bare 32-byte ephemeral key),
    // plaintext postcard where the encrypted handshake belongs, and 48 bytes of junk.
    for message in [
        vec![0x5au8; 32],
        postcard::to_allocvec(&("join", a_addr.to_string(), 1u64)).unwrap(),
        vec![7u8; 48],
    ] {
        let mut bytes = encode_hello("lab").unwrap();
        bytes.extend_from_slice(&(message.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&message);
        let (_, held) = hostile_exchange(a_addr, &bytes);
        assert!(held < Duration::from_secs(2), "held for {held:?}");
    }

    // A real handshake with the wrong secret fails, and the admin closes the connection.
    let wrong = LinkConfig::new("lab", ClusterSecret::from_bytes([9u8; 32])).unwrap();
    let refused = Link::connect(std::net::TcpStream::connect(a_addr).unwrap(), &wrong).unwrap_err();
    assert!(refused.to_string().contains("closed the connection"), "{refused}");

    // A huge Noise length, and a hello cut short: both cut at the member handshake
    // deadline (1 s), neither held.
    let mut huge = encode_hello("lab").unwrap();
    huge.extend_from_slice(&[0xff, 0xff]);
    huge.extend_from_slice(&[0u8; 100]);
    for bytes in [huge, encode_hello("lab").unwrap()[..3].to_vec()] {
        let (_, held) = hostile_exchange(a_addr, &bytes);
        assert!(held < Duration::from_secs(4), "held for {held:?}");
    }

    // A replayed handshake: record a genuine member's first and third messages through a
    // relay, then play them to the admin again. Its second message is new each time, so
    // the replayed third does not authenticate.
    let right = LinkConfig::new("lab", ClusterSecret::load(&secret).unwrap()).unwrap();
    let (relay, recording) = recording_relay(a_addr);
    drop(Link::connect(std::net::TcpStream::connect(relay).unwrap(), &right).unwrap());
    let (_, held) = hostile_exchange(a_addr, &recording.join().unwrap());
    assert!(held < Duration::from_secs(4), "held for {held:?}");

    // An authenticated peer whose frame is no convention frame is cut off too.
    let mut insider = Link::connect(std::net::TcpStream::connect(a_addr).unwrap(), &right).unwrap();
    insider.send(b"\xff\xff\xff\xff not a convention frame").unwrap();
    assert!(
        insider.recv().is_err(),
        "the admin closes a link whose frame does not decode"
    );

    // Nothing changed: the same two members, the same incarnation, messages still flow.
    assert_eq!(members(&a), vec![b_addr.to_string()]);
    assert_eq!(members(&b), vec![a_addr.to_string()]);
    assert_eq!(incarnation_of(&a, b_addr), b_incarnation);
    let back: String = a.ask(echo, "after".to_string(), within).unwrap();
    assert_eq!(back, "after");

    // The log names the refusals, but at most five per ten-second window, however many
    // come: the windows this test's refusals can touch are its length in tens of seconds,
    // plus one for the window open when they began, plus one for a boundary.
    let logged = refusals_logged(&log);
    let windows = hostile_started.elapsed().as_secs() as usize / 10 + 2;
    assert!(logged >= 5, "refusals were logged: {logged}");
    assert!(
        logged <= 5 * windows && logged < strangers.len(),
        "{logged} refusals logged one by one in {:?}",
        hostile_started.elapsed()
    );
}
