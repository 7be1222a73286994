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
        let described = connect(&name).ok().and_then(|s| s.describe(false).ok());
        listed.push(match described {
            Some(d) => Listed {
                name,
                running: true,
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
            None => Listed {
                name,
                running: false,
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
