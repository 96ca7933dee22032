//! Setup: create the private temp tree, bring the workspace's claude-home and
//! the session's transcript into it, and record in ccws's state directory
//! what Teardown needs.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncRead;

use super::journal::{Record, SessionFiles};
use super::jsonmerge;
use super::manifest;
use super::outbox::Kind;
use super::owned;
use super::project_entry;
use super::session::Owner;
use super::state;
use super::untrusted;
use super::{
    archive_err, discard_tree, io_err, private_dir, store_err, sweep_trash, HomeSource, Layout,
    Session, SetupReport, TranscriptSource, WorkspaceError, Workspaces,
};
use crate::archive::{ArchiveError, ArchiverError, EntryKind, Report, Verdict};

impl Workspaces {
    /// Set up `session` of `workspace`, owned by the process `owner` (the
    /// session counts as abandoned once that process is gone). On any error
    /// the temp tree is removed again.
    pub async fn setup(
        &self,
        workspace: &str,
        session: &str,
        owner: Owner,
    ) -> Result<Session, WorkspaceError> {
        let layout = self.layout(workspace, session)?;
        let files = SessionFiles::new(&self.config.state_dir, session);
        let _lock = self.session_lock(&files)?;

        // Deliver what earlier turns on this machine could not.
        let flushed = match self.flush(Some(workspace)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("outbox flush failed: {e}");
                Default::default()
            }
        };

        let recovered = self.recover(&files, session).await?;

        // ccws knows of no live session here now: whatever stands at the
        // tree's path (a setup that crashed before it finished, or anything
        // planted there) holds nothing to save.
        discard_tree(&layout.temp_dir).map_err(io_err(&layout.temp_dir))?;
        if let Some(broker) = layout.temp_dir.parent() {
            sweep_trash(broker);
        }
        files.create().map_err(io_err(files.dir()))?;
        private_dir(&layout.temp_dir).map_err(io_err(&layout.temp_dir))?;
        match self
            .populate(&layout, &files, workspace, session, owner)
            .await
        {
            Ok((home, transcript, home_etag)) => Ok(Session {
                workspace_id: workspace.to_owned(),
                session_id: session.to_owned(),
                layout,
                home_etag,
                report: SetupReport {
                    home,
                    transcript,
                    flushed,
                    recovered,
                },
            }),
            Err(e) => {
                if let Err(rm) = discard_tree(&layout.temp_dir) {
                    tracing::warn!(dir = %layout.temp_dir.display(), "removing the temp tree after a failed setup: {rm}");
                }
                if let Err(rm) = files.remove() {
                    tracing::warn!(dir = %files.dir().display(), "removing the session record after a failed setup: {rm}");
                }
                Err(e)
            }
        }
    }

    /// An earlier run of this session that ccws recorded: refuse while its
    /// owner lives, else finish its teardown (an abandoned turn, or a
    /// teardown that was interrupted) from where it stopped.
    async fn recover(
        &self,
        files: &SessionFiles,
        session: &str,
    ) -> Result<Option<super::TeardownReport>, WorkspaceError> {
        let unusable = |reason: String| WorkspaceError::UnusableSession {
            dir: files.dir().to_path_buf(),
            reason,
        };
        let record = match files.record() {
            Ok(Some(r)) => r,
            // No record: a setup that never finished; the agent never ran.
            Ok(None) => {
                files.remove().map_err(io_err(files.dir()))?;
                return Ok(None);
            }
            Err(e) => return Err(unusable(format!("its session.json cannot be read: {e}"))),
        };
        if record.session != session {
            return Err(unusable(format!(
                "its session.json is for session {:?}, not {session:?}",
                record.session
            )));
        }
        if record.teardown.is_none() && record.owner.is_alive() {
            return Err(WorkspaceError::SessionBusy {
                session: session.to_owned(),
                pid: record.owner.pid,
                temp_dir: record.layout.temp_dir.clone(),
            });
        }
        tracing::warn!(
            dir = %record.layout.temp_dir.display(),
            pid = record.owner.pid,
            "finishing an earlier turn of this session first (its owner is gone)"
        );
        let tree = record.layout.temp_dir.clone();
        match self.finish(files, record).await {
            Ok(report) => Ok(Some(report)),
            // What cannot be saved must not block every later turn of the
            // session: it is kept aside, whole, for a person to look at.
            Err(e) => {
                let kept = keep_aside(files.dir()).and_then(|r| Ok((r, keep_aside(&tree)?)));
                match kept {
                    Ok((record_at, tree_at)) => {
                        tracing::error!(
                            "the earlier turn of this session could not be saved ({e}); it is kept \
                             aside: its record at {}, its tree at {}",
                            record_at.display(),
                            tree_at.display()
                        );
                        Ok(None)
                    }
                    Err(_) => Err(e),
                }
            }
        }
    }

    async fn populate(
        &self,
        layout: &Layout,
        files: &SessionFiles,
        workspace: &str,
        session: &str,
        owner: Owner,
    ) -> Result<(HomeSource, TranscriptSource, Option<String>), WorkspaceError> {
        for dir in [&layout.claude_dir, &layout.project_dir] {
            private_dir(dir).map_err(io_err(dir))?;
        }
        let queued = self.outbox.list().map_err(io_err(self.outbox.dir()))?;

        // The home: a newer one still queued here wins over the store's.
        let queued_home = queued
            .iter()
            .rev()
            .find(|q| q.entry.kind == Kind::Home && q.entry.workspace == workspace);
        let (home, home_etag) = if let Some(q) = queued_home {
            self.archiver
                .unpack_file(&q.payload(), &layout.claude_dir, &self.config.unpack, None)
                .await
                .map_err(archive_err("unpacking the queued claude-home"))?;
            (HomeSource::Outbox, q.entry.base_etag.clone())
        } else {
            self.restore_home(layout, workspace).await?
        };
        self.strip_own_subtree(layout)?;
        // What Teardown compares the home against: the home as it came, so
        // that what moves out of it below counts as a change to publish.
        let project = layout.project_name().to_owned();
        let manifest = manifest::scan_where(&layout.claude_dir, &|rel| {
            owned::in_home(rel, session, &project, &[])
        })
        .map_err(io_err(&layout.claude_dir))?;
        files
            .save_manifest(&manifest)
            .map_err(io_err(files.dir()))?;
        files
            .save_shared_base(&jsonmerge::read_base(&layout.claude_dir))
            .map_err(io_err(files.dir()))?;
        let moved = self
            .move_out_others(layout, workspace, session, files)
            .await?;
        let queued_state = queued
            .iter()
            .rev()
            .find(|q| {
                q.entry.kind == Kind::State
                    && q.entry.key == self.config.keys.session_state(workspace, session)
            })
            .map(|q| q.payload());
        let state_index = self
            .restore_state(layout, files, workspace, session, queued_state.as_deref())
            .await?;
        // After the merge base of the shared files was taken: the entry is
        // the session's, not a change to the shared file.
        project_entry::restore(layout)?;

        // The transcript.
        let tkey = self.config.keys.transcript(workspace, session);
        let queued_transcript = queued
            .iter()
            .rev()
            .find(|q| q.entry.kind == Kind::Transcript && q.entry.key == tkey);
        if let Some(dir) = layout.transcript.parent() {
            private_dir(dir).map_err(io_err(dir))?;
        }
        let transcript = if let Some(q) = queued_transcript {
            fs::copy(q.payload(), &layout.transcript).map_err(io_err(&layout.transcript))?;
            TranscriptSource::Outbox
        } else {
            match self
                .download_transcript(workspace, session, &layout.transcript)
                .await?
            {
                Some(restored) => {
                    files
                        .save_transcript_base(&restored)
                        .map_err(io_err(files.dir()))?;
                    TranscriptSource::Store
                }
                None => TranscriptSource::New,
            }
        };

        // And the session's own files as restored.
        let state = manifest::scan_where(&layout.claude_dir, &|rel| {
            owned::is_sessions(rel, session, &project) || owned::is_way_to(rel)
        })
        .map_err(io_err(&layout.claude_dir))?;
        files
            .save_state_base(&state::Restored {
                sizes: state::sizes(&layout.claude_dir, &state),
                index: state_index,
            })
            .map_err(io_err(files.dir()))?;
        files
            .save_state_manifest(&state)
            .map_err(io_err(files.dir()))?;

        // The workspace's memory moves to where Claude Code keeps this
        // project's memory by default, and the local settings point there
        // too; Teardown moves it back into the home's place.
        let memory_rel = format!("{}/memory", layout.session_subtree);
        let moved_memory =
            untrusted::move_within(&layout.claude_dir, &layout.shared_memory, &memory_rel)
                .map_err(io_err(&layout.memory_dir))?;
        if !moved_memory {
            private_dir(&layout.memory_dir).map_err(io_err(&layout.memory_dir))?;
        }
        write_local_settings(layout)?;

        let record = Record {
            workspace: workspace.to_owned(),
            session: session.to_owned(),
            owner,
            home_etag: home_etag.clone(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            layout: layout.clone(),
            moved,
            teardown: None,
        };
        // Last: from here on, the session exists for ccws.
        files.save(&record).map_err(io_err(files.dir()))?;
        Ok((home, transcript, home_etag))
    }

    /// The store's home, unpacked into the tree. A home that cannot be used
    /// (corrupt, over a limit, or with `projects` or the memory directory
    /// not a directory) never fails the setup: it is copied aside for
    /// inspection and the last home ccws published is used instead (or an
    /// empty one), with a warning in the report. Its ETag is kept as the
    /// base, so that this session's publish replaces it.
    async fn restore_home(
        &self,
        layout: &Layout,
        workspace: &str,
    ) -> Result<(HomeSource, Option<String>), WorkspaceError> {
        let keys = &self.config.keys;
        let key = keys.home(workspace);
        let obj = match self.store.get(&key).await {
            Ok(obj) => obj,
            Err(e) if e.is_not_found() => return Ok((HomeSource::Empty, None)),
            Err(e) => return Err(store_err(format!("downloading {key}"))(e)),
        };
        let etag = obj.meta.etag.clone();
        let reason = match self.unpack_home(obj.body, obj.meta.size, layout).await {
            Ok(r) => {
                let source = HomeSource::Store {
                    files: r.files,
                    bytes: r.bytes,
                };
                return Ok((source, etag));
            }
            Err(Unusable::Store(e)) => {
                return Err(WorkspaceError::Archive {
                    op: format!("downloading and unpacking {key}"),
                    source: Box::new(e),
                })
            }
            Err(Unusable::Home(reason)) => reason,
        };
        let rejected = keys.home_rejected(workspace);
        tracing::warn!(
            key,
            "the workspace's claude-home cannot be used ({reason}); it is copied to {rejected} \
             for inspection, and this session starts from the last home ccws published"
        );
        if let Err(e) = self.store.copy(&key, &rejected).await {
            tracing::warn!("copying the unusable home aside: {e}");
        }
        clear_dir(&layout.claude_dir)?;
        let good = keys.home_good(workspace);
        let restored = match self.store.get(&good).await {
            Ok(obj) => match self.unpack_home(obj.body, obj.meta.size, layout).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("the last good home {good} cannot be used either: {e}; starting from an empty home");
                    clear_dir(&layout.claude_dir)?;
                    None
                }
            },
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(store_err(format!("downloading {good}"))(e)),
        };
        let source = HomeSource::Fallback {
            reason,
            files: restored.as_ref().map_or(0, |r| r.files),
            bytes: restored.as_ref().map_or(0, |r| r.bytes),
        };
        Ok((source, etag))
    }

    /// Unpack a home from `body` into the tree and check its layout.
    async fn unpack_home<R>(&self, body: R, len: u64, layout: &Layout) -> Result<Report, Unusable>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let r = match self
            .archiver
            .unpack_sized(
                body,
                Some(len),
                &layout.claude_dir,
                &self.config.unpack,
                None,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Err(match e {
                    ArchiverError::Archive(ArchiveError::Stream { .. })
                    | ArchiverError::Stream(_)
                    | ArchiverError::Input { .. } => Unusable::Store(e),
                    e => Unusable::Home(e.to_string()),
                })
            }
        };
        for s in &r.skipped {
            tracing::warn!(path = %s.path, reason = ?s.reason, "claude-home entry not restored");
        }
        // What Setup works with below must be directories.
        for rel in layout.must_be_dirs() {
            match fs::symlink_metadata(layout.claude_dir.join(&rel)) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Err(Unusable::Home(format!("{rel} is not a directory"))),
                Err(_) => break,
            }
        }
        Ok(r)
    }

    /// A session's own subtree comes only from its own objects: whatever a
    /// home carries there is removed.
    fn strip_own_subtree(&self, layout: &Layout) -> Result<(), WorkspaceError> {
        let own = layout.claude_dir.join(&layout.session_subtree);
        let removed = match fs::symlink_metadata(&own) {
            Ok(md) if md.is_dir() => fs::remove_dir_all(&own),
            Ok(_) => fs::remove_file(&own),
            Err(_) => return Ok(()),
        };
        tracing::warn!(path = %layout.session_subtree, "the home carried this session's own subtree; it is not used");
        removed.map_err(io_err(&own))
    }
}

impl Workspaces {
    /// The session's own files, from its own object, unpacked with a filter
    /// that takes nothing but this session's paths. One that was stored
    /// under an earlier temp base (another project directory name) is moved
    /// to this turn's project directory.
    /// Returns the index of deltas that extends the whole set restored (to
    /// be extended by this session's teardown), if any.
    async fn restore_state(
        &self,
        layout: &Layout,
        files: &SessionFiles,
        workspace: &str,
        session: &str,
        queued: Option<&std::path::Path>,
    ) -> Result<Option<state::Index>, WorkspaceError> {
        let key = self.config.keys.session_state(workspace, session);
        let only_its_own = || -> crate::archive::FilterFn {
            let project = layout.project_name().to_owned();
            let id = session.to_owned();
            Box::new(move |rel: &str, _kind: EntryKind| {
                if owned::is_sessions(rel, &id, &project) || owned::is_way_to(rel) {
                    Verdict::Keep
                } else {
                    Verdict::Exclude
                }
            })
        };
        let filter = only_its_own();
        let mut index = None;
        // A newer copy still queued on this machine wins over the store's.
        let r = if let Some(payload) = queued {
            self.archiver
                .unpack_file(
                    payload,
                    &layout.claude_dir,
                    &self.config.unpack,
                    Some(filter),
                )
                .await
                .map_err(archive_err("unpacking the queued session files"))?
        } else {
            let found = self.read_state_index(workspace, session).await?;
            let obj = match self.store.get(&key).await {
                Ok(obj) => obj,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(store_err(format!("downloading {key}"))(e)),
            };
            // Deltas extend only the exact whole set they were made for.
            index = found.filter(|i| i.base_etag.is_some() && i.base_etag == obj.meta.etag);
            self.archiver
                .unpack_sized(
                    obj.body,
                    Some(obj.meta.size),
                    &layout.claude_dir,
                    &self.config.unpack,
                    Some(filter),
                )
                .await
                .map_err(archive_err(format!("downloading and unpacking {key}")))?
        };
        // The deltas: fetched all at once (their round trips overlap), then
        // unpacked and applied in order.
        let deltas: Vec<&state::Delta> = index.iter().flat_map(|i| i.deltas.iter()).collect();
        let fetched = tempfile::Builder::new()
            .prefix("deltas-")
            .tempdir_in(files.dir())
            .map_err(io_err(files.dir()))?;
        futures::future::try_join_all(deltas.iter().enumerate().map(|(n, d)| {
            let to = fetched.path().join(n.to_string());
            async move {
                self.store
                    .download_file(&d.key, &to)
                    .await
                    .map_err(store_err(format!("downloading {}", d.key)))
            }
        }))
        .await?;
        for (n, delta) in deltas.iter().enumerate() {
            let scratch = tempfile::Builder::new()
                .prefix("delta-")
                .tempdir_in(files.dir())
                .map_err(io_err(files.dir()))?;
            self.archiver
                .unpack_file(
                    &fetched.path().join(n.to_string()),
                    scratch.path(),
                    &self.config.unpack,
                    Some(only_its_own()),
                )
                .await
                .map_err(archive_err(format!("unpacking {}", delta.key)))?;
            state::apply_delta(&layout.claude_dir, scratch.path(), delta)
                .map_err(io_err(&layout.claude_dir))?;
        }
        for s in r
            .skipped
            .iter()
            .filter(|s| s.reason != crate::archive::SkipReason::Excluded)
        {
            tracing::warn!(path = %s.path, reason = ?s.reason, "session file not restored");
        }
        // Project directories of this session under earlier temp bases.
        let projects = layout.claude_dir.join("projects");
        for e in fs::read_dir(&projects).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != layout.project_name() && owned::project_session(&name) == Some(session) {
                let from = format!("projects/{name}");
                let moved =
                    untrusted::move_within(&layout.claude_dir, &from, &layout.session_subtree)
                        .map_err(io_err(&projects))?;
                if !moved {
                    tracing::warn!(path = from, "an earlier project directory of this session could not be moved into place");
                }
            }
        }
        Ok(index)
    }
}

/// Point Claude Code's auto-memory at the session's memory directory, in
/// the local settings of its working directory (`autoMemoryDirectory` is
/// honoured from local settings, not from a project's shared ones); kept
/// out of the shared `settings.json`, whose absolute path would be wrong
/// for every other session.
fn write_local_settings(layout: &Layout) -> Result<(), WorkspaceError> {
    let path = &layout.local_settings;
    if let Some(dir) = path.parent() {
        private_dir(dir).map_err(io_err(dir))?;
    }
    let settings = serde_json::json!({ "autoMemoryDirectory": layout.memory_dir });
    let bytes = serde_json::to_vec_pretty(&settings).map_err(|e| WorkspaceError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    fs::write(path, bytes).map_err(io_err(path))
}

/// Why a home could not be unpacked.
enum Unusable {
    /// The download failed: a store problem, not the home's.
    Store(ArchiverError),
    /// The home itself cannot be used.
    Home(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Store(e) => e.fmt(f),
            Unusable::Home(r) => f.write_str(r),
        }
    }
}

/// Rename `path` to `.kept-<name>-<nanos>` beside it; returns the new path
/// (a missing `path` is fine).
fn keep_aside(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut name = std::ffi::OsString::from(".kept-");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!("-{nanos}"));
    let to = path.with_file_name(name);
    match fs::rename(path, &to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(to),
    }
}

/// Empty the directory `dir` (kept, with its mode).
fn clear_dir(dir: &std::path::Path) -> Result<(), WorkspaceError> {
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let path = e.path();
        let res = if e.file_type().map_err(io_err(&path))?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        res.map_err(io_err(&path))?;
    }
    Ok(())
}
