//! AWS STS: `AssumeRoleWithWebIdentity` (unsigned, with a token file's
//! token) and `AssumeRole` (signed with other credentials), over the query
//! API, answers in XML.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::Reader;
use time::OffsetDateTime;

use super::{parse_expiry, CredentialError, CredentialProvider, Credentials};
use crate::s3::retry::RetryConfig;
use crate::s3::sigv4::{self, Signer};

/// Where STS is: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the
/// region's own endpoint, `https://sts.<region>.amazonaws.com`.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub url: String,
    pub region: String,
}

impl Endpoint {
    pub(crate) fn from_env(env: &HashMap<String, String>, region: &str) -> Self {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let url = get("AWS_ENDPOINT_URL_STS")
            .or_else(|| get("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        Endpoint {
            url: url.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
        }
    }
}

/// Web identity (IRSA): a role assumed with the token in a file, read anew
/// at every fetch (the kubelet rotates it).
#[derive(Debug)]
pub(crate) struct WebIdentity {
    pub token_file: Option<PathBuf>,
    pub role_arn: Option<String>,
    pub session_name: Option<String>,
    pub sts: Endpoint,
    pub http: reqwest::Client,
}

#[async_trait::async_trait]
impl CredentialProvider for WebIdentity {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        const NAME: &str = "web identity";
        let (Some(file), Some(role)) = (&self.token_file, &self.role_arn) else {
            return Err(CredentialError::NotConfigured(
                "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN not both set".into(),
            ));
        };
        let token = tokio::fs::read_to_string(file).await.map_err(|e| {
            CredentialError::failed(
                NAME,
                format!("reading the token file {}: {e}", file.display()),
            )
        })?;
        let session = self.session_name.clone().unwrap_or_else(session_name);
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role.as_str()),
            ("RoleSessionName", session.as_str()),
            ("WebIdentityToken", token.trim()),
        ];
        let body = encode_form(&form);
        let url = format!("{}/", self.sts.url);
        let call = Call {
            name: NAME,
            action: "AssumeRoleWithWebIdentity",
            role,
            url: &self.sts.url,
        };
        call.send(|| {
            self.http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
        })
        .await
    }
}

/// `AssumeRole` of `role_arn`, signed with `source`.
pub(crate) async fn assume_role(
    name: &str,
    http: &reqwest::Client,
    sts: &Endpoint,
    source: &Credentials,
    role_arn: &str,
    options: &HashMap<String, String>,
) -> Result<Credentials, CredentialError> {
    let session = options
        .get("role_session_name")
        .cloned()
        .unwrap_or_else(session_name);
    let mut form = vec![
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", session.as_str()),
    ];
    if let Some(id) = options.get("external_id") {
        form.push(("ExternalId", id));
    }
    if let Some(d) = options.get("duration_seconds") {
        form.push(("DurationSeconds", d));
    }
    let body = encode_form(&form);
    let url = reqwest::Url::parse(&format!("{}/", sts.url))
        .map_err(|e| CredentialError::failed(name, format!("STS endpoint {:?}: {e}", sts.url)))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => {
            return Err(CredentialError::failed(
                name,
                format!("STS endpoint {:?} has no host", sts.url),
            ))
        }
    };
    let signer = Signer::new(
        source.access_key_id.clone(),
        source.secret_access_key.clone(),
        source.session_token.clone(),
        sts.region.clone(),
        "sts",
    );
    let content_type = (
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    );
    let payload_hash = sigv4::sha256_hex(body.as_bytes());
    let call = Call {
        name,
        action: "AssumeRole",
        role: role_arn,
        url: &sts.url,
    };
    call.send(|| {
        // Signed anew for each attempt: its time is part of the signature.
        let signed = signer.sign_s3(
            "POST",
            &host,
            "/",
            &[],
            std::slice::from_ref(&content_type),
            &payload_hash,
            OffsetDateTime::now_utc(),
        );
        let mut rb = http
            .post(url.clone())
            .header("content-type", &content_type.1);
        for (k, v) in signed {
            rb = rb.header(k, v);
        }
        rb.body(body.clone())
    })
    .await
}

/// How an STS call is tried again when it fails transiently (no answer, a
/// 5xx, throttling): 3 attempts in all, as the SDKs' standard retry mode.
const RETRY: RetryConfig = RetryConfig {
    max_attempts: 3,
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(1),
};

/// One STS action, for its retries and its errors.
struct Call<'a> {
    name: &'a str,
    action: &'a str,
    role: &'a str,
    url: &'a str,
}

impl Call<'_> {
    /// Sends what `request` builds, again after a transient failure.
    async fn send(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Credentials, CredentialError> {
        let mut attempt = 1;
        loop {
            let (error, transient) = match request().send().await {
                Ok(resp) => match read_answer(self, resp).await {
                    Ok(c) => return Ok(c),
                    Err(refusal) => refusal,
                },
                Err(e) if crate::s3::cause::refused_certificate(&e) => (
                    format!(
                        "STS at {}: {} (if it has a private CA, set AWS_CA_BUNDLE to a PEM file of it)",
                        self.url,
                        crate::s3::cause::error_chain(&e)
                    ),
                    false,
                ),
                Err(e) => (format!("STS at {}: {e}", self.url), true),
            };
            if !transient || attempt == RETRY.max_attempts {
                let tries = if attempt > 1 {
                    format!(" ({attempt} attempts)")
                } else {
                    String::new()
                };
                return Err(CredentialError::failed(
                    self.name,
                    format!("{error}{tries}"),
                ));
            }
            tracing::debug!(action = self.action, attempt, "sts: {error}; trying again");
            tokio::time::sleep(RETRY.backoff(attempt)).await;
            attempt += 1;
        }
    }
}

/// A session name as the SDKs make one when none is given.
fn session_name() -> String {
    format!("ccws-{}", OffsetDateTime::now_utc().unix_timestamp_nanos())
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                sigv4::encode_query_component(k),
                sigv4::encode_query_component(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Error codes STS answers when trying again later may work.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "IDPCommunicationError",
    "ServiceUnavailable",
    "InternalFailure",
];

/// Credentials from an STS answer, or its error in words and whether it
/// is worth trying again.
async fn read_answer(
    call: &Call<'_>,
    resp: reqwest::Response,
) -> Result<Credentials, (String, bool)> {
    let (name, action, role) = (call.name, call.action, call.role);
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| (format!("reading STS's answer: {e}"), true))?;
    let fields = xml_fields(&text);
    if !status.is_success() {
        let code = fields
            .get("Code")
            .cloned()
            .unwrap_or_else(|| status.to_string());
        let message = fields.get("Message").cloned().unwrap_or_default();
        let id = fields
            .get("RequestId")
            .map(|i| format!(" (request id {i})"))
            .unwrap_or_default();
        let transient = status.is_server_error()
            || status.as_u16() == 429
            || TRANSIENT_CODES.contains(&code.as_str());
        return Err((
            format!(
                "STS {action} of {role} refused: HTTP {} {code}: {message}{id}",
                status.as_u16()
            ),
            transient,
        ));
    }
    let field = |k: &str| {
        fields
            .get(k)
            .cloned()
            .ok_or_else(|| (format!("STS's {action} answer has no {k}"), false))
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
        expiry: Some(
            parse_expiry(name, &field("Expiration")?).map_err(|e| match e {
                CredentialError::Failed { message, .. } => (message, false),
                e => (e.to_string(), false),
            })?,
        ),
    })
}

/// Every leaf element's text by its local name (the first of each name):
/// enough for STS's small, flat answers.
fn xml_fields(xml: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut reader = Reader::from_str(xml);
    let mut current: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned())
            }
            Ok(Event::Text(t)) => {
                if let (Some(name), Ok(text)) = (&current, t.unescape()) {
                    out.entry(name.clone())
                        .or_insert_with(|| text.trim().to_owned());
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_and_errors_are_read() {
        let ok = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult><Credentials>
    <AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s&amp;cret</SecretAccessKey>
    <SessionToken>tok</SessionToken><Expiration>2030-01-02T03:04:05Z</Expiration>
  </Credentials></AssumeRoleResult></AssumeRoleResponse>"#;
        let f = xml_fields(ok);
        assert_eq!(f["AccessKeyId"], "ASIA1");
        assert_eq!(f["SecretAccessKey"], "s&cret");
        assert_eq!(f["Expiration"], "2030-01-02T03:04:05Z");
        let err = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>
  <Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error>
  <RequestId>r-1</RequestId></ErrorResponse>"#;
        let f = xml_fields(err);
        assert_eq!(f["Code"], "AccessDenied");
        assert_eq!(f["RequestId"], "r-1");
    }

    #[test]
    fn the_endpoint_is_the_override_or_the_regions_own() {
        let env: HashMap<String, String> = HashMap::new();
        assert_eq!(
            Endpoint::from_env(&env, "eu-west-1").url,
            "https://sts.eu-west-1.amazonaws.com"
        );
        let env: HashMap<String, String> = [(
            "AWS_ENDPOINT_URL_STS".to_owned(),
            "http://127.0.0.1:9/".to_owned(),
        )]
        .into();
        assert_eq!(
            Endpoint::from_env(&env, "eu-west-1").url,
            "http://127.0.0.1:9"
        );
    }
}
