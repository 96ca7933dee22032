//! Files created in the unpack destination: each one relative to its
//! parent directory, which is opened (relative to the destination's root)
//! once for a run of siblings.
//!
//! In the component through WASI descriptors directly: a file costs its
//! `open-at` (one path component), `write`, `set-times` and close, where
//! `std::fs` resolved the whole path from the preopen on every create and
//! went through wasi-libc's descriptor table for every call. Natively
//! `std::fs` over paths.

use std::io;
use std::path::Path;

pub use imp::Dir;

#[cfg(not(target_os = "wasi"))]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// A directory of the destination, by path.
    pub struct Dir(PathBuf);

    /// A file just created, open for writing.
    pub struct NewFile(File);

    impl Dir {
        /// Open directory `path`, which must exist.
        pub fn open(path: &Path) -> io::Result<Dir> {
            Ok(Dir(path.to_path_buf()))
        }

        /// Open subdirectory `rel` (`/`-separated; empty for this one).
        pub fn open_dir(&self, rel: &str) -> io::Result<Dir> {
            Ok(Dir(self.0.join(rel)))
        }

        /// Create file `name` here; never follows or replaces anything
        /// (`AlreadyExists` when something is there).
        pub fn create_new(&self, name: &str) -> io::Result<NewFile> {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.0.join(name))
                .map(NewFile)
        }
    }

    impl NewFile {
        /// Write all of `buf` at `offset`.
        pub fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            crate::fsio::write_all_at(&self.0, buf, offset)
        }

        /// Set the modification time to `secs` after the epoch.
        pub fn set_mtime(&self, secs: u64) -> io::Result<()> {
            self.0.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        }
    }
}

#[cfg(target_os = "wasi")]
mod imp {
    use wasip2::clocks::wall_clock::Datetime;
    use wasip2::filesystem::types::{
        Descriptor, DescriptorFlags, NewTimestamp, OpenFlags, PathFlags,
    };

    use super::*;
    use crate::wasifs::error;

    /// A directory of the destination, by descriptor.
    pub struct Dir(Descriptor);

    /// A file just created, open for writing.
    pub struct NewFile(Descriptor);

    impl Dir {
        /// Open directory `path`, which must exist (see
        /// [`crate::wasifs::open_dir`]).
        pub fn open(path: &Path) -> io::Result<Dir> {
            crate::wasifs::open_dir(
                path,
                DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
            )
            .map(Dir)
        }

        /// Open subdirectory `rel` (`/`-separated; empty for this one),
        /// not through a symlink at its last component.
        pub fn open_dir(&self, rel: &str) -> io::Result<Dir> {
            self.0
                .open_at(
                    PathFlags::empty(),
                    if rel.is_empty() { "." } else { rel },
                    OpenFlags::DIRECTORY,
                    DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
                )
                .map(Dir)
                .map_err(error)
        }

        /// Create file `name` here; never follows or replaces anything
        /// (`AlreadyExists` when something is there).
        pub fn create_new(&self, name: &str) -> io::Result<NewFile> {
            self.0
                .open_at(
                    PathFlags::empty(),
                    name,
                    OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                    DescriptorFlags::WRITE,
                )
                .map(NewFile)
                .map_err(error)
        }
    }

    impl NewFile {
        /// Write all of `buf` at `offset`.
        pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
            while !buf.is_empty() {
                let n = self.0.write(buf, offset).map_err(error)?;
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                buf = &buf[n..];
                offset += n as u64;
            }
            Ok(())
        }

        /// Set the modification time to `secs` after the epoch.
        pub fn set_mtime(&self, secs: u64) -> io::Result<()> {
            let mtime = Datetime {
                seconds: secs,
                nanoseconds: 0,
            };
            self.0
                .set_times(NewTimestamp::NoChange, NewTimestamp::Timestamp(mtime))
                .map_err(error)
        }
    }
}
