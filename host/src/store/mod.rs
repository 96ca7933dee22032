//! Where workspace state lives: an S3 bucket, or the built-in local store.
//! Both offer the same operations with the same semantics (streamed reads,
//! atomic writes, ETags, conditional writes).

mod local;

use std::path::{Path, PathBuf};

use tokio::io::AsyncRead;

pub use local::{validate_key, LocalStore};

pub use crate::s3::{DeleteFailure, ListPage};
use crate::s3::{GetObject, ObjectMeta, PutCondition, S3Client, S3Error};

/// The most objects a listing page holds (S3's own limit).
pub const MAX_PAGE: u32 = crate::s3::list::MAX_LIST_PAGE;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object not found: {key:?}")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// A conditional write lost: the object changed (or exists).
    #[error("precondition failed for {key:?}: the object changed since it was read")]
    PreconditionFailed {
        /// The object key.
        key: String,
    },
    /// The key is not acceptable.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The S3 transport failed.
    #[error(transparent)]
    S3(Box<S3Error>),
    /// The local store's filesystem failed.
    #[error("local store: {path}: {source}")]
    Local {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The body being uploaded failed to produce its bytes.
    #[error("reading the upload body: {0}")]
    Body(std::io::Error),
}

impl StoreError {
    /// Whether this is the not-found answer.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// Whether a conditional write lost.
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, StoreError::PreconditionFailed { .. })
    }

    /// Whether there were no credentials to sign with: a matter of
    /// configuration, not of the store.
    pub fn is_credentials(&self) -> bool {
        matches!(self, StoreError::S3(e) if e.is_credentials())
    }
}

impl From<S3Error> for StoreError {
    fn from(e: S3Error) -> Self {
        match e {
            S3Error::NotFound { key } => StoreError::NotFound { key },
            S3Error::PreconditionFailed { key } => StoreError::PreconditionFailed { key },
            e => StoreError::S3(Box::new(e)),
        }
    }
}

/// An object store: S3, or a local directory.
///
/// # Example
///
/// Conditional writes, as ccws publishes a home: create only if absent,
/// then replace only what was read.
///
/// ```
/// use ccws::s3::PutCondition;
/// use ccws::store::{LocalStore, Store};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::Local(LocalStore::open(dir.path())?);
/// let first = store
///     .put_bytes("ws/home.txt", b"v1".to_vec(), PutCondition::IfNoneMatchAny)
///     .await?;
/// let again = store
///     .put_bytes("ws/home.txt", b"v1 again".to_vec(), PutCondition::IfNoneMatchAny)
///     .await;
/// assert!(again.unwrap_err().is_precondition_failed());
///
/// let etag = first.etag.expect("an ETag");
/// store
///     .put_bytes("ws/home.txt", b"v2".to_vec(), PutCondition::IfMatch(etag))
///     .await?;
/// assert_eq!(store.head("ws/home.txt").await?.size, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub enum Store {
    /// An S3 bucket.
    S3(S3Client),
    /// The built-in local store.
    Local(LocalStore),
}

impl Store {
    /// A short human description (`s3://bucket` or `local:/path`), no secrets.
    pub fn describe(&self) -> String {
        match self {
            Store::S3(c) => format!("s3://{}", c.config().bucket),
            Store::Local(l) => format!("local:{}", l.root().display()),
        }
    }

    /// Metadata of `key`.
    pub async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        match self {
            Store::S3(c) => Ok(c.head(key).await?),
            Store::Local(l) => l.head(key).await,
        }
    }

    /// Stream `key`.
    pub async fn get(&self, key: &str) -> Result<GetObject, StoreError> {
        match self {
            Store::S3(c) => Ok(c.get(key).await?),
            Store::Local(l) => l.get(key).await,
        }
    }

    /// Download `key` to the file `dest`, atomically.
    pub async fn download_file(&self, key: &str, dest: &Path) -> Result<ObjectMeta, StoreError> {
        match self {
            Store::S3(c) => Ok(c.download_file(key, dest).await?),
            Store::Local(l) => l.download_file(key, dest).await,
        }
    }

    /// Upload the file `src` as `key`, under `cond`.
    pub async fn put_file(
        &self,
        src: &Path,
        key: &str,
        cond: PutCondition,
    ) -> Result<ObjectMeta, StoreError> {
        match self {
            Store::S3(c) => Ok(c.put_file(src, key, cond).await?),
            Store::Local(l) => l.put_file(src, key, cond).await,
        }
    }

    /// Upload the file open as `file` as `key`, under `cond`: what was
    /// opened is what is sent, whatever its path names by then.
    pub async fn put_opened(
        &self,
        file: std::fs::File,
        key: &str,
        cond: PutCondition,
    ) -> Result<ObjectMeta, StoreError> {
        let file = tokio::fs::File::from_std(file);
        match self {
            Store::S3(c) => Ok(c.put_opened(file, key, cond).await?),
            Store::Local(l) => l.put_stream(key, file, cond).await,
        }
    }

    /// Upload `bytes` as `key`, under `cond`.
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        cond: PutCondition,
    ) -> Result<ObjectMeta, StoreError> {
        match self {
            Store::S3(c) => Ok(c.put_bytes(key, bytes.into(), cond).await?),
            Store::Local(l) => l.put_stream(key, &bytes[..], cond).await,
        }
    }

    /// Upload a stream of unknown length as `key`, under `cond`.
    pub async fn put_stream<R>(
        &self,
        key: &str,
        reader: R,
        cond: PutCondition,
    ) -> Result<ObjectMeta, StoreError>
    where
        R: AsyncRead + Unpin + Send,
    {
        match self {
            Store::S3(c) => Ok(c.put_stream(key, reader, cond).await?),
            Store::Local(l) => l.put_stream(key, reader, cond).await,
        }
    }

    /// Copy `src` to `dest` within the store (server-side on S3).
    pub async fn copy(&self, src: &str, dest: &str) -> Result<ObjectMeta, StoreError> {
        match self {
            Store::S3(c) => Ok(c.copy(src, dest).await?),
            Store::Local(l) => l.copy(src, dest).await,
        }
    }

    /// One page of the objects whose keys start with `prefix`, in key
    /// order: at most `max` (1 to [`MAX_PAGE`]), after the page whose
    /// `next` was `token`.
    pub async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
        max: u32,
    ) -> Result<ListPage, StoreError> {
        let max = max.clamp(1, MAX_PAGE);
        match self {
            Store::S3(c) => Ok(c.list_page(prefix, token, max).await?),
            Store::Local(l) => l.list_page(prefix, token, max).await,
        }
    }

    /// The listing of `prefix`, page by page (`page_size` objects each).
    pub fn pages(&self, prefix: &str, page_size: u32) -> Pages<'_> {
        Pages {
            store: self,
            prefix: prefix.to_owned(),
            page_size,
            token: None,
            done: false,
        }
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut pages = self.pages(prefix, MAX_PAGE);
        let mut out = Vec::new();
        while let Some(page) = pages.next().await? {
            out.extend(page);
        }
        Ok(out)
    }

    /// Delete `keys` (absent ones are fine), in batches; returns those that
    /// could not be deleted, and why. A failure of a whole batch is an
    /// error; the batches before it stay deleted.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<DeleteFailure>, StoreError> {
        match self {
            Store::S3(c) => Ok(c.delete_many(keys).await?),
            Store::Local(l) => l.delete_many(keys).await,
        }
    }

    /// Delete `key` (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::S3(c) => Ok(c.delete(key).await?),
            Store::Local(l) => l.delete(key).await,
        }
    }
}

/// A listing in progress: [`Pages::next`] fetches one page at a time.
#[derive(Debug)]
pub struct Pages<'a> {
    store: &'a Store,
    prefix: String,
    page_size: u32,
    token: Option<String>,
    done: bool,
}

impl Pages<'_> {
    /// The next page's objects, or `None` after the last page.
    pub async fn next(&mut self) -> Result<Option<Vec<ObjectMeta>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .list_page(&self.prefix, self.token.as_deref(), self.page_size)
            .await?;
        match page.next {
            Some(t) => self.token = Some(t),
            None => self.done = true,
        }
        Ok(Some(page.objects))
    }
}
