//! Teardown: pack the session tree once into ccws's state directory, then
//! deliver the staged transcript and home, then remove the tree. Each step
//! is recorded in the session's journal before the next, so a crash at any
//! point resumes where it stopped; a failed upload never fails the turn and
//! never loses data: the staged file itself becomes the outbox entry.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::journal::{Part, Progress, Record, SessionFiles};
use super::manifest;
use super::outbox::{Entry, Kind};
use super::owned;
use super::project_entry;
use super::prune;
use super::publish::{readable, HomeBase, HomeRule, MAX_DEPTH};
use super::state;
use super::transcript::Sent;
use super::untrusted;
use super::{
    archive_err, discard_tree, io_err, Delivery, Layout, TeardownReport, WorkspaceError, Workspaces,
};
use crate::archive::{EntryKind, SkipReason, Verdict};
use crate::s3::PutCondition;

/// Why a home is queued without trying to upload it.
const HOME_BEHIND: &str =
    "an older claude-home of this workspace is still queued; queued behind it";
/// Why a session's own files are queued without trying to upload them.
const STATE_BEHIND: &str =
    "an older copy of this session's files is still queued; queued behind it";
/// Why a transcript is queued without trying to upload it.
const TRANSCRIPT_BEHIND: &str =
    "an older copy of this transcript is still queued; queued behind it";

impl Workspaces {
    /// Tear down `session` of `workspace` (set up earlier, possibly by another
    /// process). The agent must be finished: its tree is read once, here.
    pub async fn teardown(
        &self,
        workspace: &str,
        session: &str,
    ) -> Result<TeardownReport, WorkspaceError> {
        let layout = self.layout(workspace, session)?;
        let files = SessionFiles::new(&self.config.state_dir, session);
        let _lock = self.session_lock(&files)?;
        let record = files
            .record()
            .map_err(|e| WorkspaceError::UnusableSession {
                dir: files.dir().to_path_buf(),
                reason: format!("its session.json cannot be read: {e}"),
            })?
            .ok_or_else(|| WorkspaceError::NoSession {
                session: session.to_owned(),
                temp_dir: layout.temp_dir.clone(),
            })?;
        if record.workspace != workspace {
            return Err(WorkspaceError::WrongWorkspace {
                session: session.to_owned(),
                requested: workspace.to_owned(),
                actual: record.workspace,
            });
        }
        self.finish(&files, record).await
    }

    /// Take the session from wherever its journal says it is to the end:
    /// staged, delivered (or queued), tree removed, record gone. If the
    /// tree cannot be staged, everything is kept for a later retry.
    pub(super) async fn finish(
        &self,
        files: &SessionFiles,
        mut record: Record,
    ) -> Result<TeardownReport, WorkspaceError> {
        let tree = record.layout.temp_dir.clone();
        let unsaved = |reason: String| WorkspaceError::Unsaved {
            temp_dir: tree.clone(),
            reason,
        };
        if record.teardown.is_none() {
            let progress = self.stage(files, &record).await?;
            record.teardown = Some(progress);
            files.save(&record).map_err(|e| {
                unsaved(format!(
                    "recording the staged files in {}: {e}",
                    files.dir().display()
                ))
            })?;
        }

        // Older queued homes of this workspace (and older copies of this
        // transcript) must land first: this session may have started from
        // one of them, and replaying it afterwards would undo this
        // session's newer changes to the same files.
        if let Err(e) = self.flush(Some(&record.workspace)).await {
            tracing::warn!("outbox flush before teardown failed: {e}");
        }
        let tkey = self
            .config
            .keys
            .transcript(&record.workspace, &record.session);
        let queued = self.outbox.list().map_err(|e| {
            unsaved(format!(
                "reading the outbox {}: {e}",
                self.outbox.dir().display()
            ))
        })?;
        let transcript_behind = queued
            .iter()
            .any(|q| q.entry.kind == Kind::Transcript && q.entry.key == tkey)
            .then_some(TRANSCRIPT_BEHIND);
        let skey = self
            .config
            .keys
            .session_state(&record.workspace, &record.session);
        let state_behind = queued
            .iter()
            .any(|q| q.entry.kind == Kind::State && q.entry.key == skey)
            .then_some(STATE_BEHIND);
        let home_behind = queued
            .iter()
            .any(|q| q.entry.kind == Kind::Home && q.entry.workspace == record.workspace)
            .then_some(HOME_BEHIND);

        for kind in [Kind::Transcript, Kind::State, Kind::Home] {
            let part = match (kind, &record.teardown) {
                (Kind::Transcript, Some(p)) => p.transcript.clone(),
                (Kind::State, Some(p)) => p.state.clone(),
                (Kind::Home, Some(p)) => p.home.clone(),
                (_, None) => unreachable!("staged above"),
            };
            let uncertain = match part {
                Part::Done { .. } => continue,
                Part::Staged => false,
                Part::Sending => true,
            };
            set_part(&mut record, kind, Part::Sending);
            files.save(&record).map_err(|e| unsaved(e.to_string()))?;
            let delivery = match kind {
                Kind::Transcript => {
                    self.send_transcript(files, &record, &tkey, transcript_behind)
                        .await
                }
                Kind::State => self.send_session_files(files, &record, state_behind).await,
                Kind::Home => self.send_home(files, &record, home_behind, uncertain).await,
            }
            .map_err(|e| unsaved(e.to_string()))?;
            set_part(&mut record, kind, Part::Done { delivery });
            files.save(&record).map_err(|e| unsaved(e.to_string()))?;
        }

        let removed = match discard_tree(&record.layout.temp_dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(dir = %record.layout.temp_dir.display(), "removing the temp tree (the next setup retries): {e}");
                false
            }
        };
        let progress = record.teardown.take().unwrap_or_else(|| unreachable!());
        let done = |p: Part| match p {
            Part::Done { delivery } => delivery,
            _ => unreachable!("every part is done here"),
        };
        let report = TeardownReport {
            transcript: done(progress.transcript),
            state: done(progress.state),
            home: done(progress.home),
            removed,
        };
        if let Err(e) = files.remove() {
            tracing::warn!(dir = %files.dir().display(), "removing the finished session's record: {e}");
        }
        Ok(report)
    }

    /// Read the agent's tree once: the transcript copied, the home packed
    /// (without this session's own subtree), both into the session's state
    /// directory and synced, so nothing later reads the tree again.
    async fn stage(
        &self,
        files: &SessionFiles,
        record: &Record,
    ) -> Result<Progress, WorkspaceError> {
        let layout = &record.layout;
        let unsaved = |reason: String| WorkspaceError::Unsaved {
            temp_dir: layout.temp_dir.clone(),
            reason,
        };

        // Opened once, without following a symlink anywhere on its path: the
        // copy reads this handle, so the agent cannot swap the path after the
        // check.
        let transcript = match untrusted::open_plain(&layout.temp_dir, &layout.transcript) {
            Ok(Some(mut file)) => {
                let staged = files.staged_transcript();
                File::create(&staged)
                    .and_then(|mut out| io::copy(&mut file, &mut out))
                    .and_then(|_| files.sync_staged(&staged))
                    .map_err(|e| unsaved(format!("staging the transcript: {e}")))?;
                Part::Staged
            }
            Ok(None) => Part::Done {
                delivery: Delivery::Missing,
            },
            Err(refusal) => {
                let reason = refusal.to_string();
                tracing::warn!(
                    path = %layout.transcript.display(),
                    "transcript refused, not uploaded, and discarded with the session tree \
                     (it must be a regular file): {reason}"
                );
                Part::Done {
                    delivery: Delivery::Refused { reason },
                }
            }
        };

        if !is_real_dir(&layout.claude_dir) {
            // No tree (a reboot cleared the temp dir, or it was removed by
            // hand): nothing to save, and not "the agent deleted everything".
            tracing::warn!(dir = %layout.claude_dir.display(), "the session's claude-config is gone; the home is left as it is in the store");
            return Ok(Progress {
                transcript,
                state: Part::nothing(),
                home: Part::nothing(),
                tree_removed: false,
            });
        }
        self.return_memory(layout)?;
        project_entry::take(layout)?;
        let project = layout.project_name().to_owned();
        let id = record.session.clone();

        // The session's own files.
        let base = files.state_manifest().map_err(io_err(files.dir()))?;
        let limits = &self.config.unpack.limits;
        let mine = manifest::scan_within(
            &layout.claude_dir,
            &|rel| {
                (owned::is_sessions(rel, &id, &project) || owned::is_way_to(rel))
                    && publishable(rel, limits)
            },
            limits.max_file_bytes,
        )
        .map_err(io_err(&layout.claude_dir))?;
        let state = if mine == base {
            Part::Done {
                delivery: Delivery::Unchanged,
            }
        } else {
            let staged = files.staged_state();
            let (id, project) = (id.clone(), project.clone());
            let filter = Box::new(move |rel: &str, _kind: EntryKind| {
                if owned::is_sessions(rel, &id, &project) || owned::is_way_to(rel) {
                    Verdict::Keep
                } else {
                    Verdict::Exclude
                }
            });
            let filter = readable(&layout.claude_dir, self.config.unpack.limits, filter);
            self.archiver
                .pack_file(&layout.claude_dir, &staged, &self.config.pack, Some(filter))
                .await
                .map_err(archive_err("packing the session's own files"))?;
            files
                .sync_staged(&staged)
                .map_err(|e| unsaved(format!("syncing the session's packed files: {e}")))?;
            // And what changed alone, when the store's index can take it.
            let restored = files.state_base().map_err(io_err(files.dir()))?;
            if restored.as_ref().is_some_and(|r| r.index.is_some()) {
                let sizes = restored.map(|r| r.sizes).unwrap_or_default();
                self.stage_state_delta(files, layout, &base, &sizes, &mine)
                    .await
                    .map_err(|e| unsaved(format!("staging the session's changed files: {e}")))?;
            }
            Part::Staged
        };

        // The home: everything shared, less what the cleanup prunes.
        let base = files.manifest().map_err(io_err(files.dir()))?;
        let rule = HomeRule {
            id: id.clone(),
            project: project.clone(),
            moved: record.moved.clone(),
            pruned: prune::pruned(&layout.claude_dir, self.config.cleanup),
        };
        let limits = &self.config.unpack.limits;
        let mine = manifest::scan_within(
            &layout.claude_dir,
            &|rel| rule.keeps(rel) && publishable(rel, limits),
            limits.max_file_bytes,
        )
        .map_err(io_err(&layout.claude_dir))?;
        let home = if mine == base && (record.home_etag.is_some() || mine.is_empty()) {
            Part::Done {
                delivery: Delivery::Unchanged,
            }
        } else {
            let staged = files.staged_home();
            let limits = self.config.unpack.limits;
            let filter = readable(
                &layout.claude_dir,
                limits,
                rule.filter(layout.must_be_dirs()),
            );
            let report = self
                .archiver
                .pack_file(&layout.claude_dir, &staged, &self.config.pack, Some(filter))
                .await
                .map_err(archive_err("packing the claude-home"))?;
            for s in &report.skipped {
                match s.reason {
                    SkipReason::Excluded => {}
                    // Claude Code keeps debug/latest as a symlink: expected.
                    SkipReason::Symlink => {
                        tracing::debug!(path = %s.path, detail = %s.detail, "symlink left out of the home")
                    }
                    _ => {
                        tracing::warn!(path = %s.path, reason = ?s.reason, detail = %s.detail, "left out of the home")
                    }
                }
            }
            files
                .sync_staged(&staged)
                .map_err(|e| unsaved(format!("syncing the packed home: {e}")))?;
            Part::Staged
        };
        Ok(Progress {
            transcript,
            state,
            home,
            tree_removed: false,
        })
    }

    /// Move the workspace's memory back from the session's project
    /// directory to the home's place for it (Setup moved it there). The
    /// agent is done, but its tree is still untrusted: both places are
    /// reached without following a symlink, and nothing is overwritten:
    /// what someone wrote at the home's place meanwhile is kept, and a
    /// file of the same name from the session's memory joins it renamed.
    fn return_memory(&self, layout: &Layout) -> Result<(), WorkspaceError> {
        let root = &layout.claude_dir;
        let from = format!("{}/memory", layout.session_subtree);
        let to = &layout.shared_memory;
        let err = io_err(&layout.memory_dir);
        if untrusted::move_within(root, &from, to).map_err(err)? {
            return Ok(());
        }
        let Some(dir) =
            untrusted::open_dir(root, &from, false).map_err(io_err(&layout.memory_dir))?
        else {
            return Ok(());
        };
        drop(dir);
        let names: Vec<String> = fs::read_dir(&layout.memory_dir)
            .map_err(io_err(&layout.memory_dir))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in names {
            let src = format!("{from}/{name}");
            let moved = untrusted::move_within(root, &src, &format!("{to}/{name}"))
                .map_err(io_err(&layout.memory_dir))?;
            if !moved {
                let session = layout
                    .temp_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                untrusted::move_within(root, &src, &format!("{to}/{session}-{name}"))
                    .map_err(io_err(&layout.memory_dir))?;
            }
        }
        Ok(())
    }

    /// Upload the staged transcript as `key`, or queue it: when the upload
    /// fails, or right away when `behind` says why it must wait.
    async fn send_transcript(
        &self,
        files: &SessionFiles,
        record: &Record,
        key: &str,
        behind: Option<&str>,
    ) -> Result<Delivery, WorkspaceError> {
        let staged = files.staged_transcript();
        if behind.is_none() && staged.exists() {
            let restored = files.transcript_base().map_err(io_err(files.dir()))?;
            match self
                .send_transcript_delta(
                    &record.workspace,
                    &record.session,
                    &staged,
                    restored.as_ref(),
                )
                .await
            {
                Ok(Sent::Unchanged) => return Ok(Delivery::Unchanged),
                Ok(Sent::Appended { etag }) => return Ok(Delivery::Appended { etag }),
                Ok(Sent::Whole { etag }) => return Ok(Delivery::Uploaded { etag }),
                Err(e) => {
                    // Queued whole: delivered later, it replaces the whole
                    // object, and parts made for the old one are ignored.
                    let reason = e.to_string();
                    return self.queue_file(record, Kind::Transcript, &staged, key, reason);
                }
            }
        }
        self.send_file(files, record, Kind::Transcript, &staged, key, behind)
            .await
    }

    /// Pack into the staged delta what changed among the session's own
    /// files since `base` (tails of files that only grew), from a copy in
    /// the state directory.
    async fn stage_state_delta(
        &self,
        files: &SessionFiles,
        layout: &Layout,
        base: &manifest::Manifest,
        sizes: &std::collections::BTreeMap<String, u64>,
        mine: &manifest::Manifest,
    ) -> Result<(), WorkspaceError> {
        let tree = tempfile::Builder::new()
            .prefix("delta-tree-")
            .tempdir_in(files.dir())
            .map_err(io_err(files.dir()))?;
        let changes = state::stage_changes(&layout.claude_dir, base, sizes, mine, tree.path())
            .map_err(io_err(tree.path()))?;
        let staged = files.staged_state_delta();
        self.archiver
            .pack_file(tree.path(), &staged, &self.config.pack, None)
            .await
            .map_err(archive_err("packing the session's changed files"))?;
        files.sync_staged(&staged).map_err(io_err(&staged))?;
        files
            .save_state_changes(&changes)
            .map_err(io_err(files.dir()))
    }

    /// Send the session's own files: the staged delta when the store's
    /// index has room for it, else the whole staged set; queued whole when
    /// that fails, or right away when `behind` says why it must wait.
    async fn send_session_files(
        &self,
        files: &SessionFiles,
        record: &Record,
        behind: Option<&str>,
    ) -> Result<Delivery, WorkspaceError> {
        let key = self
            .config
            .keys
            .session_state(&record.workspace, &record.session);
        let whole = files.staged_state();
        if behind.is_some() || !whole.exists() {
            return self
                .send_file(files, record, Kind::State, &whole, &key, behind)
                .await;
        }
        let index = files
            .state_base()
            .map_err(io_err(files.dir()))?
            .and_then(|r| r.index);
        let changes = files.state_changes().map_err(io_err(files.dir()))?;
        let delta_path = files.staged_state_delta();
        let delta = changes
            .as_ref()
            .filter(|_| delta_path.exists())
            .map(|c| (delta_path.as_path(), c));
        match self
            .send_state(&record.workspace, &record.session, &whole, delta, index)
            .await
        {
            Ok((etag, true)) => Ok(Delivery::Uploaded { etag }),
            Ok((etag, false)) => Ok(Delivery::Appended { etag }),
            Err(e) => self.queue_file(record, Kind::State, &whole, &key, e.to_string()),
        }
    }

    /// Upload the staged file `staged` as `key` (the session's own: no
    /// condition), or queue it as `kind`: when the upload fails, or right
    /// away when `behind` says why it must wait.
    async fn send_file(
        &self,
        _files: &SessionFiles,
        record: &Record,
        kind: Kind,
        staged: &Path,
        key: &str,
        behind: Option<&str>,
    ) -> Result<Delivery, WorkspaceError> {
        if !staged.exists() {
            // Moved into the outbox just before an interruption.
            return Ok(queued_earlier(self.outbox.dir()));
        }
        let uploaded = match behind {
            Some(why) => Err(why.to_owned()),
            None => self
                .store
                .put_file(staged, key, PutCondition::None)
                .await
                .map_err(|e| e.to_string()),
        };
        match uploaded {
            Ok(meta) => Ok(Delivery::Uploaded { etag: meta.etag }),
            Err(reason) => self.queue_file(record, kind, staged, key, reason),
        }
    }

    /// Move the staged file into the outbox as `kind` for `key`.
    fn queue_file(
        &self,
        record: &Record,
        kind: Kind,
        staged: &Path,
        key: &str,
        reason: String,
    ) -> Result<Delivery, WorkspaceError> {
        tracing::warn!(key, "{} queued in the outbox: {reason}", kind.describe());
        let entry = self.entry(kind, record, key.to_owned(), &reason);
        let q = self
            .outbox
            .add(entry, None, |dest| fs::rename(staged, dest))
            .map_err(io_err(self.outbox.dir()))?;
        Ok(Delivery::Queued {
            reason,
            entry: q.dir,
        })
    }

    /// Publish the staged home, or queue it: when publishing fails, or right
    /// away when `behind` says why it must wait. `uncertain`: an earlier
    /// attempt may have landed, so on a conflict the store's version wins.
    async fn send_home(
        &self,
        files: &SessionFiles,
        record: &Record,
        behind: Option<&str>,
        uncertain: bool,
    ) -> Result<Delivery, WorkspaceError> {
        let staged = files.staged_home();
        if !staged.exists() {
            return Ok(queued_earlier(self.outbox.dir()));
        }
        let base = files.manifest().map_err(io_err(files.dir()))?;
        let shared = files.shared_base().map_err(io_err(files.dir()))?;
        let published = match behind {
            Some(why) => Err(why.to_owned()),
            None => self
                .publish_home(
                    &record.workspace,
                    &staged,
                    HomeBase {
                        manifest: &base,
                        shared: &shared,
                        etag: record.home_etag.clone(),
                    },
                    files.dir(),
                    uncertain,
                )
                .await
                .map_err(|e| e.to_string()),
        };
        match published {
            Ok(p) => Ok(match p.merge {
                None => Delivery::Uploaded { etag: p.meta.etag },
                Some(merge) => Delivery::Merged {
                    etag: p.meta.etag,
                    attempts: p.attempts,
                    merge,
                },
            }),
            Err(reason) => {
                let key = self.config.keys.home(&record.workspace);
                tracing::warn!(key, "claude-home queued in the outbox: {reason}");
                let entry = self.entry(Kind::Home, record, key, &reason);
                let q = self
                    .outbox
                    .add(entry, Some((&base, &shared)), |dest| {
                        fs::rename(&staged, dest)
                    })
                    .map_err(io_err(self.outbox.dir()))?;
                Ok(Delivery::Queued {
                    reason,
                    entry: q.dir,
                })
            }
        }
    }

    fn entry(&self, kind: Kind, record: &Record, key: String, reason: &str) -> Entry {
        Entry {
            kind,
            workspace: record.workspace.clone(),
            session: record.session.clone(),
            key,
            base_etag: if kind == Kind::Home {
                record.home_etag.clone()
            } else {
                None
            },
            created: 0,
            last_error: reason.to_owned(),
        }
    }
}

fn set_part(record: &mut Record, kind: Kind, part: Part) {
    if let Some(p) = record.teardown.as_mut() {
        match kind {
            Kind::Transcript => p.transcript = part,
            Kind::State => p.state = part,
            Kind::Home => p.home = part,
        }
    }
}

/// A staged file that is gone was moved into the outbox (the only thing
/// that moves it) before an interruption.
fn queued_earlier(outbox: &Path) -> Delivery {
    Delivery::Queued {
        reason: "queued before an interruption".into(),
        entry: outbox.to_path_buf(),
    }
}

/// Whether a path's name and depth let it into an archive (see
/// `publish::readable`); what does not is not scanned either.
fn publishable(rel: &str, limits: &crate::archive::Limits) -> bool {
    rel.len() <= limits.max_path_bytes as usize && rel.split('/').count() <= MAX_DEPTH
}

/// Whether `path` is a directory itself, not a symlink to one.
fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}
