//! Credentials from every provider of the default chain, over real HTTP on
//! loopback: instance metadata (IMDSv2) and the container endpoint as
//! fakes that speak their wire formats, STS as moto's and as a fake for
//! its errors, `credential_process` scripts; S3 requests signed with what
//! they hand out, checked by s3s-fs (which verifies SigV4); refresh before
//! expiry and after an `ExpiredToken` inside one process.

use std::collections::HashMap;
use std::sync::Arc;

use ccws::s3::credential::{default_chain, Profiles};
use ccws::s3::{Cached, CredentialError, CredentialProvider, Credentials, PutCondition, S3Client};
use ccws_tests::awsfake::{self, AwsFake};
use ccws_tests::faultproxy::{Fault, FaultProxy, Rule};
use ccws_tests::moto::Moto;
use ccws_tests::s3s::S3sServer;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut e: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    e.entry("HOME".into())
        .or_insert_with(|| "/nonexistent".into());
    e.entry("AWS_EC2_METADATA_DISABLED".into())
        .or_insert_with(|| "true".into());
    e
}

fn chain(env: &HashMap<String, String>) -> ccws::s3::credential::Chain {
    default_chain(env, Profiles::load(env, None).unwrap(), "us-east-1").unwrap()
}

/// A client of `server` (reached at `endpoint`) signing with `provider`.
fn client_with(server: &S3sServer, endpoint: &str, provider: Arc<Cached>) -> S3Client {
    let cfg = server
        .config_for(endpoint)
        .credentials(provider)
        .build()
        .unwrap();
    S3Client::new(cfg).unwrap()
}

/// A client of `server` signing with what the default chain of `env` finds.
fn chain_client(server: &S3sServer, env: &HashMap<String, String>) -> S3Client {
    client_with(
        server,
        &server.endpoint(),
        Arc::new(Cached::new(Arc::new(chain(env)))),
    )
}

/// An instance-metadata fake handing out `server`'s keys for `ttl`, and a
/// client of `server` (reached at `endpoint`) whose only credentials come
/// from it.
async fn imds_client(
    server: &S3sServer,
    endpoint: &str,
    ttl: time::Duration,
) -> (AwsFake, S3Client) {
    let imds = AwsFake::start(awsfake::imds("ccws-role", keys(server), ttl)).await;
    let e = env(&[
        ("AWS_EC2_METADATA_DISABLED", ""),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint()),
    ]);
    let c = client_with(server, endpoint, Arc::new(Cached::new(Arc::new(chain(&e)))));
    (imds, c)
}

/// GETs answered with S3 error `code` (and `status`), `times` times.
fn get_fails(status: u16, code: &str, times: usize) -> Rule {
    let fault = Fault::Error {
        status,
        code: code.into(),
    };
    Rule::on("GET", "", fault, times)
}

fn keys(server: &S3sServer) -> (String, String) {
    (server.access_key.clone(), server.secret_key.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_metadata_credentials_sign_requests_and_are_refreshed() {
    let server = S3sServer::start().await;
    // Credentials that expire in four minutes: inside the five-minute
    // refresh window, so every request fetches them anew.
    let (imds, c) = imds_client(&server, &server.endpoint(), time::Duration::minutes(4)).await;
    c.put_bytes("a", b"one".to_vec().into(), PutCondition::None)
        .await
        .unwrap();
    c.put_bytes("b", b"two".to_vec().into(), PutCondition::None)
        .await
        .unwrap();
    assert_eq!(c.head("a").await.unwrap().size, 3);
    let role = "/latest/meta-data/iam/security-credentials/ccws-role";
    assert_eq!(imds.count(role), 3, "fetched before each request");
    assert_eq!(imds.count("/latest/api/token"), 3);
    // IMDSv2 only: every GET carried the session token (the fake answers
    // 401 otherwise).
    assert!(imds
        .seen()
        .iter()
        .filter(|r| r.method == "GET")
        .all(|r| r.headers.contains_key("x-aws-ec2-metadata-token")));

    // An hour left: fetched once, kept.
    let (imds, c) = imds_client(&server, &server.endpoint(), time::Duration::hours(1)).await;
    for _ in 0..3 {
        c.head("a").await.unwrap();
    }
    assert_eq!(imds.count(role), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_answer_fetches_new_credentials_and_retries() {
    let server = S3sServer::start().await;
    let proxy = FaultProxy::start(server.addr).await;
    let (imds, c) = imds_client(&server, &proxy.endpoint(), time::Duration::hours(1)).await;
    c.put_bytes("k", b"v".to_vec().into(), PutCondition::None)
        .await
        .unwrap();
    proxy.push(get_fails(400, "ExpiredToken", 1));
    let got = c.get("k").await.unwrap();
    assert_eq!(got.meta.size, 1);
    let role = "/latest/meta-data/iam/security-credentials/ccws-role";
    assert_eq!(imds.count(role), 2, "fetched again after ExpiredToken");

    // Temporary keys the server no longer knows (revoked, or expired
    // early) are fetched again too, once.
    proxy.push(get_fails(403, "InvalidAccessKeyId", 1));
    c.get("k").await.unwrap();
    assert_eq!(
        imds.count(role),
        3,
        "fetched again after InvalidAccessKeyId"
    );
    proxy.push(get_fails(403, "InvalidAccessKeyId", 2));
    let e = c.get("k").await.unwrap_err().to_string();
    assert!(e.contains("InvalidAccessKeyId"), "{e}");
    assert_eq!(imds.count(role), 4, "only once per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_long_lived_key_is_not_fetched_again() {
    let server = S3sServer::start().await;
    let proxy = FaultProxy::start(server.addr).await;
    let fetches = Arc::new(std::sync::atomic::AtomicU32::new(0));
    #[derive(Debug)]
    struct Counting(Arc<std::sync::atomic::AtomicU32>, Credentials);
    #[async_trait::async_trait]
    impl CredentialProvider for Counting {
        async fn credentials(&self) -> Result<Credentials, CredentialError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.1.clone())
        }
    }
    let (a, s) = keys(&server);
    let provider = Arc::new(Cached::new(Arc::new(Counting(
        fetches.clone(),
        Credentials::new(a, s),
    ))));
    let c = client_with(&server, &proxy.endpoint(), provider);
    c.put_bytes("k", b"v".to_vec().into(), PutCondition::None)
        .await
        .unwrap();
    proxy.push(get_fails(403, "InvalidAccessKeyId", 1));
    let e = c.get("k").await.unwrap_err().to_string();
    assert!(e.contains("InvalidAccessKeyId"), "{e}");
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_credentials_with_a_token_file() {
    let server = S3sServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "pod-identity-token\n").unwrap();
    let k = keys(&server);
    let fake = AwsFake::start(move |r| {
        if r.headers.get("authorization").map(String::as_str) != Some("pod-identity-token") {
            return (401, "text/plain", "bad token".into());
        }
        (
            200,
            "application/json",
            awsfake::credentials_json(&k, time::Duration::hours(1), false),
        )
    })
    .await;
    let full = format!("{}/v1/credentials", fake.endpoint());
    let e = env(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
    ]);
    let c = chain_client(&server, &e);
    c.put_bytes("c", b"x".to_vec().into(), PutCondition::None)
        .await
        .unwrap();
    assert_eq!(fake.count("/v1/credentials"), 1);

    // A wrong token is the container source's error, not "none found".
    std::fs::write(&token_file, "stale").unwrap();
    let err = chain(&e).credentials().await.unwrap_err().to_string();
    assert!(
        err.starts_with("container: GET ") && err.contains("401"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_and_assume_role_through_motos_sts() {
    let Some(moto) = Moto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").unwrap();
    let e = env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ccws-irsa"),
        ("AWS_ROLE_SESSION_NAME", "ccws-test"),
        ("AWS_ENDPOINT_URL_STS", moto.endpoint()),
    ]);
    let c = chain(&e).credentials().await.unwrap();
    assert!(c.session_token.as_deref().is_some_and(|t| !t.is_empty()));
    assert!(c.expiry.unwrap() > time::OffsetDateTime::now_utc());

    // A profile assuming a role with another profile's keys (AssumeRole,
    // SigV4-signed for sts).
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/deploy\nsource_profile = base\nexternal_id = ext-1\n\n[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = base-secret\n",
    )
    .unwrap();
    let e = env(&[
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("AWS_PROFILE", "deploy"),
        ("AWS_ENDPOINT_URL_STS", moto.endpoint()),
    ]);
    let c = chain(&e).credentials().await.unwrap();
    assert_ne!(c.access_key_id, "AKIABASE");
    assert!(c.expiry.is_some());

    // A profile with a web identity token file: AssumeRoleWithWebIdentity.
    std::fs::write(
        &config,
        format!(
            "[profile pod]\nrole_arn = arn:aws:iam::123456789012:role/pod\nweb_identity_token_file = {}\nrole_session_name = pod-session\n",
            token.display()
        ),
    )
    .unwrap();
    let e = env(&[
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("AWS_PROFILE", "pod"),
        ("AWS_ENDPOINT_URL_STS", moto.endpoint()),
    ]);
    let c = chain(&e).credentials().await.unwrap();
    assert!(c.session_token.as_deref().is_some_and(|t| !t.is_empty()));
}

/// The answer STS gives to `AssumeRoleWithWebIdentity`.
fn web_identity_answer(access_key_id: &str) -> String {
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{access_key_id}</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
    )
}

/// The environment of IRSA with STS at `sts`; the token file lives in `dir`.
fn irsa_env(dir: &std::path::Path, sts: &str) -> HashMap<String, String> {
    let token = dir.join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").unwrap();
    env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_ENDPOINT_URL_STS", sts),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_is_tried_again_after_a_transient_failure_only() {
    let dir = tempfile::tempdir().unwrap();
    // Unavailable once, then fine.
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = calls.clone();
    let sts = AwsFake::start(move |_| {
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return (
                503,
                "text/xml",
                "<ErrorResponse><Error><Code>ServiceUnavailable</Code></Error></ErrorResponse>"
                    .into(),
            );
        }
        (200, "text/xml", web_identity_answer("ASIASECOND"))
    })
    .await;
    let c = chain(&irsa_env(dir.path(), &sts.endpoint()))
        .credentials()
        .await
        .unwrap();
    assert_eq!(c.access_key_id, "ASIASECOND");
    assert_eq!(sts.count("/"), 2);

    // Throttled every time: three attempts, and the error says so.
    let sts = AwsFake::start(|_| {
        (400, "text/xml", "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into())
    })
    .await;
    let e = chain(&irsa_env(dir.path(), &sts.endpoint()))
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Throttling") && e.contains("(3 attempts)"),
        "{e}"
    );
    assert_eq!(sts.count("/"), 3);

    // A refusal is final: asked once.
    let sts = AwsFake::start(|_| {
        (
            403,
            "text/xml",
            "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>".into(),
        )
    })
    .await;
    let e = chain(&irsa_env(dir.path(), &sts.endpoint()))
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("AccessDenied") && !e.contains("attempts"), "{e}");
    assert_eq!(sts.count("/"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_metadata_is_asked_once_more_after_a_5xx() {
    let role = "/latest/meta-data/iam/security-credentials/ccws-role";
    let answer = awsfake::imds(
        "ccws-role",
        ("AK".into(), "SK".into()),
        time::Duration::hours(1),
    );
    let failed = std::sync::atomic::AtomicBool::new(false);
    let imds = AwsFake::start(move |r| {
        if r.target == role && !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return (503, "text/plain", "busy".into());
        }
        answer(r)
    })
    .await;
    let e = env(&[
        ("AWS_EC2_METADATA_DISABLED", ""),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint()),
    ]);
    let c = chain(&e).credentials().await.unwrap();
    assert_eq!(c.access_key_id, "AK");
    assert_eq!(imds.count(role), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_refusals_are_told_with_their_code_and_request_id() {
    let sts = AwsFake::start(|r| {
        assert!(r.body.contains("Action=AssumeRoleWithWebIdentity"), "{}", r.body);
        (
            403,
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>req-42</RequestId></ErrorResponse>".into(),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret-jwt-value").unwrap();
    let e = env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_ENDPOINT_URL_STS", &sts.endpoint()),
    ]);
    let err = chain(&e).credentials().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CredentialError::Failed { .. }), "{text}");
    for said in [
        "web identity",
        "AccessDenied",
        "Not authorized",
        "req-42",
        "arn:aws:iam::1:role/r",
    ] {
        assert!(text.contains(said), "{said}: {text}");
    }
    assert!(!text.contains("secret-jwt-value"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_process_profiles_sign_requests() {
    let server = S3sServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> {}\nprintf '{{\"Version\": 1, \"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\"}}'\n",
            dir.path().join("runs").display(),
            server.access_key,
            server.secret_key
        ),
    )
    .unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!("[default]\ncredential_process = sh {}\n", script.display()),
    )
    .unwrap();
    let e = env(&[("AWS_CONFIG_FILE", config.to_str().unwrap())]);
    let c = chain_client(&server, &e);
    c.put_bytes("p", b"x".to_vec().into(), PutCondition::None)
        .await
        .unwrap();
    c.head("p").await.unwrap();
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "long-lived keys: run once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_profiles_use_the_aws_clis_cached_token() {
    let server = S3sServer::start().await;
    let k = keys(&server);
    let portal = AwsFake::start(move |r| {
        let ok_target = r.target
            == "/federation/credentials?account_id=123456789012&role_name=AgentState";
        if !ok_target {
            return (404, "application/json", "{}".into());
        }
        if r.headers.get("x-amz-sso_bearer_token").map(String::as_str) != Some("cached-token") {
            return (401, "application/json", r#"{"message":"Session token not found or invalid"}"#.into());
        }
        let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(1)).unix_timestamp() * 1000;
        (
            200,
            "application/json",
            format!(
                r#"{{"roleCredentials":{{"accessKeyId":"{}","secretAccessKey":"{}","sessionToken":"t","expiration":{expiry}}}}}"#,
                k.0, k.1
            ),
        )
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws/sso/cache")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = AgentState\n\n[sso-session corp]\nsso_region = eu-west-1\nsso_start_url = https://d-123.awsapps.com/start\n",
    )
    .unwrap();
    // The file `aws sso login` writes: SHA-1 of the session name.
    let cache = home
        .path()
        .join(".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json");
    let e = env(&[
        ("HOME", home.path().to_str().unwrap()),
        ("AWS_PROFILE", "dev"),
        ("AWS_ENDPOINT_URL_SSO", &portal.endpoint()),
    ]);

    // No token yet, then an expired one: say to log in.
    for cached in [None, Some("2020-01-01T00:00:00Z")] {
        if let Some(at) = cached {
            std::fs::write(
                &cache,
                format!(r#"{{"accessToken":"cached-token","expiresAt":"{at}"}}"#),
            )
            .unwrap();
        }
        let err = chain(&e).credentials().await.unwrap_err().to_string();
        assert!(err.contains("run `aws sso login --profile dev`"), "{err}");
    }

    let at = (time::OffsetDateTime::now_utc() + time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::fs::write(
        &cache,
        format!(r#"{{"accessToken":"cached-token","expiresAt":"{at}","region":"eu-west-1"}}"#),
    )
    .unwrap();
    let c = chain_client(&server, &e);
    c.put_bytes("sso", b"x".to_vec().into(), PutCondition::None)
        .await
        .unwrap();
    assert_eq!(portal.count("/federation/credentials"), 1);
}
