//! The durable local outbox: uploads that failed wait here, on disk, until a
//! later Setup, Teardown or `ccws flush` on this machine delivers them.
//!
//! Each entry is a directory `<outbox>/<id>/` holding `entry.json`, the
//! `payload` (a transcript, or a packed claude-home) and, for a home, the
//! `base.json` manifest it was built against. Entries are built in a
//! temporary directory and renamed into place, so a crash leaves either a
//! whole entry or none. Ids sort by creation time.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::jsonmerge::SharedBase;
use super::manifest::Manifest;
use super::session::{read_json, write_json};
use crate::durable::{lock_file, private_dir};

const ENTRY: &str = "entry.json";
const PAYLOAD: &str = "payload";
const BASE: &str = "base.json";
const SHARED_BASE: &str = "shared-base.json";
const LOCK: &str = ".lock";

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A session transcript (uploaded as is).
    Transcript,
    /// A session's own files besides its transcript, packed (uploaded as is).
    State,
    /// A packed claude-home (uploaded conditionally, merged on conflict).
    Home,
}

impl Kind {
    /// What it holds, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Transcript => "transcript",
            Kind::State => "session files",
            Kind::Home => "claude-home",
        }
    }
}

/// An entry's description.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// What it holds.
    pub kind: Kind,
    /// The workspace id.
    pub workspace: String,
    /// The session id.
    pub session: String,
    /// The object key to write.
    pub key: String,
    /// For a home: the ETag it was built on (`None`: there was no home).
    pub base_etag: Option<String>,
    /// When it was queued (Unix seconds).
    pub created: u64,
    /// Why the last upload failed.
    pub last_error: String,
}

/// A queued upload on disk.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The entry directory.
    pub dir: PathBuf,
    /// Its description.
    pub entry: Entry,
}

impl Queued {
    /// The payload file.
    pub fn payload(&self) -> PathBuf {
        self.dir.join(PAYLOAD)
    }

    /// For a home: the manifest it was built against.
    pub(crate) fn base(&self) -> io::Result<Manifest> {
        Ok(read_json(&self.dir.join(BASE))?.unwrap_or_default())
    }

    /// For a home: the base contents of the files that merge by meaning.
    pub(crate) fn shared_base(&self) -> io::Result<SharedBase> {
        Ok(read_json(&self.dir.join(SHARED_BASE))?.unwrap_or_default())
    }

    /// Record another failed attempt.
    pub fn note_failure(&mut self, why: &str) -> io::Result<()> {
        self.entry.last_error = why.to_owned();
        write_json(&self.dir, ENTRY, &self.entry)
    }

    /// Remove the delivered entry.
    pub fn remove(self) -> io::Result<()> {
        fs::remove_dir_all(&self.dir)
    }
}

/// The outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// The outbox at `dir` (created 0700 on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Outbox { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure(&self) -> io::Result<()> {
        private_dir(&self.dir)
    }

    /// Take the outbox's exclusive lock (held until the file is dropped), so
    /// two processes never deliver the same entry at once.
    pub fn lock(&self) -> io::Result<File> {
        self.ensure()?;
        lock_file(&self.dir.join(LOCK))
    }

    /// Queue an upload. `fill` writes the payload into the path it is given;
    /// a home comes with the manifest and shared-file contents it was built
    /// against.
    pub fn add(
        &self,
        mut entry: Entry,
        base: Option<(&Manifest, &SharedBase)>,
        fill: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<Queued> {
        self.ensure()?;
        entry.created = now();
        let staging = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&self.dir)?;
        fill(&staging.path().join(PAYLOAD))?;
        if let Some((base, shared)) = base {
            write_json(staging.path(), BASE, base)?;
            write_json(staging.path(), SHARED_BASE, shared)?;
        }
        write_json(staging.path(), ENTRY, &entry)?;
        // Durable before it is published by the rename below.
        for name in [PAYLOAD, BASE, SHARED_BASE, ENTRY] {
            match File::open(staging.path().join(name)) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        File::open(staging.path())?.sync_all()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!("{nanos:024}-{}-{}", entry.workspace, std::process::id());
        let dir = self.dir.join(id);
        fs::rename(staging.keep(), &dir)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(Queued { dir, entry })
    }

    /// Every whole entry, oldest first. Half-built ones are ignored; the
    /// staging leftovers of a crash (`.new-*`, `.payload-*`) are removed
    /// once untouched for an hour.
    pub fn list(&self) -> io::Result<Vec<Queued>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                if name.starts_with(".new-") || name.starts_with(".payload-") {
                    self.clean_stale(&self.dir.join(name));
                }
                continue;
            }
            let dir = self.dir.join(name);
            match read_json::<Entry>(&dir.join(ENTRY)) {
                Ok(Some(entry)) if dir.join(PAYLOAD).is_file() => out.push(Queued { dir, entry }),
                Ok(_) => {
                    tracing::warn!(dir = %dir.display(), "outbox entry is incomplete; ignoring it")
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "outbox entry unreadable; ignoring it: {e}")
                }
            }
        }
        Ok(out)
    }

    /// Remove a half-built entry (`.new-*`) or packed home (`.payload-*`)
    /// that a crashed process left behind, once nothing has touched it for
    /// [`STALE_AFTER`]: one being built right now is written to all along.
    /// Best effort: failures are only logged.
    fn clean_stale(&self, path: &Path) {
        let age = |p: &Path| {
            fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
        };
        let mut youngest = age(path);
        if path.is_dir() {
            if let Ok(rd) = fs::read_dir(path) {
                for e in rd.filter_map(|e| e.ok()) {
                    youngest = match (youngest, age(&e.path())) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        _ => None,
                    };
                }
            }
        }
        if youngest.is_none_or(|a| a < STALE_AFTER) {
            return;
        }
        let res = if path.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        match res {
            Ok(()) => tracing::info!(path = %path.display(), "removed a stale outbox leftover"),
            Err(e) => {
                tracing::warn!(path = %path.display(), "removing a stale outbox leftover: {e}")
            }
        }
    }
}

/// How long a half-built outbox file may sit untouched before it counts as
/// left by a crash.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, ws: &str) -> Entry {
        Entry {
            kind,
            workspace: ws.into(),
            session: "s".into(),
            key: "k".into(),
            base_etag: None,
            created: 0,
            last_error: "down".into(),
        }
    }

    #[test]
    fn entries_are_whole_ordered_and_removable() {
        let tmp = tempfile::tempdir().unwrap();
        let ob = Outbox::new(tmp.path().join("outbox"));
        let a = ob
            .add(entry(Kind::Transcript, "w1"), None, |p| fs::write(p, "t1"))
            .unwrap();
        let b = ob
            .add(
                entry(Kind::Home, "w1"),
                Some((&Manifest::new(), &SharedBase::new())),
                |p| fs::write(p, "h1"),
            )
            .unwrap();
        // A failed fill leaves nothing behind.
        let err = ob.add(entry(Kind::Home, "w2"), None, |_| {
            Err(io::Error::other("pack failed"))
        });
        assert!(err.is_err());
        let listed = ob.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].dir, a.dir);
        assert_eq!(listed[1].dir, b.dir);
        assert_eq!(fs::read_to_string(listed[1].payload()).unwrap(), "h1");
        listed.into_iter().next().unwrap().remove().unwrap();
        assert_eq!(ob.list().unwrap().len(), 1);
        let _lock = ob.lock().unwrap();
    }

    #[test]
    fn stale_leftovers_of_crashes_are_removed_fresh_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let ob = Outbox::new(tmp.path().join("outbox"));
        ob.add(entry(Kind::Transcript, "w1"), None, |p| fs::write(p, "t"))
            .unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
        let age = |p: &Path| File::open(p).unwrap().set_modified(old).unwrap();
        let stale_dir = ob.dir().join(".new-crashed");
        fs::create_dir(&stale_dir).unwrap();
        fs::write(stale_dir.join(PAYLOAD), "half").unwrap();
        age(&stale_dir.join(PAYLOAD));
        age(&stale_dir);
        let stale_file = ob.dir().join(".payload-crashed");
        fs::write(&stale_file, "packed home").unwrap();
        age(&stale_file);
        // Being built right now: young, or an old dir with a young file.
        let fresh_file = ob.dir().join(".payload-busy");
        fs::write(&fresh_file, "packing").unwrap();
        let busy_dir = ob.dir().join(".new-busy");
        fs::create_dir(&busy_dir).unwrap();
        fs::write(busy_dir.join(PAYLOAD), "copying").unwrap();
        age(&busy_dir);
        let _lock = ob.lock().unwrap();
        age(&ob.dir().join(LOCK));

        assert_eq!(ob.list().unwrap().len(), 1);
        assert!(!stale_dir.exists() && !stale_file.exists());
        assert!(fresh_file.exists() && busy_dir.join(PAYLOAD).exists());
        assert!(
            ob.dir().join(LOCK).exists(),
            "the lock file is never touched"
        );
    }
}
