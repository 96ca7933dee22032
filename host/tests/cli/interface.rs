//! The machine interface: every `--json` output is one compact document in
//! one naming style, errors are JSON on stderr, `run` keeps stdout for its
//! agent and reports through `--report`, `--strict`, and a closed stdout
//! is never a panic nor a half set-up session.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::{agent, assert_one_style, json_doc, Machine};

fn json(m: &Machine, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = m.run(&all);
    assert!(
        matches!(out.status.code(), Some(0 | 75)),
        "{args:?}: {:?}",
        out.status
    );
    json_doc(&out.stdout)
}

/// The JSON error document on the last line of stderr.
fn json_error(out: &Output) -> Value {
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_one_style(&v, "$");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(
        e["exit_code"].as_i64(),
        out.status.code().map(i64::from),
        "{v}"
    );
    v
}

/// The report file of a `run --report`: one line of JSON in one style.
fn report(path: &Path) -> Value {
    json_doc(&std::fs::read(path).unwrap())
}

/// Let the next transcript upload of workspace `w` fail: a file sits
/// where its key's directory must be. Returns a closure that undoes it.
fn block_sessions(m: &Machine, w: &str) -> impl Fn() {
    let dir = m.path("state/store/workspaces").join(w);
    std::fs::create_dir_all(&dir).unwrap();
    let blocker = dir.join("sessions");
    let aside = m.path(&format!("sessions-of-{w}"));
    if blocker.exists() {
        std::fs::rename(&blocker, &aside).unwrap();
    }
    std::fs::write(&blocker, "in the way").unwrap();
    move || {
        std::fs::remove_file(&blocker).unwrap();
        if aside.exists() {
            std::fs::rename(&aside, &blocker).unwrap();
        }
    }
}

#[test]
fn every_json_output_is_one_document_in_one_style() {
    let m = Machine::new();
    // setup / teardown / flush.
    let v = json(&m, &["setup", "-w", "w", "-s", "s"]);
    let transcript = PathBuf::from(v["layout"]["transcript"].as_str().unwrap());
    std::fs::create_dir_all(transcript.parent().unwrap()).unwrap();
    std::fs::write(&transcript, "{}\n").unwrap();
    let unblock = block_sessions(&m, "w");
    let v = json(&m, &["teardown", "-w", "w", "-s", "s"]);
    assert_eq!(v["transcript"]["status"], "queued", "{v}");
    unblock();
    let v = json(&m, &["flush"]);
    assert_eq!(v["remaining"], 0, "{v}");
    // put / get / ls / outbox / gc / rm.
    let src = m.path("obj");
    std::fs::write(&src, "payload").unwrap();
    let v = json(&m, &["put", src.to_str().unwrap(), "x/obj"]);
    assert_eq!(v["key"], "x/obj");
    let v = json(&m, &["get", "x/obj", m.path("got").to_str().unwrap()]);
    assert_eq!(v["size"], 7);
    json(&m, &["ls"]);
    json(&m, &["ls", "w"]);
    json(&m, &["outbox"]);
    json(&m, &["gc", "--older-than", "1d"]);
    json(&m, &["rm", "-w", "w", "-s", "s", "--yes"]);
    // pack / unpack, with a skipped symlink named in snake_case.
    let tree = m.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), "f").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
    let archive = m.path("t.tar.gz");
    let v = json(
        &m,
        &["pack", tree.to_str().unwrap(), archive.to_str().unwrap()],
    );
    assert_eq!(v["skipped"][0]["reason"], "symlink", "{v}");
    json(
        &m,
        &[
            "unpack",
            archive.to_str().unwrap(),
            m.path("out").to_str().unwrap(),
        ],
    );
    // Where the output is the data, there is no JSON after it.
    let out = m.run(&["--json", "get", "x/obj", "-"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"payload");
}

#[test]
fn errors_are_json_on_stderr_with_their_exit_code_and_kind() {
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
        &agent("e", "true"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--json", "get", "no/such", "-"], 4, "store"),
        (
            &["--json", "setup", "-w", "../w", "-s", "s"],
            3,
            "invalid_id",
        ),
        (
            &["--json", "teardown", "-w", "w", "-s", "never"],
            1,
            "no_session",
        ),
        (&["--json", "ls", "--page-size", "0"], 2, "usage"),
        (&["--json", "rm", "-w", "w", "-s", "s"], 2, "usage"),
        (&["--json", "gc", "--older-than", "30"], 2, "usage"),
        (&["--json", "frobnicate"], 2, "usage"),
        (&["--json"], 2, "usage"),
    ];
    for (args, code, kind) in cases {
        let out = m.run(args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        let v = json_error(&out);
        assert_eq!(v["error"]["kind"], *kind, "{args:?}: {v}");
    }
    let out = m
        .cmd()
        .args(["--json", "ls"])
        .env("CCWS_BUCKET", "b")
        .output()
        .unwrap();
    assert_eq!(json_error(&out)["error"]["kind"], "config");
    // Without --json, errors stay prose.
    let out = m.run(&["get", "no/such", "-"]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("ccws: "));
}

#[test]
fn run_keeps_stdout_for_its_agent_and_reports_to_a_file() {
    let m = Machine::new();
    let rep = m.path("report.json");
    let out = m
        .cmd()
        .args(["--json", "run", "-w", "w", "-s", "s", "--report"])
        .arg(&rep)
        .args(["--", "sh", "-c"])
        .arg(agent("one", "echo '{\"agent\":true}'"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        out.stdout, b"{\"agent\":true}\n",
        "stdout is the agent's, whole"
    );
    let r = report(&rep);
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["agent_exit_code"], 0, "{r}");
    assert_eq!(r["delivered"], true, "{r}");
    assert_eq!(r["setup"]["transcript"], "new", "{r}");
    assert_eq!(r["teardown"]["transcript"]["status"], "uploaded", "{r}");
    assert!(r["error"].is_null(), "{r}");
    let tmp_left: Vec<_> = std::fs::read_dir(m.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ccws-report"))
        .collect();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");

    // A failing agent, one that cannot start, a failing setup.
    let run = |args: &[&str]| {
        let mut all = vec!["run", "-w"];
        all.extend_from_slice(args);
        let mut c = m.cmd();
        c.args(&all[..3]).arg("--report").arg(&rep).args(&all[3..]);
        c.output().unwrap()
    };
    let out = run(&["w", "-s", "s", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let r = report(&rep);
    assert_eq!(
        (r["exit_code"].as_u64(), r["agent_exit_code"].as_u64()),
        (Some(3), Some(3))
    );
    let out = run(&["w", "-s", "s", "--", "/no/such/agent"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(report(&rep)["agent_exit_code"], 127);
    let out = run(&["../w", "-s", "s", "--", "true"]);
    assert_eq!(out.status.code(), Some(3));
    let r = report(&rep);
    assert!(
        r["setup"].is_null() && r["agent_exit_code"].is_null(),
        "{r}"
    );
    assert_eq!(r["error"]["kind"], "invalid_id", "{r}");
    assert_eq!(r["exit_code"], 3, "{r}");

    // A report that cannot be written stops the turn before it starts.
    let out = m
        .cmd()
        .args(["run", "-w", "w", "-s", "never", "--report"])
        .arg(m.path("no/such/dir/report.json"))
        .args(["--", "sh", "-c", "exit 9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report"));
    assert!(!m.session_dir("never").exists());

    // Into an inherited descriptor.
    let sh = format!(
        "exec {} run -w w -s s --report /dev/fd/3 -- true 3> {}",
        crate::CCWS,
        m.path("fd3.json").display()
    );
    let out = m.command("sh").args(["-c", &sh]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(report(&m.path("fd3.json"))["exit_code"], 0);
    // Into a FIFO a reader drains.
    let fifo = m.path("report.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = m
        .cmd()
        .args(["run", "-w", "w", "-s", "s", "--report"])
        .arg(&fifo)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_doc(&reader.join().unwrap())["delivered"], true);
    assert!(fifo.exists(), "the FIFO itself stays");
}

#[test]
fn strict_exits_75_when_the_agent_succeeded_but_something_is_only_queued() {
    let m = Machine::new();
    let rep = m.path("report.json");
    // One turn so that the session's transcript exists.
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s",
        "--",
        "sh",
        "-c",
        &agent("0", "true"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    // The agent blocks its own transcript's upload: a file where the
    // key's directory must be (moved back after each turn).
    let sessions = m.path("state/store/workspaces/w/sessions");
    let aside = m.path("sessions-aside");
    let block = format!(
        "mv '{0}' '{1}' && echo in-the-way > '{0}'",
        sessions.display(),
        aside.display()
    );
    let turn = |strict: bool, then: &str, blocked: bool| {
        let mut c = m.cmd();
        c.args(["run", "-w", "w", "-s", "s", "--report"]).arg(&rep);
        if strict {
            c.arg("--strict");
        }
        let then = if blocked {
            format!("{block} && {then}")
        } else {
            then.to_owned()
        };
        let out = c
            .args(["--", "sh", "-c"])
            .arg(agent("q", &then))
            .output()
            .unwrap();
        if blocked {
            std::fs::remove_file(&sessions).unwrap();
            std::fs::rename(&aside, &sessions).unwrap();
        }
        out
    };
    let out = turn(false, "true", true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "without --strict: the agent's 0"
    );
    let r = report(&rep);
    assert_eq!(r["delivered"], false, "{r}");
    assert_eq!(r["teardown"]["transcript"]["status"], "queued", "{r}");
    let out = turn(true, "true", true);
    assert_eq!(out.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--strict"));
    assert_eq!(report(&rep)["exit_code"], 75);
    // A failing agent's status wins over 75.
    let out = turn(true, "exit 4", true);
    assert_eq!(out.status.code(), Some(4));
    // Delivered (the outbox first): 0 again.
    assert_eq!(m.run(&["flush"]).status.code(), Some(0));
    let out = turn(true, "true", false);
    assert_eq!(out.status.code(), Some(0), "everything delivered");
    assert_eq!(report(&rep)["delivered"], true);
}

/// Run `args` with stdout a pipe whose reading end is already closed.
fn with_stdout_closed(m: &Machine, args: &[&str]) -> Output {
    let mut child = m
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    eprintln!("ccws {args:?} | (closed) -> {status:?}\n{err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_ne!(status.code(), Some(101), "{args:?}");
    Output {
        status,
        stdout: Vec::new(),
        stderr: err.into_bytes(),
    }
}

#[test]
fn a_closed_stdout_is_no_panic_and_no_half_set_up_session() {
    let m = Machine::new();
    for json in [false, true] {
        let mut args = vec!["setup", "-w", "w", "-s", "p"];
        if json {
            args.insert(0, "--json");
        }
        let out = with_stdout_closed(&m, &args);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("torn down again"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!m.session_dir("p").exists(), "json={json}: torn down");
    }
    // The session is free again (its owner, this process, is alive: a
    // session left set up would be refused): a setup and a teardown work.
    assert_eq!(
        m.run(&["setup", "-w", "w", "-s", "p"]).status.code(),
        Some(0)
    );
    assert_eq!(
        with_stdout_closed(&m, &["--json", "teardown", "-w", "w", "-s", "p"])
            .status
            .code(),
        Some(0)
    );
    assert!(!m.session_dir("p").exists());
    // run: its agent's output and its own go nowhere; the turn completes.
    let out = with_stdout_closed(
        &m,
        &[
            "--json",
            "run",
            "-w",
            "w",
            "-s",
            "r",
            "--",
            "sh",
            "-c",
            "echo hi; true",
        ],
    );
    assert!(out.status.code().is_some());
    assert!(!m.session_dir("r").exists());
    // Commands whose output is data stop writing, and exit as they would.
    let big = m.path("big");
    std::fs::write(&big, vec![b'x'; 1 << 20]).unwrap();
    assert_eq!(
        m.run(&["put", big.to_str().unwrap(), "big"]).status.code(),
        Some(0)
    );
    for args in [
        &["get", "big", "-"][..],
        &["--json", "ls"],
        &["ls", "w"],
        &["--json", "outbox"],
        &["--json", "flush"],
        &["component", "-"],
    ] {
        assert_eq!(
            with_stdout_closed(&m, args).status.code(),
            Some(0),
            "{args:?}"
        );
    }
}

#[test]
fn help_and_version_still_print() {
    let m = Machine::new();
    let out = m.run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes"));
    let out = m.run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    // With --json too: help is text on stdout, not an error.
    let out = m.run(&["--json", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!out.stdout.is_empty());
}

#[test]
fn logs_are_json_lines_or_plain_text_off_a_terminal() {
    let m = Machine::new();
    let turn = |c: &mut std::process::Command| {
        let out = c
            .args(["-v", "run", "-w", "w", "-s", "s", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stderr).unwrap()
    };
    for json in [
        turn(m.cmd().args(["--log-format", "json"])),
        turn(m.cmd().env("CCWS_LOG_FORMAT", "json")),
    ] {
        assert!(json.lines().count() >= 2, "{json}");
        for line in json.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
            assert!(v["timestamp"].is_string(), "{line}");
        }
        let done = json
            .lines()
            .find(|l| l.contains("teardown done"))
            .unwrap_or_else(|| panic!("{json}"));
        let v: Value = serde_json::from_str(done).unwrap();
        assert_eq!(
            v["transcript"], "missing",
            "statuses as --json names them: {done}"
        );
    }
    // Text, to a pipe: no colour codes.
    let text = turn(&mut m.cmd());
    assert!(text.contains("teardown done"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let out = m.run(&["--log-format", "yaml", "ls"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn configuration_quirks() {
    let m = Machine::new();
    // Set but empty means unset: the local store, no prefix.
    let out = m
        .cmd()
        .args(["run", "-w", "w", "-s", "s", "--", "sh", "-c"])
        .arg(agent("empty", "true"))
        .env("CCWS_BUCKET", "")
        .env("CCWS_PREFIX", "")
        .env("CCWS_LOG_FORMAT", "")
        .env("CCWS_CLEANUP_DAYS", "")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(m
        .path("state/store/workspaces/w/sessions/s.jsonl")
        .is_file());

    // get and put apply the prefix, as every other command does.
    let src = m.path("src");
    std::fs::write(&src, "prefixed").unwrap();
    let with_prefix = |args: &[&str]| {
        m.cmd()
            .env("CCWS_PREFIX", "team")
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(
        with_prefix(&["put", src.to_str().unwrap(), "x/y"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        std::fs::read_to_string(m.path("state/store/team/x/y")).unwrap(),
        "prefixed"
    );
    let out = with_prefix(&["get", "x/y", "-"]);
    assert_eq!(out.stdout, b"prefixed");
    assert_eq!(
        with_prefix(&["--prefix", "other", "get", "x/y", "-"])
            .status
            .code(),
        Some(4),
        "--prefix wins over CCWS_PREFIX"
    );
    // And the turns' objects are where `ls` under that prefix looks.
    let out = with_prefix(&["run", "-w", "pw", "-s", "s", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(m
        .path("state/store/team/workspaces/pw/claude-home.tar.gz")
        .is_file());
    let out = with_prefix(&["--json", "ls"]);
    let v = json_doc(&out.stdout);
    assert_eq!(v["workspaces"][0]["workspace"], "pw", "{v}");

    // With CCWS_* set, no usage line shows those options as required.
    let env_set = |c: &mut std::process::Command| {
        for (k, v) in [
            ("CCWS_BUCKET", "b"),
            ("CCWS_PREFIX", "p"),
            ("CCWS_LOCAL_STORE", "/nonexistent/store"),
            ("CCWS_TEMP_DIR", "/nonexistent/tmp"),
            ("CCWS_STATE_DIR", "/nonexistent/state"),
            ("CCWS_CLEANUP_DAYS", "3"),
            ("CCWS_LOG_FORMAT", "json"),
        ] {
            c.env(k, v);
        }
    };
    for args in [
        &["run"][..],
        &["setup", "-w", "w"],
        &["rm"],
        &["gc"],
        &["get"],
        &["run", "--help"],
        &["--help"],
    ] {
        let mut c = m.cmd();
        env_set(&mut c);
        let out = c.args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let usage = text
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("{args:?}: no usage line: {text}"));
        for opt in [
            "--bucket",
            "--prefix",
            "--local-store",
            "--temp-dir",
            "--state-dir",
            "--cleanup-days",
            "--log-format",
        ] {
            assert!(!usage.contains(opt), "{args:?}: {usage}");
        }
    }
    // Values that make no sense are configuration errors.
    for (k, v) in [("CCWS_LOG_FORMAT", "yaml"), ("CCWS_CLEANUP_DAYS", "soon")] {
        let out = m
            .cmd()
            .env(k, v)
            .args(["run", "-w", "w", "-s", "s", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{k}={v}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(k));
    }
}

/// Whether `program` can be run here.
fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let m = Machine::new();
    let script = |shell: &str| {
        let out = m.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        String::from_utf8(out.stdout).unwrap()
    };
    let zsh = script("zsh");
    assert!(zsh.starts_with("#compdef ccws"), "{zsh}");
    assert!(zsh.contains("--older-than") && zsh.contains("outbox"));
    let fish = script("fish");
    assert!(fish.contains("complete -c ccws") && fish.contains("page-size"));
    // bash: the script loads, and completes subcommands and their options.
    let bash = m.path("ccws.bash");
    std::fs::write(&bash, script("bash")).unwrap();
    let probe = format!(
        "source '{}'; \
         COMP_WORDS=(ccws l); COMP_CWORD=1; _ccws ccws l ccws; echo \"${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(ccws gc --ol); COMP_CWORD=2; _ccws ccws --ol gc; echo \"${{COMPREPLY[*]}}\"",
        bash.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got,
        "ls\n--older-than\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.run(&["completions", "tcsh"]).status.code(), Some(2));

    // The manual page: roff on stdout, or a page per command.
    let out = m.run(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH ccws 1"), "{page}");
    for sub in ["ls", "rm", "gc", "outbox", "run", "completions"] {
        assert!(
            page.contains(&format!("ccws\\-{sub}(1)")),
            "{sub} is not listed"
        );
    }
    let dir = m.path("man1");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(
        m.run(&["man", "--dir", dir.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let run_page = std::fs::read_to_string(dir.join("ccws-run.1")).unwrap();
    assert!(run_page.contains("strict") && run_page.contains("report"));
    assert!(dir.join("ccws-gc.1").is_file() && dir.join("ccws.1").is_file());
    if have("groff") {
        // It renders without a warning.
        let out = std::process::Command::new("sh")
            .args(["-c", "groff -man -Tutf8 -ww -z \"$1\" 2>&1", "sh"])
            .arg(dir.join("ccws-gc.1"))
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let m = Machine::new();
    if !have("script") {
        eprintln!("util-linux's script is not installed: no terminal to test on; skipped");
        return;
    }
    // On a terminal (script's pseudo-terminal): a spinner for setup and
    // teardown, cleared before the agent writes.
    let line = format!("{} run -w w -s s -- sh -c 'echo agent-output'", crate::CCWS);
    let out = m
        .command("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("setting up session s"), "{text:?}");
    assert!(text.contains("saving session s"), "{text:?}");
    assert!(
        text.contains("\u{1b}[2Kagent-output"),
        "cleared first: {text:?}"
    );
    // Off a terminal: none.
    let out = m.run(&["run", "-w", "w", "-s", "s", "--", "true"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("session s"));
}

#[test]
fn rm_asks_on_a_terminal() {
    let m = Machine::new();
    if !have("script") {
        eprintln!("util-linux's script is not installed: no terminal to test on; skipped");
        return;
    }
    let out = m.run(&[
        "run",
        "-w",
        "w",
        "-s",
        "s",
        "--",
        "sh",
        "-c",
        &agent("a", "true"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let transcript = m.path("state/store/workspaces/w/sessions/s.jsonl");
    let ask = |answer: &str| {
        let mut child = m
            .command("script")
            .args([
                "-qec",
                &format!("{} rm -w w -s s", crate::CCWS),
                "/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = ask("n\n");
    assert!(
        text.contains("object(s)") && text.contains("of session s of workspace w"),
        "{text}"
    );
    assert!(text.contains("[y/N]"), "{text}");
    assert_eq!(code, Some(1), "{text}");
    assert!(transcript.is_file(), "declined: nothing deleted");
    let (code, text) = ask("y\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(!transcript.exists(), "{text}");
}
