//! `ccws-bench scale`: per-turn cost as a workspace's history grows.
//!
//! A workspace is built up by real turns of the stand-in for Claude Code
//! (`tests/fake_claude.py`), each session writing about 5 MB of its own
//! (a tool result and a debug log of 2.5 MB of random text each), through
//! `ccws run` against s3s-fs. After 1, 50 and 200 sessions (or
//! CCWS_SCALE_SESSIONS), a few measured turns resume the first session and
//! change under 1 MB (200 KB of tool result and debug log, transcript
//! lines, memory, the shared files): `ccws setup`, the agent, `ccws
//! teardown`, each timed as its own process with its peak RSS, and the
//! bytes of the objects read and written. Beside it, the Python seed
//! (`bench/turn_boto3.py`, boto3 + tarfile) doing the same turn on the home
//! the seed's model would have by then: every session's files outside its
//! own project directory stay in the shared home.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use ccws::s3::{PutCondition, S3Client};
use ccws_tests::s3s::S3sServer;

use super::measure::{self, median};
use super::table::{ratio, secs, Table};
use super::Opts;

const WS: &str = "scale";
const PY_PREFIX: &str = "seed/";
/// Bytes of each session's tool result and debug log when it is built.
const BUILD_BYTES: &str = "2500000";
/// Bytes of each measured turn's tool result and debug-log append.
const TURN_BYTES: &str = "200000";

fn id(n: usize) -> String {
    format!("{n:08x}-5ca1-4e00-8000-000000000000")
}

struct Ctx {
    ccws: PathBuf,
    fake: PathBuf,
    script: PathBuf,
    work: PathBuf,
    env: Vec<(&'static str, String)>,
    endpoint: String,
    bucket: String,
    client: S3Client,
}

impl Ctx {
    fn ccws(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ccws);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .env("CCWS_BUCKET", &self.bucket)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("CCWS_TEMP_DIR", self.work.join("tmp"))
            .env("CCWS_STATE_DIR", self.work.join("state"))
            .args(args);
        c
    }

    fn fake(&self, dir: &str, env: &[(String, String)], args: &[&str], bytes: &str) -> Command {
        let mut c = Command::new("python3");
        c.arg(&self.fake)
            .args(["-p", "go on"])
            .args(args)
            .current_dir(dir)
            .envs(env.iter().cloned())
            .env("FAKE_CLAUDE_BYTES", bytes)
            .env("FAKE_CLAUDE_RANDOM", "1");
        c
    }

    async fn sizes(&self, prefix: &str) -> BTreeMap<String, (u64, Option<String>)> {
        let mut out = BTreeMap::new();
        let keys = [
            format!("{prefix}workspaces/{WS}/claude-home.tar.gz"),
            format!("{prefix}workspaces/{WS}/sessions/{}.jsonl", id(1)),
            format!("{prefix}workspaces/{WS}/sessions/{}/transcript.json", id(1)),
            format!("{prefix}workspaces/{WS}/sessions/{}/state.tar.gz", id(1)),
            format!("{prefix}workspaces/{WS}/sessions/{}/state.json", id(1)),
        ];
        for key in keys {
            if let Ok(m) = self.client.head(&key).await {
                out.insert(key, (m.size, m.etag));
            }
        }
        // The transcript parts and the state deltas their indexes list.
        for (index, list) in [("transcript.json", "parts"), ("state.json", "deltas")] {
            let index = format!("{prefix}workspaces/{WS}/sessions/{}/{index}", id(1));
            let Ok(obj) = self.client.get(&index).await else {
                continue;
            };
            let mut bytes = Vec::new();
            let mut body = obj.body;
            if tokio::io::AsyncReadExt::read_to_end(&mut body, &mut bytes)
                .await
                .is_err()
            {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            for p in v[list].as_array().into_iter().flatten() {
                let (Some(key), Some(len)) = (p["key"].as_str(), p["len"].as_u64()) else {
                    continue;
                };
                out.insert(key.to_owned(), (len, Some(key.to_owned())));
            }
        }
        out
    }
}

/// Setup, the agent, teardown: wall times, peak RSS, bytes read and written.
struct Turn {
    setup: f64,
    teardown: f64,
    rss_kib: u64,
    down: u64,
    up: u64,
}

fn env_of(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

fn ccws_turn(ctx: &Ctx, rt: &tokio::runtime::Runtime) -> Result<Turn> {
    let before = rt.block_on(ctx.sizes(""));
    let mut setup = ctx.ccws(&["setup", "-w", WS, "-s", &id(1)]);
    setup.args(["--owner-pid", &std::process::id().to_string()]);
    let s = measure::run(setup)?;
    let env = env_of(&s.stdout);
    let dir = env
        .iter()
        .find(|(k, _)| k == "CCWS_PROJECT_DIR")
        .map(|(_, v)| v.clone())
        .context("ccws setup printed no CCWS_PROJECT_DIR")?;
    let status = ctx
        .fake(&dir, &env, &["--resume", &id(1)], TURN_BYTES)
        .status()?;
    ensure!(status.success(), "the agent failed");
    let t = measure::run(ctx.ccws(&["teardown", "-w", WS, "-s", &id(1)]))?;
    let after = rt.block_on(ctx.sizes(""));
    let down = before.values().map(|(s, _)| s).sum();
    let up = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v) && !k.ends_with(".good.tar.gz"))
        .map(|(_, (s, _))| s)
        .sum();
    Ok(Turn {
        setup: s.wall,
        teardown: t.wall,
        rss_kib: s.rss_kib.unwrap_or(0).max(t.rss_kib.unwrap_or(0)),
        down,
        up,
    })
}

fn python(ctx: &Ctx, sub: &str) -> Command {
    let mut c = Command::new("python3");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(ctx.env.iter().map(|(k, v)| (*k, v)))
        .arg(&ctx.script)
        .arg(sub)
        .args(["--endpoint", &ctx.endpoint, "--bucket", &ctx.bucket])
        .args([
            "--workspace",
            WS,
            "--session",
            &id(1),
            "--prefix",
            PY_PREFIX,
        ])
        .arg("--temp-dir")
        .arg(ctx.work.join("py-tmp"));
    c
}

fn python_turn(ctx: &Ctx, rt: &tokio::runtime::Runtime) -> Result<Turn> {
    let before = rt.block_on(ctx.sizes(PY_PREFIX));
    let s = measure::run(python(ctx, "setup"))?;
    let v: serde_json::Value = serde_json::from_str(&s.stdout)?;
    let claude = v["claude_dir"].as_str().context("claude_dir")?.to_owned();
    let dir = Path::new(&claude)
        .parent()
        .context("no session dir")?
        .join("project");
    let env = vec![("CLAUDE_CONFIG_DIR".to_string(), claude)];
    let status = ctx
        .fake(
            &dir.to_string_lossy(),
            &env,
            &["--resume", &id(1)],
            TURN_BYTES,
        )
        .status()?;
    ensure!(status.success(), "the agent failed under the seed");
    let t = measure::run(python(ctx, "teardown"))?;
    let after = rt.block_on(ctx.sizes(PY_PREFIX));
    Ok(Turn {
        setup: s.wall,
        teardown: t.wall,
        rss_kib: s.rss_kib.unwrap_or(0).max(t.rss_kib.unwrap_or(0)),
        down: before.values().map(|(s, _)| s).sum(),
        up: after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(_, (s, _))| s)
            .sum(),
    })
}

/// The home the seed's model would have after `n` sessions: every file the
/// sessions wrote outside their own project directories (the fake's first
/// turns, one working directory each), packed and uploaded, with the first
/// session's transcript.
fn seed_home(ctx: &Ctx, rt: &tokio::runtime::Runtime, n: usize) -> Result<()> {
    let home = ctx.work.join("seed-home");
    let _ = fs::remove_dir_all(&home);
    fs::create_dir_all(&home)?;
    let env = vec![("CLAUDE_CONFIG_DIR".to_string(), home.display().to_string())];
    let py = ctx
        .work
        .join("py-tmp")
        .canonicalize()
        .unwrap_or(ctx.work.join("py-tmp"));
    let mut first_transcript = None;
    for i in 1..=n {
        // The seed's layout: <temp>/cc-broker/sess_<id>/project.
        let cwd = py
            .join("cc-broker")
            .join(format!("sess_{}", id(i)))
            .join("project");
        fs::create_dir_all(&cwd)?;
        let status = ctx
            .fake(
                &cwd.to_string_lossy(),
                &env,
                &["--session-id", &id(i)],
                BUILD_BYTES,
            )
            .status()?;
        ensure!(status.success(), "building the seed's home");
        let project = cwd
            .to_string_lossy()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let dir = home.join("projects").join(&project);
        if i == 1 {
            first_transcript = Some(fs::read(dir.join(format!("{}.jsonl", id(i))))?);
        }
        fs::remove_dir_all(&dir)?;
        fs::remove_dir_all(&cwd)?;
    }
    let packed = ctx.work.join("seed-home.tar.gz");
    ccws_archive::pack_file(&home, &packed, &ccws_archive::PackOptions::default(), None)?;
    rt.block_on(async {
        ctx.client
            .put_file(
                &packed,
                &format!("{PY_PREFIX}workspaces/{WS}/claude-home.tar.gz"),
                PutCondition::None,
            )
            .await?;
        ctx.client
            .put_bytes(
                &format!("{PY_PREFIX}workspaces/{WS}/sessions/{}.jsonl", id(1)),
                first_transcript.unwrap_or_default().into(),
                PutCondition::None,
            )
            .await?;
        anyhow::Ok(())
    })?;
    fs::remove_dir_all(&home)?;
    Ok(())
}

pub fn suite(opts: &Opts, work: &Path, ccws: PathBuf) -> Result<()> {
    println!("\n## Scale suite\n");
    fs::create_dir_all(work)?;
    let checkpoints: Vec<usize> = std::env::var("CCWS_SCALE_SESSIONS")
        .unwrap_or_else(|_| "1,50,200".into())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .context("CCWS_SCALE_SESSIONS: a comma-separated list of session counts")?;
    let runs = opts.runs(3);
    let rt = tokio::runtime::Runtime::new()?;
    let server = rt.block_on(S3sServer::start());
    let ctx = Ctx {
        ccws,
        fake: Path::new(env!("CARGO_MANIFEST_DIR")).join("fake_claude.py"),
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/turn_boto3.py"),
        work: work.to_path_buf(),
        env: vec![
            ("AWS_ACCESS_KEY_ID", server.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", server.secret_key.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            (
                "CCWS_CACHE_DIR",
                work.join("compile-cache").display().to_string(),
            ),
            ("HOME", work.join("home-dir").display().to_string()),
        ],
        endpoint: server.endpoint(),
        bucket: server.bucket.clone(),
        client: server.client(),
    };
    fs::create_dir_all(work.join("py-tmp"))?;
    let mut table = Table::new(&[
        "sessions",
        "tool",
        "setup",
        "teardown",
        "setup + teardown",
        "read",
        "written",
        "peak RSS",
    ]);
    let mb = |b: u64| format!("{:.2} MB", b as f64 / 1e6);
    let mut built = 0;
    for &n in &checkpoints {
        while built < n {
            built += 1;
            let sid = id(built);
            let agent = format!(
                "FAKE_CLAUDE_BYTES={BUILD_BYTES} FAKE_CLAUDE_RANDOM=1 exec python3 {} -p start --session-id {sid}",
                ctx.fake.display()
            );
            let out = ctx
                .ccws(&["run", "-w", WS, "-s", &sid, "--", "sh", "-c", &agent])
                .output()?;
            ensure!(
                out.status.success(),
                "building session {built}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        seed_home(&ctx, &rt, n)?;
        let (mut c, mut p) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            c.push(ccws_turn(&ctx, &rt)?);
            p.push(python_turn(&ctx, &rt)?);
        }
        for (name, turns) in [("ccws", &c), ("python seed (boto3 + tarfile)", &p)] {
            let med = |f: fn(&Turn) -> f64| median(&turns.iter().map(f).collect::<Vec<_>>());
            table.row(vec![
                n.to_string(),
                name.into(),
                secs(med(|t| t.setup)),
                secs(med(|t| t.teardown)),
                secs(med(|t| t.setup + t.teardown)),
                mb(med(|t| t.down as f64) as u64),
                mb(med(|t| t.up as f64) as u64),
                format!("{:.0} MiB", med(|t| t.rss_kib as f64) / 1024.0),
            ]);
        }
        let med =
            |ts: &[Turn]| median(&ts.iter().map(|t| t.setup + t.teardown).collect::<Vec<_>>());
        println!("after {n} sessions: ccws/seed {}", ratio(med(&c), med(&p)));
    }
    println!(
        "\nPer-turn cost, median of {runs} turns that resume the first session and change under \
         1 MB, each command its own process (start-up included), against s3s-fs on loopback; \
         read / written = bytes of the objects the turn downloaded / uploaded:\n"
    );
    table.print();
    drop(server);
    Ok(())
}
