//! The types of `wit/archive.wit`'s records, written once: the core code
//! works with them inside the component and natively (benchmarks, unit
//! tests), and the ccws host uses them as they are (converted to and from
//! the generated bindings by [`crate::wit_conversions`]). With the `serde`
//! feature they serialize with snake_case names.

/// Safety limits, the same for packing and unpacking (see `limits` in the
/// WIT). Unpacking, an archive that exceeds one is refused with
/// [`ArchiveError::LimitExceeded`]; packing, what would exceed one is left
/// out and reported ([`SkipReason::OverLimit`]), so that whatever a pack
/// writes, an unpack with the same limits reads back.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most archive entries, skipped ones included.
    pub max_entries: u64,
    /// Most bytes of file content in total.
    pub max_total_bytes: u64,
    /// Most bytes of one file's content.
    pub max_file_bytes: u64,
    /// Longest relative path in bytes (a directory's with its trailing `/`).
    pub max_path_bytes: u32,
    /// Deepest nesting: most components in a relative path.
    pub max_depth: u32,
    /// The compression-ratio guard against gzip bombs: once more than
    /// [`Limits::inflate_grace_bytes`] have been inflated, refuse to go on
    /// while more than this many bytes have come out of each compressed
    /// byte read. 0 turns the guard off.
    pub max_inflate_ratio: u32,
    /// What may always be inflated before the ratio guard applies.
    pub inflate_grace_bytes: u64,
}

impl Limits {
    /// The default most entries.
    pub const MAX_ENTRIES: u64 = 1_000_000;
    /// The default most bytes in total.
    pub const MAX_TOTAL_BYTES: u64 = 8 << 30;
    /// The default most bytes of one file.
    pub const MAX_FILE_BYTES: u64 = 4 << 30;
    /// The default longest path: room for a host directory of up to about
    /// 1 KiB before Linux's `PATH_MAX` (4,096 bytes) once a path is joined
    /// under the directory it is unpacked into.
    pub const MAX_PATH_BYTES: u32 = 3072;
    /// The default deepest nesting. Far deeper than real trees go; walking
    /// deeper ones costs a descriptor and stack per level.
    pub const MAX_DEPTH: u32 = 128;
    /// The default inflate ratio past which an archive is refused, as
    /// Apache POI's zip-bomb guard does (deflate's own maximum is about
    /// 1032:1, reached only by long runs of one byte).
    pub const MAX_INFLATE_RATIO: u32 = 1000;
    /// The default grace before the ratio guard applies.
    pub const INFLATE_GRACE_BYTES: u64 = 64 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: Self::MAX_ENTRIES,
            max_total_bytes: Self::MAX_TOTAL_BYTES,
            max_file_bytes: Self::MAX_FILE_BYTES,
            max_path_bytes: Self::MAX_PATH_BYTES,
            max_depth: Self::MAX_DEPTH,
            max_inflate_ratio: Self::MAX_INFLATE_RATIO,
            inflate_grace_bytes: Self::INFLATE_GRACE_BYTES,
        }
    }
}

/// How to pack a directory.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackOptions {
    /// gzip level, 0 (store) to 9 (smallest).
    pub level: u32,
    /// Glob patterns of relative paths to leave out (`*` and `?` within a
    /// name, `**` across any number); a directory that matches is left out
    /// with everything in it.
    pub exclude: Vec<String>,
    /// What the archive may hold: what would break a limit is left out and
    /// reported, so that an unpack with the same limits reads it back.
    pub limits: Limits,
}

impl PackOptions {
    /// Check the options as a pack would, before anything runs: the gzip
    /// level and every exclude pattern.
    pub fn check(&self) -> Result<(), ArchiveError> {
        crate::gzframe::check_level(self.level)?;
        crate::pattern::Patterns::new(&self.exclude).map_err(ArchiveError::InvalidOptions)?;
        Ok(())
    }
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            level: 6,
            exclude: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// How to unpack an archive.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Safety limits, the compression-ratio guard among them.
    pub limits: Limits,
    /// Glob patterns of relative paths to leave out, as for packing.
    pub exclude: Vec<String>,
}

/// The kind of entry offered to a [`Filter`].
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
}

/// A filter's answer for one path.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it, mode by kind.
    Keep,
    /// Keep it as an executable file.
    KeepExecutable,
    /// Leave it out (a directory: its subtree too).
    Exclude,
}

/// The host-supplied exclusion predicate (`filter` in the WIT).
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
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
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
    /// Packing it would exceed one of the limits (named in the detail).
    OverLimit,
}

/// One entry left out.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
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
    /// Nesting depth.
    Depth,
    /// The compression-ratio guard.
    InflateRatio,
}

impl LimitKind {
    /// The [`Limits`] field that sets this limit.
    pub fn field(self) -> &'static str {
        match self {
            LimitKind::Entries => "max_entries",
            LimitKind::TotalBytes => "max_total_bytes",
            LimitKind::FileBytes => "max_file_bytes",
            LimitKind::PathBytes => "max_path_bytes",
            LimitKind::Depth => "max_depth",
            LimitKind::InflateRatio => "max_inflate_ratio",
        }
    }

    /// This limit's value in `limits`.
    pub fn allowed(self, limits: &Limits) -> u64 {
        match self {
            LimitKind::Entries => limits.max_entries,
            LimitKind::TotalBytes => limits.max_total_bytes,
            LimitKind::FileBytes => limits.max_file_bytes,
            LimitKind::PathBytes => limits.max_path_bytes.into(),
            LimitKind::Depth => limits.max_depth.into(),
            LimitKind::InflateRatio => limits.max_inflate_ratio.into(),
        }
    }

    /// What going over it means, for messages.
    fn what(self, allowed: u64) -> String {
        match self {
            LimitKind::Entries => format!("more than {allowed} entries"),
            LimitKind::TotalBytes => format!("more than {allowed} bytes in all"),
            LimitKind::FileBytes => format!("a file of more than {allowed} bytes"),
            LimitKind::PathBytes => format!("a path of more than {allowed} bytes"),
            LimitKind::Depth => format!("nesting deeper than {allowed} levels"),
            LimitKind::InflateRatio => format!(
                "data inflating more than {allowed} times its compressed size (a gzip bomb, \
                 or data far more compressible than files usually are)"
            ),
        }
    }
}

/// Why a pack or unpack failed as a whole.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
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
    #[error(
        "the archive holds {} at entry {entry:?}: over the limit {} = {allowed}; raise it to \
         unpack a trusted archive",
        limit.what(*allowed),
        limit.field()
    )]
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
