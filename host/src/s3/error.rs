//! Typed S3 errors, and the parser for S3's XML error bodies.

use std::io;

use quick_xml::events::Event;
use quick_xml::Reader;

/// What an S3 operation can fail with. Messages never carry credentials or signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The object does not exist (404 / `NoSuchKey`).
    #[error("s3: object not found: {key:?}")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// The bucket does not exist (`NoSuchBucket`).
    #[error("s3: bucket {bucket:?} does not exist")]
    NoSuchBucket {
        /// The bucket name.
        bucket: String,
    },
    /// A conditional write lost (412 `PreconditionFailed`).
    #[error("s3: precondition failed for {key:?} (the object changed or already exists)")]
    PreconditionFailed {
        /// The object key.
        key: String,
    },
    /// The credentials were accepted, but not allowed to do this (403
    /// `AccessDenied`): a matter of permissions, not of authentication.
    #[error("s3: {op} was denied: {code}: {message} (the credentials were accepted but may not do this: check the bucket policy and the IAM permissions of the identity in use){}", request(request_id))]
    Denied {
        /// The operation, e.g. `PUT key`.
        op: String,
        /// S3 error code (`AccessDenied`).
        code: String,
        /// S3's message.
        message: String,
        /// `x-amz-request-id` or `<RequestId>`.
        request_id: Option<String>,
    },
    /// The server rejected the credentials or the signature.
    #[error("s3: the credentials or the signature were refused: HTTP {status} {code}: {message} (check the access key id, secret, session token, region and clock){}", request(request_id))]
    Auth {
        /// HTTP status.
        status: u16,
        /// S3 error code, e.g. `SignatureDoesNotMatch`, `InvalidAccessKeyId`, `AccessDenied`.
        code: String,
        /// S3's message.
        message: String,
        /// `x-amz-request-id` or `<RequestId>`.
        request_id: Option<String>,
    },
    /// Any other error answer from the service.
    #[error("s3: HTTP {status} {code}: {message}{}{}", key.as_ref().map(|k| format!(" (key {k:?})")).unwrap_or_default(), request(request_id))]
    Service {
        /// HTTP status (200 for an error body inside a successful CompleteMultipartUpload).
        status: u16,
        /// S3 error code (empty if the body had none).
        code: String,
        /// S3's message.
        message: String,
        /// `x-amz-request-id` or `<RequestId>`.
        request_id: Option<String>,
        /// The object key, if the operation had one.
        key: Option<String>,
    },
    /// Connecting, sending or receiving failed.
    #[error("s3: transport error during {op}: {message}")]
    Transport {
        /// The operation, e.g. `GET key`.
        op: String,
        /// What failed (from the HTTP stack; holds no credentials).
        message: String,
    },
    /// The server's TLS certificate was refused: no retry can fix that.
    #[error("s3: the server's TLS certificate was refused during {op}: {message} (if the endpoint uses a private CA, set AWS_CA_BUNDLE to a PEM file holding that CA's certificate; else check the endpoint URL)")]
    Certificate {
        /// The operation, e.g. `PUT key`.
        op: String,
        /// What the TLS stack said (holds no credentials).
        message: String,
    },
    /// No credentials to sign with (see [`crate::s3::credential`]).
    #[error("s3: {0}")]
    Credentials(#[from] crate::s3::credential::CredentialError),
    /// Nothing was sent or received for longer than the read timeout.
    #[error("s3: {op}: no progress for {secs:.1} s (read timeout)")]
    Timeout {
        /// The operation.
        op: String,
        /// The idle timeout, in seconds.
        secs: f64,
    },
    /// A body ended before its `Content-Length` (the connection was cut mid-body).
    #[error("s3: short body while reading {op}: got {got} of {expected} bytes before the connection was cut; a retry may succeed")]
    ShortBody {
        /// What was being read, e.g. `GET "key"`.
        op: String,
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The object changed while it was being read (its ETag differs on resume).
    #[error("s3: object {key:?} changed during the download (ETag {before} became {after})")]
    Changed {
        /// The key.
        key: String,
        /// ETag when the download started.
        before: String,
        /// ETag on resume.
        after: String,
    },
    /// The bytes received do not have the object's CRC64NVME (a byte
    /// changed in transit that no length check sees).
    #[error("s3: {op}: the bytes received have CRC64NVME {actual}, the object's is {expected}: corrupted in transit (a retry may succeed), or the store keeps a wrong checksum (CCWS_CHECKSUMS=true stops checking reads)")]
    ChecksumMismatch {
        /// The operation, e.g. `GET "key"`.
        op: String,
        /// The object's checksum, as the server gave it.
        expected: String,
        /// The checksum of the bytes received.
        actual: String,
    },
    /// A local I/O error (reading the source, writing the destination).
    #[error("s3: local I/O error: {0}")]
    Io(#[from] io::Error),
    /// The key cannot be stored (empty, or a `.` / `..` segment).
    #[error("s3: invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The server answered something this client does not understand.
    #[error("s3: unexpected response to {op}: {message}")]
    InvalidResponse {
        /// The operation.
        op: String,
        /// What was wrong.
        message: String,
    },
    /// The server redirected the request (301, 302, 307, 308): the bucket lives in another
    /// region, or the endpoint is not the bucket's. Redirects are not followed, since the
    /// request's signature names the region and host it was signed for.
    #[error("s3: HTTP {status} redirect for bucket {bucket:?}: the bucket is in another region{} or the endpoint is wrong; set AWS_REGION (or --region) to the bucket's region, and AWS_ENDPOINT_URL (or --endpoint) to its endpoint if it is not AWS", region_hint(.region))]
    Redirect {
        /// HTTP status.
        status: u16,
        /// The bucket.
        bucket: String,
        /// The bucket's region as the server named it (`x-amz-bucket-region`), if it did.
        region: Option<String>,
    },
    /// The last of `attempts` attempts failed with a transient error.
    #[error("s3: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<S3Error>,
    },
}

fn region_hint(region: &Option<String>) -> String {
    match region {
        Some(r) => format!(" (x-amz-bucket-region: {r})"),
        None => String::new(),
    }
}

/// S3 error codes that are worth another attempt whatever the status.
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestTimeoutException",
    "OperationAborted",
    // A conditional write that raced another: try again (S3's advice).
    "ConditionalRequestConflict",
];

/// ` (request id X)`, or nothing when the server sent none.
fn request(id: &Option<String>) -> String {
    id.as_ref()
        .map(|i| format!(" (request id {i})"))
        .unwrap_or_default()
}

impl S3Error {
    /// Whether another attempt may succeed (connection errors, timeouts, short bodies, 408, 429,
    /// 5xx, `SlowDown`, `RequestTimeout`, `InternalError`, ...).
    pub fn is_retryable(&self) -> bool {
        match self {
            S3Error::Transport { .. } | S3Error::Timeout { .. } | S3Error::ShortBody { .. } => true,
            S3Error::Service { status, code, .. } => {
                matches!(status, 408 | 429 | 500..=599) || RETRYABLE_CODES.contains(&code.as_str())
            }
            _ => false,
        }
    }

    /// The failure behind a [`S3Error::RetriesExhausted`], or `self`.
    pub fn root(&self) -> &S3Error {
        match self {
            S3Error::RetriesExhausted { last, .. } => last.root(),
            e => e,
        }
    }

    /// True for [`S3Error::Credentials`] (also behind `RetriesExhausted`):
    /// a matter of configuration, not of the store.
    pub fn is_credentials(&self) -> bool {
        matches!(self.root(), S3Error::Credentials(_))
    }

    /// True for a 409 `ConditionalRequestConflict` (also behind
    /// `RetriesExhausted`): a conditional write raced another; it may be
    /// tried again (a multipart upload from the start).
    pub fn is_conflict(&self) -> bool {
        matches!(self.root(), S3Error::Service { code, .. } if code == "ConditionalRequestConflict")
    }

    /// True for [`S3Error::NotFound`] (also behind `RetriesExhausted`).
    pub fn is_not_found(&self) -> bool {
        matches!(self.root(), S3Error::NotFound { .. })
    }

    /// Converts into an `io::Error` of a fitting kind (short bodies are `UnexpectedEof`).
    pub fn into_io(self) -> io::Error {
        let kind = match self.root() {
            S3Error::ShortBody { .. } => io::ErrorKind::UnexpectedEof,
            S3Error::Timeout { .. } => io::ErrorKind::TimedOut,
            S3Error::NotFound { .. } => io::ErrorKind::NotFound,
            S3Error::ChecksumMismatch { .. } => io::ErrorKind::InvalidData,
            S3Error::Io(e) => e.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
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

/// The typed error for an S3 error answer: `status` and the `<Error>`
/// document's fields, for operation `op` on `key` (or the bucket).
pub(crate) fn classify(
    op: String,
    key: Option<String>,
    bucket: &str,
    status: u16,
    xml: XmlError,
    request_id: Option<String>,
) -> S3Error {
    let code = xml.code.as_str();
    if status == 412 || code == "PreconditionFailed" {
        return S3Error::PreconditionFailed {
            key: key.unwrap_or_default(),
        };
    }
    if code == "NoSuchBucket" || (status == 404 && code.is_empty() && key.is_none()) {
        return S3Error::NoSuchBucket {
            bucket: bucket.to_owned(),
        };
    }
    if let Some(k) = &key {
        if code == "NoSuchKey" || (status == 404 && code.is_empty()) {
            return S3Error::NotFound { key: k.clone() };
        }
    }
    if status == 403 && code == "AccessDenied" {
        return S3Error::Denied {
            op,
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

/// The fields of an S3 `<Error>` document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct XmlError {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

/// Parses `<Error><Code>…</Code><Message>…</Message><RequestId>…</RequestId></Error>`.
/// Returns `None` if the document's root element is not `Error`.
pub(crate) fn parse_error_xml(body: &[u8]) -> Option<XmlError> {
    let fields = xml_fields(body, &["Code", "Message", "RequestId"]).ok()?;
    if fields.root.as_deref() != Some("Error") {
        return None;
    }
    let get = |n: &str| fields.get(n).map(str::to_string);
    Some(XmlError {
        code: get("Code").unwrap_or_default(),
        message: get("Message").unwrap_or_default(),
        request_id: get("RequestId"),
    })
}

/// The root element name and the first text value of each wanted element (any depth).
#[derive(Debug, Default)]
pub(crate) struct XmlFields {
    pub root: Option<String>,
    pub values: Vec<(String, String)>,
}

impl XmlFields {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn xml_fields(body: &[u8], wanted: &[&str]) -> Result<XmlFields, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut reader = Reader::from_str(text.trim_start());
    let mut out = XmlFields::default();
    let mut current: Option<String> = None;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if out.root.is_none() {
                    out.root = Some(name.clone());
                }
                current = Some(name);
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if out.root.is_none() {
                    out.root = Some(name);
                }
            }
            Event::Text(t) => {
                if let Some(name) = current.as_ref() {
                    if wanted.contains(&name.as_str()) && out.get(name).is_none() {
                        let v = t.unescape().map_err(|e| e.to_string())?;
                        out.values.push((name.clone(), v.into_owned()));
                    }
                }
            }
            Event::End(_) => current = None,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_answers_are_classified_by_status_and_code() {
        let c = |status: u16, code: &str, key: Option<&str>| {
            let xml = XmlError {
                code: code.into(),
                message: "m".into(),
                request_id: None,
            };
            classify(
                "PUT \"k\"".into(),
                key.map(Into::into),
                "b",
                status,
                xml,
                None,
            )
        };
        let k = Some("k");
        assert!(matches!(c(412, "", k), S3Error::PreconditionFailed { key } if key == "k"));
        assert!(matches!(c(404, "NoSuchKey", k), S3Error::NotFound { .. }));
        assert!(matches!(c(404, "", k), S3Error::NotFound { .. }));
        assert!(matches!(c(404, "", None), S3Error::NoSuchBucket { bucket } if bucket == "b"));
        assert!(matches!(
            c(404, "NoSuchBucket", k),
            S3Error::NoSuchBucket { .. }
        ));
        assert!(
            matches!(c(403, "AccessDenied", k), S3Error::Denied { op, .. } if op == "PUT \"k\"")
        );
        assert!(matches!(c(403, "", k), S3Error::Auth { code, .. } if code == "Forbidden"));
        assert!(matches!(
            c(400, "InvalidAccessKeyId", k),
            S3Error::Auth { .. }
        ));
        assert!(matches!(c(403, "SlowDown", k), S3Error::Service { .. }));
        assert!(matches!(
            c(500, "InternalError", k),
            S3Error::Service { status: 500, .. }
        ));
    }

    use super::*;

    #[test]
    fn parses_error_body() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SlowDown</Code><Message>Please reduce your request rate &amp; retry.</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>x</HostId></Error>"#;
        let e = parse_error_xml(body).unwrap();
        assert_eq!(e.code, "SlowDown");
        assert_eq!(e.message, "Please reduce your request rate & retry.");
        assert_eq!(e.request_id.as_deref(), Some("4442587FB7D0A2F9"));
        assert!(parse_error_xml(
            b"<CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"
        )
        .is_none());
        assert!(parse_error_xml(b"not xml at all <").is_none());
        // A 200 CompleteMultipartUpload answer that is an error, after keep-alive whitespace.
        let e = parse_error_xml(b"   \n  <Error><Code>InternalError</Code></Error>").unwrap();
        assert_eq!(e.code, "InternalError");
    }

    #[test]
    fn retryability() {
        let svc = |status, code: &str| S3Error::Service {
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
            key: None,
        };
        assert!(svc(500, "").is_retryable());
        assert!(svc(503, "SlowDown").is_retryable());
        assert!(svc(400, "RequestTimeout").is_retryable());
        assert!(svc(200, "InternalError").is_retryable());
        assert!(svc(408, "").is_retryable());
        assert!(svc(429, "").is_retryable());
        assert!(!svc(400, "InvalidArgument").is_retryable());
        assert!(!S3Error::NotFound { key: "k".into() }.is_retryable());
        let short = || S3Error::ShortBody {
            op: "GET \"k\"".into(),
            expected: 2,
            got: 1,
        };
        assert!(short().is_retryable());
        let io = short().into_io();
        assert_eq!(io.kind(), io::ErrorKind::UnexpectedEof);
        let msg = io.to_string();
        for part in ["short body", "GET \"k\"", "1 of 2 bytes", "cut", "retry"] {
            assert!(msg.contains(part), "{part:?} missing: {msg}");
        }
    }
}
