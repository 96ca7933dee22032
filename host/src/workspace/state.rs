//! A session's own files besides its transcript, in the store, sent by what
//! changed: the whole set as of the last compaction is
//! `sessions/<id>/state.tar.gz`; each later turn that changed something
//! adds one delta `sessions/<id>/state/<n>.tar.gz` holding the files it
//! added or rewrote whole and, for a file it only appended to (a debug log),
//! just the appended bytes; the index `sessions/<id>/state.json` lists the
//! deltas that extend that exact whole object (by its ETag), with the
//! appends and the deletions. The index is written last. Every
//! [`COMPACT_AFTER`] deltas, or once they outweigh the whole set, a turn
//! uploads the whole set again (Teardown packs it every turn it changed, so
//! that a queued upload is always whole).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::manifest::{Item, Manifest};
use super::{io_err, store_err, WorkspaceError, Workspaces};
use crate::s3::PutCondition;

/// How many deltas an index holds before a turn compacts.
pub(crate) const COMPACT_AFTER: usize = 16;

/// The deltas that extend one whole state object.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Index {
    /// The ETag of the whole object the deltas extend.
    pub base_etag: Option<String>,
    /// Its size.
    pub base_len: u64,
    /// The deltas, in order.
    pub deltas: Vec<Delta>,
}

/// One turn's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Delta {
    /// Its object key.
    pub key: String,
    /// Its size.
    pub len: u64,
    /// Files in it that are tails: appended at this offset.
    pub appends: BTreeMap<String, u64>,
    /// Files the turn deleted.
    pub deleted: Vec<String>,
}

/// What Setup restored, for Teardown to tell appends from rewrites.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Restored {
    /// Every restored file's length.
    pub sizes: BTreeMap<String, u64>,
    /// The index it was read with.
    pub index: Option<Index>,
}

/// A turn's changes, staged as a tree of the files to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Changes {
    /// Files appended to: their offset.
    pub appends: BTreeMap<String, u64>,
    /// Files deleted.
    pub deleted: Vec<String>,
    /// Bytes staged.
    pub bytes: u64,
}

/// Stage in `out` what changed in `root` between `base` (with `sizes`) and
/// `mine`: new or rewritten files whole, files that only grew as their
/// tails. Files are read without following a symlink.
pub(crate) fn stage_changes(
    root: &Path,
    base: &Manifest,
    sizes: &BTreeMap<String, u64>,
    mine: &Manifest,
    out: &Path,
) -> io::Result<Changes> {
    let mut changes = Changes::default();
    for (rel, item) in mine {
        if base.get(rel) == Some(item) || !matches!(item, Item::File { .. }) {
            continue;
        }
        let Ok(Some(mut file)) = super::untrusted::open_plain(root, &root.join(rel)) else {
            continue;
        };
        let len = file.metadata()?.len();
        let offset = match (base.get(rel), sizes.get(rel)) {
            (Some(Item::File { sha256, .. }), Some(&old)) if old <= len && old > 0 => {
                let (_, sha) = prefix_sha(&mut file, old)?;
                (&sha == sha256).then_some(old)
            }
            _ => None,
        };
        let dest = out.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        file.seek(SeekFrom::Start(offset.unwrap_or(0)))?;
        let mut w = fs::File::create(&dest)?;
        changes.bytes += io::copy(&mut file.take(len - offset.unwrap_or(0)), &mut w)?;
        if let Some(o) = offset {
            changes.appends.insert(rel.clone(), o);
        }
    }
    for (rel, item) in base {
        if matches!(item, Item::File { .. }) && !mine.contains_key(rel) {
            changes.deleted.push(rel.clone());
        }
    }
    Ok(changes)
}

fn prefix_sha(file: &mut fs::File, len: u64) -> io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((len - left, hex::encode(hasher.finalize())))
}

/// Apply a delta unpacked in `scratch` onto `root`: tails appended (the
/// file must be as long as the offset), other files moved into place,
/// deletions made.
pub(crate) fn apply_delta(root: &Path, scratch: &Path, delta: &Delta) -> io::Result<()> {
    let mut files = Vec::new();
    let mut stack = vec![scratch.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)?.flatten() {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                files.push(e.path());
            }
        }
    }
    for path in files {
        let Ok(rel) = path.strip_prefix(scratch) else {
            continue;
        };
        let rel_s = rel.to_string_lossy().into_owned();
        let dest = root.join(rel);
        match delta.appends.get(&rel_s) {
            Some(&offset) => {
                let mut out = fs::OpenOptions::new().append(true).open(&dest)?;
                let have = out.metadata()?.len();
                if have != offset {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{rel_s}: {have} bytes where its delta appends at {offset}"),
                    ));
                }
                io::copy(&mut fs::File::open(&path)?, &mut out)?;
                out.flush()?;
            }
            None => {
                if let Some(parent) = dest.parent() {
                    crate::durable::private_dir(parent)?;
                }
                fs::rename(&path, &dest)?;
            }
        }
    }
    for rel in &delta.deleted {
        let _ = fs::remove_file(root.join(rel));
    }
    Ok(())
}

impl Workspaces {
    /// The state index of `session`, if there is a readable one.
    pub(crate) async fn read_state_index(
        &self,
        workspace: &str,
        session: &str,
    ) -> Result<Option<Index>, WorkspaceError> {
        let key = self.config.keys.session_state_index(workspace, session);
        let mut obj = match self.store.get(&key).await {
            Ok(obj) => obj,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(store_err(format!("downloading {key}"))(e)),
        };
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut obj.body, &mut bytes)
            .await
            .map_err(|e| WorkspaceError::Store {
                op: format!("downloading {key}"),
                source: crate::store::StoreError::Body(e),
            })?;
        Ok(serde_json::from_slice(&bytes)
            .map_err(|e| tracing::warn!(key, "session state index unreadable, ignored: {e}"))
            .ok())
    }

    /// Send the session's changed files: the staged delta `delta` (with
    /// `changes`) when the index Setup read has room, else the whole staged
    /// set `whole`. Returns the ETag of what was uploaded, and whether it
    /// was the whole set.
    pub(crate) async fn send_state(
        &self,
        workspace: &str,
        session: &str,
        whole: &Path,
        delta: Option<(&Path, &Changes)>,
        index: Option<Index>,
    ) -> Result<(Option<String>, bool), WorkspaceError> {
        let keys = &self.config.keys;
        if let (Some((delta, changes)), Some(mut index)) = (delta, index.clone()) {
            let len = fs::metadata(delta).map_err(io_err(delta))?.len();
            let sum: u64 = index.deltas.iter().map(|d| d.len).sum::<u64>() + len;
            if index.deltas.len() < COMPACT_AFTER && sum < index.base_len.max(1 << 20) {
                let n = index.deltas.len() + 1;
                let key = keys.session_state_delta(workspace, session, n);
                let meta = self
                    .store
                    .put_file(delta, &key, PutCondition::None)
                    .await
                    .map_err(store_err(format!("uploading {key}")))?;
                index.deltas.push(Delta {
                    key,
                    len,
                    appends: changes.appends.clone(),
                    deleted: changes.deleted.clone(),
                });
                self.write_state_index(workspace, session, &index).await?;
                return Ok((meta.etag, false));
            }
        }
        let key = keys.session_state(workspace, session);
        let meta = self
            .store
            .put_file(whole, &key, PutCondition::None)
            .await
            .map_err(store_err(format!("uploading {key}")))?;
        let len = fs::metadata(whole).map_err(io_err(whole))?.len();
        let fresh = Index {
            base_etag: meta.etag.clone(),
            base_len: len,
            deltas: Vec::new(),
        };
        self.write_state_index(workspace, session, &fresh).await?;
        for d in index.map(|i| i.deltas).unwrap_or_default() {
            if let Err(e) = self.store.delete(&d.key).await {
                tracing::debug!(key = d.key, "removing an old state delta: {e}");
            }
        }
        Ok((meta.etag, true))
    }

    async fn write_state_index(
        &self,
        workspace: &str,
        session: &str,
        index: &Index,
    ) -> Result<(), WorkspaceError> {
        let key = self.config.keys.session_state_index(workspace, session);
        let bytes = serde_json::to_vec(index).map_err(|e| WorkspaceError::Io {
            path: key.clone().into(),
            source: e.into(),
        })?;
        self.store
            .put_bytes(&key, bytes, PutCondition::None)
            .await
            .map_err(store_err(format!("uploading {key}")))?;
        Ok(())
    }
}

/// Every file's length under `root` among `manifest`'s files.
pub(crate) fn sizes(root: &Path, manifest: &Manifest) -> BTreeMap<String, u64> {
    manifest
        .iter()
        .filter(|(_, i)| matches!(i, Item::File { .. }))
        .filter_map(|(rel, _)| {
            let len = fs::symlink_metadata(root.join(rel)).ok()?.len();
            Some((rel.clone(), len))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::manifest::scan;

    #[test]
    fn appends_send_tails_and_rewrites_whole_files() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("debug")).unwrap();
        std::fs::write(r.join("debug/s.txt"), "0123456789").unwrap();
        std::fs::write(r.join("todo.json"), "[1]").unwrap();
        std::fs::write(r.join("gone.txt"), "x").unwrap();
        let base = scan(r, None).unwrap();
        let sizes = sizes(r, &base);
        std::fs::write(r.join("debug/s.txt"), "0123456789abc").unwrap();
        std::fs::write(r.join("todo.json"), "[2]").unwrap();
        std::fs::write(r.join("new.txt"), "n").unwrap();
        std::fs::remove_file(r.join("gone.txt")).unwrap();
        let mine = scan(r, None).unwrap();
        let out = tempfile::tempdir().unwrap();
        let c = stage_changes(r, &base, &sizes, &mine, out.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("debug/s.txt")).unwrap(),
            "abc"
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join("todo.json")).unwrap(),
            "[2]"
        );
        assert_eq!(c.appends.get("debug/s.txt"), Some(&10));
        assert_eq!(c.deleted, ["gone.txt"]);
        assert_eq!(c.bytes, 3 + 3 + 1);

        // Applied onto the old tree, it gives the new one.
        let old = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(old.path().join("debug")).unwrap();
        std::fs::write(old.path().join("debug/s.txt"), "0123456789").unwrap();
        std::fs::write(old.path().join("todo.json"), "[1]").unwrap();
        std::fs::write(old.path().join("gone.txt"), "x").unwrap();
        let delta = Delta {
            key: String::new(),
            len: 0,
            appends: c.appends.clone(),
            deleted: c.deleted.clone(),
        };
        apply_delta(old.path(), out.path(), &delta).unwrap();
        assert_eq!(scan(old.path(), None).unwrap(), mine);
        // A tail that does not fit its file is an error, not a corruption.
        let again = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(again.path().join("debug")).unwrap();
        std::fs::write(again.path().join("debug/s.txt"), "short").unwrap();
        let out2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(out2.path().join("debug")).unwrap();
        std::fs::write(out2.path().join("debug/s.txt"), "abc").unwrap();
        assert!(apply_delta(again.path(), out2.path(), &delta).is_err());
    }
}
