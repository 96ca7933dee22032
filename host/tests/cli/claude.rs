//! Turns of a fake Claude Code (`tests/fake_claude.py`, which writes what
//! Claude Code writes, in its layout) through `ccws run` and the split
//! setup / teardown, on the local store and s3s-fs.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::Machine;

fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fake_claude.py")
}

/// The broker's command for one turn, as the README gives it: a new
/// session starts with --session-id, a known one resumes.
fn broker_turn(extra: &str) -> String {
    format!(
        "exec python3 {} -p \"$PROMPT\" {extra} \
         $([ \"$CCWS_SESSION_NEW\" = 1 ] && echo --session-id || echo --resume) \"$CCWS_SESSION_ID\"",
        fake().display()
    )
}

fn turn(m: &Machine, ws: &str, session: &str, env: &[(&str, &str)], extra: &str) -> Output {
    let mut c = m.cmd();
    c.args([
        "run",
        "-w",
        ws,
        "-s",
        session,
        "--",
        "sh",
        "-c",
        &broker_turn(extra),
    ])
    .env("PROMPT", format!("prompt for {session}"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{session}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const A: &str = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
const B: &str = "8e555951-0ed1-42e2-c356-60aedf85abe3";

#[test]
fn resume_sees_every_file_its_earlier_turns_wrote() {
    let m = Machine::new();
    // Turn 1 (new), turn 2 (resume): the fake refuses a resume without the
    // transcript and a new session whose transcript exists, so the broker
    // command only works if ccws restores the session and says it is known.
    turn(&m, "w", A, &[], "");
    turn(&m, "w", A, &[], "");
    let list = "cd \"$CLAUDE_CONFIG_DIR\" && find . -type f | sort";
    let out = m.run(&["run", "-w", "w", "-s", A, "--", "sh", "-c", list]);
    let seen = String::from_utf8_lossy(&out.stdout);
    for want in [
        format!("{A}.jsonl"),
        format!("{A}/subagents/agent-1.jsonl"),
        format!("{A}/subagents/agent-2.meta.json"),
        format!("{A}/tool-results/toolu_1.txt"),
        format!("todos/{A}-agent-{A}.json"),
        format!("file-history/{A}/00000001@v1"),
        format!("file-history/{A}/00000002@v1"),
        format!("debug/{A}.txt"),
        format!("session-env/{A}/hook-0.sh"),
        ".claude.json".into(),
        "history.jsonl".into(),
    ] {
        assert!(seen.contains(&want), "{want} missing from:\n{seen}");
    }
    // The transcript holds both turns.
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        A,
        "--",
        "sh",
        "-c",
        "cat \"$CCWS_TRANSCRIPT\"",
    ]);
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        transcript.matches("\"type\": \"user\"").count(),
        2,
        "{transcript}"
    );
}

#[test]
fn a_new_session_sees_the_workspaces_memory() {
    let m = Machine::new();
    turn(
        &m,
        "w",
        A,
        &[("FAKE_CLAUDE_REMEMBER", "the build uses make")],
        "",
    );
    let out = turn(&m, "w", B, &[], "--print-memory");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("- the build uses make"), "{stdout}");
    // Also when Claude was told another directory in the user settings:
    // ccws's local settings win, and the memory is still the workspace's.
    let set = "echo '{\"autoMemoryDirectory\": \"/nonexistent/elsewhere\"}' > \"$CLAUDE_CONFIG_DIR/settings.json\"";
    assert_eq!(
        m.run(&["run", "-w", "w", "-s", "x", "--", "sh", "-c", set])
            .status
            .code(),
        Some(0)
    );
    turn(
        &m,
        "w",
        A,
        &[("FAKE_CLAUDE_REMEMBER", "tests run with cargo")],
        "",
    );
    let out = turn(
        &m,
        "w",
        "9f666a62-1fe2-43f3-d467-71bfe096bcf4",
        &[],
        "--print-memory",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("- tests run with cargo") && stdout.contains("- the build uses make"),
        "{stdout}"
    );
}

/// Sessions set up together with the split commands, each running the fake,
/// then torn down one after another.
fn together(m: &Machine, store: &[(String, String)], ws: &str, n: usize) {
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{i:08x}-aaaa-4bbb-8ccc-000000000000"))
        .collect();
    let mut envs = Vec::new();
    for id in &ids {
        let mut c = m.cmd();
        c.envs(store.iter().cloned()).args([
            "setup",
            "-w",
            ws,
            "-s",
            id,
            "--owner-pid",
            &std::process::id().to_string(),
        ]);
        let out = c.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        envs.push(env);
    }
    for (id, env) in ids.iter().zip(&envs) {
        let dir = &env.iter().find(|(k, _)| k == "CCWS_PROJECT_DIR").unwrap().1;
        let out = std::process::Command::new("python3")
            .arg(fake())
            .args(["-p", &format!("hello from {id}"), "--session-id", id])
            .current_dir(dir)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in &ids {
        let mut c = m.cmd();
        c.envs(store.iter().cloned())
            .args(["teardown", "-w", ws, "-s", id]);
        assert_eq!(c.output().unwrap().status.code(), Some(0));
    }
    // One more turn reads the home every teardown merged into.
    let mut c = m.cmd();
    c.envs(store.iter().cloned()).args([
        "run", "-w", ws, "-s", "reader", "--", "sh", "-c",
        "cat \"$CLAUDE_CONFIG_DIR/.claude.json\"; echo '=====' ; cat \"$CLAUDE_CONFIG_DIR/history.jsonl\"",
    ]);
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (config, history) = text.split_once("=====").unwrap();
    let config: serde_json::Value = serde_json::from_str(config).unwrap();
    // Each session's projects entry travels with the session, not in the
    // shared file (which would grow by one entry per session)...
    let projects = config["projects"].as_object().map_or(0, |p| p.len());
    assert_eq!(projects, 0, "{config}");
    for id in &ids {
        assert_eq!(
            history.matches(&format!("hello from {id}")).count(),
            1,
            "{id}: {history}"
        );
    }
    // ...and is back in it when the session runs again.
    for (id, env) in ids.iter().zip(&envs) {
        let dir = &env.iter().find(|(k, _)| k == "CCWS_PROJECT_DIR").unwrap().1;
        let mut c = m.cmd();
        c.envs(store.iter().cloned()).args([
            "run",
            "-w",
            ws,
            "-s",
            id,
            "--",
            "sh",
            "-c",
            "cat \"$CLAUDE_CONFIG_DIR/.claude.json\"",
        ]);
        let out = c.output().unwrap();
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            config["projects"][dir.as_str()]["lastSessionId"],
            id.as_str(),
            "{config}"
        );
    }
}

#[test]
fn sessions_set_up_together_lose_nothing_shared_on_the_local_store() {
    let m = Machine::new();
    together(&m, &[], "two", 2);
    together(&m, &[], "four", 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_set_up_together_lose_nothing_shared_on_s3s_fs() {
    // s3s-fs is a process of its own: blocking on ccws here is fine.
    let server = crate::s3s::S3sServer::start().await;
    let m = Machine::new();
    let env: Vec<(String, String)> = [
        ("CCWS_BUCKET", server.bucket.clone()),
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_ACCESS_KEY_ID", server.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.clone()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    together(&m, &env, "two", 2);
    together(&m, &env, "four", 4);
}

#[test]
fn after_100_sessions_the_home_holds_no_session_file() {
    let m = Machine::new();
    let home = m.path("state/store/workspaces/many/claude-home.tar.gz");
    let mut sizes = Vec::new();
    for i in 0..100 {
        let id = format!("{i:08x}-1111-4222-8333-444444444444");
        turn(&m, "many", &id, &[("FAKE_CLAUDE_BYTES", "20000")], "");
        if [0, 9, 49, 99].contains(&i) {
            sizes.push((i + 1, std::fs::metadata(&home).unwrap().len()));
        }
    }
    eprintln!("home size after n sessions: {sizes:?}");
    let out = m.run(&[
        "run",
        "-w",
        "many",
        "-s",
        "reader",
        "--",
        "sh",
        "-c",
        "cd \"$CLAUDE_CONFIG_DIR\" && find . -type f",
    ]);
    let listing = String::from_utf8_lossy(&out.stdout);
    let per_session: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("-1111-4222-8333-"))
        .collect();
    assert!(
        per_session.is_empty(),
        "per-session files in the home: {per_session:?}"
    );
    // What still grows is one history line and one projects entry a session
    // (Claude Code's own shared files): well under 1 KiB of gzip a session.
    let (first, last) = (sizes[1].1, sizes[3].1);
    assert!(last - first < 90 * 1024, "{sizes:?}");
}
