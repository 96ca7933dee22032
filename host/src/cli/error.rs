//! The CLI's errors and their exit codes.

use ccws::archive::HostError;
use ccws::config::SettingsError;
use ccws::store::StoreError;
use ccws::workspace::WorkspaceError;

/// Anything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Configuration could not be resolved.
    #[error("configuration: {0}")]
    Settings(#[from] SettingsError),
    /// A store operation failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The archive sandbox failed.
    #[error("{0}")]
    Archive(#[from] HostError),
    /// A workspace operation failed.
    #[error("{0}")]
    Workspace(#[from] WorkspaceError),
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

/// Whether an archive failure was the store's: the bytes stopped coming
/// (a transport failure, a lying Content-Length), not a bad archive.
fn from_the_store(e: &HostError) -> bool {
    e.is_callers_stream()
}

impl CliError {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Settings(_) => 3,
            CliError::Store(_) => 4,
            CliError::Archive(e) if from_the_store(e) => 4,
            CliError::Archive(_) => 5,
            CliError::Workspace(e) => match e {
                WorkspaceError::Archive { source, .. } if from_the_store(source) => 4,
                WorkspaceError::InvalidId { .. } | WorkspaceError::TempBase { .. } => 3,
                WorkspaceError::Store { .. } | WorkspaceError::TooManyConflicts { .. } => 4,
                WorkspaceError::Archive { .. } => 5,
                WorkspaceError::Unsaved { .. } => 6,
                _ => 1,
            },
            CliError::Usage(_) => 2,
            CliError::Other(_) => 1,
        }
    }
}
