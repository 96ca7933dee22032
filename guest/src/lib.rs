#![warn(missing_docs)]
//! The ccws archive core: deterministic tar.gz packing and hardened unpacking.
//!
//! Built for `wasm32-wasip2` this crate is the ccws WASI component (see
//! `wit/archive.wit`); built natively it is the same code as a library, used
//! by benchmarks and unit tests.

mod crc;
mod destfs;
pub mod ending;
mod fsio;
pub mod gz;
pub mod gzframe;
pub mod io;
mod oserror;
pub mod pack;
pub mod paths;
pub mod pattern;
mod srcfs;
pub mod types;
pub mod unpack;
#[cfg(target_os = "wasi")]
mod wasifs;
mod witconv;

#[cfg(target_arch = "wasm32")]
mod component;

#[cfg(test)]
mod tests;

pub use ending::{Ending, Producer};
pub use gz::{deflate_block, gunzip, gzip};
pub use pack::{pack, pack_tar};
pub use pattern::Patterns;
pub use types::*;
pub use unpack::{unpack, unpack_tar};

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// Pack directory `src` into a new archive file (replaced if it exists).
/// The archive is written beside it and renamed into place, so a failed
/// pack leaves an existing archive as it was and no partial file behind.
pub fn pack_file(
    src: &Path,
    archive: &Path,
    options: &PackOptions,
    filter: Option<&mut dyn Filter>,
) -> Result<Report, ArchiveError> {
    let io_error = |e: std::io::Error| ArchiveError::Io {
        path: archive.display().to_string(),
        message: oserror::describe(&e),
    };
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
    let partial = archive.with_file_name(format!(".{name}.ccws-partial"));
    // An archive written inside the tree it packs leaves itself out (half
    // written), and an older copy of itself.
    let mut options = options.clone();
    for own in [&partial, archive] {
        if let Some(rel) = paths::relative_to(src, own) {
            options.exclude.push(Patterns::literal(&rel));
        }
    }
    let file = File::create(&partial).map_err(io_error)?;
    let out = BufWriter::with_capacity(256 * 1024, io::PositionalWriter::new(file));
    let packed = pack(src, out, &options, filter).map_err(|e| match e {
        ArchiveError::Stream { message, .. } => ArchiveError::Io {
            path: archive.display().to_string(),
            message,
        },
        e => e,
    });
    match packed {
        Ok((report, out)) => {
            drop(out);
            std::fs::rename(&partial, archive).map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                io_error(e)
            })?;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Unpack archive file `archive` into directory `dest` (created if missing).
pub fn unpack_file(
    archive: &Path,
    dest: &Path,
    options: &UnpackOptions,
    filter: Option<&mut dyn Filter>,
) -> Result<Report, ArchiveError> {
    let file = File::open(archive).map_err(|e| ArchiveError::Io {
        path: archive.display().to_string(),
        message: oserror::describe(&e),
    })?;
    unpack(io::PositionalReader::new(file), dest, options, filter).map_err(|e| match e {
        ArchiveError::Stream { message, .. } => ArchiveError::Io {
            path: archive.display().to_string(),
            message,
        },
        e => e,
    })
}
