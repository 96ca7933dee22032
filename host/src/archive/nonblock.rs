//! The guest's `open-at`, without blocking.
//!
//! WASI's `open-at` has no `O_NONBLOCK`, and wasmtime-wasi 48 opens exactly
//! what it is asked to without it (`Dir::open_at` in its `filesystem.rs`
//! builds the open options from the WASI flags alone, and only looks at
//! what it opened afterwards). So a file that the agent swaps for a FIFO
//! between the guest's listing and its open blocked the guest in `open()`
//! until some process opened the FIFO for writing: forever, and past the
//! CPU budget, which cannot interrupt a system call. The same held for a
//! directory swapped for a FIFO (`open-at` with the `directory` flag opens
//! first and checks afterwards).
//!
//! This module defines `[method]descriptor.open-at` again, over the one
//! wasmtime-wasi links: the same translation of the WASI flags, the same
//! permission checks and the same path resolution, kept beneath the
//! directory (`cap-primitives`, the crate wasmtime-wasi's own copy comes
//! from), with two flags added: `O_NONBLOCK`, under which opening a FIFO
//! returns at once (and which regular files and directories ignore), and
//! `O_DIRECTORY` when the guest asks for a directory, so the kernel refuses
//! anything else before opening it. What is opened is handed to the guest
//! as wasmtime-wasi would hand it; the guest's pack then sees a FIFO,
//! socket or device for what it is, and leaves it out without reading it.

use std::path::Path;

use cap_primitives::fs::{FollowSymlinks, OpenOptions, OpenOptionsExt};
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::filesystem::{Descriptor, Dir, File};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::FsError;
use wasmtime_wasi::OpenMode;

use super::sandbox::Sandbox;
use super::BLOCKING_FS;

/// The `wasi:filesystem/types` instance wasmtime-wasi 48 links (its WIT
/// package version); the guest's imports of older 0.2 versions resolve to it.
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Replace wasmtime-wasi's `open-at` in `linker` (which must already hold
/// WASI) with [`open_at`].
pub(crate) fn link(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = linker.instance(TYPES)?.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, Sandbox>,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            let opened = open_at(store.data_mut(), fd, path_flags, &path, oflags, flags);
            Box::new(async move { Ok((opened,)) })
        },
    );
    linker.allow_shadowing(false);
    defined
}

/// `descriptor.open-at` as wasmtime-wasi does it, but never blocking on a
/// FIFO (see the module's documentation).
fn open_at(
    sandbox: &mut Sandbox,
    fd: Resource<Descriptor>,
    path_flags: PathFlags,
    path: &str,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> Result<Resource<Descriptor>, ErrorCode> {
    let dir = match sandbox.table.get(&fd) {
        Ok(Descriptor::Dir(dir)) => dir.clone(),
        Ok(Descriptor::File(_)) => return Err(ErrorCode::NotDirectory),
        Err(_) => return Err(ErrorCode::BadDescriptor),
    };
    let (options, mode, creates) = options(path_flags, oflags, flags)?;
    if dir.perms.write_not_permitted() && (creates || mode.contains(OpenMode::WRITE)) {
        return Err(ErrorCode::NotPermitted);
    }
    let opened = cap_primitives::fs::open(&dir.dir, Path::new(path), &options).map_err(code)?;
    let is_dir = opened.metadata().map_err(code)?.is_dir();
    let descriptor = if is_dir {
        Descriptor::Dir(Dir::new(opened, dir.perms, mode, BLOCKING_FS))
    } else if oflags.contains(OpenFlags::DIRECTORY) {
        return Err(ErrorCode::NotDirectory);
    } else {
        Descriptor::File(File::new(opened, dir.perms, mode, BLOCKING_FS))
    };
    sandbox
        .table
        .push(descriptor)
        .map_err(|_| ErrorCode::InsufficientMemory)
}

/// The open options for WASI's flags (as wasmtime-wasi 48 builds them),
/// plus `O_NONBLOCK` and, for a directory, `O_DIRECTORY`; the open mode to
/// record; and whether the open may create a file.
fn options(
    path_flags: PathFlags,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> Result<(OpenOptions, OpenMode, bool), ErrorCode> {
    let mut options = OpenOptions::new();
    let mut mode = OpenMode::empty();
    let creates = oflags.contains(OpenFlags::CREATE);
    if creates {
        if oflags.contains(OpenFlags::EXCLUSIVE) {
            options.create_new(true);
        } else {
            options.create(true);
        }
        options.write(true);
        mode |= OpenMode::WRITE;
    }
    if oflags.contains(OpenFlags::TRUNCATE) {
        options.truncate(true).write(true);
        mode |= OpenMode::WRITE;
    }
    if flags.contains(DescriptorFlags::READ) {
        options.read(true);
        mode |= OpenMode::READ;
    }
    if flags.contains(DescriptorFlags::WRITE) {
        options.write(true);
        mode |= OpenMode::WRITE;
    } else {
        // Opened for reading at least, as wasmtime-wasi does: the
        // permissions decide what may be done with it.
        options.read(true);
        mode |= OpenMode::READ;
    }
    // The public face of these is `cap-fs-ext`'s extension traits, which
    // call these same methods.
    options._cap_fs_ext_follow(if path_flags.contains(PathFlags::SYMLINK_FOLLOW) {
        FollowSymlinks::Yes
    } else {
        FollowSymlinks::No
    });
    // Not supported by wasmtime-wasi either.
    if flags.intersects(
        DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC,
    ) {
        return Err(ErrorCode::Unsupported);
    }
    let mut extra = libc::O_NONBLOCK;
    if oflags.contains(OpenFlags::DIRECTORY) {
        if oflags.intersects(OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE) {
            return Err(ErrorCode::Invalid);
        }
        extra |= libc::O_DIRECTORY;
    }
    options.custom_flags(extra);
    Ok((options, mode, creates))
}

/// An OS error as WASI's error code, as wasmtime-wasi converts it.
fn code(e: std::io::Error) -> ErrorCode {
    FsError::from(e).downcast().unwrap_or(ErrorCode::Io)
}
