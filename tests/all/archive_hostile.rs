//! A corpus of hostile archives, crafted byte by byte, unpacked through the
//! real component. Every case asserts three things: nothing was written
//! outside the destination (the two directories above it hold only what the
//! test put there, with sentinels untouched), the exact skip reasons or the
//! exact error variant, and no hang (each unpack runs under a timeout).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ccws::archive::{
    ArchiveError, Archiver, ArchiverError, LimitKind, Limits, Report, SkipReason, UnpackOptions,
};
use ccws_tests::hostile::{gzip, kind, zeros, GzStream, Header, Tar, BLOCK};
use ccws_tests::{archiver, archiver_serial};

const TIMEOUT: Duration = Duration::from_secs(60);
const SENTINEL: &[u8] = b"sentinel: must never change";

/// What to feed the unpacker.
enum Input {
    Bytes(Vec<u8>),
    /// Generated and compressed lazily (bombs).
    Stream(Box<dyn tokio::io::AsyncRead + Send + Unpin>),
}

/// What must come out.
enum Expect {
    /// Success: the destination holds exactly `tree` (path → file content, or
    /// `None` for a directory) and the report skipped exactly `skipped`.
    Unpacked {
        tree: &'static [(&'static str, Option<&'static [u8]>)],
        skipped: &'static [(&'static str, SkipReason)],
    },
    /// `ArchiveError::Corrupt` naming `entry`, its message containing `message`.
    Corrupt {
        entry: &'static str,
        message: &'static str,
    },
    /// `ArchiveError::LimitExceeded` of this kind, naming `entry`.
    Limit {
        limit: LimitKind,
        entry: &'static str,
    },
}

struct Case {
    name: &'static str,
    /// Builds the input; given the directory that holds the destination (for
    /// archives that aim at real absolute paths outside it).
    input: Box<dyn FnOnce(&Path) -> Input>,
    limits: Limits,
    /// Runs on the destination before unpacking (e.g. to plant a symlink).
    prepare: Option<fn(&Path, &Path)>,
    expect: Expect,
}

fn case(
    name: &'static str,
    input: impl FnOnce(&Path) -> Vec<u8> + 'static,
    expect: Expect,
) -> Case {
    Case {
        name,
        input: Box::new(move |outer| Input::Bytes(input(outer))),
        limits: Limits::default(),
        prepare: None,
        expect,
    }
}

impl Case {
    fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn prepare(mut self, f: fn(&Path, &Path)) -> Self {
        self.prepare = Some(f);
        self
    }
}

fn ok(
    tree: &'static [(&'static str, Option<&'static [u8]>)],
    skipped: &'static [(&'static str, SkipReason)],
) -> Expect {
    Expect::Unpacked { tree, skipped }
}

fn corrupt(entry: &'static str, message: &'static str) -> Expect {
    Expect::Corrupt { entry, message }
}

fn limit(limit: LimitKind, entry: &'static str) -> Expect {
    Expect::Limit { limit, entry }
}

fn small_limits() -> Limits {
    Limits {
        max_entries: 10,
        max_total_bytes: 1 << 20,
        max_file_bytes: 1 << 20,
        max_path_bytes: 64,
        max_depth: 4,
        ..Limits::default()
    }
}

/// Deterministic incompressible bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn simple() -> Tar {
    Tar::new().file("ok.txt", b"fine")
}

const OK_FILE: (&str, Option<&[u8]>) = ("ok.txt", Some(b"fine"));

fn corpus() -> Vec<Case> {
    use SkipReason::*;
    vec![
        // --- path escapes --------------------------------------------------
        case(
            "dotdot",
            |_| gzip(&simple().file("../escaped", b"x").finish()),
            ok(&[OK_FILE], &[("../escaped", ParentComponent)]),
        ),
        case(
            "dotdot_in_the_middle",
            |_| gzip(&simple().file("a/../../escaped", b"x").finish()),
            ok(&[OK_FILE], &[("a/../../escaped", ParentComponent)]),
        ),
        case(
            "dotdot_two_levels",
            |_| gzip(&simple().file("../../escaped", b"x").dir("../../escaped-dir/").finish()),
            ok(
                &[OK_FILE],
                &[("../../escaped", ParentComponent), ("../../escaped-dir/", ParentComponent)],
            ),
        ),
        Case {
            name: "absolute_path_into_the_parent",
            // The real absolute path of the directory above the destination.
            input: Box::new(|outer: &Path| {
                let name = format!("{}/escaped", outer.display());
                let tar = simple().gnu_long_name(name.as_bytes()).file("x", b"x").finish();
                Input::Bytes(gzip(&tar))
            }),
            limits: Limits::default(),
            prepare: None,
            expect: Expect::Unpacked {
                tree: &[OK_FILE],
                skipped: &[("<outer>/escaped", AbsolutePath)],
            },
        },
        case(
            "absolute_root",
            |_| gzip(&simple().file("/escaped", b"x").finish()),
            ok(&[OK_FILE], &[("/escaped", AbsolutePath)]),
        ),
        case(
            "double_slash",
            |_| gzip(&simple().file("//escaped", b"x").finish()),
            ok(&[OK_FILE], &[("//escaped", AbsolutePath)]),
        ),
        case(
            "pax_path_with_dotdot",
            // The ustar name is innocent; the PAX path (which wins) is not.
            |_| {
                let tar = simple()
                    .pax(&[("path", b"../pax-escaped")])
                    .file("innocent", b"x")
                    .finish();
                gzip(&tar)
            },
            ok(&[OK_FILE], &[("../pax-escaped", ParentComponent)]),
        ),
        case(
            "gnu_long_name_with_dotdot",
            |_| {
                let name = format!("{}/../../../gnu-escaped", "d".repeat(120));
                gzip(&simple().gnu_long_name(name.as_bytes()).file("innocent", b"x").finish())
            },
            ok(
                &[OK_FILE],
                &[(
                    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd/../../../gnu-escaped",
                    ParentComponent,
                )],
            ),
        ),
        case(
            "ustar_prefix_with_dotdot",
            |_| {
                let tar = simple()
                    .entry(Header::file("prefix-escaped", 1).prefix(".."), b"x")
                    .finish();
                gzip(&tar)
            },
            ok(&[OK_FILE], &[("../prefix-escaped", ParentComponent)]),
        ),
        // --- links -----------------------------------------------------------
        case(
            "symlink_to_parent_then_write_through_it",
            |_| gzip(&simple().symlink("up", "..").file("up/escaped", b"x").finish()),
            // The link is never created, so `up/escaped` lands in a real
            // directory inside the destination.
            ok(
                &[OK_FILE, ("up", None), ("up/escaped", Some(b"x"))],
                &[("up", Symlink)],
            ),
        ),
        case(
            "symlink_to_root_then_write_through_it",
            |_| gzip(&simple().symlink("root", "/").file("root/tmp/escaped", b"x").finish()),
            ok(
                &[OK_FILE, ("root", None), ("root/tmp", None), ("root/tmp/escaped", Some(b"x"))],
                &[("root", Symlink)],
            ),
        ),
        case(
            "symlink_then_directory_of_the_same_name",
            |_| {
                let tar = simple()
                    .symlink("d", "/")
                    .dir("d/")
                    .file("d/f", b"x")
                    .finish();
                gzip(&tar)
            },
            ok(&[OK_FILE, ("d", None), ("d/f", Some(b"x"))], &[("d", Symlink)]),
        ),
        case(
            "hard_link_to_outside_then_write_through_it",
            |outer: &Path| {
                let target = outer.join("sentinel.txt");
                let tar = simple()
                    .hard_link("hl", target.to_str().unwrap())
                    .hard_link("hl2", "../sentinel.txt")
                    .file("hl", b"overwritten?")
                    .finish();
                gzip(&tar)
            },
            ok(
                &[OK_FILE, ("hl", Some(b"overwritten?"))],
                &[("hl", HardLink), ("hl2", HardLink)],
            ),
        ),
        case(
            "existing_symlink_in_the_destination",
            |_| {
                let tar = simple()
                    .file("planted/escaped", b"x")
                    .dir("planted/")
                    .file("planted", b"x")
                    .finish();
                gzip(&tar)
            },
            ok(
                &[OK_FILE, ("planted", Some(b"symlink:.."))],
                &[
                    ("planted/escaped", ThroughSymlink),
                    ("planted", ThroughSymlink),
                    ("planted", ThroughSymlink),
                ],
            ),
        )
        .prepare(|dest, _outer| {
            std::os::unix::fs::symlink("..", dest.join("planted")).unwrap();
        }),
        case(
            "existing_hard_link_in_the_destination",
            |_| gzip(&simple().file("victim", b"replaced").finish()),
            ok(&[OK_FILE, ("victim", Some(b"replaced"))], &[]),
        )
        // Replaced, not written through: the sentinel outside keeps its
        // content and goes back to one link.
        .prepare(|dest, outer| {
            fs::hard_link(outer.join("sentinel.txt"), dest.join("victim")).unwrap();
        }),
        // --- special files -----------------------------------------------------
        case(
            "char_device",
            |_| gzip(&simple().entry(Header::new(kind::CHAR, "null", 0), &[]).finish()),
            ok(&[OK_FILE], &[("null", SpecialFile)]),
        ),
        case(
            "block_device",
            |_| gzip(&simple().entry(Header::new(kind::BLOCK, "sda", 0), &[]).finish()),
            ok(&[OK_FILE], &[("sda", SpecialFile)]),
        ),
        case(
            "fifo",
            |_| gzip(&simple().entry(Header::new(kind::FIFO, "pipe", 0), &[]).finish()),
            ok(&[OK_FILE], &[("pipe", SpecialFile)]),
        ),
        case(
            "gnu_volume_header",
            |_| gzip(&simple().entry(Header::new(kind::GNU_VOLUME, "vol", 0), &[]).finish()),
            ok(&[OK_FILE], &[("vol", UnsupportedType)]),
        ),
        // --- replacements ----------------------------------------------------
        case(
            "duplicate_entries_later_wins",
            |_| gzip(&simple().file("dup", b"first, longer").file("dup", b"second").finish()),
            ok(&[OK_FILE, ("dup", Some(b"second"))], &[]),
        ),
        case(
            "file_replacing_a_directory",
            |_| gzip(&simple().dir("d/").file("d/inner", b"in").file("d", b"x").finish()),
            ok(
                &[OK_FILE, ("d", None), ("d/inner", Some(b"in"))],
                &[("d", TypeConflict)],
            ),
        ),
        case(
            "directory_replacing_a_file",
            |_| gzip(&simple().file("f", b"file").dir("f/").file("f/g", b"x").finish()),
            ok(
                &[OK_FILE, ("f", Some(b"file"))],
                &[("f", TypeConflict), ("f/g", TypeConflict)],
            ),
        ),
        // --- bad names ---------------------------------------------------------
        case(
            "nul_in_name",
            |_| gzip(&simple().gnu_long_name(b"nul\0inside").file("x", b"x").finish()),
            ok(&[OK_FILE], &[("nul\\0inside", NulInName)]),
        ),
        case(
            "non_utf8_name",
            |_| gzip(&simple().file(b"bad\xffname", b"x").finish()),
            ok(&[OK_FILE], &[("bad\u{fffd}name", NonUtf8Name)]),
        ),
        // --- size fields ---------------------------------------------------------
        case(
            "pax_size_larger_than_ustar_size",
            // CVE-2025-62518 class: parsers that disagree on which size wins
            // see different entries. The body holds a smuggled header.
            |_| {
                let smuggled = Tar::new().file("smuggled", b"evil").unterminated();
                let tar = simple()
                    .pax(&[("size", smuggled.len().to_string().as_bytes())])
                    .entry(Header::file("desync", BLOCK as u64), &smuggled)
                    .finish();
                gzip(&tar)
            },
            corrupt("desync", "PAX size"),
        ),
        case(
            "pax_size_with_ustar_size_zero",
            // The exact CVE-2025-62518 shape: ustar size 0, PAX size covering
            // a smuggled header that a ustar-only parser would unpack.
            |_| {
                let smuggled = Tar::new().file("smuggled", b"evil").unterminated();
                let tar = simple()
                    .pax(&[("size", smuggled.len().to_string().as_bytes())])
                    .entry(Header::file("desync", 0), &smuggled)
                    .finish();
                gzip(&tar)
            },
            corrupt("desync", "PAX size"),
        ),
        case(
            "pax_size_smaller_than_ustar_size",
            |_| {
                let tar = simple()
                    .pax(&[("size", b"0")])
                    .entry(Header::file("desync", 4), b"data")
                    .finish();
                gzip(&tar)
            },
            corrupt("desync", "PAX size"),
        ),
        case(
            "garbage_size_field",
            // The tar parser fails before the entry exists: the error names
            // the last good entry, and the message the bad one.
            |_| gzip(&simple().entry(Header::file("garbled", 0).raw_size(b"12x4\0"), b"").finish()),
            corrupt("ok.txt", "garbled"),
        ),
        case(
            "huge_declared_size",
            // ~8 GiB declared (the ustar maximum), a few bytes present: over
            // the default 4 GiB file limit before a byte is written.
            |_| {
                let tar = simple()
                    .entry(Header::file("huge", 0).raw_size(b"77777777777\0"), b"tiny")
                    .finish();
                gzip(&tar)
            },
            limit(LimitKind::FileBytes, "huge"),
        ),
        case(
            "declared_size_over_the_total_limit",
            |_| gzip(&simple().entry(Header::file("big", 2 << 20), b"tiny").finish()),
            limit(LimitKind::TotalBytes, "big"),
        )
        .limits(Limits {
            max_file_bytes: 4 << 20,
            ..small_limits()
        }),
        // --- truncation and corruption --------------------------------------------
        case(
            "truncated_mid_body",
            |_| {
                let tar = simple()
                    .entry(Header::file("short", 1 << 20), &[7u8; 1000])
                    .unterminated();
                gzip(&tar)
            },
            corrupt("short", "truncated"),
        ),
        case(
            "truncated_mid_header",
            |_| {
                let mut tar = simple().unterminated();
                tar.extend_from_slice(&Header::file("cut", 1).to_bytes()[..200]);
                gzip(&tar)
            },
            corrupt("ok.txt", "entire block"),
        ),
        case(
            "missing_end_of_archive_marker",
            |_| gzip(&simple().file("last", b"x").unterminated()),
            corrupt("last", "end-of-archive"),
        ),
        case(
            "bad_header_checksum",
            |_| gzip(&simple().entry(Header::file("tampered", 1).bad_checksum(), b"x").finish()),
            corrupt("ok.txt", "checksum"),
        ),
        case(
            "bad_gzip_crc",
            |_| {
                let mut gz = gzip(&simple().finish());
                let n = gz.len();
                gz[n - 8] ^= 0xff; // the CRC-32 in the gzip trailer
                gz
            },
            corrupt("ok.txt", ""),
        ),
        case(
            "gzip_truncated",
            // Incompressible content, cut three quarters through: the
            // deflate stream ends inside `second`'s body.
            |_| {
                let gz = gzip(&simple().file("second", &noise(64 << 10)).finish());
                gz[..gz.len() * 3 / 4].to_vec()
            },
            corrupt("second", ""),
        ),
        case("empty_input", |_| Vec::new(), corrupt("", "empty input")),
        case(
            "not_gzip",
            |_| simple().finish(),
            corrupt("", "not a gzip stream"),
        ),
        case(
            "trailing_garbage_after_gzip",
            |_| {
                let mut gz = gzip(&simple().finish());
                gz.extend_from_slice(b"GARBAGE");
                gz
            },
            corrupt("ok.txt", "trailing garbage"),
        ),
        case(
            "trailing_zero_padding_accepted",
            |_| {
                let mut gz = gzip(&simple().finish());
                gz.extend_from_slice(&[0; 10240]);
                gz
            },
            ok(&[OK_FILE], &[]),
        ),
        case(
            "concatenated_gzip_members_accepted",
            |_| {
                let tar = simple().file("second", b"2").finish();
                let mut gz = gzip(&tar[..BLOCK * 2]);
                gz.extend(gzip(&tar[BLOCK * 2..]));
                gz
            },
            ok(&[OK_FILE, ("second", Some(b"2"))], &[]),
        ),
        // --- limits ----------------------------------------------------------------
        case(
            "too_many_entries",
            |_| {
                let mut tar = Tar::new();
                for i in 0..11 {
                    tar = tar.file(format!("f{i:02}"), b"x");
                }
                gzip(&tar.finish())
            },
            limit(LimitKind::Entries, "f10"),
        )
        .limits(small_limits()),
        case(
            "skipped_entries_count_too",
            |_| {
                let mut tar = Tar::new();
                for i in 0..11 {
                    tar = tar.symlink(format!("l{i:02}"), "x");
                }
                gzip(&tar.finish())
            },
            limit(LimitKind::Entries, "l10"),
        )
        .limits(small_limits()),
        case(
            "path_too_long",
            |_| gzip(&simple().file("p".repeat(65), b"x").finish()),
            limit(
                LimitKind::PathBytes,
                "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp",
            ),
        )
        .limits(small_limits()),
        Case {
            name: "gzip_bomb_single_file",
            // 2 GiB of zeros in one file, compressed on the fly (~2 MiB).
            input: Box::new(|_| {
                let head = simple().entry(Header::file("bomb", 2 << 30), &[]).unterminated();
                let body = Cursor::new(head)
                    .chain(zeros(2 << 30))
                    .chain(Cursor::new(vec![0u8; 2 * BLOCK]));
                Input::Stream(Box::new(GzStream::new(body)))
            }),
            limits: small_limits(),
            prepare: None,
            expect: limit(LimitKind::FileBytes, "bomb"),
        },
        Case {
            name: "gzip_bomb_in_trailing_zeros",
            // A valid archive followed, inside the same gzip member, by 2 GiB
            // of zero blocks: only the decompressed-size cap can stop it.
            input: Box::new(|_| {
                let tar = Cursor::new(simple().finish());
                Input::Stream(Box::new(GzStream::new(tar.chain(zeros(2 << 30)))))
            }),
            limits: small_limits(),
            prepare: None,
            expect: limit(LimitKind::TotalBytes, "ok.txt"),
        },
        Case {
            name: "huge_pax_header_under_a_small_total_limit",
            // A 64 MiB PAX body is read into memory by the tar parser; the
            // decompressed-size cap stops it first.
            input: Box::new(|_| {
                let head = simple()
                    .entry(Header::new(kind::PAX, "PaxHeaders/x", 64 << 20), &[])
                    .unterminated();
                Input::Stream(Box::new(GzStream::new(Cursor::new(head).chain(zeros(64 << 20)))))
            }),
            limits: small_limits(),
            prepare: None,
            expect: limit(LimitKind::TotalBytes, "ok.txt"),
        },
    ]
}

/// The layout every case runs in:
/// `root/{sentinel.txt, outer/{sentinel.txt, dest/}}`.
struct Arena {
    root: tempfile::TempDir,
}

impl Arena {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("sentinel.txt"), SENTINEL).unwrap();
        fs::create_dir(root.path().join("outer")).unwrap();
        fs::write(root.path().join("outer/sentinel.txt"), SENTINEL).unwrap();
        fs::create_dir(root.path().join("outer/dest")).unwrap();
        Arena { root }
    }

    fn outer(&self) -> PathBuf {
        self.root.path().join("outer")
    }

    fn dest(&self) -> PathBuf {
        self.root.path().join("outer/dest")
    }

    /// Nothing but the test's own files above the destination.
    fn assert_untouched(&self, case: &str) {
        for dir in [self.root.path().to_path_buf(), self.outer()] {
            let mut names: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let expected: &[&str] = if dir == self.outer() {
                &["dest", "sentinel.txt"]
            } else {
                &["outer", "sentinel.txt"]
            };
            assert_eq!(
                names,
                expected,
                "{case}: something appeared in {}",
                dir.display()
            );
            let sentinel = dir.join("sentinel.txt");
            assert_eq!(
                fs::read(&sentinel).unwrap(),
                SENTINEL,
                "{case}: {} changed",
                sentinel.display()
            );
            assert_eq!(
                fs::symlink_metadata(&sentinel).unwrap().nlink(),
                1,
                "{case}: {} gained a hard link",
                sentinel.display()
            );
        }
    }
}

/// The destination as path → content (`None` for directories; symlinks as
/// `symlink:<target>`).
fn dest_tree(dest: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    ccws_tests::tree::snapshot(dest)
        .into_iter()
        .map(|(k, v)| (k, v.map(|(data, _)| data)))
        .collect()
}

async fn run(case: Case, a: &Archiver) -> Result<(), String> {
    let arena = Arena::new();
    let outer = arena.outer();
    let dest = arena.dest();
    if let Some(prepare) = case.prepare {
        prepare(&dest, &outer);
    }
    let options = UnpackOptions {
        limits: case.limits,
        exclude: Vec::new(),
    };
    let unpack = async {
        match (case.input)(&outer) {
            Input::Bytes(b) => {
                a.unpack(std::io::Cursor::new(b), &dest, &options, None)
                    .await
            }
            Input::Stream(s) => a.unpack(s, &dest, &options, None).await,
        }
    };
    let result = tokio::time::timeout(TIMEOUT, unpack)
        .await
        .map_err(|_| format!("{}: no result within {TIMEOUT:?}", case.name))?;
    arena.assert_untouched(case.name);
    check(case.name, &case.expect, result, &dest, &outer)
}

fn check(
    name: &str,
    expect: &Expect,
    result: Result<Report, ArchiverError>,
    dest: &Path,
    outer: &Path,
) -> Result<(), String> {
    match (expect, result) {
        (Expect::Unpacked { tree, skipped }, Ok(report)) => {
            let want: BTreeMap<String, Option<Vec<u8>>> = tree
                .iter()
                .map(|(p, d)| (p.to_string(), d.map(<[u8]>::to_vec)))
                .collect();
            let got = dest_tree(dest);
            if got != want {
                return Err(format!("{name}: destination is {got:?}, expected {want:?}"));
            }
            let outer = outer.display().to_string();
            let mut want: Vec<(String, SkipReason)> = skipped
                .iter()
                .map(|(p, r)| (p.replace("<outer>", &outer), *r))
                .collect();
            let mut got: Vec<(String, SkipReason)> = report
                .skipped
                .iter()
                .map(|s| (s.path.clone(), s.reason))
                .collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            got.sort_by(|a, b| a.0.cmp(&b.0));
            if got != want {
                return Err(format!(
                    "{name}: skipped {:?}, expected {want:?}",
                    report.skipped
                ));
            }
            let files = tree
                .iter()
                .filter(|(_, d)| d.is_some_and(|d| !d.starts_with(b"symlink:")))
                .count() as u64;
            if report.files < files {
                return Err(format!(
                    "{name}: report counts {} files, tree has {files}",
                    report.files
                ));
            }
            Ok(())
        }
        (
            Expect::Corrupt { entry, message },
            Err(ArchiverError::Archive(ArchiveError::Corrupt {
                entry: e,
                message: m,
            })),
        ) => {
            if e != *entry || !m.contains(message) {
                return Err(format!(
                    "{name}: Corrupt {{ entry: {e:?}, message: {m:?} }}, expected entry {entry:?} and a message with {message:?}"
                ));
            }
            Ok(())
        }
        (
            Expect::Limit { limit, entry },
            Err(ArchiverError::Archive(ArchiveError::LimitExceeded {
                limit: l, entry: e, ..
            })),
        ) => {
            if l != *limit || e != *entry {
                return Err(format!(
                    "{name}: LimitExceeded {l:?} at {e:?}, expected {limit:?} at {entry:?}"
                ));
            }
            Ok(())
        }
        (_, Ok(report)) => Err(format!("{name}: unexpected success: {report:?}")),
        (_, Err(e)) => Err(format!("{name}: unexpected error: {e:?} ({e})")),
    }
}

/// Every case, through both ways ccws runs an unpack: `gunzip` and
/// `unpack-tar` in two instances joined by a pipe (the default on a
/// multi-threaded runtime), and `unpack` in one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus() {
    let total = corpus().len();
    assert!(total >= 25, "the corpus has only {total} cases");
    let mut failures = Vec::new();
    for (mode, a) in [
        ("pipelined", archiver()),
        ("one instance", archiver_serial()),
    ] {
        for case in corpus() {
            let name = case.name;
            match run(case, &a).await {
                Ok(()) => eprintln!("ok   {mode}: {name}"),
                Err(e) => {
                    eprintln!("FAIL {mode}: {e}");
                    failures.push(format!("{mode}: {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        2 * total,
        failures.join("\n")
    );
}

/// The corpus's case names are unique (so failure messages are unambiguous).
#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = corpus().iter().map(|c| c.name).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
}

/// A 2 MiB gzip of one 2 GiB zero-filled entry, within every default limit
/// but the compression-ratio guard: refused once 64 MiB have been inflated,
/// whether the archive is a stream of unknown length or a file, in one
/// instance or two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_within_the_default_limits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.tar.gz");
    let size: u64 = 2 << 30;
    {
        let head = Tar::new()
            .entry(Header::file("zeros.bin", size), &[])
            .unterminated();
        let body = Cursor::new(head)
            .chain(zeros(size))
            .chain(Cursor::new(vec![0u8; 2 * BLOCK]));
        // At the usual level (GzStream's fast level 1 inflates only some
        // 150:1 from zeros).
        let mut gz = flate2::read::GzEncoder::new(body, flate2::Compression::default());
        let mut file = fs::File::create(&bomb).unwrap();
        std::io::copy(&mut gz, &mut file).unwrap();
    }
    let len = fs::metadata(&bomb).unwrap().len();
    assert!(len < 3 << 20, "{len}");
    let defaults = UnpackOptions::default();
    assert!(defaults.limits.max_file_bytes >= size && defaults.limits.max_total_bytes >= size);
    for (mode, a) in [
        ("pipelined", archiver()),
        ("one instance", archiver_serial()),
    ] {
        for from_file in [false, true] {
            let dest = dir.path().join(format!("out-{mode}-{from_file}"));
            let unpacked = if from_file {
                a.unpack_file(&bomb, &dest, &defaults, None).await
            } else {
                let stream = tokio::fs::File::open(&bomb).await.unwrap();
                a.unpack(stream, &dest, &defaults, None).await
            };
            let err = unpacked.unwrap_err();
            assert!(
                matches!(
                    err,
                    ArchiverError::Archive(ArchiveError::LimitExceeded {
                        limit: LimitKind::InflateRatio,
                        allowed: 1000,
                        ref entry,
                    }) if entry == "zeros.bin"
                ),
                "{mode}, file {from_file}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("max_inflate_ratio = 1000"), "{msg}");
            let written = walk_sizes(&dest);
            assert!(written < 128 << 20, "{mode}: {written} bytes written");
        }
    }
}

fn walk_sizes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let md = e.metadata().unwrap();
            if md.is_dir() {
                walk_sizes(&e.path())
            } else {
                md.len()
            }
        })
        .sum()
}
