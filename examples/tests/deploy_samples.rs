//! The deployment samples in `examples/deploy/`, checked as far as CI can without Docker or
//! Kubernetes: the YAML parses and has the expected shape, the systemd unit has its
//! sections, and every `greenroom start` flag the samples use is one the CLI knows.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use yaml_rust2::{Yaml, YamlLoader};

fn sample(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(name: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&sample(name)).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// The long flags `greenroom start` accepts, from its help.
fn known_start_flags() -> BTreeSet<String> {
    let exe = std::env::current_exe().unwrap();
    let greenroom = exe.parent().and_then(|d| d.parent()).unwrap().join("greenroom");
    assert!(greenroom.exists(), "build the workspace first: {}", greenroom.display());
    let help = Command::new(greenroom).args(["start", "--help"]).output().unwrap();
    String::from_utf8_lossy(&help.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| f.split(['=', ' ', ',', '<']).next().unwrap_or("").to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

/// The long flags in a command line (`--flag`, `--flag=value`).
fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == '"')
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| f.split('=').next().unwrap_or("").to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

fn assert_known(flags: &BTreeSet<String>, known: &BTreeSet<String>, sample: &str) {
    let unknown: Vec<&String> = flags.difference(known).collect();
    assert!(
        unknown.is_empty(),
        "{sample} uses flags `greenroom start` does not know: {unknown:?}"
    );
}

#[test]
fn the_compose_file_parses_and_starts_a_leader_and_two_members() {
    let docs = yaml("docker-compose.yml");
    let services = &docs[0]["services"];
    let known = known_start_flags();
    for name in ["leader", "member-a", "member-b"] {
        let command: Vec<&str> = services[name]["command"]
            .as_vec()
            .unwrap_or_else(|| panic!("service {name} has a command list"))
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(command.first(), Some(&"start"), "{name}");
        let line = command.join(" ");
        assert!(
            line.contains("--foreground") && line.contains("--secret-file="),
            "{name}: {line}"
        );
        let volumes: Vec<&str> = services[name]["volumes"]
            .as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        let keeps = volumes.iter().find_map(|v| v.split_once(':')).map(|(_, at)| at);
        assert!(
            keeps.is_some_and(|at| line.contains(&format!("--key-file={at}/"))),
            "{name}: its static key on a volume of its own: {volumes:?}, {line}"
        );
        assert_eq!(
            line.contains("--convention="),
            name != "leader",
            "{name}: only members name a leader"
        );
        assert_known(&flags_in(&line), &known, "docker-compose.yml");
    }
    assert!(docs[0]["secrets"]["cluster_key"]["file"].as_str().is_some());
}

#[test]
fn the_kubernetes_manifest_parses_into_a_headless_service_and_a_stateful_set() {
    let docs = yaml("kubernetes.yaml");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Service", "StatefulSet"]);
    assert_eq!(docs[0]["spec"]["clusterIP"].as_str(), Some("None"), "headless");
    let container = &docs[1]["spec"]["template"]["spec"]["containers"][0];
    let script = container["args"][0].as_str().expect("a start script");
    assert!(script.contains("greenroom start --foreground"));
    assert_known(&flags_in(script), &known_start_flags(), "kubernetes.yaml");
    let volume = &docs[1]["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["secret"]["secretName"].as_str(), Some("greenroom-cluster-key"));
    // The static key lives on a claim of each pod's own, mounted where --key-file points.
    let claim = &docs[1]["spec"]["volumeClaimTemplates"][0];
    let claim_name = claim["metadata"]["name"].as_str().expect("a claim per pod");
    let mounts = container["volumeMounts"].as_vec().expect("volume mounts");
    let mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some(claim_name))
        .and_then(|m| m["mountPath"].as_str())
        .expect("the claim is mounted");
    assert!(script.contains(&format!("--key-file={mount}/")), "{script}");
    // Without this, the kubelet makes the kept key group-readable when it mounts the claim
    // again, and the admin refuses it after the first reschedule.
    let security = &docs[1]["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(security["fsGroupChangePolicy"].as_str(), Some("OnRootMismatch"));
}

#[test]
fn the_systemd_unit_has_its_sections_and_a_foreground_start() {
    let unit = sample("greenroom.service");
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(unit.lines().any(|l| l.trim() == section), "missing {section}");
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    assert!(
        exec.starts_with("/usr/local/bin/greenroom start --foreground"),
        "{exec}"
    );
    assert_known(&flags_in(exec), &known_start_flags(), "greenroom.service");
    assert!(
        unit.contains("StateDirectory=greenroom") && exec.contains("--key-file=/var/lib/greenroom/"),
        "the static key is kept in the unit's state directory"
    );
    for line in unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(
            line.starts_with('[') || line.contains('='),
            "not a unit-file line: {line}"
        );
    }
}
