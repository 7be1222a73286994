//! `greenroom list`: this user's named systems, running or left behind.

use greenroom::runtime_dir;

use super::{connect, human_duration, system_dir};
use crate::{
    json::{self, Listed},
    CliError,
};

pub fn run(as_json: bool) -> Result<(), CliError> {
    let now = json::now_unix_ms();
    let mut listed = Vec::new();
    for name in runtime_dir::named_systems(&runtime_dir::default_base()) {
        let dir = system_dir(&name)?.to_string_lossy().into_owned();
        let described = match connect(&name) {
            Ok(system) => system.describe(false).map_err(CliError::Runtime),
            Err(e) => Err(e),
        };
        listed.push(match described {
            Ok(d) => Listed {
                name,
                running: true,
                answering: true,
                admin_pid: Some(d.admin_pid),
                actors: Some(
                    d.actors
                        .iter()
                        .filter(|a| !matches!(a.state, greenroom::ActorState::Gone(_)))
                        .count(),
                ),
                uptime_s: Some(now.saturating_sub(d.started_unix_ms) as f64 / 1000.0),
                runtime_dir: dir,
            },
            // There, but silent: listed as such, not as a stale directory to reclaim.
            Err(CliError::Runtime(greenroom::Error::AdminNotAnswering { pid, .. })) => Listed {
                name,
                running: true,
                answering: false,
                admin_pid: pid,
                actors: None,
                uptime_s: None,
                runtime_dir: dir,
            },
            Err(_) => Listed {
                name,
                running: false,
                answering: false,
                admin_pid: None,
                actors: None,
                uptime_s: None,
                runtime_dir: dir,
            },
        });
    }
    if as_json {
        let text = serde_json::to_string_pretty(&listed).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    if listed.is_empty() {
        println!("no actor systems; start one with `greenroom start --host-bin PATH --name NAME`");
    }
    for l in &listed {
        match (l.admin_pid, l.actors, l.uptime_s) {
            _ if l.running && !l.answering => println!(
                "{}  not answering  admin pid {}  (stopped or hung)  {}",
                l.name,
                l.admin_pid.map_or("?".to_owned(), |p| p.to_string()),
                l.runtime_dir
            ),
            (Some(pid), Some(actors), Some(up)) => println!(
                "{}  running  admin pid {pid}  {actors} actors  up {}  {}",
                l.name,
                human_duration(up),
                l.runtime_dir
            ),
            _ => println!(
                "{}  not running (a stale directory; `greenroom start` reclaims it)  {}",
                l.name, l.runtime_dir
            ),
        }
    }
    Ok(())
}
