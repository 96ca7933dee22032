//! The pack source as the walk sees it: a directory's listing with each
//! entry's type, files opened with their size and mtime, read at an offset.
//!
//! In the component this talks to the WASI descriptors directly, each
//! directory and file opened relative to its parent's descriptor. Through
//! `std::fs` every file cost six `statx` calls on the host where native code
//! makes one: wasi-libc asks for an inode number (`metadata-hash`) after each
//! directory entry and each `fstat`, on top of wasmtime-wasi's own checks.
//! Natively it is `std::fs` over paths.

use std::ffi::OsString;
use std::io;
use std::path::Path;

/// What a listing says an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A device, FIFO or socket.
    Special,
    /// The listing could not tell: ask [`Dir::stat_at`].
    Unknown,
}

/// What the walk needs to know of an opened file or directory.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    /// Seconds since the epoch; 0 when unknown or earlier.
    pub mtime: u64,
    /// An executable bit is set (never known under WASI, which has no modes).
    pub executable: bool,
}

/// One directory's entries, unsorted. An `InvalidData` error stands for
/// one entry whose name is not UTF-8 (under WASI, which cannot name it);
/// any other error ends the listing.
pub type Listing = Vec<io::Result<(OsString, Kind)>>;

/// The detail of an `InvalidData` listing error.
#[cfg(target_os = "wasi")]
const NON_UTF8: &str = "an entry here has a name that is not UTF-8, which WASI cannot pass on";

pub use imp::{Dir, SrcFile};

#[cfg(not(target_os = "wasi"))]
mod imp {
    use std::fs::{self, File, Metadata};
    use std::path::PathBuf;
    use std::time::UNIX_EPOCH;

    use super::*;

    /// A directory of the source, by path.
    pub struct Dir(PathBuf);

    /// A file of the source, open for reading.
    pub struct SrcFile(File);

    impl Dir {
        /// Open the source root (following a symlink) and list it.
        pub fn open_root(path: &Path) -> io::Result<(Dir, Listing)> {
            let listing = list(path)?;
            Ok((Dir(path.to_path_buf()), listing))
        }

        /// Open subdirectory `name` (not through a symlink), stat it and list it.
        pub fn open_dir(&self, name: &OsString) -> io::Result<(Dir, Stat, Listing)> {
            let path = self.0.join(name);
            let stat = stat(&fs::symlink_metadata(&path)?);
            let listing = list(&path)?;
            Ok((Dir(path), stat, listing))
        }

        /// Open file `name` for reading, with its metadata as opened.
        pub fn open_file(&self, name: &OsString) -> io::Result<(SrcFile, Stat)> {
            let file = File::open(self.0.join(name))?;
            let stat = stat(&file.metadata()?);
            Ok((SrcFile(file), stat))
        }

        /// What `name` is, without following a symlink.
        pub fn stat_at(&self, name: &OsString) -> io::Result<Stat> {
            fs::symlink_metadata(self.0.join(name)).map(|md| stat(&md))
        }

        /// The target of symlink `name`.
        pub fn read_link(&self, name: &OsString) -> io::Result<String> {
            fs::read_link(self.0.join(name)).map(|t| t.to_string_lossy().into_owned())
        }
    }

    impl SrcFile {
        /// Read into `buf` at `offset`; 0 at end of file.
        pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            crate::fsio::read_at(&self.0, buf, offset)
        }
    }

    fn list(path: &Path) -> io::Result<Listing> {
        let mut listing = Vec::new();
        for item in fs::read_dir(path)? {
            let failed = item.is_err();
            listing.push(item.map(|e| {
                let kind = e.file_type().map_or(Kind::Unknown, |ft| kind_of(&ft));
                (e.file_name(), kind)
            }));
            if failed {
                break;
            }
        }
        Ok(listing)
    }

    fn kind_of(ft: &fs::FileType) -> Kind {
        if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Special
        }
    }

    fn stat(md: &Metadata) -> Stat {
        Stat {
            kind: kind_of(&md.file_type()),
            size: md.len(),
            mtime: md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
            executable: executable(md),
        }
    }

    #[cfg(unix)]
    fn executable(md: &Metadata) -> bool {
        use std::os::unix::fs::PermissionsExt;
        md.permissions().mode() & 0o111 != 0
    }

    #[cfg(not(unix))]
    fn executable(_md: &Metadata) -> bool {
        false
    }
}

#[cfg(target_os = "wasi")]
mod imp {
    use wasip2::filesystem::types::{
        Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, ErrorCode, OpenFlags,
        PathFlags,
    };

    use super::*;
    use crate::wasifs::error;

    /// A directory of the source, by descriptor.
    pub struct Dir(Descriptor);

    /// A file of the source, open for reading.
    pub struct SrcFile(Descriptor);

    impl Dir {
        /// Open the source root (following a symlink) and list it (see
        /// [`crate::wasifs::open_dir`]).
        pub fn open_root(path: &Path) -> io::Result<(Dir, Listing)> {
            let dir = crate::wasifs::open_dir(path, DescriptorFlags::READ)?;
            let listing = list(&dir)?;
            Ok((Dir(dir), listing))
        }

        /// Open subdirectory `name` (not through a symlink), stat it and list it.
        pub fn open_dir(&self, name: &OsString) -> io::Result<(Dir, Stat, Listing)> {
            let dir = self
                .0
                .open_at(
                    PathFlags::empty(),
                    utf8(name)?,
                    OpenFlags::DIRECTORY,
                    DescriptorFlags::READ,
                )
                .map_err(error)?;
            let stat = stat(dir.stat().map_err(error)?);
            let listing = list(&dir)?;
            Ok((Dir(dir), stat, listing))
        }

        /// Open file `name` for reading (not through a symlink), with its
        /// metadata as opened.
        pub fn open_file(&self, name: &OsString) -> io::Result<(SrcFile, Stat)> {
            let file = self
                .0
                .open_at(
                    PathFlags::empty(),
                    utf8(name)?,
                    OpenFlags::empty(),
                    DescriptorFlags::READ,
                )
                .map_err(error)?;
            let stat = stat(file.stat().map_err(error)?);
            Ok((SrcFile(file), stat))
        }

        /// What `name` is, without following a symlink.
        pub fn stat_at(&self, name: &OsString) -> io::Result<Stat> {
            self.0
                .stat_at(PathFlags::empty(), utf8(name)?)
                .map(stat)
                .map_err(error)
        }

        /// The target of symlink `name`.
        pub fn read_link(&self, name: &OsString) -> io::Result<String> {
            self.0.readlink_at(utf8(name)?).map_err(error)
        }
    }

    impl SrcFile {
        /// Read into `buf` at `offset`; 0 at end of file. The bindings
        /// hand the bytes back as a new list, copied here once more (a
        /// guest `memcpy` per chunk; the pack's deflate, not this, bounds it).
        pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let (data, _) = self.0.read(buf.len() as u64, offset).map_err(error)?;
            // More than asked for would be a host bug; never overrun `buf`.
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            Ok(n)
        }
    }

    fn list(dir: &Descriptor) -> io::Result<Listing> {
        let entries = dir.read_directory().map_err(error)?;
        let mut listing = Vec::new();
        loop {
            match entries.read_directory_entry() {
                Ok(Some(e)) => listing.push(Ok((OsString::from(e.name), kind_of(e.type_)))),
                Ok(None) => break,
                // One entry's name cannot cross WASI (strings are UTF-8):
                // that entry alone is lost, the listing goes on.
                Err(ErrorCode::IllegalByteSequence) => {
                    listing.push(Err(io::Error::new(io::ErrorKind::InvalidData, NON_UTF8)))
                }
                Err(e) => {
                    listing.push(Err(error(e)));
                    break;
                }
            }
        }
        Ok(listing)
    }

    fn utf8(name: &OsString) -> io::Result<&str> {
        name.to_str()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EILSEQ))
    }

    fn kind_of(t: DescriptorType) -> Kind {
        match t {
            DescriptorType::RegularFile => Kind::File,
            DescriptorType::Directory => Kind::Dir,
            DescriptorType::SymbolicLink => Kind::Symlink,
            DescriptorType::Unknown => Kind::Unknown,
            DescriptorType::BlockDevice
            | DescriptorType::CharacterDevice
            | DescriptorType::Fifo
            | DescriptorType::Socket => Kind::Special,
        }
    }

    fn stat(s: DescriptorStat) -> Stat {
        Stat {
            kind: kind_of(s.type_),
            size: s.size,
            mtime: s.data_modification_timestamp.map_or(0, |t| t.seconds),
            executable: false,
        }
    }
}
