//! Operating the store: `ls`, `rm`, `gc` and `outbox`, on the local store
//! and on s3s-fs, with listings forced across several pages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::{agent, json_doc, s3s, Machine};

/// A store for the CLI: the machine's local store, or s3s-fs under a prefix.
struct Setup<'a> {
    m: &'a Machine,
    s3: Option<&'a s3s::S3sServer>,
}

impl Setup<'_> {
    fn cmd(&self) -> Command {
        let mut c = self.m.cmd();
        if let Some(server) = self.s3 {
            c.env("CCWS_BUCKET", &server.bucket)
                .env("AWS_ENDPOINT_URL", server.endpoint())
                .env("AWS_ACCESS_KEY_ID", &server.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
                .env("AWS_REGION", "us-east-1")
                .env("CCWS_PREFIX", "team");
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        crate::run_logged(self.cmd(), args)
    }

    /// `ccws --json ARGS`, which must exit 0 and print one JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        json_doc(&out.stdout)
    }

    /// Where the store keeps the object `key` (below the prefix) as a file.
    fn file(&self, key: &str) -> PathBuf {
        match self.s3 {
            Some(server) => server.bucket_dir().join("team").join(key),
            None => self.m.path("state/store").join(key),
        }
    }

    /// Upload `body` as `key` (below the prefix).
    fn put(&self, key: &str, body: &str) {
        let src = self.m.path("put-src");
        std::fs::write(&src, body).unwrap();
        let out = self.run(&["put", src.to_str().unwrap(), key]);
        assert_eq!(out.status.code(), Some(0), "put {key}");
    }

    fn turn(&self, ws: &str, session: &str) {
        let out = self
            .cmd()
            .args(["run", "-w", ws, "-s", session, "--", "sh", "-c"])
            .arg(agent(session, "true"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Backdate every file at or under `path` by `age`.
fn age(path: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            self::age(&e.unwrap().path(), age);
        }
    } else if path.is_file() {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

fn sessions_of(listing: &Value) -> Vec<(String, u64)> {
    listing["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["session"].as_str().unwrap().to_owned(),
                s["objects"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn keys_of(v: &Value) -> Vec<String> {
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

const DAY: Duration = Duration::from_secs(86_400);

/// Two workspaces of sessions with objects of their own (a transcript,
/// per-session objects beside it, and a neighbour whose id extends
/// another's); then list, collect old sessions and remove.
fn ls_gc_and_rm(st: &Setup<'_>) {
    st.turn("a", "s1");
    st.turn("a", "s2");
    st.turn("b", "t1");
    // Objects a later layout may add under a session's directory, one that
    // belongs to session s1x (not s1), and one beside the home.
    st.put("workspaces/a/sessions/s1/extra/one", "1");
    st.put("workspaces/a/sessions/s1/extra/two", "22");
    st.put("workspaces/a/sessions/s1x.jsonl", "{}\n");
    st.put("workspaces/a/notes.txt", "n");

    let all = st.json(&["ls", "--page-size", "2"]);
    let ws: Vec<&str> = all["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace"].as_str().unwrap())
        .collect();
    assert_eq!(ws, ["a", "b"], "{all}");
    assert_eq!(all["workspaces"][0]["sessions"], 3, "{all}");
    assert_eq!(all["workspaces"][1]["sessions"], 1, "{all}");
    let a = st.json(&["ls", "a", "--page-size", "1"]);
    let sessions = sessions_of(&a);
    let names: Vec<&str> = sessions.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["s1", "s1x", "s2"], "{a}");
    let s1_objects = sessions[0].1;
    assert!(s1_objects >= 3, "transcript and two extras: {a}");
    assert_eq!(sessions[1].1, 1, "{a}");
    let own: Vec<&str> = a["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(own.contains(&"claude-home.tar.gz"), "{a}");
    assert!(own.contains(&"notes.txt"), "{a}");
    let home = &a["objects"][own.iter().position(|n| *n == "claude-home.tar.gz").unwrap()];
    assert_eq!(home["key"], "workspaces/a/claude-home.tar.gz", "{a}");
    assert!(home["bytes"].as_u64().unwrap() > 0);
    assert!(home["last_modified"].as_str().unwrap().ends_with('Z'));
    // The human table says the same.
    let text = String::from_utf8(st.run(&["ls", "a"]).stdout).unwrap();
    assert!(
        text.contains("SESSION") && text.contains("s1x") && text.contains("claude-home.tar.gz"),
        "{text}"
    );

    // s1 is 40 days old, s1x 20: gc --older-than 30d takes s1 only.
    age(&st.file("workspaces/a/sessions/s1"), 40 * DAY);
    age(&st.file("workspaces/a/sessions/s1.jsonl"), 40 * DAY);
    age(&st.file("workspaces/a/sessions/s1x.jsonl"), 20 * DAY);
    let dry = st.json(&["gc", "--older-than", "30d", "--dry-run", "--page-size", "2"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["sessions"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["sessions"][0]["session"], "s1", "{dry}");
    assert_eq!(dry["objects"].as_u64(), Some(s1_objects), "{dry}");
    assert!(
        st.file("workspaces/a/sessions/s1.jsonl").is_file(),
        "a dry run deletes nothing"
    );
    let gc = st.json(&["gc", "--older-than", "30d", "--page-size", "2"]);
    assert_eq!(gc["dry_run"], false);
    assert_eq!(gc["sessions"][0]["session"], "s1", "{gc}");
    assert_eq!(gc["sessions_seen"], 4, "{gc}");
    assert!(!st.file("workspaces/a/sessions/s1.jsonl").exists());
    assert!(!st.file("workspaces/a/sessions/s1/extra/two").exists());
    assert!(
        st.file("workspaces/a/sessions/s1x.jsonl").is_file(),
        "the neighbour stays"
    );
    assert!(
        st.file("workspaces/a/claude-home.tar.gz").is_file(),
        "the home stays"
    );
    let a = st.json(&["ls", "a"]);
    let names: Vec<String> = sessions_of(&a).into_iter().map(|(s, _)| s).collect();
    assert_eq!(names, ["s1x", "s2"], "{a}");
    // Nothing left that old: a second gc deletes nothing, and says so.
    let out = st.run(&["gc", "--older-than", "30d"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted 0 of 3 session(s)"));

    // rm without a terminal to ask on needs --yes.
    let out = st.run(&["rm", "-w", "a", "-s", "s2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(st.file("workspaces/a/sessions/s2.jsonl").is_file());
    let rm = st.json(&["rm", "-w", "a", "-s", "s2", "--yes", "--page-size", "1"]);
    assert_eq!(rm["session"], "s2");
    let deleted = keys_of(&rm);
    assert!(
        deleted.contains(&"workspaces/a/sessions/s2.jsonl".to_owned()),
        "{rm}"
    );
    assert!(
        deleted
            .iter()
            .all(|k| k.starts_with("workspaces/a/sessions/s2")),
        "{rm}"
    );
    assert!(!st.file("workspaces/a/sessions/s2.jsonl").exists());
    assert!(st.file("workspaces/a/sessions/s1x.jsonl").is_file());
    // A whole workspace.
    let rm = st.json(&["rm", "-w", "b", "-y"]);
    assert!(rm["session"].is_null());
    assert!(keys_of(&rm).contains(&"workspaces/b/claude-home.tar.gz".to_owned()));
    let all = st.json(&["ls"]);
    assert_eq!(all["workspaces"].as_array().unwrap().len(), 1, "{all}");
    // Nothing to delete is no error; a bad id is.
    let rm = st.json(&["rm", "-w", "b", "-y"]);
    assert!(keys_of(&rm).is_empty());
    assert_eq!(st.run(&["rm", "-w", "../b", "-y"]).status.code(), Some(3));
    // And the store still works for the sessions left.
    st.turn("a", "s1x");
}

#[test]
fn ls_gc_and_rm_on_the_local_store() {
    let m = Machine::new();
    ls_gc_and_rm(&Setup { m: &m, s3: None });
    // Directories emptied by deletions go with them.
    assert!(!m.path("state/store/workspaces/b").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_gc_and_rm_on_s3s_fs() {
    let server = s3s::S3sServer::start().await;
    let m = Machine::new();
    ls_gc_and_rm(&Setup {
        m: &m,
        s3: Some(&server),
    });
}

#[test]
fn outbox_shows_what_waits_and_gc_keeps_its_sessions() {
    let m = Machine::new();
    let st = Setup { m: &m, s3: None };
    assert_eq!(st.json(&["outbox"])["entries"], serde_json::json!([]));
    st.turn("w", "old");
    age(&st.file("workspaces/w/sessions"), 40 * DAY);
    // The next turn's transcript cannot be stored: its key's parent is a
    // file by the time teardown runs.
    let out = st.run(&["--json", "setup", "-w", "w", "-s", "old"]);
    assert_eq!(out.status.code(), Some(0));
    let layout = &json_doc(&out.stdout)["layout"];
    let transcript = PathBuf::from(layout["transcript"].as_str().unwrap());
    std::fs::create_dir_all(transcript.parent().unwrap()).unwrap();
    std::fs::write(&transcript, "{\"more\":1}\n").unwrap();
    let sessions = st.file("workspaces/w/sessions");
    let moved = m.path("sessions-aside");
    std::fs::rename(&sessions, &moved).unwrap();
    std::fs::write(&sessions, "in the way").unwrap();
    assert_eq!(
        st.run(&["teardown", "-w", "w", "-s", "old"]).status.code(),
        Some(75)
    );
    let v = st.json(&["outbox"]);
    let entries = v["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "{v}");
    let t = entries
        .iter()
        .find(|e| e["kind"] == "transcript")
        .unwrap_or_else(|| panic!("no transcript queued: {v}"));
    assert_eq!(t["workspace"], "w");
    assert_eq!(t["session"], "old");
    assert!(
        t["key"]
            .as_str()
            .unwrap()
            .starts_with("workspaces/w/sessions/old"),
        "{v}"
    );
    assert!(t["bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(t["age_secs"].as_u64().unwrap() < 600, "{v}");
    assert!(t["queued_at"].as_str().unwrap().ends_with('Z'));
    assert!(!t["last_error"].as_str().unwrap().is_empty(), "{v}");
    let text = String::from_utf8(st.run(&["outbox"]).stdout).unwrap();
    assert!(
        text.contains("transcript") && text.contains("LAST ERROR"),
        "{text}"
    );
    assert_eq!(
        st.json(&["outbox", "-w", "other"])["entries"],
        serde_json::json!([])
    );

    // Old in the store, but queued here: gc keeps it, rm warns.
    std::fs::remove_file(&sessions).unwrap();
    std::fs::rename(&moved, &sessions).unwrap();
    age(&sessions, 40 * DAY);
    let gc = st.json(&["gc", "--older-than", "30d"]);
    assert!(gc["sessions"].as_array().unwrap().is_empty(), "{gc}");
    assert_eq!(gc["kept"], serde_json::json!(["w/old"]), "{gc}");
    let out = st.run(&["rm", "-w", "w", "-s", "old", "-y"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wait in this machine's outbox"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(st.run(&["flush"]).status.code(), Some(0));
    assert_eq!(st.json(&["outbox"])["entries"], serde_json::json!([]));
}
