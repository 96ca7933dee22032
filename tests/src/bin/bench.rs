//! `ccws-bench`: the side-by-side benchmarks behind BENCHMARKS.md.
//!
//! ```text
//! cargo build --release -p ccws -p ccws-tests
//! cargo run --release -p ccws-tests --bin ccws-bench -- archive|turn|all [--dir DIR] [--runs N]
//! ```
//!
//! * `archive`: pack and unpack a ~100 MB mixed tree and a 20,000-file tree
//!   with the guest component (wasmtime) as ccws runs it (pack: a tar
//!   instance and one deflate instance per CPU; unpack: a gunzip and a tar
//!   instance) and in one instance, the same crate built natively (one
//!   thread, and the same stages on threads), and GNU `tar -czf` /
//!   `tar -xzf`; wall time and CPU time (medians), archive size, peak RSS.
//! * `turn`: per-turn overhead (`ccws setup` + `ccws teardown`) against a
//!   local s3s-fs server, next to `bench/turn_boto3.py` (the seed's behaviour
//!   in Python), plus the cold start of the `ccws` binary.
//!
//! Every measured variant runs as its own child process, so that its peak
//! RSS can be read (via `/usr/bin/time -f %M` when present). The guest and
//! native variants re-invoke this binary as `ccws-bench one ...`, which times
//! the pack or unpack call alone (not process start, not component loading).
//! `CCWS_BENCH_COMPONENT=path.wasm` makes the guest variant load another
//! build of the component instead of the embedded one (to compare builds).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

const USAGE: &str = "usage: ccws-bench <archive|turn|scale|all> [--dir DIR] [--runs N] [--keep]\n\
  scale: CCWS_SCALE_SESSIONS=1,50,200 sets the session counts measured";

#[path = "../bench_scale.rs"]
mod scale;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(suite) = args.first() else {
        bail!("{USAGE}");
    };
    if suite == "one" {
        return child::one(&args[1..]);
    }
    if matches!(suite.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    let opts = Opts::parse(&args[1..])?;
    machine::print_header();
    let run_archive = matches!(suite.as_str(), "archive" | "all");
    let run_turn = matches!(suite.as_str(), "turn" | "all");
    let run_scale = matches!(suite.as_str(), "scale" | "all");
    ensure!(
        run_archive || run_turn || run_scale,
        "unknown suite {suite:?}\n{USAGE}"
    );
    let work = opts.work_dir()?;
    if run_archive {
        archive::suite(&opts, &work.path().join("archive"))?;
    }
    if run_turn {
        turn::suite(&opts, &work.path().join("turn"))?;
    }
    if run_scale {
        scale::suite(&opts, &work.path().join("scale"), turn::ccws_binary()?)?;
    }
    if opts.keep {
        let kept = work.keep();
        println!("\nwork dir kept at {}", kept.display());
    }
    Ok(())
}

/// Command-line options shared by the suites.
struct Opts {
    /// Parent of the work directory (default: the OS temp dir).
    dir: Option<PathBuf>,
    /// Override the number of timed runs per measurement.
    runs: Option<usize>,
    /// Keep the work directory afterwards.
    keep: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut opts = Opts {
            dir: None,
            runs: None,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--dir" => opts.dir = Some(it.next().context("--dir needs a value")?.into()),
                "--runs" => opts.runs = Some(it.next().context("--runs needs a value")?.parse()?),
                "--keep" => opts.keep = true,
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        Ok(opts)
    }

    fn runs(&self, default: usize) -> usize {
        self.runs.unwrap_or(default).max(1)
    }

    fn work_dir(&self) -> Result<tempfile::TempDir> {
        let b = tempfile::Builder::new().prefix("ccws-bench-").to_owned();
        Ok(match &self.dir {
            Some(d) => {
                fs::create_dir_all(d)?;
                b.tempdir_in(d)?
            }
            None => b.tempdir()?,
        })
    }
}

/// Running a child process and measuring it.
mod measure {
    use super::*;

    /// One finished child process.
    pub struct Run {
        /// Wall time seen by the parent, seconds.
        pub wall: f64,
        /// Peak RSS of the child (and its descendants, whichever was largest), KiB.
        pub rss_kib: Option<u64>,
        /// User + system CPU time of the child and its descendants, seconds.
        pub cpu: Option<f64>,
        pub stdout: String,
    }

    fn gnu_time() -> Option<&'static Path> {
        let p = Path::new("/usr/bin/time");
        p.is_file().then_some(p)
    }

    /// Run `cmd` to completion (under `/usr/bin/time` when present), failing on a non-zero exit.
    pub fn run(cmd: Command) -> Result<Run> {
        let rss_file = tempfile::NamedTempFile::new()?;
        let mut wrapped = match gnu_time() {
            Some(time) => {
                let mut w = Command::new(time);
                w.args(["-f", "%M %U %S", "-o"]).arg(rss_file.path());
                w.arg(cmd.get_program()).args(cmd.get_args());
                for (k, v) in cmd.get_envs() {
                    match v {
                        Some(v) => w.env(k, v),
                        None => w.env_remove(k),
                    };
                }
                if let Some(d) = cmd.get_current_dir() {
                    w.current_dir(d);
                }
                w
            }
            None => cmd,
        };
        wrapped.stdin(Stdio::null());
        let start = Instant::now();
        let out: Output = wrapped
            .output()
            .with_context(|| format!("running {:?}", wrapped.get_program()))?;
        let wall = start.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "{:?} failed ({}): {}",
            wrapped,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // `time` writes its line last (after any output of its own).
        let line = fs::read_to_string(rss_file.path())
            .ok()
            .and_then(|s| s.lines().last().map(str::to_owned))
            .unwrap_or_default();
        let fields: Vec<f64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let (rss_kib, cpu) = match fields[..] {
            [rss, user, sys] => (Some(rss as u64), Some(user + sys)),
            _ => (None, None),
        };
        Ok(Run {
            wall,
            rss_kib,
            cpu,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }

    /// The median (upper median for an even count).
    pub fn median(xs: &[f64]) -> f64 {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// `key=value` from a child's output.
    pub fn field(stdout: &str, key: &str) -> Result<f64> {
        stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key}= in {stdout:?}"))?
            .parse()
            .context("parsing a child's timing")
    }
}

/// Markdown tables, padded so they read well in a terminal too.
mod table {
    pub struct Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
        /// How many leading columns are text (left-aligned); the rest are numbers.
        text_columns: usize,
    }

    impl Table {
        pub fn new(header: &[&str]) -> Table {
            Table {
                header: header.iter().map(|s| s.to_string()).collect(),
                rows: Vec::new(),
                text_columns: 1,
            }
        }

        pub fn text_columns(mut self, n: usize) -> Table {
            self.text_columns = n;
            self
        }

        pub fn row(&mut self, cells: Vec<String>) {
            assert_eq!(cells.len(), self.header.len(), "row width");
            self.rows.push(cells);
        }

        pub fn print(&self) {
            let widths: Vec<usize> = (0..self.header.len())
                .map(|i| {
                    self.rows
                        .iter()
                        .map(|r| r[i].len())
                        .chain([self.header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[String]| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| {
                        if i < self.text_columns {
                            format!("{c:<w$}")
                        } else {
                            format!("{c:>w$}")
                        }
                    })
                    .collect();
                println!("| {} |", padded.join(" | "));
            };
            line(&self.header);
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i < self.text_columns {
                        "-".repeat(w + 2)
                    } else {
                        format!("{}:", "-".repeat(w + 1))
                    }
                })
                .collect();
            println!("|{}|", rule.join("|"));
            for r in &self.rows {
                line(r);
            }
        }
    }

    pub fn secs(s: f64) -> String {
        if s < 1.0 {
            format!("{:.1} ms", s * 1e3)
        } else {
            format!("{s:.2} s")
        }
    }

    pub fn mib(bytes: u64) -> String {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }

    pub fn rss(kib: Option<u64>) -> String {
        kib.map_or("n/a".into(), |k| mib(k * 1024))
    }

    pub fn ratio(a: f64, b: f64) -> String {
        format!("{:.2}", a / b)
    }
}

/// The machine the figures were taken on.
mod machine {
    use super::*;

    pub fn cpu_model() -> String {
        fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into())
    }

    pub fn print_header() {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .next()
                    .map(|l| l.split_whitespace().nth(1).map(str::to_string))
            })
            .flatten()
            .and_then(|k| k.parse::<u64>().ok())
            .map_or("?".into(), |k| {
                format!("{:.0} GiB", k as f64 / (1 << 20) as f64)
            });
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "machine: {cpus} CPUs (nproc), {}, {mem} RAM, Linux {}",
            cpu_model(),
            kernel.trim()
        );
        println!(
            "load average at start: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// Deterministic test data.
mod gen {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, RngCore, SeedableRng};

    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "that",
        "for",
        "it",
        "as",
        "with",
        "on",
        "fn",
        "let",
        "mut",
        "return",
        "self",
        "struct",
        "impl",
        "match",
        "Some",
        "None",
        "Ok",
        "Err",
        "workspace",
        "session",
        "memory",
        "archive",
        "upload",
        "teardown",
        "setup",
        "config",
        "file",
        "path",
        "error",
        "value",
        "user",
        "assistant",
        "tool",
        "result",
        "message",
        "content",
        "project",
        "claude",
        "directory",
        "stream",
        "bucket",
        "object",
        "request",
        "response",
        "timeout",
        "retry",
        "token",
        "model",
        "prompt",
        "summary",
        "notes",
        "todo",
        "remember",
        "prefers",
        "always",
        "never",
        "because",
        "should",
        "could",
        "would",
    ];

    /// What a generated tree holds.
    #[derive(Default, Clone, Copy)]
    pub struct Stats {
        pub files: u64,
        pub bytes: u64,
    }

    impl Stats {
        fn add(&mut self, len: usize) {
            self.files += 1;
            self.bytes += len as u64;
        }
    }

    /// Text-like bytes: lines of words and numbers (gzip -6 gets about 3-4x).
    pub fn text(rng: &mut StdRng, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        while out.len() < len {
            let words = rng.random_range(4..16);
            for i in 0..words {
                if i > 0 {
                    out.push(b' ');
                }
                if rng.random_ratio(1, 8) {
                    out.extend_from_slice(rng.random_range(0..100_000u32).to_string().as_bytes());
                } else {
                    out.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
                }
            }
            out.push(b'\n');
        }
        out.truncate(len);
        out
    }

    /// Incompressible bytes.
    pub fn random(rng: &mut StdRng, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        rng.fill_bytes(&mut out);
        out
    }

    fn write(root: &Path, rel: &str, data: &[u8], stats: &mut Stats) -> Result<()> {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap())?;
        fs::write(&p, data).with_context(|| p.display().to_string())?;
        stats.add(data.len());
        Ok(())
    }

    /// ~100 MB in a few hundred files of 4 KiB-2 MiB (log-uniform), half of
    /// the bytes text-like, half random.
    pub fn mixed_tree(root: &Path, seed: u64) -> Result<Stats> {
        const TOTAL: u64 = 100_000_000;
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut text_bytes, mut random_bytes) = (0u64, 0u64);
        let mut stats = Stats::default();
        let mut i = 0;
        while stats.bytes < TOTAL {
            let len = (rng.random_range(12.0f64..21.0).exp2() as u64).min(TOTAL - stats.bytes);
            let rel = format!("d{:02}/s{}/f{i:04}", i % 12, i % 5);
            if text_bytes <= random_bytes {
                text_bytes += len;
                write(
                    root,
                    &format!("{rel}.txt"),
                    &text(&mut rng, len as usize),
                    &mut stats,
                )?;
            } else {
                random_bytes += len;
                write(
                    root,
                    &format!("{rel}.bin"),
                    &random(&mut rng, len as usize),
                    &mut stats,
                )?;
            }
            i += 1;
        }
        Ok(stats)
    }

    /// 20,000 files of 100 B-4 KiB in 20 x 10 directories; 3 in 4 text-like.
    pub fn small_tree(root: &Path, seed: u64) -> Result<Stats> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut stats = Stats::default();
        for i in 0..20_000 {
            let len = rng.random_range(100..=4096);
            let rel = format!("d{:02}/s{}/f{i:05}", i / 1000, (i / 100) % 10);
            let data = if i % 4 == 3 {
                random(&mut rng, len)
            } else {
                text(&mut rng, len)
            };
            write(root, &format!("{rel}.txt"), &data, &mut stats)?;
        }
        Ok(stats)
    }

    /// A claude-home of ~10 MB in ~2,000 files: settings, many small memory
    /// notes across projects, todos, and some larger transcripts (jsonl) of
    /// other sessions. `MEMORY.md` of workspace `ws` is the file a turn changes.
    pub fn claude_home(root: &Path, ws: &str, seed: u64) -> Result<Stats> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut stats = Stats::default();
        let json = |rng: &mut StdRng, n: usize| -> Vec<u8> {
            let items: Vec<String> = (0..n)
                .map(|i| format!("\"k{i}\": {}", rng.random_range(0..1000)))
                .collect();
            format!("{{{}}}\n", items.join(", ")).into_bytes()
        };
        write(root, "settings.json", &json(&mut rng, 40), &mut stats)?;
        write(root, ".credentials.json", &json(&mut rng, 4), &mut stats)?;
        write(root, "statsig/cache.json", &json(&mut rng, 400), &mut stats)?;
        let memory = format!("projects/ws_{ws}/memory");
        write(
            root,
            &format!("{memory}/MEMORY.md"),
            &text(&mut rng, 4000),
            &mut stats,
        )?;
        for i in 0..400 {
            let len = rng.random_range(500..6000);
            write(
                root,
                &format!("{memory}/note-{i:03}.md"),
                &text(&mut rng, len),
                &mut stats,
            )?;
        }
        for p in 0..30 {
            for i in 0..45 {
                let len = rng.random_range(300..5000);
                let rel = format!("projects/-old-project-{p:02}/memory/n{i:02}.md");
                write(root, &rel, &text(&mut rng, len), &mut stats)?;
            }
        }
        for i in 0..150 {
            let n = rng.random_range(2..30);
            write(
                root,
                &format!("todos/t{i:03}.json"),
                &json(&mut rng, n),
                &mut stats,
            )?;
        }
        for i in 0..25 {
            let len = rng.random_range(100_000..400_000);
            let rel = format!("projects/-old-project-{:02}/sess-{i:02}.jsonl", i % 30);
            write(root, &rel, &jsonl(&mut rng, len), &mut stats)?;
        }
        Ok(stats)
    }

    /// Transcript-like JSON lines.
    pub fn jsonl(rng: &mut StdRng, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 256);
        while out.len() < len {
            let n = rng.random_range(50..600);
            let body = String::from_utf8(text(rng, n)).unwrap();
            let line = serde_json::json!({"type": "assistant", "uuid": rng.random::<u64>(),
                "message": {"role": "assistant", "content": body}});
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Files and bytes under `root` (regular files only).
    pub fn count(root: &Path) -> Result<Stats> {
        let mut stats = Stats::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir)? {
                let e = e?;
                let ft = e.file_type()?;
                if ft.is_dir() {
                    stack.push(e.path());
                } else if ft.is_file() {
                    stats.add(e.metadata()?.len() as usize);
                }
            }
        }
        Ok(stats)
    }
}

/// The hidden `one` subcommand: a single pack or unpack in this process.
mod child {
    use super::*;
    use ccws::archive::{Archiver, SandboxConfig};

    /// `one <guest|guest-1|native|native-pipe> <pack|unpack> FROM TO CACHE_DIR`;
    /// prints `secs=` (the call alone) and, for the guest, `load=` (loading
    /// the component). `guest` runs as ccws does on a multi-core machine
    /// (pack: a tar instance and one deflate instance per CPU; unpack: a
    /// gunzip and a tar instance), `guest-1` in one instance; either with
    /// `-nocap` runs without the CPU cap (`SandboxConfig::cpu_time = None`);
    /// `native-pipe` runs the same stages natively on threads.
    pub fn one(args: &[String]) -> Result<()> {
        let [variant, op, from, to, cache] = args else {
            bail!(
                "usage: ccws-bench one <guest|guest-1|guest-nocap|guest-1-nocap|native|\
                 native-pipe> <pack|unpack> FROM TO CACHE_DIR"
            );
        };
        let (from, to) = (Path::new(from), Path::new(to));
        match variant.as_str() {
            "guest" | "guest-1" | "guest-nocap" | "guest-1-nocap" => {
                guest(variant, op, from, to, Path::new(cache))
            }
            "native" => native(op, from, to),
            "native-pipe" => native_pipe(op, from, to),
            v => bail!("unknown variant {v:?}"),
        }
    }

    fn guest(variant: &str, op: &str, from: &Path, to: &Path, cache: &Path) -> Result<()> {
        // The same runtime the `ccws` binary uses.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let t = Instant::now();
        let config = SandboxConfig {
            cache_dir: Some(cache.to_path_buf()),
            pipeline: !variant.starts_with("guest-1"),
            cpu_time: if variant.ends_with("-nocap") {
                None
            } else {
                SandboxConfig::default().cpu_time
            },
            ..SandboxConfig::default()
        };
        // Another build of the component (e.g. with other target features) to compare.
        let archiver = match std::env::var_os("CCWS_BENCH_COMPONENT") {
            Some(wasm) => Archiver::with_component(&fs::read(wasm)?, config)?,
            None => Archiver::new(config)?,
        };
        let load = t.elapsed().as_secs_f64();
        let t = Instant::now();
        rt.block_on(async {
            match op {
                "pack" => {
                    let o = ccws::archive::PackOptions::default();
                    archiver.pack_file(from, to, &o, None).await
                }
                "unpack" => {
                    let o = ccws::archive::UnpackOptions::default();
                    archiver.unpack_file(from, to, &o, None).await
                }
                op => panic!("unknown op {op:?}"),
            }
        })?;
        println!("secs={} load={load}", t.elapsed().as_secs_f64());
        Ok(())
    }

    fn native(op: &str, from: &Path, to: &Path) -> Result<()> {
        let t = Instant::now();
        match op {
            "pack" => {
                let o = ccws_archive::PackOptions::default();
                ccws_archive::pack_file(from, to, &o, None)?
            }
            "unpack" => {
                let o = ccws_archive::UnpackOptions::default();
                ccws_archive::unpack_file(from, to, &o, None)?
            }
            op => bail!("unknown op {op:?}"),
        };
        println!("secs={}", t.elapsed().as_secs_f64());
        Ok(())
    }

    /// The tar and gzip stages natively, on threads joined by an in-process
    /// pipe of 256 KiB chunks (what `guest` does in sandbox instances, with
    /// the same kind of pipe): for pack, a tar thread and one deflate thread
    /// per CPU; for unpack, a gunzip thread and a tar thread.
    fn native_pipe(op: &str, from: &Path, to: &Path) -> Result<()> {
        use std::io::{BufReader, BufWriter};
        let t = Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let writer = ChanWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let reader = ChanReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        match op {
            "pack" => {
                let src = from.to_path_buf();
                let tar = std::thread::spawn(move || {
                    let o = ccws_archive::PackOptions::default();
                    let (_, w) = ccws_archive::pack_tar(&src, writer, &o, None)?;
                    w.finish();
                    Ok::<_, anyhow::Error>(())
                });
                let mut out = BufWriter::new(fs::File::create(to)?);
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
                gzip_blocks(reader, &mut out, 6, workers.clamp(1, 8))?;
                std::io::Write::flush(&mut out)?;
                tar.join()
                    .map_err(|_| anyhow::anyhow!("tar thread panicked"))??;
            }
            "unpack" => {
                let archive = BufReader::new(fs::File::open(from)?);
                let gunzip = std::thread::spawn(move || {
                    let (_, w) = ccws_archive::gunzip(archive, writer, &Default::default())?;
                    w.finish();
                    Ok::<_, anyhow::Error>(())
                });
                let o = ccws_archive::UnpackOptions::default();
                ccws_archive::unpack_tar(reader, to, &o, None)?;
                gunzip
                    .join()
                    .map_err(|_| anyhow::anyhow!("gunzip thread panicked"))??;
            }
            op => bail!("unknown op {op:?}"),
        }
        println!("secs={}", t.elapsed().as_secs_f64());
        Ok(())
    }

    /// What ccws's multi-instance gzip stage (`host/src/archive/deflate.rs`)
    /// does, on native threads: the deflate blocks of `input` compressed on
    /// up to `workers` threads at once, written in order between the gzip
    /// header and trailer. The same bytes as `ccws_archive::gzip`.
    fn gzip_blocks(
        mut input: impl std::io::Read,
        out: &mut impl std::io::Write,
        level: u32,
        workers: usize,
    ) -> Result<()> {
        use ccws_archive::gzframe::{deflate_block, Member, BLOCK};
        use std::io::Read;
        let mut member = Member::new(level)?;
        out.write_all(&member.header())?;
        std::thread::scope(|s| -> Result<()> {
            let mut pending = std::collections::VecDeque::new();
            loop {
                let mut block = Vec::with_capacity(BLOCK);
                (&mut input).take(BLOCK as u64).read_to_end(&mut block)?;
                let last = block.len() < BLOCK;
                let dict = member.next_block(&block);
                pending.push_back(s.spawn(move || {
                    let mut deflated = Vec::new();
                    deflate_block(level, &dict, &block, last, &mut deflated).map(|()| deflated)
                }));
                while pending.len() >= workers || (last && !pending.is_empty()) {
                    let Some(done) = pending.pop_front() else {
                        break;
                    };
                    let deflated = done
                        .join()
                        .map_err(|_| anyhow::anyhow!("deflate thread panicked"))??;
                    out.write_all(&deflated)?;
                }
                if last {
                    return Ok(());
                }
            }
        })?;
        out.write_all(&member.trailer())?;
        Ok(())
    }

    const CHUNK: usize = 256 * 1024;

    /// Sends whole chunks down a bounded channel.
    struct ChanWriter {
        tx: std::sync::mpsc::SyncSender<Vec<u8>>,
        buf: Vec<u8>,
    }

    impl ChanWriter {
        fn finish(mut self) {
            let rest = std::mem::take(&mut self.buf);
            if !rest.is_empty() {
                let _ = self.tx.send(rest);
            }
        }
    }

    impl std::io::Write for ChanWriter {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let n = data.len().min(CHUNK - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            if self.buf.len() == CHUNK {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
                self.tx
                    .send(full)
                    .map_err(|_| std::io::Error::other("reader gone"))?;
            }
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Reads the chunks; the end of the channel is the end of the stream.
    struct ChanReader {
        rx: std::sync::mpsc::Receiver<Vec<u8>>,
        chunk: Vec<u8>,
        pos: usize,
    }

    impl std::io::Read for ChanReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            while self.pos == self.chunk.len() {
                match self.rx.recv() {
                    Ok(c) => {
                        self.chunk = c;
                        self.pos = 0;
                    }
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.chunk.len() - self.pos);
            buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
}

/// Suite 1: guest vs native vs GNU tar+gzip.
mod archive {
    use super::measure::{median, Run};
    use super::table::{mib, ratio, rss, secs, Table};
    use super::*;
    use ccws::archive::{Archiver, SandboxConfig};

    #[derive(Clone, Copy, PartialEq)]
    enum Variant {
        /// As ccws runs: the tar stage and the gzip stage's work in
        /// instances at once (see `one`).
        Guest,
        /// One instance doing both stages.
        GuestOne,
        /// `Guest` without the CPU cap (code compiled without epoch checks).
        GuestNoCap,
        /// `GuestOne` without the CPU cap.
        GuestOneNoCap,
        /// The same crate natively, one thread.
        Native,
        /// The same crate natively, the same stages on threads.
        NativePipe,
        Gnu,
    }

    const VARIANTS: [Variant; 7] = [
        Variant::Guest,
        Variant::GuestOne,
        Variant::GuestNoCap,
        Variant::GuestOneNoCap,
        Variant::Native,
        Variant::NativePipe,
        Variant::Gnu,
    ];

    impl Variant {
        fn name(self) -> &'static str {
            match self {
                Variant::Guest => "guest",
                Variant::GuestOne => "guest-1",
                Variant::GuestNoCap => "guest-nocap",
                Variant::GuestOneNoCap => "guest-1-nocap",
                Variant::Native => "native",
                Variant::NativePipe => "native-pipe",
                Variant::Gnu => "gnu",
            }
        }

        fn label(self) -> &'static str {
            match self {
                Variant::Guest => "guest, pipelined (ccws)",
                Variant::GuestOne => "guest, 1 instance",
                Variant::GuestNoCap => "guest, pipelined, no CPU cap",
                Variant::GuestOneNoCap => "guest, 1 instance, no CPU cap",
                Variant::Native => "native, 1 thread",
                Variant::NativePipe => "native, pipelined",
                Variant::Gnu => "GNU tar + gzip -6",
            }
        }
    }

    /// Medians for one tree and one variant.
    struct Figures {
        pack: f64,
        unpack: f64,
        /// CPU seconds (user + system, the whole child process).
        pack_cpu: Option<f64>,
        unpack_cpu: Option<f64>,
        size: u64,
        pack_rss: Option<u64>,
        unpack_rss: Option<u64>,
    }

    struct Ctx {
        exe: PathBuf,
        cache: PathBuf,
        runs: usize,
    }

    pub fn suite(opts: &Opts, work: &Path) -> Result<()> {
        println!("\n## Archive suite\n");
        fs::create_dir_all(work)?;
        let ctx = Ctx {
            exe: std::env::current_exe()?,
            cache: work.join("compile-cache"),
            runs: opts.runs(3),
        };
        compile_times(&ctx.cache)?;
        type MakeTree = fn(&Path, u64) -> Result<gen::Stats>;
        let trees: [(&str, MakeTree); 2] = [
            ("mixed ~100 MB", gen::mixed_tree),
            ("small 20k files", gen::small_tree),
        ];
        let mut all = Vec::new();
        for (i, (name, make)) in trees.into_iter().enumerate() {
            let src = work.join(format!("tree{i}"));
            let t = Instant::now();
            let stats = make(&src, 1 + i as u64)?;
            println!(
                "generated {name}: {} files, {} in {:.1} s",
                stats.files,
                mib(stats.bytes),
                t.elapsed().as_secs_f64()
            );
            let figures = bench_tree(&ctx, &src, &work.join(format!("out{i}")), stats)?;
            fs::remove_dir_all(&src)?;
            all.push((name, stats, figures));
        }
        println!(
            "\nMedian of {} runs; pack/unpack time of the call alone for guest and native \
             (child process start and component load excluded), whole `tar` process for GNU.\n",
            ctx.runs
        );
        results_table(&all).print();
        println!(
            "\nTime ratios, lower is better for the guest (issue #2's target: guest/native \
             <= 1.25, i.e. >= 0.8x native speed, and guest/GNU < 1). \"ccws\" is the guest \
             as ccws runs it on this machine (pipelined: pack = a tar instance and one \
             deflate instance per CPU, unpack = a gunzip and a tar instance); \"like for \
             like\" pairs the same shape on each side (native pipelined = the same stages \
             on threads):\n"
        );
        let ccws = (Variant::Guest, Variant::GuestOne, "ccws");
        ratios_table(&all, ccws, (Variant::Gnu, "GNU")).print();
        println!(
            "\nThe same without the sandbox's CPU cap (`SandboxConfig::cpu_time = None`: the \
             component compiled without epoch checks), against the same native figures:\n"
        );
        let uncapped = (Variant::GuestNoCap, Variant::GuestOneNoCap, "no cap");
        ratios_table(&all, uncapped, (Variant::Guest, "capped")).print();
        Ok(())
    }

    /// Compile the component into a fresh cache, then load it from there.
    fn compile_times(cache: &Path) -> Result<()> {
        let cfg = SandboxConfig {
            cache_dir: Some(cache.to_path_buf()),
            ..SandboxConfig::default()
        };
        let t = Instant::now();
        drop(Archiver::new(cfg.clone())?);
        let cold = t.elapsed().as_secs_f64();
        let t = Instant::now();
        drop(Archiver::new(cfg)?);
        let warm = t.elapsed().as_secs_f64();
        println!(
            "component: compile into a fresh cache {}, load from the warm cache {} \
             (neither counted below)",
            secs(cold),
            secs(warm)
        );
        Ok(())
    }

    /// All variants on one tree, runs interleaved so that background noise
    /// spreads evenly over the variants.
    fn bench_tree(
        ctx: &Ctx,
        src: &Path,
        out: &Path,
        stats: gen::Stats,
    ) -> Result<Vec<(Variant, Figures)>> {
        fs::create_dir_all(out)?;
        let archive = |v: Variant| out.join(format!("{}.tar.gz", v.name()));
        let dest = |v: Variant| out.join(format!("{}-x", v.name()));
        let mut packs: Vec<Vec<Run>> = VARIANTS.iter().map(|_| Vec::new()).collect();
        let mut unpacks: Vec<Vec<Run>> = VARIANTS.iter().map(|_| Vec::new()).collect();
        for _ in 0..ctx.runs {
            for (i, &v) in VARIANTS.iter().enumerate() {
                let _ = fs::remove_file(archive(v));
                packs[i].push(pack_once(ctx, v, src, &archive(v))?);
            }
        }
        for _ in 0..ctx.runs {
            for (i, &v) in VARIANTS.iter().enumerate() {
                let d = dest(v);
                if d.exists() {
                    fs::remove_dir_all(&d)?;
                }
                fs::create_dir_all(&d)?;
                unpacks[i].push(unpack_once(ctx, v, &archive(v), &d)?);
            }
        }
        for &v in &VARIANTS {
            let got = gen::count(&dest(v))?;
            ensure!(
                got.files == stats.files && got.bytes == stats.bytes,
                "{}: unpacked {} files / {} bytes, expected {} / {}",
                v.name(),
                got.files,
                got.bytes,
                stats.files,
                stats.bytes
            );
            fs::remove_dir_all(dest(v))?;
        }
        let reference = fs::read(archive(Variant::Native))?;
        let mut same = true;
        for v in [
            Variant::Guest,
            Variant::GuestOne,
            Variant::GuestNoCap,
            Variant::GuestOneNoCap,
            Variant::NativePipe,
        ] {
            same &= fs::read(archive(v))? == reference;
        }
        println!(
            "  round trips complete; guest (both ways) and native (both ways) archives \
             byte-identical: {same}"
        );
        VARIANTS
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                Ok((
                    v,
                    Figures {
                        pack: median(&times(v, &packs[i])?),
                        unpack: median(&times(v, &unpacks[i])?),
                        pack_cpu: cpu(&packs[i]),
                        unpack_cpu: cpu(&unpacks[i]),
                        size: fs::metadata(archive(v))?.len(),
                        pack_rss: packs[i].iter().filter_map(|r| r.rss_kib).max(),
                        unpack_rss: unpacks[i].iter().filter_map(|r| r.rss_kib).max(),
                    },
                ))
            })
            .collect()
    }

    /// The time that counts: the child's own timing of the call, or the `tar` process.
    fn times(v: Variant, runs: &[Run]) -> Result<Vec<f64>> {
        runs.iter()
            .map(|r| match v {
                Variant::Gnu => Ok(r.wall),
                _ => measure::field(&r.stdout, "secs"),
            })
            .collect()
    }

    /// The median CPU time of `runs`, when `time` measured every one.
    fn cpu(runs: &[Run]) -> Option<f64> {
        let cpu: Option<Vec<f64>> = runs.iter().map(|r| r.cpu).collect();
        cpu.filter(|c| !c.is_empty()).map(|c| median(&c))
    }

    fn one_cmd(ctx: &Ctx, v: Variant, op: &str, from: &Path, to: &Path) -> Command {
        let mut c = Command::new(&ctx.exe);
        c.args(["one", v.name(), op])
            .arg(from)
            .arg(to)
            .arg(&ctx.cache);
        c
    }

    fn pack_once(ctx: &Ctx, v: Variant, src: &Path, archive: &Path) -> Result<Run> {
        let cmd = match v {
            Variant::Gnu => {
                let mut c = Command::new("tar");
                c.arg("-czf").arg(archive).arg("-C").arg(src).arg(".");
                c
            }
            _ => one_cmd(ctx, v, "pack", src, archive),
        };
        measure::run(cmd)
    }

    fn unpack_once(ctx: &Ctx, v: Variant, archive: &Path, dest: &Path) -> Result<Run> {
        let cmd = match v {
            Variant::Gnu => {
                let mut c = Command::new("tar");
                c.arg("-xzf").arg(archive).arg("-C").arg(dest);
                c
            }
            _ => one_cmd(ctx, v, "unpack", archive, dest),
        };
        measure::run(cmd)
    }

    type TreeFigures<'a> = (&'a str, gen::Stats, Vec<(Variant, Figures)>);

    fn results_table(all: &[TreeFigures]) -> Table {
        let mut t = Table::new(&[
            "tree",
            "variant",
            "pack",
            "unpack",
            "pack CPU",
            "unpack CPU",
            "archive size",
            "size/input",
            "pack peak RSS",
            "unpack peak RSS",
        ])
        .text_columns(2);
        for (name, stats, figs) in all {
            for (v, f) in figs {
                t.row(vec![
                    name.to_string(),
                    v.label().into(),
                    secs(f.pack),
                    secs(f.unpack),
                    f.pack_cpu.map_or("n/a".into(), secs),
                    f.unpack_cpu.map_or("n/a".into(), secs),
                    mib(f.size),
                    format!("{:.1}%", 100.0 * f.size as f64 / stats.bytes as f64),
                    rss(f.pack_rss),
                    rss(f.unpack_rss),
                ]);
            }
        }
        t
    }

    /// Time ratios of one guest pair (pipelined, one instance) against
    /// native code and against `last` (named `last_name`), per tree.
    fn ratios_table(
        all: &[TreeFigures],
        (guest, guest_one, name): (Variant, Variant, &str),
        (last, last_name): (Variant, &str),
    ) -> Table {
        let mut t = Table::new(&[
            "tree",
            &format!("{name} / native 1 thread: pack"),
            "unpack",
            "like for like, 1 instance / 1 thread: pack",
            "unpack",
            "pipelined / pipelined: pack",
            "unpack",
            &format!("{name} / {last_name}: pack"),
            "unpack",
            &format!("size {name}/{last_name}"),
        ]);
        for (tree, _, figs) in all {
            let get = |v: Variant| &figs.iter().find(|(w, _)| *w == v).unwrap().1;
            let (g, g1) = (get(guest), get(guest_one));
            let (n, n2, l) = (get(Variant::Native), get(Variant::NativePipe), get(last));
            t.row(vec![
                tree.to_string(),
                ratio(g.pack, n.pack),
                ratio(g.unpack, n.unpack),
                ratio(g1.pack, n.pack),
                ratio(g1.unpack, n.unpack),
                ratio(g.pack, n2.pack),
                ratio(g.unpack, n2.unpack),
                ratio(g.pack, l.pack),
                ratio(g.unpack, l.unpack),
                ratio(g.size as f64, l.size as f64),
            ]);
        }
        t
    }
}

/// Suite 2: per-turn overhead against s3s-fs, and the cold start.
mod turn {
    use super::measure::{median, Run};
    use super::table::{mib, ratio, secs, Table};
    use super::*;
    use ccws::s3::PutCondition;
    use ccws_tests::s3s::S3sServer;

    const WS: &str = "bench";
    const SESSION: &str = "s-1";
    /// The Python baseline's objects live under this prefix of the same bucket.
    const PY_PREFIX: &str = "py/";

    /// Everything a turn needs to start its processes.
    struct Ctx {
        ccws: PathBuf,
        script: PathBuf,
        endpoint: String,
        bucket: String,
        env: Vec<(&'static str, String)>,
        work: PathBuf,
    }

    /// One measured turn: the two processes' wall times, and for Python the
    /// time inside the script (without interpreter start, imports, client).
    struct Turn {
        setup: f64,
        teardown: f64,
        inner: Option<f64>,
    }

    impl Turn {
        fn total(&self) -> f64 {
            self.setup + self.teardown
        }
    }

    pub fn suite(opts: &Opts, work: &Path) -> Result<()> {
        println!("\n## Per-turn suite\n");
        fs::create_dir_all(work)?;
        let ccws = ccws_binary()?;
        let rt = tokio::runtime::Runtime::new()?;
        let server = rt.block_on(S3sServer::start());
        let ctx = Ctx {
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/turn_boto3.py"),
            endpoint: server.endpoint(),
            bucket: server.bucket.clone(),
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
            ccws,
            work: work.to_path_buf(),
        };
        seed(&rt, &server, work)?;
        let runs = opts.runs(5);
        turns(&ctx, runs)?;
        cold_start(&ctx, opts.runs(10))?;
        drop(server);
        Ok(())
    }

    /// `target/release/ccws`, next to this binary.
    pub fn ccws_binary() -> Result<PathBuf> {
        let exe = std::env::current_exe()?;
        let p = exe.with_file_name("ccws");
        ensure!(
            p.is_file(),
            "{} not found: run `cargo build --release -p ccws -p ccws-tests` first",
            p.display()
        );
        Ok(p)
    }

    /// Generate the claude-home and a transcript, and upload them for both tools.
    fn seed(rt: &tokio::runtime::Runtime, server: &S3sServer, work: &Path) -> Result<()> {
        use rand::SeedableRng;
        let home = work.join("claude-home");
        let stats = gen::claude_home(&home, WS, 42)?;
        let archive = work.join("claude-home.tar.gz");
        ccws_archive::pack_file(&home, &archive, &ccws_archive::PackOptions::default(), None)?;
        let transcript = work.join("transcript.jsonl");
        let mut rng = rand::rngs::StdRng::seed_from_u64(43);
        fs::write(&transcript, gen::jsonl(&mut rng, 500_000))?;
        println!(
            "claude-home: {} files, {} (tar.gz {}); transcript {}",
            stats.files,
            mib(stats.bytes),
            mib(fs::metadata(&archive)?.len()),
            mib(fs::metadata(&transcript)?.len())
        );
        let client = server.client();
        rt.block_on(async {
            for prefix in ["", PY_PREFIX] {
                let home_key = format!("{prefix}workspaces/{WS}/claude-home.tar.gz");
                let t_key = format!("{prefix}workspaces/{WS}/sessions/{SESSION}.jsonl");
                client
                    .put_file(&archive, &home_key, PutCondition::None)
                    .await?;
                client
                    .put_file(&transcript, &t_key, PutCondition::None)
                    .await?;
            }
            anyhow::Ok(())
        })?;
        fs::remove_dir_all(&home)?;
        Ok(())
    }

    #[derive(Clone, Copy)]
    enum Tool {
        Ccws,
        Python,
    }

    impl Ctx {
        fn ccws(&self, args: &[&str]) -> Command {
            let mut c = Command::new(&self.ccws);
            c.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(self.env.iter().map(|(k, v)| (*k, v)));
            c.args(args);
            c
        }

        fn ccws_s3(&self, sub: &str) -> Command {
            let tmp = self.work.join("ccws-tmp");
            let state = self.work.join("ccws-state");
            let mut c = self.ccws(&[sub, "-w", WS, "-s", SESSION, "--json"]);
            c.args(["--bucket", &self.bucket, "--endpoint", &self.endpoint])
                .args(["--region", "us-east-1", "--path-style", "true"])
                .arg("--temp-dir")
                .arg(tmp)
                .arg("--state-dir")
                .arg(state);
            c
        }

        fn python(&self, sub: &str) -> Command {
            let mut c = Command::new("python3");
            c.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(self.env.iter().map(|(k, v)| (*k, v)));
            c.arg(&self.script).arg(sub);
            c.args(["--endpoint", &self.endpoint, "--bucket", &self.bucket])
                .args([
                    "--workspace",
                    WS,
                    "--session",
                    SESSION,
                    "--prefix",
                    PY_PREFIX,
                ])
                .arg("--temp-dir")
                .arg(self.work.join("py-tmp"));
            c
        }
    }

    /// What the agent does during a turn: change one memory file, add to the transcript.
    fn agent_turn(memory_dir: &Path, transcript: &Path, n: usize) -> Result<()> {
        use std::io::Write;
        let memory = memory_dir.join("MEMORY.md");
        let mut text = fs::read_to_string(&memory).unwrap_or_default();
        text.push_str(&format!("\n- turn {n}: the user prefers short answers\n"));
        fs::write(&memory, text)?;
        let mut f = fs::OpenOptions::new().append(true).open(transcript)?;
        writeln!(f, "{{\"type\":\"user\",\"turn\":{n}}}")?;
        Ok(())
    }

    fn one_turn(ctx: &Ctx, tool: Tool, n: usize) -> Result<Turn> {
        match tool {
            Tool::Ccws => {
                // The session's owner is this process (ccws's parent is /usr/bin/time).
                let mut cmd = ctx.ccws_s3("setup");
                cmd.args(["--owner-pid", &std::process::id().to_string()]);
                let setup = measure::run(cmd)?;
                let w: serde_json::Value = serde_json::from_str(&setup.stdout)
                    .with_context(|| format!("ccws setup --json printed {:?}", setup.stdout))?;
                let layout = &w["layout"];
                agent_turn(
                    Path::new(layout["memory_dir"].as_str().context("memory_dir")?),
                    Path::new(layout["transcript"].as_str().context("transcript")?),
                    n,
                )?;
                let teardown = measure::run(ctx.ccws_s3("teardown"))?;
                let r: serde_json::Value = serde_json::from_str(&teardown.stdout)?;
                ensure!(
                    r["home"]["status"] == "uploaded",
                    "ccws teardown did not upload the home: {}",
                    teardown.stdout
                );
                Ok(Turn {
                    setup: setup.wall,
                    teardown: teardown.wall,
                    inner: None,
                })
            }
            Tool::Python => {
                let setup = measure::run(ctx.python("setup"))?;
                let s: serde_json::Value = serde_json::from_str(&setup.stdout)?;
                agent_turn(
                    Path::new(s["memory_dir"].as_str().context("memory_dir")?),
                    Path::new(s["transcript"].as_str().context("transcript")?),
                    n,
                )?;
                let teardown = measure::run(ctx.python("teardown"))?;
                let t: serde_json::Value = serde_json::from_str(&teardown.stdout)?;
                let work = |v: &serde_json::Value| v["work_secs"].as_f64().unwrap_or(f64::NAN);
                Ok(Turn {
                    setup: setup.wall,
                    teardown: teardown.wall,
                    inner: Some(work(&s) + work(&t)),
                })
            }
        }
    }

    fn turns(ctx: &Ctx, runs: usize) -> Result<()> {
        // The first turn of each compiles the component / byte-compiles and warms caches.
        let t = Instant::now();
        one_turn(ctx, Tool::Ccws, 0)?;
        let first_ccws = t.elapsed().as_secs_f64();
        one_turn(ctx, Tool::Python, 0)?;
        let mut c = Vec::new();
        let mut p = Vec::new();
        for n in 1..=runs {
            c.push(one_turn(ctx, Tool::Ccws, n)?);
            p.push(one_turn(ctx, Tool::Python, n)?);
        }
        let med = |ts: &[Turn], f: fn(&Turn) -> f64| median(&ts.iter().map(f).collect::<Vec<_>>());
        let (c_total, p_total) = (med(&c, Turn::total), med(&p, Turn::total));
        let p_inner = med(&p, |t| t.inner.unwrap_or(f64::NAN));
        println!(
            "\nPer-turn overhead, median of {runs} turns (the first turn, not counted, \
             compiled the component into an empty cache: {}):\n",
            secs(first_ccws)
        );
        let mut t = Table::new(&["tool", "setup", "teardown", "setup + teardown"]);
        t.row(vec![
            "ccws (2 processes)".into(),
            secs(med(&c, |t| t.setup)),
            secs(med(&c, |t| t.teardown)),
            secs(c_total),
        ]);
        t.row(vec![
            "python boto3+tarfile (2 processes)".into(),
            secs(med(&p, |t| t.setup)),
            secs(med(&p, |t| t.teardown)),
            secs(p_total),
        ]);
        t.row(vec![
            "python, in-script work only".into(),
            "".into(),
            "".into(),
            secs(p_inner),
        ]);
        t.print();
        println!(
            "\nratio ccws/python: {} (target <= 0.5); against the in-script work only \
             (no interpreter start, import boto3 or client creation): {}",
            ratio(c_total, p_total),
            ratio(c_total, p_inner)
        );
        Ok(())
    }

    /// `ccws` start-up: `--version` as a floor, a pack of an empty directory
    /// (loads the cached component), and a whole `ccws run -- true` on the local store.
    fn cold_start(ctx: &Ctx, runs: usize) -> Result<()> {
        let empty = ctx.work.join("empty");
        fs::create_dir_all(&empty)?;
        let out = ctx.work.join("empty.tar.gz");
        let local = |args: &[&str]| {
            let mut c = ctx.ccws(args);
            c.arg("--local-store")
                .arg(ctx.work.join("local-store"))
                .arg("--temp-dir")
                .arg(ctx.work.join("local-tmp"))
                .arg("--state-dir")
                .arg(ctx.work.join("local-state"));
            c
        };
        type Make<'a> = Box<dyn Fn() -> Command + 'a>;
        let cases: Vec<(&str, Make)> = vec![
            ("ccws --version", Box::new(|| ctx.ccws(&["--version"]))),
            (
                "ccws pack EMPTY_DIR OUT (loads the component)",
                Box::new(|| {
                    let mut c = ctx.ccws(&["pack"]);
                    c.arg(&empty).arg(&out);
                    c
                }),
            ),
            (
                "ccws run -w x -s y -- true (local store)",
                Box::new(|| local(&["run", "-w", "x", "-s", "y", "--", "true"])),
            ),
        ];
        println!("\nCold start of the `ccws` binary (compiled component cached), median of {runs} after one warm-up:\n");
        let mut t = Table::new(&["command", "median", "min", "max", "peak RSS"]);
        for (name, make) in &cases {
            measure::run(make())?;
            let rs: Vec<Run> = (0..runs)
                .map(|_| measure::run(make()))
                .collect::<Result<_>>()?;
            let walls: Vec<f64> = rs.iter().map(|r| r.wall).collect();
            t.row(vec![
                name.to_string(),
                secs(median(&walls)),
                secs(walls.iter().copied().fold(f64::INFINITY, f64::min)),
                secs(walls.iter().copied().fold(0.0, f64::max)),
                super::table::rss(rs.iter().filter_map(|r| r.rss_kib).max()),
            ]);
        }
        t.print();
        println!("(times include starting the process under /usr/bin/time, about 1 ms)");
        Ok(())
    }
}
