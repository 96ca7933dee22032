//! Command-line arguments.

use std::path::PathBuf;

use ccws::config::{self, SettingsError};
use clap::{Args, Parser, Subcommand, ValueEnum};

use super::logging::LogFormat;

const AFTER_HELP: &str = "\
Storage: with no bucket configured (--bucket / CCWS_BUCKET), ccws keeps objects in a
local directory store (CCWS_LOCAL_STORE, default ~/.local/share/ccws/store), so a whole
turn works with no server. With a bucket, credentials come from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or AWS_PROFILE (~/.aws/credentials); the
endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL; the region from AWS_REGION.
Secrets are never accepted as flags.

Exit codes: 0 success; 1 error; 2 usage error; 3 configuration error; 4 store error;
5 archive error; 6 state could not be saved (kept on disk); 75 uploads still queued in
the outbox (flush, teardown, run --strict). `ccws run` exits with the agent's own status
(128+N if killed by signal N); --report FILE gets its report as JSON.";

/// ccws keeps an AI coding agent's per-session home directory alive between
/// turns, in S3 (or a local directory store).
#[derive(Debug, Parser)]
#[command(name = "ccws", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print results as one JSON document on stdout, and errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// How log lines on stderr look: text (coloured only on a terminal), or
    /// json (one object per line) [env: CCWS_LOG_FORMAT] [default: text].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// S3 bucket [env: CCWS_BUCKET]; without one (or an empty one), the
    /// local store is used.
    #[arg(long, global = true)]
    pub bucket: Option<String>,
    /// Key prefix for every object, `get` and `put` included (e.g.
    /// `team-a/`) [env: CCWS_PREFIX].
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    /// S3 endpoint URL (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS).
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS profile (default: AWS_PROFILE, then `default`).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Path-style addressing (true for MinIO-like servers; default: true with a custom endpoint).
    #[arg(long, global = true, value_name = "BOOL")]
    pub path_style: Option<bool>,
    /// Server-side encryption of every object written: AES256 or aws:kms
    /// [env: CCWS_SSE] [default: the bucket's].
    #[arg(long, global = true, value_name = "AES256|aws:kms")]
    pub sse: Option<String>,
    /// The KMS key (id or ARN) for `--sse aws:kms` [env: CCWS_SSE_KMS_KEY_ID]
    /// [default: the account's aws/s3 key].
    #[arg(long, global = true, value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,
    /// Storage class of every object written, e.g. STANDARD_IA [env:
    /// CCWS_STORAGE_CLASS] [default: the bucket's].
    #[arg(long, global = true, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// The local store directory, used when no bucket is set [env:
    /// CCWS_LOCAL_STORE] [default: <state dir>/store].
    #[arg(long, global = true)]
    pub local_store: Option<PathBuf>,
    /// Parent of the per-session trees (`<dir>/cc-broker/sess_<id>`) [env:
    /// CCWS_TEMP_DIR] [default: the OS temp dir].
    #[arg(long, global = true)]
    pub temp_dir: Option<PathBuf>,
    /// ccws's durable state on this machine (the outbox) [env:
    /// CCWS_STATE_DIR] [default: $XDG_DATA_HOME/ccws or ~/.local/share/ccws].
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Days after which the home's accumulating directories (shell-snapshots/,
    /// paste-cache/) drop an entry when a session publishes it, as Claude
    /// Code's own cleanupPeriodDays; 0 keeps them regardless of age (at most
    /// 1000 entries each stay either way) [env: CCWS_CLEANUP_DAYS] [default: 30].
    #[arg(long, global = true, value_name = "DAYS")]
    pub cleanup_days: Option<u64>,
}

// The CCWS_* variables are read here, not by clap: clap counts an option
// set from the environment as given on the command line, and then shows it
// in the usage line of every error as if it were required. Set but empty
// means unset.
impl Global {
    fn var(&self, name: &str) -> Option<String> {
        config::process_env().remove(name).filter(|v| !v.is_empty())
    }

    /// `--prefix`, else `CCWS_PREFIX`, else none.
    pub fn prefix(&self) -> String {
        self.prefix
            .clone()
            .or_else(|| self.var("CCWS_PREFIX"))
            .unwrap_or_default()
    }

    /// `--temp-dir`, else `CCWS_TEMP_DIR`.
    pub fn temp_dir(&self) -> Option<PathBuf> {
        self.temp_dir
            .clone()
            .or_else(|| self.var("CCWS_TEMP_DIR").map(PathBuf::from))
    }

    /// `--state-dir`, else `CCWS_STATE_DIR`, else the default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| config::default_state_dir(&config::process_env()))
    }

    /// `--cleanup-days`, else `CCWS_CLEANUP_DAYS`, else 30.
    pub fn cleanup_days(&self) -> Result<u64, SettingsError> {
        match (self.cleanup_days, self.var("CCWS_CLEANUP_DAYS")) {
            (Some(d), _) => Ok(d),
            (None, Some(v)) => v.trim().parse().map_err(|_| SettingsError::BadValue {
                name: "CCWS_CLEANUP_DAYS".into(),
                value: v,
                reason: "expected a whole number of days".into(),
            }),
            (None, None) => Ok(30),
        }
    }

    /// `--log-format`, else `CCWS_LOG_FORMAT`, else text.
    pub fn log_format(&self) -> Result<LogFormat, SettingsError> {
        match (self.log_format, self.var("CCWS_LOG_FORMAT")) {
            (Some(f), _) => Ok(f),
            (None, Some(v)) => {
                LogFormat::from_str(v.trim(), true).map_err(|_| SettingsError::BadValue {
                    name: "CCWS_LOG_FORMAT".into(),
                    value: v,
                    reason: "expected text or json".into(),
                })
            }
            (None, None) => Ok(LogFormat::Text),
        }
    }
}

/// The session a command is about.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Workspace id ([A-Za-z0-9._-], 1-128 chars).
    #[arg(short, long)]
    pub workspace: String,
    /// Session id ([A-Za-z0-9._-], 1-128 chars).
    #[arg(short, long)]
    pub session: String,
}

/// How a command lists the store.
#[derive(Debug, Args)]
pub struct ListingArgs {
    /// Objects per listing request (1-1000).
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one agent turn: setup, run CMD inside the workspace, teardown.
    ///
    /// CMD runs with CLAUDE_CONFIG_DIR (and CCWS_SESSION_DIR, CCWS_PROJECT_DIR,
    /// CCWS_MEMORY_DIR, CCWS_TRANSCRIPT) set and the project directory as its
    /// working directory. SIGINT and SIGTERM are forwarded to it; teardown
    /// runs however it ends, and ccws exits with its status. The variables
    /// ccws takes its AWS credentials from are removed from CMD's
    /// environment (see --pass-aws-env), and ccws marks itself not dumpable
    /// (Linux), so that CMD cannot read its /proc/<pid>/environ or memory.
    ///
    /// Example: ccws run -w acme -s s-42 -- claude -p "summarise the repo"
    Run {
        #[command(flatten)]
        session: SessionArgs,
        /// Pass ccws's AWS credential variables on to CMD (for agents that use AWS themselves).
        ///
        /// By default CMD runs without AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
        /// AWS_SESSION_TOKEN, AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE and
        /// AWS_CONFIG_FILE: the store's credentials and where they are read
        /// from. This only keeps ccws from handing them over; it is no
        /// sandbox: an agent running as the same user can still read
        /// ~/.aws/credentials and ~/.aws/config, and the broker's
        /// environment; only running it as another user keeps them from it.
        #[arg(long)]
        pass_aws_env: bool,
        /// Run CMD as this user (name or uid), with its primary group and no
        /// other groups: the only real isolation of the agent from ccws's
        /// credentials and the broker's files. Needs root. The session tree
        /// is handed to that user for the turn.
        #[arg(long, value_name = "USER")]
        agent_user: Option<String>,
        /// Write the turn's report to FILE as JSON, whatever happens:
        /// setup's and teardown's reports, the agent's exit code, what ccws
        /// exits with, whether everything reached the store, and the error
        /// if any. Written whole (a temp file renamed into place), or
        /// straight into a FIFO or /dev/fd/N. Stdout stays the agent's.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Exit 75 when the agent succeeded but something is only queued
        /// in the outbox (not yet in the store), instead of 0.
        #[arg(long)]
        strict: bool,
        /// The command and its arguments.
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Set up a session and print its paths, for brokers that run the agent themselves.
    ///
    /// The session stays live while the owner process runs (default: the
    /// caller, ccws's parent); if the owner dies, the next setup recovers it.
    Setup {
        #[command(flatten)]
        session: SessionArgs,
        /// The process that owns the session (default: ccws's parent).
        #[arg(long)]
        owner_pid: Option<u32>,
    },
    /// Upload a session's state and remove its tree (failed uploads are queued).
    Teardown {
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Deliver uploads queued in the outbox.
    Flush {
        /// Only this workspace's entries.
        #[arg(short, long)]
        workspace: Option<String>,
    },
    /// List the workspaces in the store, or one workspace's objects and sessions.
    ///
    /// Without WORKSPACE: each workspace with its number of sessions,
    /// objects, bytes and newest last-modified time. With it: the
    /// workspace's own objects (the shared home and what lies beside it)
    /// and each session's objects added up.
    Ls {
        /// The workspace to show.
        workspace: Option<String>,
        #[command(flatten)]
        listing: ListingArgs,
    },
    /// Delete a session's objects, or a whole workspace's, from the store.
    ///
    /// Asks first on a terminal; elsewhere --yes is needed. A session's
    /// objects are its transcript (sessions/<S>.jsonl) and everything under
    /// sessions/<S>/; a workspace's, everything under workspaces/<W>/.
    /// Uploads waiting in this machine's outbox are not touched (a note
    /// says so): a later flush writes them again; so does the teardown of
    /// a session still running somewhere.
    Rm {
        /// Workspace id.
        #[arg(short, long)]
        workspace: String,
        /// Only this session's objects.
        #[arg(short, long)]
        session: Option<String>,
        /// Do not ask.
        #[arg(short, long)]
        yes: bool,
        #[command(flatten)]
        listing: ListingArgs,
    },
    /// Delete the sessions no one has written to for a while.
    ///
    /// A session's age is that of its newest object. Sessions with uploads
    /// waiting in this machine's outbox are kept, and so is one written to
    /// while gc runs. The shared homes stay (their accumulating directories
    /// are pruned whenever a session publishes a home; see --cleanup-days).
    Gc {
        /// Delete sessions untouched for this long: 30d, 12h, 90m, 2w, 1d12h.
        #[arg(long, value_name = "AGE", value_parser = super::ops::parse_age)]
        older_than: std::time::Duration,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Only this workspace's sessions.
        #[arg(short, long)]
        workspace: Option<String>,
        #[command(flatten)]
        listing: ListingArgs,
    },
    /// Show the uploads waiting in this machine's outbox.
    ///
    /// Each with its kind (transcript, state, home), key, size, age and the
    /// error its last attempt met. `ccws flush` delivers them.
    Outbox {
        /// Only this workspace's entries.
        #[arg(short, long)]
        workspace: Option<String>,
    },
    /// Download one object to a file (`-` for stdout).
    Get {
        /// Object key.
        key: String,
        /// Destination file, or `-`.
        dest: PathBuf,
    },
    /// Upload one file as an object.
    Put {
        /// Source file.
        src: PathBuf,
        /// Object key.
        key: String,
        /// Only if the object's current ETag is this.
        #[arg(long, conflicts_with = "if_none_match")]
        if_match: Option<String>,
        /// Only if the object does not exist yet.
        #[arg(long)]
        if_none_match: bool,
    },
    /// Pack a directory into a tar.gz through the sandboxed component.
    Pack {
        /// Directory to pack.
        dir: PathBuf,
        /// Archive to write.
        archive: PathBuf,
        /// Glob of relative paths to leave out (repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// gzip level 0-9.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
        level: u32,
    },
    /// Unpack a tar.gz into a directory through the sandboxed component.
    Unpack {
        /// Archive to read.
        archive: PathBuf,
        /// Destination directory (created if missing).
        dir: PathBuf,
        /// Glob of relative paths to leave out (repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// Most entries.
        #[arg(long)]
        max_entries: Option<u64>,
        /// Most bytes of content in total.
        #[arg(long)]
        max_total_bytes: Option<u64>,
        /// Most bytes of one file.
        #[arg(long)]
        max_file_bytes: Option<u64>,
        /// Most times its own size the archive may inflate to (past 64 MiB);
        /// 0 turns the gzip-bomb guard off.
        #[arg(long, default_value_t = ccws::archive::Limits::MAX_INFLATE_RATIO)]
        max_ratio: u32,
    },
    /// Print a shell completion script.
    ///
    /// bash: `ccws completions bash > /etc/bash_completion.d/ccws`;
    /// zsh: into a directory of `$fpath` as `_ccws`;
    /// fish: `ccws completions fish > ~/.config/fish/completions/ccws.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into DIR.
    ///
    /// `ccws man | man -l -` shows it; `ccws man --dir /usr/local/share/man/man1`
    /// installs ccws.1 and ccws-<command>.1.
    Man {
        /// Write ccws.1 and a page per command into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write the embedded WASI component (.wasm) for use in other hosts.
    ///
    /// By default the `archiver` world, which imports the host's `filter`;
    /// with --plain the `archiver-plain` world, which imports only WASI (for
    /// the `wasmtime` CLI and other hosts with no code of their own).
    Component {
        /// Output file (`-` for stdout).
        out: PathBuf,
        /// Write the WASI-only `archiver-plain` component.
        #[arg(long)]
        plain: bool,
    },
}
