//! Racing conditional writes, made meaningful: s3s-fs 0.14.1 checks `If-Match` before it
//! streams a PUT's body, without a lock, so racing PUTs can both pass there; behind the
//! serialising fault proxy each write of a key is atomic, as on S3. Many writers race
//! through it; exactly one wins each race, and read-modify-write loops lose no update.
//! The races run against s3s-fs and against moto, each behind the front.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ccws::s3::{PutCondition, S3Client, S3Error};
use ccws_tests::faultproxy::{Fault, FaultProxy, Gate, Rule};
use ccws_tests::pseudo_random as data;
use ccws_tests::s3s::S3sServer;
use ccws_tests::server::TestServer;
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;

ccws_tests::on_each_server!(
    racing_creates_of_one_key_have_exactly_one_winner,
    racing_read_modify_writes_lose_no_update,
    lock_step_read_modify_writes_have_one_winner_per_round,
);

/// A serialising proxy in front of `server`, and `n` clients of it (each with its own
/// connections).
async fn racers(server: &TestServer, n: usize) -> (FaultProxy, Vec<S3Client>) {
    let proxy = FaultProxy::start_serialised(server.addr()).await;
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
    (proxy, clients)
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

async fn racing_creates_of_one_key_have_exactly_one_winner(server: &TestServer) {
    let (_proxy, clients) = racers(server, 8).await;
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

async fn racing_read_modify_writes_lose_no_update(server: &TestServer) {
    const WRITERS: usize = 6;
    const APPENDS: usize = 5;
    let (_proxy, clients) = racers(server, WRITERS).await;
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
/// racing to replace one object version, one completes. On s3s-fs only: moto 5.2.1 does not
/// check `If-Match` at CompleteMultipartUpload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_multipart_replacements_have_exactly_one_winner() {
    let server = TestServer::s3s().await;
    let (_proxy, clients) = racers(&server, 3).await;
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

/// In lock step: each round every client reads the log, and once all have read, each that
/// still has an entry to add writes the log with it, `If-Match` the ETag it read. All hold
/// the same ETag, so exactly one write wins each round and the others are refused; they try
/// again in the next round. After one round per entry, every entry is in the log once, in
/// the order the rounds were won.
async fn lock_step_read_modify_writes_have_one_winner_per_round(server: &TestServer) {
    const CLIENTS: usize = 8;
    const ENTRIES: usize = 3;
    const ROUNDS: usize = CLIENTS * ENTRIES;
    let (_proxy, clients) = racers(server, CLIENTS).await;
    clients[0]
        .put_bytes("log", Bytes::new(), PutCondition::None)
        .await
        .unwrap();
    let step = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, c)| {
            let step = step.clone();
            tokio::spawn(async move {
                // (round, won) for each write this client made.
                let mut writes = Vec::new();
                let mut added = 0;
                for round in 0..ROUNDS {
                    // The previous round's writes are all answered.
                    step.wait().await;
                    let read = c.get("log").await;
                    // Everyone has read.
                    step.wait().await;
                    let Ok(mut obj) = read else {
                        writes.push((round, Err(format!("read: {:?}", read.err()))));
                        continue;
                    };
                    let mut body = Vec::new();
                    if let Err(e) = obj.body.read_to_end(&mut body).await {
                        writes.push((round, Err(format!("read: {e}"))));
                        continue;
                    }
                    if added == ENTRIES {
                        continue;
                    }
                    body.extend_from_slice(format!("{i}.{added}\n").as_bytes());
                    let etag = obj.meta.etag.unwrap();
                    let put = c
                        .put_bytes("log", Bytes::from(body), PutCondition::IfMatch(etag))
                        .await;
                    match put {
                        Ok(_) => {
                            added += 1;
                            writes.push((round, Ok(true)));
                        }
                        Err(S3Error::PreconditionFailed { .. }) => writes.push((round, Ok(false))),
                        Err(e) => writes.push((round, Err(format!("write: {e:?}")))),
                    }
                }
                writes
            })
        })
        .collect();
    // Every client keeps stepping even when a request of its fails, so none waits forever.
    let writes = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(tasks))
        .await
        .expect("the rounds did not finish");
    let mut winner = [None; ROUNDS];
    let mut writers = [0; ROUNDS];
    for (i, writes) in writes.into_iter().enumerate() {
        for (round, result) in writes.unwrap() {
            writers[round] += 1;
            match result {
                Ok(true) => {
                    let other = winner[round].replace(i);
                    assert!(other.is_none(), "round {round}: {other:?} and {i} both won");
                }
                Ok(false) => {}
                Err(e) => panic!("client {i}, round {round}: {e}"),
            }
        }
    }
    // Round r has one writer per client with entries left: CLIENTS, until clients finish.
    assert_eq!(writers[0], CLIENTS);
    let mut added = [0; CLIENTS];
    let mut want = String::new();
    for (round, w) in winner.iter().enumerate() {
        let w = w.unwrap_or_else(|| panic!("round {round}: no winner of {}", writers[round]));
        want.push_str(&format!("{w}.{}\n", added[w]));
        added[w] += 1;
    }
    assert_eq!(added, [ENTRIES; CLIENTS]);
    let (log, _) = read(&clients[0], "log").await;
    assert_eq!(String::from_utf8(log).unwrap(), want);
}

/// Why the front: s3s-fs checks a PUT's `If-Match` before it reads the body. A write held
/// past that check (its body withheld) and a second write `If-Match` the same ETag both
/// succeed straight on s3s-fs, and the second write's update is lost; through the front, the
/// second write waits for the first, then is refused. The order is forced step by step: s3s-fs
/// creates the temp file the body goes into only after the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_makes_check_and_write_one_step_on_s3s_fs() {
    for serialised in [false, true] {
        let server = S3sServer::start().await;
        let proxy = if serialised {
            FaultProxy::start_serialised(server.addr).await
        } else {
            FaultProxy::start(server.addr).await
        };
        let client = |endpoint: &str| {
            let cfg = server
                .config_for(endpoint)
                .read_timeout(Duration::from_secs(60));
            S3Client::new(cfg.build().unwrap()).unwrap()
        };
        let first = client(&proxy.endpoint());
        let second = if serialised {
            client(&proxy.endpoint())
        } else {
            client(&server.endpoint())
        };
        let v0 = second
            .put_bytes("held", Bytes::from_static(b"v0"), PutCondition::None)
            .await
            .unwrap();
        let if_v0 = PutCondition::IfMatch(v0.etag.unwrap());
        let gate = Gate::new();
        proxy.push(Rule::on("PUT", "/held", Fault::HoldBody(gate.clone()), 1));
        let cond = if_v0.clone();
        let first = tokio::spawn(async move {
            first
                .put_bytes("held", Bytes::from_static(b"first"), cond)
                .await
        });
        // The first write has passed its check once s3s-fs opens a temp file for its body.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !temp_file_open(&server) {
            assert!(
                Instant::now() < deadline,
                "s3s-fs never began the first write"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = tokio::spawn(async move {
            second
                .put_bytes("held", Bytes::from_static(b"second"), if_v0)
                .await
        });
        if serialised {
            gate.open();
            first.await.unwrap().unwrap();
            let err = second.await.unwrap().unwrap_err();
            assert!(matches!(err, S3Error::PreconditionFailed { .. }), "{err:?}");
        } else {
            // The second write is done while the first is held; then the first is too.
            second.await.unwrap().unwrap();
            gate.open();
            first.await.unwrap().unwrap();
        }
        // Either way the first write is what is stored; straight on s3s-fs, the second
        // write was told it succeeded, and is lost.
        let (body, _) = read(&server.client(), "held").await;
        assert_eq!(body, b"first", "serialised: {serialised}");
        assert_eq!(proxy.remaining(), 0);
    }
}

/// Whether s3s-fs has a temp file open for a body it is receiving.
fn temp_file_open(server: &S3sServer) -> bool {
    std::fs::read_dir(server.data_dir()).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp.")
    })
}
