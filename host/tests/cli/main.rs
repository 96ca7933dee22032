//! The `ccws` binary end to end: exit codes, signals, crash recovery, the
//! split setup/teardown flow, configuration errors, and single-object and
//! archive commands, on the local store and on the real s3s-fs server.

#[path = "../../../tests/src/awsfake.rs"]
#[allow(dead_code)]
mod awsfake;
mod claude;
mod credentials;
#[path = "../../../tests/src/faultproxy.rs"]
#[allow(dead_code)]
mod faultproxy;
mod interface;
mod ops;
#[path = "../../../tests/src/s3s.rs"]
#[allow(dead_code)]
mod s3s;
mod survive;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CCWS: &str = env!("CARGO_BIN_EXE_ccws");

/// A machine for the CLI: its own temp base, state dir, local store and
/// component cache, and no AWS settings leaking in from the environment.
/// Run `cmd` with `args`, its outcome logged (shown when a test fails).
fn run_logged(mut cmd: Command, args: &[&str]) -> Output {
    let out = cmd.args(args).output().unwrap();
    eprintln!(
        "ccws {args:?} -> {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self) -> Command {
        self.command(CCWS)
    }

    /// `program` (ccws, or a wrapper that runs it) with the machine's settings.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("CCWS_") {
                c.env_remove(k);
            }
        }
        // Tests reach loopback only: no instance-metadata probe.
        c.env("HOME", self.path("home"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CCWS_TEMP_DIR", self.path("tmp"))
            .env("CCWS_STATE_DIR", self.path("state"))
            .env(
                "CCWS_CACHE_DIR",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ccws-test-cache"),
            )
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_logged(self.cmd(), args)
    }

    fn session_dir(&self, session: &str) -> PathBuf {
        self.path("tmp")
            .join("cc-broker")
            .join(format!("sess_{session}"))
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `stdout` as the one document a `--json` command prints: one compact
/// line of JSON, with snake_case names throughout.
fn json_doc(stdout: &[u8]) -> serde_json::Value {
    let text = std::str::from_utf8(stdout).expect("JSON output is UTF-8");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "not one line of JSON: {text:?}"
    );
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_one_style(&v, "$");
    v
}

/// Every object key in `v` is snake_case, and so is every value that
/// names a variant (`status`, `source`, `kind`; a skipped entry's `reason`).
fn assert_one_style(v: &serde_json::Value, at: &str) {
    fn snake(s: &str) -> bool {
        !s.is_empty()
            && s.split('_').all(|w| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
            && s.starts_with(|c: char| c.is_ascii_lowercase())
    }
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map {
                let here = format!("{at}.{k}");
                assert!(snake(k), "{here}: the name {k:?} is not snake_case");
                let names_a_variant = matches!(k.as_str(), "status" | "source" | "kind")
                    || (k == "reason" && at.contains(".skipped"));
                if names_a_variant {
                    if let Some(s) = val.as_str() {
                        assert!(snake(s), "{here}: the value {s:?} is not snake_case");
                    }
                }
                assert_one_style(val, &here);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_one_style(item, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

/// A shell snippet for the agent: note something in memory and the transcript.
fn agent(note: &str, then: &str) -> String {
    format!(
        "echo '{note}' > \"$CCWS_MEMORY_DIR/note.md\" && mkdir -p \"$(dirname \"$CCWS_TRANSCRIPT\")\" \
         && echo '{{\"note\":\"{note}\"}}' >> \"$CCWS_TRANSCRIPT\" && {then}"
    )
}

#[test]
fn run_passes_the_agents_exit_code_and_tears_down_after_failure() {
    let m = Machine::new();
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s",
        "--",
        "sh",
        "-c",
        &agent("one", "exit 3"),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !m.session_dir("s").exists(),
        "torn down after a failing agent"
    );
    let check =
        "test \"$(cat \"$CCWS_MEMORY_DIR/note.md\")\" = one && grep -q one \"$CCWS_TRANSCRIPT\" \
                 && test \"$PWD\" = \"$CCWS_PROJECT_DIR\" && test -n \"$CLAUDE_CONFIG_DIR\"";
    let out = m.run(&["run", "-w", "w", "-s", "s", "--", "sh", "-c", check]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the next turn sees memory and transcript"
    );
    let out = m.run(&["run", "-w", "w", "-s", "s", "--", "/nonexistent/agent"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run"));
    assert!(!m.session_dir("s").exists());
}

/// `ccws run` is closed to its agent: an agent running as the same user,
/// without `CAP_SYS_PTRACE`, cannot read ccws's environment, where the
/// store's credentials may be; it can still read its own. Root reads every
/// process's environment, so under root the turn runs as `nobody` (65534).
#[test]
fn run_is_closed_to_inspection_by_its_agent() {
    let m = Machine::new();
    let probe = "cat /proc/self/environ > /dev/null || exit 10; \
                 if cat \"/proc/$PPID/environ\" > /dev/null 2>&1; then exit 11; fi";
    let args = ["run", "-w", "w", "-s", "s", "--", "sh", "-c", probe];
    // SAFETY: geteuid has no preconditions.
    let mut c = if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(m.dir.path(), Some(65534), Some(65534)).unwrap();
        // The binary as nobody can run it: where it is, if every directory
        // on the way lets others through; else a copy.
        let ccws = if open_to_others(Path::new(CCWS)) {
            PathBuf::from(CCWS)
        } else {
            let copy = m.path("ccws");
            std::fs::copy(CCWS, &copy).unwrap();
            copy
        };
        let mut c = m.command("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(ccws)
            .current_dir(m.dir.path())
            // A cache of its own: the shared one is root's.
            .env("CCWS_CACHE_DIR", m.path("cache"));
        c
    } else {
        m.cmd()
    };
    let out = c.args(args).output().unwrap();
    let code = out.status.code();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(code, Some(11), "the agent read ccws's /proc/<pid>/environ");
    assert_eq!(code, Some(0), "the turn or the probe failed: {err}");
}

/// Whether others may run `file`: it and every directory above it have the
/// "others" execute bit.
fn open_to_others(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    file.ancestors().all(|p| {
        p.as_os_str().is_empty()
            || std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

#[test]
fn sigterm_is_forwarded_and_teardown_still_runs() {
    let m = Machine::new();
    let ready = m.path("ready");
    let script = agent(
        "before-term",
        &format!(
            "trap 'exit 143' TERM; touch {}; sleep 30 & wait",
            ready.display()
        ),
    );
    let mut child = m
        .cmd()
        .args(["run", "-w", "w", "-s", "t", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for(&ready);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "exit status of the agent");
    assert!(!m.session_dir("t").exists(), "teardown ran");
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        "t",
        "--",
        "sh",
        "-c",
        "grep -q before-term \"$CCWS_MEMORY_DIR/note.md\"",
    ]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn sigkill_mid_turn_is_recovered_by_the_next_run() {
    let m = Machine::new();
    let pidfile = m.path("agent.pid");
    let script = agent(
        "crashed-turn",
        &format!("echo $$ > {}; exec sleep 60", pidfile.display()),
    );
    let mut child = m
        .cmd()
        .args(["run", "-w", "w", "-s", "k", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for(&pidfile);
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // The orphaned agent is killed too, as a broker would.
    std::thread::sleep(Duration::from_millis(50));
    let agent_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(agent_pid, libc::SIGKILL) };
    assert!(m.session_dir("k").exists(), "the killed turn left its tree");
    // No partial object was written by the killed process.
    let store = m.path("state/store");
    let leftovers: Vec<_> = std::fs::read_dir(store.join(".ccws-tmp"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!store.join("workspaces/w/claude-home.tar.gz").exists());

    let out = m.run(&["--json", "setup", "-w", "w", "-s", "k"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["report"]["recovered"].is_object(), "{v}");
    let memory = PathBuf::from(v["layout"]["memory_dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(memory.join("note.md")).unwrap(),
        "crashed-turn\n"
    );
    let transcript = PathBuf::from(v["layout"]["transcript"].as_str().unwrap());
    assert!(std::fs::read_to_string(transcript)
        .unwrap()
        .contains("crashed-turn"));
    assert_eq!(
        m.run(&["teardown", "-w", "w", "-s", "k"]).status.code(),
        Some(0)
    );
}

#[test]
fn split_setup_and_teardown_for_brokers() {
    let m = Machine::new();
    let out = m.run(&["setup", "-w", "w", "-s", "split"]);
    assert_eq!(out.status.code(), Some(0));
    // The output is shell: a broker can eval it.
    let sh = format!(
        "{}\ntest -d \"$CLAUDE_CONFIG_DIR\" && test -d \"$CCWS_MEMORY_DIR\"",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(&sh)
            .status()
            .unwrap()
            .success(),
        "{sh}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let config_dir = text
        .lines()
        .find_map(|l| l.strip_prefix("export CLAUDE_CONFIG_DIR='"))
        .and_then(|v| v.strip_suffix('\''))
        .expect("setup prints export CLAUDE_CONFIG_DIR='...'");
    std::fs::write(Path::new(config_dir).join("settings.json"), "{}").unwrap();
    // The owner (this test process) is alive: a second setup is refused.
    let again = m.run(&[
        "setup",
        "-w",
        "w",
        "-s",
        "split",
        "--owner-pid",
        &std::process::id().to_string(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already set up"));
    let out = m.run(&["--json", "teardown", "-w", "w", "-s", "split"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["home"]["status"], "uploaded", "{v}");
    assert_eq!(v["transcript"]["status"], "missing", "{v}");
    let out = m.run(&["teardown", "-w", "w", "-s", "split"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run setup first"));
}

#[test]
fn teardown_exits_75_when_uploads_are_only_queued() {
    let m = Machine::new();
    let store = m.path("store");
    let run = |args: &[&str]| {
        let out = m
            .cmd()
            .env("CCWS_LOCAL_STORE", &store)
            .args(args)
            .output()
            .unwrap();
        eprintln!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let out = run(&["setup", "-w", "w", "-s", "q"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let transcript = text
        .lines()
        .find_map(|l| l.strip_prefix("export CCWS_TRANSCRIPT='"))
        .and_then(|v| v.strip_suffix('\''))
        .map(PathBuf::from)
        .expect("setup prints export CCWS_TRANSCRIPT='...'");
    std::fs::create_dir_all(transcript.parent().unwrap()).unwrap();
    std::fs::write(&transcript, "{}\n").unwrap();
    // The transcript cannot be stored: its key's parent is a file.
    std::fs::create_dir_all(store.join("workspaces/w")).unwrap();
    std::fs::write(store.join("workspaces/w/sessions"), "in the way").unwrap();
    let out = run(&["--json", "teardown", "-w", "w", "-s", "q"]);
    assert_eq!(out.status.code(), Some(75), "queued, not delivered");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["transcript"]["status"], "queued", "{v}");
    assert!(!m.session_dir("q").exists(), "the turn still ended");

    std::fs::remove_file(store.join("workspaces/w/sessions")).unwrap();
    assert_eq!(run(&["flush"]).status.code(), Some(0));
    assert!(store.join("workspaces/w/sessions/q.jsonl").is_file());
    assert_eq!(run(&["setup", "-w", "w", "-s", "q"]).status.code(), Some(0));
    assert_eq!(
        run(&["teardown", "-w", "w", "-s", "q"]).status.code(),
        Some(0),
        "everything delivered"
    );
}

#[test]
fn bad_input_and_configuration_errors_are_clear() {
    let m = Machine::new();
    let out = m.run(&["run", "-w", "../x", "-s", "s", "--", "true"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid workspace id"));

    // No credentials anywhere: exit 3, and every source says why. The
    // instance-metadata endpoint is a closed loopback port here.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = m
        .cmd()
        .args(["run", "-w", "w", "-s", "s", "--", "true"])
        .env("CCWS_BUCKET", "some-bucket")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for said in [
        "no AWS credentials were found",
        "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not both set",
        "web identity: ",
        "profile default: not in ",
        "container: ",
        &format!("instance metadata: no answer from http://127.0.0.1:{port}"),
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }

    std::fs::write(m.path("file"), "").unwrap();
    let out = m
        .cmd()
        .args(["run", "-w", "w", "-s", "s", "--", "true"])
        .env("CCWS_TEMP_DIR", m.path("file").join("sub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("temp directory base"));

    let out = m.run(&["run", "-w", "w", "-s", "s"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    let out = m.run(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes"));
}

#[test]
fn pack_unpack_and_component_commands() {
    let m = Machine::new();
    let src = m.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f.txt"), "hello").unwrap();
    std::fs::write(src.join("skip.log"), "x").unwrap();
    std::os::unix::fs::symlink("d/f.txt", src.join("link")).unwrap();
    let archive = m.path("a.tar.gz");
    let out = m.run(&[
        "--json",
        "pack",
        src.to_str().unwrap(),
        archive.to_str().unwrap(),
        "--exclude",
        "*.log",
    ]);
    assert_eq!(out.status.code(), Some(0));
    // The report as the archive crate's types serialize it: snake_case.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"], 1);
    let skipped = v["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["path"] == "link"
            && s["reason"] == "symlink"
            && s["detail"] == "-> d/f.txt"),
        "{v}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s["path"] == "skip.log" && s["reason"] == "excluded"),
        "{v}"
    );
    let dest = m.path("dest");
    let out = m.run(&[
        "--json",
        "unpack",
        archive.to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"], 1);
    assert_eq!(
        std::fs::read_to_string(dest.join("d/f.txt")).unwrap(),
        "hello"
    );
    assert!(!dest.join("skip.log").exists());

    std::fs::write(m.path("junk.tar.gz"), "not an archive").unwrap();
    let out = m.run(&[
        "unpack",
        m.path("junk.tar.gz").to_str().unwrap(),
        m.path("d2").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt archive"));

    let wasm = m.path("ccws.wasm");
    assert_eq!(
        m.run(&["component", wasm.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let bytes = std::fs::read(&wasm).unwrap();
    assert_eq!(&bytes[..4], b"\0asm");
    assert_eq!(bytes, ccws::archive::COMPONENT_WASM);
    let plain = m.path("plain.wasm");
    let out = m.run(&["component", "--plain", plain.to_str().unwrap()]);
    match ccws::archive::plain_component_wasm() {
        Some(wasm) => {
            assert_eq!(out.status.code(), Some(0));
            assert_eq!(std::fs::read(&plain).unwrap(), wasm);
        }
        // Built without the `plain-component` feature: a usage error saying
        // how to get it.
        None => {
            assert_eq!(out.status.code(), Some(2));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("--features plain-component"), "{stderr}");
            assert!(!plain.exists());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_and_objects_against_s3s_fs() {
    let server = s3s::S3sServer::start().await;
    let m = Machine::new();
    let s3 = |c: &mut Command| {
        c.env("CCWS_BUCKET", &server.bucket)
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_ACCESS_KEY_ID", &server.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
            .env("AWS_REGION", "us-east-1")
            .env("CCWS_PREFIX", "team");
    };
    let run = |args: &[&str]| {
        let mut c = m.cmd();
        s3(&mut c);
        let out = c.args(args).output().unwrap();
        eprintln!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let out = run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s",
        "--",
        "sh",
        "-c",
        &agent("via-s3", "true"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(server
        .bucket_dir()
        .join("team/workspaces/w/claude-home.tar.gz")
        .is_file());
    assert!(server
        .bucket_dir()
        .join("team/workspaces/w/sessions/s.jsonl")
        .is_file());
    let out = run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s2",
        "--",
        "sh",
        "-c",
        "grep -q via-s3 \"$CCWS_MEMORY_DIR/note.md\"",
    ]);
    assert_eq!(out.status.code(), Some(0));

    // Single objects, with odd keys and conditions.
    let src = m.path("obj");
    std::fs::write(&src, "payload").unwrap();
    let out = run(&[
        "--json",
        "put",
        src.to_str().unwrap(),
        "odd key/ü+=&.txt",
        "--if-none-match",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = run(&[
        "put",
        src.to_str().unwrap(),
        "odd key/ü+=&.txt",
        "--if-none-match",
    ]);
    assert_eq!(out.status.code(), Some(4), "the object exists");
    let dest = m.path("got");
    let out = run(&["get", "odd key/ü+=&.txt", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "payload");
    let out = run(&["get", "missing", m.path("none").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(!m.path("none").exists());
    // A wrong secret is a clear error, and it is never printed.
    let out = m
        .cmd()
        .env("CCWS_BUCKET", &server.bucket)
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", "definitely-wrong-secret")
        .args(["-vv", "get", "odd key/ü+=&.txt", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("the credentials or the signature were refused"),
        "{err}"
    );
    assert!(
        !err.contains("definitely-wrong-secret"),
        "the secret leaked: {err}"
    );
}

/// The environment `env -0` wrote to `path`.
fn read_env(path: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read(path)
        .unwrap()
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keeps_the_store_credentials_from_the_agent() {
    let server = s3s::S3sServer::start().await;
    let m = Machine::new();
    std::fs::create_dir_all(m.path("aws")).unwrap();
    let (creds, config) = (m.path("aws/credentials"), m.path("aws/config"));
    std::fs::write(
        &creds,
        format!(
            "[store]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key, server.secret_key
        ),
    )
    .unwrap();
    std::fs::write(&config, "[profile store]\nregion = us-east-1\n").unwrap();
    let dump = m.path("agent.env");
    let script = agent("x", &format!("env -0 > '{}'", dump.display()));
    // One turn with the credentials in the environment, or in a profile;
    // returns the agent's environment.
    let turn = |session: &str, from_profile: bool, pass: bool| {
        let mut c = m.cmd();
        c.env("CCWS_BUCKET", &server.bucket)
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_REGION", "us-east-1");
        if from_profile {
            c.env("AWS_PROFILE", "store")
                .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
                .env("AWS_CONFIG_FILE", &config);
        } else {
            c.env("AWS_ACCESS_KEY_ID", &server.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
                .env("AWS_SESSION_TOKEN", "the-session-token");
        }
        c.args(["run", "-w", "w", "-s", session]);
        if pass {
            c.arg("--pass-aws-env");
        }
        let out = c.args(["--", "sh", "-c", &script]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{session}: {err}");
        // ccws itself still had the credentials: the turn reached the bucket.
        assert!(
            server
                .bucket_dir()
                .join(format!("workspaces/w/sessions/{session}.jsonl"))
                .is_file(),
            "{session}: {err}"
        );
        let env = read_env(&dump);
        std::fs::remove_file(&dump).unwrap();
        assert!(env.contains_key("CLAUDE_CONFIG_DIR"), "{session}: {env:?}");
        // Where the store is, is not a secret: kept.
        assert_eq!(env.get("AWS_REGION").map(String::as_str), Some("us-east-1"));
        assert_eq!(env.get("CCWS_BUCKET"), Some(&server.bucket));
        env
    };
    let keys = [
        ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.as_str()),
        ("AWS_SESSION_TOKEN", "the-session-token"),
    ];
    let profile = [
        ("AWS_PROFILE", "store"),
        ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
    ];

    let env = turn("keys", false, false);
    for (k, _) in keys {
        assert!(!env.contains_key(k), "{k} leaked to the agent: {env:?}");
    }
    assert!(
        env.values().all(|v| !v.contains(&server.secret_key)),
        "the secret leaked: {env:?}"
    );
    let env = turn("profile", true, false);
    for (k, _) in profile {
        assert!(!env.contains_key(k), "{k} leaked to the agent: {env:?}");
    }

    // Opted out: the agent gets them as ccws did.
    let env = turn("keys-passed", false, true);
    for (k, v) in keys {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
    let env = turn("profile-passed", true, true);
    for (k, v) in profile {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
    // The help says what the default hides, and what it cannot.
    let help = String::from_utf8(m.run(&["help", "run"]).stdout).unwrap();
    assert!(
        help.contains("--pass-aws-env") && help.contains("~/.aws/credentials"),
        "{help}"
    );
}
