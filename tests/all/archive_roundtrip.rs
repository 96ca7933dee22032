//! Round trips through the real component: pack a tree, unpack it, compare.

use std::fs::{self, File};
use std::io::{Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use ccws::archive::{
    ArchiveError, ArchiverError, EntryKind, FilterFn, PackOptions, Report, SkipReason,
    UnpackOptions, Verdict,
};
use ccws_tests::{archiver, tree};

async fn pack(src: &Path, options: &PackOptions, filter: Option<FilterFn>) -> (Report, Vec<u8>) {
    archiver()
        .pack(src, Vec::new(), options, filter)
        .await
        .unwrap_or_else(|e| panic!("pack {}: {e}", src.display()))
}

async fn unpack(
    bytes: &[u8],
    dest: &Path,
    options: &UnpackOptions,
    filter: Option<FilterFn>,
) -> Report {
    archiver()
        .unpack(Cursor::new(bytes.to_vec()), dest, options, filter)
        .await
        .unwrap_or_else(|e| panic!("unpack into {}: {e}", dest.display()))
}

/// Pack `src` with default options, unpack into a fresh directory, and check
/// the two trees are the same. Returns both reports and the archive.
async fn round_trip(src: &Path) -> (Report, Report, Vec<u8>, tempfile::TempDir) {
    let (packed, bytes) = pack(src, &PackOptions::default(), None).await;
    let dest = tempfile::tempdir().unwrap();
    let unpacked = unpack(&bytes, dest.path(), &UnpackOptions::default(), None).await;
    assert_eq!(
        tree::snapshot(src),
        tree::snapshot(dest.path()),
        "trees differ after a round trip"
    );
    assert_eq!(packed.files, unpacked.files);
    assert_eq!(packed.dirs, unpacked.dirs);
    assert_eq!(packed.bytes, unpacked.bytes);
    (packed, unpacked, bytes, dest)
}

/// The entries of a tar.gz: (path, entry type byte, mode, uid, gid, size).
fn entries(bytes: &[u8]) -> Vec<(String, u8, u32, u64, u64, u64)> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.entry_type().as_byte(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.size().unwrap(),
            )
        })
        .collect()
}

fn set_mtime(path: &Path, secs: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    File::open(path).unwrap().set_modified(t).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_names() {
    let src = tempfile::tempdir().unwrap();
    let names = [
        "ünïcødé/日本語のファイル.txt",
        "emoji 🎉 party/🦀.rs",
        "ελληνικά/файл с пробелами.md",
        "e\u{301}-decomposed",
        "\u{e9}-composed",
        "tab\tand newline\n in a name",
        "quote\"back\\slash'",
    ];
    for (i, n) in names.iter().enumerate() {
        tree::write(src.path(), n, format!("file {i}: {n}").as_bytes());
    }
    let (packed, _, bytes, _) = round_trip(src.path()).await;
    assert_eq!(packed.files, names.len() as u64);
    assert!(packed.skipped.is_empty(), "{:?}", packed.skipped);
    let listed: Vec<String> = entries(&bytes).into_iter().map(|e| e.0).collect();
    for n in names {
        assert!(
            listed.iter().any(|l| l == n),
            "{n:?} missing from {listed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_paths_and_deep_nesting() {
    let src = tempfile::tempdir().unwrap();
    // One component of 200 bytes (over ustar's 100), a path over 255 bytes
    // (over ustar's prefix+name), a 3-byte-character path over 255 bytes,
    // and 100 levels of nesting.
    let long_component = format!("{}.txt", "c".repeat(196));
    let over_255 = format!(
        "{}/{}/{}/end.txt",
        "a".repeat(120),
        "b".repeat(120),
        "d".repeat(60)
    );
    let unicode_long = format!("{}/{}", "日".repeat(60), "本".repeat(60));
    let deep: String = (0..100).map(|i| format!("n{i}/")).collect::<String>() + "bottom.txt";
    // A backslash is an ordinary byte in a Unix name, short or long.
    let backslash_long = format!("{}/{}\\not-a-separator", "s".repeat(90), "t".repeat(40));
    let all = [
        &long_component,
        &over_255,
        &unicode_long,
        &deep,
        &backslash_long,
    ];
    for p in all {
        tree::write(src.path(), p, p.as_bytes());
    }
    assert!(long_component.len() > 100 && over_255.len() > 255 && unicode_long.len() > 255);
    assert!(deep.len() > 255);
    let (packed, _, bytes, dest) = round_trip(src.path()).await;
    assert_eq!(packed.files, 5);
    for p in all {
        assert_eq!(fs::read(dest.path().join(p)).unwrap(), p.as_bytes());
        assert!(
            entries(&bytes).iter().any(|e| &e.0 == p),
            "{p} not in the archive"
        );
    }
}

/// Make `levels` nested directories named `n` under `root`, a file `f` at
/// the bottom: one level at a time, relative to the last, as no single path
/// can name it once it is longer than PATH_MAX.
fn nest(root: &Path, levels: usize) {
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(int(sys.argv[2])):
    os.mkdir("n", dir_fd=fd)
    nfd = os.open("n", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(root)
        .arg(levels.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// What a pack writes, an unpack with the same (default) limits reads back:
/// a 4,096-byte relative path and 2,040 levels of nesting, which no host
/// could name under the directory it unpacks into, are left out and
/// reported; the rest of the tree round-trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_no_host_could_name_are_not_packed() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "kept.txt", b"kept");
    // 16 directories of 254 bytes (255 with their `/`), a file of 16.
    let long: String = (0..16)
        .map(|_| format!("{}/", "l".repeat(254)))
        .collect::<String>()
        + &"f".repeat(16);
    assert_eq!(long.len(), 4096);
    // Two steps, each under PATH_MAX.
    let (first, rest) = long.split_at(8 * 255);
    fs::create_dir_all(src.path().join(first)).unwrap();
    nest_path(&src.path().join(first), rest);
    let deep = src.path().join("deep");
    fs::create_dir(&deep).unwrap();
    nest(&deep, 2040);
    for a in [ccws_tests::archiver(), ccws_tests::archiver_serial()] {
        let (packed, bytes) = a
            .pack(src.path(), Vec::new(), &PackOptions::default(), None)
            .await
            .unwrap();
        let over: Vec<&str> = packed
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::OverLimit)
            .map(|s| s.path.as_str())
            .collect();
        let deepest = format!("deep/{}", vec!["n"; 128].join("/"));
        assert!(over.contains(&deepest.as_str()), "{over:?}");
        assert!(
            over.iter()
                .any(|p| p.starts_with(&"l".repeat(254)) && p.len() > 3072),
            "{over:?}"
        );
        let dest = tempfile::tempdir().unwrap();
        let unpacked = a
            .unpack(
                Cursor::new(bytes),
                dest.path(),
                &UnpackOptions::default(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(unpacked.files, packed.files);
        assert_eq!(fs::read(dest.path().join("kept.txt")).unwrap(), b"kept");
    }
}

/// Create the directories of `rel` under `root` (each component relative
/// to the last) and an empty file at its last component.
fn nest_path(root: &Path, rel: &str) {
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
parts = sys.argv[2].split("/")
for name in parts[:-1]:
    os.mkdir(name, dir_fd=fd)
    nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
os.close(os.open(parts[-1], os.O_WRONLY | os.O_CREAT, dir_fd=fd))
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(root)
        .arg(rel)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_files_and_empty_dirs() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "empty.txt", b"");
    tree::write(src.path(), "dir/also-empty", b"");
    fs::create_dir_all(src.path().join("empty-dir")).unwrap();
    fs::create_dir_all(src.path().join("nested/empty/dirs/all/the/way")).unwrap();
    let (packed, unpacked, _, dest) = round_trip(src.path()).await;
    assert_eq!((packed.files, packed.dirs, packed.bytes), (2, 8, 0));
    assert_eq!((unpacked.files, unpacked.dirs, unpacked.bytes), (2, 8, 0));
    assert!(dest.path().join("nested/empty/dirs/all/the/way").is_dir());
    assert_eq!(
        fs::metadata(dest.path().join("empty.txt")).unwrap().len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_source_directory() {
    let src = tempfile::tempdir().unwrap();
    let (packed, unpacked, bytes, dest) = round_trip(src.path()).await;
    assert_eq!((packed.files, packed.dirs), (0, 0));
    assert_eq!((unpacked.files, unpacked.dirs), (0, 0));
    assert!(entries(&bytes).is_empty());
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_normalised_and_exec_bits_kept() {
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("hook.sh", 0o755, true),
        ("owner-only-exec", 0o700, true),
        ("group-exec", 0o654, true),
        ("private", 0o600, false),
        ("read-only", 0o444, false),
        ("world-writable", 0o666, false),
        ("setuid", 0o4755, true),
    ];
    for (name, m, _) in files {
        tree::write(src.path(), name, name.as_bytes());
        chmod(&src.path().join(name), m);
    }
    fs::create_dir(src.path().join("private-dir")).unwrap();
    tree::write(src.path(), "private-dir/x", b"x");
    chmod(&src.path().join("private-dir"), 0o700);

    let (packed, bytes) = pack(src.path(), &PackOptions::default(), None).await;
    let mut want_exec: Vec<&str> = files.iter().filter(|f| f.2).map(|f| f.0).collect();
    want_exec.sort();
    let mut got_exec = packed.executables.clone();
    got_exec.sort();
    assert_eq!(got_exec, want_exec);

    for (path, kind, m, uid, gid, _) in entries(&bytes) {
        assert_eq!((uid, gid), (0, 0), "{path}: owner not zeroed");
        let want = match kind {
            b'5' => 0o755,
            _ if want_exec.contains(&path.as_str()) => 0o755,
            _ => 0o644,
        };
        assert_eq!(m, want, "{path}: mode {m:o} in the archive");
    }

    let dest = tempfile::tempdir().unwrap();
    let unpacked = unpack(&bytes, dest.path(), &UnpackOptions::default(), None).await;
    let mut got_exec = unpacked.executables.clone();
    got_exec.sort();
    assert_eq!(got_exec, want_exec);
    for (name, _, exec) in files {
        let m = mode(&dest.path().join(name));
        if exec {
            assert_eq!(m, 0o755, "{name}: mode {m:o} after unpack");
        } else {
            // Created by the sandbox with the process umask applied to 0666.
            assert_eq!(m & 0o7111, 0, "{name}: mode {m:o} after unpack");
            assert_eq!(m & 0o600, 0o600, "{name}: mode {m:o} after unpack");
        }
    }
    assert_eq!(fs::read(dest.path().join("private-dir/x")).unwrap(), b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_files() {
    let src = tempfile::tempdir().unwrap();
    for d in 0..40 {
        for f in 0..75 {
            let data = format!("dir {d} file {f}\n").repeat(f % 7);
            tree::write(
                src.path(),
                &format!("d{d:02}/sub{}/f{f:03}.txt", f % 3),
                data.as_bytes(),
            );
        }
    }
    let (packed, unpacked, _, _) = round_trip(src.path()).await;
    assert_eq!(packed.files, 3000);
    assert_eq!(packed.dirs, 40 * 4);
    assert_eq!(unpacked.files, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_prunes_a_subtree_when_packing() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "keep/a.txt", b"a");
    tree::write(src.path(), "cache/big/blob", b"blob");
    tree::write(src.path(), "cache/other", b"o");
    tree::write(src.path(), "keep/cache/not-top-level", b"kept");
    tree::write(src.path(), "secret.key", b"k");
    tree::write(src.path(), "plain.txt", b"p");
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let filter: FilterFn = Box::new(move |rel: &str, kind: EntryKind| {
        log.lock().unwrap().push((rel.to_owned(), kind));
        match rel {
            "cache" | "secret.key" => Verdict::Exclude,
            "plain.txt" => Verdict::KeepExecutable,
            _ => Verdict::Keep,
        }
    });
    let (report, bytes) = pack(src.path(), &PackOptions::default(), Some(filter)).await;
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked.contains(&("cache".into(), EntryKind::Directory)),
        "{asked:?}"
    );
    assert!(
        asked.contains(&("keep/a.txt".into(), EntryKind::File)),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|(p, _)| p.starts_with("cache/")),
        "the filter was asked inside a pruned subtree: {asked:?}"
    );
    let skipped: Vec<(&str, SkipReason)> = report
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            ("cache", SkipReason::Excluded),
            ("secret.key", SkipReason::Excluded)
        ]
    );
    assert_eq!(report.executables, ["plain.txt"]);

    let names: Vec<String> = entries(&bytes).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "keep/",
            "keep/a.txt",
            "keep/cache/",
            "keep/cache/not-top-level",
            "plain.txt"
        ]
    );
    let dest = tempfile::tempdir().unwrap();
    unpack(&bytes, dest.path(), &UnpackOptions::default(), None).await;
    assert_eq!(mode(&dest.path().join("plain.txt")), 0o755);
    assert!(!dest.path().join("cache").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_prunes_a_subtree_when_unpacking() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "keep/a.txt", b"a");
    tree::write(src.path(), "drop/deep/er/file", b"x");
    tree::write(src.path(), "drop/file", b"x");
    tree::write(src.path(), "z.txt", b"z");
    let (_, bytes) = pack(src.path(), &PackOptions::default(), None).await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let filter: FilterFn = Box::new(move |rel: &str, _| {
        log.lock().unwrap().push(rel.to_owned());
        if rel == "drop" {
            Verdict::Exclude
        } else {
            Verdict::Keep
        }
    });
    let dest = tempfile::tempdir().unwrap();
    let report = unpack(&bytes, dest.path(), &UnpackOptions::default(), Some(filter)).await;
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.iter().any(|p| p.starts_with("drop/")), "{asked:?}");
    let skipped: Vec<(&str, SkipReason)> = report
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason))
        .collect();
    assert_eq!(skipped, [("drop", SkipReason::Excluded)]);
    let got: Vec<String> = tree::snapshot(dest.path()).into_keys().collect();
    assert_eq!(got, ["keep", "keep/a.txt", "z.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_patterns_when_packing_and_unpacking() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "a/b/c.tmp", b"t");
    tree::write(src.path(), "top.tmp", b"t");
    tree::write(src.path(), "node_modules/x/y.js", b"y");
    tree::write(src.path(), "a/node_modules/kept.js", b"k");
    tree::write(src.path(), "projects/one/f", b"1");
    tree::write(src.path(), "projects/two/f", b"2");
    tree::write(src.path(), "projects/readme", b"r");
    tree::write(src.path(), "keep.txt", b"k");
    let options = PackOptions {
        exclude: vec![
            "**/*.tmp".into(),
            "node_modules/".into(),
            "projects/*/".into(),
        ],
        ..PackOptions::default()
    };
    let (report, bytes) = pack(src.path(), &options, None).await;
    let mut skipped: Vec<(&str, SkipReason)> = report
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason))
        .collect();
    skipped.sort_by(|a, b| a.0.cmp(b.0));
    use SkipReason::Excluded;
    assert_eq!(
        skipped,
        [
            ("a/b/c.tmp", Excluded),
            ("node_modules", Excluded),
            ("projects/one", Excluded),
            ("projects/readme", Excluded),
            ("projects/two", Excluded),
            ("top.tmp", Excluded),
        ]
    );
    let dest = tempfile::tempdir().unwrap();
    unpack(&bytes, dest.path(), &UnpackOptions::default(), None).await;
    let got: Vec<String> = tree::snapshot(dest.path()).into_keys().collect();
    assert_eq!(
        got,
        [
            "a",
            "a/b",
            "a/node_modules",
            "a/node_modules/kept.js",
            "keep.txt",
            "projects"
        ]
    );

    // The same patterns on the unpack side.
    let (_, all) = pack(src.path(), &PackOptions::default(), None).await;
    let dest = tempfile::tempdir().unwrap();
    let report = unpack(
        &all,
        dest.path(),
        &UnpackOptions {
            exclude: vec!["**/*.tmp".into(), "node_modules".into()],
            ..UnpackOptions::default()
        },
        None,
    )
    .await;
    let mut skipped: Vec<&str> = report.skipped.iter().map(|s| s.path.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["a/b/c.tmp", "node_modules", "top.tmp"]);
    assert!(!dest.path().join("node_modules").exists());
    assert!(dest.path().join("projects/one/f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_are_typed_errors() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "f", b"x");
    let bad_pattern = PackOptions {
        exclude: vec!["a[b".into()],
        ..PackOptions::default()
    };
    match archiver()
        .pack(src.path(), Vec::new(), &bad_pattern, None)
        .await
    {
        Err(ArchiverError::Archive(ArchiveError::InvalidOptions(m))) => {
            assert!(m.contains("a[b"), "{m}")
        }
        other => panic!("expected InvalidOptions, got {:?}", other.map(|r| r.0)),
    }
    let bad_level = PackOptions {
        level: 10,
        ..PackOptions::default()
    };
    match archiver()
        .pack(src.path(), Vec::new(), &bad_level, None)
        .await
    {
        Err(ArchiverError::Archive(ArchiveError::InvalidOptions(m))) => {
            assert!(m.contains("10"), "{m}")
        }
        other => panic!("expected InvalidOptions, got {:?}", other.map(|r| r.0)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gzip_level_round_trips() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "text", "compressible ".repeat(5000).as_bytes());
    let mut sizes = Vec::new();
    for level in [0, 1, 6, 9] {
        let (_, bytes) = pack(
            src.path(),
            &PackOptions {
                level,
                ..PackOptions::default()
            },
            None,
        )
        .await;
        let dest = tempfile::tempdir().unwrap();
        unpack(&bytes, dest.path(), &UnpackOptions::default(), None).await;
        assert_eq!(
            tree::snapshot(src.path()),
            tree::snapshot(dest.path()),
            "level {level}"
        );
        sizes.push(bytes.len());
    }
    assert!(sizes[0] > 65_000, "level 0 stores: {sizes:?}");
    assert!(sizes[3] < sizes[0] / 10, "level 9 compresses: {sizes:?}");
}

/// A tree with fixed mtimes everywhere, files created in the given order.
fn fixed_tree(root: &Path, order: &[&str]) {
    for rel in order {
        tree::write(root, rel, format!("content of {rel}").as_bytes());
    }
    tree::make_executable(root, "bin/tool");
    let mut secs = 1_500_000_000;
    for (rel, _) in tree::snapshot(root) {
        secs += 1000;
        set_mtime(&root.join(rel), secs);
    }
}

const FIXED: [&str; 5] = [
    "a/one.txt",
    "a/b/two.txt",
    "bin/tool",
    "z.txt",
    "m/n/o/p.txt",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_tree_gives_byte_identical_archives() {
    let one = tempfile::tempdir().unwrap();
    fixed_tree(one.path(), &FIXED);
    let (_, first) = pack(one.path(), &PackOptions::default(), None).await;
    let (_, second) = pack(one.path(), &PackOptions::default(), None).await;
    assert!(
        first == second,
        "packing the same tree twice gave different bytes"
    );

    // The same content created in the opposite order (different inode and
    // directory-listing order) packs to the same bytes.
    let other = tempfile::tempdir().unwrap();
    let mut reversed = FIXED;
    reversed.reverse();
    fixed_tree(other.path(), &reversed);
    let (_, third) = pack(other.path(), &PackOptions::default(), None).await;
    assert!(
        first == third,
        "the same tree built in another order packed differently"
    );

    // Sorted, byte-wise, depth-first.
    let names: Vec<String> = entries(&first).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "a/",
            "a/b/",
            "a/b/two.txt",
            "a/one.txt",
            "bin/",
            "bin/tool",
            "m/",
            "m/n/",
            "m/n/o/",
            "m/n/o/p.txt",
            "z.txt"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_unpack_pack_is_byte_identical() {
    let src = tempfile::tempdir().unwrap();
    fixed_tree(src.path(), &FIXED);
    let (_, first) = pack(src.path(), &PackOptions::default(), None).await;
    let dest = tempfile::tempdir().unwrap();
    unpack(&first, dest.path(), &UnpackOptions::default(), None).await;
    let (_, second) = pack(dest.path(), &PackOptions::default(), None).await;
    if first != second {
        let a = entries_with_mtime(&first);
        let b = entries_with_mtime(&second);
        let diff: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
        panic!("pack -> unpack -> pack changed the archive; differing entries (path, mode, mtime): {diff:?}");
    }
}

fn entries_with_mtime(bytes: &[u8]) -> Vec<(String, u32, u64)> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_and_special_files_are_skipped_and_reported() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    tree::write(s, "target.txt", b"t");
    tree::write(s, "dir/inside.txt", b"i");
    std::os::unix::fs::symlink("target.txt", s.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("dir", s.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.join("link-outside")).unwrap();
    std::os::unix::fs::symlink("nowhere", s.join("dangling")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(s.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    let _socket = std::os::unix::net::UnixListener::bind(s.join("socket")).unwrap();

    let (report, bytes) = pack(s, &PackOptions::default(), None).await;
    let mut skipped: Vec<(&str, SkipReason, &str)> = report
        .skipped
        .iter()
        .map(|x| (x.path.as_str(), x.reason, x.detail.as_str()))
        .collect();
    skipped.sort_by(|a, b| a.0.cmp(b.0));
    use SkipReason::{SpecialFile, Symlink};
    assert_eq!(
        skipped,
        [
            ("dangling", Symlink, "-> nowhere"),
            ("fifo", SpecialFile, ""),
            // The sandbox's readlink refuses absolute targets: no detail.
            ("link-outside", Symlink, ""),
            ("link-to-dir", Symlink, "-> dir"),
            ("link-to-file", Symlink, "-> target.txt"),
            ("socket", SpecialFile, ""),
        ]
    );
    assert_eq!((report.files, report.dirs), (2, 1));
    let names: Vec<String> = entries(&bytes).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["dir/", "dir/inside.txt", "target.txt"]);
}

/// Whether this process can read a file with mode 000 (root, or
/// CAP_DAC_OVERRIDE): then "unreadable" cannot be staged with permissions.
fn privileged_reader(dir: &Path) -> bool {
    let probe = dir.join("probe");
    fs::write(&probe, b"p").unwrap();
    chmod(&probe, 0);
    let readable = File::open(&probe)
        .and_then(|mut f| f.read(&mut [0; 1]))
        .is_ok();
    fs::remove_file(&probe).unwrap();
    readable
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_entries_are_skipped_and_the_pack_goes_on() {
    let scratch = tempfile::tempdir().unwrap();
    let privileged = privileged_reader(scratch.path());
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    tree::write(s, "a-before.txt", b"before");
    tree::write(s, "locked.txt", b"secret");
    tree::write(s, "locked-dir/inside.txt", b"inside");
    tree::write(s, "z-after.txt", b"after");
    chmod(&s.join("locked.txt"), 0o000);
    chmod(&s.join("locked-dir"), 0o000);

    let result = archiver()
        .pack(s, Vec::new(), &PackOptions::default(), None)
        .await;
    // Restore permissions so the temp dir can be removed whatever happened.
    chmod(&s.join("locked-dir"), 0o755);
    chmod(&s.join("locked.txt"), 0o644);
    let (report, bytes) = result.unwrap();
    let names: Vec<String> = entries(&bytes).into_iter().map(|e| e.0).collect();
    assert!(
        names.contains(&"a-before.txt".to_owned()) && names.contains(&"z-after.txt".to_owned())
    );

    if privileged {
        // Running as root (or with CAP_DAC_OVERRIDE): mode 000 does not stop
        // this process from reading, so nothing can be "unreadable" here and
        // the skip assertion cannot be made honestly. Check instead that the
        // entries were packed normally, with their modes normalised.
        eprintln!("note: privileged reader; the Unreadable assertions are skipped");
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert_eq!(
            names,
            [
                "a-before.txt",
                "locked-dir/",
                "locked-dir/inside.txt",
                "locked.txt",
                "z-after.txt"
            ]
        );
        return;
    }
    let mut skipped: Vec<(&str, SkipReason)> = report
        .skipped
        .iter()
        .map(|x| (x.path.as_str(), x.reason))
        .collect();
    skipped.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        skipped,
        [
            ("locked-dir", SkipReason::Unreadable),
            ("locked.txt", SkipReason::Unreadable)
        ]
    );
    assert!(
        report.skipped.iter().all(|x| !x.detail.is_empty()),
        "{:?}",
        report.skipped
    );
    assert_eq!(names, ["a-before.txt", "z-after.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_source_names_are_skipped_and_reported() {
    use std::os::unix::ffi::OsStrExt;
    let src = tempfile::tempdir().unwrap();
    // Siblings on both sides of the bad name in any listing order: the
    // directory's other entries are all packed, not cut off at it.
    let fine: Vec<String> = (0..40).map(|i| format!("d/fine-{i:02}.txt")).collect();
    for name in &fine {
        tree::write(src.path(), name, name.as_bytes());
    }
    let bad = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
    fs::write(src.path().join("d").join(bad), b"bad").unwrap();
    let (report, bytes) = pack(src.path(), &PackOptions::default(), None).await;
    let names: Vec<String> = entries(&bytes).into_iter().map(|e| e.0).collect();
    let mut want = vec!["d/".to_owned()];
    want.extend(fine);
    assert_eq!(names, want);
    assert_eq!(report.files, 40);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    let skip = &report.skipped[0];
    // WASI cannot name it, so the directory holding it is reported.
    assert_eq!(
        (skip.path.as_str(), skip.reason),
        ("d", SkipReason::NonUtf8Name),
        "{skip:?}"
    );
    assert!(skip.detail.contains("UTF-8"), "{skip:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_api_round_trip() {
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "x/y.txt", b"y");
    tree::write(src.path(), "run", b"#!/bin/sh\n");
    tree::make_executable(src.path(), "run");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("out.tar.gz");
    fs::write(&archive, b"an old archive, to be replaced").unwrap();
    let a = archiver();
    let packed = a
        .pack_file(src.path(), &archive, &PackOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(packed.files, 2);
    // Written beside and renamed: nothing else left in the directory.
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 1);
    let dest = work.path().join("dest/not/yet/there");
    let unpacked = a
        .unpack_file(&archive, &dest, &UnpackOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(unpacked.files, 2);
    assert_eq!(tree::snapshot(src.path()), tree::snapshot(&dest));
    match a
        .unpack_file(
            &work.path().join("missing.tar.gz"),
            &dest,
            &UnpackOptions::default(),
            None,
        )
        .await
    {
        Err(ArchiverError::Io { path, .. }) => assert!(path.ends_with("missing.tar.gz")),
        other => panic!("expected ArchiverError::Io, got {other:?}"),
    }
}
