//! Interop with GNU tar (`/usr/bin/tar`): what ccws writes GNU tar reads, and
//! what GNU tar writes (gnu, posix/pax and ustar formats) ccws unpacks.

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use ccws::archive::{PackOptions, SkipReason, UnpackOptions};
use ccws_tests::{archiver, tree};

const TAR: &str = "/usr/bin/tar";

fn gnu_tar(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new(TAR)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {TAR}: {e}"));
    assert!(
        out.status.success(),
        "{TAR} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A tree with what every format can hold: short and unicode names, an
/// executable, empty files and directories, a name of exactly 100 bytes, and
/// a path over 100 bytes that ustar can still split into prefix and name.
fn portable_tree(root: &Path) {
    tree::write(root, "hello.txt", b"hello, world\n");
    tree::write(root, "ünï/cødé ☃.txt", "snow ☃".as_bytes());
    tree::write(root, "bin/hook", b"#!/bin/sh\nexit 0\n");
    tree::make_executable(root, "bin/hook");
    tree::write(root, "empty", b"");
    fs::create_dir_all(root.join("empty-dir/nested")).unwrap();
    tree::write(root, &"x".repeat(100), b"exactly 100 bytes of name");
    let split = format!("{}/{}", "p".repeat(90), "n".repeat(90));
    tree::write(root, &split, b"ustar prefix + name");
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    fs::write(root.join("big.bin"), big).unwrap();
}

/// Paths that only gnu and posix can hold: over 255 bytes, and a single
/// component over 100 bytes.
fn long_tree(root: &Path) {
    let over_255 = format!(
        "{}/{}/{}/leaf",
        "a".repeat(100),
        "b".repeat(100),
        "c".repeat(100)
    );
    tree::write(root, &over_255, b"over 255");
    tree::write(root, &format!("{}.txt", "l".repeat(200)), b"long component");
    tree::write(
        root,
        &format!("deep/{}", "日本".repeat(40)),
        b"unicode long",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnu_tar_reads_what_ccws_writes() {
    let src = tempfile::tempdir().unwrap();
    portable_tree(src.path());
    long_tree(src.path());
    tree::write(src.path(), "back\\slash", b"backslash");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("out.tar.gz");
    let report = archiver()
        .pack_file(src.path(), &archive, &PackOptions::default(), None)
        .await
        .unwrap();

    // Listed: every entry, as the tar crate reads them, in the same order.
    let listing = gnu_tar(
        &["--quoting-style=literal", "-tzf", archive.to_str().unwrap()],
        work.path(),
    );
    let listed: Vec<String> = String::from_utf8(listing)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed.len() as u64, report.files + report.dirs);
    let bytes = fs::read(&archive).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let written: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    assert_eq!(listed, written);
    assert!(listed.contains(&"back\\slash".to_owned()), "{listed:?}");

    // Extracted: the same tree, modes included (0755 / 0644 as packed).
    let dest = work.path().join("extracted");
    fs::create_dir(&dest).unwrap();
    gnu_tar(
        &[
            "-xzf",
            archive.to_str().unwrap(),
            "-C",
            dest.to_str().unwrap(),
        ],
        work.path(),
    );
    assert_eq!(tree::snapshot(src.path()), tree::snapshot(&dest));
}

async fn ccws_unpacks(format: &str, with_long_names: bool) {
    let src = tempfile::tempdir().unwrap();
    portable_tree(src.path());
    if with_long_names {
        long_tree(src.path());
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join(format!("{format}.tar.gz"));
    let fmt = format!("--format={format}");
    gnu_tar(
        &[
            "-czf",
            archive.to_str().unwrap(),
            &fmt,
            "-C",
            src.path().to_str().unwrap(),
            ".",
        ],
        work.path(),
    );
    let dest = work.path().join("dest");
    let report = archiver()
        .unpack_file(&archive, &dest, &UnpackOptions::default(), None)
        .await
        .unwrap_or_else(|e| panic!("{format}: {e}"));
    assert!(report.skipped.is_empty(), "{format}: {:?}", report.skipped);
    assert_eq!(
        tree::snapshot(src.path()),
        tree::snapshot(&dest),
        "{format}: trees differ"
    );
    let files = tree::snapshot(src.path())
        .values()
        .filter(|v| v.is_some())
        .count() as u64;
    assert_eq!(report.files, files, "{format}");
    assert_eq!(report.executables, ["bin/hook"], "{format}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccws_unpacks_gnu_format() {
    ccws_unpacks("gnu", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccws_unpacks_posix_pax_format() {
    ccws_unpacks("posix", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccws_unpacks_ustar_format() {
    ccws_unpacks("ustar", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnu_tar_links_are_skipped_and_reported() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "data.txt", b"data");
    fs::hard_link(src.path().join("data.txt"), src.path().join("hard.txt")).unwrap();
    std::os::unix::fs::symlink("data.txt", src.path().join("soft.txt")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("links.tar.gz");
    gnu_tar(
        &[
            "-czf",
            archive.to_str().unwrap(),
            "-C",
            src.path().to_str().unwrap(),
            "data.txt",
            "hard.txt",
            "soft.txt",
        ],
        work.path(),
    );
    let dest = work.path().join("dest");
    let report = archiver()
        .unpack(
            Cursor::new(fs::read(&archive).unwrap()),
            &dest,
            &UnpackOptions::default(),
            None,
        )
        .await
        .unwrap();
    let skipped: Vec<(&str, SkipReason, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason, s.detail.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("hard.txt", SkipReason::HardLink, "-> data.txt"),
            ("soft.txt", SkipReason::Symlink, "-> data.txt")
        ]
    );
    let got: Vec<String> = tree::snapshot(&dest).into_keys().collect();
    assert_eq!(got, ["data.txt"]);
}
