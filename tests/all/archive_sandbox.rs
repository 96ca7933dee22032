//! The sandbox around the component: memory cap, CPU budget, and the
//! compiled-component cache's recovery from corrupt files.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ccws::archive::{Archiver, ArchiverError, PackOptions, Report, SandboxConfig, UnpackOptions};
use ccws_tests::hostile::{kind, zeros, GzStream, Header, Tar};
use ccws_tests::{archiver_with, tree};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Unpack `input` into `dest` with the default options, failing the test
/// if it takes longer than `TIMEOUT`.
async fn unpack_in_time<R>(a: &Archiver, input: R, dest: &Path) -> Result<Report, ArchiverError>
where
    R: tokio::io::AsyncRead + Send + 'static,
{
    tokio::time::timeout(
        TIMEOUT,
        a.unpack(input, dest, &UnpackOptions::default(), None),
    )
    .await
    .expect("no hang")
}

/// A small legitimate archive.
fn small_archive() -> Vec<u8> {
    ccws_tests::hostile::gzip(&Tar::new().dir("d/").file("d/f.txt", b"small").finish())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_over_its_memory_cap_is_stopped() {
    const CAP: usize = 32 << 20;
    let a = archiver_with(SandboxConfig {
        memory_limit: CAP,
        ..SandboxConfig::default()
    });

    // Under the cap, an ordinary archive unpacks: the cap is not simply
    // below what the guest needs to start.
    let dest = tempfile::tempdir().unwrap();
    let report = a
        .unpack(
            Cursor::new(small_archive()),
            dest.path(),
            &UnpackOptions::default(),
            None,
        )
        .await
        .expect("a small archive under a 32 MiB cap");
    assert_eq!(report.files, 1);

    // A PAX header with a 256 MiB body: the tar parser reads extension
    // bodies into memory, and the default limits allow it, so only the
    // memory cap stands in the way.
    let head = Tar::new()
        .entry(Header::new(kind::PAX, "PaxHeaders/huge", 256 << 20), &[])
        .unterminated();
    let input = GzStream::new(Cursor::new(head).chain_zeros(256 << 20));
    let dest = tempfile::tempdir().unwrap();
    let result = unpack_in_time(&a, input, dest.path()).await;
    match result {
        Err(e @ ArchiverError::MemoryLimit(limit)) => {
            assert_eq!(limit, CAP);
            let msg = e.to_string();
            assert!(
                msg.contains("memory limit") && msg.contains(&CAP.to_string()),
                "{msg}"
            );
        }
        other => panic!("expected ArchiverError::MemoryLimit, got {other:?}"),
    }

    // A cap below what the guest needs to start: the trap path.
    let tiny = archiver_with(SandboxConfig {
        memory_limit: 64 << 10,
        ..SandboxConfig::default()
    });
    let dest = tempfile::tempdir().unwrap();
    let result = tiny
        .unpack(
            Cursor::new(small_archive()),
            dest.path(),
            &UnpackOptions::default(),
            None,
        )
        .await;
    assert!(
        matches!(result, Err(ArchiverError::MemoryLimit(l)) if l == 64 << 10),
        "{result:?}"
    );

    // The archiver is still usable afterwards.
    let dest = tempfile::tempdir().unwrap();
    a.unpack(
        Cursor::new(small_archive()),
        dest.path(),
        &UnpackOptions::default(),
        None,
    )
    .await
    .expect("the archiver works after a guest was stopped");
}

/// A large, legitimate archive: 64 MiB of poorly compressible data in 256
/// files, decompressed and written by the guest (far more than 5 ms of work
/// however fast the machine).
fn busy_archive() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..256 {
        let data: Vec<u8> = (0..256 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 16) as u8
            })
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("f{i:03}"), &data[..])
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_over_its_cpu_budget_is_stopped() {
    const BUDGET: Duration = Duration::from_millis(5);
    let a = archiver_with(SandboxConfig {
        cpu_time: Some(BUDGET),
        ..SandboxConfig::default()
    });
    let bytes = busy_archive();

    let dest = tempfile::tempdir().unwrap();
    let result = unpack_in_time(&a, Cursor::new(bytes), dest.path()).await;
    match result {
        Err(e @ ArchiverError::CpuTime(budget)) => {
            assert_eq!(budget, BUDGET);
            let msg = e.to_string();
            assert!(msg.contains("CPU time") && msg.contains("5ms"), "{msg}");
        }
        other => panic!("expected ArchiverError::CpuTime, got {other:?}"),
    }

    // Packing is under the same budget.
    let src = tempfile::tempdir().unwrap();
    for i in 0..64 {
        let data: Vec<u8> = (0..256 * 1024u32)
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i)
            .collect();
        fs::write(src.path().join(format!("f{i}")), data).unwrap();
    }
    let result = tokio::time::timeout(
        TIMEOUT,
        a.pack(src.path(), Vec::new(), &PackOptions::default(), None),
    )
    .await
    .expect("no hang");
    assert!(
        matches!(result, Err(ArchiverError::CpuTime(_))),
        "{:?}",
        result.map(|r| r.0)
    );
}

/// The `.cwasm` artifacts in a cache directory, sorted.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    found.sort();
    found
}

/// The one `.cwasm` artifact in a cache directory.
fn artifact(dir: &Path) -> PathBuf {
    let found = artifacts(dir);
    assert_eq!(found.len(), 1, "cache holds {found:?}");
    found.into_iter().next().unwrap()
}

async fn works(a: &Archiver) {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "a/b.txt", b"cached");
    let (_, bytes) = a
        .pack(src.path(), Vec::new(), &PackOptions::default(), None)
        .await
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    a.unpack(
        Cursor::new(bytes),
        dest.path(),
        &UnpackOptions::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(tree::snapshot(src.path()), tree::snapshot(dest.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cpu_cap_the_guest_runs_on_and_its_build_is_cached_apart() {
    const BUDGET: Duration = Duration::from_millis(5);
    let cache = tempfile::tempdir().unwrap();
    let config = |cpu_time| SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        cpu_time,
        ..SandboxConfig::default()
    };
    let uncapped = Archiver::new(config(None)).unwrap();
    works(&uncapped).await;
    let uncapped_artifact = artifact(cache.path());

    // The archive a 5 ms budget stops unpacks in full without one.
    let busy = busy_archive();
    let dest = tempfile::tempdir().unwrap();
    let report = unpack_in_time(&uncapped, Cursor::new(busy.clone()), dest.path())
        .await
        .expect("no budget, no CPU-time error");
    assert_eq!(report.files, 256);
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 256);

    // A capped archiver on the same cache compiles its own build (the
    // uncapped one has no epoch checks to interrupt) and is stopped.
    let capped = Archiver::new(config(Some(BUDGET))).unwrap();
    let both = artifacts(cache.path());
    assert_eq!(both.len(), 2, "cache holds {both:?}");
    assert!(both.contains(&uncapped_artifact));
    let dest = tempfile::tempdir().unwrap();
    let result = unpack_in_time(&capped, Cursor::new(busy), dest.path()).await;
    assert!(
        matches!(result, Err(ArchiverError::CpuTime(BUDGET))),
        "{result:?}"
    );

    // Each loads its own build from then on: nothing more is compiled.
    works(&Archiver::new(config(None)).unwrap()).await;
    assert_eq!(artifacts(cache.path()), both);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_compile_cache_is_detected_and_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let config = || SandboxConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let first = Archiver::new(config()).unwrap();
    works(&first).await;
    let path = artifact(cache.path());
    let good = fs::read(&path).unwrap();

    // 1. Bytes flipped in the middle (the digest beside it no longer matches).
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0xa5;
    }
    fs::write(&path, &bad).unwrap();
    let second = Archiver::new(config()).expect("recovering from a corrupt cache file");
    works(&second).await;
    assert_eq!(
        fs::read(&path).unwrap(),
        good,
        "the cache file was not rewritten"
    );

    // 2. Truncated to half.
    fs::write(&path, &good[..good.len() / 2]).unwrap();
    let third = Archiver::new(config()).expect("recovering from a truncated cache file");
    works(&third).await;
    assert_eq!(fs::read(&path).unwrap(), good);

    // 3. Garbage with a matching digest (a stale or foreign file that passes
    //    the checksum): wasmtime itself must reject it.
    let garbage = b"\x7fELF definitely not a compiled component".repeat(100);
    fs::write(&path, &garbage).unwrap();
    let digest = path.with_extension("sha256");
    assert!(
        digest.exists(),
        "expected a digest file beside {}",
        path.display()
    );
    let mut f = fs::File::create(&digest).unwrap();
    f.write_all(sha256_hex(&garbage).as_bytes()).unwrap();
    drop(f);
    let fourth = Archiver::new(config()).expect("recovering from a rejected cache file");
    works(&fourth).await;
    assert_eq!(fs::read(&path).unwrap(), good);

    // 4. Missing digest.
    fs::remove_file(&digest).unwrap();
    let fifth = Archiver::new(config()).expect("recovering from a missing digest");
    works(&fifth).await;
    assert!(digest.exists());
}

fn sha256_hex(data: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(data)?;
            child.wait_with_output()
        })
        .expect("running sha256sum");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Small helper so the memory test reads naturally.
trait ChainZeros: std::io::Read + Sized {
    fn chain_zeros(self, n: u64) -> std::io::Chain<Self, std::io::Take<std::io::Repeat>> {
        self.chain(zeros(n))
    }
}

impl<R: std::io::Read> ChainZeros for R {}

/// A filter that swaps `victim` (a file) and `victim-dir` (a directory)
/// for FIFOs when the guest asks about them, which it does right before it
/// opens them.
fn swapping_filter(src: std::path::PathBuf) -> ccws::archive::FilterFn {
    Box::new(move |rel: &str, _kind| {
        if rel == "victim" || rel == "victim-dir" {
            let path = src.join(rel);
            if rel == "victim" {
                std::fs::remove_file(&path).unwrap();
            } else {
                std::fs::remove_dir_all(&path).unwrap();
            }
            let made = std::process::Command::new("mkfifo")
                .arg(&path)
                .status()
                .unwrap();
            assert!(made.success());
        }
        ccws::archive::Verdict::Keep
    })
}

/// A file or a directory swapped for a FIFO between the guest's listing
/// and its open would block the pack forever (WASI opens have no
/// O_NONBLOCK, and wasmtime-wasi opens without it); the host's open-at does
/// not block, and the guest leaves the FIFO out. (Without it this test
/// times out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_swapped_for_a_fifo_does_not_hang_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    std::fs::write(src.join("z.txt"), "z").unwrap();
    for pipeline in [false, true] {
        for victim in ["victim", "victim-dir"] {
            let _ = std::fs::remove_file(src.join(victim));
        }
        std::fs::write(src.join("victim"), "v").unwrap();
        std::fs::create_dir(src.join("victim-dir")).unwrap();
        std::fs::write(src.join("victim-dir/inner"), "i").unwrap();
        let a = ccws_tests::archiver_with(ccws::archive::SandboxConfig {
            pipeline,
            ..Default::default()
        });
        let out = dir.path().join(format!("out-{pipeline}.tar.gz"));
        let filter = swapping_filter(src.clone());
        // A watchdog gives a blocked open its writer after 30 s, so that the
        // test fails instead of hanging.
        let released = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let (src, released, done) = (src.clone(), released.clone(), done.clone());
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                while !done.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    if start.elapsed() > std::time::Duration::from_secs(30) {
                        released.store(true, Ordering::SeqCst);
                        for victim in ["victim", "victim-dir"] {
                            use std::os::unix::fs::OpenOptionsExt;
                            let _ = std::fs::OpenOptions::new()
                                .write(true)
                                .custom_flags(libc::O_NONBLOCK)
                                .open(src.join(victim));
                        }
                    }
                }
            })
        };
        let packed = a
            .pack_file(&src, &out, &Default::default(), Some(filter))
            .await;
        done.store(true, Ordering::SeqCst);
        watchdog.join().unwrap();
        assert!(
            !released.load(Ordering::SeqCst),
            "pipeline={pipeline}: the pack hung on a FIFO"
        );
        let report = packed.unwrap();
        assert_eq!(report.files, 2, "pipeline={pipeline}: {report:?}");
        assert_eq!(report.dirs, 0, "pipeline={pipeline}: {report:?}");
        let victim = report.skipped.iter().find(|s| s.path == "victim");
        assert!(
            victim.is_some_and(|s| s.reason == ccws::archive::SkipReason::SpecialFile),
            "{report:?}"
        );
        assert!(
            report.skipped.iter().any(|s| s.path == "victim-dir"),
            "{report:?}"
        );
    }
}

/// `ccws pack DIR DIR/x.tar.gz`: the archive does not hold itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_written_inside_its_source_does_not_pack_itself() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let out = dir.path().join("x.tar.gz");
    for _ in 0..2 {
        let report = ccws_tests::archiver()
            .pack_file(dir.path(), &out, &Default::default(), None)
            .await
            .unwrap();
        assert_eq!(report.files, 1, "{report:?}");
    }
    let listed = ccws_tests::archiver();
    let dest = tempfile::tempdir().unwrap();
    let r = listed
        .unpack_file(&out, dest.path(), &Default::default(), None)
        .await
        .unwrap();
    assert_eq!(r.files, 1);
    assert!(dest.path().join("a.txt").is_file());
}

/// Mount a tmpfs with `options` at `dir` (when the test may: root), and
/// unmount it when the guard goes.
fn small_tmpfs(dir: &Path, options: &str) -> Option<impl Drop> {
    std::fs::create_dir(dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return None;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    Some(Unmount(dir.to_path_buf()))
}

/// A full disk during unpack says so in words, not as a WASI errno, whether
/// a file's data or a directory finds no room. Needs a small filesystem: a
/// tmpfs, mounted when the test may (root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_says_no_space_left() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big.bin"), vec![7u8; 3 << 20]).unwrap();
    for i in 0..100 {
        std::fs::create_dir(src.join(format!("d{i:03}"))).unwrap();
    }
    let archive = dir.path().join("big.tar.gz");
    let a = ccws_tests::archiver();
    a.pack_file(&src, &archive, &Default::default(), None)
        .await
        .unwrap();
    // No room for the data; no inode for the directories.
    for (name, options) in [("bytes", "size=1m"), ("inodes", "size=64m,nr_inodes=20")] {
        let small = dir.path().join(name);
        let Some(_mounted) = small_tmpfs(&small, options) else {
            return;
        };
        let err = a
            .unpack_file(&archive, &small.join("out"), &Default::default(), None)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("No space left on device"), "{name}: {msg}");
        assert!(!msg.contains("os error"), "{name}: {msg}");
    }
}
