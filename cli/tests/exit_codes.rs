//! The exit-code contract of the `greenroom` binary, for the cases that need no running
//! system (the walk-through in `integration-tests` covers the rest).

use std::process::{Command, Output};

fn greenroom(args: &[&str], base: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_greenroom"))
        .args(args)
        .env("XDG_RUNTIME_DIR", base)
        .output()
        .expect("run greenroom")
}

#[test]
fn each_failure_has_its_documented_exit_code_and_a_one_line_reason() {
    let base = tempfile::tempdir().unwrap();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let out = greenroom(&["status", "nothing-here"], base.path());
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out).trim(),
        "greenroom: no actor system named \"nothing-here\" is running; start one with `greenroom start --host-bin PATH --name nothing-here`"
    );

    let out = greenroom(&["frobnicate"], base.path());
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");

    let out = greenroom(&["status", "../escape"], base.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid actor system name"));

    let out = greenroom(&["kill", "@3", "--signal", "NOPE", "--system", "x"], base.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a signal name"));

    let out = greenroom(
        &["start", "--host-bin", "/nonexistent/host", "--name", "x"],
        base.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--host-bin /nonexistent/host"));

    // A binary that is not a Greenroom host: the admin cannot start, and `start` says so.
    let out = greenroom(&["start", "--host-bin", "/bin/true", "--name", "x"], base.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("Greenroom host binary"), "{}", stderr(&out));

    let out = greenroom(&["list"], base.path());
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn keygen_writes_an_owner_only_secret_once() {
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("cluster.key");
    let file_arg = file.to_str().unwrap();
    let out = greenroom(&["keygen", file_arg], base.path());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&file).unwrap();
    assert_eq!(secret.trim().len(), 64);
    for printed in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(printed).contains(secret.trim()),
            "the secret is never printed"
        );
    }
    let again = greenroom(&["keygen", file_arg], base.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("the file exists"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), secret, "not overwritten");
}

#[test]
fn a_convention_start_without_a_usable_secret_is_a_usage_error_with_the_fix() {
    let base = tempfile::tempdir().unwrap();
    let missing = base.path().join("none.key");
    let args = |secret: &str| {
        vec![
            "start",
            "--host-bin",
            "/bin/true",
            "--name",
            "x",
            "--convention-name",
            "lab",
            "--listen",
            "127.0.0.1:7000",
            "--secret-file",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([secret.to_owned()])
        .collect::<Vec<String>>()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        greenroom(&args, base.path())
    };
    let out = run(args(missing.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("greenroom keygen"));

    let out = greenroom(
        &["start", "--host-bin", "/bin/true", "--convention-name", "lab"],
        base.path(),
    );
    assert_eq!(out.status.code(), Some(2), "--listen and --secret-file are required");
}
