//! One S3 request as the client builds it (re-signed for every attempt),
//! and the small pieces every request uses: key checks, response headers,
//! the idle timeout, a transport failure as an [`S3Error`], the CA bundle.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Method;
use tokio::time::Instant;

use super::cause::{error_chain, refused_certificate};
use super::config::{ConfigError, S3Config};
use super::error::S3Error;
use super::sigv4::{self, EMPTY_SHA256};

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
    pub(crate) fn is_complete(&self) -> bool {
        self.method == Method::POST && self.query.iter().any(|(k, _)| k == "uploadId")
    }

    pub(crate) fn op(&self) -> String {
        match &self.key {
            Some(k) => format!("{} {k:?}", self.method),
            None => format!("{} bucket", self.method),
        }
    }
}

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

pub(crate) fn content_length(h: &HeaderMap) -> Option<u64> {
    header_str(h, "content-length").and_then(|v| v.trim().parse().ok())
}

/// Runs `fut`, failing if `progress` (millis since `start`) has not moved for `idle`.
pub(crate) async fn with_idle_timeout<T>(
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

/// The certificates of a PEM bundle, each parsed here so that a bad one is reported with the
/// file's name (reqwest would only fail `build()` with "builder error").
pub(crate) fn load_ca_bundle(
    path: &std::path::Path,
) -> Result<Vec<reqwest::Certificate>, ConfigError> {
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

pub(crate) fn transport(op: &str, e: &reqwest::Error) -> S3Error {
    let (op, message) = (op.to_string(), error_chain(e));
    if refused_certificate(e) {
        S3Error::Certificate { op, message }
    } else {
        S3Error::Transport { op, message }
    }
}
