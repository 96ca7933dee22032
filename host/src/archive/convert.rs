//! Conversions between the generated WIT types and the core types shared
//! with the guest crate.

use std::path::Path;

use ccws_archive as core;

use super::bindings::wit;
use super::{PackOptions, UnpackOptions, GUEST_ROOT};

pub fn pack_options(o: &PackOptions, host_filter: bool) -> wit::PackOptions {
    wit::PackOptions {
        level: u8::try_from(o.level).unwrap_or(u8::MAX),
        exclude: o.exclude.clone(),
        host_filter,
        limits: limits(&o.limits),
    }
}

pub fn unpack_options(o: &UnpackOptions, host_filter: bool) -> wit::UnpackOptions {
    wit::UnpackOptions {
        limits: limits(&o.limits),
        exclude: o.exclude.clone(),
        host_filter,
    }
}

pub fn limits(l: &core::Limits) -> wit::Limits {
    wit::Limits {
        max_entries: l.max_entries,
        max_total_bytes: l.max_total_bytes,
        max_file_bytes: l.max_file_bytes,
        max_path_bytes: l.max_path_bytes,
        max_depth: l.max_depth,
        max_inflate_ratio: l.max_inflate_ratio,
        inflate_grace_bytes: l.inflate_grace_bytes,
    }
}

pub fn report(r: wit::Report) -> core::Report {
    core::Report {
        files: r.files,
        dirs: r.dirs,
        bytes: r.bytes,
        executables: r.executables,
        skipped: r
            .skipped
            .into_iter()
            .map(|s| core::Skipped {
                path: s.path,
                reason: reason(s.reason),
                detail: s.detail,
            })
            .collect(),
    }
}

fn reason(r: wit::SkipReason) -> core::SkipReason {
    use core::SkipReason as C;
    use wit::SkipReason as W;
    match r {
        W::Excluded => C::Excluded,
        W::Symlink => C::Symlink,
        W::HardLink => C::HardLink,
        W::SpecialFile => C::SpecialFile,
        W::UnsupportedType => C::UnsupportedType,
        W::AbsolutePath => C::AbsolutePath,
        W::ParentComponent => C::ParentComponent,
        W::ThroughSymlink => C::ThroughSymlink,
        W::NonUtf8Name => C::NonUtf8Name,
        W::NulInName => C::NulInName,
        W::TypeConflict => C::TypeConflict,
        W::Unreadable => C::Unreadable,
        W::OverLimit => C::OverLimit,
    }
}

/// The guest's error as the host's; an I/O error's guest path (under
/// `GUEST_ROOT`) is shown as the host path under `root`, the directory
/// preopened there.
pub fn error(e: wit::ArchiveError, root: Option<&Path>) -> core::ArchiveError {
    use core::ArchiveError as C;
    match e {
        wit::ArchiveError::InvalidOptions(m) => C::InvalidOptions(m),
        wit::ArchiveError::Io(e) => C::Io {
            path: host_path(&e.path, root),
            message: e.message,
        },
        wit::ArchiveError::Corrupt(e) => C::Corrupt {
            entry: e.entry,
            message: e.message,
        },
        wit::ArchiveError::LimitExceeded(e) => C::LimitExceeded {
            limit: match e.limit {
                wit::LimitKind::Entries => core::LimitKind::Entries,
                wit::LimitKind::TotalBytes => core::LimitKind::TotalBytes,
                wit::LimitKind::FileBytes => core::LimitKind::FileBytes,
                wit::LimitKind::PathBytes => core::LimitKind::PathBytes,
                wit::LimitKind::Depth => core::LimitKind::Depth,
                wit::LimitKind::InflateRatio => core::LimitKind::InflateRatio,
            },
            allowed: e.allowed,
            entry: e.entry,
        },
        wit::ArchiveError::Stream(e) => C::Stream {
            entry: e.entry,
            message: e.message,
        },
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

    #[test]
    fn guest_paths_become_host_paths() {
        let root = Path::new("/tmp/dest");
        assert_eq!(host_path("/ccws/a/b", Some(root)), "/tmp/dest/a/b");
        assert_eq!(host_path("/ccws", Some(root)), "/tmp/dest");
        assert_eq!(host_path("/ccwsx/a", Some(root)), "/ccwsx/a");
        assert_eq!(host_path("/ccws/a", None), "/ccws/a");
    }
}
