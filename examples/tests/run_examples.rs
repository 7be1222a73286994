//! The examples, run as a user runs them: the real binaries, their real output, and nothing
//! left behind afterwards.

use std::{fs, path::Path, process::Command};

/// Runs an example binary with a private runtime base; returns its stdout after checking
/// that it succeeded, logged nothing, and left no process, socket or directory behind.
fn run_example(exe: &str) -> String {
    run_example_with(exe, &[], true)
}

/// Like [`run_example`], with arguments; `quiet` requires an empty stderr.
fn run_example_with(exe: &str, args: &[&str], quiet: bool) -> String {
    run_example_logging(exe, args, |_| !quiet)
}

/// Like [`run_example_with`], requiring every line of stderr to be one `expected` accepts.
fn run_example_logging(exe: &str, args: &[&str], expected: impl Fn(&str) -> bool) -> String {
    let base = tempfile::Builder::new().prefix("grx").tempdir_in("/tmp").unwrap();
    let output = Command::new(exe)
        .args(args)
        .env("XDG_RUNTIME_DIR", base.path())
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{exe} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stderr.lines().all(expected), "{exe} logged:\n{stderr}");

    let systems = base.path().join("greenroom");
    let left: Vec<_> = fs::read_dir(&systems)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime directories left behind: {left:?}");
    let survivors = processes_running(Path::new(exe));
    assert!(survivors.is_empty(), "processes of {exe} still running: {survivors:?}");
    stdout
}

/// Pids of live processes whose executable is `exe`.
fn processes_running(exe: &Path) -> Vec<u32> {
    let exe = fs::canonicalize(exe).unwrap();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            !zombie && fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe)
        })
        .collect()
}

#[test]
fn hello_prints_hello_world() {
    assert_eq!(run_example(env!("CARGO_BIN_EXE_hello")), "Hello, World!\n");
}

/// hello_redux's last request goes to an actor that is gone: the message is a dead letter,
/// which its admin logs (the program registers no dead-letter handler).
fn run_hello_redux(args: &[&str]) -> String {
    let dead_letter = |line: &str| line.contains("dead letter") && line.contains("hello_redux::Hi");
    run_example_logging(env!("CARGO_BIN_EXE_hello_redux"), args, dead_letter)
}

#[test]
fn hello_redux_prints_twice_then_says_the_actor_is_gone() {
    let out = run_hello_redux(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "Hello, World!");
    assert_eq!(lines[1], "Hello, World!");
    assert!(lines[2].starts_with("No reply: actor @"), "{}", lines[2]);
    assert!(lines[2].contains("is gone (exited normally)"), "{}", lines[2]);
}

#[test]
fn word_count_answers_through_requests_between_actors_on_both_bases() {
    let expected = "12 lines, 131 words; most frequent: the 26, actor 6, a 5, is 5, and 4; 1 line(s) recounted\n";
    // Its counter's failure on one line is logged (and the line counted again).
    for args in [&[][..], &["--base", "simple"]] {
        assert_eq!(
            run_example_with(env!("CARGO_BIN_EXE_word_count"), args, false),
            expected,
            "{args:?}"
        );
    }
}

#[test]
fn crash_recovery_loses_nothing() {
    let out = run_example_with(env!("CARGO_BIN_EXE_crash_recovery"), &["--kills", "3"], false);
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("kills=3 restarts=3 lost=0 poisoned="), "{out}");
    assert!(last.contains(" restart_p50_ms="), "{last}");
}

#[test]
fn death_modes_restarts_after_every_fatal_mode() {
    let out = run_example_with(env!("CARGO_BIN_EXE_death_modes"), &["--trials", "2"], false);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{out}");
    for row in &rows[..4] {
        assert!(row.ends_with("2/2"), "every fatal mode restarts: {row}");
    }
    assert!(rows[4].ends_with("0/2"), "a caught panic does not restart: {}", rows[4]);
}

#[test]
fn hello_and_hello_redux_print_the_same_on_the_simple_base() {
    assert_eq!(
        run_example_with(env!("CARGO_BIN_EXE_hello"), &["--base", "simple"], true),
        "Hello, World!\n"
    );
    assert_eq!(run_hello_redux(&["--base", "simple"]), run_hello_redux(&[]));
}

#[test]
fn semi_deterministic_prints_the_same_on_both_bases() {
    let out = run_example_with(env!("CARGO_BIN_EXE_semi_deterministic"), &[], false);
    let (processes, simple): (Vec<&str>, Vec<&str>) = out
        .lines()
        .filter(|l| l.contains(": "))
        .partition(|l| l.trim_start().starts_with("processes:"));
    assert_eq!(processes.len(), 7, "{out}");
    let strip = |l: &&str| l.split_once(": ").map(|(_, rest)| rest.to_owned());
    assert_eq!(
        processes.iter().map(strip).collect::<Vec<_>>(),
        simple.iter().map(strip).collect::<Vec<_>>(),
        "{out}"
    );
    assert!(out.contains("failed   \"PANIC\": receive panicked"), "{out}");
    assert_eq!(out.lines().last(), Some("identical output on both bases"), "{out}");
}

#[test]
fn hello_runs_with_stderr_to_dev_null() {
    // A daemon's usual stderr: the admin's log sink must cope with a file epoll cannot watch.
    let base = tempfile::Builder::new().prefix("grx").tempdir_in("/tmp").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hello"))
        .env("XDG_RUNTIME_DIR", base.path())
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run hello");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello, World!\n");
}

#[test]
fn hello_distributed_places_world_on_the_member_that_has_it() {
    assert_eq!(
        run_example(env!("CARGO_BIN_EXE_hello_distributed")),
        "Hello, World!\nHello ran on alpha, World on beta, Punctuate on alpha\n"
    );
}
