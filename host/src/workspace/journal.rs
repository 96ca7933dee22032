//! A live session's bookkeeping, kept in ccws's state directory
//! (`<state>/sessions/<session>/`, mode 0700), out of the agent's reach:
//! which workspace the session belongs to, who owns it, the claude-home
//! ETag and manifest taken at Setup, and how far Teardown got.
//!
//! Nothing here is ever read from the session tree, which the agent can
//! write. Teardown records each step durably before it takes the next
//! (packed, transcript delivered, home delivered, tree removed), so a crash
//! or `kill -9` at any point resumes where it stopped: what was packed is
//! sent from the staged files, never packed again from a tree that may be
//! half removed by then.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::jsonmerge::SharedBase;
use super::manifest::Manifest;
use super::session::{read_json, Owner};
use super::state::{Changes, Restored as StateRestored};
use super::transcript::Restored;
use super::{Delivery, Layout};
use crate::durable::{lock_file, persist_synced, private_dir};

const RECORD: &str = "session.json";
const MANIFEST: &str = "manifest.json";
const STATE_MANIFEST: &str = "state-manifest.json";
const TRANSCRIPT_BASE: &str = "transcript-base.json";
const SHARED_BASE: &str = "shared-base.json";
const STATE_BASE: &str = "state-base.json";
const STATE_DELTA: &str = "state-delta.tar.gz";
const STATE_CHANGES: &str = "state-changes.json";
const HOME: &str = "home.tar.gz";
const STATE: &str = "state.tar.gz";
const TRANSCRIPT: &str = "transcript.jsonl";

/// How far one of Teardown's two uploads got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub(crate) enum Part {
    /// Staged in the session's state directory, not sent yet.
    Staged,
    /// An upload was started: it may have landed before a crash, so a
    /// resumed upload must not assume the store is as Setup left it.
    Sending,
    /// Finished (delivered, queued, or nothing to send).
    Done {
        /// What happened.
        delivery: Delivery,
    },
}

/// Teardown's progress, once the tree is packed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Progress {
    /// The transcript.
    pub transcript: Part,
    /// The session's own files besides the transcript.
    #[serde(default = "Part::nothing")]
    pub state: Part,
    /// The claude-home.
    pub home: Part,
    /// Whether the session tree is gone.
    pub tree_removed: bool,
}

impl Part {
    /// Done, with nothing to send.
    pub fn nothing() -> Part {
        Part::Done {
            delivery: Delivery::Missing,
        }
    }
}

/// What ccws knows of a set-up session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    /// The workspace id.
    pub workspace: String,
    /// The session id.
    pub session: String,
    /// Who owns the session (it is abandoned once this process is gone).
    pub owner: Owner,
    /// The claude-home ETag Setup started from (`None`: there was none).
    pub home_etag: Option<String>,
    /// When Setup finished (Unix seconds).
    pub created: u64,
    /// The session tree's paths.
    pub layout: Layout,
    /// Other sessions whose files Setup found in the home and moved to
    /// their own objects: the home is published without them.
    #[serde(default)]
    pub moved: Vec<String>,
    /// Teardown's progress; `None` while the agent may still run.
    pub teardown: Option<Progress>,
}

/// One session's directory in the state directory.
#[derive(Debug, Clone)]
pub(crate) struct SessionFiles {
    dir: PathBuf,
}

impl SessionFiles {
    /// `<state_dir>/sessions/<session>` (ids are validated by the caller).
    pub fn new(state_dir: &Path, session: &str) -> Self {
        SessionFiles {
            dir: state_dir.join("sessions").join(session),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lock the session (setup and teardown of one session never overlap):
    /// `<state_dir>/sessions/<session>.lock`, in ccws's own directory.
    pub fn lock(&self) -> io::Result<File> {
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        private_dir(parent)?;
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        lock_file(&parent.join(name))
    }

    /// The record, if Setup finished for a session not yet torn down.
    pub fn record(&self) -> io::Result<Option<Record>> {
        read_json(&self.dir.join(RECORD))
    }

    /// The manifest of the home Setup unpacked.
    pub fn manifest(&self) -> io::Result<Manifest> {
        Ok(read_json(&self.dir.join(MANIFEST))?.unwrap_or_default())
    }

    /// The manifest of the session's own files Setup restored.
    pub fn state_manifest(&self) -> io::Result<Manifest> {
        Ok(read_json(&self.dir.join(STATE_MANIFEST))?.unwrap_or_default())
    }

    /// Write the session-state manifest durably.
    pub fn save_state_manifest(&self, manifest: &Manifest) -> io::Result<()> {
        self.write_durably(STATE_MANIFEST, manifest)
    }

    /// What Setup restored of the session's own files.
    pub fn state_base(&self) -> io::Result<Option<StateRestored>> {
        read_json(&self.dir.join(STATE_BASE))
    }

    /// Write it, durably.
    pub fn save_state_base(&self, restored: &StateRestored) -> io::Result<()> {
        self.write_durably(STATE_BASE, restored)
    }

    /// Where Teardown stages the delta of the session's own files.
    pub fn staged_state_delta(&self) -> PathBuf {
        self.dir.join(STATE_DELTA)
    }

    /// The changes the staged delta holds.
    pub fn state_changes(&self) -> io::Result<Option<Changes>> {
        read_json(&self.dir.join(STATE_CHANGES))
    }

    /// Write them, durably.
    pub fn save_state_changes(&self, changes: &Changes) -> io::Result<()> {
        self.write_durably(STATE_CHANGES, changes)
    }

    /// The base contents of the home's files that merge by meaning.
    pub fn shared_base(&self) -> io::Result<SharedBase> {
        Ok(read_json(&self.dir.join(SHARED_BASE))?.unwrap_or_default())
    }

    /// Write those contents, durably.
    pub fn save_shared_base(&self, shared: &SharedBase) -> io::Result<()> {
        self.write_durably(SHARED_BASE, shared)
    }

    /// What Setup restored of the transcript.
    pub fn transcript_base(&self) -> io::Result<Option<Restored>> {
        read_json(&self.dir.join(TRANSCRIPT_BASE))
    }

    /// Write what Setup restored of the transcript, durably.
    pub fn save_transcript_base(&self, restored: &Restored) -> io::Result<()> {
        self.write_durably(TRANSCRIPT_BASE, restored)
    }

    /// Where Teardown stages the session's own files, packed.
    pub fn staged_state(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    /// Where Teardown stages the packed home.
    pub fn staged_home(&self) -> PathBuf {
        self.dir.join(HOME)
    }

    /// Where Teardown stages the transcript.
    pub fn staged_transcript(&self) -> PathBuf {
        self.dir.join(TRANSCRIPT)
    }

    /// Start afresh: an empty private directory (anything left is removed).
    pub fn create(&self) -> io::Result<()> {
        self.remove()?;
        private_dir(&self.dir)
    }

    /// Write the manifest durably.
    pub fn save_manifest(&self, manifest: &Manifest) -> io::Result<()> {
        self.write_durably(MANIFEST, manifest)
    }

    /// Write the record durably: once this returns, a crash finds it.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        self.write_durably(RECORD, record)
    }

    fn write_durably<T: serde::Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&serde_json::to_vec(value)?)?;
        persist_synced(tmp, &self.dir.join(name)).map(drop)
    }

    /// Remove the directory: the session is over.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Sync a staged file and the directory it is in.
    pub fn sync_staged(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(base: &Path) -> Record {
        Record {
            workspace: "w".into(),
            session: "s".into(),
            owner: Owner::of(std::process::id()),
            home_etag: Some("e1".into()),
            created: 1,
            layout: Layout::new(base, "w", "s"),
            moved: Vec::new(),
            teardown: None,
        }
    }

    #[test]
    fn a_record_survives_a_round_trip_and_goes_with_remove() {
        let state = tempfile::tempdir().unwrap();
        let files = SessionFiles::new(state.path(), "s");
        assert_eq!(files.record().unwrap(), None);
        files.create().unwrap();
        let mut r = record(Path::new("/t"));
        files.save(&r).unwrap();
        assert_eq!(files.record().unwrap().as_ref(), Some(&r));
        r.teardown = Some(Progress {
            transcript: Part::Done {
                delivery: Delivery::Missing,
            },
            state: Part::nothing(),
            home: Part::Sending,
            tree_removed: false,
        });
        files.save(&r).unwrap();
        assert_eq!(files.record().unwrap(), Some(r));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(files.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        files.remove().unwrap();
        assert_eq!(files.record().unwrap(), None);
        files.remove().unwrap();
    }
}
