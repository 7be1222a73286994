//! A test binary that does NOT invoke `greenroom_host::test_support!`, starting process-base
//! systems with its own executable: every way of getting it wrong ends in an error that names
//! the macro, and no process re-run from it starts systems of its own.
//!
//! Some cases need a process started in a role: these tests run this binary again (one
//! ignored `inner_*` test, with `--exact`) with its output captured.

use std::process::Command;

use greenroom::{process_role::Role, ActorSystem, Error, SystemConfig};
use greenroom_integration_tests::harness::children_of;

/// Set for an `inner_*` test run by its outer test: which one.
const INNER_ENV: &str = "GREENROOM_TEST_INNER";

/// The pids of this process's live children whose title is `greenroom-admin`.
fn admin_children() -> Vec<u32> {
    children_of(std::process::id())
        .into_iter()
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"greenroom-admin")))
        .collect()
}

/// Runs the ignored test `inner` of this binary in a child process with `role` (`None`: a
/// client); returns its exit status, stdout and stderr.
fn run_inner(inner: &str, role: Option<&str>) -> (std::process::ExitStatus, String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", inner, "--ignored", "--nocapture"])
        .env(INNER_ENV, inner);
    match role {
        Some(role) => cmd.env("GREENROOM_ROLE", role),
        None => cmd.env_remove("GREENROOM_ROLE"),
    };
    let out = cmd.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether this process runs `inner` for its outer test.
fn is_inner(inner: &str) -> bool {
    std::env::var(INNER_ENV).is_ok_and(|v| v == inner)
}

#[test]
fn starting_a_system_from_a_test_without_test_support_names_the_macro() {
    // This binary re-run as an admin by `inner_own_executable_as_host_executable` runs this
    // test too; an admin process starts no system (see `a_process_started_as_admin_...`).
    if Role::current() != Role::Client {
        return;
    }
    let err = ActorSystem::start().err().expect("the start is refused");
    assert!(matches!(err, Error::NoHostEntry(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("never called greenroom_host::init"), "{text}");
    assert!(text.contains("greenroom_host::test_support!(registry)"), "{text}");
    assert_eq!(admin_children(), Vec::<u32>::new(), "nothing is started");

    // The natural mistake: `init` called first thing in the test rather than in `main`.
    greenroom_host::init(greenroom_integration_tests::registry());
    let err = ActorSystem::start().err().expect("the start is refused");
    let text = err.to_string();
    assert!(
        text.contains(
            "greenroom_host::init was called on thread `starting_a_system_from_a_test_without_test_support_names_the_macro`"
        ),
        "{text}"
    );
    assert!(text.contains("greenroom_host::test_support!(registry)"), "{text}");
    assert_eq!(admin_children(), Vec::<u32>::new(), "nothing is started");
}

#[test]
#[ignore = "run as a child process by an_admin_that_runs_the_test_suite_instead_is_reported"]
fn inner_own_executable_as_host_executable() {
    if !is_inner("inner_own_executable_as_host_executable") {
        return;
    }
    let base = tempfile::Builder::new().prefix("gr").tempdir_in("/tmp").unwrap();
    let exe = std::env::current_exe().unwrap();
    let config = SystemConfig::default().host_executable(&exe).runtime_base(base.path());
    let err = ActorSystem::start_with(config).err().expect("the start fails");
    println!("error: {err}");
    match &err {
        Error::AdminExited { exe: named, .. } => assert_eq!(named, &exe),
        other => panic!("expected AdminExited, got {other:?}"),
    }
    assert!(
        err.to_string().contains("greenroom_host::test_support!(registry)"),
        "{err}"
    );
    assert_eq!(
        children_of(std::process::id()),
        Vec::<u32>::new(),
        "the admin was reaped"
    );
    assert!(
        std::fs::read_dir(base.path()).unwrap().next().is_none(),
        "nothing left in the base"
    );
}

#[test]
fn an_admin_that_runs_the_test_suite_instead_is_reported() {
    if Role::current() != Role::Client {
        return;
    }
    // SystemConfig::host_executable set to this test binary skips the check of the default
    // executable: the admin runs the suite (whose tests return at once in an admin) and exits.
    let (status, stdout, stderr) = run_inner("inner_own_executable_as_host_executable", None);
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(line.contains("exited before it answered (exit status: 0)"), "{stdout}");
}

#[test]
#[ignore = "run as a child process by init_on_a_test_thread_of_a_started_host_exits_with_the_fix"]
fn inner_init_on_a_test_thread() {
    if !is_inner("inner_init_on_a_test_thread") {
        return;
    }
    greenroom_host::init(greenroom_integration_tests::registry());
    unreachable!("init returned in a process started as a host");
}

#[test]
fn init_on_a_test_thread_of_a_started_host_exits_with_the_fix() {
    if Role::current() != Role::Client {
        return;
    }
    let (status, stdout, stderr) = run_inner("inner_init_on_a_test_thread", Some("host"));
    assert_eq!(status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("greenroom_host::init was reached on thread `inner_init_on_a_test_thread`"),
        "{stderr}"
    );
    assert!(stderr.contains("started as a Greenroom host"), "{stderr}");
    assert!(stderr.contains("greenroom_host::test_support!(registry)"), "{stderr}");
}

#[test]
#[ignore = "run as a child process by a_process_started_as_admin_starts_no_system_of_its_own"]
fn inner_start_in_an_admin() {
    if !is_inner("inner_start_in_an_admin") {
        return;
    }
    let err = ActorSystem::start().err().expect("an admin process starts no system");
    println!("error: {err}");
    assert!(matches!(err, Error::NotStartedByGreenroom(_)), "{err:?}");
    assert_eq!(children_of(std::process::id()), Vec::<u32>::new(), "nothing is started");
}

#[test]
fn a_process_started_as_admin_starts_no_system_of_its_own() {
    if Role::current() != Role::Client {
        return;
    }
    // A test binary without the macro, re-run as an admin, runs its tests: one that starts a
    // system must not start another admin (and so on, without end).
    let (status, stdout, stderr) = run_inner("inner_start_in_an_admin", Some("admin"));
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("error: ActorSystem::start called in an admin or host process"),
        "{stdout}"
    );
}
