//! Publishing a claude-home: upload a packed home under an ETag condition,
//! and on a lost race merge onto the newer home and try again. Also the
//! outbox flush, which publishes the same way.

use std::path::Path;

use super::jsonmerge::SharedBase;
use super::manifest::{self, Manifest};
use super::merge::{self, MergeReport, Winner};
use super::outbox::{Kind, Queued};
use super::owned;
use super::{archive_err, io_err, store_err, FlushReport, WorkspaceError, Workspaces};
use crate::archive::{EntryKind, FilterFn, Limits, Verdict};
use crate::s3::{ObjectMeta, PutCondition};

/// What a home was built on: the manifest and shared-file contents Setup
/// took, and the ETag of the home it started from (`None`: there was none).
pub(super) struct HomeBase<'a> {
    pub manifest: &'a Manifest,
    pub shared: &'a SharedBase,
    pub etag: Option<String>,
}

/// A home that reached the store.
pub(super) struct Published {
    pub meta: ObjectMeta,
    pub attempts: u32,
    pub merge: Option<MergeReport>,
}

impl Workspaces {
    /// Publish the packed home `packed` (staged by Teardown, or queued) for
    /// `workspace`, built on `base`, merging onto newer homes as needed
    /// (`theirs_may_be_newer`: the store's side of a conflict wins).
    /// `scratch` holds temporary trees. A published home is also copied on
    /// the server as the workspace's last good home.
    pub(super) async fn publish_home(
        &self,
        workspace: &str,
        packed: &Path,
        base: HomeBase<'_>,
        scratch: &Path,
        theirs_may_be_newer: bool,
    ) -> Result<Published, WorkspaceError> {
        let key = self.config.keys.home(workspace);
        let published = self
            .publish_merging(workspace, packed, base, scratch, theirs_may_be_newer)
            .await?;
        let good = self.config.keys.home_good(workspace);
        if let Err(e) = self.store.copy(&key, &good).await {
            tracing::warn!("keeping {key} as the last good home ({good}): {e}");
        }
        Ok(published)
    }

    async fn publish_merging(
        &self,
        workspace: &str,
        packed: &Path,
        base: HomeBase<'_>,
        scratch: &Path,
        theirs_may_be_newer: bool,
    ) -> Result<Published, WorkspaceError> {
        let HomeBase {
            manifest: base,
            shared,
            mut etag,
        } = base;
        let winner = if theirs_may_be_newer {
            Winner::Theirs
        } else {
            Winner::Mine
        };
        let key = self.config.keys.home(workspace);
        let cond = |etag: &Option<String>| match etag {
            Some(e) => PutCondition::IfMatch(e.clone()),
            None => PutCondition::IfNoneMatchAny,
        };
        let first = self
            .store
            .put_file(packed, &key, cond(&etag))
            .await
            .map_err(store_err(format!("uploading {key}")));
        match first {
            Ok(meta) => {
                return Ok(Published {
                    meta,
                    attempts: 1,
                    merge: None,
                })
            }
            Err(WorkspaceError::Store { source, .. }) if source.is_precondition_failed() => {}
            Err(e) => return Err(e),
        }

        // Lost the race: this session's tree and changes, from its archive.
        let unpacked = tempfile::Builder::new()
            .prefix("mine-")
            .tempdir_in(scratch)
            .map_err(io_err(scratch))?;
        let mine_root = unpacked.path();
        self.archiver
            .unpack_file(packed, mine_root, &self.config.unpack, None)
            .await
            .map_err(archive_err("unpacking this session's packed home"))?;
        let mine = manifest::scan(mine_root, None).map_err(io_err(mine_root))?;
        for attempt in 2..=self.config.merge_attempts.max(1) + 1 {
            let theirs = tempfile::Builder::new()
                .prefix("theirs-")
                .tempdir_in(scratch)
                .map_err(io_err(scratch))?;
            etag = match self.store.get(&key).await {
                Ok(obj) => {
                    let etag = obj.meta.etag.clone();
                    self.archiver
                        .unpack_sized(
                            obj.body,
                            Some(obj.meta.size),
                            theirs.path(),
                            &self.config.unpack,
                            None,
                        )
                        .await
                        .map_err(archive_err(format!("unpacking the newer {key}")))?;
                    etag
                }
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(store_err(format!("downloading {key}"))(e)),
            };
            let report = merge::apply(base, shared, mine_root, &mine, theirs.path(), winner)
                .map_err(io_err(theirs.path()))?;
            tracing::info!(
                workspace,
                attempt,
                written = report.written.len(),
                deleted = report.deleted.len(),
                conflicts = report.conflicts.len(),
                "merged this session's changes onto a newer claude-home"
            );
            match self.put_packed(theirs.path(), &key, cond(&etag)).await {
                Ok(meta) => {
                    return Ok(Published {
                        meta,
                        attempts: attempt,
                        merge: Some(report),
                    })
                }
                Err(WorkspaceError::Store { source, .. }) if source.is_precondition_failed() => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        Err(WorkspaceError::TooManyConflicts {
            workspace: workspace.to_owned(),
            attempts: self.config.merge_attempts,
        })
    }

    /// Pack the merged tree `root` (ccws's own scratch directory) into a
    /// file beside it and upload that file as `key` under `cond`: the upload
    /// starts only from a whole archive.
    async fn put_packed(
        &self,
        root: &Path,
        key: &str,
        cond: PutCondition,
    ) -> Result<ObjectMeta, WorkspaceError> {
        let scratch = root.parent().unwrap_or(root);
        let packed = tempfile::Builder::new()
            .prefix("merged-")
            .suffix(".tar.gz")
            .tempfile_in(scratch)
            .map_err(io_err(scratch))?
            .into_temp_path();
        let report = self
            .archiver
            .pack_file(root, &packed, &self.config.pack, None)
            .await
            .map_err(archive_err(format!("packing {}", root.display())))?;
        for s in &report.skipped {
            tracing::debug!(path = %s.path, reason = ?s.reason, detail = %s.detail, "left out of the home");
        }
        self.store
            .put_file(&packed, key, cond)
            .await
            .map_err(store_err(format!("uploading {key}")))
    }

    /// Deliver queued uploads (all, or one workspace's), oldest first.
    pub async fn flush(&self, workspace: Option<&str>) -> Result<FlushReport, WorkspaceError> {
        let mut report = FlushReport::default();
        let entries = self.outbox.list().map_err(io_err(self.outbox.dir()))?;
        if !entries
            .iter()
            .any(|q| workspace.is_none_or(|w| q.entry.workspace == w))
        {
            return Ok(report);
        }
        let _lock = self.outbox.lock().map_err(io_err(self.outbox.dir()))?;
        // Re-read under the lock: another process may have delivered some.
        let entries = self.outbox.list().map_err(io_err(self.outbox.dir()))?;
        // Homes are blocked per workspace, a session's objects per key: once an
        // older one is stuck, a newer one must not land before it (it would
        // be overwritten, or its changes undone, when the older one does).
        let mut blocked_homes: Vec<String> = Vec::new();
        let mut blocked_keys: Vec<String> = Vec::new();
        for mut q in entries {
            if workspace.is_some_and(|w| q.entry.workspace != w) {
                continue;
            }
            let blocked = match q.entry.kind {
                Kind::Home => blocked_homes.contains(&q.entry.workspace),
                Kind::Transcript | Kind::State => blocked_keys.contains(&q.entry.key),
            };
            if blocked {
                // An older entry for the same object is stuck: keep the order.
                report.remaining += 1;
                continue;
            }
            match self.deliver(&q).await {
                Ok(()) => {
                    tracing::info!(key = %q.entry.key, "delivered a queued upload");
                    q.remove().map_err(io_err(self.outbox.dir()))?;
                    report.delivered += 1;
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::warn!(key = %q.entry.key, "queued upload still failing: {why}");
                    let _ = q.note_failure(&why);
                    match q.entry.kind {
                        Kind::Home => blocked_homes.push(q.entry.workspace.clone()),
                        Kind::Transcript | Kind::State => blocked_keys.push(q.entry.key.clone()),
                    }
                    report.errors.push(format!("{}: {why}", q.entry.key));
                    report.remaining += 1;
                }
            }
        }
        Ok(report)
    }

    async fn deliver(&self, q: &Queued) -> Result<(), WorkspaceError> {
        match q.entry.kind {
            Kind::Transcript | Kind::State => {
                self.store
                    .put_file(&q.payload(), &q.entry.key, PutCondition::None)
                    .await
                    .map_err(store_err(format!("uploading {}", q.entry.key)))?;
            }
            Kind::Home => {
                let base = q.base().map_err(io_err(&q.dir))?;
                let shared = q.shared_base().map_err(io_err(&q.dir))?;
                // Queued homes are older than what the store may hold now,
                // and an earlier delivery may have landed: theirs wins.
                let base = HomeBase {
                    manifest: &base,
                    shared: &shared,
                    etag: q.entry.base_etag.clone(),
                };
                self.publish_home(&q.entry.workspace, &q.payload(), base, &q.dir, true)
                    .await?;
            }
        }
        Ok(())
    }
}

/// What of a session's tree goes into the shared home: shared paths only
/// (not the session `id`'s own, whose project directory is
/// `projects/<project>`, nor those of the sessions `moved` out of the
/// home), less what the cleanup `pruned`.
#[derive(Debug, Clone)]
pub(super) struct HomeRule {
    pub id: String,
    pub project: String,
    pub moved: Vec<String>,
    pub pruned: std::collections::BTreeSet<String>,
}

impl HomeRule {
    /// Whether `rel` goes into the home.
    pub fn keeps(&self, rel: &str) -> bool {
        owned::in_home(rel, &self.id, &self.project, &self.moved) && !self.pruned.contains(rel)
    }

    /// The pack filter: what [`HomeRule::keeps`], and at the paths in
    /// `dirs_only` (`projects` down to the memory directory, which every
    /// later setup works with) nothing but a directory, so that one turn
    /// cannot publish a home that no later setup can use.
    pub fn filter(self, dirs_only: Vec<String>) -> FilterFn {
        Box::new(move |rel: &str, kind: EntryKind| {
            if !self.keeps(rel) {
                return Verdict::Exclude;
            }
            if kind != EntryKind::Directory && dirs_only.iter().any(|d| d == rel) {
                tracing::warn!(path = rel, "left out of the home: it must be a directory");
                return Verdict::Exclude;
            }
            Verdict::Keep
        })
    }
}

/// The deepest nesting a published home or session archive holds (a tree
/// nested thousands of levels deep cannot be walked, let alone named).
pub(super) const MAX_DEPTH: usize = 128;

/// What ccws publishes, ccws can read back: wraps a pack filter so that
/// what would break the unpack `limits` later (a path too long, more
/// entries, a file or a total too large) is left out of the archive now,
/// with a warning, instead of making every later setup fail. Sizes are
/// read from `root` as the guest will pack it (without following links).
pub(super) fn readable(root: &Path, limits: Limits, mut inner: FilterFn) -> FilterFn {
    let root = root.to_path_buf();
    let (mut entries, mut total) = (0u64, 0u64);
    Box::new(move |rel: &str, kind: EntryKind| {
        let verdict = inner(rel, kind);
        if verdict == Verdict::Exclude {
            return verdict;
        }
        let skip = |why: String| {
            tracing::warn!(
                path = rel,
                "left out: {why} (it could not be unpacked again)"
            );
            Verdict::Exclude
        };
        if rel.len() > limits.max_path_bytes as usize {
            return skip(format!("its path is over {} bytes", limits.max_path_bytes));
        }
        if rel.split('/').count() > MAX_DEPTH {
            return skip(format!("it is nested over {MAX_DEPTH} levels deep"));
        }
        if entries >= limits.max_entries {
            return skip(format!("over {} entries", limits.max_entries));
        }
        if kind == EntryKind::File {
            let size = std::fs::symlink_metadata(root.join(rel)).map_or(0, |m| m.len());
            if size > limits.max_file_bytes {
                return skip(format!("{size} bytes, over {}", limits.max_file_bytes));
            }
            if total.saturating_add(size) > limits.max_total_bytes {
                return skip(format!("over {} bytes in all", limits.max_total_bytes));
            }
            total += size;
        }
        entries += 1;
        verdict
    })
}
