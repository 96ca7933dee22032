//! ECS task roles and EKS Pod Identity: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
//! (on the ECS agent's address) or `..._FULL_URI` (a loopback or the
//! container hosts' addresses only, as the SDKs allow), with
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN` or the token in
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at every fetch: EKS
//! rotates it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::{CredentialError, CredentialProvider, Credentials, JsonCredentials};

const NAME: &str = "container";

/// The container's credentials endpoint. `Debug` shows whether there is
/// a token, not the token.
pub(crate) struct Container {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl Container {
    pub(crate) fn from_env(env: &HashMap<String, String>, http: reqwest::Client) -> Self {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let url = get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .map(|rel| format!("http://169.254.170.2{rel}"))
            .or_else(|| get("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
        Container {
            url,
            token: get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            token_file: get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
            http,
        }
    }
}

/// Whether the SDKs would call `url`: https anywhere; http only on a
/// loopback address or the ECS / EKS container hosts.
fn allowed(url: &reqwest::Url) -> bool {
    if url.scheme() == "https" {
        return true;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => {
            ip.is_loopback()
                || ip == std::net::Ipv4Addr::new(169, 254, 170, 2)
                || ip == std::net::Ipv4Addr::new(169, 254, 170, 23)
        }
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || IpAddr::V6(ip) == "fd00:ec2::23".parse::<IpAddr>().expect("an address")
        }
        None => false,
    }
}

#[async_trait::async_trait]
impl CredentialProvider for Container {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        let Some(url) = &self.url else {
            return Err(CredentialError::NotConfigured(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI not set".into(),
            ));
        };
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| CredentialError::failed(NAME, format!("{url:?} is not a URL: {e}")))?;
        if !allowed(&parsed) {
            return Err(CredentialError::failed(
                NAME,
                format!("{url} is plain http to a host other than loopback or the container hosts (169.254.170.2, 169.254.170.23, fd00:ec2::23); refused"),
            ));
        }
        let token = match (&self.token_file, &self.token) {
            (Some(file), _) => Some(tokio::fs::read_to_string(file).await.map_err(|e| {
                CredentialError::failed(
                    NAME,
                    format!("reading the token file {}: {e}", file.display()),
                )
            })?),
            (None, t) => t.clone(),
        };
        let mut rb = self.http.get(parsed);
        if let Some(t) = token {
            rb = rb.header("authorization", t.trim());
        }
        let resp = rb.send().await.map_err(|e| {
            CredentialError::failed(NAME, format!("GET {url}: {}", super::imds::short(&e)))
        })?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| CredentialError::failed(NAME, format!("GET {url}: {e}")))?;
        if !status.is_success() {
            let body: String = body.chars().take(200).collect();
            return Err(CredentialError::failed(
                NAME,
                format!("GET {url}: HTTP {status}: {body}"),
            ));
        }
        let creds: JsonCredentials = serde_json::from_str(&body).map_err(|e| {
            CredentialError::failed(NAME, format!("GET {url}: not credentials: {e}"))
        })?;
        creds.into_credentials(NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_or_the_container_hosts() {
        for (u, ok) in [
            ("http://127.0.0.1:8080/creds", true),
            ("http://localhost/creds", true),
            ("http://169.254.170.2/v2/creds", true),
            ("http://169.254.170.23/v1/credentials", true),
            ("http://[fd00:ec2::23]/v1/credentials", true),
            ("http://[::1]/c", true),
            ("https://example.com/c", true),
            ("http://example.com/c", false),
            ("http://10.0.0.1/c", false),
        ] {
            assert_eq!(allowed(&reqwest::Url::parse(u).unwrap()), ok, "{u}");
        }
    }
}
