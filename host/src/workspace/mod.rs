//! The per-turn workspace: Setup before the agent runs, Teardown after.
//!
//! Keeps the seed's semantics (paths, keys, "a flaky upload must not fail the
//! turn") and closes its gaps: nothing is lost when an upload fails (the
//! durable [`outbox`]), concurrent sessions of one workspace merge instead
//! of overwriting each other ([`merge`]), ids are validated before any I/O,
//! and an abandoned session is recovered by the next Setup.

pub mod ids;
mod journal;
mod jsonmerge;
pub mod layout;
pub mod manifest;
pub(crate) mod merge;
mod migrate;
pub mod outbox;
mod owned;
mod project_entry;
pub(crate) mod prune;
mod publish;
pub(crate) mod session;
mod setup;
mod state;
mod teardown;
mod transcript;
pub(crate) mod untrusted;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::archive::{Archiver, ArchiverError, PackOptions, UnpackOptions};
#[cfg(test)]
use crate::durable::lock_file;
use crate::durable::private_dir;
use crate::store::{Store, StoreError};

pub use jsonmerge::SharedBase;
pub use layout::{KeyOwner, Keys, Layout};
pub use merge::MergeReport;
pub use outbox::Outbox;
pub use prune::Cleanup;
pub use session::Owner;

/// The longest relative path in a home or a session's files: what a turn
/// packs beyond it is left out, and Setup refuses it, so that every path
/// stays well within PATH_MAX under any reasonable temp base.
pub const MAX_PATH_BYTES: u32 = 3072;

/// How workspaces are laid out and stored.
#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    /// Parent of `cc-broker/sess_<session>`; the OS temp dir when `None`
    /// (the seed's `TempDirBase`).
    pub temp_base: Option<PathBuf>,
    /// ccws's durable state on this machine (the outbox lives here).
    pub state_dir: PathBuf,
    /// Object keys.
    pub keys: Keys,
    /// How the home is packed.
    pub pack: PackOptions,
    /// How the home is unpacked (limits).
    pub unpack: UnpackOptions,
    /// How many times a conflicting home upload is merged and retried.
    pub merge_attempts: u32,
    /// What of the home's accumulating directories a publish keeps.
    pub cleanup: Cleanup,
}

impl WorkspaceConfig {
    /// Defaults, with durable state in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        WorkspaceConfig {
            temp_base: None,
            state_dir: state_dir.into(),
            keys: Keys::default(),
            pack: PackOptions::default(),
            unpack: UnpackOptions {
                limits: crate::archive::Limits {
                    // Room for the temp base before PATH_MAX (4096), so that
                    // every path of a home can be named on the host.
                    max_path_bytes: MAX_PATH_BYTES,
                    ..Default::default()
                },
                ..UnpackOptions::default()
            },
            merge_attempts: 5,
            cleanup: prune::Cleanup::default(),
        }
    }
}

/// Why a workspace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A workspace or session id is not acceptable.
    #[error("invalid {kind} id {id:?}: {reason}")]
    InvalidId {
        /// `workspace` or `session`.
        kind: &'static str,
        /// The id (escaped).
        id: String,
        /// Why.
        reason: String,
    },
    /// The temp base directory cannot be used.
    #[error("temp directory base {path}: {source} (set --temp-dir or CCWS_TEMP_DIR to a writable directory)")]
    TempBase {
        /// The base.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another live process already has this session set up here.
    #[error("session {session:?} is already set up at {} by live process {pid}; tear it down first", temp_dir.display())]
    SessionBusy {
        /// The session id.
        session: String,
        /// The owner's pid.
        pid: u32,
        /// Its directory.
        temp_dir: PathBuf,
    },
    /// Teardown found no set-up session.
    #[error("no session {session:?} is set up at {} (run setup first)", temp_dir.display())]
    NoSession {
        /// The session id.
        session: String,
        /// Where it was looked for.
        temp_dir: PathBuf,
    },
    /// The session belongs to another workspace.
    #[error(
        "session {session:?} belongs to workspace {actual:?}, not {requested:?} (use -w {actual})"
    )]
    WrongWorkspace {
        /// The session id.
        session: String,
        /// The workspace asked for.
        requested: String,
        /// The workspace it was set up for.
        actual: String,
    },
    /// The store failed.
    #[error("{op}: {source}")]
    Store {
        /// What was being done.
        op: String,
        /// The store's error.
        source: StoreError,
    },
    /// The archive sandbox failed.
    #[error("{op}: {source}")]
    Archive {
        /// What was being done.
        op: String,
        /// The sandbox's error.
        source: Box<ArchiverError>,
    },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Concurrent sessions kept winning the race for the home.
    #[error(
        "claude-home of workspace {workspace:?} kept changing; gave up after {attempts} merges \
         (nothing is lost: the home waits in this machine's outbox; run `ccws flush` later)"
    )]
    TooManyConflicts {
        /// The workspace id.
        workspace: String,
        /// Merge attempts made.
        attempts: u32,
    },
    /// ccws's own record of a session (in its state directory) cannot be
    /// read: it is kept untouched.
    #[error("ccws's record of this session at {} cannot be used ({reason}); it is kept: save what you need from it, remove it, then run setup again", dir.display())]
    UnusableSession {
        /// The kept directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Teardown could neither upload nor queue the session's state: it is
    /// left in place so nothing is lost.
    #[error("could not upload or queue the session's state ({reason}); it is kept at {} (the next setup of this session, or `ccws teardown` again, retries)", temp_dir.display())]
    Unsaved {
        /// The kept directory.
        temp_dir: PathBuf,
        /// Why.
        reason: String,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A session set up for a turn: where the agent should look, and what
/// setup did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Session {
    /// The workspace id.
    pub workspace_id: String,
    /// The session id.
    pub session_id: String,
    /// Its paths.
    pub layout: Layout,
    /// The claude-home ETag it started from.
    pub home_etag: Option<String>,
    /// What Setup did.
    pub report: SetupReport,
}

impl Session {
    /// The environment the agent runs with.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        let l = &self.layout;
        vec![
            ("CLAUDE_CONFIG_DIR", l.claude_dir.clone()),
            ("CCWS_SESSION_DIR", l.temp_dir.clone()),
            ("CCWS_PROJECT_DIR", l.project_dir.clone()),
            ("CCWS_MEMORY_DIR", l.memory_dir.clone()),
            ("CCWS_TRANSCRIPT", l.transcript.clone()),
            ("CCWS_WORKSPACE_ID", PathBuf::from(&self.workspace_id)),
            ("CCWS_SESSION_ID", PathBuf::from(&self.session_id)),
        ]
    }
}

/// Where Setup's claude-home came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum HomeSource {
    /// Downloaded from the store.
    Store {
        /// Files unpacked.
        files: u64,
        /// Bytes unpacked.
        bytes: u64,
    },
    /// None in the store yet: an empty home.
    Empty,
    /// A newer home still waiting in this machine's outbox.
    Outbox,
    /// The store's home could not be used (it was copied aside); the last
    /// home ccws published was used instead, or an empty one.
    Fallback {
        /// Why the home could not be used.
        reason: String,
        /// Files unpacked from the last good home (0: none).
        files: u64,
        /// Bytes unpacked.
        bytes: u64,
    },
}

/// Where Setup's transcript came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptSource {
    /// Downloaded from the store.
    Store,
    /// None yet: a new session.
    New,
    /// A newer transcript still waiting in this machine's outbox.
    Outbox,
}

/// What Setup did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetupReport {
    /// Where the home came from.
    pub home: HomeSource,
    /// Where the transcript came from.
    pub transcript: TranscriptSource,
    /// Entries the outbox delivered first.
    pub flushed: FlushReport,
    /// An abandoned earlier run of this session that was recovered first.
    pub recovered: Option<TeardownReport>,
}

/// What happened to one upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Delivery {
    /// Uploaded.
    Uploaded {
        /// The new ETag.
        etag: Option<String>,
    },
    /// Only what was appended since Setup was uploaded (one more part of
    /// the transcript).
    Appended {
        /// The part's ETag.
        etag: Option<String>,
    },
    /// Uploaded after merging onto a newer home.
    Merged {
        /// The new ETag.
        etag: Option<String>,
        /// Upload attempts.
        attempts: u32,
        /// What the merge did.
        merge: MergeReport,
    },
    /// Nothing changed since Setup: nothing to upload.
    Unchanged,
    /// There was nothing to upload (no transcript written).
    Missing,
    /// Not uploaded, and not queued: the path is not a plain file of the
    /// session tree (a symlink, or under one), which the agent may have
    /// planted to have ccws upload a file of its own choosing.
    Refused {
        /// What was in the way.
        reason: String,
    },
    /// The upload failed; the data waits in the outbox.
    Queued {
        /// Why it failed.
        reason: String,
        /// The outbox entry.
        entry: PathBuf,
    },
}

/// What Teardown did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TeardownReport {
    /// The transcript.
    pub transcript: Delivery,
    /// The session's own files besides the transcript.
    pub state: Delivery,
    /// The claude-home.
    pub home: Delivery,
    /// Whether the temp tree was removed.
    pub removed: bool,
}

impl TeardownReport {
    /// Whether everything reached the store (nothing queued).
    pub fn delivered(&self) -> bool {
        ![&self.transcript, &self.state, &self.home]
            .iter()
            .any(|d| matches!(d, Delivery::Queued { .. }))
    }
}

/// What a flush of the outbox did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlushReport {
    /// Entries delivered and removed.
    pub delivered: usize,
    /// Entries still waiting.
    pub remaining: usize,
    /// Why the remaining ones failed.
    pub errors: Vec<String>,
}

/// Setup, Teardown and flush against one store.
///
/// # Example
///
/// Two turns of one session on the built-in local store: what the first
/// turn's agent writes to its memory, the second turn finds.
///
/// ```
/// use ccws::archive::{Archiver, SandboxConfig};
/// use ccws::store::{LocalStore, Store};
/// use ccws::workspace::{Owner, WorkspaceConfig, Workspaces};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::Local(LocalStore::open(dir.path().join("store"))?);
/// let mut config = WorkspaceConfig::new(dir.path().join("state"));
/// config.temp_base = Some(dir.path().join("tmp"));
/// let workspaces = Workspaces::new(store, Archiver::new(SandboxConfig::default())?, config);
/// let (workspace, session) = ("demo", "6f1c1b7e-3b0e-4a53-9d57-2f4c1d2e8a90");
///
/// let turn = workspaces.setup(workspace, session, Owner::of(std::process::id())).await?;
/// // The agent runs with `turn.env()` (CLAUDE_CONFIG_DIR and the rest); here it
/// // writes one memory note.
/// std::fs::write(turn.layout.memory_dir.join("notes.md"), "remember this")?;
/// let report = workspaces.teardown(workspace, session).await?;
/// assert!(report.delivered(), "saved in the store, nothing queued");
///
/// let next = workspaces.setup(workspace, session, Owner::of(std::process::id())).await?;
/// let note = std::fs::read_to_string(next.layout.memory_dir.join("notes.md"))?;
/// assert_eq!(note, "remember this");
/// workspaces.teardown(workspace, session).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Workspaces {
    store: Store,
    archiver: Archiver,
    config: WorkspaceConfig,
    outbox: Outbox,
}

impl Workspaces {
    /// Workspaces kept in `store`, archived by `archiver`.
    pub fn new(store: Store, archiver: Archiver, config: WorkspaceConfig) -> Self {
        let outbox = Outbox::new(config.state_dir.join("outbox"));
        Workspaces {
            store,
            archiver,
            config,
            outbox,
        }
    }

    /// The store in use.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The configuration.
    pub fn config(&self) -> &WorkspaceConfig {
        &self.config
    }

    /// The absolute temp base, created if missing, with its `cc-broker`
    /// directory checked as ssh checks its files: created 0700, and refused
    /// unless it is a directory of ccws's own user that no one else may
    /// write (another user could otherwise plant or swap session trees).
    fn temp_base(&self) -> Result<PathBuf, WorkspaceError> {
        let base = self
            .config
            .temp_base
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let err = |source| WorkspaceError::TempBase {
            path: base.clone(),
            source,
        };
        std::fs::create_dir_all(&base).map_err(err)?;
        let base = std::fs::canonicalize(&base).map_err(err)?;
        let broker = base.join("cc-broker");
        check_private(&broker).map_err(|source| WorkspaceError::TempBase {
            path: broker.clone(),
            source,
        })?;
        Ok(base)
    }

    /// The layout of `workspace`/`session` (ids validated).
    pub fn layout(&self, workspace: &str, session: &str) -> Result<Layout, WorkspaceError> {
        ids::validate("workspace", workspace)?;
        ids::validate("session", session)?;
        let base = self.temp_base()?;
        let layout = Layout::new(&base, workspace, session);
        // Claude Code cuts a longer project directory name and appends a
        // hash, by a rule that has changed between its versions; ccws could
        // not tell where the transcript goes.
        let over = layout
            .project_name()
            .len()
            .saturating_sub(layout::MAX_PROJECT_NAME);
        if over > 0 {
            let most = base.as_os_str().len().saturating_sub(over);
            return Err(WorkspaceError::TempBase {
                path: base,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "the agent's working directory {} makes a project directory name of {} \
                         characters, over Claude Code's {} (it would shorten it unpredictably); \
                         use a temp base of at most {most} characters for this session id",
                        layout.project_dir.display(),
                        layout.project_name().len(),
                        layout::MAX_PROJECT_NAME,
                    ),
                ),
            });
        }
        Ok(layout)
    }

    /// Hold the per-session lock (setup and teardown of one session never
    /// overlap): `<state>/sessions/<session>.lock`.
    fn session_lock(&self, files: &journal::SessionFiles) -> Result<SessionLock, WorkspaceError> {
        let file = files.lock().map_err(io_err(files.dir()))?;
        let mut name = files.dir().file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        Ok(SessionLock {
            _file: file,
            path: files.dir().with_file_name(name),
            tree: files.dir().to_path_buf(),
        })
    }
}

/// Create `dir` 0700 if missing; then refuse it unless it is a real
/// directory (not a symlink) owned by this process's user and not writable
/// by group or others.
pub(crate) fn check_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let md = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{why}; remove it, or set --temp-dir / CCWS_TEMP_DIR to a directory of your own"
            ),
        ))
    };
    if !md.is_dir() {
        return refuse("is not a directory (a symlink or a file is in the way)".into());
    }
    if md.uid() != me {
        return refuse(format!(
            "is owned by uid {}, not by ccws's uid {me}",
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return refuse(format!(
            "is writable by group or others (mode {:o})",
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Move `tree` out of the way (a rename: instant, whatever runs in it) and
/// remove it; a tree that cannot be removed (a process still writing into
/// it) stays under a `.trash-` name, which the next Setup removes again.
pub(crate) fn discard_tree(tree: &Path) -> std::io::Result<()> {
    let Some(name) = tree.file_name() else {
        return Ok(());
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut trash_name = std::ffi::OsString::from(".trash-");
    trash_name.push(name);
    trash_name.push(format!("-{nanos}"));
    let trash = tree.with_file_name(trash_name);
    match std::fs::rename(tree, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Err(e) = std::fs::remove_dir_all(&trash) {
        tracing::warn!(dir = %trash.display(), "removing a discarded session tree (the next setup retries): {e}");
    }
    Ok(())
}

/// Remove what earlier teardowns could not (`.trash-*` beside the trees).
pub(crate) fn sweep_trash(broker: &Path) {
    let Ok(rd) = std::fs::read_dir(broker) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".trash-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The per-session lock: a `flock` on `<state>/sessions/<session>.lock`,
/// beside the session's record directory, held while setup or teardown
/// works on it.
///
/// When released with the record gone for good (a finished teardown, a
/// failed setup that removed it, a teardown of a session that never was),
/// the lock file is unlinked too, so a broker host does not collect one
/// file per session. The unlink happens while the lock is still held (no
/// setup or teardown of this session can be creating the tree meanwhile),
/// and [`lock_file`] only ever returns a lock on the file the path names
/// *now*, so a process that was waiting on the unlinked file, or that opens
/// the path right after the unlink, never believes it holds the lock while
/// another process holds the new file's.
#[must_use]
pub(crate) struct SessionLock {
    // Dropped (closed, so unlocked) after `drop` below has run.
    _file: File,
    path: PathBuf,
    tree: PathBuf,
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.tree) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // The tree is still there (a live session, or one kept on error):
            // keep its lock file.
            _ => return,
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), "removing the session lock file: {e}");
            }
        }
    }
}

fn store_err(op: impl Into<String>) -> impl FnOnce(StoreError) -> WorkspaceError {
    let op = op.into();
    move |source| WorkspaceError::Store { op, source }
}

fn archive_err(op: impl Into<String>) -> impl FnOnce(ArchiverError) -> WorkspaceError {
    let op = op.into();
    move |source| WorkspaceError::Archive {
        op,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::{lock_file, SessionLock, WorkspaceError};
    use std::fs::{File, TryLockError};
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    /// Wait until some thread is blocked in `flock` on the inode `ino`
    /// (a `->` line of `/proc/locks`).
    fn wait_for_waiter(ino: u64) {
        let needle = format!(":{ino} ");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
                // No /proc/locks: give the thread time to block.
                std::thread::sleep(Duration::from_millis(300));
                return;
            };
            if locks
                .lines()
                .any(|l| l.contains("->") && l.contains(&needle))
            {
                return;
            }
            assert!(Instant::now() < deadline, "no waiter on inode {ino}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_locked(path: &Path) -> bool {
        let f = File::options().write(true).open(path).unwrap();
        match f.try_lock() {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn a_waiter_ends_up_holding_the_file_the_path_names_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".sess_s.lock");
        // Unlinked while the waiter waits, then recreated (a new inode), or
        // just unlinked: either way the waiter must lock the current file.
        for recreate in [true, false] {
            let first = lock_file(&path).unwrap();
            let old_ino = first.metadata().unwrap().ino();
            // Keeps the old inode allocated (without sharing its lock), so
            // a new file cannot reuse its number.
            let _pin = File::open(&path).unwrap();
            let p = path.clone();
            let waiter = std::thread::spawn(move || lock_file(&p).unwrap());
            wait_for_waiter(old_ino);
            std::fs::remove_file(&path).unwrap();
            if recreate {
                File::create(&path).unwrap();
            }
            drop(first);
            let held = waiter.join().unwrap();
            let (mine, now) = (held.metadata().unwrap(), std::fs::metadata(&path).unwrap());
            assert_ne!(now.ino(), old_ino, "recreate={recreate}");
            assert_eq!(
                (mine.dev(), mine.ino()),
                (now.dev(), now.ino()),
                "recreate={recreate}: the lock is on the file the path names"
            );
            assert!(is_locked(&path), "recreate={recreate}: it excludes others");
            drop(held);
            assert!(!is_locked(&path));
        }
    }

    #[test]
    fn the_session_lock_file_goes_with_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("sess_s");
        let path = dir.path().join(".sess_s.lock");
        let lock = |tree: &Path| SessionLock {
            _file: lock_file(&path).unwrap(),
            path: path.clone(),
            tree: tree.to_path_buf(),
        };
        std::fs::create_dir(&tree).unwrap();
        drop(lock(&tree));
        assert!(path.exists(), "kept while the tree lives");
        std::fs::remove_dir(&tree).unwrap();
        drop(lock(&tree));
        assert!(!path.exists(), "removed with the tree");
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = WorkspaceError::WrongWorkspace {
            session: "s".into(),
            requested: "a".into(),
            actual: "b".into(),
        };
        assert!(e.to_string().contains("(use -w b)"), "{e}");
        let e = WorkspaceError::Unsaved {
            temp_dir: PathBuf::from("/t"),
            reason: "disk full".into(),
        };
        assert!(e.to_string().contains("`ccws teardown` again"), "{e}");
        let e = WorkspaceError::TooManyConflicts {
            workspace: "w".into(),
            attempts: 5,
        };
        let msg = e.to_string();
        assert!(
            msg.contains("outbox") && msg.contains("ccws flush"),
            "{msg}"
        );
        let e = WorkspaceError::UnusableSession {
            dir: PathBuf::from("/t"),
            reason: "bad".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("kept") && msg.contains("run setup again"),
            "{msg}"
        );
    }
}
