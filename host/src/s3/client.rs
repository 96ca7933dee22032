//! The S3 client: request building, signing, sending with retries, and the object operations.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use futures::FutureExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use time::OffsetDateTime;
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::config::{ConfigError, S3Config};
use super::credential::{Cached, Credentials, StaticProvider};
use super::error::{parse_error_xml, S3Error, XmlError};
use super::retry::ClockSkew;
use super::sigv4::{self, Signer, EMPTY_SHA256};
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
    /// The bucket's region as the server named it in a redirect, and the
    /// authority of that region's endpoint when ours was AWS's default
    /// one: used for the rest of the process.
    learned: std::sync::Mutex<Option<(String, Option<String>)>>,
    scheme: String,
    /// `host[:port]` of the endpoint, the port only when it is not the scheme's default.
    authority: String,
    skew: ClockSkew,
}

/// One logical request; re-signed for every attempt.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: Method,
    /// `None` for bucket-level requests.
    pub key: Option<String>,
    pub query: Vec<(String, String)>,
    /// Extra headers to send and sign (lower-case names).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub payload_hash: String,
    /// Set when an attempt that may have taken effect (no answer, or a
    /// 5xx) was retried: a later 412 may then be the request's own doing.
    pub uncertain: Arc<std::sync::atomic::AtomicBool>,
}

impl Request {
    pub(crate) fn new(method: Method, key: Option<&str>) -> Self {
        Request {
            method,
            key: key.map(str::to_string),
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            payload_hash: EMPTY_SHA256.to_string(),
            uncertain: Arc::default(),
        }
    }

    pub(crate) fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.to_string(), v.to_string()));
        self
    }

    pub(crate) fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// Sets the body and its SHA-256 (hashed off the async threads for large bodies).
    pub(crate) async fn body(mut self, body: Bytes) -> Self {
        self.payload_hash = if body.len() > 256 * 1024 {
            let b = body.clone();
            tokio::task::spawn_blocking(move || sigv4::sha256_hex(&b))
                .await
                .expect("hashing does not panic")
        } else {
            sigv4::sha256_hex(&body)
        };
        self.body = body;
        self
    }

    /// Adds the headers every object write carries: encryption and
    /// storage class, as configured.
    pub(crate) fn object_write(mut self, cfg: &S3Config) -> Self {
        if let Some(e) = &cfg.encryption {
            for (k, v) in e.headers() {
                self = self.header(k, &v);
            }
        }
        if let Some(c) = &cfg.storage_class {
            self = self.header("x-amz-storage-class", c);
        }
        self
    }

    /// Whether this is a `CompleteMultipartUpload`.
    fn is_complete(&self) -> bool {
        self.method == Method::POST && self.query.iter().any(|(k, _)| k == "uploadId")
    }

    fn op(&self) -> String {
        match &self.key {
            Some(k) => format!("{} {k:?}", self.method),
            None => format!("{} bucket", self.method),
        }
    }
}

/// Error codes that mean "your credentials or signature are wrong".
const AUTH_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
    "MissingSecurityHeader",
];

pub(crate) fn check_key(key: &str) -> Result<(), S3Error> {
    let bad = |reason| {
        Err(S3Error::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return bad("'.' and '..' path segments are not supported");
    }
    Ok(())
}

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn meta_from_headers(key: &str, h: &HeaderMap, size: u64) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size,
        etag: header_str(h, "etag").map(str::to_string),
        last_modified: header_str(h, "last-modified")
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(OffsetDateTime::from),
    }
}

/// A redirect answer (never followed: see [`S3Error::Redirect`]) as an error naming the
/// bucket's region when the server tells it.
fn redirect_error(status: u16, bucket: &str, h: &HeaderMap) -> Option<S3Error> {
    matches!(status, 301 | 302 | 307 | 308).then(|| S3Error::Redirect {
        status,
        bucket: bucket.to_string(),
        region: header_str(h, "x-amz-bucket-region").map(str::to_string),
    })
}

/// The region an `AuthorizationHeaderMalformed` message says it expected
/// ("the region 'us-east-1' is wrong; expecting 'eu-west-1'").
fn expected_region(message: &str) -> Option<String> {
    let rest = message.split("expecting '").nth(1)?;
    let region = rest.split('\'').next()?;
    (!region.is_empty() && region.len() < 64).then(|| region.to_owned())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header_str(h, "content-length").and_then(|v| v.trim().parse().ok())
}

/// Runs `fut`, failing if `progress` (millis since `start`) has not moved for `idle`.
async fn with_idle_timeout<T>(
    fut: impl Future<Output = T>,
    progress: &AtomicU64,
    start: Instant,
    idle: Duration,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        let deadline = start + Duration::from_millis(progress.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(deadline) => {
                let last = start + Duration::from_millis(progress.load(Ordering::Relaxed));
                if Instant::now() >= last + idle {
                    return None;
                }
            }
        }
    }
}

/// `e` and its sources, `: `-separated (reqwest's own message is often just "builder error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    message
}

/// The certificates of a PEM bundle, each parsed here so that a bad one is reported with the
/// file's name (reqwest would only fail `build()` with "builder error").
fn load_ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let bad = |reason: String| ConfigError::CaBundle {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let invalid = |e: &dyn std::fmt::Display| bad(format!("certificate {}: {e}", i + 1));
        let der = der.map_err(|e| invalid(&e))?;
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| invalid(&format!("not a valid X.509 certificate ({e:?})")))?;
        certs.push(reqwest::Certificate::from_der(&der).map_err(|e| invalid(&error_chain(&e)))?);
    }
    if certs.is_empty() {
        return Err(bad("no certificate in the bundle".into()));
    }
    Ok(certs)
}

fn transport(op: &str, e: &reqwest::Error) -> S3Error {
    let (op, message) = (op.to_string(), error_chain(e));
    if refused_certificate(e) {
        S3Error::Certificate { op, message }
    } else {
        S3Error::Transport { op, message }
    }
}

/// Whether `e` is the TLS stack refusing the server's certificate. (rustls's
/// error sits inside nested `io::Error`s, whose `source()` skips them.)
fn refused_certificate(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::InvalidCertificate(_)) = err.downcast_ref::<rustls::Error>() {
            return true;
        }
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
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
                authority,
                http,
                credentials,
                signer: std::sync::Mutex::new(None),
                learned: std::sync::Mutex::new(None),
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
        let learned = self.inner.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned
            .as_ref()
            .map_or_else(|| self.inner.cfg.region.clone(), |(r, _)| r.clone())
    }

    /// Use `region` from now on; on AWS's default endpoint for the
    /// configured region, that region's endpoint too. Whether anything
    /// changed (a redirect to the region already in use is not followed).
    fn learn_region(&self, region: &str) -> bool {
        if region.is_empty() || region == self.region() {
            return false;
        }
        let aws_default = format!("s3.{}.amazonaws.com", self.inner.cfg.region);
        let authority =
            (self.inner.authority == aws_default).then(|| format!("s3.{region}.amazonaws.com"));
        warn!(bucket = %self.inner.cfg.bucket, region, "s3: the bucket is in another region; using it from now on (set AWS_REGION to skip the redirect)");
        *self.inner.learned.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((region.to_owned(), authority));
        true
    }

    fn authority(&self) -> String {
        let learned = self.inner.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned
            .as_ref()
            .and_then(|(_, a)| a.clone())
            .unwrap_or_else(|| self.inner.authority.clone())
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
            (self.authority(), path)
        } else {
            (
                format!("{}.{}", inner.cfg.bucket, self.authority()),
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
        (self.map_error(req, status, xml, request_id), date)
    }

    fn map_error(
        &self,
        req: &Request,
        status: u16,
        xml: XmlError,
        request_id: Option<String>,
    ) -> S3Error {
        let key = req.key.clone();
        let code = xml.code.as_str();
        if status == 412 || code == "PreconditionFailed" {
            return S3Error::PreconditionFailed {
                key: key.unwrap_or_default(),
            };
        }
        if code == "NoSuchBucket" || (status == 404 && code.is_empty() && key.is_none()) {
            return S3Error::NoSuchBucket {
                bucket: self.inner.cfg.bucket.clone(),
            };
        }
        if let Some(k) = &key {
            if code == "NoSuchKey" || (status == 404 && code.is_empty()) {
                return S3Error::NotFound { key: k.clone() };
            }
        }
        if status == 403 && code == "AccessDenied" {
            return S3Error::Denied {
                op: req.op(),
                code: xml.code,
                message: xml.message,
                request_id,
            };
        }
        if (status == 403 && (code.is_empty() || !matches!(code, "SlowDown")))
            || AUTH_CODES.contains(&code)
        {
            return S3Error::Auth {
                status,
                code: if code.is_empty() {
                    "Forbidden".into()
                } else {
                    xml.code
                },
                message: xml.message,
                request_id,
            };
        }
        S3Error::Service {
            status,
            code: xml.code,
            message: xml.message,
            request_id,
            key,
        }
    }

    /// Sends `req` with retries. `on_success` sees each 2xx response and may itself fail
    /// (e.g. a 200 whose body is an error); retryable failures from it are retried too.
    pub(crate) async fn send<T, F, Fut>(&self, req: &Request, on_success: F) -> Result<T, S3Error>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, S3Error>>,
    {
        let retry = &self.inner.cfg.retry;
        let mut attempt = 0u32;
        let mut skew_corrected = false;
        let mut refreshed = false;
        let mut redirected = false;
        loop {
            attempt += 1;
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
                        let region = match &e {
                            S3Error::Redirect {
                                region: Some(r), ..
                            } => Some(r.clone()),
                            S3Error::Auth { code, message, .. }
                                if code == "AuthorizationHeaderMalformed" =>
                            {
                                expected_region(message)
                            }
                            _ => None,
                        };
                        if let Some(r) = region.filter(|_| !redirected) {
                            if self.learn_region(&r) {
                                redirected = true;
                                attempt -= 1;
                                continue;
                            }
                        }
                        let expired = matches!(&e, S3Error::Auth { code, .. }
                            if matches!(code.as_str(), "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired"));
                        if expired && !refreshed {
                            warn!("s3: the server says the session token expired; fetching new credentials and retrying");
                            self.inner.credentials.invalidate().await;
                            refreshed = true;
                            attempt -= 1;
                            continue;
                        }
                        if skew_suspect && !skew_corrected {
                            if let Some(d) = date.as_deref() {
                                if self.inner.skew.correct_from(d, signed_at) {
                                    warn!(offset_secs = self.inner.skew.offset(), "s3: clock skew detected from the server's Date header; retrying with a corrected clock");
                                    skew_corrected = true;
                                    attempt -= 1;
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
            if attempt >= retry.max_attempts {
                return Err(if attempt > 1 {
                    S3Error::RetriesExhausted {
                        attempts: attempt,
                        last: Box::new(err),
                    }
                } else {
                    err
                });
            }
            let maybe_applied = match &err {
                S3Error::Transport { .. } | S3Error::Timeout { .. } => true,
                S3Error::Service { status, .. } => *status >= 500,
                _ => false,
            };
            if maybe_applied {
                req.uncertain.store(true, Ordering::Relaxed);
            }
            let delay = retry.backoff(attempt);
            debug!(method = %req.method, key = ?req.key, attempt, ?delay, error = %err, "s3: retrying");
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
        let mut req = Request::new(Method::PUT, Some(key))
            .object_write(&self.inner.cfg)
            .body(body.clone())
            .await;
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
        let mut file = file;
        let start = tokio::io::AsyncSeekExt::stream_position(&mut file).await?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.put_stream(key, &mut file, cond.clone()).await {
                Err(e) if e.is_conflict() && tries < self.inner.cfg.retry.max_attempts => {
                    warn!(key, "s3: a conditional multipart upload raced another write (409); uploading it again");
                    tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(start))
                        .await?;
                }
                r => return r,
            }
        }
    }

    /// Opens a GET (optionally from `offset`, requiring `etag`) and returns the response.
    async fn open_get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        etag: Option<&str>,
    ) -> Result<reqwest::Response, S3Error> {
        let mut req = Request::new(Method::GET, Some(key));
        if let Some((first, last)) = range {
            req = req.header("range", &format!("bytes={first}-{last}"));
        }
        if let Some(e) = etag {
            req = req.header("if-match", e);
        }
        self.send(&req, |resp| async move { Ok(resp) }).await
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
        let resp = self.open_get(key, None, None).await?;
        let expected = content_length(resp.headers());
        let meta = meta_from_headers(key, resp.headers(), expected.unwrap_or(0));
        let stream = BodyState::new(
            self,
            key,
            meta.etag.clone(),
            0,
            expected,
            expected,
            Some(resp),
        )
        .into_stream();
        Ok((meta, stream))
    }

    /// Downloads an object to `dest` (parent directories created). The bytes go to a temporary
    /// file in the same directory, renamed over `dest` only once complete and verified.
    ///
    /// The first request asks for the first part (`Range`), which gives the size and ETag in one
    /// round trip; larger objects are then fetched as `concurrency` ranged GETs (`If-Match` the
    /// ETag, so every range comes from the same object version), written at their offsets.
    pub async fn download_file(&self, key: &str, dest: &Path) -> Result<ObjectMeta, S3Error> {
        check_key(key)?;
        let cfg = &self.inner.cfg;
        let part = cfg.part_size as u64;
        let mut resp = match self.open_get(key, Some((0, part - 1)), None).await {
            Ok(r) => r,
            // An empty object has no byte 0: S3 answers 416 to any range.
            Err(S3Error::Service { status: 416, .. }) => self.open_get(key, None, None).await?,
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
            resp = self.open_get(key, None, None).await?;
            (etag, len, total) = first_range(key, part, &resp)?;
        }
        let h = resp.headers();
        let mut meta = meta_from_headers(key, h, total.unwrap_or(0));

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

        let first = BodyState::new(self, key, etag.clone(), 0, len, total, Some(resp));
        let mut jobs = vec![write_at(file.clone(), 0, first.into_stream()).boxed()];
        if let (Some(total), Some(first_len), Some(etag)) = (total, len, etag.as_ref()) {
            let mut start = first_len;
            while start < total {
                let n = part.min(total - start);
                let body = BodyState::new(
                    self,
                    key,
                    Some(etag.clone()),
                    start,
                    Some(n),
                    Some(total),
                    None,
                );
                jobs.push(write_at(file.clone(), start, body.into_stream()).boxed());
                start += n;
            }
        }
        let written: u64 = futures::stream::iter(jobs)
            .buffer_unordered(cfg.concurrency)
            .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
            .await?;
        if let Some(total) = total {
            if written != total {
                return Err(S3Error::ShortBody {
                    op: format!("GET {key:?}"),
                    expected: total,
                    got: written,
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

/// Writes a body stream into `file` from offset `base`, in blocks of up to 1 MiB.
async fn write_at(
    file: Arc<std::fs::File>,
    base: u64,
    body: impl Stream<Item = Result<Bytes, S3Error>>,
) -> Result<u64, S3Error> {
    const BLOCK: usize = 1 << 20;
    async fn flush(file: &Arc<std::fs::File>, at: u64, data: Bytes) -> Result<(), S3Error> {
        use std::os::unix::fs::FileExt;
        let file = file.clone();
        tokio::task::spawn_blocking(move || file.write_all_at(&data, at))
            .await
            .expect("pwrite does not panic")?;
        Ok(())
    }
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::with_capacity(BLOCK);
    let mut at = base;
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() >= BLOCK {
            let data = buf.split().freeze();
            let n = data.len() as u64;
            flush(&file, at, data).await?;
            at += n;
            buf.reserve(BLOCK);
        }
    }
    if !buf.is_empty() {
        let data = buf.split().freeze();
        let n = data.len() as u64;
        flush(&file, at, data).await?;
        at += n;
    }
    Ok(at - base)
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
    failures: u32,
    done: bool,
}

impl BodyState {
    /// A body for `[base, base + expected)` of an object of `total` bytes; `resp` is an
    /// already-open response for it, or `None` to open it (with `Range` + `If-Match`) on first read.
    fn new(
        client: &S3Client,
        key: &str,
        etag: Option<String>,
        base: u64,
        expected: Option<u64>,
        total: Option<u64>,
        resp: Option<reqwest::Response>,
    ) -> BodyState {
        BodyState {
            client: client.clone(),
            key: key.to_string(),
            etag,
            base,
            expected,
            total,
            received: 0,
            stream: resp.map(|r| r.bytes_stream().boxed()),
            failures: 0,
            done: false,
        }
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
        let max_attempts = self.client.inner.cfg.retry.max_attempts;
        let op = |key: &str| format!("GET {key:?}");
        loop {
            if self.done {
                return None;
            }
            if self.expected.is_some_and(|e| self.received >= e) {
                self.done = true;
                self.stream = None;
                return None;
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
                    return Some(Ok(chunk));
                }
                Ok(None) => match self.expected {
                    None => {
                        self.done = true;
                        return None;
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
            self.failures += 1;
            let resumable = self.expected.is_some() && self.total.is_some() && self.etag.is_some();
            if !resumable || self.failures >= max_attempts {
                self.done = true;
                return Some(Err(if self.failures > 1 {
                    S3Error::RetriesExhausted {
                        attempts: self.failures,
                        last: Box::new(failure),
                    }
                } else {
                    failure
                }));
            }
            let delay = self.client.inner.cfg.retry.backoff(self.failures);
            debug!(key = %self.key, received = self.received, failures = self.failures, ?delay, error = %failure, "s3: resuming download");
            tokio::time::sleep(delay).await;
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
            .open_get(&self.key, Some((first, last)), Some(&etag))
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
    fn the_expected_region_is_read_from_s3s_message() {
        assert_eq!(
            expected_region("The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(expected_region("malformed"), None);
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

    #[test]
    fn redirects_name_the_bucket_region() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-bucket-region", "eu-west-1".parse().unwrap());
        for status in [301, 307] {
            let e = redirect_error(status, "my-bucket", &h).unwrap();
            assert!(
                matches!(&e, S3Error::Redirect { region: Some(r), .. } if r == "eu-west-1"),
                "{e:?}"
            );
            assert!(!e.is_retryable());
            let msg = e.to_string();
            for part in [
                &format!("HTTP {status}"),
                "\"my-bucket\"",
                "another region (x-amz-bucket-region: eu-west-1)",
                "endpoint is wrong",
            ] {
                assert!(msg.contains(part), "{part:?} missing: {msg}");
            }
        }
        let e = redirect_error(301, "b", &HeaderMap::new()).unwrap();
        assert!(
            e.to_string().contains("another region or the endpoint"),
            "{e}"
        );
        for status in [200, 304, 403, 404] {
            assert!(redirect_error(status, "b", &h).is_none(), "{status}");
        }
    }
}
