//! Racing conditional writes, made meaningful: s3s-fs 0.14.1 checks `If-Match` before it
//! streams a PUT's body, without a lock, so racing PUTs can both pass there; behind the
//! serialising fault proxy each write of a key is atomic, as on S3. Many writers race
//! through it; exactly one wins each race, and read-modify-write loops lose no update.

use std::sync::Arc;

use bytes::Bytes;
use ccws::s3::{PutCondition, S3Client, S3Error};
use ccws_tests::faultproxy::FaultProxy;
use ccws_tests::pseudo_random as data;
use ccws_tests::s3s::S3sServer;
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;

/// s3s-fs behind a serialising proxy, and `n` clients of it (each with its own connections).
async fn racers(n: usize) -> (S3sServer, FaultProxy, Vec<S3Client>) {
    let server = S3sServer::start().await;
    let proxy = FaultProxy::start_serialised(server.addr).await;
    let clients = (0..n)
        .map(|_| {
            S3Client::new(
                server
                    .config_for(&proxy.endpoint())
                    .part_size(5 * MIB)
                    .build()
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    (server, proxy, clients)
}

async fn read(client: &S3Client, key: &str) -> (Vec<u8>, String) {
    let mut obj = client.get(key).await.unwrap();
    let mut out = Vec::new();
    obj.body.read_to_end(&mut out).await.unwrap();
    (out, obj.meta.etag.unwrap())
}

/// Writers that all start together.
async fn race<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let gate = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (gate, fut) = (gate.clone(), f(i));
            tokio::spawn(async move {
                gate.wait().await;
                fut.await
            })
        })
        .collect();
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_key_have_exactly_one_winner() {
    let (_server, _proxy, clients) = racers(8).await;
    for round in 0..10 {
        let key = format!("create/{round}");
        let results = race(clients.len(), |i| {
            let (c, key) = (clients[i].clone(), key.clone());
            async move {
                let body = Bytes::from(format!("writer {i}"));
                (
                    i,
                    c.put_bytes(&key, body, PutCondition::IfNoneMatchAny).await,
                )
            }
        })
        .await;
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for (_, r) in &results {
            if let Err(e) = r {
                assert!(matches!(e, S3Error::PreconditionFailed { .. }), "{e:?}");
            }
        }
        let (body, _) = read(&clients[0], &key).await;
        assert_eq!(body, format!("writer {}", winners[0]).into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_read_modify_writes_lose_no_update() {
    const WRITERS: usize = 6;
    const APPENDS: usize = 5;
    let (_server, _proxy, clients) = racers(WRITERS).await;
    clients[0]
        .put_bytes("log", Bytes::new(), PutCondition::None)
        .await
        .unwrap();
    let refusals = race(WRITERS, |i| {
        let c = clients[i].clone();
        async move {
            let mut refused = 0;
            for n in 0..APPENDS {
                loop {
                    let (mut body, etag) = read(&c, "log").await;
                    body.extend_from_slice(format!("{i}.{n}\n").as_bytes());
                    match c
                        .put_bytes("log", Bytes::from(body), PutCondition::IfMatch(etag))
                        .await
                    {
                        Ok(_) => break,
                        Err(S3Error::PreconditionFailed { .. }) => refused += 1,
                        Err(e) => panic!("writer {i}: {e:?}"),
                    }
                }
            }
            refused
        }
    })
    .await;
    let (body, _) = read(&clients[0], "log").await;
    let mut lines: Vec<String> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines.len(),
        WRITERS * APPENDS,
        "an update was lost or doubled"
    );
    lines.sort();
    let mut want: Vec<String> = (0..WRITERS)
        .flat_map(|i| (0..APPENDS).map(move |n| format!("{i}.{n}")))
        .collect();
    want.sort();
    assert_eq!(lines, want);
    eprintln!(
        "refused conditional writes: {}",
        refusals.iter().sum::<usize>()
    );
}

/// The condition of a multipart upload is checked at CompleteMultipartUpload: of uploads
/// racing to replace one object version, one completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_multipart_replacements_have_exactly_one_winner() {
    let (_server, _proxy, clients) = racers(3).await;
    let first = clients[0]
        .put_bytes("big", Bytes::from_static(b"v0"), PutCondition::None)
        .await
        .unwrap();
    let etag = first.etag.unwrap();
    let results = race(clients.len(), |i| {
        let (c, etag) = (clients[i].clone(), etag.clone());
        async move {
            let body = Bytes::from(data(11 * MIB, i as u64));
            c.put_stream("big", &body[..], PutCondition::IfMatch(etag))
                .await
        }
    })
    .await;
    let won: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    let (body, _) = read(&clients[0], "big").await;
    assert!(body == data(11 * MIB, won[0] as u64), "the winner's bytes");
}
