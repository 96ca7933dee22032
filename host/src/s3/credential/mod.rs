//! What requests are signed with: AWS credentials from a chain of
//! providers, in the AWS SDKs' default order, each cached and refreshed
//! before it expires.
//!
//! 1. the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!    `AWS_SESSION_TOKEN`);
//! 2. web identity (IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`
//!    through STS `AssumeRoleWithWebIdentity` ([`sts`]);
//! 3. the profile in the shared config and credentials files ([`profile`]),
//!    in the SDKs' order: `role_arn` with `web_identity_token_file`, or
//!    with `source_profile` / `credential_source` through STS `AssumeRole`;
//!    SSO with the AWS CLI's cached token ([`sso`]); `credential_process`
//!    ([`process`]); static keys;
//! 4. ECS / EKS Pod Identity container credentials ([`container`]);
//! 5. EC2 instance metadata, IMDSv2 only ([`imds`]).
//!
//! A source that is not configured is passed over; one that is configured
//! but fails stops the chain with its error (as the SDKs do). When none is
//! configured the error lists what each said. Secrets never reach a log
//! line, an error or `Debug`.

mod container;
mod imds;
mod process;
pub mod profile;
mod sso;
mod sts;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub use profile::Profiles;

/// One set of AWS credentials. `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
    /// When they expire; `None`: they do not.
    pub expiry: Option<OffsetDateTime>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl Credentials {
    /// Long-lived keys.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            expiry: None,
        }
    }
}

/// Why no credentials could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// The source is not set up here (the chain goes on to the next).
    #[error("{0}")]
    NotConfigured(String),
    /// The source is set up but failed.
    #[error("{source_name}: {message}")]
    Failed {
        /// Which source.
        source_name: String,
        /// What went wrong (never a secret).
        message: String,
    },
    /// No source is set up; what each said.
    #[error("no AWS credentials were found; tried: {}", tried.iter().map(|(s, why)| format!("{s}: {why}")).collect::<Vec<_>>().join("; "))]
    NoneFound {
        /// (source, why not), in the order tried.
        tried: Vec<(String, String)>,
    },
}

impl CredentialError {
    pub(crate) fn failed(source_name: &str, message: impl Into<String>) -> Self {
        CredentialError::Failed {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// A source of credentials.
#[async_trait::async_trait]
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Fetch credentials (a [`Cached`] provider decides when to call this).
    async fn credentials(&self) -> Result<Credentials, CredentialError>;
}

/// Fixed credentials.
#[derive(Debug, Clone)]
pub struct StaticProvider(pub Credentials);

#[async_trait::async_trait]
impl CredentialProvider for StaticProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        Ok(self.0.clone())
    }
}

/// How long before expiry [`Cached`] fetches new credentials.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// How long [`Cached`] keeps serving still-valid credentials after a
/// refresh failed, before it tries again.
pub const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(10);

/// A provider's credentials, kept until [`REFRESH_AHEAD`] before they
/// expire; one fetch at a time (callers meanwhile wait for it). A refresh
/// that fails while the held credentials are still valid is logged and
/// the held ones are used, the next try [`RETRY_REFRESH_AFTER`] later.
#[derive(Debug)]
pub struct Cached {
    inner: Arc<dyn CredentialProvider>,
    refresh_ahead: Duration,
    held: tokio::sync::Mutex<Option<Held>>,
}

#[derive(Debug)]
struct Held {
    credentials: Credentials,
    /// After a failed refresh: not before this.
    next_try: Option<std::time::Instant>,
}

impl Cached {
    /// Cache `inner`'s credentials.
    pub fn new(inner: Arc<dyn CredentialProvider>) -> Self {
        Cached::with_refresh_ahead(inner, REFRESH_AHEAD)
    }

    /// As [`Cached::new`], refreshing `refresh_ahead` before expiry.
    pub fn with_refresh_ahead(inner: Arc<dyn CredentialProvider>, refresh_ahead: Duration) -> Self {
        Cached {
            inner,
            refresh_ahead,
            held: tokio::sync::Mutex::new(None),
        }
    }

    /// Current credentials: the held ones while fresh, else new ones.
    pub async fn get(&self) -> Result<Credentials, CredentialError> {
        let mut held = self.held.lock().await;
        let now = OffsetDateTime::now_utc();
        // Still usable: not expired (a refresh may be due).
        let mut usable = None;
        if let Some(h) = held.as_ref() {
            let c = &h.credentials;
            if c.expiry.is_none_or(|e| now + self.refresh_ahead < e) {
                return Ok(c.clone());
            }
            if c.expiry.is_some_and(|e| now < e) {
                if h.next_try.is_some_and(|t| std::time::Instant::now() < t) {
                    return Ok(c.clone());
                }
                usable = Some(c.clone());
            }
        }
        match self.inner.credentials().await {
            Ok(c) => {
                tracing::debug!(access_key_id = %c.access_key_id, expiry = ?c.expiry, "aws credentials fetched");
                *held = Some(Held {
                    credentials: c.clone(),
                    next_try: None,
                });
                Ok(c)
            }
            Err(e) => match usable {
                Some(c) => {
                    tracing::warn!(
                        expiry = ?c.expiry,
                        "refreshing aws credentials failed; the current ones are still valid and are used: {e}"
                    );
                    *held = Some(Held {
                        credentials: c.clone(),
                        next_try: Some(std::time::Instant::now() + RETRY_REFRESH_AFTER),
                    });
                    Ok(c)
                }
                None => Err(e),
            },
        }
    }

    /// Forget the held credentials (the server said they expired).
    pub async fn invalidate(&self) {
        *self.held.lock().await = None;
    }
}

/// The first configured provider of a list, in order; once one answered,
/// it alone is asked again.
#[derive(Debug)]
pub struct Chain {
    providers: Vec<(String, Arc<dyn CredentialProvider>)>,
    chosen: std::sync::Mutex<Option<usize>>,
}

impl Chain {
    /// Providers with their names, in the order to try them.
    pub fn new(providers: Vec<(String, Arc<dyn CredentialProvider>)>) -> Self {
        Chain {
            providers,
            chosen: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for Chain {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        let chosen = *self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = chosen {
            return self.providers[i].1.credentials().await;
        }
        let mut tried = Vec::new();
        for (i, (name, p)) in self.providers.iter().enumerate() {
            match p.credentials().await {
                Ok(c) => {
                    tracing::debug!(source = %name, "aws credentials from {name}");
                    *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some(i);
                    return Ok(c);
                }
                Err(CredentialError::NotConfigured(why)) => tried.push((name.clone(), why)),
                Err(e) => return Err(e),
            }
        }
        Err(CredentialError::NoneFound { tried })
    }
}

/// The environment variables the default chain reads credentials from
/// (besides the profile's files); `ccws` wipes them from its own
/// environment and keeps them from its agent.
pub const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// The default chain for `env` (a process environment) and `profiles` (the
/// shared files' profile, resolved), signing STS calls for `region`.
pub fn default_chain(
    env: &HashMap<String, String>,
    profiles: Profiles,
    region: &str,
) -> Result<Chain, CredentialError> {
    let http = http_client(env)?;
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let sts = sts::Endpoint::from_env(env, region);
    Ok(Chain::new(vec![
        ("environment".into(), Arc::new(EnvProvider::from_env(env))),
        (
            "web identity".into(),
            Arc::new(sts::WebIdentity {
                token_file: get("AWS_WEB_IDENTITY_TOKEN_FILE").map(Into::into),
                role_arn: get("AWS_ROLE_ARN"),
                session_name: get("AWS_ROLE_SESSION_NAME"),
                sts: sts.clone(),
                http: http.clone(),
            }),
        ),
        (
            format!("profile {}", profiles.name()),
            Arc::new(profile::ProfileProvider::new(
                profiles,
                sts,
                http.clone(),
                env.clone(),
            )),
        ),
        (
            "container".into(),
            Arc::new(container::Container::from_env(env, http.clone())),
        ),
        (
            "instance metadata".into(),
            Arc::new(imds::Imds::from_env(env, http)),
        ),
    ]))
}

/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
#[derive(Debug)]
pub struct EnvProvider(Option<Credentials>);

impl EnvProvider {
    /// Read from `env`.
    pub fn from_env(env: &HashMap<String, String>) -> Self {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        EnvProvider(
            match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
                (Some(a), Some(s)) => Some(Credentials {
                    session_token: get("AWS_SESSION_TOKEN"),
                    ..Credentials::new(a, s)
                }),
                _ => None,
            },
        )
    }
}

#[async_trait::async_trait]
impl CredentialProvider for EnvProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        self.0.clone().ok_or_else(|| {
            CredentialError::NotConfigured(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not both set".into(),
            )
        })
    }
}

/// The HTTP client of the providers: short timeouts (metadata endpoints
/// that are not there must not slow a start), `AWS_CA_BUNDLE` trusted. A
/// bundle that cannot be read is left out here: the S3 client, built from
/// the same variable before any credentials are fetched, refuses it with
/// the error that says what to do.
fn http_client(env: &HashMap<String, String>) -> Result<reqwest::Client, CredentialError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("ccws/", env!("CARGO_PKG_VERSION")))
    };
    let bundle = env
        .get("AWS_CA_BUNDLE")
        .filter(|v| !v.is_empty())
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok());
    if let Some(client) = bundle.and_then(|certs| builder().tls_certs_merge(certs).build().ok()) {
        return Ok(client);
    }
    builder()
        .build()
        .map_err(|e| CredentialError::failed("http", e.to_string()))
}

/// The home directory the shared files and the SSO cache are under:
/// `HOME`, else (unset or empty, as for a service) the user's entry in the
/// password database; never the working directory.
pub(crate) fn home_dir(env: &HashMap<String, String>) -> Option<std::path::PathBuf> {
    match env.get("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Some(home.into()),
        // `env` is this process's environment: with no HOME in it, the
        // standard library asks the password database.
        None => std::env::home_dir().filter(|h| !h.as_os_str().is_empty()),
    }
}

/// Parse an ISO 8601 / RFC 3339 expiry as AWS writes it.
pub(crate) fn parse_expiry(source: &str, s: &str) -> Result<OffsetDateTime, CredentialError> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).map_err(|e| {
        CredentialError::failed(source, format!("expiration {s:?} is not a date: {e}"))
    })
}

/// The body of a metadata / container / process answer: the keys AWS
/// writes, in either spelling of the token.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct JsonCredentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(alias = "SessionToken")]
    pub token: Option<String>,
    pub expiration: Option<String>,
}

impl JsonCredentials {
    pub(crate) fn into_credentials(self, source: &str) -> Result<Credentials, CredentialError> {
        let (Some(a), Some(s)) = (self.access_key_id, self.secret_access_key) else {
            return Err(CredentialError::failed(
                source,
                "the answer has no AccessKeyId or SecretAccessKey",
            ));
        };
        Ok(Credentials {
            access_key_id: a,
            secret_access_key: s,
            session_token: self.token.filter(|t| !t.is_empty()),
            expiry: self
                .expiration
                .map(|e| parse_expiry(source, &e))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: AtomicU32,
        lifetime: Duration,
    }

    #[async_trait::async_trait]
    impl CredentialProvider for Counting {
        async fn credentials(&self) -> Result<Credentials, CredentialError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Credentials {
                session_token: Some("token-secret".into()),
                expiry: Some(OffsetDateTime::now_utc() + self.lifetime),
                ..Credentials::new(format!("AK{n}"), "secret-value")
            })
        }
    }

    #[tokio::test]
    async fn cached_credentials_are_refreshed_ahead_of_expiry() {
        let p = Arc::new(Counting {
            calls: AtomicU32::new(0),
            lifetime: Duration::from_secs(3600),
        });
        let c = Cached::new(p.clone());
        assert_eq!(c.get().await.unwrap().access_key_id, "AK1");
        assert_eq!(
            c.get().await.unwrap().access_key_id,
            "AK1",
            "an hour left: kept"
        );
        c.invalidate().await;
        assert_eq!(c.get().await.unwrap().access_key_id, "AK2");

        // Four minutes left is inside the five-minute window: fetched again.
        let p = Arc::new(Counting {
            calls: AtomicU32::new(0),
            lifetime: Duration::from_secs(240),
        });
        let c = Cached::new(p.clone());
        assert_eq!(c.get().await.unwrap().access_key_id, "AK1");
        assert_eq!(c.get().await.unwrap().access_key_id, "AK2");
    }

    /// Answers from a script: `Ok` credentials living `lifetime`, or a failure.
    #[derive(Debug)]
    struct Scripted {
        answers: std::sync::Mutex<Vec<Option<Duration>>>,
        calls: AtomicU32,
    }

    #[async_trait::async_trait]
    impl CredentialProvider for Scripted {
        async fn credentials(&self) -> Result<Credentials, CredentialError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            match self.answers.lock().unwrap().remove(0) {
                Some(lifetime) => Ok(Credentials {
                    expiry: Some(OffsetDateTime::now_utc() + lifetime),
                    ..Credentials::new(format!("AK{n}"), "s")
                }),
                None => Err(CredentialError::failed("sts", "HTTP 503")),
            }
        }
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_credentials_that_are_still_valid() {
        let p = Arc::new(Scripted {
            // 4 minutes: inside the refresh window, still valid.
            answers: std::sync::Mutex::new(vec![
                Some(Duration::from_secs(240)),
                None,
                Some(Duration::from_secs(3600)),
            ]),
            calls: AtomicU32::new(0),
        });
        let c = Cached::new(p.clone());
        assert_eq!(c.get().await.unwrap().access_key_id, "AK1");
        // The refresh fails: the held ones are used.
        assert_eq!(c.get().await.unwrap().access_key_id, "AK1");
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
        // Not retried at once.
        assert_eq!(c.get().await.unwrap().access_key_id, "AK1");
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);

        // Credentials already expired are never used: the failure is the answer.
        let p = Arc::new(Scripted {
            answers: std::sync::Mutex::new(vec![Some(Duration::ZERO), None]),
            calls: AtomicU32::new(0),
        });
        let c = Cached::new(p.clone());
        c.get().await.unwrap();
        let e = c.get().await.unwrap_err().to_string();
        assert_eq!(e, "sts: HTTP 503");
    }

    #[derive(Debug)]
    struct Fixed(Result<Credentials, CredentialError>);

    #[async_trait::async_trait]
    impl CredentialProvider for Fixed {
        async fn credentials(&self) -> Result<Credentials, CredentialError> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn the_chain_skips_what_is_not_set_up_and_stops_at_a_failure() {
        let none = |why: &str| -> Arc<dyn CredentialProvider> {
            Arc::new(Fixed(Err(CredentialError::NotConfigured(why.into()))))
        };
        let chain = Chain::new(vec![
            ("a".into(), none("A not set")),
            ("b".into(), Arc::new(Fixed(Ok(Credentials::new("B", "bs"))))),
            ("c".into(), Arc::new(Fixed(Ok(Credentials::new("C", "cs"))))),
        ]);
        assert_eq!(chain.credentials().await.unwrap().access_key_id, "B");

        let chain = Chain::new(vec![
            ("a".into(), none("A not set")),
            (
                "b".into(),
                Arc::new(Fixed(Err(CredentialError::failed("b", "exit status 1")))),
            ),
            ("c".into(), Arc::new(Fixed(Ok(Credentials::new("C", "cs"))))),
        ]);
        let e = chain.credentials().await.unwrap_err().to_string();
        assert_eq!(e, "b: exit status 1");

        let chain = Chain::new(vec![
            ("a".into(), none("A not set")),
            ("b".into(), none("B off")),
        ]);
        let e = chain.credentials().await.unwrap_err().to_string();
        assert_eq!(
            e,
            "no AWS credentials were found; tried: a: A not set; b: B off"
        );
    }

    #[test]
    fn the_chain_s_debug_shows_no_secret_of_any_source() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = file-secret\n",
        )
        .unwrap();
        let env: HashMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-token"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:1/creds",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-token"),
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let profiles = Profiles::load(&env, None).unwrap();
        let chain = default_chain(&env, profiles, "us-east-1").unwrap();
        let cached = Cached::new(Arc::new(chain));
        let shown = format!("{cached:?} {cached:#?}");
        assert!(shown.contains("AWS_CONTAINER") || shown.contains("127.0.0.1:1"));
        for secret in ["file-secret", "env-secret", "env-token", "container-token"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let c = Credentials {
            session_token: Some("token-secret".into()),
            ..Credentials::new("AKID", "secret-value")
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID"));
        assert!(
            !shown.contains("secret-value") && !shown.contains("token-secret"),
            "{shown}"
        );
    }
}
