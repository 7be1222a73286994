//! `greenroom start`: an admin of its own for a host binary, detached or in the foreground.
//!
//! The admin is the host binary run in the admin role, with no owner connection: it runs
//! until `greenroom stop`, a client's `stop_system`, or SIGTERM/SIGINT. Detached, it gets a
//! session of its own (so a closing terminal does not stop it) and its stderr — the system's
//! log — goes to the log file; `start` returns once the admin answers on its socket.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use greenroom::{admin::DetachedAdmin, runtime_dir, ActorSystem, Capabilities};

use super::{connect, system_dir};
use crate::{CliError, DEFAULT_NAME};

/// How long `start` waits for a new admin to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The arguments of `greenroom start`.
#[derive(Debug, clap::Args)]
pub struct Start {
    /// The host binary: it registers your actor types and calls `greenroom_host::serve`.
    #[arg(long = "host-bin", value_name = "PATH")]
    pub host_bin: PathBuf,
    /// The system's name, used by every other command and by `ActorSystem::connect`.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// A capability of the system: `KEY=VALUE`; VALUE is a `u64` if it is all digits, a
    /// `bool` if `true`/`false`, otherwise a `String`. Repeatable.
    #[arg(long = "capability", value_name = "KEY=VALUE")]
    pub capabilities: Vec<String>,
    /// The log file (appended to). Default: `NAME.log` beside the runtime directory.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The log filter (`GREENROOM_LOG` syntax, e.g. `info` or `warn,my_app=debug`).
    #[arg(long = "log-level", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Run the admin in this process, in the foreground (for systemd or containers); the
    /// log goes to stderr unless --log is given.
    #[arg(long)]
    pub foreground: bool,
    /// Join a convention of this name (several machines' systems joined); needs --listen and
    /// --secret-file.
    #[arg(long = "convention-name", value_name = "NAME", requires_all = ["listen", "secret_file"])]
    pub convention_name: Option<String>,
    /// Where this admin accepts links from other members (`HOST:PORT`).
    #[arg(long, value_name = "ADDR", requires = "convention_name")]
    pub listen: Option<std::net::SocketAddr>,
    /// Where the other members reach this admin (default: --listen): `IP:PORT`, or
    /// `NAME:PORT`, resolved once at start.
    #[arg(long, value_name = "ADDR", requires = "convention_name")]
    pub advertise: Option<String>,
    /// The convention leader's address (`IP:PORT`, or `NAME:PORT` resolved once at start);
    /// without it, this admin is the leader.
    #[arg(long = "convention", value_name = "LEADER_ADDR", requires = "convention_name")]
    pub leader: Option<String>,
    /// The convention's secret (`greenroom keygen FILE`), the same file on every member.
    #[arg(long = "secret-file", value_name = "FILE", requires = "convention_name")]
    pub secret_file: Option<PathBuf>,
    /// Where this admin keeps its static key, its identity to the other members: made there
    /// (mode 0600) at the first start, the same key after every restart. Without it, the
    /// key is new at each start.
    #[arg(long = "key-file", value_name = "FILE", requires = "convention_name")]
    pub key_file: Option<PathBuf>,
}

/// The convention settings, checked now (name, secret file) so that a bad one is a usage
/// error that says how to fix it, not an admin that fails in the background.
fn convention_of(args: &Start) -> Result<Option<greenroom::convention::ConventionConfig>, CliError> {
    let (Some(name), Some(listen), Some(secret_file)) = (&args.convention_name, args.listen, &args.secret_file) else {
        return Ok(None);
    };
    let secret_file = std::path::absolute(secret_file).map_err(|e| CliError::Invalid(format!("--secret-file: {e}")))?;
    let config = greenroom::convention::ConventionConfig {
        name: name.clone(),
        listen,
        advertise: args
            .advertise
            .as_deref()
            .map(|a| resolve("--advertise", a))
            .transpose()?,
        leader: args.leader.as_deref().map(|l| resolve("--convention", l)).transpose()?,
        secret_file,
        key_file: args
            .key_file
            .as_deref()
            .map(std::path::absolute)
            .transpose()
            .map_err(|e| CliError::Invalid(format!("--key-file: {e}")))?,
    };
    config.check().map_err(|e| CliError::Invalid(e.to_string()))?;
    Ok(Some(config))
}

/// `IP:PORT` as it is, `NAME:PORT` through the resolver (its first IPv4 address, else its
/// first): a container's or a pod's name works where its address is not known in advance.
fn resolve(flag: &str, addr: &str) -> Result<std::net::SocketAddr, CliError> {
    use std::net::ToSocketAddrs;
    let found: Vec<std::net::SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| CliError::Invalid(format!("{flag} {addr}: {e} (give IP:PORT or NAME:PORT)")))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| CliError::Invalid(format!("{flag} {addr}: the name resolves to no address")))
}

pub fn run(args: Start) -> Result<(), CliError> {
    let host_bin = std::fs::canonicalize(&args.host_bin)
        .map_err(|e| CliError::Invalid(format!("--host-bin {}: {e}", args.host_bin.display())))?;
    let capabilities = parse_capabilities(&args.capabilities)?;
    let convention = convention_of(&args)?;
    let dir = system_dir(&args.name)?;
    let base = runtime_dir::default_base();
    runtime_dir::create_base(&base)?;
    // One `start` of a name at a time, from the check through the admin answering: a second
    // one then finds the first running instead of removing its directory as stale.
    let _start_lock = lock_name(&base, &args.name)?;
    match connect(&args.name) {
        Ok(system) => {
            let pid = system.admin_pid().unwrap_or_default();
            return Err(CliError::AlreadyRunning { name: args.name, pid });
        }
        Err(CliError::NotRunning { .. }) => {}
        Err(other) => return Err(other),
    }
    if dir.exists() {
        // Nobody answers there: what is left of an admin that was killed.
        runtime_dir::remove(&dir);
    }
    let log_file = match (&args.log, args.foreground) {
        (Some(path), _) => Some(std::path::absolute(path).map_err(|e| CliError::Invalid(format!("--log: {e}")))?),
        (None, false) => Some(base.join(format!("{}.log", args.name))),
        (None, true) => None,
    };
    let admin = DetachedAdmin {
        host_executable: host_bin,
        name: args.name.clone(),
        runtime_dir: dir.clone(),
        capabilities,
        log_file: log_file.clone(),
        log_filter: args.log_level,
        convention,
    };
    let mut cmd = admin.command();
    if let Some(path) = &log_file {
        cmd.stderr(greenroom::logging::open_log_file(path)?);
    }
    if args.foreground {
        // Replaces this process: signals and exit status are the admin's own.
        let err = cmd.exec();
        return Err(CliError::Failed(format!(
            "cannot run {}: {err}",
            admin.host_executable.display()
        )));
    }
    cmd.stdout(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory; run in the child between
    // fork and exec so that the admin leaves this terminal's session.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::Failed(format!("cannot run {}: {e}", admin.host_executable.display())))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let system = loop {
        match ActorSystem::connect_dir(&dir) {
            Ok(system) => break system,
            // Not listening yet, or not answering yet (still starting on a loaded machine):
            // READY_TIMEOUT bounds the wait.
            Err(greenroom::Error::NoSuchSystem { .. } | greenroom::Error::AdminNotAnswering { .. }) => {}
            Err(e) => {
                // It answers, but not as it should (another protocol version, say): do not
                // leave it running unreachable.
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError::Failed(format!("the new admin was stopped: {e}")));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_file
                .as_ref()
                .map_or(String::new(), |p| format!("; see {}", p.display()));
            return Err(CliError::Failed(format!(
                "the admin exited at once ({status}): is {} a Greenroom host binary (calling greenroom_host::serve)?{log}",
                admin.host_executable.display()
            )));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CliError::Failed(format!(
                "the admin did not answer within {READY_TIMEOUT:?}; it was stopped"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let pid = system.admin_pid().unwrap_or(child.id());
    println!("started actor system {:?}", args.name);
    println!("  admin pid    {pid}");
    println!("  runtime dir  {}", dir.display());
    if let Some(path) = &log_file {
        println!("  log          {}", path.display());
    }
    Ok(())
}

/// Takes the lock file `n-NAME.lock` in `base` for as long as the returned value lives.
fn lock_name(base: &std::path::Path, name: &str) -> Result<nix::fcntl::Flock<std::fs::File>, CliError> {
    let path = base.join(format!("n-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CliError::Failed(format!("cannot open {}: {e}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| CliError::Failed(format!("cannot lock {}: {e}", path.display())))
}

/// `KEY=VALUE` pairs: a `u64` if all digits, a `bool` if `true`/`false`, else a `String`.
fn parse_capabilities(pairs: &[String]) -> Result<Capabilities, CliError> {
    let mut caps = Capabilities::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(CliError::Invalid(format!(
                "--capability {pair:?}: expected KEY=VALUE, e.g. --capability gpus=2"
            )));
        };
        let set = if let Ok(n) = value.parse::<u64>() {
            caps.set(key, &n)
        } else if let Ok(b) = value.parse::<bool>() {
            caps.set(key, &b)
        } else {
            caps.set(key, &value.to_owned())
        };
        set.map_err(|e| CliError::Invalid(format!("--capability {pair:?}: {e}")))?;
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_values_are_typed_by_their_text() {
        let caps = parse_capabilities(&["gpus=2".into(), "fast=true".into(), "site=lab 3".into()]).unwrap();
        assert_eq!(caps.get::<u64>("gpus"), Some(2));
        assert_eq!(caps.get::<bool>("fast"), Some(true));
        assert_eq!(caps.get::<String>("site").as_deref(), Some("lab 3"));
        assert!(parse_capabilities(&["novalue".into()]).is_err());
        assert!(parse_capabilities(&["=3".into()]).is_err());
    }

    #[test]
    fn convention_addresses_may_be_names_resolved_at_start() {
        assert_eq!(
            resolve("--convention", "127.0.0.2:7400").unwrap(),
            "127.0.0.2:7400".parse().unwrap()
        );
        let local = resolve("--convention", "localhost:7400").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 7400, "{local}");
        let bad = resolve("--advertise", "no port here").unwrap_err().to_string();
        assert!(bad.contains("--advertise no port here"), "{bad}");
    }
}
