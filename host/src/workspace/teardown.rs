//! Teardown: upload the transcript, publish the home without this session's
//! subtree, and remove the temp tree. A failed upload never fails the turn
//! and never loses data: it is queued in the outbox.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};

use super::manifest;
use super::outbox::{Entry, Kind};
use super::publish::{exclude_subtree, Start};
use super::session::{self, SessionState};
use super::untrusted;
use super::{archive_err, io_err, Delivery, Layout, TeardownReport, WorkspaceError, Workspaces};
use crate::s3::PutCondition;

/// Why a home is queued without trying to upload it.
const HOME_BEHIND: &str =
    "an older claude-home of this workspace is still queued; queued behind it";
/// Why a transcript is queued without trying to upload it.
const TRANSCRIPT_BEHIND: &str =
    "an older copy of this transcript is still queued; queued behind it";

impl Workspaces {
    /// Tear down `session` of `workspace` (set up earlier, possibly by another process).
    pub async fn teardown(
        &self,
        workspace: &str,
        session: &str,
    ) -> Result<TeardownReport, WorkspaceError> {
        let layout = self.layout(workspace, session)?;
        let _lock = self.session_lock(&layout)?;
        let state =
            Self::trusted_state(&layout, session)?.ok_or_else(|| WorkspaceError::NoSession {
                session: session.to_owned(),
                temp_dir: layout.temp_dir.clone(),
            })?;
        if state.workspace != workspace {
            return Err(WorkspaceError::WrongWorkspace {
                session: session.to_owned(),
                requested: workspace.to_owned(),
                actual: state.workspace,
            });
        }
        self.finish(&layout, &state).await
    }

    /// Deliver (or queue) the session's state, then remove its tree. If the
    /// state can be neither uploaded nor queued, the tree is kept.
    pub(super) async fn finish(
        &self,
        layout: &Layout,
        state: &SessionState,
    ) -> Result<TeardownReport, WorkspaceError> {
        // Older queued homes of this workspace (and older copies of this
        // transcript) must land first: this session may have started from
        // one of them, and replaying it afterwards would undo this
        // session's newer changes to the same files.
        if let Err(e) = self.flush(Some(&state.workspace)).await {
            tracing::warn!("outbox flush before teardown failed: {e}");
        }
        // Whatever is still queued must stay older than what this session
        // writes to the same object: queue behind it instead of uploading.
        let tkey = self
            .config
            .keys
            .transcript(&state.workspace, &state.session);
        let queued = self.outbox.list().map_err(|e| WorkspaceError::Unsaved {
            temp_dir: layout.temp_dir.clone(),
            reason: format!("reading the outbox {}: {e}", self.outbox.dir().display()),
        })?;
        let transcript_behind = queued
            .iter()
            .any(|q| q.entry.kind == Kind::Transcript && q.entry.key == tkey)
            .then_some(TRANSCRIPT_BEHIND);
        let home_behind = queued
            .iter()
            .any(|q| q.entry.kind == Kind::Home && q.entry.workspace == state.workspace)
            .then_some(HOME_BEHIND);
        let transcript = self
            .deliver_transcript(layout, state, tkey, transcript_behind)
            .await;
        let home = self.deliver_home(layout, state, home_behind).await;
        let (transcript, home) = match (transcript, home) {
            (Ok(t), Ok(h)) => (t, h),
            (Err(e), _) | (_, Err(e)) => {
                return Err(WorkspaceError::Unsaved {
                    temp_dir: layout.temp_dir.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let removed = match fs::remove_dir_all(&layout.temp_dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(dir = %layout.temp_dir.display(), "removing the temp tree: {e}");
                false
            }
        };
        Ok(TeardownReport {
            transcript,
            home,
            removed,
        })
    }

    /// Upload the transcript as `key`, or queue it: when the upload fails,
    /// or right away when `behind` says why it must wait.
    async fn deliver_transcript(
        &self,
        layout: &Layout,
        state: &SessionState,
        key: String,
        behind: Option<&str>,
    ) -> Result<Delivery, WorkspaceError> {
        let path = &layout.transcript;
        // Opened once: the upload and the outbox copy read this handle, so
        // the agent cannot swap the path for a symlink after the check.
        let file = match untrusted::open_plain(&layout.temp_dir, path) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(Delivery::Missing),
            Err(refusal) => {
                let reason = refusal.to_string();
                tracing::warn!(
                    path = %path.display(),
                    "transcript refused, not uploaded, and discarded with the session tree \
                     (it must be a regular file): {reason}"
                );
                return Ok(Delivery::Refused { reason });
            }
        };
        let mut copy = file.try_clone().map_err(io_err(path))?;
        let uploaded = match behind {
            Some(why) => Err(why.to_owned()),
            None => self
                .store
                .put_opened(file, &key, PutCondition::None)
                .await
                .map_err(|e| e.to_string()),
        };
        match uploaded {
            Ok(meta) => Ok(Delivery::Uploaded { etag: meta.etag }),
            Err(reason) => {
                tracing::warn!(key, "transcript queued in the outbox: {reason}");
                let q = self
                    .outbox
                    .add(
                        self.entry(Kind::Transcript, state, key, &reason),
                        None,
                        |dest| {
                            // The clone shares the upload's offset: from the start.
                            copy.seek(SeekFrom::Start(0))?;
                            io::copy(&mut copy, &mut File::create_new(dest)?).map(|_| ())
                        },
                    )
                    .map_err(io_err(self.outbox.dir()))?;
                Ok(Delivery::Queued {
                    reason,
                    entry: q.dir,
                })
            }
        }
    }

    /// Publish the home, or queue it: when publishing fails, or right away
    /// when `behind` says why it must wait.
    async fn deliver_home(
        &self,
        layout: &Layout,
        state: &SessionState,
        behind: Option<&str>,
    ) -> Result<Delivery, WorkspaceError> {
        let base = session::load_manifest(&layout.meta_dir).map_err(io_err(&layout.meta_dir))?;
        let subtree = layout.session_subtree.as_str();
        let mine = manifest::scan(&layout.claude_dir, Some(subtree))
            .map_err(io_err(&layout.claude_dir))?;
        if mine == base && (state.home_etag.is_some() || mine.is_empty()) {
            return Ok(Delivery::Unchanged);
        }
        let start = Start::Dir {
            root: &layout.claude_dir,
            exclude: Some(subtree),
        };
        let published = match behind {
            Some(why) => Err(why.to_owned()),
            None => self
                .publish_home(
                    &state.workspace,
                    start,
                    &base,
                    state.home_etag.clone(),
                    &layout.meta_dir,
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
                let key = self.config.keys.home(&state.workspace);
                tracing::warn!(key, "claude-home queued in the outbox: {reason}");
                crate::workspace::private_dir(self.outbox.dir())
                    .map_err(io_err(self.outbox.dir()))?;
                // A unique staging name: concurrent teardowns may queue at once.
                let staging = tempfile::Builder::new()
                    .prefix(".payload-")
                    .tempfile_in(self.outbox.dir())
                    .map_err(io_err(self.outbox.dir()))?
                    .into_temp_path();
                let payload = staging.to_path_buf();
                let filter = exclude_subtree(subtree);
                self.archiver
                    .pack_file(
                        &layout.claude_dir,
                        &payload,
                        &self.config.pack,
                        Some(filter),
                    )
                    .await
                    .map_err(archive_err("packing the claude-home for the outbox"))?;
                let q = self
                    .outbox
                    .add(
                        self.entry(Kind::Home, state, key, &reason),
                        Some(&base),
                        |dest| fs::rename(&payload, dest),
                    )
                    .map_err(io_err(self.outbox.dir()))?;
                Ok(Delivery::Queued {
                    reason,
                    entry: q.dir,
                })
            }
        }
    }

    fn entry(&self, kind: Kind, state: &SessionState, key: String, reason: &str) -> Entry {
        Entry {
            kind,
            workspace: state.workspace.clone(),
            session: state.session.clone(),
            key,
            base_etag: if kind == Kind::Home {
                state.home_etag.clone()
            } else {
                None
            },
            created: 0,
            last_error: reason.to_owned(),
        }
    }
}
