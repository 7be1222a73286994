//! The process base end to end: real admin, real hosts, real pids, real signals. (The API's
//! behaviour on both bases is in `behaviour.rs`.)

use std::time::Duration;

use greenroom::{ActorSystem, Address, Error, SystemConfig};
use greenroom_integration_tests::{
    actors::*,
    harness::{self, TestSystem},
};

const HOST: &str = env!("CARGO_BIN_EXE_greenroom-test-host");
const T: Duration = Duration::from_secs(10);

fn system() -> TestSystem {
    TestSystem::start(HOST)
}

fn pid_of(sys: &TestSystem, actor: Address) -> u32 {
    sys.actor_info(actor)
        .expect("actor info")
        .pid
        .expect("a running actor has a pid")
}

#[test]
fn each_actor_runs_in_its_own_process() {
    let sys = system();
    let actors: Vec<Address> = (0..3)
        .map(|_| sys.create_actor::<Whoami>().unwrap().address())
        .collect();
    let mut pids = Vec::new();
    for a in &actors {
        let reported: u32 = sys.ask(*a, (), T).unwrap();
        assert_eq!(
            reported,
            pid_of(&sys, *a),
            "the admin's pid for {a} is the process that answered"
        );
        assert_eq!(
            harness::parent_of(reported),
            Some(sys.admin_pid()),
            "hosts are children of the admin"
        );
        assert_eq!(
            harness::exe_of(reported),
            harness::exe_of(sys.admin_pid()),
            "hosts run the host binary"
        );
        pids.push(reported);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three actors, three processes");
    assert!(!pids.contains(&std::process::id()) && !pids.contains(&sys.admin_pid()));
    assert_eq!(sys.host_pids(), pids);
}

#[test]
fn actors_create_actors_in_new_processes() {
    let sys = system();
    let parent = sys.create_actor::<Spawner>().unwrap().address();
    let req = SpawnChildren {
        children: 2,
        grandchildren: 0,
        watcher: sys.address(),
    };
    let Spawned(children) = sys.ask(parent, req, T).unwrap();
    assert_eq!(children.len(), 2);
    let mut pids = vec![pid_of(&sys, parent)];
    for c in &children {
        // A child created from inside an actor is usable at once: messages wait until it is up.
        assert!(spawner_barrier(&sys, *c, sys.address(), T).is_empty());
        pids.push(pid_of(&sys, *c));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert_eq!(harness::parent_of(pid), Some(sys.admin_pid()));
    }
}

#[test]
fn shutdown_leaves_no_process_socket_or_directory() {
    let mut sys = system();
    for _ in 0..3 {
        sys.create_actor::<Echo>().unwrap().address();
    }
    let parent = sys.create_actor::<Spawner>().unwrap().address();
    let _: Spawned = sys
        .ask(
            parent,
            SpawnChildren {
                children: 2,
                grandchildren: 0,
                watcher: sys.address(),
            },
            T,
        )
        .unwrap();
    let rundir = sys.runtime_dir().to_path_buf();
    assert!(rundir.starts_with(sys.runtime_base()));
    let sockets = std::fs::read_dir(&rundir).unwrap().count();
    assert!(sockets >= 7, "6 actors and the client have sockets, found {sockets}");
    let hosts = sys.host_pids();
    assert_eq!(hosts.len(), 6);
    let admin = sys.admin_pid();

    sys.shutdown().unwrap();
    // Shutdown returns after the admin reaped every host and exited itself.
    for pid in hosts {
        assert!(!harness::is_alive(pid), "host {pid} survived shutdown");
    }
    assert!(!harness::is_alive(admin), "the admin survived shutdown");
    assert!(!rundir.exists(), "runtime directory {} left behind", rundir.display());
}

#[test]
fn killing_the_admin_takes_every_host_down() {
    let sys = system();
    for _ in 0..3 {
        sys.create_actor::<Echo>().unwrap().address();
    }
    let hosts = sys.host_pids();
    assert_eq!(hosts.len(), 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sys.admin_pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for pid in hosts {
        assert!(
            harness::wait_for_exit(pid, Duration::from_secs(1)),
            "host {pid} outlived its admin by 1 s"
        );
    }
    let err = sys.ask::<_, String>(Address::local(2), "?".to_string(), T).unwrap_err();
    assert!(
        matches!(err, Error::AdminGone | Error::ActorGone { .. } | Error::UnknownActor(_)),
        "{err}"
    );
}

#[test]
fn a_killed_programs_runtime_directory_is_reclaimed_at_the_next_start_and_a_live_ones_is_not() {
    use std::io::BufRead;
    let base = tempfile::Builder::new().prefix("grst").tempdir_in("/tmp").unwrap();
    // A client program and its admin, both SIGKILLed: nobody cleans up.
    let mut holder = std::process::Command::new(HOST)
        .args(["--hold-system", base.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("admin"), "{line}");
    let admin: u32 = words.next().unwrap().parse().unwrap();
    let stale = std::path::PathBuf::from(words.nth(1).unwrap());
    assert!(stale.exists());
    // A live system in the same base, which must survive the reclaim.
    let live =
        ActorSystem::start_with(SystemConfig::default().runtime_base(base.path()).host_executable(HOST)).unwrap();
    let live_dir = live.runtime_dir().unwrap().to_path_buf();
    let kill9 = |pid: u32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap()
    };
    // The admin first: with its owner gone first, it would shut down and clean up itself.
    kill9(admin);
    assert!(harness::wait_for_exit(admin, T));
    kill9(holder.id());
    holder.wait().unwrap();
    assert!(stale.exists(), "nobody removed it");

    let next =
        ActorSystem::start_with(SystemConfig::default().runtime_base(base.path()).host_executable(HOST)).unwrap();
    assert!(!stale.exists(), "the next start reclaimed the dead program's directory");
    assert!(live_dir.exists(), "a live program's directory is left alone");
    let echo = live.create_actor::<Echo>().unwrap().address();
    let back: String = live.ask(echo, "still mine".to_string(), T).unwrap();
    assert_eq!(back, "still mine");
    next.shutdown().unwrap();
    live.shutdown().unwrap();
}
