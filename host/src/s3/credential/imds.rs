//! EC2 instance metadata, IMDSv2 only: a session token (`PUT
//! /latest/api/token`), then the instance role's credentials. Off EC2 the
//! address answers nothing: short timeouts keep that to about a second.
//! `AWS_EC2_METADATA_DISABLED=true` turns it off;
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it.

use std::collections::HashMap;
use std::time::Duration;

use super::{CredentialError, CredentialProvider, Credentials, JsonCredentials};

const NAME: &str = "instance metadata";
const TIMEOUT: Duration = Duration::from_secs(1);

/// The instance role's credentials.
#[derive(Debug)]
pub(crate) struct Imds {
    endpoint: Option<String>,
    http: reqwest::Client,
}

impl Imds {
    pub(crate) fn from_env(env: &HashMap<String, String>, http: reqwest::Client) -> Self {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let disabled =
            get("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint = (!disabled).then(|| {
            get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or_else(|| "http://169.254.169.254".into())
                .trim_end_matches('/')
                .to_owned()
        });
        Imds { endpoint, http }
    }

    /// GET `url` with the session token; a 5xx is tried once more, as the
    /// SDKs do (IMDS is throttled under load).
    async fn get(&self, url: &str, token: &str) -> Result<String, CredentialError> {
        let send = || {
            self.http
                .get(url)
                .header("x-aws-ec2-metadata-token", token)
                .timeout(TIMEOUT)
                .send()
        };
        let failed = |e: reqwest::Error| CredentialError::failed(NAME, format!("GET {url}: {e}"));
        let mut resp = send().await.map_err(failed)?;
        if resp.status().is_server_error() {
            tracing::debug!(status = %resp.status(), "instance metadata: {url}; trying once more");
            tokio::time::sleep(Duration::from_millis(200)).await;
            resp = send().await.map_err(failed)?;
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(CredentialError::failed(
                NAME,
                format!("GET {url}: HTTP {status} (is an instance profile attached?)"),
            ));
        }
        resp.text()
            .await
            .map_err(|e| CredentialError::failed(NAME, format!("GET {url}: {e}")))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for Imds {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        let Some(base) = &self.endpoint else {
            return Err(CredentialError::NotConfigured(
                "AWS_EC2_METADATA_DISABLED is true".into(),
            ));
        };
        // No answer to the token request: not on EC2 (or IMDS is off).
        let token_url = format!("{base}/latest/api/token");
        let resp = self
            .http
            .put(&token_url)
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                CredentialError::NotConfigured(format!("no answer from {base} ({})", short(&e)))
            })?;
        if !resp.status().is_success() {
            return Err(CredentialError::NotConfigured(format!(
                "{base} refused a session token: HTTP {}",
                resp.status()
            )));
        }
        let token = resp
            .text()
            .await
            .map_err(|e| CredentialError::failed(NAME, format!("reading the token: {e}")))?;
        let roles_url = format!("{base}/latest/meta-data/iam/security-credentials/");
        let roles = self.get(&roles_url, &token).await?;
        let Some(role) = roles.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Err(CredentialError::failed(
                NAME,
                "the instance has no IAM role",
            ));
        };
        let body = self.get(&format!("{roles_url}{role}"), &token).await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "Code")]
            code: Option<String>,
            #[serde(rename = "Message")]
            message: Option<String>,
        }
        let answer: Answer = serde_json::from_str(&body)
            .map_err(|e| CredentialError::failed(NAME, format!("role {role}: not JSON: {e}")))?;
        if let Some(code) = answer.code.filter(|c| c != "Success") {
            return Err(CredentialError::failed(
                NAME,
                format!(
                    "role {role}: {code}: {}",
                    answer.message.unwrap_or_default()
                ),
            ));
        }
        let creds: JsonCredentials = serde_json::from_str(&body)
            .map_err(|e| CredentialError::failed(NAME, format!("role {role}: {e}")))?;
        creds.into_credentials(NAME)
    }
}

/// A transport error in a few words (its source chain, without the URL).
pub(crate) fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", TIMEOUT.as_secs());
    }
    let mut out = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        out = s.to_string();
        src = s.source();
    }
    if out.is_empty() {
        e.to_string()
    } else {
        out
    }
}
