//! Plain Rust mirrors of the WIT records in `wit/archive.wit`, so the same core
//! code runs inside the component and natively (benchmarks, unit tests).

use crate::pattern::Patterns;

/// Safety limits for unpacking (see `limits` in the WIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most archive entries, skipped ones included.
    pub max_entries: u64,
    /// Most bytes of file content written in total.
    pub max_total_bytes: u64,
    /// Most bytes of one file's content.
    pub max_file_bytes: u64,
    /// Longest relative path in bytes.
    pub max_path_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_total_bytes: 8 << 30,
            max_file_bytes: 4 << 30,
            max_path_bytes: 4096,
        }
    }
}

/// How to pack a directory.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// gzip level 0-9.
    pub level: u32,
    /// Declarative exclusions.
    pub exclude: Patterns,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            level: 6,
            exclude: Patterns::default(),
        }
    }
}

/// How to unpack an archive.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Safety limits.
    pub limits: Limits,
    /// Declarative exclusions.
    pub exclude: Patterns,
}

/// The kind of entry offered to a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
}

/// A filter's answer for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it, mode by kind.
    Keep,
    /// Keep it as an executable file.
    KeepExecutable,
    /// Leave it out (a directory: its subtree too).
    Exclude,
}

/// The host-supplied exclusion predicate (the seed's `excludeRel`).
pub trait Filter {
    /// Decide one `/`-separated relative path.
    fn check(&mut self, rel: &str, kind: EntryKind) -> Verdict;
}

/// A filter that keeps everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeepAll;

impl Filter for KeepAll {
    fn check(&mut self, _rel: &str, _kind: EntryKind) -> Verdict {
        Verdict::Keep
    }
}

impl<F: FnMut(&str, EntryKind) -> Verdict> Filter for F {
    fn check(&mut self, rel: &str, kind: EntryKind) -> Verdict {
        self(rel, kind)
    }
}

/// Why an entry was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Excluded by a pattern or the filter.
    Excluded,
    /// A symbolic link.
    Symlink,
    /// A hard link entry.
    HardLink,
    /// A device, FIFO or socket.
    SpecialFile,
    /// A tar entry type that is never created.
    UnsupportedType,
    /// An absolute path.
    AbsolutePath,
    /// A `..` component.
    ParentComponent,
    /// A path component is a symlink in the destination.
    ThroughSymlink,
    /// Not valid UTF-8.
    NonUtf8Name,
    /// Contains a NUL byte.
    NulInName,
    /// File over directory or directory over file.
    TypeConflict,
    /// The source could not be read.
    Unreadable,
}

/// One entry left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path as found.
    pub path: String,
    /// Why.
    pub reason: SkipReason,
    /// Extra detail; may be empty.
    pub detail: String,
}

/// What a pack or unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Regular files packed or written.
    pub files: u64,
    /// Directories packed or created (not the root).
    pub dirs: u64,
    /// File content bytes.
    pub bytes: u64,
    /// Relative paths of executable files.
    pub executables: Vec<String>,
    /// Entries left out.
    pub skipped: Vec<Skipped>,
}

impl Report {
    pub(crate) fn skip(
        &mut self,
        path: impl Into<String>,
        reason: SkipReason,
        detail: impl Into<String>,
    ) {
        self.skipped.push(Skipped {
            path: path.into(),
            reason,
            detail: detail.into(),
        });
    }
}

/// Which limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Entry count.
    Entries,
    /// Total content bytes.
    TotalBytes,
    /// One file's bytes.
    FileBytes,
    /// Path length.
    PathBytes,
}

/// Why a pack or unpack failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// An option is out of range or a pattern does not parse.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The named source, destination or archive file is unusable.
    #[error("{path}: {message}")]
    Io {
        /// The path the caller named.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The archive is truncated or corrupt.
    #[error("corrupt archive{}: {message}", entry_suffix(entry))]
    Corrupt {
        /// The entry being read, or the last good one.
        entry: String,
        /// What is wrong.
        message: String,
    },
    /// A limit was exceeded.
    #[error("limit exceeded: {limit:?} over {allowed} at entry {entry:?}")]
    LimitExceeded {
        /// Which limit.
        limit: LimitKind,
        /// The configured value.
        allowed: u64,
        /// The entry that crossed it.
        entry: String,
    },
    /// The host's stream failed.
    #[error("stream failed{}: {message}", entry_suffix(entry))]
    Stream {
        /// The entry being read or written when it failed ("" before the
        /// first one).
        entry: String,
        /// The stream's error.
        message: String,
    },
}

fn entry_suffix(entry: &str) -> String {
    if entry.is_empty() {
        String::new()
    } else {
        format!(" at entry {entry:?}")
    }
}
