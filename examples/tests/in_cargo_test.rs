//! Process-base systems started by a crate's own `#[test]`s: this test binary is its own admin
//! and host executable through `greenroom_host::test_support!`, with no host binary and no
//! `SystemConfig::host_executable` or `SystemConfig::registry`.
//!
//! libtest runs these tests in parallel threads, so systems start and stop concurrently.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    sync::{Arc, Barrier},
    time::Duration,
};

use greenroom::{
    dispatch, ActorRef, ActorResult, ActorSystem, Address, Base, Context, Handle, Registry, Request, SystemConfig,
};
use greenroom_integration_tests::{
    harness::{exe_of, is_alive, parent_of, restart_at_once, wait_for_exit},
    TestSystem,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

greenroom_host::test_support!(Registry::new().register::<Probe>());

const T: Duration = Duration::from_secs(10);

/// Asks a [`Probe`] about the process it runs in.
#[derive(Debug, Serialize, Deserialize)]
struct Describe;

impl Request for Describe {
    type Reply = Described;
}

/// What a [`Probe`] saw of its process.
#[derive(Debug, Serialize, Deserialize)]
struct Described {
    pid: u32,
    /// The process's title, as `std::env::args` reads it (`greenroom-host <Type>` in a host).
    argv0: String,
    /// What writing to a pipe nobody reads did: `EPIPE`, as std's runtime set-up (which
    /// ignores `SIGPIPE`) makes it, rather than the death of the process.
    write_to_closed_pipe: String,
}

#[derive(Default)]
struct Probe;

impl Handle<Describe> for Probe {
    type Reply = Described;
    fn handle(&mut self, _: &mut Context<'_>, _: Describe, _: Address) -> ActorResult<Described> {
        Ok(Described {
            pid: std::process::id(),
            argv0: std::env::args().next().unwrap_or_default(),
            write_to_closed_pipe: write_to_closed_pipe(),
        })
    }
}

dispatch!(Probe { Describe });

fn write_to_closed_pipe() -> String {
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    match nix::unistd::write(&write, b"x") {
        Ok(n) => format!("wrote {n} bytes"),
        Err(errno) => format!("{errno:?}"),
    }
}

fn describe(system: &ActorSystem, probe: ActorRef<Probe>) -> Described {
    system.request(probe, Describe, T).expect("the probe answers")
}

fn this_test_binary() -> PathBuf {
    std::env::current_exe().unwrap().canonicalize().unwrap()
}

#[test]
fn a_test_starts_a_process_base_system_run_by_its_own_binary() {
    let mut system = TestSystem::own(SystemConfig::default());
    let admin = system.admin_pid();
    let probe = system.create_actor::<Probe>().unwrap();
    let seen = describe(&system, probe);

    assert_ne!(seen.pid, std::process::id(), "the actor runs in a process of its own");
    assert_eq!(system.actor_info(probe).unwrap().pid, Some(seen.pid));
    assert_eq!(parent_of(seen.pid), Some(admin), "the host is the admin's child");
    assert_eq!(exe_of(admin), Some(this_test_binary()), "the admin is this test binary");
    assert_eq!(
        exe_of(seen.pid),
        Some(this_test_binary()),
        "the host is this test binary"
    );
    // Read before main: the arguments, and std's SIGPIPE set-up done by test_support!.
    assert!(seen.argv0.starts_with("greenroom-host "), "{seen:?}");
    assert_eq!(seen.write_to_closed_pipe, "EPIPE", "{seen:?}");

    system.shutdown().unwrap();
    assert!(wait_for_exit(seen.pid, T), "the host {} outlived its system", seen.pid);
    assert!(wait_for_exit(admin, T), "the admin {admin} outlived its system");
    assert!(
        std::fs::read_dir(system.runtime_base()).unwrap().next().is_none(),
        "the runtime directory was left behind"
    );
}

#[test]
fn a_test_starts_a_simple_base_system_with_the_registry_of_test_support() {
    // No SystemConfig::registry: the simple base finds the one test_support! recorded.
    let system = TestSystem::own(SystemConfig::default().base(Base::Simple));
    let probe = system.create_actor::<Probe>().unwrap();
    let seen = describe(&system, probe);
    assert_eq!(
        seen.pid,
        std::process::id(),
        "the simple base runs actors in the test process"
    );
}

#[test]
fn concurrent_systems_of_one_test_binary_stay_apart() {
    const SYSTEMS: usize = 4;
    // All the systems are up at once: their pids are all live together, so all distinct.
    let all_up = Arc::new(Barrier::new(SYSTEMS));
    let threads: Vec<_> = (0..SYSTEMS)
        .map(|_| {
            let all_up = all_up.clone();
            std::thread::spawn(move || {
                let system = TestSystem::own(SystemConfig::default());
                let probes = [
                    system.create_actor::<Probe>().unwrap(),
                    system.create_actor::<Probe>().unwrap(),
                ];
                all_up.wait();
                let hosts: Vec<u32> = probes.iter().map(|p| describe(&system, *p).pid).collect();
                for host in &hosts {
                    assert_eq!(parent_of(*host), Some(system.admin_pid()), "a host of another system");
                }
                (system.admin_pid(), hosts)
            })
        })
        .collect();
    let results: Vec<(u32, Vec<u32>)> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let admins: BTreeSet<u32> = results.iter().map(|(admin, _)| *admin).collect();
    let hosts: BTreeSet<u32> = results.iter().flat_map(|(_, hosts)| hosts.iter().copied()).collect();
    assert_eq!(admins.len(), SYSTEMS, "{results:?}");
    assert_eq!(hosts.len(), 2 * SYSTEMS, "{results:?}");
    for pid in admins.iter().chain(&hosts) {
        assert!(wait_for_exit(*pid, T), "{pid} outlived its system");
    }
}

#[test]
fn a_killed_actor_is_restarted_and_answers_from_its_new_process() {
    let system = TestSystem::own(restart_at_once(3));
    let probe = system.create_actor::<Probe>().unwrap();
    let first = describe(&system, probe).pid;

    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    assert!(wait_for_exit(first, T), "the killed host {first} did not die");

    let second = describe(&system, probe);
    assert_ne!(second.pid, first, "the answer came from the new process");
    assert!(second.argv0.starts_with("greenroom-host "), "{second:?}");
    let info = system.actor_info(probe).unwrap();
    assert_eq!((info.incarnation, info.pid), (2, Some(second.pid)));
}

/// Set (to a runtime base) for the inner test run by
/// [`no_process_outlives_a_test_binary_that_exits_with_a_live_system`].
const INNER_BASE_ENV: &str = "GREENROOM_EXAMPLES_INNER_BASE";

#[test]
#[ignore = "run as a child process by no_process_outlives_a_test_binary_that_exits_with_a_live_system"]
fn inner_exits_with_a_live_system() {
    let Some(base) = std::env::var_os(INNER_BASE_ENV) else {
        return;
    };
    let system = ActorSystem::start_with(SystemConfig::default().runtime_base(base)).unwrap();
    let hosts: Vec<u32> = (0..2)
        .map(|_| describe(&system, system.create_actor::<Probe>().unwrap()).pid)
        .collect();
    println!("pids {} {} {}", system.admin_pid().unwrap(), hosts[0], hosts[1]);
    // The test binary ends without shutting its system down.
    std::process::exit(0);
}

#[test]
fn no_process_outlives_a_test_binary_that_exits_with_a_live_system() {
    let base = tempfile::Builder::new().prefix("grx").tempdir_in("/tmp").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "inner_exits_with_a_live_system", "--ignored", "--nocapture"])
        .env(INNER_BASE_ENV, base.path())
        .env_remove("GREENROOM_ROLE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pids "))
        .unwrap_or_else(|| panic!("no pids in {stdout}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{stdout}");
    for pid in &pids {
        if !wait_for_exit(*pid, T) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            panic!("{pid} outlived the test binary that started its system");
        }
    }
    assert!(pids.iter().all(|pid| !is_alive(*pid)));
    let left: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
