//! Uploads of unknown length: one PUT when the stream fits in a part, otherwise a multipart
//! upload with bounded memory and concurrency, aborted on any failure.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;
use reqwest::Method;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::checksum;
use super::client::{check_key, header_str, ObjectMeta, PutCondition, Request, S3Client};
use super::error::{parse_error_xml, xml_fields, S3Error};

/// S3's limit on the number of parts.
const MAX_PARTS: u32 = 10_000;

/// Reads up to `size` bytes (fewer only at the end of the stream) into a buffer that starts at
/// `initial` bytes of capacity and grows as needed (so small streams stay small).
async fn read_part<R: AsyncRead + Unpin>(
    r: &mut R,
    size: usize,
    initial: usize,
) -> io::Result<Bytes> {
    let mut buf: Vec<u8> = Vec::with_capacity(initial.min(size));
    while buf.len() < size {
        if buf.len() == buf.capacity() {
            // Grow by doubling, never past `size` (so a part never holds more than `size`).
            let grow = buf.capacity().max(64 * 1024).min(size - buf.len());
            buf.reserve_exact(grow);
        }
        let want = (size - buf.len()) as u64;
        let n = (&mut *r).take(want).read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
    }
    Ok(Bytes::from(buf))
}

/// The non-empty text of the element `name` in an answer's XML body, or an
/// `InvalidResponse` for the operation `op()`.
fn xml_field(body: &[u8], name: &str, op: impl Fn() -> String) -> Result<String, S3Error> {
    let fields = xml_fields(body, &[name])
        .map_err(|message| S3Error::InvalidResponse { op: op(), message })?;
    fields
        .get(name)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| S3Error::InvalidResponse {
            op: op(),
            message: format!("no {name} in the answer"),
        })
}

/// Aborts the upload if dropped while armed (e.g. the caller's future was cancelled).
struct AbortOnDrop {
    client: S3Client,
    key: String,
    upload_id: String,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let key = std::mem::take(&mut self.key);
            let upload_id = std::mem::take(&mut self.upload_id);
            rt.spawn(async move {
                if let Err(e) = client.abort_multipart(&key, &upload_id).await {
                    warn!(key = %key, error = %e, "s3: could not abort a cancelled multipart upload");
                }
            });
        }
    }
}

/// The ETag S3 gives an object completed from `parts` (each part's ETag
/// being its MD5): the MD5 of the parts' MD5s, `-` and their count.
/// `None` when a part's ETag is not an MD5 (encrypted with KMS, say).
fn multipart_etag(parts: &[(u32, String)]) -> Option<String> {
    use md5::Digest as _;
    let mut all = md5::Md5::new();
    for (_, etag) in parts {
        let raw = hex::decode(etag.trim_matches('"'))
            .ok()
            .filter(|r| r.len() == 16)?;
        all.update(&raw);
    }
    Some(format!(
        "\"{}-{}\"",
        hex::encode(all.finalize()),
        parts.len()
    ))
}

impl S3Client {
    /// Uploads a stream of unknown length. If it ends within one part, one PUT; otherwise a
    /// multipart upload with `concurrency` parts in flight (memory bounded by
    /// `part_size × (concurrency + 1)`), each part hashed and signed. Any failure, the reader's
    /// included, aborts the upload so no parts are left behind. `cond` is checked by the server
    /// on `PutObject` or on `CompleteMultipartUpload`.
    pub async fn put_stream(
        &self,
        key: &str,
        mut reader: impl AsyncRead + Send + Unpin,
        cond: PutCondition,
    ) -> Result<ObjectMeta, S3Error> {
        check_key(key)?;
        let part_size = self.inner.cfg.part_size;
        let first = read_part(&mut reader, part_size, 64 * 1024).await?;
        if first.len() < part_size {
            return self.put_bytes(key, first, cond).await;
        }
        let second = read_part(&mut reader, part_size, part_size).await?;
        if second.is_empty() {
            return self.put_bytes(key, first, cond).await;
        }
        let upload_id = self.create_multipart(key).await?;
        let mut guard = AbortOnDrop {
            client: self.clone(),
            key: key.to_string(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        let eof = second.len() < part_size;
        let mut tasks = JoinSet::new();
        let pending = VecDeque::from([first, second]);
        let result = self
            .upload_parts(&mut tasks, key, &upload_id, pending, eof, reader, cond)
            .await;
        if result.is_err() {
            // Let the parts still in flight finish (each is bounded by its retries and the idle
            // timeout): a cancelled request whose body the server already has could still
            // store its part after the abort, leaving an orphan.
            while tasks.join_next().await.is_some() {}
        }
        match result {
            Ok(meta) => {
                guard.armed = false;
                Ok(meta)
            }
            Err(e) => {
                debug!(key, error = %e, "s3: multipart upload failed; aborting it");
                // The guard stays armed while the abort is awaited: if the caller is cancelled
                // meanwhile, dropping the guard still aborts the upload.
                let aborted = self.abort_multipart(key, &upload_id).await;
                guard.armed = false;
                if let Err(abort_err) = aborted {
                    warn!(key, error = %abort_err, "s3: could not abort a failed multipart upload; parts may remain until a lifecycle rule removes them");
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        tasks: &mut JoinSet<Result<(u32, String), S3Error>>,
        key: &str,
        upload_id: &str,
        mut pending: VecDeque<Bytes>,
        mut eof: bool,
        mut reader: impl AsyncRead + Send + Unpin,
        cond: PutCondition,
    ) -> Result<ObjectMeta, S3Error> {
        let cfg = &self.inner.cfg;
        let mut etags: Vec<(u32, String)> = Vec::new();
        let mut next_part = 0u32;
        let mut total = 0u64;
        // The parts are read in order: each part's checksum is kept for
        // Complete and combined into the whole object's (one pass).
        let mut whole = cfg.checksums.then(|| checksum::crc(b""));
        let mut crcs: Vec<String> = Vec::new();
        loop {
            while tasks.len() < cfg.concurrency {
                let part = match pending.pop_front() {
                    Some(p) => p,
                    None if eof => break,
                    None => {
                        let p = read_part(&mut reader, cfg.part_size, cfg.part_size).await?;
                        if p.len() < cfg.part_size {
                            eof = true;
                        }
                        if p.is_empty() {
                            break;
                        }
                        p
                    }
                };
                next_part += 1;
                if next_part > MAX_PARTS {
                    return Err(S3Error::Io(io::Error::other(format!(
                        "stream needs more than {MAX_PARTS} parts of {} bytes; raise part_size",
                        cfg.part_size
                    ))));
                }
                total += part.len() as u64;
                let crc = whole.as_mut().map(|w| {
                    let c = checksum::crc(&part);
                    *w = checksum::combine(*w, c, part.len() as u64);
                    checksum::encode(c)
                });
                crcs.extend(crc.clone());
                let client = self.clone();
                let key = key.to_string();
                let upload_id = upload_id.to_string();
                let n = next_part;
                tasks.spawn(async move {
                    let etag = client
                        .upload_part(&key, &upload_id, n, part, crc.as_deref())
                        .await?;
                    Ok((n, etag))
                });
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(Ok(done))) => etags.push(done),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(join)) => {
                    return Err(S3Error::Io(io::Error::other(format!(
                        "part upload task failed: {join}"
                    ))))
                }
            }
        }
        etags.sort_by_key(|(n, _)| *n);
        let parts = etags.len();
        match self
            .complete_multipart(
                key,
                upload_id,
                &etags,
                &cond,
                total,
                whole.map(|w| (checksum::encode(w), crcs)),
            )
            .await
        {
            Ok(etag) => Ok(ObjectMeta {
                key: key.to_string(),
                size: total,
                etag: Some(etag),
                last_modified: None,
            }),
            // A retried Complete whose first attempt succeeded but whose answer was lost: AWS
            // then answers NoSuchUpload. Accept if the object is there with our size and parts.
            Err(S3Error::Service { code, .. }) if code == "NoSuchUpload" => {
                let meta = self.head(key).await?;
                let suffix = format!("-{parts}\"");
                if meta.size == total && meta.etag.as_deref().is_some_and(|e| e.ends_with(&suffix))
                {
                    Ok(meta)
                } else {
                    Err(S3Error::InvalidResponse {
                        op: format!("CompleteMultipartUpload {key:?}"),
                        message: "the upload vanished (NoSuchUpload) and the object is not ours"
                            .into(),
                    })
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `CreateMultipartUpload`; returns the upload id.
    pub(crate) async fn create_multipart(&self, key: &str) -> Result<String, S3Error> {
        let mut req = Request::new(Method::POST, Some(key))
            .query("uploads", "")
            .object_write(&self.inner.cfg);
        if self.inner.cfg.checksums {
            req = req
                .header("x-amz-checksum-algorithm", checksum::ALGORITHM)
                .header("x-amz-checksum-type", "FULL_OBJECT");
        }
        let (_, body) = self.send_buffered(&req).await?;
        xml_field(&body, "UploadId", || {
            format!("CreateMultipartUpload {key:?}")
        })
    }

    /// `UploadPart`; returns the part's ETag.
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        n: u32,
        part: Bytes,
        crc: Option<&str>,
    ) -> Result<String, S3Error> {
        let mut req = Request::new(Method::PUT, Some(key))
            .query("partNumber", &n.to_string())
            .query("uploadId", upload_id);
        if let Some(crc) = crc {
            req = req.header(checksum::HEADER, crc);
        }
        let req = req.body(part).await;
        let (headers, _) = self.send_buffered(&req).await?;
        header_str(&headers, "etag")
            .map(str::to_string)
            .ok_or_else(|| S3Error::InvalidResponse {
                op: format!("UploadPart {key:?} #{n}"),
                message: "no ETag in the answer".into(),
            })
    }

    /// `CompleteMultipartUpload` with the condition; a 200 carrying an `<Error>` is an error
    /// (retried if transient). Returns the object's ETag.
    pub(crate) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        cond: &PutCondition,
        total: u64,
        checksums: Option<(String, Vec<String>)>,
    ) -> Result<String, S3Error> {
        let mut xml = String::from(
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
        );
        for (i, (n, etag)) in parts.iter().enumerate() {
            let crc = checksums
                .as_ref()
                .and_then(|(_, crcs)| crcs.get(i))
                .map(|c| format!("<ChecksumCRC64NVME>{c}</ChecksumCRC64NVME>"))
                .unwrap_or_default();
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag>{crc}</Part>",
                quick_xml::escape::escape(etag.as_str())
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let mut req = Request::new(Method::POST, Some(key))
            .query("uploadId", upload_id)
            .header("content-type", "application/xml")
            .body(Bytes::from(xml))
            .await;
        if let Some((n, v)) = cond.header() {
            req = req.header(&n, &v);
        }
        if let Some((whole, _)) = &checksums {
            req = req
                .header(checksum::HEADER, whole)
                .header("x-amz-checksum-type", "FULL_OBJECT");
        }
        let op = format!("CompleteMultipartUpload {key:?}");
        let body = self
            .send(&req, |resp| {
                let op = op.clone();
                async move {
                    let status = resp.status().as_u16();
                    let body = self.read_body(&op, resp, 16 * 1024 * 1024).await?;
                    if let Some(err) = parse_error_xml(&body) {
                        return Err(S3Error::Service {
                            status,
                            code: err.code,
                            message: err.message,
                            request_id: err.request_id,
                            key: Some(key.to_string()),
                        });
                    }
                    Ok(((), body))
                }
            })
            .await
            .map_err(|e| cond.write_error(e));
        match body {
            Ok((_, body)) => xml_field(&body, "ETag", || op.clone()),
            // A retried Complete whose first answer was lost, then refused
            // by its own condition: ours if the object is what the parts
            // make (S3's multipart ETag: MD5 of the parts' MD5s, "-N").
            Err(e @ S3Error::PreconditionFailed { .. })
                if req.uncertain.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                let Some(ours) = multipart_etag(parts) else {
                    return Err(e);
                };
                match self.ours_after_all(key, &ours, total).await {
                    Some(meta) => Ok(meta.etag.unwrap_or(ours)),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `AbortMultipartUpload` (with retries).
    pub(crate) async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let req = Request::new(Method::DELETE, Some(key)).query("uploadId", upload_id);
        self.send_buffered(&req).await.map(|_| ())
    }
}
