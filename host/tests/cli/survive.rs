//! Turns that survive their agent and their own crashes: background
//! writers, `kill -9` at random points, squatted temp bases, credentials in
//! ccws's own environment.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Machine;

/// The memory directory's file names, as the next turn sees them.
fn memory_listing(m: &Machine, ws: &str) -> BTreeSet<String> {
    let out = m.run(&[
        "run",
        "-w",
        ws,
        "-s",
        "check",
        "--",
        "sh",
        "-c",
        "ls \"$CCWS_MEMORY_DIR\"",
    ]);
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_background_writer_left_by_the_agent_loses_nothing() {
    let m = Machine::new();
    let out = m.run(&[
        "run",
        "-w",
        "W",
        "-s",
        "other",
        "--",
        "sh",
        "-c",
        "for i in $(seq 500); do echo n > \"$CCWS_MEMORY_DIR/note-$i.md\"; done",
    ]);
    assert_eq!(out.status.code(), Some(0));
    // The agent leaves a writer behind that keeps replacing a file.
    let started = m.path("writer-started");
    let writer = format!(
        "(touch {s}; while :; do : > \"$CCWS_MEMORY_DIR/lock.tmp\"; done) >/dev/null 2>&1 & \
         while [ ! -e {s} ]; do sleep 0.01; done",
        s = started.display()
    );
    let out = m.run(&["run", "-w", "W", "-s", "bg", "--", "sh", "-c", &writer]);
    assert_eq!(out.status.code(), Some(0));
    assert!(started.exists());
    assert!(!m.session_dir("bg").exists(), "the tree is gone");
    let out = m.run(&["run", "-w", "W", "-s", "bg", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    let seen = memory_listing(&m, "W");
    let notes = seen.iter().filter(|n| n.starts_with("note-")).count();
    assert_eq!(notes, 500, "{seen:?}");
}

#[test]
fn a_squatted_temp_base_is_refused() {
    let m = Machine::new();
    let broker = m.path("tmp/cc-broker");
    std::fs::create_dir_all(&broker).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broker, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = m.run(&["run", "-w", "w", "-s", "s", "--", "true"]);
    assert_eq!(out.status.code(), Some(3), "a configuration error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by group or others") && err.contains("--temp-dir"),
        "{err}"
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::fs::set_permissions(&broker, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&broker, Some(65534), Some(65534)).unwrap();
        let out = m.run(&["setup", "-w", "w", "-s", "s"]);
        assert_eq!(out.status.code(), Some(3));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
    // A tree planted at a session's path is not recovered nor uploaded.
    std::fs::remove_dir_all(&broker).unwrap();
    let planted = m
        .session_dir("victim")
        .join("claude-config/projects/ws_w/memory");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("planted.md"), "x").unwrap();
    let out = m.run(&["run", "-w", "w", "-s", "victim", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!memory_listing(&m, "w").contains("planted.md"));
}

#[test]
fn credentials_are_wiped_from_ccws_own_environment() {
    let m = Machine::new();
    let secret = "wJalrXUtnFEMI-not-a-real-secret";
    // The agent reads ccws's environment block as root can (ccws is not
    // dumpable, which stops other users and the same one, but not root).
    let probe =
        "tr '\\0' '\\n' < /proc/$PPID/environ > \"$CCWS_PROJECT_DIR/../../../environ\" || true";
    let out = m
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .args(["run", "-w", "w", "-s", "s", "--", "sh", "-c", probe])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let dump = m.path("tmp/environ");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // Only root can read a non-dumpable process's environ.
    }
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(seen.contains("CCWS_STATE_DIR="), "the dump is real: {seen}");
    assert!(
        !seen.contains(secret),
        "the secret is still in ccws's environ"
    );
    assert!(!seen.contains("AKIDEXAMPLE"));
}

/// One turn of the kill sweep: its agent logs start and end outside the
/// session tree, writes 40 files of its own and overwrites `last.md`.
fn sweep_agent(log: &Path, trial: usize) -> String {
    format!(
        "echo \"start {trial} $$\" >> {log}; \
         for k in $(seq 40); do echo {trial} > \"$CCWS_MEMORY_DIR/t{trial}-$k.md\"; done; \
         echo {trial} > \"$CCWS_MEMORY_DIR/last.md\"; \
         mkdir -p \"$(dirname \"$CCWS_TRANSCRIPT\")\"; echo '{{\"t\":{trial}}}' >> \"$CCWS_TRANSCRIPT\"; \
         echo \"end {trial}\" >> {log}",
        log = log.display()
    )
}

#[test]
fn kill_sweep_loses_nothing_and_replays_nothing_stale() {
    let m = Machine::new();
    let log = m.path("agents.log");
    let trials = 30;
    let started = Instant::now();
    // How long a whole turn takes here, to spread the kills over it.
    let t0 = Instant::now();
    let out = m.run(&["run", "-w", "K", "-s", "sweep", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    let turn = t0.elapsed();
    let mut rng_state = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(std::process::id());
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut killed = 0;
    for trial in 0..trials {
        let script = sweep_agent(&log, trial);
        // Alternate `ccws run` with split setup / agent / teardown.
        let delay = Duration::from_micros(next() % (turn.as_micros() as u64 * 3 + 1));
        if trial % 3 == 2 {
            // The broker's process that owns the session, gone by the time
            // the teardown is killed (as a crashed broker would be).
            let mut owner = std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .unwrap();
            let pid = owner.id().to_string();
            let out = m.run(&["setup", "-w", "K", "-s", "sweep", "--owner-pid", &pid]);
            assert_eq!(out.status.code(), Some(0));
            let env: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("export "))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
                .collect();
            let status = std::process::Command::new("sh")
                .args(["-c", &script])
                .envs(env)
                .status()
                .unwrap();
            assert!(status.success());
            owner.kill().unwrap();
            owner.wait().unwrap();
            let mut child = m
                .cmd()
                .args(["teardown", "-w", "K", "-s", "sweep"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_none() {
                killed += 1;
            }
            let _ = child.kill();
            child.wait().unwrap();
        } else {
            let mut child = m
                .cmd()
                .args(["run", "-w", "K", "-s", "sweep", "--", "sh", "-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_none() {
                killed += 1;
            }
            let _ = child.kill();
            child.wait().unwrap();
            // An agent orphaned by the kill finishes on its own (a broker
            // would kill it; here it ends by itself): wait for it.
            std::thread::sleep(Duration::from_millis(300));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.starts_with(&format!("start {trial} ")))
            {
                let end = format!("end {trial}");
                let deadline = Instant::now() + Duration::from_secs(30);
                while !std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l == end)
                {
                    assert!(
                        Instant::now() < deadline,
                        "trial {trial}'s agent never ended"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    // The next turn finishes whatever was interrupted; then the outbox.
    let out = m.run(&["run", "-w", "K", "-s", "sweep", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    let out = m.run(&["flush"]);
    assert_eq!(out.status.code(), Some(0));

    let ended: Vec<usize> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("end "))
        .map(|n| n.parse().unwrap())
        .collect();
    let seen = memory_listing(&m, "K");
    let mut lost = 0;
    for &trial in &ended {
        for k in 1..=40 {
            if !seen.contains(&format!("t{trial}-{k}.md")) {
                lost += 1;
            }
        }
    }
    let last = m.run(&[
        "run",
        "-w",
        "K",
        "-s",
        "check",
        "--",
        "sh",
        "-c",
        "cat \"$CCWS_MEMORY_DIR/last.md\"",
    ]);
    let last = String::from_utf8_lossy(&last.stdout).trim().to_owned();
    // Every object in the store is whole: the home unpacks (the check turns
    // above read it), and every transcript line is complete JSON.
    // The transcript as the session's next turn sees it (the whole object
    // and the parts appended since).
    let out = m.run(&[
        "run",
        "-w",
        "K",
        "-s",
        "sweep",
        "--",
        "sh",
        "-c",
        "cat \"$CCWS_TRANSCRIPT\"",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let partial: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    eprintln!(
        "kill sweep: {trials} trials, {killed} killed mid-way, {} agents finished, \
         {lost} files lost, last.md = {last:?}, {} s",
        ended.len(),
        started.elapsed().as_secs()
    );
    assert!(
        killed >= trials / 3,
        "too few kills landed mid-turn: {killed}"
    );
    assert_eq!(lost, 0, "files lost");
    assert_eq!(
        last,
        ended.last().map(|t| t.to_string()).unwrap_or_default(),
        "a stale turn was replayed over a newer one"
    );
    assert!(partial.is_empty(), "partial transcript lines: {partial:?}");
    let turns = text.lines().count();
    assert_eq!(
        turns,
        ended.len(),
        "every finished turn's line, once: {text}"
    );
}

#[test]
fn agent_user_runs_the_agent_as_another_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let m = Machine::new();
        let out = m.run(&[
            "run",
            "-w",
            "w",
            "-s",
            "s",
            "--agent-user",
            "nobody",
            "--",
            "true",
        ]);
        assert_eq!(out.status.code(), Some(2), "only root can switch users");
        return;
    }
    let m = Machine::new();
    use std::os::unix::fs::PermissionsExt;
    // A temp base the agent's user cannot pass through is refused clearly.
    std::fs::create_dir_all(m.path("tmp")).unwrap();
    std::fs::set_permissions(m.path("tmp"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s",
        "--agent-user",
        "nobody",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot pass through"));
    // Others may pass through the test's directories to reach the tree.
    for dir in ["", "tmp"] {
        std::fs::set_permissions(m.path(dir), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    // A file of the broker's the agent must not read (as ~/.aws/credentials).
    let secret = m.path("broker-secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let probe = format!(
        "test \"$(id -u)\" = 65534 || exit 10; \
         if cat {} 2>/dev/null; then exit 11; fi; \
         echo from-nobody > \"$CCWS_MEMORY_DIR/n.md\"",
        secret.display()
    );
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s",
        "--agent-user",
        "nobody",
        "--",
        "sh",
        "-c",
        &probe,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the agent ran as nobody and could not read the secret"
    );
    assert!(
        memory_listing(&m, "w").contains("n.md"),
        "its work was saved"
    );
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s",
        "--agent-user",
        "no-such-user-x",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
}

#[test]
fn nothing_in_the_tree_is_readable_by_others_after_a_round_trip() {
    let m = Machine::new();
    let write = "umask 022; echo '{}' > \"$CLAUDE_CONFIG_DIR/.credentials.json\"; \
                 chmod 600 \"$CLAUDE_CONFIG_DIR/.credentials.json\"; \
                 mkdir -p \"$CLAUDE_CONFIG_DIR/todos\" \"$CLAUDE_CONFIG_DIR/hooks\"; \
                 echo x > \"$CLAUDE_CONFIG_DIR/todos/s-agent-s.json\"; \
                 printf '#!/bin/sh\\n' > \"$CLAUDE_CONFIG_DIR/hooks/h.sh\"; chmod 755 \"$CLAUDE_CONFIG_DIR/hooks/h.sh\"; \
                 echo m > \"$CCWS_MEMORY_DIR/m.md\"";
    let out = m.run(&["run", "-w", "w", "-s", "s", "--", "sh", "-c", write]);
    assert_eq!(out.status.code(), Some(0));
    let check = "find \"$CLAUDE_CONFIG_DIR\" -perm /077 -print; test -x \"$CLAUDE_CONFIG_DIR/hooks/h.sh\" || echo not-executable";
    let out = m.run(&["run", "-w", "w", "-s", "s", "--", "sh", "-c", check]);
    assert_eq!(out.status.code(), Some(0));
    let open: String = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(open.trim().is_empty(), "open to group or others: {open}");
}

/// A download that breaks off mid-archive is the store's fault (exit 4),
/// not the archive's (5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_breaks_off_is_a_store_error() {
    use crate::faultproxy::{Fault, FaultProxy, Rule};
    let server = crate::s3s::S3sServer::start().await;
    let proxy = FaultProxy::start(server.addr).await;
    let m = Machine::new();
    let env = [
        ("CCWS_BUCKET", server.bucket.clone()),
        ("AWS_ENDPOINT_URL", proxy.endpoint()),
        ("AWS_ACCESS_KEY_ID", server.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.clone()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let run = |args: &[&str]| {
        let out = m
            .cmd()
            .envs(env.iter().cloned())
            .args(args)
            .output()
            .unwrap();
        eprintln!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let write = "head -c 200000 /dev/urandom > \"$CCWS_MEMORY_DIR/noise.bin\"";
    assert_eq!(
        run(&["run", "-w", "w", "-s", "a", "--", "sh", "-c", write])
            .status
            .code(),
        Some(0)
    );
    // Every GET of the home now ends after 1,000 body bytes.
    proxy.push(Rule::on(
        "GET",
        "claude-home.tar.gz",
        Fault::CutBody { after: 1000 },
        1000,
    ));
    let out = run(&["setup", "-w", "w", "-s", "b"]);
    assert_eq!(out.status.code(), Some(4), "a store error");
    assert!(!m.session_dir("b").exists(), "setup cleaned up");
}
