//! The S3 transport against real servers on loopback: each test that any S3 must pass runs
//! against `s3s-fs` (which verifies SigV4) and against `moto`; those that need what only
//! s3s-fs does (checking signatures and their time) run against it alone.

use bytes::Bytes;
use ccws::s3::{PutCondition, S3Client, S3Error};
use ccws_tests::pseudo_random as data;
use ccws_tests::s3s::{S3sOptions, S3sServer};
use ccws_tests::server::TestServer;
use tokio::io::AsyncReadExt;

ccws_tests::on_each_server!(
    odd_keys_round_trip_byte_for_byte,
    zero_byte_objects,
    multipart_50_mb_with_5_mib_parts,
    missing_object_and_missing_bucket,
    conditional_puts,
    if_match_after_delete_is_a_precondition_failure,
    delete_and_invalid_keys,
    failing_reader_aborts_the_multipart_upload,
);

const MIB: usize = 1024 * 1024;

async fn read_all(client: &S3Client, key: &str) -> Vec<u8> {
    let mut obj = client.get(key).await.unwrap();
    let mut out = Vec::new();
    obj.body.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, obj.meta.size);
    out
}

const ODD_KEYS: &[&str] = &[
    "plain.txt",
    "with space/and  two  spaces",
    "plus+sign+",
    "tilde~key",
    "equals=sign",
    "percent%20literal%",
    "amp&ersand&",
    "unicodé/ключ/キー/😀",
    "deep/nested/path/to/file.jsonl",
    "specials !$'()*,;:@[]^`{}|",
    "question?and#hash",
    "-_.~",
];

async fn odd_keys_round_trip_byte_for_byte(server: &TestServer) {
    let client = server.client();
    let tmp = tempfile::tempdir().unwrap();
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let body = data(1000 + i * 37, i as u64);
        let put = client
            .put_bytes(key, Bytes::from(body.clone()), PutCondition::None)
            .await
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
        assert_eq!(put.size, body.len() as u64);
        assert!(put.etag.is_some(), "{key:?}: no etag");
        // s3s-fs stored it under exactly this key (it maps keys to paths).
        if let Some(dir) = server.bucket_dir() {
            let on_disk = std::fs::read(dir.join(key))
                .unwrap_or_else(|e| panic!("{key:?} not stored under its own name: {e}"));
            assert_eq!(on_disk, body, "{key:?}");
        }
        let head = client.head(key).await.unwrap();
        assert_eq!(head.size, body.len() as u64);
        assert_eq!(head.etag, put.etag, "{key:?}");
        assert!(head.last_modified.is_some());
        assert_eq!(read_all(&client, key).await, body, "{key:?}");
        let dest = tmp.path().join(format!("d{i}/file"));
        let meta = client.download_file(key, &dest).await.unwrap();
        assert_eq!(meta.size, body.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), body, "{key:?}");
    }
}

async fn zero_byte_objects(server: &TestServer) {
    let client = server.client();
    let meta = client
        .put_bytes("empty", Bytes::new(), PutCondition::None)
        .await
        .unwrap();
    assert_eq!(meta.size, 0);
    assert_eq!(client.head("empty").await.unwrap().size, 0);
    assert!(read_all(&client, "empty").await.is_empty());
    let meta = client
        .put_stream("empty-stream", tokio::io::empty(), PutCondition::None)
        .await
        .unwrap();
    assert_eq!(meta.size, 0);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sub/empty");
    client.download_file("empty-stream", &dest).await.unwrap();
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 0);
    if let Some(dir) = server.bucket_dir() {
        assert_eq!(
            std::fs::metadata(dir.join("empty-stream")).unwrap().len(),
            0
        );
    }
}

async fn multipart_50_mb_with_5_mib_parts(server: &TestServer) {
    let client = S3Client::new(
        server
            .config()
            .part_size(5 * MIB)
            .concurrency(3)
            .build()
            .unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big.bin");
    let body = data(50_000_000, 7);
    std::fs::write(&src, &body).unwrap();

    let meta = client
        .put_file(&src, "big/object.bin", PutCondition::None)
        .await
        .unwrap();
    assert_eq!(meta.size, 50_000_000);
    // 50 000 000 / 5 MiB = 9.54: ten parts, and S3's multipart ETag says so.
    let etag = meta.etag.clone().unwrap();
    assert!(
        etag.ends_with("-10\""),
        "not a 10-part multipart ETag: {etag}"
    );
    assert_eq!(server.multipart_leftovers(), Vec::<String>::new());

    let head = client.head("big/object.bin").await.unwrap();
    assert_eq!(head.size, 50_000_000);
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));

    let dest = tmp.path().join("out/big.bin");
    let got = client.download_file("big/object.bin", &dest).await.unwrap();
    assert_eq!(got.size, 50_000_000);
    assert!(
        std::fs::read(&dest).unwrap() == body,
        "downloaded bytes differ"
    );
    assert_eq!(
        ccws_tests::tree::names_in(&tmp.path().join("out")),
        vec!["big.bin".to_string()]
    );

    // Exactly one part size: one PUT, not multipart.
    let exact = Bytes::from(data(5 * MIB, 8));
    let meta = client
        .put_stream("exact", &exact[..], PutCondition::None)
        .await
        .unwrap();
    assert!(!meta.etag.unwrap().contains('-'));
    assert_eq!(read_all(&client, "exact").await, exact);

    // One byte over: two parts.
    let over = Bytes::from(data(5 * MIB + 1, 9));
    let meta = client
        .put_stream("over", &over[..], PutCondition::None)
        .await
        .unwrap();
    assert!(meta.etag.unwrap().ends_with("-2\""));
    assert_eq!(read_all(&client, "over").await, over);
    assert_eq!(server.multipart_leftovers(), Vec::<String>::new());
}

/// s3s-fs answers virtual-hosted-style requests only when told its domain.
#[tokio::test]
async fn virtual_hosted_style_s3s_fs() {
    let server = S3sServer::start_with(S3sOptions {
        domain: Some("localhost".into()),
    })
    .await;
    virtual_hosted_style(&TestServer::S3s(server)).await;
}

#[tokio::test]
async fn virtual_hosted_style_moto() {
    if let Some(server) = TestServer::moto().await {
        virtual_hosted_style(&server).await;
    }
}

/// The bucket in the host name (`BUCKET.localhost:PORT`), the key alone in the path.
async fn virtual_hosted_style(server: &TestServer) {
    let bucket = server.config().build().unwrap().bucket;
    let port = server.addr().port();
    // `bucket.localhost` does not resolve on every Linux (no systemd-resolved here): pin it.
    let cfg = server
        .config_for(&format!("http://localhost:{port}"))
        .path_style(false)
        .resolve(format!("{bucket}.localhost"), server.addr())
        .build()
        .unwrap();
    let client = S3Client::new(cfg).unwrap();
    let body = data(70_000, 3);
    let key = "vhost/key with space+plus";
    client
        .put_bytes(key, Bytes::from(body.clone()), PutCondition::None)
        .await
        .unwrap();
    if let Some(dir) = server.bucket_dir() {
        assert_eq!(std::fs::read(dir.join(key)).unwrap(), body);
    }
    // Stored under that key in that bucket, as a path-style client finds it.
    assert_eq!(read_all(&server.client(), key).await, body);
    assert_eq!(read_all(&client, key).await, body);
    client.head_bucket().await.unwrap();
}

// s3s-fs only: moto 5.2.1 checks no signatures unless IAM auth is turned on.
#[tokio::test]
async fn wrong_credentials_are_a_clear_auth_error() {
    let server = S3sServer::start().await;
    let mut cfg = server.config().build().unwrap();
    cfg.secret_access_key = "definitely-not-the-secret".into();
    let client = S3Client::new(cfg).unwrap();
    let err = client
        .put_bytes("k", Bytes::from_static(b"x"), PutCondition::None)
        .await
        .unwrap_err();
    match &err {
        S3Error::Auth { status, code, .. } => {
            assert_eq!(*status, 403);
            assert_eq!(code, "SignatureDoesNotMatch");
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("the credentials or the signature were refused"),
        "{msg}"
    );
    assert!(!msg.contains("definitely-not-the-secret"), "{msg}");
    assert!(!server.bucket_dir().join("k").exists());

    let mut cfg = server.config().build().unwrap();
    cfg.access_key_id = "AKNOSUCHKEY".into();
    let err = S3Client::new(cfg).unwrap().head("k").await.unwrap_err();
    assert!(matches!(err, S3Error::Auth { status: 403, .. }), "{err:?}");
}

async fn missing_object_and_missing_bucket(server: &TestServer) {
    let client = server.client();
    assert!(matches!(client.head("nope").await, Err(S3Error::NotFound { key }) if key == "nope"));
    assert!(matches!(
        client.get("nope/deeper").await,
        Err(S3Error::NotFound { .. })
    ));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("x/never");
    let err = client.download_file("nope", &dest).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(!dest.exists());
    client.head_bucket().await.unwrap();

    let mut cfg = server.config().build().unwrap();
    cfg.bucket = "no-such-bucket".into();
    let other = S3Client::new(cfg).unwrap();
    let err = other.head_bucket().await.unwrap_err();
    assert!(
        matches!(&err, S3Error::NoSuchBucket { bucket } if bucket == "no-such-bucket"),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
}

async fn conditional_puts(server: &TestServer) {
    let client = S3Client::new(server.config().part_size(5 * MIB).build().unwrap()).unwrap();
    let first = client
        .put_bytes(
            "cas",
            Bytes::from_static(b"one"),
            PutCondition::IfNoneMatchAny,
        )
        .await
        .unwrap();
    let err = client
        .put_bytes(
            "cas",
            Bytes::from_static(b"two"),
            PutCondition::IfNoneMatchAny,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, S3Error::PreconditionFailed { key } if key == "cas"),
        "{err:?}"
    );
    let err = client
        .put_bytes(
            "cas",
            Bytes::from_static(b"two"),
            PutCondition::IfMatch("\"0123456789abcdef0123456789abcdef\"".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::PreconditionFailed { .. }), "{err:?}");
    assert_eq!(read_all(&client, "cas").await, b"one");
    let second = client
        .put_bytes(
            "cas",
            Bytes::from_static(b"two"),
            PutCondition::IfMatch(first.etag.clone().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(read_all(&client, "cas").await, b"two");

    // Multipart: the condition is checked on CompleteMultipartUpload; a refusal aborts the upload.
    let big = Bytes::from(data(11 * MIB, 5));
    let err = client
        .put_stream("cas", &big[..], PutCondition::IfNoneMatchAny)
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::PreconditionFailed { .. }), "{err:?}");
    assert_eq!(server.multipart_leftovers(), Vec::<String>::new());
    if server.name() == "moto" {
        // moto 5.2.1 checks If-None-Match at CompleteMultipartUpload, not If-Match
        // (moto/s3/responses.py).
        return;
    }
    let err = client
        .put_stream("cas", &big[..], PutCondition::IfMatch(first.etag.unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::PreconditionFailed { .. }), "{err:?}");
    assert_eq!(read_all(&client, "cas").await, b"two");
    let meta = client
        .put_stream("cas", &big[..], PutCondition::IfMatch(second.etag.unwrap()))
        .await
        .unwrap();
    assert!(meta.etag.unwrap().ends_with("-3\""));
    assert_eq!(read_all(&client, "cas").await, big);
    assert_eq!(server.multipart_leftovers(), Vec::<String>::new());
}

/// A write `If-Match` an ETag read before the object was deleted loses its condition
/// (s3s-fs answers 412 itself; moto, like AWS, answers 404 `NoSuchKey`).
async fn if_match_after_delete_is_a_precondition_failure(server: &TestServer) {
    let client = S3Client::new(server.config().part_size(5 * MIB).build().unwrap()).unwrap();
    let first = client
        .put_bytes("gone", Bytes::from_static(b"one"), PutCondition::None)
        .await
        .unwrap();
    client.delete("gone").await.unwrap();
    let old = PutCondition::IfMatch(first.etag.unwrap());
    let err = client
        .put_bytes("gone", Bytes::from_static(b"two"), old.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, S3Error::PreconditionFailed { key } if key == "gone"),
        "{err:?}"
    );
    if server.name() == "moto" {
        // moto 5.2.1 checks If-None-Match at CompleteMultipartUpload, not If-Match
        // (moto/s3/responses.py).
        return;
    }
    let big = Bytes::from(data(11 * MIB, 9));
    let err = client.put_stream("gone", &big[..], old).await.unwrap_err();
    assert!(matches!(err, S3Error::PreconditionFailed { .. }), "{err:?}");
    assert!(client.head("gone").await.unwrap_err().is_not_found());
    assert_eq!(server.multipart_leftovers(), Vec::<String>::new());
}

// s3s-fs only: moto 5.2.1 checks no signature, so no request time either.
#[tokio::test]
async fn clock_skew_is_corrected_from_the_date_header() {
    let server = S3sServer::start().await;
    let client = server.client();
    // An hour slow: s3s-fs (like S3) refuses requests more than 15 minutes off.
    client.set_clock_offset(-3600);
    client
        .put_bytes("skewed", Bytes::from_static(b"on time"), PutCondition::None)
        .await
        .unwrap();
    assert!(
        client.clock_offset().abs() < 60,
        "offset not corrected: {}",
        client.clock_offset()
    );
    assert_eq!(read_all(&client, "skewed").await, b"on time");
}

async fn delete_and_invalid_keys(server: &TestServer) {
    let client = server.client();
    client
        .put_bytes("gone/soon", Bytes::from_static(b"x"), PutCondition::None)
        .await
        .unwrap();
    client.delete("gone/soon").await.unwrap();
    assert!(client.head("gone/soon").await.unwrap_err().is_not_found());
    client.delete("gone/soon").await.unwrap();
    for bad in ["", "a/../b", "./x", "x/."] {
        let err = client
            .put_bytes(bad, Bytes::new(), PutCondition::None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, S3Error::InvalidKey { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

async fn failing_reader_aborts_the_multipart_upload(server: &TestServer) {
    let client = S3Client::new(server.config().part_size(5 * MIB).build().unwrap()).unwrap();
    // 12 MiB then an I/O error: two parts are uploaded before the failure is seen.
    let good = std::io::Cursor::new(data(12 * MIB, 11));
    let failing = tokio::io::AsyncReadExt::chain(good, FailingReader);
    let err = client
        .put_stream("never", failing, PutCondition::None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, S3Error::Io(e) if e.to_string().contains("reader broke")),
        "{err:?}"
    );
    assert_eq!(server.multipart_leftovers(), Vec::<String>::new());
    assert!(client.head("never").await.unwrap_err().is_not_found());
}

struct FailingReader;

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other("reader broke")))
    }
}
