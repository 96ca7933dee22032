//! The one conversion, per type and direction, between the types of
//! [`crate::types`] and the bindings of the WIT records they stand for.
//!
//! A guest's bindings (wit-bindgen) and a host's (wasmtime's `bindgen!`)
//! are different Rust types of the same shape, so the conversions are a
//! macro that both expand: the component in `component.rs`, and the ccws
//! host, whose tests round-trip every type and variant through it.

/// Conversions between this crate's types and the bindings of the
/// `ccws:archive/types` interface, the module named by `$wit` (a name in
/// scope where the macro is expanded, e.g. `use …::types as wit;`):
/// `From` both ways for every record, enum and variant that maps one to
/// one, and for the two option records, which carry the call's
/// `host-filter` flag besides, `pack_options_to_wit` /
/// `pack_options_from_wit` and `unpack_options_to_wit` /
/// `unpack_options_from_wit`. Levels over 255 become 255 in the WIT's `u8`
/// (which the guest refuses as out of range, as it does any over 9).
#[macro_export]
macro_rules! wit_conversions {
    // An enum whose variants have the same names on both sides.
    (@enum $wit:ident, $name:ident { $($variant:ident),+ $(,)? }) => {
        impl From<$crate::$name> for $wit::$name {
            fn from(v: $crate::$name) -> Self {
                match v {
                    $($crate::$name::$variant => $wit::$name::$variant,)+
                }
            }
        }

        impl From<$wit::$name> for $crate::$name {
            fn from(v: $wit::$name) -> Self {
                match v {
                    $($wit::$name::$variant => $crate::$name::$variant,)+
                }
            }
        }
    };
    ($wit:ident) => {
        impl From<$crate::Limits> for $wit::Limits {
            fn from(l: $crate::Limits) -> Self {
                $wit::Limits {
                    max_entries: l.max_entries,
                    max_total_bytes: l.max_total_bytes,
                    max_file_bytes: l.max_file_bytes,
                    max_path_bytes: l.max_path_bytes,
                    max_depth: l.max_depth,
                    max_inflate_ratio: l.max_inflate_ratio,
                    inflate_grace_bytes: l.inflate_grace_bytes,
                }
            }
        }

        impl From<$wit::Limits> for $crate::Limits {
            fn from(l: $wit::Limits) -> Self {
                $crate::Limits {
                    max_entries: l.max_entries,
                    max_total_bytes: l.max_total_bytes,
                    max_file_bytes: l.max_file_bytes,
                    max_path_bytes: l.max_path_bytes,
                    max_depth: l.max_depth,
                    max_inflate_ratio: l.max_inflate_ratio,
                    inflate_grace_bytes: l.inflate_grace_bytes,
                }
            }
        }

        /// `o` as the WIT record, asking for the host filter or not.
        #[allow(dead_code)]
        fn pack_options_to_wit(o: &$crate::PackOptions, host_filter: bool) -> $wit::PackOptions {
            $wit::PackOptions {
                level: u8::try_from(o.level).unwrap_or(u8::MAX),
                exclude: o.exclude.clone(),
                host_filter,
                limits: o.limits.into(),
            }
        }

        /// The WIT record as options, and whether it asks for the host filter.
        #[allow(dead_code)]
        fn pack_options_from_wit(o: $wit::PackOptions) -> ($crate::PackOptions, bool) {
            let options = $crate::PackOptions {
                level: o.level.into(),
                exclude: o.exclude,
                limits: o.limits.into(),
            };
            (options, o.host_filter)
        }

        /// `o` as the WIT record, asking for the host filter or not.
        #[allow(dead_code)]
        fn unpack_options_to_wit(
            o: &$crate::UnpackOptions,
            host_filter: bool,
        ) -> $wit::UnpackOptions {
            $wit::UnpackOptions {
                limits: o.limits.into(),
                exclude: o.exclude.clone(),
                host_filter,
            }
        }

        /// The WIT record as options, and whether it asks for the host filter.
        #[allow(dead_code)]
        fn unpack_options_from_wit(o: $wit::UnpackOptions) -> ($crate::UnpackOptions, bool) {
            let options = $crate::UnpackOptions {
                limits: o.limits.into(),
                exclude: o.exclude,
            };
            (options, o.host_filter)
        }

        $crate::wit_conversions!(@enum $wit, EntryKind { File, Directory });
        $crate::wit_conversions!(@enum $wit, Verdict { Keep, KeepExecutable, Exclude });
        $crate::wit_conversions!(@enum $wit, SkipReason {
            Excluded, Symlink, HardLink, SpecialFile, UnsupportedType, AbsolutePath,
            ParentComponent, ThroughSymlink, NonUtf8Name, NulInName, TypeConflict,
            Unreadable, OverLimit,
        });
        $crate::wit_conversions!(@enum $wit, LimitKind {
            Entries, TotalBytes, FileBytes, PathBytes, Depth, InflateRatio,
        });

        impl From<$crate::Skipped> for $wit::Skipped {
            fn from(s: $crate::Skipped) -> Self {
                $wit::Skipped {
                    path: s.path,
                    reason: s.reason.into(),
                    detail: s.detail,
                }
            }
        }

        impl From<$wit::Skipped> for $crate::Skipped {
            fn from(s: $wit::Skipped) -> Self {
                $crate::Skipped {
                    path: s.path,
                    reason: s.reason.into(),
                    detail: s.detail,
                }
            }
        }

        impl From<$crate::Report> for $wit::Report {
            fn from(r: $crate::Report) -> Self {
                $wit::Report {
                    files: r.files,
                    dirs: r.dirs,
                    bytes: r.bytes,
                    executables: r.executables,
                    skipped: r.skipped.into_iter().map(Into::into).collect(),
                }
            }
        }

        impl From<$wit::Report> for $crate::Report {
            fn from(r: $wit::Report) -> Self {
                $crate::Report {
                    files: r.files,
                    dirs: r.dirs,
                    bytes: r.bytes,
                    executables: r.executables,
                    skipped: r.skipped.into_iter().map(Into::into).collect(),
                }
            }
        }

        impl From<$crate::ArchiveError> for $wit::ArchiveError {
            fn from(e: $crate::ArchiveError) -> Self {
                use $crate::ArchiveError as C;
                match e {
                    C::InvalidOptions(m) => $wit::ArchiveError::InvalidOptions(m),
                    C::Io { path, message } => {
                        $wit::ArchiveError::Io($wit::IoError { path, message })
                    }
                    C::Corrupt { entry, message } => {
                        $wit::ArchiveError::Corrupt($wit::CorruptError { entry, message })
                    }
                    C::LimitExceeded {
                        limit,
                        allowed,
                        entry,
                    } => $wit::ArchiveError::LimitExceeded($wit::LimitError {
                        limit: limit.into(),
                        allowed,
                        entry,
                    }),
                    C::Stream { entry, message } => {
                        $wit::ArchiveError::Stream($wit::StreamError { entry, message })
                    }
                }
            }
        }

        impl From<$wit::ArchiveError> for $crate::ArchiveError {
            fn from(e: $wit::ArchiveError) -> Self {
                use $crate::ArchiveError as C;
                match e {
                    $wit::ArchiveError::InvalidOptions(m) => C::InvalidOptions(m),
                    $wit::ArchiveError::Io(e) => C::Io {
                        path: e.path,
                        message: e.message,
                    },
                    $wit::ArchiveError::Corrupt(e) => C::Corrupt {
                        entry: e.entry,
                        message: e.message,
                    },
                    $wit::ArchiveError::LimitExceeded(e) => C::LimitExceeded {
                        limit: e.limit.into(),
                        allowed: e.allowed,
                        entry: e.entry,
                    },
                    $wit::ArchiveError::Stream(e) => C::Stream {
                        entry: e.entry,
                        message: e.message,
                    },
                }
            }
        }
    };
}
