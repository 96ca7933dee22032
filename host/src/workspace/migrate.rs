//! Homes written before sessions kept their own files apart carry other
//! sessions' todos, file history, debug logs and project directories. The
//! first Setup that finds them moves each session's files to that
//! session's own object, and the home is published without them.

use std::fs;

use super::journal::SessionFiles;
use super::owned::{self, PathOwner};
use super::untrusted;
use super::{archive_err, io_err, store_err, Layout, WorkspaceError, Workspaces};
use crate::archive::{EntryKind, Verdict};
use crate::s3::PutCondition;

impl Workspaces {
    /// Other sessions' own files that a home still carries (homes written
    /// before sessions kept their files apart): each session's are packed
    /// and stored as that session's own object (unless it has one already),
    /// its transcript too when the store has none, its old per-project
    /// memory joins the workspace's, and then they are removed from this
    /// tree, so that the home is published without them. A session whose
    /// files cannot be stored keeps them in the home until a later turn.
    /// Returns the sessions moved.
    pub(super) async fn move_out_others(
        &self,
        layout: &Layout,
        workspace: &str,
        session: &str,
        files: &SessionFiles,
    ) -> Result<Vec<String>, WorkspaceError> {
        use std::collections::BTreeMap;
        let root = &layout.claude_dir;
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for top in owned::SESSION_ROOTS {
            let dir = root.join(top);
            if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let rel = format!("{top}/{name}");
                let id = match owned::owner(&rel) {
                    PathOwner::Session(id) if id != session => id.to_owned(),
                    PathOwner::Project(p) if p != layout.project_name() => {
                        match owned::project_session(p) {
                            Some(id) if id != session => id.to_owned(),
                            _ => continue,
                        }
                    }
                    _ => continue,
                };
                if super::ids::validate("session", &id).is_ok() {
                    found.entry(id).or_default().push(rel);
                }
            }
        }
        let mut moved = Vec::new();
        for (id, rels) in found {
            match self.move_out(layout, workspace, &id, &rels, files).await {
                Ok(()) => moved.push(id),
                Err(e) => tracing::warn!(
                    other = id,
                    "another session's files in the home stay there for now: {e}"
                ),
            }
        }
        if !moved.is_empty() {
            tracing::info!(
                sessions = moved.len(),
                "moved other sessions' files out of the home into their own objects"
            );
        }
        Ok(moved)
    }

    async fn move_out(
        &self,
        layout: &Layout,
        workspace: &str,
        id: &str,
        rels: &[String],
        files: &SessionFiles,
    ) -> Result<(), WorkspaceError> {
        let root = &layout.claude_dir;
        let keys = &self.config.keys;
        // Its transcript, where a home carried one and the store has none.
        for rel in rels.iter().filter(|r| r.starts_with("projects/")) {
            let t = root.join(rel).join(format!("{id}.jsonl"));
            if fs::symlink_metadata(&t).is_ok_and(|m| m.is_file()) {
                let key = keys.transcript(workspace, id);
                match self
                    .store
                    .put_file(&t, &key, PutCondition::IfNoneMatchAny)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_precondition_failed() => {}
                    Err(e) => return Err(store_err(format!("uploading {key}"))(e)),
                }
            }
            // Its old per-project memory joins the workspace's.
            let memory = root.join(rel).join("memory");
            for e in fs::read_dir(&memory).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let from = format!("{rel}/memory/{name}");
                let to = format!("{}/{name}", layout.shared_memory);
                if !untrusted::move_within(root, &from, &to).map_err(io_err(&memory))? {
                    let to = format!("{}/{id}-{name}", layout.shared_memory);
                    untrusted::move_within(root, &from, &to).map_err(io_err(&memory))?;
                }
            }
        }
        let staged = files.dir().join(format!("moved-{id}.tar.gz"));
        let wanted: Vec<String> = rels.to_vec();
        let filter = Box::new(move |rel: &str, _kind: EntryKind| {
            let keep = owned::is_way_to(rel)
                || wanted.iter().any(|w| {
                    rel == w
                        || rel
                            .strip_prefix(w.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                });
            if keep {
                Verdict::Keep
            } else {
                Verdict::Exclude
            }
        });
        self.archiver
            .pack_file(root, &staged, &self.config.pack, Some(filter))
            .await
            .map_err(archive_err(format!("packing session {id}'s files")))?;
        let key = keys.session_state(workspace, id);
        let put = self
            .store
            .put_file(&staged, &key, PutCondition::IfNoneMatchAny)
            .await;
        let _ = fs::remove_file(&staged);
        match put {
            Ok(_) => {}
            // It has its own already: what the home carried is older.
            Err(e) if e.is_precondition_failed() => {}
            Err(e) => return Err(store_err(format!("uploading {key}"))(e)),
        }
        for rel in rels {
            let path = root.join(rel);
            let res = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(_) => Ok(()),
            };
            res.map_err(io_err(&path))?;
        }
        Ok(())
    }
}
