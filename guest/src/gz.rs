//! gzip and gunzip of a byte stream on its own, so that a host can run the
//! tar stage ([`crate::pack_tar`], [`crate::unpack_tar`]) and the compression
//! stage in two sandbox instances at once, as `tar | gzip` does in two
//! processes.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use crate::gzframe::{self, check_level, GzWriter, BLOCK};
use crate::io::{Blame, MultiGz, Tracked, Tripped};
use crate::types::{ArchiveError, Limits};

/// The size of the gzip stages' buffers.
pub(crate) const BUFFER: usize = 256 * 1024;

/// What `pack` and `gzip` write through: the blocked gzip writer over a
/// buffered, tracked output.
pub(crate) type GzSink<W> = GzWriter<BufWriter<Tracked<W>>>;

/// Start one gzip member into `out` (no name, mtime 0: the same header on
/// every path), recording `out`'s own failures in `blame`. A sink dropped
/// without [`finish_gz`] leaves no trailer: a failure never ends as a
/// complete-looking gzip.
pub(crate) fn gz_sink<W: Write>(out: W, level: u32, blame: &Blame) -> GzSink<W> {
    GzWriter::new(
        BufWriter::with_capacity(BUFFER, Tracked::new(out, blame.clone())),
        level,
    )
}

/// Write the last chunk and the gzip trailer, flush, and hand `out` back.
pub(crate) fn finish_gz<W: Write>(sink: GzSink<W>, blame: &Blame) -> Result<W, ArchiveError> {
    let fail = |e| blame.stream_error(e, "");
    let buffered = sink.finish().map_err(fail)?;
    let mut tracked = buffered.into_inner().map_err(|e| fail(e.into_error()))?;
    tracked.flush().map_err(fail)?;
    Ok(tracked.into_inner())
}

/// Compress all of `input` as one gzip member into `out`: the same header as
/// [`crate::pack`] writes (no name, mtime 0), so `pack_tar` then `gzip`
/// gives the same bytes as `pack`. Returns the bytes read and `out`, flushed.
pub fn gzip<R: Read, W: Write>(input: R, out: W, level: u32) -> Result<(u64, W), ArchiveError> {
    check_level(level)?;
    let (read_blame, write_blame) = (Blame::default(), Blame::default());
    let mut input = Tracked::new(input, read_blame.clone());
    let mut sink = gz_sink(out, level, &write_blame);
    let mut buf = vec![0; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The input failed (e.g. the tar stage stopped): the sink is
            // dropped unfinished, with no trailer.
            Err(e) => return Err(read_blame.stream_error(e, "")),
        };
        sink.write_all(&buf[..n])
            .map_err(|e| write_blame.stream_error(e, ""))?;
        total += n as u64;
    }
    Ok((total, finish_gz(sink, &write_blame)?))
}

/// Decompress the gzip stream `input` (one or more members, then optional
/// zero padding, as [`crate::unpack`] accepts) into `out`, under `limits`'
/// compression-ratio guard (the limits on what the tar holds are the tar
/// stage's). A malformed input is a `Corrupt` error, a failing `input` or
/// `out` a `Stream` error, the guard a `LimitExceeded` one; none names an
/// entry (this stage sees no tar). Returns the bytes written and `out`,
/// flushed.
pub fn gunzip<R: Read, W: Write>(
    input: R,
    out: W,
    limits: &Limits,
) -> Result<(u64, W), ArchiveError> {
    gunzip_buffered(BufReader::with_capacity(BUFFER, input), out, limits)
}

/// [`gunzip`] of an input that buffers itself (the component's chunks of
/// an input stream), decompressed straight from its buffer.
pub fn gunzip_buffered<R: BufRead, W: Write>(
    input: R,
    out: W,
    limits: &Limits,
) -> Result<(u64, W), ArchiveError> {
    let (read_blame, write_blame) = (Blame::default(), Blame::default());
    let tripped = Tripped::default();
    let mut gz = MultiGz::guarded(
        Tracked::new(input, read_blame.clone()),
        limits,
        tripped.clone(),
    );
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
                if read_blame.get().is_some() {
                    return Err(read_blame.stream_error(e, ""));
                }
                return Err(tripped
                    .error(limits, "")
                    .unwrap_or_else(|| ArchiveError::Corrupt {
                        entry: String::new(),
                        message: e.to_string(),
                    }));
            }
        };
        // Passed on at once, not held for a fuller buffer: the input may
        // stall, and the next stage must see everything inflated so far
        // (it may fail on it, and should not wait for more to do so).
        out.write_all(&buf[..n])
            .map_err(|e| write_blame.stream_error(e, ""))?;
        total += n as u64;
    }
    out.flush().map_err(|e| write_blame.stream_error(e, ""))?;
    Ok((total, out.into_inner()))
}

/// One block of the blocked deflate stream every gzip member here is made
/// of (see [`crate::gzframe::BLOCK`]): what the `deflate-block` export
/// returns.
pub fn deflate_block(
    dictionary: &[u8],
    block: &[u8],
    level: u32,
    last: bool,
) -> Result<Vec<u8>, ArchiveError> {
    check_level(level)?;
    if block.len() > BLOCK {
        return Err(ArchiveError::InvalidOptions(format!(
            "a deflate block holds at most {BLOCK} bytes of input, not {}",
            block.len()
        )));
    }
    let mut out = Vec::new();
    gzframe::deflate_block(level, dictionary, block, last, &mut out)
        // Not the caller's options (checked above): the compressor itself.
        .map_err(|e| ArchiveError::Stream {
            entry: String::new(),
            message: format!("deflate failed: {e}"),
        })?;
    Ok(out)
}
