//! The CLI's errors and their exit codes.

use ccws::archive::ArchiverError;
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
    Archive(#[from] ArchiverError),
    /// A workspace operation failed.
    #[error("{0}")]
    Workspace(#[from] WorkspaceError),
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// Writing the results to stdout failed (not for a closed stdout,
    /// which only ends the output).
    #[error("writing to stdout: {0}")]
    Output(std::io::Error),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

/// Whether an archive failure was the store's: the bytes stopped coming
/// (a transport failure, a lying Content-Length), not a bad archive.
fn from_the_store(e: &ArchiverError) -> bool {
    e.is_callers_stream()
}

impl CliError {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Settings(_) => 3,
            CliError::Store(e) if e.is_credentials() => 3,
            CliError::Store(_) => 4,
            CliError::Archive(e) if from_the_store(e) => 4,
            CliError::Archive(_) => 5,
            CliError::Workspace(e) => match e {
                WorkspaceError::Archive { source, .. } if from_the_store(source) => 4,
                WorkspaceError::Store { source, .. } if source.is_credentials() => 3,
                WorkspaceError::InvalidId { .. } | WorkspaceError::TempBase { .. } => 3,
                WorkspaceError::Store { .. } | WorkspaceError::TooManyConflicts { .. } => 4,
                WorkspaceError::Archive { .. } => 5,
                WorkspaceError::Unsaved { .. } => 6,
                _ => 1,
            },
            CliError::Usage(_) => 2,
            CliError::Output(_) | CliError::Other(_) => 1,
        }
    }

    /// What kind of failure this is, for programs (`--json` errors): one
    /// snake_case word or two, stable across releases.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Settings(_) => "config",
            CliError::Store(e) if e.is_credentials() => "credentials",
            CliError::Store(_) => "store",
            CliError::Archive(e) if from_the_store(e) => "store",
            CliError::Archive(_) => "archive",
            CliError::Workspace(e) => match e {
                WorkspaceError::Archive { source, .. } if from_the_store(source) => "store",
                WorkspaceError::Store { source, .. } if source.is_credentials() => "credentials",
                WorkspaceError::InvalidId { .. } => "invalid_id",
                WorkspaceError::TempBase { .. } => "temp_dir",
                WorkspaceError::SessionBusy { .. } => "session_busy",
                WorkspaceError::NoSession { .. } => "no_session",
                WorkspaceError::WrongWorkspace { .. } => "wrong_workspace",
                WorkspaceError::Store { .. } => "store",
                WorkspaceError::Archive { .. } => "archive",
                WorkspaceError::Io { .. } => "io",
                WorkspaceError::TooManyConflicts { .. } => "conflicts",
                WorkspaceError::UnusableSession { .. } => "unusable_session",
                WorkspaceError::Unsaved { .. } => "unsaved",
            },
            CliError::Usage(_) => "usage",
            CliError::Output(_) => "output",
            CliError::Other(_) => "error",
        }
    }
}
