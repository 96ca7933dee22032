//! Reading objects: a GET as a stream that resumes where it broke
//! (`Range` from the last byte received, pinned to the first answer's ETag),
//! and a download into a file in parallel ranges, each resumed on its own,
//! checked against the object's CRC64NVME when asked, fsynced and renamed
//! into place. Each GET (each range of a download) is one logical operation:
//! its requests and its resumptions spend one [`RetryContext`].

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use futures::FutureExt;
use reqwest::{Method, StatusCode};
use tracing::{debug, warn};

use super::checksum;
use super::client::{
    check_key, content_length, header_str, meta_from_headers, transport, GetObject, ObjectMeta,
    Request, S3Client,
};
use super::error::S3Error;
use super::retry_context::RetryContext;

impl S3Client {
    /// Opens a GET (optionally of a range, requiring `etag`) within the
    /// operation `ctx`, and returns the response.
    async fn open_get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        etag: Option<&str>,
        ctx: &mut RetryContext,
    ) -> Result<reqwest::Response, S3Error> {
        let mut req = Request::new(Method::GET, Some(key));
        if let Some((first, last)) = range {
            req = req.header("range", &format!("bytes={first}-{last}"));
        }
        if let Some(e) = etag {
            req = req.header("if-match", e);
        }
        if self.inner.cfg.verify_checksums {
            // An answer holding the whole object then carries its checksum,
            // if it has one (a partial range's answer carries none).
            req = req.header("x-amz-checksum-mode", "ENABLED");
        }
        self.send_in(&req, ctx, |resp| async move { Ok(resp) })
            .await
    }

    /// The object's full-object CRC64NVME (see [`checksum::full_object`])
    /// from a `HEAD` pinned to `etag`, the version being downloaded.
    async fn head_checksum(&self, key: &str, etag: &str) -> Result<Option<String>, S3Error> {
        let req = Request::new(Method::HEAD, Some(key))
            .header("if-match", etag)
            .header("x-amz-checksum-mode", "ENABLED");
        let changed = |after: &str| S3Error::Changed {
            key: key.to_string(),
            before: etag.to_string(),
            after: after.to_string(),
        };
        let headers = match self.send(&req, |resp| async move { Ok(resp) }).await {
            Ok(resp) => resp.headers().clone(),
            Err(S3Error::PreconditionFailed { .. }) => return Err(changed("(unknown)")),
            Err(e) => return Err(e),
        };
        match header_str(&headers, "etag") {
            Some(now) if now != etag => Err(changed(now)),
            _ => Ok(checksum::full_object(&headers)),
        }
    }

    /// Streams an object: the body yields bytes as they arrive (see [`GetObject`]).
    pub async fn get(&self, key: &str) -> Result<GetObject, S3Error> {
        let (meta, stream) = self.get_stream(key).await?;
        let body = tokio_util::io::StreamReader::new(stream.map(|r| r.map_err(S3Error::into_io)));
        Ok(GetObject {
            meta,
            body: Box::pin(body),
        })
    }

    /// The metadata and a verified, resuming byte stream of an object.
    pub(crate) async fn get_stream(
        &self,
        key: &str,
    ) -> Result<
        (
            ObjectMeta,
            impl Stream<Item = Result<Bytes, S3Error>> + Send + 'static,
        ),
        S3Error,
    > {
        check_key(key)?;
        let mut ctx = RetryContext::new(&self.inner.cfg.retry);
        let resp = self.open_get(key, None, None, &mut ctx).await?;
        let expected = content_length(resp.headers());
        let meta = meta_from_headers(key, resp.headers(), expected.unwrap_or(0));
        // A whole-object CRC64NVME (not a composite of parts' sums) is
        // checked against the bytes as they stream.
        let whole_crc =
            checksum::full_object(resp.headers()).filter(|_| self.inner.cfg.verify_checksums);
        let mut body = BodyState::new(
            self,
            key,
            meta.etag.clone(),
            (0, expected, expected),
            Some(resp),
            ctx,
        );
        body.verify = whole_crc.map(|c| (c, checksum::Running::new()));
        let stream = body.into_stream();
        Ok((meta, stream))
    }

    /// Downloads an object to `dest` (parent directories created). The bytes go to a temporary
    /// file in the same directory, renamed over `dest` only once complete and verified.
    ///
    /// The first request asks for the first part (`Range`), which gives the size and ETag in one
    /// round trip; larger objects are then fetched as `concurrency` ranged GETs (`If-Match` the
    /// ETag, so every range comes from the same object version), written at their offsets.
    ///
    /// With `verify_checksums`, the CRC64NVME of each range is computed as it is written and
    /// the ranges' sums combined are compared with the object's full-object checksum (from
    /// the first answer when it holds the whole object, else from a `HEAD` made while the
    /// ranges download); a mismatch downloads the object once more (corruption in transit
    /// does not repeat), and a second one is [`S3Error::ChecksumMismatch`], leaving no file.
    pub async fn download_file(&self, key: &str, dest: &Path) -> Result<ObjectMeta, S3Error> {
        match self.download_file_once(key, dest).await {
            Err(e @ S3Error::ChecksumMismatch { .. }) => {
                warn!(key, "s3: {e}; downloading it once more");
                self.download_file_once(key, dest).await
            }
            other => other,
        }
    }

    async fn download_file_once(&self, key: &str, dest: &Path) -> Result<ObjectMeta, S3Error> {
        check_key(key)?;
        let cfg = &self.inner.cfg;
        let part = cfg.part_size as u64;
        let retry = &cfg.retry;
        // The first range is one operation with its resumptions; a GET
        // made again below (another question) is a new one.
        let mut ctx = RetryContext::new(retry);
        let mut resp = match self
            .open_get(key, Some((0, part - 1)), None, &mut ctx)
            .await
        {
            Ok(r) => r,
            // An empty object has no byte 0: S3 answers 416 to any range.
            Err(S3Error::Service { status: 416, .. }) => {
                ctx = RetryContext::new(retry);
                self.open_get(key, None, None, &mut ctx).await?
            }
            Err(e) => return Err(e),
        };
        let (mut etag, mut len, mut total) = first_range(key, part, &resp)?;
        if etag.is_none() && total.is_some_and(|t| Some(t) != len) {
            // Without an ETag the other ranges cannot be pinned (If-Match) to the version the
            // first came from: fetch the whole object in one unranged GET instead.
            debug!(
                key,
                "s3: no ETag on a ranged GET; downloading in one request"
            );
            drop(resp);
            ctx = RetryContext::new(retry);
            resp = self.open_get(key, None, None, &mut ctx).await?;
            (etag, len, total) = first_range(key, part, &resp)?;
        }
        let h = resp.headers();
        let mut meta = meta_from_headers(key, h, total.unwrap_or(0));
        let verify = cfg.verify_checksums;
        let whole_in_first = (len.is_some() && len == total)
            .then(|| checksum::full_object(h))
            .flatten();

        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&parent).await?;
        let tmp = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(".ccws-download-")
                .tempfile_in(parent)
        })
        .await
        .expect("tempfile creation does not panic")?;
        let file = Arc::new(tmp.as_file().try_clone()?);

        let first = BodyState::new(self, key, etag.clone(), (0, len, total), Some(resp), ctx);
        let mut jobs = vec![write_at(file.clone(), 0, first.into_stream(), verify).boxed()];
        let mut ranged = false;
        if let (Some(total), Some(first_len), Some(etag)) = (total, len, etag.as_ref()) {
            let mut start = first_len;
            while start < total {
                let n = part.min(total - start);
                let range = (start, Some(n), Some(total));
                let ctx = RetryContext::new(retry);
                let body = BodyState::new(self, key, Some(etag.clone()), range, None, ctx);
                jobs.push(write_at(file.clone(), start, body.into_stream(), verify).boxed());
                start += n;
                ranged = true;
            }
        }
        let ranges = futures::stream::iter(jobs)
            .buffer_unordered(cfg.concurrency)
            .try_fold(checksum::Ranges::default(), |mut acc, w| async move {
                acc.add(w.offset, w.len, w.crc.unwrap_or_default());
                Ok(acc)
            });
        // The object's checksum, when there is one to check against.
        let wanted = async {
            match (&etag, whole_in_first) {
                _ if !verify => Ok(None),
                (_, Some(sum)) => Ok(Some(sum)),
                (Some(etag), None) if ranged => self.head_checksum(key, etag).await,
                _ => Ok(None),
            }
        };
        let (ranges, wanted) = tokio::try_join!(ranges, wanted)?;
        let written = ranges.len();
        if let Some(total) = total {
            if written != total {
                return Err(S3Error::ShortBody {
                    op: format!("GET {key:?}"),
                    expected: total,
                    got: written,
                });
            }
        }
        if let Some(expected) = wanted {
            let actual = ranges
                .whole(written)
                .map_or_else(|| "(none)".into(), checksum::encode);
            if actual != expected {
                // The temporary file is dropped (deleted) with the error.
                return Err(S3Error::ChecksumMismatch {
                    op: format!("GET {key:?}"),
                    expected,
                    actual,
                });
            }
        }
        drop(file);
        let dest = dest.to_path_buf();
        // Flush the bytes to disk before the rename makes them visible under `dest`, so a
        // crash cannot leave a complete-looking file with missing data.
        tokio::task::spawn_blocking(move || crate::durable::persist_synced(tmp, &dest))
            .await
            .expect("rename does not panic")?;
        meta.size = written;
        Ok(meta)
    }
}

/// ETag, `Content-Length` and object size of a GET's answer.
type FirstRange = (Option<String>, Option<u64>, Option<u64>);

/// (ETag, Content-Length, object size) of the answer to a GET of the first `part` bytes (or
/// of an unranged GET), checking a 206's `Content-Range`.
fn first_range(key: &str, part: u64, resp: &reqwest::Response) -> Result<FirstRange, S3Error> {
    let h = resp.headers();
    let etag = header_str(h, "etag").map(str::to_string);
    let len = content_length(h);
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        return Ok((etag, len, len));
    }
    let total = header_str(h, "content-range")
        .filter(|v| v.starts_with("bytes 0-"))
        .and_then(|v| v.rsplit_once('/'))
        .and_then(|(_, t)| t.parse::<u64>().ok());
    match (total, len) {
        (Some(t), Some(l)) if l == t.min(part) => Ok((etag, len, Some(t))),
        _ => Err(S3Error::InvalidResponse {
            op: format!("GET {key:?}"),
            message: format!(
                "bad Content-Range {:?} for the first {part} bytes",
                header_str(h, "content-range")
            ),
        }),
    }
}

/// What [`write_at`] wrote: `len` bytes at `offset`, and their CRC64NVME if it was asked for.
struct Written {
    offset: u64,
    len: u64,
    crc: Option<u64>,
}

/// Writes a body stream into `file` from offset `base`, in blocks of up to 1 MiB, summing
/// the bytes' CRC64NVME (off the async threads, with the writes) when `crc` is set.
async fn write_at(
    file: Arc<std::fs::File>,
    base: u64,
    body: impl Stream<Item = Result<Bytes, S3Error>>,
    crc: bool,
) -> Result<Written, S3Error> {
    const BLOCK: usize = 1 << 20;
    async fn flush(
        file: &Arc<std::fs::File>,
        at: u64,
        data: Bytes,
        crc: bool,
    ) -> Result<Option<u64>, S3Error> {
        use std::os::unix::fs::FileExt;
        let file = file.clone();
        let sum = tokio::task::spawn_blocking(move || {
            file.write_all_at(&data, at)?;
            Ok::<_, std::io::Error>(crc.then(|| checksum::crc(&data)))
        })
        .await
        .expect("pwrite does not panic")?;
        Ok(sum)
    }
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::with_capacity(BLOCK);
    let mut at = base;
    let mut sum = crc.then(|| checksum::crc(b""));
    loop {
        let next = body.next().await.transpose()?;
        let end = next.is_none();
        if let Some(chunk) = next {
            buf.extend_from_slice(&chunk);
        }
        if buf.len() >= BLOCK || (end && !buf.is_empty()) {
            let data = buf.split().freeze();
            let n = data.len() as u64;
            let block = flush(&file, at, data, crc).await?;
            if let (Some(s), Some(b)) = (sum.as_mut(), block) {
                *s = checksum::combine(*s, b, n);
            }
            at += n;
            buf.reserve(BLOCK);
        }
        if end {
            break;
        }
    }
    Ok(Written {
        offset: base,
        len: at - base,
        crc: sum,
    })
}

/// State of a streamed GET body: verifies length and resumes after transient failures.
struct BodyState {
    client: S3Client,
    key: String,
    etag: Option<String>,
    /// Offset of this body in the object.
    base: u64,
    /// Bytes this body must deliver (the range's length), if known.
    expected: Option<u64>,
    /// The object's total size, if known.
    total: Option<u64>,
    received: u64,
    stream: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    /// The attempts and backoff of this body's GET, its resumptions included.
    ctx: RetryContext,
    done: bool,
    /// The object's CRC64NVME as the server gave it, and the sum of the
    /// bytes so far (a whole-object stream only).
    verify: Option<(String, checksum::Running)>,
}

impl BodyState {
    /// A body for `[base, base + expected)` of an object of `total` bytes (`range`); `resp` is
    /// an already-open response for it (made within `ctx`), or `None` to open it (with `Range`
    /// + `If-Match`) on first read.
    fn new(
        client: &S3Client,
        key: &str,
        etag: Option<String>,
        range: (u64, Option<u64>, Option<u64>),
        resp: Option<reqwest::Response>,
        ctx: RetryContext,
    ) -> BodyState {
        let (base, expected, total) = range;
        BodyState {
            client: client.clone(),
            key: key.to_string(),
            etag,
            base,
            expected,
            total,
            received: 0,
            stream: resp.map(|r| r.bytes_stream().boxed()),
            ctx,
            done: false,
            verify: None,
        }
    }

    /// At the end of the stream: `Some(error)` if the bytes' checksum is
    /// not the object's.
    fn check_sum(&mut self) -> Option<S3Error> {
        let (want, got) = self.verify.take()?;
        let got = got.value();
        (got != want).then(|| S3Error::ChecksumMismatch {
            op: format!("GET {:?}", self.key),
            expected: want,
            actual: got,
        })
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, S3Error>> + Send + 'static {
        futures::stream::unfold(self, |mut st| async move {
            let item = st.next_chunk().await?;
            Some((item, st))
        })
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, S3Error>> {
        // Per chunk this only reads; the client and the op name are used on failure only.
        let idle = self.client.inner.cfg.read_timeout;
        let op = |key: &str| format!("GET {key:?}");
        loop {
            if self.done {
                return None;
            }
            if self.expected.is_some_and(|e| self.received >= e) {
                self.done = true;
                self.stream = None;
                return self.check_sum().map(Err);
            }
            let stream = match self.stream.as_mut() {
                Some(s) => s,
                None => match self.resume().await {
                    Ok(()) => continue,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                },
            };
            let failure = match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.received += chunk.len() as u64;
                    if let Some(exp) = self.expected {
                        if self.received > exp {
                            self.done = true;
                            return Some(Err(S3Error::InvalidResponse {
                                op: op(&self.key),
                                message: format!("more than the {exp} bytes announced"),
                            }));
                        }
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some((_, sum)) = self.verify.as_mut() {
                        sum.update(&chunk);
                    }
                    return Some(Ok(chunk));
                }
                Ok(None) => match self.expected {
                    None => {
                        self.done = true;
                        return self.check_sum().map(Err);
                    }
                    Some(exp) => S3Error::ShortBody {
                        op: op(&self.key),
                        expected: exp,
                        got: self.received,
                    },
                },
                Ok(Some(Err(e))) => {
                    let t = transport(&op(&self.key), &e);
                    match self.expected {
                        Some(exp) => {
                            debug!(key = %self.key, error = %t, "s3: body failed mid-way");
                            S3Error::ShortBody {
                                op: op(&self.key),
                                expected: exp,
                                got: self.received,
                            }
                        }
                        None => t,
                    }
                }
                Err(_) => S3Error::Timeout {
                    op: op(&self.key),
                    secs: idle.as_secs_f64(),
                },
            };
            self.stream = None;
            let resumable = self.expected.is_some() && self.total.is_some() && self.etag.is_some();
            if !resumable {
                self.done = true;
                return Some(Err(failure));
            }
            // The attempt whose body failed is spent; the resumption is the next one.
            debug!(key = %self.key, received = self.received, attempts = self.ctx.attempts(), error = %failure, "s3: body failed; resuming it");
            if let Err(e) = self.ctx.back_off(failure).await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// (Re)opens the body at `received` with `Range` + `If-Match`, checking the ETag and range.
    async fn resume(&mut self) -> Result<(), S3Error> {
        let etag = self.etag.clone().expect("resumable");
        let expected = self.expected.expect("resumable");
        let total = self.total.expect("resumable");
        let (first, last) = (self.base + self.received, self.base + expected - 1);
        let resp = match self
            .client
            .open_get(&self.key, Some((first, last)), Some(&etag), &mut self.ctx)
            .await
        {
            Ok(r) => r,
            Err(S3Error::PreconditionFailed { .. }) => {
                return Err(S3Error::Changed {
                    key: self.key.clone(),
                    before: etag,
                    after: "(unknown)".into(),
                })
            }
            Err(e) => return Err(e),
        };
        let h = resp.headers();
        if let Some(now) = header_str(h, "etag") {
            if now != etag {
                return Err(S3Error::Changed {
                    key: self.key.clone(),
                    before: etag,
                    after: now.to_string(),
                });
            }
        }
        let want = format!("bytes {first}-{last}/{total}");
        if resp.status() != StatusCode::PARTIAL_CONTENT
            || header_str(h, "content-range") != Some(want.as_str())
        {
            return Err(S3Error::InvalidResponse {
                op: format!("GET {:?} (range)", self.key),
                message: format!(
                    "expected 206 with Content-Range {want:?}, got {} with {:?}",
                    resp.status(),
                    header_str(h, "content-range")
                ),
            });
        }
        self.stream = Some(resp.bytes_stream().boxed());
        Ok(())
    }
}
