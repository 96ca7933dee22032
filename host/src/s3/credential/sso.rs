//! IAM Identity Center (SSO) profiles: the access token the AWS CLI cached
//! at `aws sso login` (`~/.aws/sso/cache/<sha1>.json`), exchanged for the
//! role's credentials at the SSO portal (`GetRoleCredentials`). ccws never
//! logs in itself: a missing or expired token says to run `aws sso login`.

use std::collections::HashMap;
use std::path::PathBuf;

use sha1::Digest as _;
use time::OffsetDateTime;

use super::{parse_expiry, CredentialError, Credentials};

/// What an SSO profile names.
#[derive(Debug, Clone)]
pub(crate) struct SsoProfile {
    /// The `sso_session` name, or `None` for a legacy profile (`sso_start_url`).
    pub session: Option<String>,
    pub start_url: String,
    pub region: String,
    pub account_id: String,
    pub role_name: String,
}

/// The cache file the AWS CLI writes for `p`: SHA-1 of the session name
/// (or, for a legacy profile, of the start URL), in hex.
fn cache_file(home: &std::path::Path, p: &SsoProfile) -> PathBuf {
    let key = p.session.as_deref().unwrap_or(&p.start_url);
    let name = hex::encode(sha1::Sha1::digest(key.as_bytes()));
    home.join(".aws/sso/cache").join(format!("{name}.json"))
}

/// The role's credentials for profile `profile`.
pub(crate) async fn credentials(
    name: &str,
    profile: &str,
    p: &SsoProfile,
    env: &HashMap<String, String>,
    http: &reqwest::Client,
) -> Result<Credentials, CredentialError> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let login = format!("run `aws sso login --profile {profile}`");
    let Some(home) = super::home_dir(env) else {
        return Err(CredentialError::failed(
            name,
            "no home directory (HOME unset, no password entry) to find the AWS CLI's SSO cache in",
        ));
    };
    let file = cache_file(&home, p);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        CredentialError::failed(
            name,
            format!("no SSO token at {} ({e}): {login}", file.display()),
        )
    })?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Cached {
        access_token: String,
        expires_at: String,
    }
    let cached: Cached = serde_json::from_str(&text).map_err(|e| {
        CredentialError::failed(
            name,
            format!(
                "the SSO token at {} is unreadable ({e}): {login}",
                file.display()
            ),
        )
    })?;
    if parse_expiry(name, &cached.expires_at)? <= OffsetDateTime::now_utc() {
        return Err(CredentialError::failed(
            name,
            format!("the SSO token expired at {}: {login}", cached.expires_at),
        ));
    }
    let base = get("AWS_ENDPOINT_URL_SSO")
        .unwrap_or_else(|| format!("https://portal.sso.{}.amazonaws.com", p.region));
    let url = format!(
        "{}/federation/credentials?account_id={}&role_name={}",
        base.trim_end_matches('/'),
        crate::s3::sigv4::encode_query_component(&p.account_id),
        crate::s3::sigv4::encode_query_component(&p.role_name)
    );
    let resp = http
        .get(&url)
        .header("x-amz-sso_bearer_token", &cached.access_token)
        .send()
        .await
        .map_err(|e| CredentialError::failed(name, format!("SSO portal at {base}: {e}")))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| CredentialError::failed(name, format!("SSO portal at {base}: {e}")))?;
    if !status.is_success() {
        let hint = if status.as_u16() == 401 {
            format!(" ({login})")
        } else {
            String::new()
        };
        let body: String = body.chars().take(200).collect();
        return Err(CredentialError::failed(
            name,
            format!(
                "SSO GetRoleCredentials for {} in {}: HTTP {status}: {body}{hint}",
                p.role_name, p.account_id
            ),
        ));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Role {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        expiration: i64,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        role_credentials: Role,
    }
    let a: Answer = serde_json::from_str(&body)
        .map_err(|e| CredentialError::failed(name, format!("SSO portal's answer: {e}")))?;
    let r = a.role_credentials;
    Ok(Credentials {
        access_key_id: r.access_key_id,
        secret_access_key: r.secret_access_key,
        session_token: r.session_token,
        expiry: OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.expiration) * 1_000_000)
            .ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_file_is_named_as_the_aws_cli_names_it() {
        let p = SsoProfile {
            session: Some("my-sso".into()),
            start_url: "https://d-123.awsapps.com/start".into(),
            region: "us-east-1".into(),
            account_id: "1".into(),
            role_name: "r".into(),
        };
        // What Python's hashlib.sha1(b"my-sso").hexdigest() gives, as botocore names it.
        assert_eq!(
            cache_file(std::path::Path::new("/h"), &p),
            PathBuf::from("/h/.aws/sso/cache/0ad374308c5a4e22f723adf10145eafad7c4031c.json")
        );
        let legacy = SsoProfile { session: None, ..p };
        assert_eq!(
            cache_file(std::path::Path::new("/h"), &legacy),
            PathBuf::from("/h/.aws/sso/cache/2b829a45f04c9828cb45b7d092d8e4aa30818393.json")
        );
    }
}
