//! The `greenroom` command: run actor systems as long-lived services, look inside them, and
//! break them on purpose.
//!
//! ```text
//! greenroom start --host-bin PATH [--name NAME] [--capability KEY=VALUE]... [--log FILE] [--log-level FILTER] [--foreground]
//!                 [--convention-name NAME --listen ADDR --secret-file FILE [--advertise ADDR] [--convention LEADER_ADDR] [--key-file FILE]]
//! greenroom status [NAME] [--json] [--all] [--convention]
//! greenroom kill ADDRESS|GLOBAL_NAME [--signal KILL] [--system NAME]
//! greenroom stop [NAME]
//! greenroom list [--json]
//! greenroom logs [NAME] [-f]
//! greenroom keygen FILE
//! ```
//!
//! `NAME` defaults to `default`. A named system lives in `$XDG_RUNTIME_DIR/greenroom/n-NAME`
//! (or `/tmp/greenroom-<uid>/n-NAME`), and a program joins it with
//! `ActorSystem::connect("NAME")`.
//!
//! ## Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the command failed (an actor not found, a signal refused, the admin did not answer, ...) |
//! | 2 | usage error: bad arguments (printed by the argument parser) |
//! | 3 | no actor system of that name is running |
//! | 4 | `start`: a system of that name is already running |
//!
//! Errors are one line on stderr saying what to do next.
//!
//! No command waits on a hung admin: one that is there but has not accepted the command
//! within 4 s (stopped with `SIGSTOP`, hung, swamped) fails it with exit code 1 and
//! `the admin (pid N) is not answering`; `list` shows it as not answering, and `logs` still
//! prints its log.

mod cmd;
mod error;
pub mod json;

use clap::{Parser, Subcommand};

pub use cmd::start::Start;
pub use error::CliError;

/// Run Greenroom actor systems as services, inspect them, and inject faults.
#[derive(Debug, Parser)]
#[command(name = "greenroom", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The name used when none is given.
pub const DEFAULT_NAME: &str = "default";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an admin for a host binary (detached unless --foreground).
    Start(Box<Start>),
    /// Show the supervision tree: address, type, global name, pid, state, restarts, queued
    /// messages, uptime, memory.
    Status {
        /// The system's name.
        #[arg(default_value = DEFAULT_NAME)]
        name: String,
        /// Print JSON (the format is documented in `greenroom_cli::json`).
        #[arg(long)]
        json: bool,
        /// Include actors that are gone.
        #[arg(long)]
        all: bool,
        /// Show the convention's members instead of the actors.
        #[arg(long)]
        convention: bool,
    },
    /// Send a signal to an actor's host process: its supervisor restarts it by its policy.
    Kill {
        /// The actor: an address (`@3` or `3`) or a global name.
        target: String,
        /// The signal, by name (`KILL`, `SIGTERM`, `SEGV`, ...) or number.
        #[arg(long, default_value = "KILL")]
        signal: String,
        /// The system's name.
        #[arg(long = "system", default_value = DEFAULT_NAME)]
        system: String,
    },
    /// Stop a system gracefully: every actor is asked to exit, then the admin stops.
    Stop {
        /// The system's name.
        #[arg(default_value = DEFAULT_NAME)]
        name: String,
    },
    /// List this user's named systems.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a system's log (the admin's and every actor's records).
    Logs {
        /// The system's name.
        #[arg(default_value = DEFAULT_NAME)]
        name: String,
        /// Keep printing what is appended, until the system stops or you interrupt.
        #[arg(short, long)]
        follow: bool,
    },
    /// Write a new cluster secret for a convention to FILE (mode 0600; never overwrites).
    Keygen {
        /// Where to write it.
        file: std::path::PathBuf,
    },
}

/// Runs one command, printing its output on stdout.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Start(args) => cmd::start::run(*args),
        Command::Status {
            name,
            json,
            all,
            convention,
        } => cmd::status::run(&name, json, all, convention),
        Command::Kill { target, signal, system } => cmd::kill::run(&system, &target, &signal),
        Command::Stop { name } => cmd::stop::run(&name),
        Command::List { json } => cmd::list::run(json),
        Command::Logs { name, follow } => cmd::logs::run(&name, follow),
        Command::Keygen { file } => cmd::keygen::run(&file),
    }
}
