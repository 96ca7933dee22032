//! Whole turns through `ccws::workspace`, against the built-in local store
//! and against the real s3s-fs server (through a fault-injecting proxy); the
//! racing teardowns and setups against moto too.

use std::path::Path;
use std::time::Duration;

use ccws::s3::{PutCondition, S3Client};
use ccws::store::{LocalStore, Store, StoreError};
use ccws::workspace::{
    Delivery, HomeSource, Owner, TranscriptSource, WorkspaceConfig, WorkspaceError, Workspaces,
};
use ccws_tests::faultproxy::{Fault, FaultProxy, Rule};
use ccws_tests::server::TestServer;
use ccws_tests::{archiver, tree};

/// A store under test and what keeps it alive.
struct Backend {
    store: Store,
    _local: Option<tempfile::TempDir>,
    _server: Option<TestServer>,
    proxy: Option<FaultProxy>,
    /// Per-backend machine state: temp base and ccws state dir.
    machine: tempfile::TempDir,
}

impl Backend {
    async fn local() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            store: Store::Local(LocalStore::open(dir.path().join("store")).unwrap()),
            _local: Some(dir),
            _server: None,
            proxy: None,
            machine: tempfile::tempdir().unwrap(),
        }
    }

    async fn s3() -> Backend {
        Backend::s3_behind(false).await
    }

    /// s3s-fs behind the fault proxy; `serialised`: one whose writes of a key are atomic,
    /// as on S3, so that conditional writes can race for real.
    async fn s3_behind(serialised: bool) -> Backend {
        Backend::behind(TestServer::s3s().await, serialised).await
    }

    /// moto behind the serialising proxy; `None` where moto is not installed.
    async fn moto_serialised() -> Option<Backend> {
        Some(Backend::behind(TestServer::moto().await?, true).await)
    }

    async fn behind(server: TestServer, serialised: bool) -> Backend {
        let proxy = if serialised {
            FaultProxy::start_serialised(server.addr()).await
        } else {
            FaultProxy::start(server.addr()).await
        };
        let client = S3Client::new(server.config_for(&proxy.endpoint()).build().unwrap()).unwrap();
        Backend {
            store: Store::S3(client),
            _local: None,
            _server: Some(server),
            proxy: Some(proxy),
            machine: tempfile::tempdir().unwrap(),
        }
    }

    /// The local store, and each S3 server behind the serialising proxy: where conditional
    /// writes race for real.
    async fn racing() -> Vec<(&'static str, Backend)> {
        let mut backends = vec![
            ("local", Backend::local().await),
            ("s3s-fs", Backend::s3_behind(true).await),
        ];
        backends.extend(Backend::moto_serialised().await.map(|b| ("moto", b)));
        backends
    }

    async fn both() -> Vec<(&'static str, Backend)> {
        vec![
            ("local", Backend::local().await),
            ("s3s-fs", Backend::s3().await),
        ]
    }

    fn workspaces(&self) -> Workspaces {
        let mut cfg = WorkspaceConfig::new(self.machine.path().join("state"));
        cfg.temp_base = Some(self.machine.path().join("tmp"));
        Workspaces::new(self.store.clone(), archiver(), cfg)
    }

    fn temp_base(&self) -> std::path::PathBuf {
        self.machine.path().join("tmp")
    }

    /// What is left of sessions on this machine: `<temp base>/cc-broker/`
    /// (session trees) as `tree:NAME`, and ccws's per-session records and
    /// lock files in `<state>/sessions/` as `state:NAME`.
    fn broker_entries(&self) -> Vec<String> {
        let list = |dir: std::path::PathBuf, tag: &str| -> Vec<String> {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.map(|e| format!("{tag}:{}", e.unwrap().file_name().to_string_lossy()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut names = list(self.temp_base().join("cc-broker"), "tree");
        names.extend(list(self.machine.path().join("state/sessions"), "state"));
        names.sort();
        names
    }
}

fn me() -> Owner {
    Owner::of(std::process::id())
}

/// The files of the stored home, unpacked into a fresh directory.
async fn stored_home(ws: &Workspaces, workspace: &str) -> (tempfile::TempDir, tree::Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    let obj = ws
        .store()
        .get(&ws.config().keys.home(workspace))
        .await
        .unwrap();
    archiver()
        .unpack(obj.body, dir.path(), &Default::default(), None)
        .await
        .unwrap();
    let snap = tree::snapshot(dir.path());
    (dir, snap)
}

fn with_timeout<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(120), f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_turn_round_trip_on_both_stores() {
    for (name, b) in Backend::both().await {
        with_timeout(async {
            let ws = b.workspaces();
            let w = ws.setup("acme", "s1", me()).await.unwrap();
            assert_eq!(w.report.home, HomeSource::Empty, "{name}");
            assert_eq!(w.report.transcript, TranscriptSource::New, "{name}");
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&w.layout.temp_dir)
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o700, "{name}: the temp tree is private");
            }
            assert!(w.layout.memory_dir.is_dir(), "{name}");
            std::fs::write(w.layout.memory_dir.join("notes.md"), "remember the milk").unwrap();
            tree::write(
                &w.layout.claude_dir,
                "settings.json",
                b"{\"theme\":\"dark\"}",
            );
            tree::write(&w.layout.claude_dir, "hooks/pre.sh", b"#!/bin/sh\nexit 0\n");
            tree::make_executable(&w.layout.claude_dir, "hooks/pre.sh");
            std::fs::create_dir_all(w.layout.transcript.parent().unwrap()).unwrap();
            std::fs::write(&w.layout.transcript, "{\"turn\":1}\n").unwrap();
            std::fs::write(
                w.layout.transcript.with_file_name("scratch.txt"),
                "session-only",
            )
            .unwrap();

            let r = ws.teardown("acme", "s1").await.unwrap();
            assert!(
                matches!(r.transcript, Delivery::Uploaded { .. }),
                "{name}: {r:?}"
            );
            assert!(matches!(r.home, Delivery::Uploaded { .. }), "{name}: {r:?}");
            assert!(r.removed && !w.layout.temp_dir.exists(), "{name}");
            assert_eq!(
                b.broker_entries(),
                Vec::<String>::new(),
                "{name}: no tree, no record and no lock file left"
            );

            // The session's own subtree is not in the shared home.
            let (_d, home) = stored_home(&ws, "acme").await;
            assert!(
                home.keys()
                    .all(|k| !k.starts_with(&w.layout.session_subtree)),
                "{name}: {home:?}"
            );
            assert_eq!(
                home.get("projects/ws_acme/memory/notes.md"),
                Some(&Some((b"remember the milk".to_vec(), false))),
                "{name}"
            );
            assert!(
                home["hooks/pre.sh"].as_ref().unwrap().1,
                "{name}: exec bit kept"
            );

            // The next turn sees everything again.
            let w2 = ws.setup("acme", "s1", me()).await.unwrap();
            assert!(matches!(w2.report.home, HomeSource::Store { .. }), "{name}");
            assert_eq!(w2.report.transcript, TranscriptSource::Store, "{name}");
            assert_eq!(
                std::fs::read_to_string(&w2.layout.transcript).unwrap(),
                "{\"turn\":1}\n"
            );
            assert_eq!(
                std::fs::read_to_string(w2.layout.memory_dir.join("notes.md")).unwrap(),
                "remember the milk"
            );
            assert_eq!(
                std::fs::read_to_string(w2.layout.transcript.with_file_name("scratch.txt"))
                    .unwrap(),
                "session-only",
                "{name}: the session's own files travel with it"
            );
            let snap = tree::snapshot(&w2.layout.claude_dir);
            assert!(
                snap["hooks/pre.sh"].as_ref().unwrap().1,
                "{name}: exec bit restored"
            );
            assert_eq!(
                b.broker_entries(),
                ["state:s1", "state:s1.lock", "tree:sess_s1"],
                "{name}: a live session keeps its record and lock file"
            );
            // Nothing changed: nothing is uploaded.
            let r = ws.teardown("acme", "s1").await.unwrap();
            assert_eq!(r.home, Delivery::Unchanged, "{name}");
            assert_eq!(b.broker_entries(), Vec::<String>::new(), "{name}");
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: timed out"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_share_memory() {
    for (name, b) in Backend::both().await {
        let ws = b.workspaces();
        let a = ws.setup("team", "a", me()).await.unwrap();
        std::fs::write(a.layout.memory_dir.join("from-a.md"), "A").unwrap();
        ws.teardown("team", "a").await.unwrap();
        let bb = ws.setup("team", "b", me()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(bb.layout.memory_dir.join("from-a.md")).unwrap(),
            "A",
            "{name}"
        );
        assert_ne!(a.layout.session_subtree, bb.layout.session_subtree);
        ws.teardown("team", "b").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_teardowns_lose_no_update() {
    let backends = Backend::racing().await;
    for (name, b) in backends {
        with_timeout(async {
            let ws = b.workspaces();
            // A shared starting point.
            let w0 = ws.setup("race", "s0", me()).await.unwrap();
            std::fs::write(w0.layout.memory_dir.join("shared.md"), "v0").unwrap();
            ws.teardown("race", "s0").await.unwrap();

            let sessions = ["s1", "s2", "s3", "s4"];
            for s in sessions {
                let w = ws.setup("race", s, me()).await.unwrap();
                std::fs::write(w.layout.memory_dir.join(format!("{s}.md")), s).unwrap();
                std::fs::write(w.layout.memory_dir.join("shared.md"), format!("by {s}")).unwrap();
            }
            // The local store's compare-and-swap is atomic, and so are the servers'
            // conditional writes behind the serialising proxy: the teardowns race for real.
            let results =
                futures::future::join_all(sessions.iter().map(|s| ws.teardown("race", s))).await;
            let mut merged = 0;
            let mut conflicts = 0;
            for r in results {
                match r.unwrap().home {
                    Delivery::Uploaded { .. } => {}
                    Delivery::Merged { merge, .. } => {
                        merged += 1;
                        conflicts += merge
                            .conflicts
                            .iter()
                            .filter(|c| c.ends_with("shared.md"))
                            .count();
                    }
                    other => panic!("{name}: {other:?}"),
                }
            }
            assert_eq!(merged, 3, "{name}: all but the first teardown merge");
            assert_eq!(conflicts, 3, "{name}: each merge reports the shared file");
            let (_d, home) = stored_home(&ws, "race").await;
            for s in sessions {
                let got = &home[&format!("projects/ws_race/memory/{s}.md")];
                assert_eq!(
                    got.as_ref().unwrap().0,
                    s.as_bytes(),
                    "{name}: {s}'s file survived"
                );
            }
            let shared =
                String::from_utf8(home["projects/ws_race/memory/shared.md"].clone().unwrap().0)
                    .unwrap();
            assert!(
                sessions.iter().any(|s| shared == format!("by {s}")),
                "{name}: {shared}"
            );
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: timed out"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_away_at_teardown_queues_then_next_setup_recovers() {
    let b = Backend::s3().await;
    let proxy = b.proxy.as_ref().unwrap();
    let ws = b.workspaces();
    let w = ws.setup("down", "s1", me()).await.unwrap();
    std::fs::write(
        w.layout.memory_dir.join("m.md"),
        "written while the server was down",
    )
    .unwrap();
    std::fs::create_dir_all(w.layout.transcript.parent().unwrap()).unwrap();
    std::fs::write(&w.layout.transcript, "line\n").unwrap();
    tree::write(&w.layout.claude_dir, "todos/s1-agent-s1.json", b"[]");

    // The server goes away: every request fails.
    proxy.push(Rule::any(Fault::Reset, 10_000));
    let r = with_timeout(ws.teardown("down", "s1"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r.transcript, Delivery::Queued { .. }), "{r:?}");
    assert!(matches!(r.state, Delivery::Queued { .. }), "{r:?}");
    assert!(matches!(r.home, Delivery::Queued { .. }), "{r:?}");
    assert!(r.removed, "the turn still ends cleanly");
    assert_eq!(ws.outbox().list().unwrap().len(), 3);

    // While still down, a new session of the workspace starts from the queued state.
    let w2 = with_timeout(ws.setup("down", "s1", me()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w2.report.home, HomeSource::Outbox);
    assert_eq!(w2.report.transcript, TranscriptSource::Outbox);
    assert_eq!(
        std::fs::read_to_string(&w2.layout.transcript).unwrap(),
        "line\n"
    );
    assert!(w2
        .layout
        .claude_dir
        .join("todos/s1-agent-s1.json")
        .is_file());
    std::fs::remove_dir_all(&w2.layout.temp_dir).unwrap();

    // The server is back: the next setup delivers the outbox first.
    proxy.clear();
    let w3 = with_timeout(ws.setup("down", "s2", me()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w3.report.flushed.delivered, 3, "{:?}", w3.report.flushed);
    assert!(ws.outbox().list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_to_string(w3.layout.memory_dir.join("m.md")).unwrap(),
        "written while the server was down"
    );
    let t = ws
        .store()
        .get(&ws.config().keys.transcript("down", "s1"))
        .await
        .unwrap();
    assert_eq!(t.meta.size, 5);
    ws.teardown("down", "s2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_home_merges_onto_a_newer_one_when_flushed() {
    let b = Backend::s3().await;
    let proxy = b.proxy.as_ref().unwrap();
    let ws = b.workspaces();
    let w = ws.setup("q", "s1", me()).await.unwrap();
    std::fs::write(w.layout.memory_dir.join("mine.md"), "mine").unwrap();
    proxy.push(Rule::any(Fault::Reset, 10_000));
    let r = ws.teardown("q", "s1").await.unwrap();
    assert!(matches!(r.home, Delivery::Queued { .. }));
    proxy.clear();

    // Meanwhile another machine publishes a home (simulated with a second state dir).
    let other = {
        let mut cfg = WorkspaceConfig::new(b.machine.path().join("other-state"));
        cfg.temp_base = Some(b.machine.path().join("other-tmp"));
        Workspaces::new(b.store.clone(), archiver(), cfg)
    };
    let o = other.setup("q", "s9", me()).await.unwrap();
    std::fs::write(o.layout.memory_dir.join("theirs.md"), "theirs").unwrap();
    other.teardown("q", "s9").await.unwrap();

    let f = ws.flush(None).await.unwrap();
    assert_eq!((f.delivered, f.remaining), (1, 0), "{f:?}");
    let (_d, home) = stored_home(&ws, "q").await;
    assert!(
        home.contains_key("projects/ws_q/memory/mine.md"),
        "{home:?}"
    );
    assert!(
        home.contains_key("projects/ws_q/memory/theirs.md"),
        "{home:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_session_is_refused_and_abandoned_one_recovered() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    // The session's owner: a process that is then killed, as by SIGKILL.
    let mut owner = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let w = ws.setup("live", "s1", Owner::of(owner.id())).await.unwrap();
    let err = ws.setup("live", "s1", me()).await.unwrap_err();
    assert!(matches!(err, WorkspaceError::SessionBusy { .. }), "{err}");
    assert!(err.to_string().contains("already set up"), "{err}");
    std::fs::write(
        w.layout.memory_dir.join("unsaved.md"),
        "from a crashed turn",
    )
    .unwrap();
    owner.kill().unwrap();
    owner.wait().unwrap();

    let w2 = ws.setup("live", "s1", me()).await.unwrap();
    let rec = w2
        .report
        .recovered
        .as_ref()
        .expect("the abandoned turn was recovered");
    assert!(matches!(rec.home, Delivery::Uploaded { .. }), "{rec:?}");
    assert_eq!(
        std::fs::read_to_string(w2.layout.memory_dir.join("unsaved.md")).unwrap(),
        "from a crashed turn"
    );
    ws.teardown("live", "s1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_io() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    for (w, s) in [
        ("ok", "../evil"),
        ("a/b", "ok"),
        ("", "ok"),
        ("ok", ".."),
        ("ok", "sp ace"),
    ] {
        let err = ws.setup(w, s, me()).await.unwrap_err();
        assert!(
            matches!(err, WorkspaceError::InvalidId { .. }),
            "{w:?}/{s:?}: {err}"
        );
    }
    assert!(
        !b.temp_base().join("cc-broker").exists(),
        "nothing was created"
    );

    let err = ws.teardown("ok", "never").await.unwrap_err();
    assert!(matches!(err, WorkspaceError::NoSession { .. }), "{err}");
    assert_eq!(
        b.broker_entries(),
        Vec::<String>::new(),
        "no lock file left for a session that never was"
    );

    // An unusable temp base (a path under a regular file).
    let file = b.machine.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut cfg = WorkspaceConfig::new(b.machine.path().join("state"));
    cfg.temp_base = Some(file.join("sub"));
    let bad = Workspaces::new(b.store.clone(), archiver(), cfg);
    let err = bad.setup("ok", "ok", me()).await.unwrap_err();
    assert!(matches!(err, WorkspaceError::TempBase { .. }), "{err}");
    assert!(err.to_string().contains("--temp-dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_home_falls_back_to_the_last_good_one() {
    for (name, b) in Backend::both().await {
        with_timeout(async {
            let ws = b.workspaces();
            let keys = &ws.config().keys;
            // A corrupt home, and no good one yet: an empty home, not a failure.
            let junk = b.machine.path().join("junk");
            std::fs::write(&junk, b"\x1f\x8bnot really gzip").unwrap();
            ws.store()
                .put_file(&junk, &keys.home("bad"), PutCondition::None)
                .await
                .unwrap();
            let w = ws.setup("bad", "s1", me()).await.unwrap();
            assert!(
                matches!(&w.report.home, HomeSource::Fallback { files: 0, reason, .. } if reason.contains("corrupt")),
                "{name}: {:?}",
                w.report.home
            );
            assert!(w.layout.memory_dir.is_dir(), "{name}");
            std::fs::write(w.layout.memory_dir.join("good.md"), "kept").unwrap();
            ws.teardown("bad", "s1").await.unwrap();
            // The bad one was kept aside; the published one is the good copy.
            let mut rejected = ws.store().head(&keys.home_rejected("bad")).await.unwrap().size;
            assert_eq!(rejected, junk.metadata().unwrap().len(), "{name}");
            assert!(ws.store().head(&keys.home_good("bad")).await.is_ok(), "{name}");

            // Another writer replaces the home with one whose memory
            // directory is a file: the next setup uses the last good home.
            let evil = b.machine.path().join("evil");
            std::fs::create_dir_all(evil.join("projects/ws_bad")).unwrap();
            std::fs::write(evil.join("projects/ws_bad/memory"), "not a dir").unwrap();
            let packed = b.machine.path().join("evil.tar.gz");
            archiver()
                .pack_file(&evil, &packed, &Default::default(), None)
                .await
                .unwrap();
            ws.store()
                .put_file(&packed, &keys.home("bad"), PutCondition::None)
                .await
                .unwrap();
            let w2 = ws.setup("bad", "s2", me()).await.unwrap();
            assert!(
                matches!(&w2.report.home, HomeSource::Fallback { files: 1, reason, .. } if reason.contains("not a directory")),
                "{name}: {:?}",
                w2.report.home
            );
            assert_eq!(
                std::fs::read_to_string(w2.layout.memory_dir.join("good.md")).unwrap(),
                "kept",
                "{name}"
            );
            rejected = ws.store().head(&keys.home_rejected("bad")).await.unwrap().size;
            assert_eq!(rejected, packed.metadata().unwrap().len(), "{name}");
            std::fs::write(w2.layout.memory_dir.join("more.md"), "more").unwrap();
            ws.teardown("bad", "s2").await.unwrap();
            let (_d, home) = stored_home(&ws, "bad").await;
            assert!(home.contains_key("projects/ws_bad/memory/good.md"), "{name}");
            assert!(home.contains_key("projects/ws_bad/memory/more.md"), "{name}");
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: timed out"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_subtree_never_comes_from_the_shared_home() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    // Session A's turn plants what would be session B's own subtree (with a
    // directory where B's transcript goes) into the shared home.
    let b_layout = ws.layout("w", "B").unwrap();
    let wa = ws.setup("w", "A", me()).await.unwrap();
    let planted = wa.layout.claude_dir.join(&b_layout.session_subtree);
    std::fs::create_dir_all(planted.join("B.jsonl")).unwrap();
    std::fs::write(planted.join("stolen.txt"), "from A").unwrap();
    ws.teardown("w", "A").await.unwrap();
    let (_d, home) = stored_home(&ws, "w").await;
    assert!(home
        .keys()
        .any(|k| k.starts_with(&b_layout.session_subtree)));

    // B starts clean, and never uploads A's plant as its own.
    let wb = ws.setup("w", "B", me()).await.unwrap();
    assert_eq!(wb.report.transcript, TranscriptSource::New);
    assert!(!wb.layout.transcript.exists());
    assert!(!wb.layout.transcript.with_file_name("stolen.txt").exists());
    std::fs::write(&wb.layout.transcript, "{\"b\":1}\n").unwrap();
    let r = ws.teardown("w", "B").await.unwrap();
    assert!(matches!(r.transcript, Delivery::Uploaded { .. }), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_conditional_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, "v1").unwrap();
    let m1 = store
        .put_file(&src, "a/b", PutCondition::IfNoneMatchAny)
        .await
        .unwrap();
    let again = store
        .put_file(&src, "a/b", PutCondition::IfNoneMatchAny)
        .await
        .unwrap_err();
    assert!(again.is_precondition_failed(), "{again}");
    let m2 = store
        .put_file(&src, "a/b", PutCondition::IfMatch(m1.etag.clone().unwrap()))
        .await
        .unwrap();
    assert_ne!(m1.etag, m2.etag, "every write gets a new ETag");
    let stale = store
        .put_file(&src, "a/b", PutCondition::IfMatch(m1.etag.unwrap()))
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed());
    assert!(store.head("missing").await.unwrap_err().is_not_found());
    for bad in ["../x", "/abs", "a//b", "a/./b", ".ccws-tmp/x"] {
        assert!(store.head(bad).await.is_err(), "{bad}");
    }
    assert!(Path::new(&dir.path().join(".ccws-tmp"))
        .read_dir()
        .unwrap()
        .next()
        .is_none());
}

/// Every path under `dir`, relative, sorted (files with their contents' length).
fn all_paths(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(format!("{rel} ({} bytes)", p.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}

/// When the local store cannot create its temporary file (its temp directory is a regular
/// file: permissions would not stop root), a write is a typed error naming that directory,
/// leaves nothing behind and keeps the existing object. So does a download to a destination
/// under a regular file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_temp_file_errors_name_the_path_and_keep_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::open(&root).unwrap();
    let v1 = store
        .put_stream("a/b", &b"v1"[..], PutCondition::None)
        .await
        .unwrap();
    let tmp_dir = root.join(".ccws-tmp");
    std::fs::remove_dir(&tmp_dir).unwrap();
    std::fs::write(&tmp_dir, "in the way").unwrap();
    let before = all_paths(&root);

    let src = dir.path().join("src");
    std::fs::write(&src, "v2").unwrap();
    let writes = [
        ("a/b", PutCondition::None),
        ("a/b", PutCondition::IfMatch(v1.etag.clone().unwrap())),
        ("new/key", PutCondition::IfNoneMatchAny),
    ];
    for (key, cond) in writes {
        let err = store.put_file(&src, key, cond).await.unwrap_err();
        match &err {
            StoreError::Local { path, source } => {
                assert_eq!(path, &tmp_dir, "{err}");
                assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory, "{err}");
            }
            other => panic!("not a local-store error: {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&tmp_dir.display().to_string()), "{msg}");
    }
    assert_eq!(all_paths(&root), before, "a failed write left something");
    assert_eq!(std::fs::read(root.join("a/b")).unwrap(), b"v1");
    assert_eq!(store.head("a/b").await.unwrap().etag, v1.etag);
    assert!(store.head("new/key").await.unwrap_err().is_not_found());

    // A download's temp file goes next to its destination: under a file it cannot be made.
    let dest = src.join("sub/dest");
    let err = store.download_file("a/b", &dest).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Local { path, .. } if path == &src.join("sub")),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains(&src.join("sub").display().to_string()));
    assert_eq!(std::fs::read(&src).unwrap(), b"v2");
    assert_eq!(all_paths(&root), before);

    // With the temp directory back, writes work again.
    std::fs::remove_file(&tmp_dir).unwrap();
    let store = LocalStore::open(&root).unwrap();
    store
        .put_file(&src, "a/b", PutCondition::IfMatch(v1.etag.unwrap()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("a/b")).unwrap(), b"v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lost_between_transcript_and_home_keeps_the_home() {
    let b = Backend::s3().await;
    let proxy = b.proxy.as_ref().unwrap();
    let ws = b.workspaces();
    let w = ws.setup("mid", "s1", me()).await.unwrap();
    std::fs::write(w.layout.memory_dir.join("m.md"), "late change").unwrap();
    std::fs::create_dir_all(w.layout.transcript.parent().unwrap()).unwrap();
    std::fs::write(&w.layout.transcript, "t\n").unwrap();

    // The transcript goes through; the server is gone by the time the home is sent.
    proxy.push(Rule::on("PUT", "claude-home", Fault::Reset, 10_000));
    proxy.push(Rule::on("POST", "claude-home", Fault::Reset, 10_000));
    let r = with_timeout(ws.teardown("mid", "s1"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r.transcript, Delivery::Uploaded { .. }), "{r:?}");
    assert!(matches!(r.home, Delivery::Queued { .. }), "{r:?}");
    let queued = ws.outbox().list().unwrap();
    assert_eq!(queued.len(), 1);
    assert!(
        queued[0].entry.last_error.contains("claude-home"),
        "{:?}",
        queued[0].entry
    );
    // No object was written by the failed upload.
    let home_key = ws.config().keys.home("mid");
    assert!(ws.store().head(&home_key).await.unwrap_err().is_not_found());

    proxy.clear();
    let w2 = with_timeout(ws.setup("mid", "s2", me()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w2.report.flushed.delivered, 1);
    assert_eq!(
        std::fs::read_to_string(w2.layout.memory_dir.join("m.md")).unwrap(),
        "late change"
    );
    ws.teardown("mid", "s2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_older_home_never_undoes_a_newer_session() {
    let b = Backend::s3().await;
    let proxy = b.proxy.as_ref().unwrap();
    let ws = b.workspaces();
    // s1's home is queued while the server takes no writes ...
    let w1 = ws.setup("order", "s1", me()).await.unwrap();
    std::fs::write(w1.layout.memory_dir.join("a.md"), "v1").unwrap();
    proxy.push(Rule::on("PUT", "", Fault::Reset, 10_000));
    proxy.push(Rule::on("POST", "", Fault::Reset, 10_000));
    let r1 = ws.teardown("order", "s1").await.unwrap();
    assert!(matches!(r1.home, Delivery::Queued { .. }), "{r1:?}");
    // ... s2 starts from that queued home and changes the same file ...
    let w2 = ws.setup("order", "s2", me()).await.unwrap();
    assert_eq!(w2.report.home, HomeSource::Outbox);
    assert_eq!(
        std::fs::read_to_string(w2.layout.memory_dir.join("a.md")).unwrap(),
        "v1"
    );
    std::fs::write(w2.layout.memory_dir.join("a.md"), "v2").unwrap();
    // ... and the server takes writes again when s2 ends.
    proxy.clear();
    ws.teardown("order", "s2").await.unwrap();
    assert!(ws.outbox().list().unwrap().is_empty());
    let (_d, home) = stored_home(&ws, "order").await;
    assert_eq!(
        home["projects/ws_order/memory/a.md"].as_ref().unwrap().0,
        b"v2",
        "the older queued home must not undo the newer change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_cannot_change_what_ccws_knows_of_its_session() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let w = ws.setup("A", "evil", me()).await.unwrap();
    // Nothing of ccws's bookkeeping is in the agent's tree to edit.
    let mut names: Vec<String> = std::fs::read_dir(&w.layout.temp_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["claude-config", "project"]);
    // The agent writes where workspace B's memory would be, and plants a
    // bookkeeping file naming workspace B.
    let b_memory = w.layout.claude_dir.join("projects/ws_B/memory");
    std::fs::create_dir_all(&b_memory).unwrap();
    std::fs::write(b_memory.join("b.md"), "x").unwrap();
    std::fs::create_dir_all(w.layout.temp_dir.join(".ccws")).unwrap();
    std::fs::write(
        w.layout.temp_dir.join(".ccws/session.json"),
        r#"{"workspace":"B","session":"evil"}"#,
    )
    .unwrap();
    let err = ws.teardown("B", "evil").await.unwrap_err();
    assert!(
        matches!(err, WorkspaceError::WrongWorkspace { .. }),
        "{err}"
    );
    ws.teardown("A", "evil").await.unwrap();
    assert!(
        ws.store()
            .head(&ws.config().keys.home("B"))
            .await
            .unwrap_err()
            .is_not_found(),
        "workspace B is untouched"
    );
    let (_d, home) = stored_home(&ws, "A").await;
    assert!(
        home.contains_key("projects/ws_B/memory/b.md"),
        "it is A's own file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_keeps_the_session() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let w = ws.setup("rec", "s1", me()).await.unwrap();
    std::fs::write(w.layout.memory_dir.join("work.md"), "unsaved work").unwrap();
    let record = b.machine.path().join("state/sessions/s1/session.json");
    assert!(record.is_file());
    std::fs::write(&record, "{not json").unwrap();
    for err in [
        ws.setup("rec", "s1", me()).await.unwrap_err(),
        ws.teardown("rec", "s1").await.unwrap_err(),
    ] {
        assert!(
            matches!(err, WorkspaceError::UnusableSession { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("cannot be read") && msg.contains("kept"),
            "{msg}"
        );
    }
    assert!(
        w.layout.memory_dir.join("work.md").is_file(),
        "the tree is kept"
    );

    // No record at all: setup never finished; the tree is replaced.
    std::fs::remove_file(&record).unwrap();
    let w2 = ws.setup("rec", "s1", me()).await.unwrap();
    assert!(w2.report.recovered.is_none());
    assert!(!w2.layout.memory_dir.join("work.md").exists());
    ws.teardown("rec", "s1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_is_queued_behind_an_older_one_still_stuck() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    // s1's home ends up stuck in the outbox: it is taken out of the store
    // and queued, and its entry is made undeliverable by damaging its base
    // manifest (as if the server kept refusing it).
    let w1 = ws.setup("behind", "s1", me()).await.unwrap();
    std::fs::write(w1.layout.memory_dir.join("a.md"), "v1").unwrap();
    ws.teardown("behind", "s1").await.unwrap();
    let key = ws.config().keys.home("behind");
    let obj = ws.store().get(&key).await.unwrap();
    let packed = b.machine.path().join("h1.tar.gz");
    {
        use tokio::io::AsyncReadExt;
        let mut body = obj.body;
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes).await.unwrap();
        std::fs::write(&packed, bytes).unwrap();
    }
    ws.store().delete(&key).await.unwrap();
    let entry = ccws::workspace::outbox::Entry {
        kind: ccws::workspace::outbox::Kind::Home,
        workspace: "behind".into(),
        session: "s1".into(),
        key: key.clone(),
        base_etag: None,
        created: 0,
        last_error: "down".into(),
    };
    let q = ws
        .outbox()
        .add(
            entry,
            Some((&Default::default(), &Default::default())),
            |dest| std::fs::copy(&packed, dest).map(|_| ()),
        )
        .unwrap();
    std::fs::write(q.dir.join("base.json"), "{broken").unwrap();

    // s2 starts from the queued home and changes the same file.
    let w2 = ws.setup("behind", "s2", me()).await.unwrap();
    assert_eq!(w2.report.home, HomeSource::Outbox);
    std::fs::write(w2.layout.memory_dir.join("a.md"), "v2").unwrap();
    std::fs::create_dir_all(w2.layout.transcript.parent().unwrap()).unwrap();
    std::fs::write(&w2.layout.transcript, "t\n").unwrap();
    let r = ws.teardown("behind", "s2").await.unwrap();
    match &r.home {
        Delivery::Queued { reason, .. } => {
            assert!(
                reason.contains("still queued; queued behind it"),
                "{reason}"
            )
        }
        other => panic!("s2's home must wait behind s1's: {other:?}"),
    }
    assert!(ws.store().head(&key).await.unwrap_err().is_not_found());
    assert_eq!(ws.outbox().list().unwrap().len(), 2);

    // Once s1's entry can be delivered, both land in order: v2 wins.
    std::fs::write(q.dir.join("base.json"), "{}").unwrap();
    let f = ws.flush(None).await.unwrap();
    assert_eq!((f.delivered, f.remaining), (2, 0), "{f:?}");
    let (_d, home) = stored_home(&ws, "behind").await;
    assert_eq!(
        home["projects/ws_behind/memory/a.md"].as_ref().unwrap().0,
        b"v2"
    );
    assert!(
        home.keys()
            .all(|k| !k.starts_with(&w2.layout.session_subtree)),
        "the queued home left the session's own subtree out: {home:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_is_queued_behind_an_older_copy_still_stuck() {
    let b = Backend::s3().await;
    let proxy = b.proxy.as_ref().unwrap();
    let ws = b.workspaces();
    let key = ws.config().keys.transcript("tq", "s1");
    // Only the older, 3-byte copy of the transcript fails to upload.
    proxy.push(
        Rule::on("PUT", "sessions/s1.jsonl", Fault::Reset, 10_000).with_head("content-length: 3\r"),
    );
    let w = ws.setup("tq", "s1", me()).await.unwrap();
    std::fs::create_dir_all(w.layout.transcript.parent().unwrap()).unwrap();
    std::fs::write(&w.layout.transcript, "t1\n").unwrap();
    let r = with_timeout(ws.teardown("tq", "s1"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r.transcript, Delivery::Queued { .. }), "{r:?}");

    let w = with_timeout(ws.setup("tq", "s1", me()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.report.transcript, TranscriptSource::Outbox);
    std::fs::write(&w.layout.transcript, "t1\nt2\n").unwrap();
    let r = with_timeout(ws.teardown("tq", "s1"))
        .await
        .unwrap()
        .unwrap();
    match &r.transcript {
        Delivery::Queued { reason, .. } => {
            assert!(reason.contains("queued behind it"), "{reason}")
        }
        other => panic!("the newer transcript must wait: {other:?}"),
    }
    // A flush that cannot deliver the older copy holds back the newer one.
    let f = with_timeout(ws.flush(None)).await.unwrap().unwrap();
    assert_eq!((f.delivered, f.remaining), (0, 2), "{f:?}");
    assert_eq!(f.errors.len(), 1, "{f:?}");
    assert!(ws.store().head(&key).await.unwrap_err().is_not_found());

    proxy.clear();
    let f = with_timeout(ws.flush(None)).await.unwrap().unwrap();
    assert_eq!((f.delivered, f.remaining), (2, 0), "{f:?}");
    let t = ws.store().get(&key).await.unwrap();
    assert_eq!(t.meta.size, 6, "the newer transcript is the one kept");
}

/// The agent writes the session tree: a transcript that is a symlink, or
/// under one, is not uploaded (nor queued), so ccws never reads a file the
/// agent points it at and hands it back on the next turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_that_is_not_a_plain_file_is_refused_not_uploaded() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let outside = b.machine.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("credentials");
    std::fs::write(&secret, "aws_secret_access_key = SECRET").unwrap();
    for (session, planted, why) in [
        ("link", "symlink", "is a symlink"),
        ("dirlink", "symlinked parent", "is a symlink"),
        // A FIFO would block a plain open (and a device read forever).
        ("fifo", "fifo", "is not a regular file"),
    ] {
        let w = ws.setup("team", session, me()).await.unwrap();
        let transcript = &w.layout.transcript;
        let parent = transcript.parent().unwrap();
        match planted {
            "symlinked parent" => {
                std::fs::copy(&secret, outside.join(transcript.file_name().unwrap())).unwrap();
                let _ = std::fs::remove_dir_all(parent);
                std::os::unix::fs::symlink(&outside, parent).unwrap();
            }
            "symlink" => {
                std::fs::create_dir_all(parent).unwrap();
                std::os::unix::fs::symlink(&secret, transcript).unwrap();
            }
            _ => {
                std::fs::create_dir_all(parent).unwrap();
                let made = std::process::Command::new("mkfifo")
                    .arg(transcript)
                    .status();
                assert!(made.unwrap().success());
            }
        }
        let report = ws.teardown("team", session).await.unwrap();
        match &report.transcript {
            Delivery::Refused { reason } => assert!(reason.contains(why), "{session}: {reason}"),
            other => panic!("{session}: expected a refusal, got {other:?}"),
        }
        assert!(report.delivered(), "{session}: nothing is queued for it");
        // The next turn of the session gets no transcript back.
        let again = ws.setup("team", session, me()).await.unwrap();
        assert!(!again.layout.transcript.exists(), "{session}");
        ws.teardown("team", session).await.unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "aws_secret_access_key = SECRET"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_cannot_be_saved_is_kept_aside_not_in_the_way() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let mut owner = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let w = ws
        .setup("aside", "s1", Owner::of(owner.id()))
        .await
        .unwrap();
    std::fs::write(w.layout.memory_dir.join("work.md"), "unsaved").unwrap();
    owner.kill().unwrap();
    owner.wait().unwrap();
    // Staging the abandoned turn fails (a directory where its packed home goes).
    let sessions = b.machine.path().join("state/sessions");
    std::fs::create_dir(sessions.join("s1/home.tar.gz")).unwrap();
    let w2 = ws.setup("aside", "s1", me()).await.unwrap();
    assert!(w2.report.recovered.is_none());
    let kept: Vec<_> = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kept-s1-"))
        .collect();
    assert_eq!(kept.len(), 1, "the record is kept aside");
    let broker = b.temp_base().join("cc-broker");
    let tree = std::fs::read_dir(&broker)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".kept-sess_s1-")
        })
        .expect("the tree is kept aside");
    assert_eq!(
        std::fs::read_to_string(tree.join("claude-config/projects/ws_aside/memory/work.md"))
            .unwrap(),
        "unsaved"
    );
    ws.teardown("aside", "s1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_cannot_publish_a_home_that_later_setups_cannot_use() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let w = ws.setup("brick", "s1", me()).await.unwrap();
    std::fs::write(w.layout.memory_dir.join("keep.md"), "kept").unwrap();
    ws.teardown("brick", "s1").await.unwrap();
    // The agent replaces the memory directory with a file, and adds a file.
    let w = ws.setup("brick", "s2", me()).await.unwrap();
    std::fs::remove_dir_all(&w.layout.memory_dir).unwrap();
    std::fs::write(&w.layout.memory_dir, "x").unwrap();
    std::fs::write(w.layout.claude_dir.join("settings.json"), "{}").unwrap();
    ws.teardown("brick", "s2").await.unwrap();
    // The next setup reads the published home itself, not a fallback.
    let w = ws.setup("brick", "s3", me()).await.unwrap();
    assert!(
        matches!(w.report.home, HomeSource::Store { .. }),
        "{:?}",
        w.report.home
    );
    assert!(w.layout.memory_dir.is_dir());
    assert!(w.layout.claude_dir.join("settings.json").is_file());
    // (The memory file was deleted with its directory: the agent's choice.)
    assert!(!w.layout.memory_dir.join("keep.md").exists());
    ws.teardown("brick", "s3").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_never_reads_through_a_symlink_the_agent_planted() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let secret = b.machine.path().join("broker-secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let w0 = ws.setup("leak", "s0", me()).await.unwrap();
    std::fs::write(w0.layout.memory_dir.join("a.md"), "a").unwrap();
    ws.teardown("leak", "s0").await.unwrap();
    // Two sessions start from the same home; s2 loses the race and merges.
    let w1 = ws.setup("leak", "s1", me()).await.unwrap();
    let w2 = ws.setup("leak", "s2", me()).await.unwrap();
    std::fs::write(w1.layout.memory_dir.join("b.md"), "b").unwrap();
    std::fs::write(w2.layout.memory_dir.join("c.md"), "c").unwrap();
    std::os::unix::fs::symlink(&secret, w2.layout.memory_dir.join("leak.md")).unwrap();
    ws.teardown("leak", "s1").await.unwrap();
    let r = ws.teardown("leak", "s2").await.unwrap();
    assert!(matches!(r.home, Delivery::Merged { .. }), "{r:?}");
    let (_d, home) = stored_home(&ws, "leak").await;
    assert!(home.contains_key("projects/ws_leak/memory/b.md"));
    assert!(home.contains_key("projects/ws_leak/memory/c.md"));
    assert!(!home.contains_key("projects/ws_leak/memory/leak.md"));
    assert!(home
        .values()
        .all(|v| v.as_ref().is_none_or(|(data, _)| data != b"s3cr3t")));
}

/// What Claude Code writes for session `id` outside its transcript.
fn session_files(claude_dir: &Path, project: &str, id: &str) -> Vec<String> {
    let rels = vec![
        format!("todos/{id}-agent-{id}.json"),
        format!("file-history/{id}/3f2a@v1"),
        format!("debug/{id}.txt"),
        format!("session-env/{id}/hook-0.sh"),
        format!("projects/{project}/{id}/subagents/agent-a1.jsonl"),
        format!("projects/{project}/{id}/tool-results/toolu_1.txt"),
    ];
    for rel in &rels {
        tree::write(claude_dir, rel, format!("{rel} of {id}").as_bytes());
    }
    rels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_own_files_travel_with_it_not_with_the_home() {
    for (name, b) in Backend::both().await {
        with_timeout(async {
            let ws = b.workspaces();
            let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
            let w = ws.setup("own", id, me()).await.unwrap();
            let rels = session_files(&w.layout.claude_dir, w.layout.project_name(), id);
            std::fs::write(&w.layout.transcript, "{}\n").unwrap();
            tree::write(&w.layout.claude_dir, "settings.json", b"{}");
            let r = ws.teardown("own", id).await.unwrap();
            assert!(
                matches!(r.state, Delivery::Uploaded { .. }),
                "{name}: {r:?}"
            );

            let (_d, home) = stored_home(&ws, "own").await;
            assert!(home.contains_key("settings.json"), "{name}");
            for rel in &rels {
                assert!(
                    !home.contains_key(rel),
                    "{name}: {rel} is in the shared home"
                );
            }
            // Another session does not see them; this one's next turn does.
            let other = ws.setup("own", "other", me()).await.unwrap();
            for rel in &rels {
                assert!(!other.layout.claude_dir.join(rel).exists(), "{name}: {rel}");
            }
            ws.teardown("own", "other").await.unwrap();
            let w2 = ws.setup("own", id, me()).await.unwrap();
            for rel in &rels {
                assert_eq!(
                    std::fs::read_to_string(w2.layout.claude_dir.join(rel)).unwrap(),
                    format!("{rel} of {id}"),
                    "{name}"
                );
            }
            // Nothing changed: nothing is sent.
            let r = ws.teardown("own", id).await.unwrap();
            assert_eq!(r.state, Delivery::Unchanged, "{name}");
            assert_eq!(r.home, Delivery::Unchanged, "{name}");
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: timed out"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_that_carries_sessions_files_is_migrated() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let keys = ws.config().keys.clone();
    let x = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let y = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";
    // A home written the old way: other sessions' files in it, and one
    // session's whole project directory (transcript, per-project memory).
    let old = b.machine.path().join("old-home");
    let px = format!("-tmp-cc-broker-sess-{x}-project");
    let mut rels = session_files(&old, &px, x);
    rels.extend(session_files(&old, "-home-me-src-app", y));
    tree::write(&old, &format!("projects/{px}/{x}.jsonl"), b"{\"x\":1}\n");
    tree::write(&old, &format!("projects/{px}/memory/fact.md"), b"a fact");
    tree::write(&old, "projects/ws_mig/memory/MEMORY.md", b"index");
    tree::write(&old, ".claude.json", b"{}");
    let packed = b.machine.path().join("old.tar.gz");
    archiver()
        .pack_file(&old, &packed, &Default::default(), None)
        .await
        .unwrap();
    ws.store()
        .put_file(&packed, &keys.home("mig"), PutCondition::None)
        .await
        .unwrap();

    let w = ws.setup("mig", "s1", me()).await.unwrap();
    // The old per-project memory joined the workspace's.
    assert_eq!(
        std::fs::read(w.layout.memory_dir.join("fact.md")).unwrap(),
        b"a fact"
    );
    assert_eq!(
        std::fs::read(w.layout.memory_dir.join("MEMORY.md")).unwrap(),
        b"index"
    );
    let r = ws.teardown("mig", "s1").await.unwrap();
    assert!(matches!(r.home, Delivery::Uploaded { .. }), "{r:?}");
    let (_d, home) = stored_home(&ws, "mig").await;
    let leftovers: Vec<_> = home
        .keys()
        .filter(|k| {
            k.contains(x)
                || (k.contains(y) && !k.contains("-home-me-src-app"))
                || k.contains("-project")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(home.contains_key("projects/ws_mig/memory/fact.md"));
    // x's transcript was stored, as the store had none.
    let t = ws.store().get(&keys.transcript("mig", x)).await.unwrap();
    assert_eq!(t.meta.size, 8);
    // Each session finds its own files at its next turn.
    let wx = ws.setup("mig", x, me()).await.unwrap();
    for rel in [
        format!("todos/{x}-agent-{x}.json"),
        format!("file-history/{x}/3f2a@v1"),
    ] {
        assert!(wx.layout.claude_dir.join(&rel).is_file(), "{rel}");
    }
    let subagent = wx
        .layout
        .claude_dir
        .join(&wx.layout.session_subtree)
        .join(format!("{x}/subagents/agent-a1.jsonl"));
    assert!(
        subagent.is_file(),
        "moved into this turn's project directory"
    );
    assert_eq!(
        std::fs::read(&wx.layout.transcript).unwrap(),
        b"{\"x\":1}\n"
    );
    ws.teardown("mig", x).await.unwrap();
    // A project directory that is no ccws session's stays in the home;
    // y's todos etc. moved.
    let (_d, home) = stored_home(&ws, "mig").await;
    assert!(!home.contains_key(&format!("todos/{y}-agent-{y}.json")));
    let keys: Vec<_> = home.keys().collect();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("projects/-home-me-src-app/")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_is_pointed_at_the_workspaces_memory() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let a = ws.setup("mem", "a", me()).await.unwrap();
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&a.layout.local_settings).unwrap()).unwrap();
    assert_eq!(
        settings["autoMemoryDirectory"].as_str().map(Path::new),
        Some(a.layout.memory_dir.as_path())
    );
    // The memory directory is where Claude Code keeps the project's memory
    // by default: projects/<project>/memory.
    assert_eq!(
        a.layout.memory_dir,
        a.layout
            .claude_dir
            .join(&a.layout.session_subtree)
            .join("memory")
    );
    std::fs::write(a.layout.memory_dir.join("MEMORY.md"), "- learned in a\n").unwrap();
    ws.teardown("mem", "a").await.unwrap();
    let bb = ws.setup("mem", "b", me()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(bb.layout.memory_dir.join("MEMORY.md")).unwrap(),
        "- learned in a\n",
        "a new session sees the workspace's memory"
    );
    // Someone writes at the home's own place for the memory during the turn:
    // both survive.
    let shared = bb.layout.claude_dir.join(&bb.layout.shared_memory);
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("MEMORY.md"), "written at the old place").unwrap();
    std::fs::write(bb.layout.memory_dir.join("MEMORY.md"), "- learned in b\n").unwrap();
    ws.teardown("mem", "b").await.unwrap();
    let (_d, home) = stored_home(&ws, "mem").await;
    let names: Vec<_> = home
        .keys()
        .filter(|k| k.starts_with("projects/ws_mem/memory/"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_sends_only_what_it_appended_to_the_transcript() {
    for (name, b) in Backend::both().await {
        with_timeout(async {
            let ws = b.workspaces();
            let keys = ws.config().keys.clone();
            let append = |path: &Path, line: &str| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                writeln!(f, "{line}").unwrap();
            };
            let size = |key: String| {
                let ws = ws.clone();
                async move { ws.store().head(&key).await.map(|m| m.size).ok() }
            };
            // Turn 1: the whole transcript.
            let w = ws.setup("tail", "s", me()).await.unwrap();
            append(&w.layout.transcript, &"x".repeat(5000));
            let r = ws.teardown("tail", "s").await.unwrap();
            assert!(
                matches!(r.transcript, Delivery::Uploaded { .. }),
                "{name}: {r:?}"
            );
            // Turns 2-4: only their tails, as parts; the whole object stays.
            for turn in 2..=4 {
                let w = ws.setup("tail", "s", me()).await.unwrap();
                append(&w.layout.transcript, &format!("{{\"turn\":{turn}}}"));
                let r = ws.teardown("tail", "s").await.unwrap();
                assert!(
                    matches!(r.transcript, Delivery::Appended { .. }),
                    "{name}: {r:?}"
                );
            }
            assert_eq!(
                size(keys.transcript("tail", "s")).await,
                Some(5001),
                "{name}"
            );
            assert_eq!(
                size(keys.transcript_part("tail", "s", 5001)).await,
                Some(11),
                "{name}: turn 2's tail"
            );
            // A turn that appends nothing sends nothing.
            let w = ws.setup("tail", "s", me()).await.unwrap();
            let whole = std::fs::read_to_string(&w.layout.transcript).unwrap();
            assert_eq!(whole.lines().count(), 4, "{name}: {whole}");
            let r = ws.teardown("tail", "s").await.unwrap();
            assert_eq!(r.transcript, Delivery::Unchanged, "{name}");
            // A rewrite (not an append) sends the whole again.
            let w = ws.setup("tail", "s", me()).await.unwrap();
            std::fs::write(&w.layout.transcript, "{\"compacted\":true}\n").unwrap();
            let r = ws.teardown("tail", "s").await.unwrap();
            assert!(
                matches!(r.transcript, Delivery::Uploaded { .. }),
                "{name}: {r:?}"
            );
            let w = ws.setup("tail", "s", me()).await.unwrap();
            assert_eq!(
                std::fs::read_to_string(&w.layout.transcript).unwrap(),
                "{\"compacted\":true}\n",
                "{name}: the old parts are not appended to the new whole"
            );
            ws.teardown("tail", "s").await.unwrap();
            // Someone else replaces the whole object (an older ccws, the
            // seed): parts made for the old one are ignored.
            let w = ws.setup("tail", "s", me()).await.unwrap();
            append(&w.layout.transcript, "{\"turn\":5}");
            ws.teardown("tail", "s").await.unwrap();
            ws.store()
                .put_bytes(
                    &keys.transcript("tail", "s"),
                    b"{\"seed\":1}\n".to_vec(),
                    PutCondition::None,
                )
                .await
                .unwrap();
            let w = ws.setup("tail", "s", me()).await.unwrap();
            assert_eq!(
                std::fs::read_to_string(&w.layout.transcript).unwrap(),
                "{\"seed\":1}\n",
                "{name}"
            );
            ws.teardown("tail", "s").await.unwrap();
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: timed out"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_parts_are_compacted_now_and_then() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let keys = ws.config().keys.clone();
    let w = ws.setup("compact", "s", me()).await.unwrap();
    std::fs::write(&w.layout.transcript, "{\"turn\":0}\n").unwrap();
    ws.teardown("compact", "s").await.unwrap();
    let mut wholes = 0;
    for turn in 1..=40 {
        let w = ws.setup("compact", "s", me()).await.unwrap();
        let mut text = std::fs::read_to_string(&w.layout.transcript).unwrap();
        assert_eq!(text.lines().count(), turn, "every earlier line is there");
        text.push_str(&format!("{{\"turn\":{turn}}}\n"));
        std::fs::write(&w.layout.transcript, text).unwrap();
        let r = ws.teardown("compact", "s").await.unwrap();
        match r.transcript {
            Delivery::Uploaded { .. } => wholes += 1,
            Delivery::Appended { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(wholes, 1, "one compaction in 40 turns (after 32 parts)");
    // The seed-compatible object is a whole transcript as of the compaction.
    let obj = ws
        .store()
        .get(&keys.transcript("compact", "s"))
        .await
        .unwrap();
    assert_eq!(
        obj.meta.size as usize,
        (0..=33)
            .map(|t| format!("{{\"turn\":{t}}}\n").len())
            .sum::<usize>()
    );
}

/// What Claude Code does to the shared files at a session's start and
/// prompt: `.claude.json` rewritten whole with its project's entry, one
/// line appended to `history.jsonl`.
fn claude_start(claude_dir: &Path, cwd: &Path, session: &str) {
    let path = claude_dir.join(".claude.json");
    let mut v: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let n = v["numStartups"].as_u64().unwrap_or(0);
    v["numStartups"] = (n + 1).into();
    v["oauthAccount"] = serde_json::json!({"accountUuid": "acct-1"});
    if !v["projects"].is_object() {
        v["projects"] = serde_json::json!({});
    }
    v["projects"][cwd.to_string_lossy().as_ref()] = serde_json::json!({"lastSessionId": session});
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    use std::io::Write;
    let mut h = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(claude_dir.join("history.jsonl"))
        .unwrap();
    writeln!(
        h,
        "{}",
        serde_json::json!({"display": "hi", "sessionId": session})
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_set_up_together_lose_no_project_entry_and_no_prompt() {
    let backends = Backend::racing().await;
    for (name, b) in backends {
        for n in [2, 4] {
            with_timeout(async {
                let ws = b.workspaces();
                let wsid = format!("shared{n}");
                let w0 = ws.setup(&wsid, "s0", me()).await.unwrap();
                claude_start(&w0.layout.claude_dir, &w0.layout.project_dir, "s0");
                ws.teardown(&wsid, "s0").await.unwrap();
                let sessions: Vec<String> = (1..=n).map(|i| format!("s{i}")).collect();
                let mut cwds = Vec::new();
                for s in &sessions {
                    let w = ws.setup(&wsid, s, me()).await.unwrap();
                    claude_start(&w.layout.claude_dir, &w.layout.project_dir, s);
                    cwds.push(w.layout.project_dir.clone());
                }
                // As in concurrent_teardowns_lose_no_update: truly at once.
                let results =
                    futures::future::join_all(sessions.iter().map(|s| ws.teardown(&wsid, s))).await;
                let merged = results
                    .into_iter()
                    .filter(|r| matches!(r.as_ref().unwrap().home, Delivery::Merged { .. }))
                    .count();
                assert_eq!(merged, n - 1, "{name}/{n}");
                let (_d, home) = stored_home(&ws, &wsid).await;
                let claude: serde_json::Value =
                    serde_json::from_slice(&home[".claude.json"].as_ref().unwrap().0).unwrap();
                // Each session's projects entry is its own: not in the
                // shared file (which would grow by one per session)...
                for cwd in &cwds {
                    assert!(
                        claude["projects"]
                            .get(cwd.to_string_lossy().as_ref())
                            .is_none(),
                        "{name}/{n}: {claude}"
                    );
                }
                assert_eq!(claude["oauthAccount"]["accountUuid"], "acct-1");
                let history = String::from_utf8(home["history.jsonl"].clone().unwrap().0).unwrap();
                for s in sessions.iter().chain(std::iter::once(&"s0".to_string())) {
                    let needle = format!("\"sessionId\":\"{s}\"");
                    assert_eq!(
                        history.matches(&needle).count(),
                        1,
                        "{name}/{n}: {s} in {history}"
                    );
                }
                // ...but back in it when the session runs again.
                for (s, cwd) in sessions.iter().zip(&cwds) {
                    let w = ws.setup(&wsid, s, me()).await.unwrap();
                    let path = w.layout.claude_dir.join(".claude.json");
                    let mine: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
                    assert_eq!(
                        mine["projects"][cwd.to_string_lossy().as_ref()]["lastSessionId"],
                        s.as_str(),
                        "{name}/{n}: {s}'s projects entry: {mine}"
                    );
                    assert_eq!(mine["numStartups"], claude["numStartups"]);
                    ws.teardown(&wsid, s).await.unwrap();
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{name}/{n}: timed out"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temp_base_too_long_for_claudes_project_names_is_refused() {
    let b = Backend::local().await;
    let long = b.machine.path().join("a".repeat(150)).join("b".repeat(30));
    let mut cfg = WorkspaceConfig::new(b.machine.path().join("state"));
    cfg.temp_base = Some(long.clone());
    let ws = Workspaces::new(b.store.clone(), archiver(), cfg);
    let err = ws
        .setup("w", "0f8fad5b-d9cb-469f-a165-70867728950e", me())
        .await
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::TempBase { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("over Claude Code's 200") && msg.contains("at most"),
        "{msg}"
    );
    // A base just short enough works: the name is then Claude Code's own.
    let n: usize = msg
        .split("at most ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let root = b.machine.path().to_string_lossy().len();
    let fits = b.machine.path().join("c".repeat(n - root - 1));
    let mut cfg = WorkspaceConfig::new(b.machine.path().join("state"));
    cfg.temp_base = Some(fits);
    let ws = Workspaces::new(b.store.clone(), archiver(), cfg);
    let w = ws
        .setup("w", "0f8fad5b-d9cb-469f-a165-70867728950e", me())
        .await
        .unwrap();
    assert_eq!(w.layout.project_name().len(), 200);
    ws.teardown("w", "0f8fad5b-d9cb-469f-a165-70867728950e")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_homes_accumulating_directories_are_pruned() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let w = ws.setup("prune", "s1", me()).await.unwrap();
    let day = Duration::from_secs(24 * 3600);
    for (name, age) in [("old.sh", 40), ("recent.sh", 2)] {
        let path = w.layout.claude_dir.join("shell-snapshots").join(name);
        tree::write(
            &w.layout.claude_dir,
            &format!("shell-snapshots/{name}"),
            b"x",
        );
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() - day * age)
            .unwrap();
    }
    tree::write(&w.layout.claude_dir, "paste-cache/p1.txt", b"pasted");
    ws.teardown("prune", "s1").await.unwrap();
    let (_d, home) = stored_home(&ws, "prune").await;
    assert!(
        !home.contains_key("shell-snapshots/old.sh"),
        "older than 30 days"
    );
    assert!(home.contains_key("shell-snapshots/recent.sh"));
    assert!(home.contains_key("paste-cache/p1.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_turn_publishes_the_next_setup_can_read() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let w = ws.setup("brick2", "s1", me()).await.unwrap();
    let c = &w.layout.claude_dir;
    // A sparse file one byte over the 4 GiB file limit.
    let big = std::fs::File::create(c.join("huge.bin")).unwrap();
    big.set_len((4 << 30) + 1).unwrap();
    // A path over the limit, and 2,040-level nesting.
    let long = c.join("a".repeat(250)).join("b".repeat(250));
    let mut deep = c.join("deep");
    for _ in 0..14 {
        deep = deep.join("x".repeat(240));
    }
    std::fs::create_dir_all(&long).unwrap();
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f"), "deep").unwrap();
    // 2,040 levels: longer than PATH_MAX as one path, so made one level at
    // a time relative to the last.
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(2040):
    os.mkdir("n", dir_fd=fd)
    nfd = os.open("n", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(c)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(w.layout.memory_dir.join("keep.md"), "kept").unwrap();
    let r = ws.teardown("brick2", "s1").await.unwrap();
    assert!(matches!(r.home, Delivery::Uploaded { .. }), "{r:?}");
    assert!(r.removed, "even the deep tree is removed");
    for s in ["s2", "s3"] {
        let w = ws.setup("brick2", s, me()).await.unwrap();
        assert!(
            matches!(w.report.home, HomeSource::Store { .. }),
            "{:?}",
            w.report.home
        );
        assert_eq!(
            std::fs::read_to_string(w.layout.memory_dir.join("keep.md")).unwrap(),
            "kept"
        );
        assert!(!w.layout.claude_dir.join("huge.bin").exists());
        ws.teardown("brick2", s).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_changed_files_are_sent_as_a_delta() {
    for (name, b) in Backend::both().await {
        with_timeout(async {
            let ws = b.workspaces();
            let keys = ws.config().keys.clone();
            let id = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
            let debug = format!("debug/{id}.txt");
            let todo = format!("todos/{id}-agent-{id}.json");
            let old = format!("file-history/{id}/old@v1");
            // Turn 1: the whole set.
            let w = ws.setup("delta", id, me()).await.unwrap();
            tree::write(&w.layout.claude_dir, &debug, &vec![b'd'; 300_000]);
            tree::write(&w.layout.claude_dir, &todo, b"[1]");
            tree::write(&w.layout.claude_dir, &old, b"old");
            let r = ws.teardown("delta", id).await.unwrap();
            assert!(
                matches!(r.state, Delivery::Uploaded { .. }),
                "{name}: {r:?}"
            );
            let whole = ws
                .store()
                .head(&keys.session_state("delta", id))
                .await
                .unwrap();
            // Turn 2: the log grows, the todo is rewritten, a file goes.
            let w = ws.setup("delta", id, me()).await.unwrap();
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(w.layout.claude_dir.join(&debug))
                    .unwrap();
                f.write_all(b"one more line\n").unwrap();
            }
            tree::write(&w.layout.claude_dir, &todo, b"[2]");
            std::fs::remove_file(w.layout.claude_dir.join(&old)).unwrap();
            let r = ws.teardown("delta", id).await.unwrap();
            assert!(
                matches!(r.state, Delivery::Appended { .. }),
                "{name}: {r:?}"
            );
            let delta = ws
                .store()
                .head(&keys.session_state_delta("delta", id, 1))
                .await
                .unwrap();
            assert!(
                delta.size < 1000,
                "{name}: only the tail and the todo: {}",
                delta.size
            );
            assert_eq!(
                ws.store()
                    .head(&keys.session_state("delta", id))
                    .await
                    .unwrap()
                    .etag,
                whole.etag,
                "{name}: the whole set is untouched"
            );
            // Turn 3 sees exactly the files as they are now.
            let w = ws.setup("delta", id, me()).await.unwrap();
            let log = std::fs::read(w.layout.claude_dir.join(&debug)).unwrap();
            assert_eq!(log.len(), 300_000 + 14, "{name}");
            assert!(log.ends_with(b"one more line\n"), "{name}");
            assert_eq!(
                std::fs::read(w.layout.claude_dir.join(&todo)).unwrap(),
                b"[2]"
            );
            assert!(!w.layout.claude_dir.join(&old).exists(), "{name}");
            let r = ws.teardown("delta", id).await.unwrap();
            assert_eq!(r.state, Delivery::Unchanged, "{name}");
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: timed out"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_file_deltas_are_compacted_now_and_then() {
    let b = Backend::local().await;
    let ws = b.workspaces();
    let id = "2c5f39cb-3fb2-42e3-994f-1127e4ddb538";
    let debug = format!("debug/{id}.txt");
    let w = ws.setup("compact2", id, me()).await.unwrap();
    tree::write(&w.layout.claude_dir, &debug, b"0\n");
    ws.teardown("compact2", id).await.unwrap();
    let mut wholes = 0;
    for turn in 1..=20 {
        let w = ws.setup("compact2", id, me()).await.unwrap();
        let path = w.layout.claude_dir.join(&debug);
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), turn, "every earlier line is there");
        text.push_str(&format!("{turn}\n"));
        std::fs::write(&path, text).unwrap();
        match ws.teardown("compact2", id).await.unwrap().state {
            Delivery::Uploaded { .. } => wholes += 1,
            Delivery::Appended { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(wholes, 1, "one compaction in 20 turns (after 16 deltas)");
}
