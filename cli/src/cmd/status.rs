//! `greenroom status`: the supervision tree, as an indented tree or as JSON.

use std::collections::BTreeMap;

use super::{connect, human_duration};
use crate::{
    json::{self, Actor, Status},
    CliError,
};

pub fn run(name: &str, as_json: bool, all: bool, convention: bool) -> Result<(), CliError> {
    let system = connect(name)?;
    let description = system.describe(all)?;
    let status = Status::from_description(&description, json::now_unix_ms());
    if as_json {
        let text = if convention {
            serde_json::to_string_pretty(&status.convention)
        } else {
            serde_json::to_string_pretty(&status)
        };
        println!("{}", text.map_err(|e| CliError::Failed(e.to_string()))?);
    } else if convention {
        print!("{}", render_convention(name, &status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// `status --convention`: this member, then the others.
fn render_convention(name: &str, status: &Status) -> Result<String, CliError> {
    let Some(c) = &status.convention else {
        return Err(CliError::Failed(format!(
            "actor system {name:?} is not in a convention (start it with --convention-name, --listen and --secret-file)"
        )));
    };
    let mut out = format!(
        "convention {:?}: this member {} (key {}){}, {} other member{} alive\n",
        c.name,
        c.me,
        c.key,
        c.leader
            .as_ref()
            .map_or(" (the leader)".to_owned(), |l| format!(", leader {l}")),
        c.members.len(),
        if c.members.len() == 1 { "" } else { "s" }
    );
    out.push_str(&match c.gateway_pid {
        Some(pid) => format!("  gateway pid {pid}"),
        None => "  gateway restarting".to_owned(),
    });
    if c.gateway_restarts > 0 {
        out.push_str(&format!(
            ", restarted {} time{}",
            c.gateway_restarts,
            if c.gateway_restarts == 1 { "" } else { "s" }
        ));
    }
    out.push('\n');
    for m in &c.members {
        out.push_str(&format!(
            "  {}  incarnation {}  {} actor{}",
            m.address,
            m.incarnation,
            m.actors,
            if m.actors == 1 { "" } else { "s" }
        ));
        if let Some(seen) = m.last_seen_s {
            out.push_str(&format!("  seen {seen:.1}s ago"));
        }
        if !m.key.is_empty() {
            out.push_str(&format!("  key {}", m.key));
        }
        if !m.capabilities.is_empty() {
            out.push_str(&format!("  capabilities {}", m.capabilities.join(",")));
        }
        out.push('\n');
    }
    Ok(out)
}

/// The human view: a header, then each actor under its supervisor.
pub fn render(status: &Status) -> String {
    let mut out = format!(
        "actor system {:?}: admin pid {}, up {}, {} actor{}\n",
        status.name.as_deref().unwrap_or("(unnamed)"),
        status.admin_pid,
        human_duration(status.uptime_s),
        status.actors.len(),
        if status.actors.len() == 1 { "" } else { "s" }
    );
    let mut children: BTreeMap<Option<&str>, Vec<&Actor>> = BTreeMap::new();
    let shown: std::collections::BTreeSet<&str> = status.actors.iter().map(|a| a.address.as_str()).collect();
    for actor in &status.actors {
        // An actor whose supervisor is not shown (gone, with --all off) is listed at the top.
        let parent = actor.parent.as_deref().filter(|p| shown.contains(p));
        children.entry(parent).or_default().push(actor);
    }
    let mut stack: Vec<(&Actor, usize)> = children
        .get(&None)
        .map(|top| top.iter().rev().map(|a| (*a, 0)).collect())
        .unwrap_or_default();
    while let Some((actor, depth)) = stack.pop() {
        out.push_str(&"  ".repeat(depth + 1));
        out.push_str(&line(actor));
        out.push('\n');
        if let Some(kids) = children.get(&Some(actor.address.as_str())) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    out
}

fn line(a: &Actor) -> String {
    let mut s = format!("{} {}", a.address, shown_type(&a.type_name));
    if let Some(name) = &a.global_name {
        s.push_str(&format!(" \"{name}\""));
    }
    s.push_str(&format!("  {}", a.state));
    if let Some(cause) = &a.exit_cause {
        s.push_str(&format!(" ({cause})"));
    }
    if let Some(pid) = a.pid {
        s.push_str(&format!("  pid {pid}"));
    }
    s.push_str(&format!("  restarts {}", a.restarts));
    if let Some(t) = a.troupe {
        s.push_str(&format!("  workers {}/{} busy {}", t.workers, t.max_workers, t.busy));
    }
    if let Some(q) = a.queued {
        s.push_str(&format!("  queued {q}"));
    }
    if let Some(up) = a.uptime_s {
        s.push_str(&format!("  up {}", human_duration(up)));
    }
    if let Some(kib) = a.rss_kib {
        s.push_str(&format!("  rss {:.1} MiB", kib as f64 / 1024.0));
    }
    s
}

/// An actor type as status shows it: its last two path segments, and a troupe's manager as
/// `troupe of demo::Worker`.
fn shown_type(type_name: &str) -> String {
    match type_name
        .strip_prefix("greenroom::troupe::TroupeManager<")
        .and_then(|t| t.strip_suffix('>'))
    {
        Some(worker) => format!("troupe of {}", short_type(worker)),
        None => short_type(type_name).to_owned(),
    }
}

/// `demo::Counter` for `greenroom_examples::demo::Counter`: the last two path segments.
fn short_type(type_name: &str) -> &str {
    let mut cut = type_name.len();
    for _ in 0..2 {
        match type_name[..cut].rfind("::") {
            Some(i) => cut = i,
            None => return type_name,
        }
    }
    &type_name[cut + 2..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(address: &str, parent: Option<&str>) -> Actor {
        Actor {
            address: address.into(),
            type_name: "app::demo::Counter".into(),
            global_name: None,
            parent: parent.map(Into::into),
            state: "running",
            exit_cause: None,
            pid: Some(10),
            incarnation: 2,
            restarts: 1,
            queued: Some(0),
            uptime_s: Some(1.0),
            rss_kib: Some(2048),
            troupe: None,
        }
    }

    #[test]
    fn children_are_indented_under_their_supervisor() {
        let status = Status {
            name: Some("demo".into()),
            admin_pid: 1,
            runtime_dir: "/x".into(),
            host_executable: "/y".into(),
            log_file: None,
            uptime_s: 5.0,
            actors: vec![actor("@2", None), actor("@3", Some("@2")), actor("@4", None)],
            convention: None,
        };
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("actor system \"demo\": admin pid 1"), "{text}");
        assert!(
            lines[1].starts_with("  @2 demo::Counter  running  pid 10  restarts 1"),
            "{text}"
        );
        assert!(lines[2].starts_with("    @3 "), "{text}");
        assert!(lines[3].starts_with("  @4 "), "{text}");
        assert!(lines[1].ends_with("rss 2.0 MiB"), "{text}");
    }

    #[test]
    fn the_convention_view_lists_this_member_the_leader_and_the_others() {
        let mut status = Status {
            name: Some("lab".into()),
            admin_pid: 1,
            runtime_dir: "/x".into(),
            host_executable: "/y".into(),
            log_file: None,
            uptime_s: 5.0,
            actors: Vec::new(),
            convention: None,
        };
        let alone = render_convention("lab", &status).unwrap_err().to_string();
        assert!(alone.contains("not in a convention"), "{alone}");
        status.convention = Some(crate::json::Convention {
            name: "lab".into(),
            me: "10.0.0.2:7400".into(),
            key: "00112233aabbccdd".into(),
            leader: Some("10.0.0.1:7400".into()),
            members: vec![crate::json::Member {
                address: "10.0.0.1:7400".into(),
                incarnation: 42,
                capabilities: vec!["gpu".into(), "zone".into()],
                actors: 3,
                key: "8899aabbccddeeff".into(),
                last_seen_s: Some(0.4),
            }],
            gateway_pid: Some(4242),
            gateway_restarts: 1,
        });
        let text = render_convention("lab", &status).unwrap();
        assert_eq!(
            text,
            "convention \"lab\": this member 10.0.0.2:7400 (key 00112233aabbccdd), leader 10.0.0.1:7400, 1 other member alive\n  gateway pid 4242, restarted 1 time\n  10.0.0.1:7400  incarnation 42  3 actors  seen 0.4s ago  key 8899aabbccddeeff  capabilities gpu,zone\n"
        );
    }

    #[test]
    fn a_troupe_shows_its_workers_busy_count_and_queue() {
        let mut manager = actor("@2", None);
        manager.type_name = "greenroom::troupe::TroupeManager<app::demo::Worker>".into();
        manager.troupe = Some(crate::json::Troupe {
            workers: 2,
            busy: 2,
            max_workers: 4,
        });
        manager.queued = Some(7);
        let text = line(&manager);
        assert!(
            text.starts_with("@2 troupe of demo::Worker  running  pid 10  restarts 1  workers 2/4 busy 2  queued 7"),
            "{text}"
        );
    }
}
