//! gzip and gunzip of a byte stream on its own, so that a host can run the
//! tar stage ([`crate::pack_tar`], [`crate::unpack_tar`]) and the compression
//! stage in two sandbox instances at once, as `tar | gzip` does in two
//! processes.

use std::io::{self, BufReader, Read, Write};

use flate2::{Compression, GzBuilder};

use crate::io::{Blame, FixedChunks, MultiGz, Tracked};
use crate::pack::GZIP_CHUNK;
use crate::types::ArchiveError;

const BUFFER: usize = 256 * 1024;

/// Compress all of `input` as one gzip member into `out`: the same header as
/// [`crate::pack`] writes (no name, mtime 0), so `pack_tar` then `gzip`
/// gives the same bytes as `pack`. Returns the bytes read and `out`, flushed.
pub fn gzip<R: Read, W: Write>(input: R, out: W, level: u32) -> Result<(u64, W), ArchiveError> {
    if level > 9 {
        return Err(ArchiveError::InvalidOptions(format!(
            "gzip level {level} is out of range 0-9"
        )));
    }
    let (read_blame, write_blame) = (Blame::default(), Blame::default());
    let mut input = Tracked::new(input, read_blame.clone());
    let gz = GzBuilder::new().write(
        io::BufWriter::with_capacity(BUFFER, Tracked::new(out, write_blame.clone())),
        Compression::new(level),
    );
    // Pipe reads are split by timing; the encoder must see the same writes
    // as `pack` gives it for the same tar.
    let mut chunked = FixedChunks::new(gz, GZIP_CHUNK);
    let stream = |e: io::Error, blame: &Blame| ArchiveError::Stream {
        entry: String::new(),
        message: blame.get().unwrap_or_else(|| e.to_string()),
    };
    let mut buf = vec![0; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream(e, &read_blame)),
        };
        chunked
            .write_all(&buf[..n])
            .map_err(|e| stream(e, &write_blame))?;
        total += n as u64;
    }
    let gz = chunked.finish().map_err(|e| stream(e, &write_blame))?;
    let buffered = gz.finish().map_err(|e| stream(e, &write_blame))?;
    let mut tracked = buffered
        .into_inner()
        .map_err(|e| stream(e.into_error(), &write_blame))?;
    tracked.flush().map_err(|e| stream(e, &write_blame))?;
    Ok((total, tracked.into_inner()))
}

/// Decompress the gzip stream `input` (one or more members, then optional
/// zero padding, as [`crate::unpack`] accepts) into `out`. A malformed input
/// is a `Corrupt` error, a failing `input` or `out` a `Stream` error; neither
/// names an entry (this stage sees no tar). Returns the bytes written and
/// `out`, flushed.
pub fn gunzip<R: Read, W: Write>(input: R, out: W) -> Result<(u64, W), ArchiveError> {
    let (read_blame, write_blame) = (Blame::default(), Blame::default());
    let mut gz = MultiGz::new(BufReader::with_capacity(
        BUFFER,
        Tracked::new(input, read_blame.clone()),
    ));
    let mut out = Tracked::new(out, write_blame.clone());
    let mut buf = vec![0; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Deliver what was decompressed before the failure, so the
                // next stage reaches the same entry it would have reached
                // reading this stream itself.
                let _ = out.flush();
                return Err(match read_blame.get() {
                    Some(message) => ArchiveError::Stream {
                        entry: String::new(),
                        message,
                    },
                    None => ArchiveError::Corrupt {
                        entry: String::new(),
                        message: e.to_string(),
                    },
                });
            }
        };
        out.write_all(&buf[..n]).map_err(|e| ArchiveError::Stream {
            entry: String::new(),
            message: write_blame.get().unwrap_or_else(|| e.to_string()),
        })?;
        total += n as u64;
    }
    out.flush().map_err(|e| ArchiveError::Stream {
        entry: String::new(),
        message: write_blame.get().unwrap_or_else(|| e.to_string()),
    })?;
    Ok((total, out.into_inner()))
}
