//! A session's transcript in the store. Transcripts only grow, so a turn
//! sends only what it appended: the whole transcript as of the last
//! compaction is the seed-compatible object `sessions/<id>.jsonl`, each
//! later turn's tail is one part object `sessions/<id>/transcript/<offset>.jsonl`,
//! and the index `sessions/<id>/transcript.json` lists the parts that
//! extend that exact whole object (by its ETag). Setup reads the whole
//! object and appends the parts. The index is written last, so a part
//! without an entry is never read. Every [`COMPACT_AFTER`] parts (or once
//! the parts outweigh the whole object) a turn uploads the whole transcript
//! again and starts a new index.
//!
//! Anything else that writes the whole object (an older ccws, the seed, a
//! queued copy delivered later) changes its ETag, and parts made for
//! another ETag are ignored: the whole object alone is then the transcript.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{io_err, store_err, WorkspaceError, Workspaces};
use crate::s3::PutCondition;

/// How many parts an index holds before a turn compacts.
pub(crate) const COMPACT_AFTER: usize = 32;

/// The parts that extend one whole transcript object.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Index {
    /// The ETag of the whole object the parts extend.
    pub base_etag: Option<String>,
    /// Its length.
    pub base_len: u64,
    /// The parts, in order.
    pub parts: Vec<PartRef>,
}

/// One part of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PartRef {
    /// Its object key.
    pub key: String,
    /// Where it starts in the transcript.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// What Setup restored, for Teardown to tell the appended tail from a
/// rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Restored {
    /// The transcript's length at Setup.
    pub len: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
    /// The index it was read with (`None`: none in the store).
    pub index: Option<Index>,
}

/// What Teardown sent.
pub(crate) enum Sent {
    /// Nothing was appended.
    Unchanged,
    /// The tail went up as one more part.
    Appended {
        /// The part's ETag.
        etag: Option<String>,
    },
    /// The whole transcript went up (first turn, rewrite, or compaction).
    Whole {
        /// The whole object's ETag.
        etag: Option<String>,
    },
}

impl Workspaces {
    /// Download the transcript of `session` to `dest`: the whole object and
    /// the parts its index lists for it. `Ok(None)`: the session has none.
    pub(crate) async fn download_transcript(
        &self,
        workspace: &str,
        session: &str,
        dest: &Path,
    ) -> Result<Option<Restored>, WorkspaceError> {
        let keys = &self.config.keys;
        let key = keys.transcript(workspace, session);
        let index = self.read_index(workspace, session).await?;
        let meta = match self.store.download_file(&key, dest).await {
            Ok(meta) => meta,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(store_err(format!("downloading {key}"))(e)),
        };
        // Parts extend only the exact whole object they were made for.
        let index = index.filter(|i| {
            i.base_etag.is_some() && i.base_etag == meta.etag && i.base_len == meta.size
        });
        if let Some(index) = &index {
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .open(dest)
                .map_err(io_err(dest))?;
            // Fetched all at once (each is small; their round trips overlap),
            // appended in order.
            let fetched =
                futures::future::try_join_all(index.parts.iter().map(|part| self.fetch_part(part)))
                    .await?;
            for bytes in fetched {
                out.write_all(&bytes).map_err(io_err(dest))?;
            }
        }
        let (len, sha256) = hash_prefix(dest, None).map_err(io_err(dest))?;
        Ok(Some(Restored { len, sha256, index }))
    }

    /// One part's bytes, checked against the length the index gives.
    async fn fetch_part(&self, part: &PartRef) -> Result<Vec<u8>, WorkspaceError> {
        let mut obj = self
            .store
            .get(&part.key)
            .await
            .map_err(store_err(format!("downloading {}", part.key)))?;
        let mut bytes = Vec::with_capacity(part.len as usize);
        tokio::io::AsyncReadExt::read_to_end(&mut obj.body, &mut bytes)
            .await
            .map_err(|e| WorkspaceError::Store {
                op: format!("downloading {}", part.key),
                source: crate::store::StoreError::Body(e),
            })?;
        if bytes.len() as u64 != part.len {
            return Err(WorkspaceError::Store {
                op: format!("downloading {}", part.key),
                source: crate::store::StoreError::Body(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} bytes where the index says {}", bytes.len(), part.len),
                )),
            });
        }
        Ok(bytes)
    }

    async fn read_index(
        &self,
        workspace: &str,
        session: &str,
    ) -> Result<Option<Index>, WorkspaceError> {
        let key = self.config.keys.transcript_index(workspace, session);
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
        match serde_json::from_slice(&bytes) {
            Ok(index) => Ok(Some(index)),
            Err(e) => {
                // Without an index the whole object is the transcript.
                tracing::warn!(key, "transcript index unreadable, ignored: {e}");
                Ok(None)
            }
        }
    }

    /// Send the staged transcript `staged` of `session`: only its tail when
    /// Setup's `restored` bytes are still its start and the index has room,
    /// else the whole of it.
    pub(crate) async fn send_transcript_delta(
        &self,
        workspace: &str,
        session: &str,
        staged: &Path,
        restored: Option<&Restored>,
    ) -> Result<Sent, WorkspaceError> {
        let keys = &self.config.keys;
        let len = std::fs::metadata(staged).map_err(io_err(staged))?.len();
        let appended = match restored {
            Some(r) if len >= r.len => {
                let (_, sha) = hash_prefix(staged, Some(r.len)).map_err(io_err(staged))?;
                sha == r.sha256
            }
            _ => false,
        };
        if appended && restored.is_some_and(|r| r.len == len) {
            return Ok(Sent::Unchanged);
        }
        let index = restored.and_then(|r| r.index.clone());
        match (appended, index) {
            (true, Some(mut index))
                if index.parts.len() < COMPACT_AFTER
                    && index.parts.iter().map(|p| p.len).sum::<u64>()
                        < index.base_len.max(1 << 20) =>
            {
                let offset = restored.map_or(0, |r| r.len);
                let key = keys.transcript_part(workspace, session, offset);
                let mut tail = Vec::with_capacity((len - offset) as usize);
                let mut f = File::open(staged).map_err(io_err(staged))?;
                f.seek(SeekFrom::Start(offset)).map_err(io_err(staged))?;
                f.read_to_end(&mut tail).map_err(io_err(staged))?;
                let part_len = tail.len() as u64;
                let meta = self
                    .store
                    .put_bytes(&key, tail, PutCondition::None)
                    .await
                    .map_err(store_err(format!("uploading {key}")))?;
                index.parts.retain(|p| p.offset < offset);
                index.parts.push(PartRef {
                    key,
                    offset,
                    len: part_len,
                });
                self.write_index(workspace, session, &index).await?;
                Ok(Sent::Appended { etag: meta.etag })
            }
            (_, old) => {
                let key = keys.transcript(workspace, session);
                let meta = self
                    .store
                    .put_file(staged, &key, PutCondition::None)
                    .await
                    .map_err(store_err(format!("uploading {key}")))?;
                let index = Index {
                    base_etag: meta.etag.clone(),
                    base_len: len,
                    parts: Vec::new(),
                };
                self.write_index(workspace, session, &index).await?;
                // The old parts are read no more (best effort).
                for part in old.map(|i| i.parts).unwrap_or_default() {
                    if let Err(e) = self.store.delete(&part.key).await {
                        tracing::debug!(key = part.key, "removing an old transcript part: {e}");
                    }
                }
                Ok(Sent::Whole { etag: meta.etag })
            }
        }
    }

    async fn write_index(
        &self,
        workspace: &str,
        session: &str,
        index: &Index,
    ) -> Result<(), WorkspaceError> {
        let key = self.config.keys.transcript_index(workspace, session);
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

/// Length and SHA-256 (hex) of the first `limit` bytes of `path` (all of it
/// when `None`).
pub(crate) fn hash_prefix(path: &Path, limit: Option<u64>) -> io::Result<(u64, String)> {
    let file = File::open(path)?;
    let mut reader: Box<dyn Read> = match limit {
        Some(n) => Box::new(file.take(n)),
        None => Box::new(file),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}
