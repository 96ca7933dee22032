//! The built-in local object store: a directory with S3's semantics for what
//! ccws needs — atomic writes, ETags, conditional writes — so a whole turn
//! runs on a machine with no server.
//!
//! Layout: the object `a/b.jsonl` is the file `<root>/a/b.jsonl`; writes land
//! in `<root>/.ccws-tmp/` and are renamed into place; a conditional write
//! checks and renames under an exclusive lock on `<root>/.ccws-lock`. An
//! ETag is derived from the file's inode, modification time and size, so
//! every replacement gets a new one.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{DeleteFailure, ListPage, StoreError};
use crate::durable::{lock_file, persist_synced, private_dir};
use crate::s3::{GetObject, ObjectMeta, PutCondition};

const TMP_DIR: &str = ".ccws-tmp";
const LOCK_FILE: &str = ".ccws-lock";

/// A directory used as an object store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in [root.clone(), root.join(TMP_DIR)] {
            private_dir(&dir).map_err(Self::local_err(&dir))?;
        }
        sweep_stale(&root.join(TMP_DIR));
        Ok(LocalStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn local_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Local {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Metadata of `key`, or `NotFound`.
    pub async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(md) if md.is_file() => Ok(meta(key, &md)),
            Ok(_) => Err(StoreError::NotFound { key: key.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { key: key.into() })
            }
            Err(e) => Err(Self::local_err(&path)(e)),
        }
    }

    /// Open `key` for streaming.
    pub async fn get(&self, key: &str) -> Result<GetObject, StoreError> {
        let path = self.path(key)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { key: key.into() })
            }
            Err(e) => return Err(Self::local_err(&path)(e)),
        };
        let md = file.metadata().map_err(Self::local_err(&path))?;
        if !md.is_file() {
            return Err(StoreError::NotFound { key: key.into() });
        }
        Ok(GetObject {
            meta: meta(key, &md),
            body: Box::pin(tokio::fs::File::from_std(file)),
        })
    }

    /// Copy `key` to the file `dest` (atomically: temp file, then rename).
    pub async fn download_file(&self, key: &str, dest: &Path) -> Result<ObjectMeta, StoreError> {
        let mut obj = self.get(key).await?;
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(Self::local_err(dir))?;
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(Self::local_err(dir))?;
        let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(Self::local_err(dest))?);
        tokio::io::copy(&mut obj.body, &mut out)
            .await
            .map_err(Self::local_err(dest))?;
        out.flush().await.map_err(Self::local_err(dest))?;
        drop(out);
        // On disk before the rename makes it visible under `dest`.
        let to = dest.to_path_buf();
        tokio::task::spawn_blocking(move || persist_synced(tmp, &to))
            .await
            .expect("rename does not panic")
            .map_err(Self::local_err(dest))?;
        Ok(obj.meta)
    }

    /// Write `key` from a stream, atomically and under `cond`.
    pub async fn put_stream<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        mut reader: R,
        cond: PutCondition,
    ) -> Result<ObjectMeta, StoreError> {
        let path = self.path(key)?;
        let tmp_dir = self.root.join(TMP_DIR);
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(Self::local_err(&tmp_dir))?;
        let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(Self::local_err(&tmp_dir))?);
        tokio::io::copy(&mut reader, &mut out)
            .await
            .map_err(StoreError::Body)?;
        out.flush().await.map_err(Self::local_err(&tmp_dir))?;
        drop(out);
        let root = self.root.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || commit(&root, &key, &path, tmp, &cond))
            .await
            .map_err(|e| StoreError::Local {
                path: tmp_dir,
                source: io::Error::other(e),
            })?
    }

    /// Write `key` from the file `src`.
    pub async fn put_file(
        &self,
        src: &Path,
        key: &str,
        cond: PutCondition,
    ) -> Result<ObjectMeta, StoreError> {
        let file = tokio::fs::File::open(src)
            .await
            .map_err(Self::local_err(src))?;
        self.put_stream(key, file, cond).await
    }

    /// Copy `src` to `dest` (a new file, written as any put is).
    pub async fn copy(&self, src: &str, dest: &str) -> Result<ObjectMeta, StoreError> {
        let from = self.path(src)?;
        let file = match tokio::fs::File::open(&from).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { key: src.into() })
            }
            Err(e) => return Err(Self::local_err(&from)(e)),
        };
        self.put_stream(dest, file, PutCondition::None).await
    }

    /// One page of the objects whose keys start with `prefix`, in key
    /// order: at most `max` of them, after the key `after` (the `next` of
    /// the page before).
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<ListPage, StoreError> {
        let root = self.root.clone();
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        let max = max.max(1) as usize;
        tokio::task::spawn_blocking(move || {
            let mut walk = Walk {
                prefix: &prefix,
                after: after.as_deref(),
                // One more than a page: whether there is a next one.
                want: max + 1,
                out: Vec::new(),
            };
            walk.dir(&root, "").map_err(Self::local_err(&root))?;
            let mut objects = walk.out;
            let next = if objects.len() > max {
                objects.truncate(max);
                objects.last().map(|o| o.key.clone())
            } else {
                None
            };
            Ok(ListPage { objects, next })
        })
        .await
        .map_err(|e| StoreError::Local {
            path: self.root.clone(),
            source: io::Error::other(e),
        })?
    }

    /// Remove `keys` (absent ones are fine); returns those that could not
    /// be removed, and why. Directories the removals leave empty go too.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<DeleteFailure>, StoreError> {
        let mut paths = Vec::with_capacity(keys.len());
        for k in keys {
            paths.push((k.clone(), self.path(k)?));
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut failures = Vec::new();
            let mut parents = std::collections::BTreeSet::new();
            for (key, path) in paths {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        failures.push(DeleteFailure {
                            key,
                            reason: e.to_string(),
                        });
                        continue;
                    }
                }
                if let Some(dir) = path.parent() {
                    parents.insert(dir.to_path_buf());
                }
            }
            remove_empty_dirs(&root, parents);
            Ok(failures)
        })
        .await
        .map_err(|e| StoreError::Local {
            path: self.root.clone(),
            source: io::Error::other(e),
        })?
    }

    /// Remove `key` (absent is fine, as in S3).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::local_err(&path)(e)),
        }
    }
}

/// A walk of the store's tree in key order (byte order of the keys),
/// collecting up to `want` objects under `prefix` after `after`.
struct Walk<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    want: usize,
    out: Vec<ObjectMeta>,
}

impl Walk<'_> {
    /// Walk `dir`, whose objects' keys start with `at` (`""` or ending in `/`).
    fn dir(&mut self, dir: &Path, at: &str) -> io::Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            // Removed meanwhile (a concurrent delete): nothing in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !at.is_empty() => return Ok(()),
            Err(e) => return Err(e),
        };
        // A directory sorts as its name and `/`, so that the walk's order is
        // the keys' byte order (`a.b` before `a/b`, as `.` < `/`).
        let mut entries: Vec<(String, bool, fs::DirEntry)> = Vec::new();
        for e in rd {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                tracing::warn!(dir = %dir.display(), "local store: a name that is not UTF-8 is no key; left out of the listing");
                continue;
            };
            if at.is_empty() && (name == TMP_DIR || name == LOCK_FILE) {
                continue;
            }
            let ft = match e.file_type() {
                Ok(ft) => ft,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            if ft.is_dir() {
                entries.push((format!("{name}/"), true, e));
            } else if ft.is_file() {
                entries.push((name, false, e));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, is_dir, e) in entries {
            let key = format!("{at}{name}");
            if is_dir {
                let under = key.starts_with(self.prefix) || self.prefix.starts_with(&key);
                // Every key below sorts before `after` unless `after` is
                // itself below.
                let passed = self
                    .after
                    .is_some_and(|a| key.as_str() < a && !a.starts_with(&key));
                if under && !passed {
                    self.dir(&e.path(), &key)?;
                }
            } else if key.starts_with(self.prefix)
                && self.after.is_none_or(|a| key.as_str() > a)
                && validate_key(&key).is_ok()
            {
                match e.metadata() {
                    Ok(md) if md.is_file() => self.out.push(meta(&key, &md)),
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
            if self.out.len() >= self.want {
                break;
            }
        }
        Ok(())
    }
}

/// Remove the directories in `dirs` that are empty, and their parents that
/// become empty, up to (not including) `root`; under the store's lock, so
/// a write that has just created its directory never loses it before its
/// rename.
fn remove_empty_dirs(root: &Path, dirs: std::collections::BTreeSet<PathBuf>) {
    if dirs.is_empty() {
        return;
    }
    let lock_path = root.join(LOCK_FILE);
    let Ok(_lock) = lock_file(&lock_path) else {
        return;
    };
    // Deepest first, so that a parent is tried after its children.
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        let mut at = dir.as_path();
        while at != root && at.starts_with(root) {
            if fs::remove_dir(at).is_err() {
                break;
            }
            match at.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
    }
}

/// How long a temp file may sit untouched before it counts as left by a
/// writer that was killed (a live write touches its file all along).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Remove temp files that killed writers left (best effort).
fn sweep_stale(tmp_dir: &Path) {
    let Ok(rd) = fs::read_dir(tmp_dir) else {
        return;
    };
    for e in rd.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Check the condition and rename the temp file into place, under the lock.
fn commit(
    root: &Path,
    key: &str,
    path: &Path,
    tmp: tempfile::NamedTempFile,
    cond: &PutCondition,
) -> Result<ObjectMeta, StoreError> {
    let lock_path = root.join(LOCK_FILE);
    let lock = lock_file(&lock_path).map_err(LocalStore::local_err(&lock_path))?;
    let current = match fs::metadata(path) {
        Ok(md) if md.is_file() => Some(etag(&md)),
        Ok(_) => {
            return Err(StoreError::Local {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::IsADirectory, "a directory is in the way"),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(LocalStore::local_err(path)(e)),
    };
    let ok = match cond {
        PutCondition::None => true,
        PutCondition::IfMatch(want) => current.as_deref() == Some(want.as_str()),
        PutCondition::IfNoneMatchAny => current.is_none(),
    };
    if !ok {
        return Err(StoreError::PreconditionFailed { key: key.into() });
    }
    if let Some(dir) = path.parent() {
        private_dir(dir).map_err(LocalStore::local_err(dir))?;
    }
    let file = persist_synced(tmp, path).map_err(LocalStore::local_err(path))?;
    let md = file.metadata().map_err(LocalStore::local_err(path))?;
    drop(lock);
    Ok(meta(key, &md))
}

fn meta(key: &str, md: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        key: key.into(),
        size: md.len(),
        etag: Some(etag(md)),
        last_modified: md.modified().ok().map(Into::into),
    }
}

/// An ETag that changes whenever the file is replaced.
fn etag(md: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "\"{:x}-{:x}{:09x}-{:x}\"",
        md.ino(),
        md.mtime(),
        md.mtime_nsec(),
        md.size()
    )
}

/// Keys are `/`-separated relative paths with no empty, `.` or `..` parts
/// and nothing that would collide with the store's own files.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |why: &str| StoreError::InvalidKey {
        key: key.into(),
        reason: why.into(),
    };
    if key.is_empty() || key.len() > 1024 {
        return Err(bad("must be 1 to 1024 bytes"));
    }
    if key.contains('\0') || key.contains('\\') {
        return Err(bad("must not contain NUL or backslash"));
    }
    for part in key.split('/') {
        match part {
            "" => return Err(bad("must not start or end with '/' or contain '//'")),
            "." | ".." => return Err(bad("must not contain '.' or '..' segments")),
            TMP_DIR | LOCK_FILE => return Err(bad("uses a name reserved by the local store")),
            _ => {}
        }
    }
    Ok(())
}
