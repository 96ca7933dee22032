//! The store's paginated listing and batched deletion, on the real s3s-fs
//! server and on the local store alike: pages of a few keys, key order,
//! prefixes, odd keys, and deletions of more than one batch.

use std::collections::BTreeSet;

use ccws::s3::{ObjectMeta, PutCondition};
use ccws::store::{LocalStore, Store};
use ccws_tests::moto::Moto;
use ccws_tests::s3s::S3sServer;
use futures::StreamExt;

/// Keys whose byte order differs from a naive directory walk's (`a.b`
/// sorts before `a/b`), with odd characters, and some outside the prefix.
const KEYS: &[&str] = &[
    "p/a.b",
    "p/a/b",
    "p/a/c/d",
    "p/a-",
    "p/a0",
    "p/b c/ü+=&.jsonl",
    "p/percent%20literal",
    "p/z/y/x/w",
    "p/zz",
    "p/~",
    "pp/not-in-p",
    "q/other",
];

fn keys_under(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = KEYS
        .iter()
        .filter(|k| k.starts_with(prefix))
        .map(|k| k.to_string())
        .collect();
    v.sort();
    v
}

async fn fill(store: &Store) {
    for (i, k) in KEYS.iter().enumerate() {
        store
            .put_bytes(k, vec![b'x'; i], PutCondition::None)
            .await
            .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
    }
}

/// Lists `prefix` in pages of `size`; returns the pages.
async fn pages(store: &Store, prefix: &str, size: u32) -> Vec<Vec<ObjectMeta>> {
    let mut p = store.pages(prefix, size);
    let mut out = Vec::new();
    while let Some(page) = p.next().await.unwrap() {
        assert!(page.len() <= size as usize, "a page of {}", page.len());
        out.push(page);
        assert!(out.len() < 100, "the listing does not end");
    }
    out
}

async fn listing_pages_in_key_order(store: &Store) {
    fill(store).await;
    for size in [1, 2, 3, 1000] {
        let got = pages(store, "p/", size).await;
        let want = keys_under("p/");
        if size < want.len() as u32 {
            assert!(got.len() > 1, "page size {size}: one page");
        }
        let keys: Vec<String> = got.iter().flatten().map(|o| o.key.clone()).collect();
        assert_eq!(keys, want, "page size {size}");
        for o in got.iter().flatten() {
            let i = KEYS.iter().position(|k| *k == o.key).unwrap();
            assert_eq!(o.size, i as u64, "{}", o.key);
            // (An ETag is optional: s3s-fs lists none.)
            assert!(o.last_modified.is_some(), "{}", o.key);
        }
    }
    // A prefix that is not a directory: `p/a` holds `p/a-`, `p/a.b`, `p/a/...`.
    let keys: Vec<String> = pages(store, "p/a", 2)
        .await
        .into_iter()
        .flatten()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, keys_under("p/a"));
    assert!(pages(store, "nothing/", 5).await.iter().all(Vec::is_empty));
    let all = store.list("").await.unwrap();
    assert_eq!(all.len(), keys_under("").len());
}

async fn deleting_in_batches(store: &Store, n: usize) {
    // A large set, put a few at a time.
    let keys: Vec<String> = (0..n)
        .map(|i| format!("many/{:02}/{i:05}", i % 7))
        .collect();
    futures::stream::iter(keys.iter())
        .for_each_concurrent(16, |k| async move {
            store
                .put_bytes(k, b"v".to_vec(), PutCondition::None)
                .await
                .unwrap();
        })
        .await;
    store
        .put_bytes("keep/me", b"k".to_vec(), PutCondition::None)
        .await
        .unwrap();
    let listed: BTreeSet<String> = store
        .list("many/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed.len(), n);
    let mut doomed = keys.clone();
    doomed.push("many/never-was".into());
    let failures = store.delete_many(&doomed).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(store.list("many/").await.unwrap().is_empty());
    assert_eq!(store.list("keep/").await.unwrap().len(), 1, "keep/me stays");
    assert!(store.delete_many(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn s3_listing_pages_in_key_order() {
    let server = S3sServer::start().await;
    listing_pages_in_key_order(&Store::S3(server.client())).await;
}

#[tokio::test]
async fn local_listing_pages_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::open(dir.path().join("store")).unwrap());
    listing_pages_in_key_order(&store).await;
}

/// More than one `DeleteObjects` request (1000 keys each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_deletes_in_batches() {
    let server = S3sServer::start().await;
    deleting_in_batches(&Store::S3(server.client()), 1003).await;
}

#[tokio::test]
async fn local_deletes_and_leaves_no_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::Local(LocalStore::open(&root).unwrap());
    deleting_in_batches(&store, 40).await;
    assert!(!root.join("many").exists(), "emptied directories go too");
    assert!(root.join("keep/me").is_file());
    // The store's own files are no keys.
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["keep/me"]);
}

#[tokio::test]
async fn invalid_keys_are_refused_before_anything_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::open(dir.path().join("store")).unwrap());
    store
        .put_bytes("a", b"1".to_vec(), PutCondition::None)
        .await
        .unwrap();
    let err = store
        .delete_many(&["a".into(), "../escape".into()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid object key"), "{err}");
    assert_eq!(store.list("").await.unwrap().len(), 1, "nothing deleted");
}

#[tokio::test]
async fn moto_lists_in_pages_and_deletes_in_batches() {
    let Some(moto) = Moto::start() else { return };
    let store = moto.store("ccws-list").await;
    listing_pages_in_key_order(&store).await;
    deleting_in_batches(&store, 1003).await;
}
