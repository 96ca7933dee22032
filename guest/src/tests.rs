//! Native unit tests of the archive core (the same code the component runs).
//! The component itself is exercised end to end by `tests/all/archive_*.rs`.

use std::fs::{self, File};
use std::io::{self, Cursor, Read, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

use crate::io::MultiGz;
use crate::types::*;
use crate::{pack, pack_file, unpack, unpack_file};

/// A new temporary directory: in the system's natively; in WASI, which has
/// none, under `/tmp`, which the runner of these tests there preopens
/// (`tests/all/archive_wasi_layer.rs`).
fn tempdir() -> tempfile::TempDir {
    #[cfg(target_os = "wasi")]
    let _ = tempfile::env::override_temp_dir(Path::new("/tmp"));
    tempfile::tempdir().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn set_mtime(path: &Path, secs: u64) {
    File::open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn mtime(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn pack_bytes(src: &Path) -> (Report, Vec<u8>) {
    pack(src, Vec::new(), &PackOptions::default(), None).unwrap()
}

fn unpack_bytes(
    bytes: &[u8],
    dest: &Path,
    options: &UnpackOptions,
) -> Result<Report, ArchiveError> {
    unpack(Cursor::new(bytes), dest, options, None)
}

/// A tar with raw control over the size field (the tar crate's `Builder`
/// writes headers as given and does not check them against the body).
fn tar_with(entries: &[(Header, &[u8])], pax_size: Option<u64>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    if let Some(size) = pax_size {
        let value = size.to_string();
        b.append_pax_extensions([("size", value.as_bytes())])
            .unwrap();
    }
    for (h, data) in entries {
        b.append(h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn file_header(name: &str, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    h
}

mod pax_size_desync {
    use super::*;

    #[test]
    fn ustar_size_zero_under_a_small_pax_size_is_corrupt() {
        // CVE-2025-62518 shape: a ustar-only parser would see an empty file
        // followed by the smuggled header.
        let smuggled = tar_with(&[(file_header("smuggled", 4), b"evil")], None);
        let tar = tar_with(
            &[(file_header("desync", 0), &smuggled)],
            Some(smuggled.len() as u64),
        );
        let dest = tempdir();
        match unpack_bytes(&gz(&tar), dest.path(), &UnpackOptions::default()) {
            Err(ArchiveError::Corrupt { entry, message }) => {
                assert_eq!(entry, "desync");
                assert!(message.contains("PAX size"), "{message}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(!dest.path().join("smuggled").exists());
        assert!(!dest.path().join("desync").exists());
    }

    #[test]
    fn nonzero_mismatch_is_corrupt() {
        let tar = tar_with(&[(file_header("desync", 4), b"data")], Some(2));
        let dest = tempdir();
        let err = unpack_bytes(&gz(&tar), dest.path(), &UnpackOptions::default()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Corrupt { ref entry, .. } if entry == "desync"),
            "{err:?}"
        );
    }

    #[test]
    fn ustar_size_zero_is_allowed_for_sizes_it_cannot_hold() {
        // Over 8 GiB the ustar field cannot hold the size and pax writers
        // leave it 0: not a desync. (It then meets the file-size limit.)
        let big = 9u64 << 30;
        let tar = tar_with(&[(file_header("huge", 0), b"")], Some(big));
        let dest = tempdir();
        let options = UnpackOptions {
            limits: Limits {
                max_file_bytes: 1 << 20,
                ..Limits::default()
            },
            ..UnpackOptions::default()
        };
        match unpack_bytes(&gz(&tar), dest.path(), &options) {
            Err(ArchiveError::LimitExceeded { limit, entry, .. }) => {
                assert_eq!(limit, LimitKind::FileBytes);
                assert_eq!(entry, "huge");
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
    }

    #[test]
    fn agreeing_pax_size_is_fine() {
        let tar = tar_with(&[(file_header("same", 4), b"data")], Some(4));
        let dest = tempdir();
        let report = unpack_bytes(&gz(&tar), dest.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(report.files, 1);
        assert_eq!(fs::read(dest.path().join("same")).unwrap(), b"data");
    }
}

mod names {
    use super::*;

    /// What `tar::Builder::append_data` writes for the same entries: the
    /// packed tar must not change for names it handles.
    fn reference(entries: &[(&str, EntryType, u32, u64, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, mode, mtime, data) in entries {
            let mut h = Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(*mtime);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn same_bytes_as_append_data_for_ordinary_names() {
        let src = tempdir();
        let short = "short.txt".to_owned();
        let exactly_100 = "e".repeat(100);
        let long_dir = "d".repeat(120);
        let long_file = format!("{long_dir}/{}", "f".repeat(150));
        // A multi-byte character straddles byte 100: the truncated copy in
        // the header is cut before it.
        let straddle = format!("{}日本語", "u".repeat(98));
        for (rel, data) in [
            (&short, &b"s"[..]),
            (&exactly_100, b"e"),
            (&long_file, b"l"),
            (&straddle, b"u"),
        ] {
            write(src.path(), rel, data);
            set_mtime(&src.path().join(rel), 1_600_000_000);
        }
        set_mtime(&src.path().join(&long_dir), 1_600_000_001);
        let (_, packed) = pack_bytes(src.path());
        let mut packed_tar = Vec::new();
        MultiGz::new(Cursor::new(&packed))
            .read_to_end(&mut packed_tar)
            .unwrap();
        let (_, staged_tar) =
            crate::pack_tar(src.path(), Vec::new(), &PackOptions::default(), None).unwrap();

        let long_dir_entry = format!("{long_dir}/");
        let want = reference(&[
            (
                &long_dir_entry,
                EntryType::Directory,
                0o755,
                1_600_000_001,
                b"",
            ),
            (&long_file, EntryType::Regular, 0o644, 1_600_000_000, b"l"),
            (&exactly_100, EntryType::Regular, 0o644, 1_600_000_000, b"e"),
            (&short, EntryType::Regular, 0o644, 1_600_000_000, b"s"),
            (&straddle, EntryType::Regular, 0o644, 1_600_000_000, b"u"),
        ]);
        assert!(packed_tar == want, "pack's tar differs from append_data's");
        assert!(
            staged_tar == want,
            "pack-tar's tar differs from append_data's"
        );
    }

    #[test]
    fn backslashes_are_ordinary_bytes() {
        let src = tempdir();
        let short = "a\\b".to_owned();
        let long = format!("{}\\{}", "x".repeat(80), "y".repeat(80));
        write(src.path(), &short, b"short");
        write(src.path(), &long, b"long");
        let (report, packed) = pack_bytes(src.path());
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&packed[..]));
        let names: Vec<Vec<u8>> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        assert_eq!(names, [short.as_bytes(), long.as_bytes()]);
        let dest = tempdir();
        unpack_bytes(&packed, dest.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(fs::read(dest.path().join(&long)).unwrap(), b"long");
    }
}

mod mtimes {
    use super::*;

    #[test]
    fn unpack_restores_file_and_directory_mtimes() {
        let src = tempdir();
        write(src.path(), "a/b/c.txt", b"c");
        write(src.path(), "a/d.txt", b"d");
        set_mtime(&src.path().join("a/b/c.txt"), 1_000_000_001);
        set_mtime(&src.path().join("a/d.txt"), 1_000_000_002);
        set_mtime(&src.path().join("a/b"), 1_000_000_003);
        set_mtime(&src.path().join("a"), 1_000_000_004);
        let (_, first) = pack_bytes(src.path());
        let dest = tempdir();
        unpack_bytes(&first, dest.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(mtime(&dest.path().join("a/b/c.txt")), 1_000_000_001);
        assert_eq!(mtime(&dest.path().join("a/d.txt")), 1_000_000_002);
        assert_eq!(mtime(&dest.path().join("a/b")), 1_000_000_003);
        assert_eq!(mtime(&dest.path().join("a")), 1_000_000_004);
        let (_, second) = pack_bytes(dest.path());
        assert!(first == second, "pack -> unpack -> pack changed the bytes");
    }
}

mod options {
    use super::*;

    #[test]
    fn zero_limits_are_invalid() {
        let dest = tempdir();
        for (limits, name) in [
            (
                Limits {
                    max_entries: 0,
                    ..Limits::default()
                },
                "max_entries",
            ),
            (
                Limits {
                    max_path_bytes: 0,
                    ..Limits::default()
                },
                "max_path_bytes",
            ),
            (
                Limits {
                    max_depth: 0,
                    ..Limits::default()
                },
                "max_depth",
            ),
        ] {
            let options = UnpackOptions {
                limits,
                ..UnpackOptions::default()
            };
            match unpack_bytes(&gz(&[0; 1024]), dest.path(), &options) {
                Err(ArchiveError::InvalidOptions(m)) => assert!(m.contains(name), "{m}"),
                other => panic!("expected InvalidOptions, got {other:?}"),
            }
        }
    }

    #[test]
    fn gzip_level_over_9_is_invalid() {
        let src = tempdir();
        let options = PackOptions {
            level: 10,
            ..PackOptions::default()
        };
        let err = pack(src.path(), Vec::new(), &options, None).unwrap_err();
        assert!(matches!(err, ArchiveError::InvalidOptions(_)), "{err:?}");
    }

    #[test]
    fn missing_source_is_an_io_error_naming_it() {
        let dir = tempdir();
        let missing = dir.path().join("missing");
        let err = pack(&missing, Vec::new(), &PackOptions::default(), None).unwrap_err();
        match err {
            ArchiveError::Io { path, .. } => assert!(path.ends_with("missing"), "{path}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn excluded_directory_prunes_its_subtree_and_is_reported_once() {
        let src = tempdir();
        write(src.path(), "keep/x", b"x");
        write(src.path(), "cache/a/b", b"b");
        write(src.path(), "cache/c", b"c");
        let options = PackOptions {
            exclude: vec!["cache".into()],
            ..PackOptions::default()
        };
        let mut asked = Vec::new();
        let mut filter = |rel: &str, _kind: EntryKind| {
            asked.push(rel.to_owned());
            Verdict::Keep
        };
        let (report, _) = pack(src.path(), Vec::new(), &options, Some(&mut filter)).unwrap();
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].path, "cache");
        assert_eq!(report.skipped[0].reason, SkipReason::Excluded);
        // Patterns decide first; the filter never hears of the subtree.
        assert_eq!(asked, ["keep", "keep/x"]);
    }

    /// Entries with a header each, in the order given: a name ending in `/`
    /// is a directory.
    fn tar_of(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for name in names {
            let mut h = Header::new_gnu();
            h.set_path(name).unwrap();
            let dir = name.ends_with('/');
            h.set_entry_type(if dir {
                EntryType::Directory
            } else {
                EntryType::Regular
            });
            h.set_mode(if dir { 0o755 } else { 0o644 });
            h.set_size(if dir { 0 } else { name.len() as u64 });
            h.set_cksum();
            let body: &[u8] = if dir { b"" } else { name.as_bytes() };
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn an_excluded_entry_creates_none_of_its_parents() {
        let tar = tar_of(&["logs/a/b.log", "logs/a/c.log", "keep/x"]);
        let dest = tempdir();
        let options = UnpackOptions {
            exclude: vec!["**/*.log".into()],
            ..UnpackOptions::default()
        };
        let report = unpack_bytes(&gz(&tar), dest.path(), &options).unwrap();
        assert_eq!(report.files, 1);
        assert!(!dest.path().join("logs").exists());
        let skipped: Vec<_> = report.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, ["logs/a/b.log", "logs/a/c.log"]);
    }

    #[test]
    fn siblings_around_an_excluded_subdirectory_are_decided_alike() {
        // `a` is settled by `a/x`; `a/b` is excluded between its siblings,
        // and so is what follows it in `a/b`, then `a/z` and `a/b2` are
        // written; `a/b/` again is excluded again, silently.
        let tar = tar_of(&["a/x", "a/b/", "a/b/y", "a/z", "a/b/", "a/b/w", "a/b2/v"]);
        let dest = tempdir();
        let options = UnpackOptions {
            exclude: vec!["a/b".into()],
            ..UnpackOptions::default()
        };
        let report = unpack_bytes(&gz(&tar), dest.path(), &options).unwrap();
        let skipped: Vec<_> = report.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, ["a/b"]);
        assert_eq!(report.files, 3);
        assert!(!dest.path().join("a/b").exists());
        for (rel, body) in [("a/x", "a/x"), ("a/z", "a/z"), ("a/b2/v", "a/b2/v")] {
            assert_eq!(fs::read_to_string(dest.path().join(rel)).unwrap(), body);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_among_siblings_is_still_refused() {
        // `d` is settled by `d/1`; a later entry cannot reach through a
        // symlink placed in the destination beside it.
        let tar = tar_of(&["d/1", "d/link/2", "d/3"]);
        let dest = tempdir();
        let outside = tempdir();
        fs::create_dir(dest.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("d/link")).unwrap();
        let report = unpack_bytes(&gz(&tar), dest.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(report.files, 2);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].path, "d/link/2");
        assert_eq!(report.skipped[0].reason, SkipReason::ThroughSymlink);
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

mod files {
    use super::*;

    #[test]
    fn pack_file_and_unpack_file_round_trip() {
        let dir = tempdir();
        let src = dir.path().join("src");
        write(&src, "one/two.txt", b"two");
        let archive = dir.path().join("a.tar.gz");
        let report = pack_file(&src, &archive, &PackOptions::default(), None).unwrap();
        assert_eq!((report.files, report.dirs), (1, 1));
        let dest = dir.path().join("dest");
        let report = unpack_file(&archive, &dest, &UnpackOptions::default(), None).unwrap();
        assert_eq!((report.files, report.dirs), (1, 1));
        assert_eq!(fs::read(dest.join("one/two.txt")).unwrap(), b"two");
    }

    #[test]
    fn pack_file_inside_its_source_leaves_itself_out() {
        let src = tempdir();
        write(src.path(), "a.txt", b"a");
        let archive = src.path().join("x[1].tar.gz");
        for _ in 0..2 {
            let report = pack_file(src.path(), &archive, &PackOptions::default(), None).unwrap();
            assert_eq!(report.files, 1, "{report:?}");
        }
    }

    #[test]
    fn failed_pack_file_leaves_an_existing_archive_alone() {
        let dir = tempdir();
        let archive = dir.path().join("a.tar.gz");
        fs::write(&archive, b"the previous archive").unwrap();
        let missing = dir.path().join("missing-src");
        let err = pack_file(&missing, &archive, &PackOptions::default(), None).unwrap_err();
        assert!(matches!(err, ArchiveError::Io { .. }), "{err:?}");
        assert_eq!(fs::read(&archive).unwrap(), b"the previous archive");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.tar.gz"], "a partial file was left behind");
    }

    #[test]
    fn unpack_file_of_a_missing_archive_names_it() {
        let dir = tempdir();
        let missing = dir.path().join("nope.tar.gz");
        match unpack_file(&missing, dir.path(), &UnpackOptions::default(), None) {
            Err(ArchiveError::Io { path, .. }) => assert!(path.ends_with("nope.tar.gz")),
            other => panic!("{other:?}"),
        }
    }
}

mod multi_gz {
    use super::*;

    fn read_all(input: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        MultiGz::new(io::BufReader::new(Cursor::new(input))).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn concatenated_members_are_one_stream() {
        let mut input = gz(b"hello, ");
        input.extend(gz(b""));
        input.extend(gz(b"world"));
        assert_eq!(read_all(input).unwrap(), b"hello, world");
    }

    #[test]
    fn trailing_zeros_are_padding() {
        let mut input = gz(b"data");
        input.extend([0; 4096]);
        assert_eq!(read_all(input).unwrap(), b"data");
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let mut input = gz(b"data");
        input.extend(b"\0\0junk");
        let err = read_all(input).unwrap_err();
        assert!(err.to_string().contains("trailing garbage"), "{err}");
    }

    #[test]
    fn empty_and_non_gzip_input_are_errors() {
        let err = read_all(Vec::new()).unwrap_err();
        assert!(err.to_string().contains("empty input"), "{err}");
        let err = read_all(b"plain text".to_vec()).unwrap_err();
        assert!(err.to_string().contains("not a gzip stream"), "{err}");
    }

    #[test]
    fn bad_crc_is_an_error() {
        let mut input = gz(b"some data to checksum");
        let n = input.len();
        input[n - 8] ^= 1;
        assert!(read_all(input).is_err());
    }

    #[test]
    fn truncated_member_is_an_error() {
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let input = gz(&data);
        let cut = input[..input.len() - 4].to_vec();
        assert!(read_all(cut).is_err());
    }
}

mod stages {
    use super::*;
    use crate::{gunzip, gzip, pack_tar, unpack_tar};

    /// A tree big enough to span several deflate blocks, partly compressible.
    fn tree(root: &Path) {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..120 {
            let data: Vec<u8> = (0..24_000)
                .map(|j| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if i % 2 == 0 {
                        (state % 7) as u8 + b'a'
                    } else {
                        (j % 251) as u8 ^ state as u8
                    }
                })
                .collect();
            write(root, &format!("d{}/f{i:02}", i % 3), &data);
        }
    }

    /// Splits every write into pieces of the sizes in `pattern`, in turn.
    struct Ragged<W> {
        inner: W,
        pattern: &'static [usize],
        next: usize,
    }

    impl<W: Write> Write for Ragged<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.pattern[self.next % self.pattern.len()]);
            self.next += 1;
            self.inner.write_all(&buf[..n])?;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    #[test]
    fn pack_tar_then_gzip_is_pack() {
        let src = tempdir();
        tree(src.path());
        let (report, packed) = pack_bytes(src.path());
        let (tar_report, tar) =
            pack_tar(src.path(), Vec::new(), &PackOptions::default(), None).unwrap();
        assert_eq!(report, tar_report);
        // However the tar arrives (pipe reads are split by timing), the
        // gzip stage writes the same bytes as `pack`.
        for pattern in [&[1 << 20][..], &[1, 4096, 777, 65_536][..], &[100_003][..]] {
            let mut staged = Vec::new();
            let mut input = tar.as_slice();
            let mut ragged = Ragged {
                inner: &mut staged,
                pattern,
                next: 0,
            };
            // `gzip` reads whatever the reader gives: feed it ragged reads.
            let mut pieces = Vec::new();
            while !input.is_empty() {
                let n = input.len().min(pattern[pieces.len() % pattern.len()]);
                pieces.push(&input[..n]);
                input = &input[n..];
            }
            let reader = pieces
                .into_iter()
                .map(Cursor::new)
                .fold(Box::new(io::empty()) as Box<dyn Read>, |acc, c| {
                    Box::new(acc.chain(c))
                });
            let (n, _) = gzip(reader, &mut ragged, 6).unwrap();
            assert_eq!(n, tar.len() as u64);
            assert!(
                staged == packed,
                "pattern {pattern:?}: gzip differs from pack"
            );
        }
    }

    #[test]
    fn gunzip_then_unpack_tar_is_unpack() {
        let src = tempdir();
        tree(src.path());
        let (_, packed) = pack_bytes(src.path());
        let (n, tar) = gunzip(Cursor::new(&packed), Vec::new(), &Limits::default()).unwrap();
        assert_eq!(n, tar.len() as u64);
        let (a, b) = (tempdir(), tempdir());
        let one = unpack_bytes(&packed, a.path(), &UnpackOptions::default()).unwrap();
        let two = unpack_tar(Cursor::new(&tar), b.path(), &UnpackOptions::default(), None).unwrap();
        assert_eq!(one, two);
        assert_eq!(pack_bytes(a.path()).1, pack_bytes(b.path()).1);
    }

    /// A `ChunkReader` handing out `data` in chunks of the sizes in
    /// `pattern` (0: an empty chunk), then failing if `fail`.
    fn chunks(
        data: Vec<u8>,
        pattern: &'static [usize],
        fail: bool,
    ) -> crate::io::ChunkReader<impl FnMut(usize) -> io::Result<Option<Vec<u8>>>> {
        let (mut at, mut turn) = (0, 0);
        crate::io::ChunkReader::new(move |max| {
            if at == data.len() {
                return match fail {
                    true => Err(io::Error::other("stream reset by the host")),
                    false => Ok(None),
                };
            }
            let n = pattern[turn % pattern.len()].min(max).min(data.len() - at);
            turn += 1;
            at += n;
            Ok(Some(data[at - n..at].to_vec()))
        })
    }

    /// The whole unpack of `packed`, served as [`chunks`] does, into `dest`.
    fn unpack_chunked(
        packed: Vec<u8>,
        pattern: &'static [usize],
        fail: bool,
        dest: &Path,
    ) -> Result<Report, ArchiveError> {
        let input = chunks(packed, pattern, fail);
        crate::unpack::unpack_buffered(input, dest, &UnpackOptions::default(), None)
    }

    /// The tar stage alone over `tar`, served as [`chunks`] does, into `dest`.
    fn unpack_tar_chunked(
        tar: Vec<u8>,
        pattern: &'static [usize],
        fail: bool,
        dest: &Path,
    ) -> Result<Report, ArchiveError> {
        let input = chunks(tar, pattern, fail);
        crate::unpack::unpack_tar_buffered(input, dest, &UnpackOptions::default(), None)
    }

    #[test]
    fn chunk_served_unpack_and_gunzip_match_the_buffered_ones() {
        let src = tempdir();
        tree(src.path());
        let (_, packed) = pack_bytes(src.path());
        let (_, tar) = gunzip(Cursor::new(&packed), Vec::new(), &Limits::default()).unwrap();
        let want = tempdir();
        let want_report = unpack_bytes(&packed, want.path(), &UnpackOptions::default()).unwrap();
        for pattern in [&[1 << 20][..], &[1, 0, 4096, 777, 65_536][..], &[3][..]] {
            let (n, got) = crate::gz::gunzip_buffered(
                chunks(packed.clone(), pattern, false),
                Vec::new(),
                &Limits::default(),
            )
            .unwrap();
            assert_eq!(n, tar.len() as u64);
            assert!(got == tar, "pattern {pattern:?}: gunzip differs");
            let dest = tempdir();
            let report = unpack_chunked(packed.clone(), pattern, false, dest.path()).unwrap();
            assert_eq!(report, want_report, "pattern {pattern:?}");
            assert_eq!(pack_bytes(dest.path()).1, packed, "pattern {pattern:?}");
            // The tar stage alone, skipping padding straight out of the chunks.
            let dest = tempdir();
            let report = unpack_tar_chunked(tar.clone(), pattern, false, dest.path()).unwrap();
            assert_eq!(report, want_report, "pattern {pattern:?}: unpack-tar");
            assert_eq!(pack_bytes(dest.path()).1, packed, "pattern {pattern:?}");
        }
        // A source failing after part of the archive is a Stream error, in
        // all three, not a short success or a corrupt archive.
        let cut = packed[..packed.len() / 2].to_vec();
        match crate::gz::gunzip_buffered(
            chunks(cut.clone(), &[5000], true),
            Vec::new(),
            &Limits::default(),
        ) {
            Err(ArchiveError::Stream { message, .. }) => {
                assert!(message.contains("reset by the host"), "{message}")
            }
            other => panic!("expected Stream, got {:?}", other.map(|r| r.0)),
        }
        let half_tar = tar[..tar.len() / 2].to_vec();
        let dest = tempdir();
        for (what, result) in [
            (
                "unpack",
                unpack_chunked(cut, &[5000], true, &dest.path().join("a")),
            ),
            (
                "unpack-tar",
                unpack_tar_chunked(half_tar, &[1, 700], true, &dest.path().join("b")),
            ),
        ] {
            match result {
                Err(ArchiveError::Stream { entry, message }) => {
                    assert!(!entry.is_empty(), "{what}");
                    assert!(message.contains("reset by the host"), "{what}: {message}")
                }
                other => panic!("{what}: expected Stream, got {other:?}"),
            }
        }
    }

    #[test]
    fn gunzip_delivers_everything_before_a_bad_trailer() {
        let src = tempdir();
        tree(src.path());
        let (_, mut packed) = pack_bytes(src.path());
        let (_, tar) = gunzip(Cursor::new(&packed), Vec::new(), &Limits::default()).unwrap();
        let crc_at = packed.len() - 8;
        packed[crc_at] ^= 0xff;
        let mut got = Vec::new();
        match crate::gz::gunzip_buffered(
            chunks(packed, &[4096], false),
            &mut got,
            &Limits::default(),
        ) {
            Err(ArchiveError::Corrupt { .. }) => {}
            other => panic!("expected Corrupt, got {:?}", other.map(|r| r.0)),
        }
        // The whole tar was inflated before the CRC was checked, and all of
        // it reaches the next stage, which then fails where it would alone.
        assert!(got == tar, "{} of {} bytes delivered", got.len(), tar.len());
    }

    #[test]
    fn bodies_around_the_write_buffer_size_round_trip_under_any_chunking() {
        let b = crate::unpack::READ_BUFFER;
        let src = tempdir();
        let sizes = [0, 1, b - 1, b, b + 1, 2 * b + 7];
        let body = |i: usize| -> Vec<u8> { (0..sizes[i]).map(|j| (j * 31 + i) as u8).collect() };
        for i in 0..sizes.len() {
            write(src.path(), &format!("f{i}"), &body(i));
        }
        let (_, packed) = pack_bytes(src.path());
        let (_, tar) = gunzip(Cursor::new(&packed), Vec::new(), &Limits::default()).unwrap();
        for pattern in [&[7][..], &[1, 0, 4096, 777, 65_536][..], &[1 << 20][..]] {
            let dest = tempdir();
            let report = unpack_tar_chunked(tar.clone(), pattern, false, dest.path()).unwrap();
            assert_eq!(report.files, sizes.len() as u64, "pattern {pattern:?}");
            for (i, n) in sizes.iter().enumerate() {
                let got = fs::read(dest.path().join(format!("f{i}"))).unwrap();
                assert!(got == body(i), "pattern {pattern:?}: f{i} ({n} bytes)");
            }
        }
        // Cut inside the largest body: the file is reported short, by name.
        let cut = tar[..tar.len() - 1024 - b].to_vec();
        let dest = tempdir();
        match unpack_tar_chunked(cut, &[777], false, dest.path()) {
            Err(ArchiveError::Corrupt { entry, .. }) => assert_eq!(entry, "f5"),
            other => panic!("expected Corrupt naming f5, got {other:?}"),
        }
    }

    #[test]
    fn gunzip_errors_are_typed() {
        let mut bad_crc = gz(b"some data to checksum");
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        for (input, want) in [
            (Vec::new(), "empty input"),
            (b"plain".to_vec(), "not a gzip stream"),
            (bad_crc, ""),
        ] {
            match gunzip(Cursor::new(input), Vec::new(), &Limits::default()) {
                Err(ArchiveError::Corrupt { entry, message }) => {
                    assert_eq!(entry, "");
                    assert!(message.contains(want), "{message}");
                }
                other => panic!("expected Corrupt, got {:?}", other.map(|r| r.0)),
            }
        }
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("connection reset"))
            }
        }
        match gunzip(Failing, Vec::new(), &Limits::default()) {
            Err(ArchiveError::Stream { entry, message }) => {
                assert_eq!(entry, "");
                assert!(message.contains("connection reset"), "{message}");
            }
            other => panic!("expected Stream, got {:?}", other.map(|r| r.0)),
        }
        assert!(matches!(
            gzip(io::empty(), Vec::new(), 10),
            Err(ArchiveError::InvalidOptions(_))
        ));
    }

    #[test]
    fn unpack_tar_names_the_entry_when_its_input_fails() {
        let src = tempdir();
        write(src.path(), "a", &[1u8; 5000]);
        write(src.path(), "b", &[2u8; 5000]);
        let (_, tar) = pack_tar(src.path(), Vec::new(), &PackOptions::default(), None).unwrap();
        // The input fails inside `b`'s body.
        let cut = Cursor::new(tar[..1536 + 5120 + 1024].to_vec());
        let failing = cut.chain(FailAfter);
        struct FailAfter;
        impl Read for FailAfter {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("upstream stage failed"))
            }
        }
        let dest = tempdir();
        match unpack_tar(failing, dest.path(), &UnpackOptions::default(), None) {
            Err(ArchiveError::Stream { entry, message }) => {
                assert_eq!(entry, "b");
                assert!(message.contains("upstream stage failed"), "{message}");
            }
            other => panic!("expected Stream at b, got {other:?}"),
        }
    }
}

/// Failures must never leave a complete-looking archive behind, and unpack
/// must never write through what is already in the destination.
mod failures {
    use super::*;
    use crate::gzip;

    /// Decodes as a complete gzip (every member's trailer present and right).
    fn decodes(bytes: &[u8]) -> bool {
        let mut out = Vec::new();
        MultiGz::new(io::BufReader::new(bytes))
            .read_to_end(&mut out)
            .is_ok()
    }

    #[test]
    fn gzip_with_a_failing_input_writes_no_trailer() {
        struct FailAfter(usize);
        impl Read for FailAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("the tar stage stopped"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        for before in [0, 1000, 600_000] {
            let mut out = Vec::new();
            let err = gzip(FailAfter(before), &mut out, 6).unwrap_err();
            assert!(matches!(err, ArchiveError::Stream { .. }), "{err:?}");
            assert!(!decodes(&out), "{before} bytes in: the output decodes");
        }
    }

    #[test]
    fn pack_of_a_missing_source_writes_nothing() {
        let dir = tempdir();
        let mut out = Vec::new();
        let err = pack(
            &dir.path().join("missing"),
            &mut out,
            &PackOptions::default(),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ArchiveError::Io { .. }), "{err:?}");
        assert!(out.is_empty(), "{} bytes written", out.len());
    }

    #[test]
    fn pack_failing_mid_walk_writes_no_end_marker_or_trailer() {
        let src = tempdir();
        for i in 0..50 {
            write(src.path(), &format!("f{i:02}"), &[i as u8; 40_000]);
        }
        struct Fails {
            taken: Vec<u8>,
            left: usize,
        }
        impl Write for Fails {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.left == 0 {
                    return Err(io::Error::other("disk full"));
                }
                let n = buf.len().min(self.left);
                self.taken.extend_from_slice(&buf[..n]);
                self.left -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Fails {
            taken: Vec::new(),
            left: 2000,
        };
        match pack(src.path(), &mut out, &PackOptions::default(), None) {
            Err(ArchiveError::Stream { message, .. }) => assert!(message.contains("disk full")),
            Err(e) => panic!("expected Stream, got {e:?}"),
            Ok(_) => panic!("the pack succeeded into a failing writer"),
        }
        assert!(!decodes(&out.taken));
    }

    #[test]
    fn an_empty_tar_stream_is_not_an_archive() {
        let dest = tempdir();
        match unpack_bytes(&gz(b""), dest.path(), &UnpackOptions::default()) {
            Err(ArchiveError::Corrupt { message, .. }) => {
                assert!(message.contains("end-of-archive"), "{message}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // A tar of nothing (just its end marker) is fine.
        let report = unpack_bytes(&gz(&[0; 1024]), dest.path(), &UnpackOptions::default());
        assert_eq!(report.unwrap().files, 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_hard_link_in_the_destination_is_replaced_not_written_through() {
        let root = tempdir();
        let outside = root.path().join("outside.txt");
        fs::write(&outside, b"keep me").unwrap();
        let dest = root.path().join("dest");
        fs::create_dir(&dest).unwrap();
        fs::hard_link(&outside, dest.join("f")).unwrap();
        let archive = gz(&tar_with(&[(file_header("f", 3), b"new")], None));
        let report = unpack_bytes(&archive, &dest, &UnpackOptions::default()).unwrap();
        assert_eq!(report.files, 1);
        assert_eq!(fs::read(&outside).unwrap(), b"keep me");
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_in_the_destination_is_skipped_not_opened() {
        let dest = tempdir();
        let fifo = dest.path().join("p");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        let archive = gz(&tar_with(&[(file_header("p", 3), b"new")], None));
        // Opening the FIFO for writing would block here forever.
        let report = unpack_bytes(&archive, dest.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(report.files, 0);
        assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
        assert_eq!(report.skipped[0].reason, SkipReason::TypeConflict);
    }
}

/// `Counting` skips forward in place for tar (padding, unread bodies).
mod skipping {
    use super::*;
    use crate::io::{Counting, Tripped};
    use std::cell::Cell;
    use std::io::{BufReader, Seek, SeekFrom};
    use std::rc::Rc;

    type Counted<'a> = Counting<BufReader<&'a [u8]>>;

    /// `data` counted under `cap`, with its count and what it tripped.
    fn counting(data: &[u8], cap: u64) -> (Counted<'_>, Rc<Cell<u64>>, Tripped) {
        let (count, tripped) = (Rc::new(Cell::new(0)), Tripped::default());
        // A small buffer, so a skip spans several refills.
        let reader = BufReader::with_capacity(7, data);
        (
            Counting::new(reader, cap, count.clone(), tripped.clone()),
            count,
            tripped,
        )
    }

    #[test]
    fn a_forward_seek_consumes_and_counts() {
        let data: Vec<u8> = (0..100).collect();
        let (mut c, count, _) = counting(&data, 1000);
        let mut two = [0; 2];
        c.read_exact(&mut two).unwrap();
        assert_eq!(c.seek(SeekFrom::Current(50)).unwrap(), 52);
        assert_eq!(c.stream_position().unwrap(), 52);
        c.read_exact(&mut two).unwrap();
        assert_eq!(two, [52, 53]);
        assert_eq!(count.get(), 54);
    }

    #[test]
    fn a_seek_past_the_end_is_unexpected_eof() {
        let (mut c, count, _) = counting(&[1; 30], 1000);
        let e = c.seek(SeekFrom::Current(31)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(count.get(), 30);
    }

    #[test]
    fn only_forward_seeks_are_allowed() {
        let (mut c, _, _) = counting(&[1; 30], 1000);
        c.seek(SeekFrom::Current(10)).unwrap();
        for pos in [SeekFrom::Current(-1), SeekFrom::Start(20), SeekFrom::End(0)] {
            let e = c.seek(pos).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{pos:?}");
        }
    }

    #[test]
    fn skipped_bytes_count_against_the_cap() {
        let (mut c, _, tripped) = counting(&[1; 30], 20);
        assert!(c.seek(SeekFrom::Current(25)).is_err());
        assert_eq!(tripped.get(), Some(LimitKind::TotalBytes));
    }

    #[test]
    fn an_archive_cut_inside_padding_is_corrupt_naming_the_entry() {
        let tar = tar_with(
            &[
                (file_header("a", 10), &[7; 10]),
                (file_header("b", 3), b"xyz"),
            ],
            None,
        );
        let dest = tempdir();
        match unpack_bytes(
            &gz(&tar[..512 + 100]),
            dest.path(),
            &UnpackOptions::default(),
        ) {
            Err(ArchiveError::Corrupt { entry, message }) => {
                assert_eq!(entry, "a");
                assert!(
                    message.contains("ends inside this entry") && message.contains("truncated?"),
                    "{message}"
                );
            }
            other => panic!("expected Corrupt at a, got {other:?}"),
        }
    }

    #[test]
    fn skipped_bodies_leave_the_stream_at_the_next_header() {
        let src = tempdir();
        write(src.path(), "big/x", &[3u8; 100_000]);
        write(src.path(), "keep/y", b"hello");
        write(src.path(), "odd", &[4u8; 513]);
        let (_, bytes) = pack_bytes(src.path());
        let dest = tempdir();
        let options = UnpackOptions {
            exclude: vec!["big".into()],
            ..UnpackOptions::default()
        };
        let report = unpack_bytes(&bytes, dest.path(), &options).unwrap();
        assert_eq!(report.files, 2);
        assert_eq!(fs::read(dest.path().join("keep/y")).unwrap(), b"hello");
        assert_eq!(fs::read(dest.path().join("odd")).unwrap(), vec![4u8; 513]);
        assert!(!dest.path().join("big").exists());
    }
}

/// The limits a pack keeps to, and the compression-ratio guard of unpack.
mod limits {
    use super::*;

    /// Pack `src` under `limits` and unpack the result under the same.
    fn pack_then_unpack(src: &Path, limits: Limits) -> (Report, Report, Vec<u8>) {
        let options = PackOptions {
            limits,
            ..PackOptions::default()
        };
        let (packed, bytes) = pack(src, Vec::new(), &options, None).unwrap();
        let dest = tempdir();
        let unpack_options = UnpackOptions {
            limits,
            ..UnpackOptions::default()
        };
        let unpacked = unpack_bytes(&bytes, dest.path(), &unpack_options)
            .unwrap_or_else(|e| panic!("the pack under {limits:?} does not unpack: {e}"));
        (packed, unpacked, bytes)
    }

    fn over_limit(report: &Report) -> Vec<(String, String)> {
        report
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::OverLimit)
            .map(|s| (s.path.clone(), s.detail.clone()))
            .collect()
    }

    #[test]
    fn what_breaks_a_limit_is_left_out_and_the_rest_unpacks() {
        let src = tempdir();
        write(src.path(), "a/b/c/deep.txt", b"deep");
        write(src.path(), "a/b/shallow.txt", b"shallow");
        write(src.path(), "big.bin", &[7; 5000]);
        write(src.path(), "long-named-file-over-the-path-limit.txt", b"x");
        write(src.path(), "small.txt", b"small");
        let limits = Limits {
            max_depth: 3,
            max_path_bytes: 30,
            max_file_bytes: 4096,
            ..Limits::default()
        };
        let (packed, unpacked, _) = pack_then_unpack(src.path(), limits);
        let skipped = over_limit(&packed);
        let paths: Vec<&str> = skipped.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "a/b/c/deep.txt",
                "big.bin",
                "long-named-file-over-the-path-limit.txt"
            ],
            "{skipped:?}"
        );
        assert!(skipped[0].1.contains("max_depth 3"), "{skipped:?}");
        assert!(skipped[1].1.contains("max_file_bytes 4096"), "{skipped:?}");
        assert!(skipped[2].1.contains("max_path_bytes 30"), "{skipped:?}");
        assert_eq!((packed.files, packed.dirs), (2, 3));
        assert_eq!((unpacked.files, unpacked.dirs), (2, 3));
        // A directory over the depth is left out with all it holds.
        let limits = Limits {
            max_depth: 2,
            ..limits
        };
        let (packed, _, _) = pack_then_unpack(src.path(), limits);
        let skipped = over_limit(&packed);
        assert_eq!(skipped[0].0, "a/b/c", "{skipped:?}");
        assert!(skipped[0].1.contains("nothing in it"), "{skipped:?}");
    }

    #[test]
    fn a_directory_path_counts_its_trailing_slash() {
        // `abcd/` is 5 bytes: over a 4-byte limit, as unpack counts it.
        let src = tempdir();
        write(src.path(), "abcd/x", b"x");
        write(src.path(), "efg", b"y");
        let limits = Limits {
            max_path_bytes: 4,
            ..Limits::default()
        };
        let (packed, unpacked, _) = pack_then_unpack(src.path(), limits);
        assert_eq!(over_limit(&packed).len(), 1, "{packed:?}");
        assert_eq!(over_limit(&packed)[0].0, "abcd");
        assert_eq!((unpacked.files, unpacked.dirs), (1, 0));
    }

    #[test]
    fn entries_and_total_bytes_stop_where_unpack_would() {
        let src = tempdir();
        for i in 0..10 {
            write(src.path(), &format!("f{i}"), &[b'x'; 100]);
        }
        let limits = Limits {
            max_entries: 4,
            ..Limits::default()
        };
        let (packed, unpacked, _) = pack_then_unpack(src.path(), limits);
        assert_eq!(packed.files, 4);
        assert_eq!(unpacked.files, 4);
        assert_eq!(over_limit(&packed).len(), 6);
        assert!(over_limit(&packed)[0].1.contains("max_entries 4"));

        // A file that does not fit the total is left out; a later smaller
        // one that fits is packed.
        write(src.path(), "f3", &[b'x'; 1000]);
        let limits = Limits {
            max_total_bytes: 700,
            ..Limits::default()
        };
        let (packed, unpacked, _) = pack_then_unpack(src.path(), limits);
        assert_eq!(packed.bytes, 700, "{packed:?}");
        assert_eq!(unpacked.bytes, 700);
        let skipped = over_limit(&packed);
        assert_eq!(skipped[0].0, "f3");
        assert!(skipped[0].1.contains("max_total_bytes 700"), "{skipped:?}");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
    }

    /// A gzip of `tar` as any gzip writes it: flate2, in one stream.
    fn plain_gzip(tar: &[u8], level: u32) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(tar).unwrap();
        e.finish().unwrap()
    }

    fn one_file_tar(name: &str, body: &[u8]) -> Vec<u8> {
        tar_with(&[(file_header(name, body.len() as u64), body)], None)
    }

    #[test]
    fn an_archive_inflating_past_the_ratio_is_refused() {
        // 16 MiB of zeros deflate about 1000:1; the guard allows 100:1
        // past 1 MiB.
        let bomb = plain_gzip(&one_file_tar("bomb", &vec![0; 16 << 20]), 9);
        let limits = Limits {
            max_inflate_ratio: 100,
            inflate_grace_bytes: 1 << 20,
            ..Limits::default()
        };
        let options = UnpackOptions {
            limits,
            ..UnpackOptions::default()
        };
        let dest = tempdir();
        match unpack_bytes(&bomb, dest.path(), &options) {
            Err(ArchiveError::LimitExceeded {
                limit,
                allowed,
                entry,
            }) => {
                assert_eq!(
                    (limit, allowed, entry.as_str()),
                    (LimitKind::InflateRatio, 100, "bomb")
                );
            }
            other => panic!("expected the ratio guard, got {other:?}"),
        }
        let err = crate::gunzip(Cursor::new(&bomb), io::sink(), &limits).unwrap_err();
        assert!(
            matches!(err, ArchiveError::LimitExceeded { limit: LimitKind::InflateRatio, ref entry, .. } if entry.is_empty()),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("max_inflate_ratio = 100"), "{message}");
        // 0 turns the guard off; the grace lets small archives through.
        for limits in [
            Limits {
                max_inflate_ratio: 0,
                ..limits
            },
            Limits {
                inflate_grace_bytes: 32 << 20,
                ..limits
            },
        ] {
            let options = UnpackOptions {
                limits,
                ..UnpackOptions::default()
            };
            let dest = tempdir();
            let report = unpack_bytes(&bomb, dest.path(), &options).unwrap();
            assert_eq!(report.bytes, 16 << 20);
        }
    }

    #[test]
    fn what_ccws_packs_never_trips_a_ratio_guard_of_256() {
        let src = tempdir();
        File::create(src.path().join("zeros"))
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let limits = Limits {
            max_inflate_ratio: 256,
            inflate_grace_bytes: 0,
            ..Limits::default()
        };
        for level in [1, 6, 9] {
            let options = PackOptions {
                level,
                limits,
                ..PackOptions::default()
            };
            let (_, bytes) = pack(src.path(), Vec::new(), &options, None).unwrap();
            let dest = tempdir();
            let unpack_options = UnpackOptions {
                limits,
                ..UnpackOptions::default()
            };
            let report = unpack_bytes(&bytes, dest.path(), &unpack_options)
                .unwrap_or_else(|e| panic!("level {level}: {e}"));
            assert_eq!(report.bytes, 16 << 20);
            assert!(
                bytes.len() >= (16 << 20) / 256,
                "level {level}: {}",
                bytes.len()
            );
        }
    }

    #[test]
    fn a_tar_within_the_limits_fits_the_stream_cap() {
        // The worst case per entry: a path of the longest length (a GNU
        // long-name entry) and a body one byte into its last block.
        let limits = Limits {
            max_entries: 20,
            max_path_bytes: 600,
            max_total_bytes: 20 * 513,
            ..Limits::default()
        };
        let src = tempdir();
        let dir = format!("{}/{}", "d".repeat(200), "e".repeat(200));
        for i in 0..18 {
            write(src.path(), &format!("{dir}/{:0>190}", i), &[1; 513]);
        }
        let (packed, _, bytes) = pack_then_unpack(src.path(), limits);
        assert_eq!((packed.files, packed.dirs), (18, 2));
        let mut tar = Vec::new();
        MultiGz::new(&bytes[..]).read_to_end(&mut tar).unwrap();
        assert!(tar.len() as u64 <= crate::unpack::stream_cap(&limits));
    }
}
