//! Setup: create the private temp tree, bring the workspace's claude-home and
//! the session's transcript into it, and record what Teardown needs.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use super::manifest;
use super::outbox::Kind;
use super::session::{self, Owner, SessionState};
use super::{
    archive_err, io_err, private_dir, store_err, HomeSource, Layout, SetupReport, TranscriptSource,
    Workspace, WorkspaceError, Workspaces,
};

impl Workspaces {
    /// Set up `session` of `workspace`, owned by the process `owner` (the
    /// session counts as abandoned once that process is gone). On any error
    /// the temp tree is removed again.
    pub async fn setup(
        &self,
        workspace: &str,
        session: &str,
        owner: Owner,
    ) -> Result<Workspace, WorkspaceError> {
        let layout = self.layout(workspace, session)?;
        let _lock = self.session_lock(&layout)?;

        // Deliver what earlier turns on this machine could not.
        let flushed = match self.flush(Some(workspace)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("outbox flush failed: {e}");
                Default::default()
            }
        };

        let recovered = self.recover(&layout, session).await?;

        private_dir(&layout.temp_dir).map_err(io_err(&layout.temp_dir))?;
        match self.populate(&layout, workspace, session, owner).await {
            Ok((home, transcript, home_etag)) => Ok(Workspace {
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
                if let Err(rm) = fs::remove_dir_all(&layout.temp_dir) {
                    tracing::warn!(dir = %layout.temp_dir.display(), "removing the temp tree after a failed setup: {rm}");
                }
                Err(e)
            }
        }
    }

    /// A leftover tree of this session: refuse if its owner lives, else save
    /// what it holds (it is an abandoned turn) and clear it. A tree whose
    /// session file is unreadable or names other or invalid ids is kept.
    async fn recover(
        &self,
        layout: &Layout,
        session: &str,
    ) -> Result<Option<super::TeardownReport>, WorkspaceError> {
        if !layout.temp_dir.exists() {
            return Ok(None);
        }
        let state = match Self::trusted_state(layout, session)? {
            Some(state) => state,
            // Setup never got to write it: the agent never ran, nothing to save.
            None => {
                fs::remove_dir_all(&layout.temp_dir).map_err(io_err(&layout.temp_dir))?;
                return Ok(None);
            }
        };
        if state.owner.is_alive() {
            return Err(WorkspaceError::SessionBusy {
                session: session.to_owned(),
                pid: state.owner.pid,
                temp_dir: layout.temp_dir.clone(),
            });
        }
        tracing::warn!(
            dir = %layout.temp_dir.display(),
            pid = state.owner.pid,
            "recovering an abandoned session (its owner is gone)"
        );
        self.finish(layout, &state).await.map(Some)
    }

    async fn populate(
        &self,
        layout: &Layout,
        workspace: &str,
        session: &str,
        owner: Owner,
    ) -> Result<(HomeSource, TranscriptSource, Option<String>), WorkspaceError> {
        for dir in [&layout.claude_dir, &layout.project_dir, &layout.meta_dir] {
            private_dir(dir).map_err(io_err(dir))?;
        }
        let queued = self.outbox.list().map_err(io_err(self.outbox.dir()))?;

        // The home: a newer one still queued here wins over the store's.
        let queued_home = queued
            .iter()
            .rev()
            .find(|q| q.entry.kind == Kind::Home && q.entry.workspace == workspace);
        let key = self.config.keys.home(workspace);
        let (home, home_etag) = if let Some(q) = queued_home {
            self.archiver
                .unpack_file(&q.payload(), &layout.claude_dir, &self.config.unpack, None)
                .await
                .map_err(archive_err("unpacking the queued claude-home"))?;
            (HomeSource::Outbox, q.entry.base_etag.clone())
        } else {
            match self.store.get(&key).await {
                Ok(obj) => {
                    let etag = obj.meta.etag.clone();
                    let r = self
                        .archiver
                        .unpack(obj.body, &layout.claude_dir, &self.config.unpack, None)
                        .await
                        .map_err(archive_err(format!("downloading and unpacking {key}")))?;
                    for s in &r.skipped {
                        tracing::warn!(path = %s.path, reason = ?s.reason, "claude-home entry not restored");
                    }
                    (
                        HomeSource::Store {
                            files: r.files,
                            bytes: r.bytes,
                        },
                        etag,
                    )
                }
                Err(e) if e.is_not_found() => (HomeSource::Empty, None),
                Err(e) => return Err(store_err(format!("downloading {key}"))(e)),
            }
        };

        // The transcript.
        let tkey = self.config.keys.transcript(workspace, session);
        let queued_transcript = queued
            .iter()
            .rev()
            .find(|q| q.entry.kind == Kind::Transcript && q.entry.key == tkey);
        let transcript = if let Some(q) = queued_transcript {
            if let Some(dir) = layout.transcript.parent() {
                private_dir(dir).map_err(io_err(dir))?;
            }
            fs::copy(q.payload(), &layout.transcript).map_err(io_err(&layout.transcript))?;
            TranscriptSource::Outbox
        } else {
            match self.store.download_file(&tkey, &layout.transcript).await {
                Ok(_) => TranscriptSource::Store,
                Err(e) if e.is_not_found() => TranscriptSource::New,
                Err(e) => return Err(store_err(format!("downloading {tkey}"))(e)),
            }
        };

        private_dir(&layout.memory_dir).map_err(io_err(&layout.memory_dir))?;
        let manifest = manifest::scan(&layout.claude_dir, Some(&layout.session_subtree))
            .map_err(io_err(&layout.claude_dir))?;
        let state = SessionState {
            workspace: workspace.to_owned(),
            session: session.to_owned(),
            owner,
            home_etag: home_etag.clone(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        };
        session::save(&layout.meta_dir, &state, &manifest).map_err(io_err(&layout.meta_dir))?;
        Ok((home, transcript, home_etag))
    }
}
