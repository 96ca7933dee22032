//! The extra CA bundle (`AWS_CA_BUNDLE`): a bundle that cannot be read or holds no
//! certificate is a configuration error naming the file, and a good one is really trusted —
//! against `s3s-fs` behind a TLS front whose self-signed certificate is made by the test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ccws::config::{resolve_store, Overrides, StoreSettings};
use ccws::s3::{ConfigError, PutCondition, S3Client, S3Config, S3Error};
use ccws_tests::s3s::S3sServer;
use tokio_rustls::rustls;

/// The `S3Config` ccws builds from these environment variables (as the CLI does).
fn config_from_env(ca_bundle: Option<&Path>) -> S3Config {
    let mut env: HashMap<String, String> = [
        ("CCWS_BUCKET", "bucket"),
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "SECRET"),
        ("AWS_ENDPOINT_URL", "https://127.0.0.1:9"),
        ("HOME", "/nonexistent"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(p) = ca_bundle {
        env.insert("AWS_CA_BUNDLE".into(), p.to_str().unwrap().into());
    }
    match resolve_store(&Overrides::default(), &env).unwrap() {
        StoreSettings::S3(cfg) => *cfg,
        other => panic!("not S3: {other:?}"),
    }
}

/// Builds a client with `AWS_CA_BUNDLE=path` and returns its error, checked to name `path`.
fn bundle_error(path: &Path) -> String {
    let cfg = config_from_env(Some(path));
    assert_eq!(cfg.ca_bundle.as_deref(), Some(path));
    let err = S3Client::new(cfg).unwrap_err();
    match &err {
        ConfigError::CaBundle { path: p, .. } => assert_eq!(p, path),
        other => panic!("not a CA bundle error: {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("CA bundle {}", path.display())),
        "{msg}"
    );
    // And what to do about it.
    assert!(msg.contains("PEM file of CA certificates"), "{msg}");
    assert!(msg.contains("unset the variable"), "{msg}");
    msg
}

#[test]
fn unreadable_or_certificate_less_bundles_are_config_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.pem");
    let msg = bundle_error(&missing);
    assert!(msg.contains("No such file or directory"), "{msg}");
    // Tests run as root, which reads any file: a directory is what cannot be read.
    let msg = bundle_error(dir.path());
    assert!(msg.contains("Is a directory"), "{msg}");

    let not_pem = dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let msg = bundle_error(&not_pem);
    assert!(msg.contains("no certificate in the bundle"), "{msg}");
    // A PEM file with only a key in it holds no certificate either.
    let key_only = dir.path().join("key.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key_only, key.serialize_pem()).unwrap();
    let msg = bundle_error(&key_only);
    assert!(msg.contains("no certificate in the bundle"), "{msg}");
    // A certificate block whose body is not base64.
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let msg = bundle_error(&broken);
    assert!(msg.contains("certificate 1: base64 decode error"), "{msg}");
    // A certificate block whose body is base64 but no certificate.
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\naGVsbG8sIHdvcmxk\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let msg = bundle_error(&junk);
    assert!(
        msg.contains("certificate 1: not a valid X.509 certificate"),
        "{msg}"
    );

    // Without AWS_CA_BUNDLE, no bundle is read.
    let cfg = config_from_env(None);
    assert_eq!(cfg.ca_bundle, None);
    S3Client::new(cfg).unwrap();
}

/// A TLS front on 127.0.0.1 for `upstream`, with a fresh self-signed certificate for
/// `127.0.0.1`: returns its address, the certificate (PEM) and a count of completed handshakes.
async fn tls_front(upstream: SocketAddr) -> (SocketAddr, String, Arc<AtomicUsize>) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key.into())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate aborts the handshake here.
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, pem, handshakes)
}

#[tokio::test]
async fn a_ca_bundle_is_trusted_and_without_it_the_certificate_is_refused() {
    let server = S3sServer::start().await;
    let (addr, pem, handshakes) = tls_front(server.addr).await;
    let endpoint = format!("https://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &pem).unwrap();

    let trusting = S3Client::new(
        server
            .config_for(&endpoint)
            .ca_bundle(&bundle)
            .build()
            .unwrap(),
    )
    .unwrap();
    trusting
        .put_bytes(
            "tls/obj",
            Bytes::from_static(b"over tls"),
            PutCondition::None,
        )
        .await
        .unwrap();
    let dest = dir.path().join("got");
    trusting.download_file("tls/obj", &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"over tls");
    assert_eq!(
        std::fs::read(server.bucket_dir().join("tls/obj")).unwrap(),
        b"over tls"
    );
    let trusted_handshakes = handshakes.load(Ordering::SeqCst);
    assert!(
        trusted_handshakes >= 1,
        "the requests did not go through TLS"
    );

    // The same client without the bundle refuses the certificate at once
    // (no retries: none can fix it), says what to do, and writes nothing.
    let refusing = S3Client::new(server.config_for(&endpoint).build().unwrap()).unwrap();
    let err = refusing
        .put_bytes("tls/other", Bytes::from_static(b"x"), PutCondition::None)
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::Certificate { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("invalid peer certificate"), "{msg}");
    assert!(msg.contains("AWS_CA_BUNDLE"), "{msg}");
    assert!(!server.bucket_dir().join("tls/other").exists());
    assert_eq!(handshakes.load(Ordering::SeqCst), trusted_handshakes);
}

/// STS and the container endpoint over TLS with a private CA: trusted
/// through the same `AWS_CA_BUNDLE` as S3, refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_endpoints_trust_the_ca_bundle_too() {
    use ccws::s3::credential::{default_chain, Profiles};
    use ccws::s3::CredentialProvider;
    use ccws_tests::awsfake::{self, AwsFake};

    let sts = AwsFake::start(|_| {
        (200, "text/xml", "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIATLS</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>".into())
    })
    .await;
    let container = AwsFake::start(|_| {
        let keys = ("AKCONTAINER".to_owned(), "s".to_owned());
        (
            200,
            "application/json",
            awsfake::credentials_json(&keys, time::Duration::hours(1), false),
        )
    })
    .await;
    let addr = |f: &AwsFake| f.endpoint()["http://".len()..].parse().unwrap();
    let (sts_tls, sts_pem, _) = tls_front(addr(&sts)).await;
    let (container_tls, container_pem, _) = tls_front(addr(&container)).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, format!("{sts_pem}{container_pem}")).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "jwt").unwrap();

    let run = |source: &str, bundle: Option<&Path>| {
        let mut env: HashMap<String, String> = [
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if source == "sts" {
            env.insert(
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                token.to_str().unwrap().into(),
            );
            env.insert("AWS_ROLE_ARN".into(), "arn:aws:iam::1:role/r".into());
            env.insert("AWS_ENDPOINT_URL_STS".into(), format!("https://{sts_tls}"));
        } else {
            env.insert(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                format!("https://{container_tls}/creds"),
            );
        }
        if let Some(b) = bundle {
            env.insert("AWS_CA_BUNDLE".into(), b.to_str().unwrap().into());
        }
        async move {
            let chain =
                default_chain(&env, Profiles::load(&env, None).unwrap(), "us-east-1").unwrap();
            chain.credentials().await
        }
    };
    assert_eq!(
        run("sts", Some(&bundle)).await.unwrap().access_key_id,
        "ASIATLS"
    );
    assert_eq!(
        run("container", Some(&bundle)).await.unwrap().access_key_id,
        "AKCONTAINER"
    );
    let e = run("sts", None).await.unwrap_err().to_string();
    assert!(
        e.contains("certificate") && e.contains("AWS_CA_BUNDLE"),
        "{e}"
    );
    assert!(
        !e.contains("attempts"),
        "a refused certificate is not retried: {e}"
    );
    assert_eq!(sts.count("/"), 1, "only the trusting call reached STS");
    let e = run("container", None).await.unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");
}
