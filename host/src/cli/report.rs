//! `ccws run --report FILE`: the turn's report, written whatever happens,
//! and `--strict`'s exit code.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ccws::workspace::{SetupReport, TeardownReport};
use serde::Serialize;

use super::error::CliError;
use super::output::{self, say};

/// The exit code for "safely queued, not yet in the store".
pub const EXIT_QUEUED: u8 = 75;

/// What a turn did, gathered as it goes.
#[derive(Debug)]
pub struct RunRecord {
    workspace: String,
    session: String,
    /// Setup's report, once it succeeded.
    pub setup: Option<SetupReport>,
    /// The agent's exit status (127: it could not be started), once it ran.
    pub agent_exit_code: Option<u8>,
    /// Teardown's report, once it succeeded.
    pub teardown: Option<TeardownReport>,
    /// Teardown's failure after a failed agent (whose status ccws keeps).
    pub teardown_error: Option<CliError>,
}

/// An error in a report: what `--json` errors say on stderr.
#[derive(Debug, Serialize)]
struct ErrorDoc {
    kind: &'static str,
    exit_code: u8,
    message: String,
}

impl ErrorDoc {
    fn of(e: &CliError) -> ErrorDoc {
        ErrorDoc {
            kind: e.kind(),
            exit_code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// The report's document.
#[derive(Debug, Serialize)]
struct RunReport<'a> {
    workspace: &'a str,
    session: &'a str,
    /// What ccws exits with.
    exit_code: u8,
    /// The agent's exit status; null if it never ran.
    agent_exit_code: Option<u8>,
    /// Whether everything reached the store (nothing only queued, and
    /// teardown ran).
    delivered: bool,
    setup: Option<&'a SetupReport>,
    teardown: Option<&'a TeardownReport>,
    error: Option<ErrorDoc>,
}

impl RunRecord {
    /// Nothing done yet for `workspace`/`session`.
    pub fn new(workspace: &str, session: &str) -> Self {
        RunRecord {
            workspace: workspace.to_owned(),
            session: session.to_owned(),
            setup: None,
            agent_exit_code: None,
            teardown: None,
            teardown_error: None,
        }
    }

    /// The turn ended with `res`: apply `--strict`, write the report to
    /// `sink` (if any), and give the exit code (or the error) to exit with.
    /// A report that cannot be written turns a success into an error.
    pub fn finish(
        self,
        res: Result<u8, CliError>,
        strict: bool,
        sink: Option<ReportSink>,
    ) -> Result<u8, CliError> {
        let delivered = self.teardown.as_ref().is_some_and(|t| t.delivered());
        let res =
            match res {
                Ok(0) if strict && !delivered => {
                    say("ccws: --strict: the agent succeeded, but not everything reached the store \
                     (it waits in this machine's outbox): exit 75");
                    Ok(EXIT_QUEUED)
                }
                res => res,
            };
        let error = match &res {
            Err(e) => Some(ErrorDoc::of(e)),
            Ok(_) => self.teardown_error.as_ref().map(ErrorDoc::of),
        };
        let doc = RunReport {
            workspace: &self.workspace,
            session: &self.session,
            exit_code: match &res {
                Ok(c) => *c,
                Err(e) => e.exit_code(),
            },
            agent_exit_code: self.agent_exit_code,
            delivered,
            setup: self.setup.as_ref(),
            teardown: self.teardown.as_ref(),
            error,
        };
        if let Some(sink) = sink {
            let dest = sink.describe();
            if let Err(e) = sink.write(&output::json_line(&doc)) {
                let e = CliError::Other(format!("writing the report to {dest}: {e}"));
                return match res {
                    Ok(_) => Err(e),
                    Err(turn) => {
                        say(&format!("ccws: {e}"));
                        Err(turn)
                    }
                };
            }
        }
        res
    }
}

/// Where `--report` goes, opened before the turn starts.
#[derive(Debug)]
pub enum ReportSink {
    /// A regular file: written to a temp file beside it, then renamed.
    Atomic {
        /// The temp file.
        tmp: tempfile::NamedTempFile,
        /// The report's path.
        dest: PathBuf,
    },
    /// A FIFO, a character device or `/dev/fd/N`: written straight in.
    Direct {
        /// The open file.
        file: File,
        /// Its path.
        dest: PathBuf,
    },
}

impl ReportSink {
    /// Get ready to write the report to `path`.
    pub fn open(path: &Path) -> Result<ReportSink, CliError> {
        let err = |e: io::Error| CliError::Other(format!("--report {}: {e}", path.display()));
        match std::fs::metadata(path) {
            Ok(md) if md.is_dir() => Err(err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ))),
            // Where no temp file can go beside it (/dev/fd/N, /dev/stderr),
            // or not a file to replace: written straight in.
            Ok(md) if !md.is_file() || path.starts_with("/dev") => Ok(ReportSink::Direct {
                file: File::options().write(true).open(path).map_err(err)?,
                dest: path.to_owned(),
            }),
            _ => {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let tmp = tempfile::Builder::new()
                    .prefix(".ccws-report-")
                    .tempfile_in(dir)
                    .map_err(err)?;
                Ok(ReportSink::Atomic {
                    tmp,
                    dest: path.to_owned(),
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            ReportSink::Atomic { dest, .. } | ReportSink::Direct { dest, .. } => {
                dest.display().to_string()
            }
        }
    }

    /// Write `bytes` as the whole report.
    fn write(self, bytes: &[u8]) -> io::Result<()> {
        match self {
            ReportSink::Atomic { mut tmp, dest } => {
                tmp.write_all(bytes)?;
                tmp.as_file().sync_all()?;
                tmp.persist(&dest).map_err(|e| e.error)?;
                Ok(())
            }
            ReportSink::Direct { mut file, .. } => file.write_all(bytes),
        }
    }
}
