//! The JSON printed by `greenroom status --json` and `greenroom list --json`: a stable format,
//! independent of the wire types (fields are only ever added).
//!
//! `status --json`:
//!
//! ```json
//! {
//!   "name": "demo",
//!   "admin_pid": 4242,
//!   "runtime_dir": "/run/user/1000/greenroom/n-demo",
//!   "host_executable": "/home/me/app/target/debug/demo_host",
//!   "log_file": "/run/user/1000/greenroom/demo.log",
//!   "uptime_s": 12.5,
//!   "actors": [
//!     {
//!       "address": "@2",
//!       "type": "demo::Counter",
//!       "global_name": "counter",
//!       "parent": null,
//!       "state": "running",
//!       "exit_cause": null,
//!       "pid": 4243,
//!       "incarnation": 2,
//!       "restarts": 1,
//!       "queued": 0,
//!       "uptime_s": 3.1,
//!       "rss_kib": 2944,
//!       "troupe": null
//!     }
//!   ]
//! }
//! ```
//!
//! A member of a convention also has `"convention": {"name", "me", "leader", "members":
//! [{"address", "incarnation", "capabilities": [names], "actors"}]}` (`null` otherwise).
//!
//! A troupe's manager has `"troupe": {"workers": 2, "busy": 1, "max_workers": 3}` (its
//! workers are listed as its children), and its `queued` counts the messages waiting for a
//! free worker.
//!
//! `state` is one of `starting`, `running`, `exiting`, `restarting`, `gone`, `unknown`;
//! `exit_cause` says why a `gone` actor ended. `pid`, `queued`, `uptime_s` and `rss_kib` are
//! `null` when the actor has no process. `list --json` is an array of
//! `{"name", "running", "admin_pid", "actors", "uptime_s", "runtime_dir"}`.

use greenroom::{ActorRow, ActorState, SystemDescription};
use serde::Serialize;

/// `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: Option<String>,
    pub admin_pid: u32,
    pub runtime_dir: String,
    pub host_executable: String,
    pub log_file: Option<String>,
    pub uptime_s: f64,
    pub actors: Vec<Actor>,
    /// The convention this system is a member of, if any.
    pub convention: Option<Convention>,
}

/// A member system's view of its convention, in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct Convention {
    pub name: String,
    /// This admin's advertised address.
    pub me: String,
    /// This admin's static key fingerprint (kept across restarts with `--key-file`).
    pub key: String,
    /// The leader's address (`null`: this admin leads).
    pub leader: Option<String>,
    /// The other members believed alive: address and incarnation (start time, ms).
    pub members: Vec<Member>,
    /// The pid of this admin's gateway process (`null` while it is being restarted).
    pub gateway_pid: Option<u32>,
    /// How many times the gateway was started again after it died.
    pub gateway_restarts: u64,
}

/// One member of a [`Convention`].
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub address: String,
    pub incarnation: u64,
    /// The names of its capabilities, as it last told this member.
    pub capabilities: Vec<String>,
    /// How many actors it runs, as it last told this member.
    pub actors: u64,
    /// Its static key fingerprint, as its link proved it (empty until it has spoken).
    pub key: String,
    /// How long ago it last told this member its capabilities, in seconds (at least every
    /// 2 s while it is alive); `null` if not yet.
    pub last_seen_s: Option<f64>,
}

/// One actor of [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    pub address: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub global_name: Option<String>,
    pub parent: Option<String>,
    pub state: &'static str,
    pub exit_cause: Option<String>,
    pub pid: Option<u32>,
    pub incarnation: u32,
    pub restarts: u32,
    pub queued: Option<u64>,
    pub uptime_s: Option<f64>,
    pub rss_kib: Option<u64>,
    pub troupe: Option<Troupe>,
}

/// A troupe manager's load, in [`Actor`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Troupe {
    pub workers: u32,
    pub busy: u32,
    pub max_workers: u32,
}

/// One entry of `list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub name: String,
    pub running: bool,
    /// `false` for a running admin that did not answer in time (stopped or hung).
    pub answering: bool,
    pub admin_pid: Option<u32>,
    pub actors: Option<usize>,
    pub uptime_s: Option<f64>,
    pub runtime_dir: String,
}

impl Status {
    /// The JSON view of what the admin said, with memory read from `/proc` now.
    pub fn from_description(d: &SystemDescription, now_unix_ms: u64) -> Status {
        Status {
            name: d.name.clone(),
            admin_pid: d.admin_pid,
            runtime_dir: d.runtime_dir.clone(),
            host_executable: d.host_executable.clone(),
            log_file: d.log_file.clone(),
            uptime_s: seconds_between(d.started_unix_ms, now_unix_ms),
            actors: d.actors.iter().map(|a| Actor::from_row(a, now_unix_ms)).collect(),
            convention: d.convention.as_ref().map(|c| Convention {
                name: c.name.clone(),
                me: c.me.address.clone(),
                key: c.me.key.clone(),
                leader: c.leader.clone(),
                members: c
                    .members
                    .iter()
                    .map(|m| Member {
                        address: m.address.clone(),
                        incarnation: m.incarnation,
                        capabilities: m.capabilities.keys().map(str::to_owned).collect(),
                        actors: m.load,
                        key: m.key.clone(),
                        last_seen_s: m.last_seen_ms.map(|ms| ms as f64 / 1000.0),
                    })
                    .collect(),
                gateway_pid: c.gateway_pid,
                gateway_restarts: c.gateway_restarts,
            }),
        }
    }
}

impl Actor {
    fn from_row(a: &ActorRow, now_unix_ms: u64) -> Actor {
        let (state, exit_cause) = match &a.state {
            ActorState::Starting => ("starting", None),
            ActorState::Running => ("running", None),
            ActorState::Exiting => ("exiting", None),
            ActorState::Restarting => ("restarting", None),
            ActorState::Gone(cause) => ("gone", Some(cause.to_string())),
            ActorState::Unknown => ("unknown", None),
        };
        Actor {
            address: a.address.to_string(),
            type_name: a.type_name.clone(),
            global_name: a.global_name.clone(),
            parent: a.parent.map(|p| p.to_string()),
            state,
            exit_cause,
            pid: a.pid,
            incarnation: a.incarnation,
            restarts: a.incarnation.saturating_sub(1),
            queued: a.queued,
            uptime_s: a.started_unix_ms.map(|s| seconds_between(s, now_unix_ms)),
            rss_kib: a.pid.and_then(rss_kib),
            troupe: a.troupe.map(|t| Troupe {
                workers: t.workers,
                busy: t.busy,
                max_workers: t.max_workers,
            }),
        }
    }
}

fn seconds_between(from_ms: u64, to_ms: u64) -> f64 {
    to_ms.saturating_sub(from_ms) as f64 / 1000.0
}

/// A process's resident memory from `/proc/<pid>/status` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
