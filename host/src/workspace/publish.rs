//! Publishing a claude-home: stream the guest's pack straight into the store
//! under an ETag condition, and on a lost race merge onto the newer home and
//! try again. Also the outbox flush, which publishes the same way.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;

use super::manifest::{self, Manifest};
use super::merge::{self, MergeReport, Winner};
use super::outbox::{Kind, Queued};
use super::{archive_err, io_err, store_err, FlushReport, WorkspaceError, Workspaces};
use crate::archive::{EntryKind, FilterFn, Verdict};
use crate::s3::{ObjectMeta, PutCondition};

/// Pipe size between the guest's pack and the upload.
const PIPE: usize = 1 << 20;

/// A home that reached the store.
pub(super) struct Published {
    pub meta: ObjectMeta,
    pub attempts: u32,
    pub merge: Option<MergeReport>,
}

/// Where the first attempt's bytes come from: an already-packed home
/// (staged by Teardown, or queued); on conflict it is unpacked to merge.
pub(super) enum Start<'a> {
    /// This packed home.
    Packed(&'a Path),
}

impl Workspaces {
    /// Publish a home for `workspace` built on `base` / `etag`, merging onto
    /// newer homes as needed (`theirs_may_be_newer`: the store's side of a
    /// conflict wins). `scratch` holds temporary trees. A published home is
    /// also copied on the server as the workspace's last good home.
    pub(super) async fn publish_home(
        &self,
        workspace: &str,
        start: Start<'_>,
        base: &Manifest,
        etag: Option<String>,
        scratch: &Path,
        theirs_may_be_newer: bool,
    ) -> Result<Published, WorkspaceError> {
        let key = self.config.keys.home(workspace);
        let published = self
            .publish_merging(workspace, start, base, etag, scratch, theirs_may_be_newer)
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
        start: Start<'_>,
        base: &Manifest,
        mut etag: Option<String>,
        scratch: &Path,
        theirs_may_be_newer: bool,
    ) -> Result<Published, WorkspaceError> {
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
        let first = match start {
            Start::Packed(file) => self
                .store
                .put_file(file, &key, cond(&etag))
                .await
                .map_err(store_err(format!("uploading {key}"))),
        };
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

        // Lost the race: work out this session's own tree and changes.
        let unpacked;
        let (mine_root, exclude) = match start {
            Start::Packed(file) => {
                unpacked = tempfile::Builder::new()
                    .prefix("mine-")
                    .tempdir_in(scratch)
                    .map_err(io_err(scratch))?;
                self.archiver
                    .unpack_file(file, unpacked.path(), &self.config.unpack, None)
                    .await
                    .map_err(archive_err("unpacking the queued home"))?;
                (unpacked.path().to_path_buf(), None)
            }
        };
        let mine = manifest::scan(&mine_root, exclude).map_err(io_err(&mine_root))?;
        for attempt in 2..=self.config.merge_attempts.max(1) + 1 {
            let theirs = tempfile::Builder::new()
                .prefix("theirs-")
                .tempdir_in(scratch)
                .map_err(io_err(scratch))?;
            etag = match self.store.get(&key).await {
                Ok(obj) => {
                    let etag = obj.meta.etag.clone();
                    self.archiver
                        .unpack(obj.body, theirs.path(), &self.config.unpack, None)
                        .await
                        .map_err(archive_err(format!("unpacking the newer {key}")))?;
                    etag
                }
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(store_err(format!("downloading {key}"))(e)),
            };
            let report = merge::apply(base, &mine_root, &mine, theirs.path(), winner)
                .map_err(io_err(theirs.path()))?;
            tracing::info!(
                workspace,
                attempt,
                written = report.written.len(),
                deleted = report.deleted.len(),
                conflicts = report.conflicts.len(),
                "merged this session's changes onto a newer claude-home"
            );
            match self
                .put_packed(theirs.path(), None, &key, cond(&etag))
                .await
            {
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

    /// Pack `root` in the guest and stream it into the store as `key`. A pack
    /// failure fails the upload (never a truncated object).
    pub(super) async fn put_packed(
        &self,
        root: &Path,
        exclude: Option<&str>,
        key: &str,
        cond: PutCondition,
    ) -> Result<ObjectMeta, WorkspaceError> {
        let (writer, reader) = tokio::io::duplex(PIPE);
        let (done_tx, done_rx) = oneshot::channel();
        let filter = exclude.map(exclude_subtree);
        let archiver = self.archiver.clone();
        let options = self.config.pack.clone();
        let root_owned = root.to_path_buf();
        let packer = tokio::spawn(async move {
            let res = archiver.pack(&root_owned, writer, &options, filter).await;
            let signal = res.as_ref().map(|_| ()).map_err(|e| e.to_string());
            let _ = done_tx.send(signal);
            res
        });
        let guarded = UntilPacked {
            inner: reader,
            done: done_rx,
        };
        let put = self.store.put_stream(key, guarded, cond).await;
        let packed = packer.await.map_err(|e| WorkspaceError::Io {
            path: root.to_path_buf(),
            source: io::Error::other(e),
        })?;
        // A pack error is the root cause of a failed upload: report it first.
        let (report, _) = packed.map_err(archive_err(format!("packing {}", root.display())))?;
        for s in &report.skipped {
            tracing::debug!(path = %s.path, reason = ?s.reason, detail = %s.detail, "left out of the home");
        }
        put.map_err(store_err(format!("uploading {key}")))
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
        // Homes are blocked per workspace, transcripts per key: once an
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
                Kind::Transcript => blocked_keys.contains(&q.entry.key),
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
                        Kind::Transcript => blocked_keys.push(q.entry.key.clone()),
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
            Kind::Transcript => {
                self.store
                    .put_file(&q.payload(), &q.entry.key, PutCondition::None)
                    .await
                    .map_err(store_err(format!("uploading {}", q.entry.key)))?;
            }
            Kind::Home => {
                let base = q.base().map_err(io_err(&q.dir))?;
                // Queued homes are older than what the store may hold now,
                // and an earlier delivery may have landed: theirs wins.
                self.publish_home(
                    &q.entry.workspace,
                    Start::Packed(&q.payload()),
                    &base,
                    q.entry.base_etag.clone(),
                    &q.dir,
                    true,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// A pack filter that leaves out the subtree `sub` (relative to the root).
pub(super) fn exclude_subtree(sub: &str) -> FilterFn {
    home_filter(sub, &[])
}

/// The filter a session's home is packed with: it leaves out the session's
/// own subtree `sub`, and anything but a directory at the paths in
/// `dirs_only` (such as `projects` and the memory directory, which every
/// later setup must be able to create below), so that one turn cannot
/// publish a home that no later setup can use.
pub(super) fn home_filter(sub: &str, dirs_only: &[String]) -> FilterFn {
    let sub = sub.to_owned();
    let dirs_only = dirs_only.to_vec();
    Box::new(move |rel: &str, kind: EntryKind| {
        if rel == sub {
            return Verdict::Exclude;
        }
        if kind != EntryKind::Directory && dirs_only.iter().any(|d| d == rel) {
            tracing::warn!(path = rel, "left out of the home: it must be a directory");
            return Verdict::Exclude;
        }
        Verdict::Keep
    })
}

/// Yields the pipe's bytes, but turns its end into an error unless the pack
/// that feeds it succeeded: an upload must never commit a truncated archive.
struct UntilPacked<R> {
    inner: R,
    done: oneshot::Receiver<Result<(), String>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for UntilPacked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        match ready!(Pin::new(&mut self.done).poll(cx)) {
            Ok(Ok(())) => Poll::Ready(Ok(())),
            Ok(Err(e)) => Poll::Ready(Err(io::Error::other(format!("packing failed: {e}")))),
            Err(_) => Poll::Ready(Err(io::Error::other("packing stopped before finishing"))),
        }
    }
}
