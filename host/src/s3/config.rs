//! S3 endpoint configuration, its builder and validation.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::retry::RetryConfig;

/// Smallest part size S3 accepts for every part but the last (5 MiB).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Largest part size S3 accepts (5 GiB).
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// Default multipart part size (8 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Default number of parts uploaded at the same time.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A configuration value that cannot work; each variant names the field and the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint is not a bare `http://host[:port]` / `https://host[:port]` URL.
    #[error("s3 config: invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given, with any `user:password@` removed.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The region is empty.
    #[error("s3 config: region must not be empty")]
    EmptyRegion,
    /// The bucket name breaks S3's bucket naming rules.
    #[error("s3 config: invalid bucket name {bucket:?}: {reason}")]
    InvalidBucket {
        /// The bucket name as given.
        bucket: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The access key id is empty.
    #[error("s3 config: access key id must not be empty")]
    EmptyAccessKey,
    /// The secret access key is empty.
    #[error("s3 config: secret access key must not be empty")]
    EmptySecret,
    /// The part size is outside S3's limits.
    #[error("s3 config: part size {part_size} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes")]
    InvalidPartSize {
        /// The part size as given.
        part_size: usize,
    },
    /// Concurrency must be between 1 and 64.
    #[error("s3 config: concurrency {0} must be between 1 and 64")]
    InvalidConcurrency(usize),
    /// The retry settings cannot work.
    #[error("s3 config: invalid retry settings: {0}")]
    InvalidRetry(&'static str),
    /// A timeout is zero.
    #[error("s3 config: {0} timeout must be greater than zero")]
    ZeroTimeout(&'static str),
    /// The extra CA bundle cannot be read or parsed.
    #[error(
        "s3 config: CA bundle {path}: {reason}; it must be a PEM file of CA certificates (ccws \
         takes its path from AWS_CA_BUNDLE: fix the file, or unset the variable)"
    )]
    CaBundle {
        /// Path of the bundle.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("s3 config: cannot build the HTTP client: {0}")]
    HttpClient(String),
}

/// Server-side encryption, for buckets whose policy demands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// S3-managed keys (`AES256`).
    Aes256,
    /// KMS (`aws:kms`), with the key's id or ARN, or the bucket's default key.
    Kms {
        /// The key id or ARN; `None`: the account's default `aws/s3` key.
        key_id: Option<String>,
    },
}

impl Encryption {
    /// From the values of `--sse` and `--sse-kms-key-id` (or `CCWS_SSE`,
    /// `CCWS_SSE_KMS_KEY_ID`): `AES256` or `aws:kms`.
    pub fn parse(sse: &str, kms_key_id: Option<String>) -> Result<Encryption, String> {
        match (sse, kms_key_id) {
            ("AES256", None) => Ok(Encryption::Aes256),
            ("AES256", Some(_)) => Err("a KMS key id goes with aws:kms, not AES256".into()),
            ("aws:kms", key_id) => Ok(Encryption::Kms { key_id }),
            (other, _) => Err(format!("{other:?} is not AES256 or aws:kms")),
        }
    }

    /// The headers that ask for it.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Encryption::Aes256 => vec![("x-amz-server-side-encryption", "AES256".into())],
            Encryption::Kms { key_id } => {
                let mut h = vec![("x-amz-server-side-encryption", "aws:kms".to_owned())];
                if let Some(k) = key_id {
                    h.push(("x-amz-server-side-encryption-aws-kms-key-id", k.clone()));
                }
                h
            }
        }
    }
}

/// Everything needed to talk to one bucket of an S3-compatible service.
///
/// Build it with [`S3Config::builder`]; [`S3Config::validate`] checks every field.
/// `Debug` never prints the secret or the session token.
#[derive(Clone)]
pub struct S3Config {
    /// Full endpoint URL with scheme and optional port, no path: `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// Signing region, e.g. `us-east-1`.
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never logged).
    pub secret_access_key: String,
    /// Optional session token, sent and signed as `x-amz-security-token` (never logged).
    pub session_token: Option<String>,
    /// Where credentials come from instead of the three fields above (a
    /// provider chain, refreshed before expiry); `None`: those fields.
    pub credentials: Option<std::sync::Arc<crate::s3::credential::Cached>>,
    /// `true`: `endpoint/bucket/key`; `false`: `bucket.endpoint/key` (virtual-hosted style).
    pub path_style: bool,
    /// Server-side encryption asked for on every object written.
    pub encryption: Option<Encryption>,
    /// Storage class of every object written (`STANDARD_IA`, ...); `None`: the bucket's default.
    pub storage_class: Option<String>,
    /// Send a CRC64NVME checksum with every object write and part, for the
    /// server to verify (on by default; off for stores that refuse them).
    pub checksums: bool,
    /// Also check a whole-object GET, and a download in ranges (their sums
    /// combined), against the object's full-object checksum. Off by
    /// default: a store that keeps a stale checksum would make good objects
    /// unreadable (s3s-fs 0.14.1 keeps the replaced object's checksum when
    /// a multipart upload overwrites it).
    pub verify_checksums: bool,
    /// Extra PEM CA bundle trusted in addition to the platform roots.
    pub ca_bundle: Option<PathBuf>,
    /// Multipart part size in bytes (at least 5 MiB).
    pub part_size: usize,
    /// Parts uploaded at the same time.
    pub concurrency: usize,
    /// Retry policy for transient failures.
    pub retry: RetryConfig,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest time without progress (no byte sent or received) before a request is abandoned.
    /// There is deliberately no total timeout: a large healthy transfer is never cut.
    pub read_timeout: Duration,
    /// Fixed DNS answers (host name → address), e.g. to reach `bucket.localhost` in tests.
    pub resolve: Vec<(String, SocketAddr)>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<provider>"),
            )
            .field("path_style", &self.path_style)
            .field("encryption", &self.encryption)
            .field("storage_class", &self.storage_class)
            .field("checksums", &self.checksums)
            .field("verify_checksums", &self.verify_checksums)
            .field("ca_bundle", &self.ca_bundle)
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("resolve", &self.resolve)
            .finish()
    }
}

impl S3Config {
    /// Starts a builder with the required fields; everything else has a default.
    pub fn builder(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3ConfigBuilder {
        S3ConfigBuilder {
            cfg: S3Config {
                endpoint: endpoint.into(),
                region: region.into(),
                bucket: bucket.into(),
                access_key_id: access_key_id.into(),
                secret_access_key: secret_access_key.into(),
                session_token: None,
                credentials: None,
                path_style: false,
                encryption: None,
                storage_class: None,
                checksums: true,
                verify_checksums: false,
                ca_bundle: None,
                part_size: DEFAULT_PART_SIZE,
                concurrency: DEFAULT_CONCURRENCY,
                retry: RetryConfig::default(),
                connect_timeout: Duration::from_secs(10),
                read_timeout: Duration::from_secs(60),
                resolve: Vec::new(),
            },
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_endpoint(&self.endpoint)?;
        if self.region.trim().is_empty() {
            return Err(ConfigError::EmptyRegion);
        }
        validate_bucket(&self.bucket)?;
        if self.credentials.is_none() && self.access_key_id.is_empty() {
            return Err(ConfigError::EmptyAccessKey);
        }
        if self.credentials.is_none() && self.secret_access_key.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(ConfigError::InvalidPartSize {
                part_size: self.part_size,
            });
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(ConfigError::InvalidConcurrency(self.concurrency));
        }
        self.retry.validate()?;
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("connect"));
        }
        if self.read_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("read"));
        }
        Ok(())
    }

    /// The endpoint parsed (only valid after [`S3Config::validate`]).
    pub(crate) fn endpoint_url(&self) -> Result<Url, ConfigError> {
        parse_endpoint(&self.endpoint)
    }
}

/// Builder for [`S3Config`]; `build()` validates.
#[derive(Debug, Clone)]
pub struct S3ConfigBuilder {
    cfg: S3Config,
}

impl S3ConfigBuilder {
    /// Takes credentials from `provider` (e.g. [`crate::s3::credential::default_chain`])
    /// rather than the keys given to [`S3Config::builder`], which may then be empty.
    pub fn credentials(mut self, provider: std::sync::Arc<crate::s3::credential::Cached>) -> Self {
        self.cfg.credentials = Some(provider);
        self
    }

    /// Asks for server-side encryption of every object written.
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.cfg.encryption = Some(encryption);
        self
    }

    /// Sends (or not) a CRC64NVME checksum with every write.
    pub fn checksums(mut self, on: bool) -> Self {
        self.cfg.checksums = on;
        self
    }

    /// Checks (or not) GETs and ranged downloads against the object's checksum.
    pub fn verify_checksums(mut self, on: bool) -> Self {
        self.cfg.verify_checksums = on;
        self
    }

    /// Writes every object in this storage class.
    pub fn storage_class(mut self, class: impl Into<String>) -> Self {
        self.cfg.storage_class = Some(class.into());
        self
    }

    /// Sets a session token (STS credentials).
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        self.cfg.session_token = Some(token.into());
        self
    }
    /// Path-style (`true`, MinIO and most on-prem servers) or virtual-hosted style (`false`, AWS).
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.cfg.path_style = path_style;
        self
    }
    /// Trusts the certificates of a PEM bundle in addition to the platform roots.
    pub fn ca_bundle(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.ca_bundle = Some(path.into());
        self
    }
    /// Multipart part size in bytes (5 MiB ..= 5 GiB).
    pub fn part_size(mut self, part_size: usize) -> Self {
        self.cfg.part_size = part_size;
        self
    }
    /// Number of parts in flight at once (1 ..= 64).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.cfg.concurrency = concurrency;
        self
    }
    /// Retry policy.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.cfg.retry = retry;
        self
    }
    /// Connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.connect_timeout = timeout;
        self
    }
    /// Idle (no progress) timeout for reads and writes.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.read_timeout = timeout;
        self
    }
    /// Resolves `host` to `addr` instead of asking DNS (the URL's port is kept).
    pub fn resolve(mut self, host: impl Into<String>, addr: SocketAddr) -> Self {
        self.cfg.resolve.push((host.into(), addr));
        self
    }
    /// Validates and returns the configuration.
    pub fn build(self) -> Result<S3Config, ConfigError> {
        self.cfg.validate()?;
        Ok(self.cfg)
    }
}

/// The endpoint as it may appear in an error: everything up to the last `@` (a
/// `user:password@`, whose password may itself hold `/`, `?` or `#`) is cut out, with or
/// without a scheme, so a secret typed into the URL never reaches a message or a log. A
/// valid endpoint has no `@` at all.
fn redact_userinfo(endpoint: &str) -> String {
    let Some(at) = endpoint.rfind('@') else {
        return endpoint.to_string();
    };
    let host = &endpoint[at + 1..];
    match endpoint.split_once("://") {
        Some((scheme @ ("http" | "https"), _)) => {
            format!("{scheme}://<credentials removed>@{host}")
        }
        _ => format!("<credentials removed>@{host}"),
    }
}

fn parse_endpoint(endpoint: &str) -> Result<Url, ConfigError> {
    let shown = redact_userinfo(endpoint);
    let bad = |reason: &str| ConfigError::InvalidEndpoint {
        endpoint: shown.clone(),
        reason: reason.to_string(),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(bad(
            "missing scheme: use a full URL such as https://s3.amazonaws.com or http://localhost:9000",
        ));
    }
    let url = Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("missing host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL are refused: give the access key and secret separately",
        ));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(bad("a path after the host is not supported"));
    }
    if url.query().is_some() {
        return Err(bad("a query string is not supported"));
    }
    if url.fragment().is_some() {
        return Err(bad("a fragment is not supported"));
    }
    Ok(url)
}

/// Checks a bucket name against S3's general-purpose bucket naming rules.
pub fn validate_bucket(bucket: &str) -> Result<(), ConfigError> {
    let bad = |reason: &'static str| ConfigError::InvalidBucket {
        bucket: bucket.to_string(),
        reason,
    };
    if !(3..=63).contains(&bucket.len()) {
        return Err(bad("must be 3 to 63 characters long"));
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(bad(
            "may contain only lowercase letters, digits, dots and hyphens",
        ));
    }
    let first = bucket.as_bytes()[0];
    let last = bucket.as_bytes()[bucket.len() - 1];
    if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
        return Err(bad("must begin and end with a letter or digit"));
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        return Err(bad("must not contain '..', '.-' or '-.'"));
    }
    if bucket.parse::<IpAddr>().is_ok() {
        return Err(bad("must not be formatted as an IP address"));
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if bucket.starts_with(prefix) {
            return Err(bad("uses a reserved prefix (xn--, sthree-, amzn-s3-demo-)"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if bucket.ends_with(suffix) {
            return Err(bad(
                "uses a reserved suffix (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_is_parsed_and_asked_for() {
        assert_eq!(Encryption::parse("AES256", None), Ok(Encryption::Aes256));
        let kms =
            Encryption::parse("aws:kms", Some("arn:aws:kms:eu-west-1:1:key/k".into())).unwrap();
        assert_eq!(
            kms.headers(),
            vec![
                ("x-amz-server-side-encryption", "aws:kms".to_owned()),
                (
                    "x-amz-server-side-encryption-aws-kms-key-id",
                    "arn:aws:kms:eu-west-1:1:key/k".to_owned()
                ),
            ]
        );
        assert!(Encryption::parse("AES256", Some("k".into())).is_err());
        assert!(Encryption::parse("aes", None)
            .unwrap_err()
            .contains("not AES256 or aws:kms"));
    }

    fn base() -> S3ConfigBuilder {
        S3Config::builder(
            "http://localhost:9000",
            "us-east-1",
            "my-bucket",
            "AKID",
            "SECRET",
        )
    }

    #[test]
    fn defaults_validate() {
        let cfg = base().build().unwrap();
        assert_eq!(cfg.part_size, DEFAULT_PART_SIZE);
        assert_eq!(cfg.concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn endpoint_errors() {
        for (ep, needle) in [
            ("localhost:9000", "missing scheme"),
            ("s3.amazonaws.com", "missing scheme"),
            ("ftp://x", "missing scheme"),
            ("http://localhost:9000/bucket", "path"),
            ("http://localhost:9000/?x=1", "query"),
            ("http://u:p@localhost:9000", "credentials"),
            ("http://", ""),
        ] {
            let mut b = base();
            b.cfg.endpoint = ep.into();
            match b.build() {
                Err(ConfigError::InvalidEndpoint { reason, .. }) => {
                    assert!(reason.contains(needle), "{ep}: {reason}")
                }
                other => panic!("{ep}: {other:?}"),
            }
        }
        for ep in [
            "https://s3.amazonaws.com",
            "https://s3.amazonaws.com/",
            "http://[::1]:9000",
            "http://127.0.0.1:1",
        ] {
            let mut b = base();
            b.cfg.endpoint = ep.into();
            b.build().unwrap_or_else(|e| panic!("{ep}: {e}"));
        }
    }

    #[test]
    fn endpoint_credentials_are_not_echoed() {
        for ep in [
            "http://u:SECRET-PW@localhost:9000",
            "https://SECRET-PW@localhost",
            "http://u:SECRET-PW@localhost:9000/path?q=1",
            "http://u:SECRET-PW@",
            "http://u:SECRET-PW@:bad:port",
            // AWS secret keys often hold `/` and `+`.
            "http://AKID:SECRET-PW/rXUtn+FEMI@s3.example.com",
            "https://AKID:SECRET-PW?x#y@s3.example.com",
            // No scheme, and a scheme-like secret.
            "AKID:SECRET-PW@localhost:9000",
            "AKID:SECRET-PW://x@localhost:9000",
        ] {
            let mut b = base();
            b.cfg.endpoint = ep.into();
            let err = b.build().unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidEndpoint { .. }),
                "{ep}: {err:?}"
            );
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("SECRET-PW"), "{ep}: {shown}");
            }
        }
        let mut b = base();
        b.cfg.endpoint = "http://u:SECRET-PW@localhost:9000".into();
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("credentials in the URL are refused"), "{err}");
        assert!(err.contains("localhost:9000"), "{err}");
    }

    #[test]
    fn bucket_rules() {
        for ok in ["abc", "my-bucket.v2", "a1b", &"a".repeat(63)] {
            validate_bucket(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "sthree-x",
            "abc-s3alias",
            "abc--ol-s3",
            "bucket with space",
        ] {
            assert!(validate_bucket(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn other_fields() {
        let mut b = base();
        b.cfg.region = " ".into();
        assert_eq!(b.build().unwrap_err(), ConfigError::EmptyRegion);
        assert!(matches!(
            base().part_size(MIN_PART_SIZE - 1).build(),
            Err(ConfigError::InvalidPartSize { .. })
        ));
        assert!(matches!(
            base().concurrency(0).build(),
            Err(ConfigError::InvalidConcurrency(0))
        ));
        assert!(matches!(
            base().read_timeout(Duration::ZERO).build(),
            Err(ConfigError::ZeroTimeout("read"))
        ));
        let mut b = base();
        b.cfg.secret_access_key.clear();
        assert_eq!(b.build().unwrap_err(), ConfigError::EmptySecret);
    }

    #[test]
    fn debug_redacts_secrets() {
        let cfg = base().session_token("TOKEN-VALUE-123").build().unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(!dbg.contains("TOKEN-VALUE-123"), "{dbg}");
        assert!(dbg.contains("AKID"));
    }
}
