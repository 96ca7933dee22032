//! One retry budget per logical operation: a GET's requests and the resumptions of its cut
//! body spend one budget of `max_attempts` (counted at the fault proxy: exactly that many
//! requests reach it), and the final error names the attempts and the last failure.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ccws::s3::{PutCondition, RetryConfig, S3Client, S3Error};
use ccws_tests::faultproxy::{Fault, FaultProxy, Rule};
use ccws_tests::pseudo_random as data;
use ccws_tests::s3s::S3sServer;
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

fn err500() -> Fault {
    Fault::Error {
        status: 500,
        code: "InternalError".into(),
    }
}

fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

/// s3s-fs behind a fault proxy, a client through it (5 MiB parts, `max_attempts`,
/// verifying checksums as asked) and one straight to the server.
async fn setup(max_attempts: u32, verify: bool) -> (S3sServer, FaultProxy, S3Client, S3Client) {
    let server = S3sServer::start().await;
    let proxy = FaultProxy::start(server.addr).await;
    let client = S3Client::new(
        server
            .config_for(&proxy.endpoint())
            .part_size(PART)
            .concurrency(2)
            .retry(retry(max_attempts))
            .verify_checksums(verify)
            .build()
            .unwrap(),
    )
    .unwrap();
    let direct = server.client();
    (server, proxy, client, direct)
}

fn gets(proxy: &FaultProxy) -> usize {
    proxy.seen().iter().filter(|r| r.method == "GET").count()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Resumed requests (they carry `If-Match`) fail with 500 twice; every body is cut.
fn fail_twice_and_cut_every_body(proxy: &FaultProxy, key: &str) {
    let target = format!("/{key}");
    proxy.push(Rule::on("GET", &target, err500(), 2).with_head("if-match:"));
    proxy.push(Rule::on(
        "GET",
        &target,
        Fault::CutBody { after: 64 * 1024 },
        100,
    ));
}

fn assert_gave_up_after(err: &S3Error, n: u32) {
    match err {
        S3Error::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, n, "{err}");
            assert!(matches!(**last, S3Error::ShortBody { .. }), "{last:?}");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("gave up after {n} attempts")) && msg.contains("short body"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_streamed_get_spends_one_budget_on_requests_and_resumptions() {
    let n = 6;
    let (_server, proxy, client, direct) = setup(n, false).await;
    let body = data(3 * MIB, 21);
    direct
        .put_bytes("obj", Bytes::from(body), PutCondition::None)
        .await
        .unwrap();
    fail_twice_and_cut_every_body(&proxy, "obj");
    let mut obj = client.get("obj").await.unwrap();
    let mut got = Vec::new();
    let e = obj.body.read_to_end(&mut got).await.unwrap_err();
    let err = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<S3Error>())
        .expect("an S3 error inside the io::Error");
    assert_gave_up_after(err, n);
    assert_eq!(
        gets(&proxy),
        n as usize,
        "one budget for requests and resumptions"
    );
    let failed = proxy
        .seen()
        .iter()
        .filter(|r| matches!(r.fault, Some(Fault::Error { .. })))
        .count();
    assert_eq!(failed, 2, "both failed requests were among the attempts");
}

#[tokio::test]
async fn a_download_range_spends_one_budget_and_leaves_no_file() {
    let n = 5;
    let (_server, proxy, client, direct) = setup(n, false).await;
    // Smaller than a part: one range, so one operation.
    direct
        .put_bytes("one", Bytes::from(data(2 * MIB, 22)), PutCondition::None)
        .await
        .unwrap();
    fail_twice_and_cut_every_body(&proxy, "one");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out/one");
    let err = client.download_file("one", &dest).await.unwrap_err();
    assert_gave_up_after(&err, n);
    assert_eq!(gets(&proxy), n as usize);
    assert!(!dest.exists(), "partial file left at the destination");
    assert_eq!(files_in(&tmp.path().join("out")), Vec::<String>::new());
}

#[tokio::test]
async fn the_last_attempt_of_the_budget_may_still_succeed() {
    let n = 6;
    let (_server, proxy, client, direct) = setup(n, false).await;
    let body = data(3 * MIB, 23);
    direct
        .put_bytes("obj", Bytes::from(body.clone()), PutCondition::None)
        .await
        .unwrap();
    // Two failed requests and three cut bodies: five failures, the sixth attempt whole.
    proxy.push(Rule::on("GET", "/obj", err500(), 2).with_head("if-match:"));
    proxy.push(Rule::on(
        "GET",
        "/obj",
        Fault::CutBody { after: 512 * 1024 },
        3,
    ));
    let mut obj = client.get("obj").await.unwrap();
    let mut got = Vec::new();
    obj.body.read_to_end(&mut got).await.unwrap();
    assert!(got == body, "resumed bytes differ");
    assert_eq!(proxy.remaining(), 0);
    assert_eq!(gets(&proxy), n as usize);
}

#[tokio::test]
async fn multipart_uploads_raced_every_time_give_up_after_the_budget() {
    let n = 3;
    let (server, proxy, client, _direct) = setup(n, false).await;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    std::fs::write(&path, data(PART + MIB, 24)).unwrap();
    proxy.push(Rule::on(
        "POST",
        "uploadId=",
        Fault::Error {
            status: 409,
            code: "ConditionalRequestConflict".into(),
        },
        100,
    ));
    let err = client
        .put_file(&path, "big", PutCondition::IfNoneMatchAny)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(
        matches!(err, S3Error::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    let creates = proxy
        .seen()
        .iter()
        .filter(|r| r.method == "POST" && r.target.contains("?uploads"))
        .count();
    assert_eq!(creates, n as usize, "one upload per attempt");
    assert!(server.multipart_leftovers().is_empty());
}
