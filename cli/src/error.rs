//! The command line's one error type, and the exit code of each kind (see the crate docs).

use thiserror::Error;

/// Why a command failed. `Display` is the one line printed on stderr.
#[derive(Debug, Error)]
pub enum CliError {
    /// No admin answers under that name.
    #[error(
        "no actor system named {name:?} is running; start one with `greenroom start --host-bin PATH --name {name}`"
    )]
    NotRunning { name: String },

    /// `start` found the name taken.
    #[error("an actor system named {name:?} is already running (admin pid {pid}); stop it with `greenroom stop {name}` or choose another --name")]
    AlreadyRunning { name: String, pid: u32 },

    /// The command's arguments are well-formed but unusable.
    #[error("{0}")]
    Invalid(String),

    /// Anything else that went wrong, said plainly.
    #[error("{0}")]
    Failed(String),

    /// An error from the runtime.
    #[error(transparent)]
    Runtime(#[from] greenroom::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::NotRunning { .. } => 3,
            CliError::AlreadyRunning { .. } => 4,
            CliError::Invalid(_) => 2,
            CliError::Failed(_) | CliError::Runtime(_) => 1,
        }
    }
}
