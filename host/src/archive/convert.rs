//! Conversions between the generated WIT types and the guest crate's
//! types: the guest crate's `wit_conversions!` (the one the component
//! expands too), and the guest's paths shown as the host's.

use std::path::Path;

use ccws_archive as core;

use super::bindings::wit;
use super::GUEST_ROOT;

ccws_archive::wit_conversions!(wit);

/// The pack options as the WIT record, asking for the host filter or not.
pub fn pack_options(o: &core::PackOptions, host_filter: bool) -> wit::PackOptions {
    pack_options_to_wit(o, host_filter)
}

/// The unpack options as the WIT record, asking for the host filter or not.
pub fn unpack_options(o: &core::UnpackOptions, host_filter: bool) -> wit::UnpackOptions {
    unpack_options_to_wit(o, host_filter)
}

/// The guest's error as the host's; an I/O error's guest path (under
/// `GUEST_ROOT`) is shown as the host path under `root`, the directory
/// preopened there.
pub fn error(e: wit::ArchiveError, root: Option<&Path>) -> core::ArchiveError {
    match core::ArchiveError::from(e) {
        core::ArchiveError::Io { path, message } => core::ArchiveError::Io {
            path: host_path(&path, root),
            message,
        },
        e => e,
    }
}

/// `/ccws/a/b` → `<root>/a/b`; anything else unchanged.
fn host_path(guest: &str, root: Option<&Path>) -> String {
    let rest = guest
        .strip_prefix(GUEST_ROOT)
        .filter(|r| r.is_empty() || r.starts_with('/'));
    match (rest.map(|r| r.trim_start_matches('/')), root) {
        (Some(""), Some(root)) => root.display().to_string(),
        (Some(rest), Some(root)) => root.join(rest).display().to_string(),
        _ => guest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccws_archive::{ArchiveError, EntryKind, LimitKind, Limits, SkipReason, Verdict};

    /// Every variant of `SkipReason`: the match fails to compile when one
    /// is added and not listed.
    fn skip_reasons() -> Vec<SkipReason> {
        use SkipReason::*;
        let all = vec![
            Excluded,
            Symlink,
            HardLink,
            SpecialFile,
            UnsupportedType,
            AbsolutePath,
            ParentComponent,
            ThroughSymlink,
            NonUtf8Name,
            NulInName,
            TypeConflict,
            Unreadable,
            OverLimit,
        ];
        for r in &all {
            match r {
                Excluded | Symlink | HardLink | SpecialFile | UnsupportedType | AbsolutePath
                | ParentComponent | ThroughSymlink | NonUtf8Name | NulInName | TypeConflict
                | Unreadable | OverLimit => {}
            }
        }
        all
    }

    fn limit_kinds() -> Vec<LimitKind> {
        use LimitKind::*;
        let all = vec![
            Entries,
            TotalBytes,
            FileBytes,
            PathBytes,
            Depth,
            InflateRatio,
        ];
        for k in &all {
            match k {
                Entries | TotalBytes | FileBytes | PathBytes | Depth | InflateRatio => {}
            }
        }
        all
    }

    fn errors() -> Vec<ArchiveError> {
        let mut all = vec![
            ArchiveError::InvalidOptions("level 12".into()),
            ArchiveError::Io {
                path: "/elsewhere/x".into(),
                message: "denied".into(),
            },
            ArchiveError::Corrupt {
                entry: "a/b".into(),
                message: "checksum".into(),
            },
            ArchiveError::Stream {
                entry: String::new(),
                message: "reset".into(),
            },
        ];
        all.extend(
            limit_kinds()
                .into_iter()
                .map(|limit| ArchiveError::LimitExceeded {
                    limit,
                    allowed: 7,
                    entry: "big".into(),
                }),
        );
        for e in &all {
            match e {
                ArchiveError::InvalidOptions(_)
                | ArchiveError::Io { .. }
                | ArchiveError::Corrupt { .. }
                | ArchiveError::LimitExceeded { .. }
                | ArchiveError::Stream { .. } => {}
            }
        }
        all
    }

    /// core → WIT → core is the identity for every type and variant that
    /// crosses the boundary.
    #[test]
    fn every_type_round_trips_through_the_wit_bindings() {
        fn round<C, W>(c: C)
        where
            C: Clone + PartialEq + std::fmt::Debug + From<W>,
            W: From<C>,
        {
            assert_eq!(C::from(W::from(c.clone())), c);
        }
        for kind in [EntryKind::File, EntryKind::Directory] {
            match kind {
                EntryKind::File | EntryKind::Directory => round::<_, wit::EntryKind>(kind),
            }
        }
        for v in [Verdict::Keep, Verdict::KeepExecutable, Verdict::Exclude] {
            match v {
                Verdict::Keep | Verdict::KeepExecutable | Verdict::Exclude => {
                    round::<_, wit::Verdict>(v)
                }
            }
        }
        for r in skip_reasons() {
            round::<_, wit::SkipReason>(r);
        }
        for k in limit_kinds() {
            round::<_, wit::LimitKind>(k);
        }
        for e in errors() {
            round::<_, wit::ArchiveError>(e);
        }
        let limits = Limits {
            max_entries: 1,
            max_total_bytes: 2,
            max_file_bytes: 3,
            max_path_bytes: 4,
            max_depth: 5,
            max_inflate_ratio: 6,
            inflate_grace_bytes: 7,
        };
        round::<_, wit::Limits>(limits);
        round::<_, wit::Limits>(Limits::default());
        let report = core::Report {
            files: 1,
            dirs: 2,
            bytes: 3,
            executables: vec!["run.sh".into()],
            skipped: skip_reasons()
                .into_iter()
                .map(|reason| core::Skipped {
                    path: format!("{reason:?}"),
                    reason,
                    detail: "why".into(),
                })
                .collect(),
        };
        round::<_, wit::Report>(report);
        for level in [0, 6, 9] {
            for host_filter in [false, true] {
                let pack = core::PackOptions {
                    level,
                    exclude: vec!["*.tmp".into(), "cache/**".into()],
                    limits,
                };
                let back = pack_options_from_wit(pack_options(&pack, host_filter));
                assert_eq!(back, (pack, host_filter));
                let unpack = core::UnpackOptions {
                    limits,
                    exclude: vec!["x".into()],
                };
                let back = unpack_options_from_wit(unpack_options(&unpack, host_filter));
                assert_eq!(back, (unpack, host_filter));
            }
        }
        // A level the WIT's u8 cannot hold arrives as 255, which the guest
        // refuses as out of range.
        let big = core::PackOptions {
            level: 300,
            ..Default::default()
        };
        assert_eq!(pack_options(&big, false).level, 255);
    }

    #[test]
    fn an_io_errors_guest_path_becomes_the_host_path() {
        let e = wit::ArchiveError::Io(wit::IoError {
            path: "/ccws/a/b".into(),
            message: "denied".into(),
        });
        assert_eq!(
            error(e, Some(Path::new("/tmp/dest"))),
            ArchiveError::Io {
                path: "/tmp/dest/a/b".into(),
                message: "denied".into()
            }
        );
    }

    #[test]
    fn guest_paths_become_host_paths() {
        let root = Path::new("/tmp/dest");
        assert_eq!(host_path("/ccws/a/b", Some(root)), "/tmp/dest/a/b");
        assert_eq!(host_path("/ccws", Some(root)), "/tmp/dest");
        assert_eq!(host_path("/ccwsx/a", Some(root)), "/ccwsx/a");
        assert_eq!(host_path("/ccws/a", None), "/ccws/a");
    }
}
