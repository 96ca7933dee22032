//! Pack and unpack in two instances at once (tar stage + gzip stage, joined
//! by a pipe) against the single-instance path and the natively built crate:
//! same bytes, same trees, same errors.

use std::io::Cursor;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ccws::archive::{
    ArchiveError, Archiver, ArchiverError, PackOptions, SandboxConfig, UnpackOptions,
};
use ccws_tests::{archiver, archiver_serial, archiver_with, pseudo_random, tree};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Both ways ccws runs a pack or an unpack.
fn modes() -> [(&'static str, Archiver); 2] {
    [
        ("pipelined", archiver()),
        ("one instance", archiver_serial()),
    ]
}

/// Many small files, a few files spanning several gzip chunks, an
/// executable, empty files and directories.
fn sample_tree(root: &Path) {
    for i in 0..600 {
        let text = format!("line {i}\n").repeat(i % 40 + 1);
        tree::write(
            root,
            &format!("small/{:02}/f{i:03}.txt", i % 17),
            text.as_bytes(),
        );
    }
    tree::write(root, "big/noise.bin", &pseudo_random(3 << 20, 7));
    tree::write(
        root,
        "big/text.log",
        &b"compressible text, ".repeat(150_000),
    );
    tree::write(root, "empty", b"");
    std::fs::create_dir_all(root.join("empty-dir/inner")).unwrap();
    tree::write(root, "hooks/run.sh", b"#!/bin/sh\necho hi\n");
    tree::make_executable(root, "hooks/run.sh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_one_instance_and_native_agree() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (native_report, native) = ccws_archive::pack(
        src.path(),
        Vec::new(),
        &ccws_archive::PackOptions::default(),
        None,
    )
    .unwrap();

    for (mode, a) in modes() {
        let (report, bytes) = a
            .pack(src.path(), Vec::new(), &PackOptions::default(), None)
            .await
            .unwrap();
        assert!(
            bytes == native,
            "{mode}: archive differs from the native crate's"
        );
        assert_eq!(report.files, native_report.files, "{mode}");
        assert_eq!(report.bytes, native_report.bytes, "{mode}");
        assert_eq!(report.executables, ["hooks/run.sh"], "{mode}");

        for (unpack_mode, b) in modes() {
            let dest = tempfile::tempdir().unwrap();
            let unpacked = b
                .unpack(
                    Cursor::new(bytes.clone()),
                    dest.path(),
                    &UnpackOptions::default(),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(
                tree::snapshot(src.path()),
                tree::snapshot(dest.path()),
                "packed {mode}, unpacked {unpack_mode}: trees differ"
            );
            assert_eq!(unpacked.files, report.files);
            assert_eq!(unpacked.dirs, report.dirs);
        }
    }
}

/// The deflate blocks of a pipelined pack go to several instances at once;
/// how many must not change a byte. (The sample tree is ~6 MiB: six blocks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_number_of_deflate_instances_gives_the_same_bytes() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (_, native) = ccws_archive::pack(
        src.path(),
        Vec::new(),
        &ccws_archive::PackOptions::default(),
        None,
    )
    .unwrap();
    for deflate_instances in [1, 2, 3, 7] {
        let a = archiver_with(SandboxConfig {
            pipeline: true,
            deflate_instances,
            ..SandboxConfig::default()
        });
        let (_, bytes) = tokio::time::timeout(
            TIMEOUT,
            a.pack(src.path(), Vec::new(), &PackOptions::default(), None),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            bytes == native,
            "{deflate_instances} instances: archive differs from the native crate's ({} vs {} bytes, first difference at {:?})", bytes.len(), native.len(), bytes.iter().zip(&native).position(|(a, b)| a != b)
        );
    }
}

/// A writer that takes `left` bytes, then fails; it keeps what it took.
struct FailingWriter {
    left: usize,
    taken: Arc<Mutex<Vec<u8>>>,
}

impl AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::other("disk full (test)")));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        self.taken.lock().unwrap().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_writer_is_the_error() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    for (mode, a) in modes() {
        let out = FailingWriter {
            left: 100_000,
            taken: Arc::default(),
        };
        let result = tokio::time::timeout(
            TIMEOUT,
            a.pack(src.path(), out, &PackOptions::default(), None),
        )
        .await
        .expect("no hang");
        match result {
            Err(ArchiverError::Stream(e)) => {
                assert!(e.to_string().contains("disk full"), "{mode}: {e}")
            }
            other => panic!(
                "{mode}: expected ArchiverError::Stream, got {:?}",
                other.map(|r| r.0)
            ),
        }
    }
}

/// Yields `data`, then fails.
struct FailingReader {
    data: Cursor<Vec<u8>>,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.data).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                Poll::Ready(Err(std::io::Error::other("connection reset (test)")))
            }
            other => other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reader_is_a_stream_error_naming_the_entry() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "a.bin", &pseudo_random(1 << 20, 1));
    tree::write(src.path(), "b.bin", &pseudo_random(1 << 20, 2));
    let (_, bytes) = archiver()
        .pack(src.path(), Vec::new(), &PackOptions::default(), None)
        .await
        .unwrap();
    // Cut in the middle of `b.bin` (incompressible data: the gzip offset is
    // about the tar offset).
    let cut = bytes[..bytes.len() * 3 / 4].to_vec();
    for (mode, a) in modes() {
        let dest = tempfile::tempdir().unwrap();
        let input = FailingReader {
            data: Cursor::new(cut.clone()),
        };
        let result = tokio::time::timeout(
            TIMEOUT,
            a.unpack(input, dest.path(), &UnpackOptions::default(), None),
        )
        .await
        .expect("no hang");
        match result {
            Err(ArchiverError::Input { entry, source }) => {
                assert_eq!(entry, "b.bin", "{mode}");
                assert!(
                    source.to_string().contains("connection reset"),
                    "{mode}: {source}"
                );
            }
            other => panic!("{mode}: expected the input's failure, got {other:?}"),
        }
    }
}

/// A source that ends before the length it declared (a lying
/// `Content-Length`, a connection closed early without an error) fails as
/// the input, not as a corrupt archive; one that sends more, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_short_of_its_declared_length_is_the_inputs_failure() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "a.bin", &pseudo_random(1 << 20, 1));
    let (_, bytes) = archiver()
        .pack(src.path(), Vec::new(), &PackOptions::default(), None)
        .await
        .unwrap();
    let len = bytes.len() as u64;
    for (mode, a) in modes() {
        for (what, body, declared) in [
            ("short", bytes[..bytes.len() / 2].to_vec(), len),
            ("long", bytes.clone(), len - 1),
        ] {
            let dest = tempfile::tempdir().unwrap();
            let result = tokio::time::timeout(
                TIMEOUT,
                a.unpack_sized(
                    Cursor::new(body),
                    Some(declared),
                    dest.path(),
                    &UnpackOptions::default(),
                    None,
                ),
            )
            .await
            .expect("no hang");
            match result {
                Err(e @ ArchiverError::Input { .. }) => {
                    assert!(e.is_callers_stream());
                    assert!(
                        e.to_string().contains("bytes it declared"),
                        "{mode}, {what}: {e}"
                    );
                }
                other => panic!("{mode}, {what}: expected the input's failure, got {other:?}"),
            }
        }
        // As declared: unpacked.
        let dest = tempfile::tempdir().unwrap();
        a.unpack_sized(
            Cursor::new(bytes.clone()),
            Some(len),
            dest.path(),
            &UnpackOptions::default(),
            None,
        )
        .await
        .unwrap();
    }
}

/// A writer that keeps everything, shared with the test.
struct Shared(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A tar stage stopped part-way (here by its CPU budget) must not leave the
/// caller's writer holding something that reads as a complete archive: the
/// gzip stage must see the failure, not an end of input it would finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_pack_never_writes_a_complete_gzip() {
    // Thousands of empty files: lots of walking for the tar stage, next to
    // nothing (zero-filled headers) for the gzip stage, so the tar stage is
    // the one that runs out of its budget.
    let src = tempfile::tempdir().unwrap();
    for i in 0..5000 {
        tree::write(src.path(), &format!("d{:02}/f{i:04}", i % 50), b"");
    }
    let a = Archiver::new(SandboxConfig {
        cpu_time: Some(Duration::from_millis(10)),
        cache_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ccws-test-cache")),
        pipeline: true,
        ..SandboxConfig::default()
    })
    .unwrap();
    let taken = Arc::new(Mutex::new(Vec::new()));
    let result = tokio::time::timeout(
        TIMEOUT,
        a.pack(
            src.path(),
            Shared(taken.clone()),
            &PackOptions::default(),
            None,
        ),
    )
    .await
    .expect("no hang");
    assert!(
        matches!(result, Err(ArchiverError::CpuTime(_))),
        "{:?}",
        result.map(|r| r.0)
    );
    let written = taken.lock().unwrap().clone();
    let mut out = Vec::new();
    let decoded = std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&written[..]),
        &mut out,
    );
    assert!(
        decoded.is_err(),
        "a stopped pack left {} bytes that decode as a complete gzip ({} bytes of tar)",
        written.len(),
        out.len()
    );
}

/// Yields `data`, then never anything more (a stalled download).
struct StallingReader {
    data: Cursor<Vec<u8>>,
}

impl AsyncRead for StallingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.data).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => Poll::Pending,
            other => other,
        }
    }
}

/// The tar stage fails on its own (a limit) while the gzip stage waits on a
/// stalled input: the call returns with the tar stage's error, it does not
/// wait for input that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_stage_failure_does_not_wait_for_a_stalled_input() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..20 {
        tree::write(src.path(), &format!("f{i:02}"), &pseudo_random(64 << 10, i));
    }
    let (_, bytes) = archiver()
        .pack(src.path(), Vec::new(), &PackOptions::default(), None)
        .await
        .unwrap();
    let options = UnpackOptions {
        limits: ccws::archive::Limits {
            max_entries: 3,
            ..Default::default()
        },
        ..UnpackOptions::default()
    };
    for (mode, a) in modes() {
        let dest = tempfile::tempdir().unwrap();
        // Up to just past the fourth header (the data is incompressible:
        // gzip offsets are about tar offsets), then a stall: the gzip stage
        // has put it all in the pipe and waits on its input when the tar
        // stage trips the limit at that header.
        let input = StallingReader {
            data: Cursor::new(bytes[..4 * 512 + 3 * (64 << 10) + 1500].to_vec()),
        };
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            a.unpack(input, dest.path(), &options, None),
        )
        .await
        .unwrap_or_else(|_| panic!("{mode}: still waiting on the stalled input"));
        assert!(
            matches!(
                result,
                Err(ArchiverError::Archive(ArchiveError::LimitExceeded { .. }))
            ),
            "{mode}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_level_is_reported_as_given() {
    let src = tempfile::tempdir().unwrap();
    let options = PackOptions {
        level: 300,
        ..PackOptions::default()
    };
    match archiver()
        .pack(src.path(), Vec::new(), &options, None)
        .await
    {
        Err(ArchiverError::Archive(ArchiveError::InvalidOptions(m))) => {
            assert!(m.contains("300"), "{m}")
        }
        other => panic!("expected InvalidOptions, got {:?}", other.map(|r| r.0)),
    }
}
