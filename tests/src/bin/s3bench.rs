//! S3 transport benchmark: upload and download one object to a local `s3s-fs` with ccws,
//! `rclone` and Python `boto3`, side by side; reports MB/s and peak RSS of each.
//!
//! Run: `cargo run --release -p ccws-tests --bin s3bench [-- SIZE_MIB [ROUNDS]]` (default
//! 200 MiB, 3 rounds; the tools take turns each round and the median round is reported).
//! Each transfer runs in its own child process under `/usr/bin/time -v` (peak RSS); ccws's
//! child is this binary itself (`s3bench ccws put|get ...`), calling the library directly;
//! `ccws-cli` is the `ccws` binary built beside it (`ccws put` / `ccws get`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ccws::s3::{PutCondition, S3Client, S3Config};
use ccws_tests::s3s::S3sServer;

const BOTO3: &str = r#"
import sys, boto3
from botocore.config import Config
op, ep, bucket, ak, sk, path, key = sys.argv[1:8]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
if op == "put":
    s3.upload_file(path, bucket, key)
else:
    s3.download_file(bucket, key, path)
"#;

/// One round of one tool: (upload secs, upload peak RSS KiB, download secs, download peak RSS KiB).
type Round = (f64, Option<u64>, f64, Option<u64>);

struct Conn {
    endpoint: String,
    bucket: String,
    ak: String,
    sk: String,
}

fn child_ccws(args: &[String]) {
    let [op, endpoint, bucket, ak, sk, path, key] = args else {
        panic!("usage: s3bench ccws put|get ENDPOINT BUCKET AK SK PATH KEY");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = S3Config::builder(endpoint, "us-east-1", bucket, ak, sk)
            .path_style(true)
            .build()
            .unwrap();
        let client = S3Client::new(cfg).unwrap();
        match op.as_str() {
            "put" => client
                .put_file(Path::new(path), key, PutCondition::None)
                .await
                .map(|_| ()),
            "get" => client.download_file(key, Path::new(path)).await.map(|_| ()),
            _ => panic!("op must be put or get"),
        }
        .unwrap_or_else(|e| panic!("ccws {op}: {e}"));
    });
}

/// Runs `cmd` (under `/usr/bin/time -v` when available); returns (seconds, peak RSS KiB).
fn measure(mut cmd: Vec<String>, envs: &[(String, String)], dir: &Path) -> (f64, Option<u64>) {
    let time_bin = Path::new("/usr/bin/time");
    let report = dir.join("time.txt");
    if time_bin.exists() {
        let mut wrapped = vec![
            time_bin.display().to_string(),
            "-v".into(),
            "-o".into(),
            report.display().to_string(),
        ];
        wrapped.append(&mut cmd);
        cmd = wrapped;
    }
    let start = Instant::now();
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        // Plain-HTTP loopback: no tool needs a CA bundle (an inherited AWS_CA_BUNDLE breaks
        // rclone's HTTP transport).
        .env_remove("AWS_CA_BUNDLE")
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("spawn");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = std::fs::read_to_string(&report).ok().and_then(|t| {
        t.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .and_then(|v| v.trim().parse().ok())
    });
    (secs, rss)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

fn tool_cmd(
    tool: &str,
    op: &str,
    c: &Conn,
    path: &Path,
    key: &str,
    dir: &Path,
) -> (Vec<String>, Vec<(String, String)>) {
    let p = path.display().to_string();
    match tool {
        "ccws" => (
            vec![
                std::env::current_exe().unwrap().display().to_string(),
                "ccws".into(),
                op.into(),
                c.endpoint.clone(),
                c.bucket.clone(),
                c.ak.clone(),
                c.sk.clone(),
                p,
                key.into(),
            ],
            vec![],
        ),
        "ccws-cli" => {
            // The `ccws` binary built beside this one, as a user runs it.
            let bin = std::env::current_exe().unwrap().with_file_name("ccws");
            let args = if op == "put" {
                vec!["put".to_string(), p, key.into()]
            } else {
                vec!["get".to_string(), key.into(), p]
            };
            let env = [
                ("CCWS_BUCKET", c.bucket.as_str()),
                ("AWS_ENDPOINT_URL", c.endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", c.ak.as_str()),
                ("AWS_SECRET_ACCESS_KEY", c.sk.as_str()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            (
                std::iter::once(bin.display().to_string())
                    .chain(args)
                    .collect(),
                env,
            )
        }
        "rclone" => {
            let remote = format!("bench:{}/{key}", c.bucket);
            let (src, dst) = if op == "put" {
                (p, remote)
            } else {
                (remote, p)
            };
            let env = [
                ("TYPE", "s3"),
                ("PROVIDER", "Other"),
                ("ACCESS_KEY_ID", &c.ak),
                ("SECRET_ACCESS_KEY", &c.sk),
                ("ENDPOINT", &c.endpoint),
                ("REGION", "us-east-1"),
                ("FORCE_PATH_STYLE", "true"),
            ]
            .iter()
            .map(|(k, v)| (format!("RCLONE_CONFIG_BENCH_{k}"), v.to_string()))
            .chain([("RCLONE_CONFIG".to_string(), "/dev/null".to_string())])
            .collect();
            (
                vec![
                    "rclone".into(),
                    "copyto".into(),
                    "--s3-no-check-bucket".into(),
                    src,
                    dst,
                ],
                env,
            )
        }
        "boto3" => {
            let script = dir.join("boto3_bench.py");
            std::fs::write(&script, BOTO3).unwrap();
            (
                vec![
                    "python3".into(),
                    script.display().to_string(),
                    op.into(),
                    c.endpoint.clone(),
                    c.bucket.clone(),
                    c.ak.clone(),
                    c.sk.clone(),
                    p,
                    key.into(),
                ],
                vec![],
            )
        }
        _ => unreachable!(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("ccws") {
        return child_ccws(&args[1..]);
    }
    let mib: usize = args
        .first()
        .map(|s| s.parse().expect("SIZE_MIB"))
        .unwrap_or(200);
    let rounds: usize = args.get(1).map(|s| s.parse().expect("ROUNDS")).unwrap_or(3);
    let size = mib * 1024 * 1024;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(S3sServer::start());
    let c = Conn {
        endpoint: server.endpoint(),
        bucket: server.bucket.clone(),
        ak: server.access_key.clone(),
        sk: server.secret_key.clone(),
    };
    let dir = tempfile::Builder::new()
        .prefix("ccws-s3bench-")
        .tempdir()
        .unwrap();
    let src: PathBuf = dir.path().join("src.bin");
    {
        // Pseudo-random (incompressible) content, written in 1 MiB blocks.
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
    }
    println!(
        "s3bench: {mib} MiB object, s3s-fs 0.14.1 on {} (loopback), /usr/bin/time -v for peak RSS",
        c.endpoint
    );
    let tools = ["ccws", "ccws-cli", "rclone", "boto3"];
    // Per tool: (upload secs, upload RSS, download secs, download RSS) per round.
    let mut runs: Vec<Vec<Round>> = vec![Vec::new(); tools.len()];
    for _ in 0..rounds {
        for (i, tool) in tools.iter().enumerate() {
            let key = format!("bench/{tool}.bin");
            let (cmd, env) = tool_cmd(tool, "put", &c, &src, &key, dir.path());
            let (up_s, up_rss) = measure(cmd, &env, dir.path());
            let dst = dir.path().join(format!("dl-{tool}.bin"));
            let (cmd, env) = tool_cmd(tool, "get", &c, &dst, &key, dir.path());
            let (down_s, down_rss) = measure(cmd, &env, dir.path());
            assert!(same_file(&src, &dst), "{tool}: downloaded bytes differ");
            std::fs::remove_file(&dst).unwrap();
            let _ = std::fs::remove_file(server.bucket_dir().join(&key));
            runs[i].push((up_s, up_rss, down_s, down_rss));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rows: Vec<_> = tools
        .iter()
        .zip(&runs)
        .map(|(tool, r)| {
            (
                *tool,
                median(r.iter().map(|x| x.0).collect()),
                r.iter().filter_map(|x| x.1).max(),
                median(r.iter().map(|x| x.2).collect()),
                r.iter().filter_map(|x| x.3).max(),
            )
        })
        .collect();
    let mb = size as f64 / 1e6;
    let rss = |r: Option<u64>| r.map_or("n/a".to_string(), |k| format!("{:.0}", k as f64 / 1024.0));
    println!(
        "| tool | upload MB/s | upload peak RSS MiB | download MB/s | download peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (tool, up_s, up_rss, down_s, down_rss) in rows {
        println!(
            "| {tool} | {:.0} | {} | {:.0} | {} |",
            mb / up_s,
            rss(up_rss),
            mb / down_s,
            rss(down_rss)
        );
    }
    println!(
        "(median of {rounds} rounds; peak RSS = max over rounds; MB = 10^6 bytes; wall time of the whole child process, start-up included)"
    );
}
