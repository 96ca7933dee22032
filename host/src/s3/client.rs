//! The S3 client: request building, signing, sending with retries, and the
//! small object operations (reads are in `download.rs`, multipart writes in
//! `multipart.rs`).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::HeaderMap;
use reqwest::Method;
use time::OffsetDateTime;
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::checksum;
use super::config::{ConfigError, S3Config};
use super::credential::{Cached, Credentials, StaticProvider};
use super::error::{classify, parse_error_xml, S3Error};
use super::region::{self, redirect_error, BucketRegion};
use super::request::load_ca_bundle;
pub(crate) use super::request::{
    check_key, content_length, header_str, transport, with_idle_timeout, Request,
};
use super::retry::ClockSkew;
use super::retry_context::RetryContext;
use super::sigv4::{self, Signer};
use md5::Digest as _;

/// A condition on a write, checked by the server (on `PutObject`, or on
/// `CompleteMultipartUpload` for multipart uploads).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PutCondition {
    /// Write unconditionally.
    #[default]
    None,
    /// Write only if the current object's ETag is this one (`If-Match`).
    IfMatch(String),
    /// Write only if no object exists under the key (`If-None-Match: *`).
    IfNoneMatchAny,
}

impl PutCondition {
    pub(crate) fn header(&self) -> Option<(String, String)> {
        match self {
            PutCondition::None => None,
            PutCondition::IfMatch(etag) => Some(("if-match".into(), etag.clone())),
            PutCondition::IfNoneMatchAny => Some(("if-none-match".into(), "*".into())),
        }
    }

    /// The error of a write made under this condition, as callers should see it.
    ///
    /// An `If-Match` write to a key whose object was deleted since it was read is a lost
    /// condition: the object is not the one the caller read. AWS S3 answers it with 404
    /// `NoSuchKey` rather than 412, which would surface as [`S3Error::NotFound`] (and a caller
    /// might then think it may create the object); the local store answers
    /// `PreconditionFailed`. Both stores report it as [`S3Error::PreconditionFailed`].
    pub(crate) fn write_error(&self, e: S3Error) -> S3Error {
        match (self, e) {
            (PutCondition::IfMatch(_), S3Error::NotFound { key }) => {
                S3Error::PreconditionFailed { key }
            }
            (_, e) => e,
        }
    }
}

/// What the server says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag exactly as the server sent it (quotes included), if it sent one.
    pub etag: Option<String>,
    /// `Last-Modified`, if the server sent it (not known after a PUT).
    pub last_modified: Option<OffsetDateTime>,
}

/// An object's metadata from an answer's headers; `size` as the caller
/// worked it out (`Content-Length` or `Content-Range`).
pub(crate) fn meta_from_headers(key: &str, h: &HeaderMap, size: u64) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size,
        etag: header_str(h, "etag").map(str::to_string),
        last_modified: header_str(h, "last-modified")
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(OffsetDateTime::from),
    }
}

/// A streamed object: its metadata and a body that yields bytes as they arrive.
///
/// The body checks the total length against `Content-Length`: a short body fails with an
/// `io::Error` of kind `UnexpectedEof` (never a silent EOF), after resuming transient
/// mid-body failures with `Range` + `If-Match` within the retry budget.
pub struct GetObject {
    /// Object metadata from the response headers.
    pub meta: ObjectMeta,
    /// The object's bytes.
    pub body: Pin<Box<dyn AsyncRead + Send>>,
}

impl std::fmt::Debug for GetObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetObject")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// An S3 client for one bucket. Cheap to clone (shares one connection pool).
#[derive(Clone, Debug)]
pub struct S3Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: S3Config,
    http: reqwest::Client,
    credentials: Arc<Cached>,
    /// The signer of the credentials and region last used (it caches
    /// signing keys).
    signer: std::sync::Mutex<Option<(Credentials, String, Arc<Signer>)>>,
    /// The bucket's region, and the endpoint's `host[:port]` (the port
    /// only when it is not the scheme's default).
    region: BucketRegion,
    scheme: String,
    skew: ClockSkew,
}

impl S3Client {
    /// Validates `cfg` and builds the client (the HTTP connection pool is shared by clones).
    pub fn new(cfg: S3Config) -> Result<S3Client, ConfigError> {
        cfg.validate()?;
        let url = cfg.endpoint_url()?;
        let host = url.host_str().expect("validated").to_string();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        // reqwest is built without a crypto provider; install ring (ignore "already installed").
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            // A redirect to another host would drop the Authorization header and surface as a
            // puzzling 403; a redirect is reported as an error instead (see S3Error::Redirect).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ccws/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_bundle {
            b = b.tls_certs_merge(load_ca_bundle(path)?);
        }
        for (h, addr) in &cfg.resolve {
            b = b.resolve(h, *addr);
        }
        let http = b
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        let credentials = cfg.credentials.clone().unwrap_or_else(|| {
            Arc::new(Cached::new(Arc::new(StaticProvider(Credentials {
                session_token: cfg.session_token.clone(),
                ..Credentials::new(cfg.access_key_id.clone(), cfg.secret_access_key.clone())
            }))))
        });
        Ok(S3Client {
            inner: Arc::new(Inner {
                scheme: url.scheme().to_string(),
                region: BucketRegion::new(cfg.region.clone(), authority),
                http,
                credentials,
                signer: std::sync::Mutex::new(None),
                skew: ClockSkew::default(),
                cfg,
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &S3Config {
        &self.inner.cfg
    }

    /// The credentials requests are signed with now (fetched, or refreshed,
    /// if need be): to check early that there are some.
    pub async fn credentials(&self) -> Result<Credentials, S3Error> {
        Ok(self.inner.credentials.get().await?)
    }

    /// The region requests are signed for: the configured one, or the one
    /// a redirect named.
    pub fn region(&self) -> String {
        self.inner.region.region()
    }

    /// A signer for the current credentials and region, made anew when
    /// either changed.
    async fn signer(&self) -> Result<Arc<Signer>, S3Error> {
        let creds = self.inner.credentials.get().await?;
        let region = self.region();
        let mut held = self.inner.signer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((c, r, s)) = held.as_ref() {
            if *c == creds && *r == region {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(Signer::new(
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
            creds.session_token.clone(),
            region.clone(),
            "s3",
        ));
        *held = Some((creds, region, s.clone()));
        Ok(s)
    }

    /// Whether the credentials last signed with carry a session token.
    fn signs_with_temporary_keys(&self) -> bool {
        let held = self.inner.signer.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()
            .is_some_and(|(c, _, _)| c.session_token.is_some())
    }

    /// Seconds added to the local clock when signing (learned from `RequestTimeTooSkewed`).
    pub fn clock_offset(&self) -> i64 {
        self.inner.skew.offset()
    }

    /// Overrides the signing clock offset (e.g. to simulate a skewed clock in tests).
    pub fn set_clock_offset(&self, secs: i64) {
        self.inner.skew.set(secs)
    }

    /// (URL, host header, canonical URI) for a key (or the bucket) and
    /// query. A bucket name with dots goes in the path over HTTPS whatever
    /// the style asked for: as a host name it would not match the
    /// endpoint's wildcard certificate.
    fn locate(&self, key: Option<&str>, query: &[(String, String)]) -> (String, String, String) {
        let inner = &self.inner;
        let enc_key = key.map(sigv4::encode_path).unwrap_or_default();
        let dotted_tls = inner.scheme == "https" && inner.cfg.bucket.contains('.');
        let (host, path) = if inner.cfg.path_style || dotted_tls {
            let path = match key {
                Some(_) => format!("/{}/{enc_key}", inner.cfg.bucket),
                None => format!("/{}", inner.cfg.bucket),
            };
            (self.inner.region.authority(), path)
        } else {
            (
                format!("{}.{}", inner.cfg.bucket, self.inner.region.authority()),
                format!("/{enc_key}"),
            )
        };
        let mut url = format!("{}://{host}{path}", inner.scheme);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&sigv4::encode_query_component(k));
            if !v.is_empty() {
                url.push('=');
                url.push_str(&sigv4::encode_query_component(v));
            }
        }
        (url, host, path)
    }

    /// One signed attempt. Returns the response (any status) and the time it was signed at.
    async fn attempt(&self, req: &Request) -> Result<(reqwest::Response, OffsetDateTime), S3Error> {
        let inner = &self.inner;
        let op = req.op();
        let (url, host, canonical_uri) = self.locate(req.key.as_deref(), &req.query);
        let signer = self.signer().await?;
        let signed_at = inner.skew.now();
        let added = signer.sign_s3(
            req.method.as_str(),
            &host,
            &canonical_uri,
            &req.query,
            &req.headers,
            &req.payload_hash,
            signed_at,
        );
        let mut rb = inner.http.request(req.method.clone(), &url);
        for (n, v) in &req.headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        for (n, v) in &added {
            rb = rb.header(*n, v.as_str());
        }
        let start = Instant::now();
        let progress = Arc::new(AtomicU64::new(0));
        if req.method == Method::PUT || req.method == Method::POST {
            rb = rb.header("content-length", req.body.len().to_string());
            if req.body.is_empty() {
                rb = rb.body(Bytes::new());
            } else {
                const CHUNK: usize = 256 * 1024;
                let body = req.body.clone();
                let p = progress.clone();
                let chunks = (0..body.len()).step_by(CHUNK).map(move |i| {
                    p.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                    Ok::<Bytes, io::Error>(body.slice(i..(i + CHUNK).min(body.len())))
                });
                rb = rb.body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
            }
        }
        let idle = inner.cfg.read_timeout;
        match with_idle_timeout(rb.send(), &progress, start, idle).await {
            None => Err(S3Error::Timeout {
                op,
                secs: idle.as_secs_f64(),
            }),
            Some(Err(e)) => Err(transport(&op, &e)),
            Some(Ok(resp)) => Ok((resp, signed_at)),
        }
    }

    /// Reads a whole (small) body, with the idle timeout per chunk.
    pub(crate) async fn read_body(
        &self,
        op: &str,
        mut resp: reqwest::Response,
        limit: usize,
    ) -> Result<Bytes, S3Error> {
        let idle = self.inner.cfg.read_timeout;
        let expected = content_length(resp.headers());
        let mut buf = BytesMut::new();
        loop {
            match tokio::time::timeout(idle, resp.chunk()).await {
                Err(_) => {
                    return Err(S3Error::Timeout {
                        op: op.to_string(),
                        secs: idle.as_secs_f64(),
                    })
                }
                Ok(Err(e)) => {
                    return Err(match expected {
                        Some(exp) => {
                            debug!(op, error = %transport(op, &e), "response body cut");
                            S3Error::ShortBody {
                                op: op.to_string(),
                                expected: exp,
                                got: buf.len() as u64,
                            }
                        }
                        None => transport(op, &e),
                    })
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => {
                    if buf.len() + c.len() > limit {
                        return Err(S3Error::InvalidResponse {
                            op: op.to_string(),
                            message: format!("response body larger than {limit} bytes"),
                        });
                    }
                    buf.extend_from_slice(&c);
                }
            }
        }
        if let Some(exp) = expected {
            if exp != buf.len() as u64 {
                return Err(S3Error::ShortBody {
                    op: op.to_string(),
                    expected: exp,
                    got: buf.len() as u64,
                });
            }
        }
        Ok(buf.freeze())
    }

    /// Turns an error response into a typed error; also returns the server's `Date`.
    async fn error_from(
        &self,
        req: &Request,
        resp: reqwest::Response,
    ) -> (S3Error, Option<String>) {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let date = header_str(&headers, "date").map(str::to_string);
        if let Some(e) = redirect_error(status, &self.inner.cfg.bucket, &headers) {
            return (e, date);
        }
        let body = if req.method == Method::HEAD {
            Bytes::new()
        } else {
            match self.read_body(&req.op(), resp, 256 * 1024).await {
                Ok(b) => b,
                Err(e) => return (e, date),
            }
        };
        let xml = parse_error_xml(&body).unwrap_or_default();
        let request_id = xml
            .request_id
            .clone()
            .or_else(|| header_str(&headers, "x-amz-request-id").map(str::to_string));
        (
            classify(
                req.op(),
                req.key.clone(),
                &self.inner.cfg.bucket,
                status,
                xml,
                request_id,
            ),
            date,
        )
    }

    /// Sends `req` with retries. `on_success` sees each 2xx response and may itself fail
    /// (e.g. a 200 whose body is an error); retryable failures from it are retried too.
    pub(crate) async fn send<T, F, Fut>(&self, req: &Request, on_success: F) -> Result<T, S3Error>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, S3Error>>,
    {
        let mut ctx = RetryContext::new(&self.inner.cfg.retry);
        self.send_in(req, &mut ctx, on_success).await
    }

    /// [`Self::send`], spending the attempts and backoff of `ctx`: the
    /// logical operation the request is part of (e.g. a GET whose cut body
    /// is resumed by further requests).
    pub(crate) async fn send_in<T, F, Fut>(
        &self,
        req: &Request,
        ctx: &mut RetryContext,
        on_success: F,
    ) -> Result<T, S3Error>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, S3Error>>,
    {
        let mut skew_corrected = false;
        let mut refreshed = false;
        let mut redirected = false;
        loop {
            let attempt = ctx.begin();
            let err = match self.attempt(req).await {
                Ok((resp, signed_at)) => {
                    let status = resp.status();
                    debug!(method = %req.method, key = ?req.key, status = status.as_u16(), attempt, "s3 request");
                    if status.is_success() {
                        match on_success(resp).await {
                            Ok(v) => return Ok(v),
                            Err(e) => e,
                        }
                    } else {
                        let (e, date) = self.error_from(req, resp).await;
                        let skew_suspect = match &e {
                            S3Error::Denied { .. } => true,
                            S3Error::Auth { code, .. } => {
                                code == "RequestTimeTooSkewed"
                                    || code == "SignatureDoesNotMatch"
                                    || code == "Forbidden"
                                    || code == "AccessDenied"
                            }
                            _ => false,
                        };
                        // The bucket is in another region: once, there.
                        if let Some(r) = region::named_by(&e).filter(|_| !redirected) {
                            if self.inner.region.learn(&self.inner.cfg.bucket, &r) {
                                redirected = true;
                                ctx.refund();
                                continue;
                            }
                        }
                        // Temporary keys the server no longer knows have
                        // expired or been revoked as well.
                        let expired = matches!(&e, S3Error::Auth { code, .. }
                            if matches!(code.as_str(), "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired")
                                || (code == "InvalidAccessKeyId" && self.signs_with_temporary_keys()));
                        if expired && !refreshed {
                            warn!("s3: the server says the session token expired; fetching new credentials and retrying");
                            self.inner.credentials.invalidate().await;
                            refreshed = true;
                            ctx.refund();
                            continue;
                        }
                        if skew_suspect && !skew_corrected {
                            if let Some(d) = date.as_deref() {
                                if self.inner.skew.correct_from(d, signed_at) {
                                    warn!(offset_secs = self.inner.skew.offset(), "s3: clock skew detected from the server's Date header; retrying with a corrected clock");
                                    skew_corrected = true;
                                    ctx.refund();
                                    continue;
                                }
                            }
                        }
                        e
                    }
                }
                Err(e) => {
                    debug!(method = %req.method, key = ?req.key, attempt, error = %e, "s3 request failed");
                    e
                }
            };
            // A conflict at CompleteMultipartUpload ends the upload: it is
            // started again by the caller, not completed again.
            if !err.is_retryable() || (req.is_complete() && err.is_conflict()) {
                return Err(err);
            }
            let maybe_applied = match &err {
                S3Error::Transport { .. } | S3Error::Timeout { .. } => true,
                S3Error::Service { status, .. } => *status >= 500,
                _ => false,
            };
            let message = err.to_string();
            let delay = ctx.next_delay(err)?;
            if maybe_applied {
                req.uncertain.store(true, Ordering::Relaxed);
            }
            debug!(method = %req.method, key = ?req.key, attempt, ?delay, error = %message, "s3: retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends `req` and returns the response headers and the whole (small) body.
    pub(crate) async fn send_buffered(&self, req: &Request) -> Result<(HeaderMap, Bytes), S3Error> {
        let op = req.op();
        self.send(req, |resp| {
            let op = op.clone();
            async move {
                let headers = resp.headers().clone();
                let body = self.read_body(&op, resp, 16 * 1024 * 1024).await?;
                Ok((headers, body))
            }
        })
        .await
    }

    /// Creates the configured bucket (used by test fixtures and benchmarks).
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        let mut req = Request::new(Method::PUT, None);
        if self.inner.cfg.region != "us-east-1" {
            let body = format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                quick_xml::escape::escape(self.inner.cfg.region.as_str())
            );
            req = req.body(Bytes::from(body)).await;
        }
        self.send_buffered(&req).await.map(|_| ())
    }

    /// Checks that the bucket exists and the credentials work (`HeadBucket`).
    pub async fn head_bucket(&self) -> Result<(), S3Error> {
        let req = Request::new(Method::HEAD, None);
        self.send(&req, |_| async { Ok(()) }).await
    }

    /// Object metadata (`HeadObject`); a missing object is [`S3Error::NotFound`].
    pub async fn head(&self, key: &str) -> Result<ObjectMeta, S3Error> {
        check_key(key)?;
        let req = Request::new(Method::HEAD, Some(key));
        self.send(&req, |resp| async move {
            let h = resp.headers();
            let size = content_length(h).ok_or_else(|| S3Error::InvalidResponse {
                op: format!("HEAD {key:?}"),
                message: "no Content-Length".into(),
            })?;
            Ok(meta_from_headers(key, h, size))
        })
        .await
    }

    /// Deletes an object (deleting a missing object succeeds, as in S3).
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        check_key(key)?;
        let req = Request::new(Method::DELETE, Some(key));
        match self.send_buffered(&req).await {
            Ok(_) | Err(S3Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One signed `PutObject` with `Content-Length` and the payload's SHA-256.
    pub async fn put_bytes(
        &self,
        key: &str,
        body: Bytes,
        cond: PutCondition,
    ) -> Result<ObjectMeta, S3Error> {
        check_key(key)?;
        let size = body.len() as u64;
        let mut req = Request::new(Method::PUT, Some(key)).object_write(&self.inner.cfg);
        if self.inner.cfg.checksums {
            req = req
                .header(checksum::HEADER, &checksum::of(&body))
                .header("x-amz-sdk-checksum-algorithm", checksum::ALGORITHM);
        }
        let mut req = req.body(body.clone()).await;
        if let Some((n, v)) = cond.header() {
            req = req.header(&n, &v);
        }
        match self
            .send_buffered(&req)
            .await
            .map_err(|e| cond.write_error(e))
        {
            Ok((headers, _)) => Ok(ObjectMeta {
                key: key.to_string(),
                size,
                etag: header_str(&headers, "etag").map(str::to_string),
                last_modified: None,
            }),
            // A retried conditional PUT whose first answer was lost finds
            // its own write: ours if the object now holds exactly our bytes.
            Err(e @ S3Error::PreconditionFailed { .. })
                if req.uncertain.load(Ordering::Relaxed) =>
            {
                let ours = format!("\"{}\"", hex::encode(md5::Md5::digest(&body)));
                self.ours_after_all(key, &ours, size).await.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// After a lost conditional write: the object's metadata if it is now
    /// the one we wrote (`etag`, `size`), else `None`.
    pub(crate) async fn ours_after_all(
        &self,
        key: &str,
        etag: &str,
        size: u64,
    ) -> Option<ObjectMeta> {
        let meta = self.head(key).await.ok()?;
        let same = meta.size == size && meta.etag.as_deref() == Some(etag);
        if same {
            debug!(key, "s3: a conditional write answered 412 is ours (an earlier attempt's answer was lost)");
        }
        same.then_some(meta)
    }

    /// Uploads a file: one PUT below the part size, a multipart upload above.
    pub async fn put_file(
        &self,
        src: &Path,
        key: &str,
        cond: PutCondition,
    ) -> Result<ObjectMeta, S3Error> {
        check_key(key)?;
        let file = tokio::fs::File::open(src).await?;
        self.put_opened(file, key, cond).await
    }

    /// Upload the file open as `file`, from its current offset, as `key`,
    /// under `cond`.
    pub async fn put_opened(
        &self,
        file: tokio::fs::File,
        key: &str,
        cond: PutCondition,
    ) -> Result<ObjectMeta, S3Error> {
        check_key(key)?;
        let len = file.metadata().await?.len();
        if len < self.inner.cfg.part_size as u64 {
            // Small: read exactly the file (no part-sized buffer) and PUT it in one request.
            let mut buf = Vec::with_capacity(len as usize);
            let mut file = file;
            tokio::io::AsyncReadExt::read_to_end(&mut file, &mut buf).await?;
            return self.put_bytes(key, Bytes::from(buf), cond).await;
        }
        // A conflict at the end of a multipart upload means uploading it
        // again from the start (S3's advice): a file can be read again.
        // The uploads spend a budget of their own, backing off between
        // them; each part's requests have theirs.
        let mut file = file;
        let start = tokio::io::AsyncSeekExt::stream_position(&mut file).await?;
        let mut uploads = RetryContext::new(&self.inner.cfg.retry);
        loop {
            uploads.begin();
            match self.put_stream(key, &mut file, cond.clone()).await {
                Err(e) if e.is_conflict() => {
                    uploads.back_off(e).await?;
                    warn!(key, "s3: a conditional multipart upload raced another write (409); uploading it again");
                    tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(start))
                        .await?;
                }
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dotted_bucket_goes_in_the_path_over_https() {
        let client = |endpoint: &str, bucket: &str| {
            S3Client::new(
                S3Config::builder(endpoint, "us-east-1", bucket, "AK", "SK")
                    .build()
                    .unwrap(),
            )
            .unwrap()
        };
        let (url, host, _) =
            client("https://s3.us-east-1.amazonaws.com", "my.bucket").locate(Some("k"), &[]);
        assert_eq!(
            (url.as_str(), host.as_str()),
            (
                "https://s3.us-east-1.amazonaws.com/my.bucket/k",
                "s3.us-east-1.amazonaws.com"
            )
        );
        let (url, _, _) =
            client("https://s3.us-east-1.amazonaws.com", "my-bucket").locate(Some("k"), &[]);
        assert_eq!(url, "https://my-bucket.s3.us-east-1.amazonaws.com/k");
        let (url, _, _) = client("http://127.0.0.1:9000", "my.bucket").locate(Some("k"), &[]);
        assert_eq!(
            url, "http://my.bucket.127.0.0.1:9000/k",
            "plain http: as asked"
        );
    }

    #[test]
    fn if_match_on_a_deleted_object_is_a_lost_condition() {
        let not_found = || S3Error::NotFound { key: "k".into() };
        let cond = PutCondition::IfMatch("\"abc\"".into());
        assert!(matches!(
            cond.write_error(not_found()),
            S3Error::PreconditionFailed { key } if key == "k"
        ));
        // Without If-Match a 404 stays what it is.
        for cond in [PutCondition::None, PutCondition::IfNoneMatchAny] {
            assert!(matches!(
                cond.write_error(not_found()),
                S3Error::NotFound { .. }
            ));
        }
        // Other errors are untouched.
        let e = cond.write_error(S3Error::NoSuchBucket { bucket: "b".into() });
        assert!(matches!(e, S3Error::NoSuchBucket { .. }), "{e:?}");
    }
}
