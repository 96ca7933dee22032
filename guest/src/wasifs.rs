//! WASI descriptors as the guest uses them directly (bypassing wasi-libc,
//! whose `std::fs` layer costs extra host calls per file): finding a path
//! under the preopens, and errors as `std::fs` reports them.

use std::io;
use std::path::{Component, Path};

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

/// Open directory `path` with `flags`: found under the preopen whose name
/// is its longest whole-component prefix, as wasi-libc finds it (relative
/// paths from `/`), following symlinks inside the preopen.
pub fn open_dir(path: &Path, flags: DescriptorFlags) -> io::Result<Descriptor> {
    let want = components(path);
    let mut best: Option<(Descriptor, usize)> = None;
    for (desc, name) in get_directories() {
        let pre = components(Path::new(&name));
        let longer = best.as_ref().is_none_or(|(_, n)| pre.len() > *n);
        if want.starts_with(&pre) && longer {
            best = Some((desc, pre.len()));
        }
    }
    let Some((preopen, depth)) = best else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not under any directory this component was given (preopen one that holds it)",
        ));
    };
    if depth == want.len() {
        return Ok(preopen);
    }
    preopen
        .open_at(
            PathFlags::SYMLINK_FOLLOW,
            &want[depth..].join("/"),
            OpenFlags::DIRECTORY,
            flags,
        )
        .map_err(error)
}

/// A path's names, without the root and `.` components.
fn components(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The error as `std::fs` would have reported it: the same kind, and the
/// system's words for it ("No space left on device"), not a bare WASI errno
/// number, which is all wasi-libc's `strerror` gives in the component.
pub fn error(code: ErrorCode) -> io::Error {
    let kind = io::Error::from_raw_os_error(errno(code)).kind();
    let message = code.message();
    let words = message.split(", similar to").next().unwrap_or(message);
    io::Error::new(kind, words.trim_end_matches('.').to_owned())
}

/// The POSIX errno WASI's `code` stands for.
fn errno(code: ErrorCode) -> i32 {
    use ErrorCode as E;
    match code {
        E::Access => libc::EACCES,
        E::WouldBlock => libc::EAGAIN,
        E::Already => libc::EALREADY,
        E::BadDescriptor => libc::EBADF,
        E::Busy => libc::EBUSY,
        E::Deadlock => libc::EDEADLK,
        E::Quota => libc::EDQUOT,
        E::Exist => libc::EEXIST,
        E::FileTooLarge => libc::EFBIG,
        E::IllegalByteSequence => libc::EILSEQ,
        E::InProgress => libc::EINPROGRESS,
        E::Interrupted => libc::EINTR,
        E::Invalid => libc::EINVAL,
        E::Io => libc::EIO,
        E::IsDirectory => libc::EISDIR,
        E::Loop => libc::ELOOP,
        E::TooManyLinks => libc::EMLINK,
        E::MessageSize => libc::EMSGSIZE,
        E::NameTooLong => libc::ENAMETOOLONG,
        E::NoDevice => libc::ENODEV,
        E::NoEntry => libc::ENOENT,
        E::NoLock => libc::ENOLCK,
        E::InsufficientMemory => libc::ENOMEM,
        E::InsufficientSpace => libc::ENOSPC,
        E::NotDirectory => libc::ENOTDIR,
        E::NotEmpty => libc::ENOTEMPTY,
        E::NotRecoverable => libc::ENOTRECOVERABLE,
        E::Unsupported => libc::ENOTSUP,
        E::NoTty => libc::ENOTTY,
        E::NoSuchDevice => libc::ENXIO,
        E::Overflow => libc::EOVERFLOW,
        E::NotPermitted => libc::EPERM,
        E::Pipe => libc::EPIPE,
        E::ReadOnly => libc::EROFS,
        E::InvalidSeek => libc::ESPIPE,
        E::TextFileBusy => libc::ETXTBSY,
        E::CrossDevice => libc::EXDEV,
    }
}
