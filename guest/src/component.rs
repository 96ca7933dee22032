//! The WASI component glue: the WIT bindings (all of them live here), and
//! the exports over the core code, with the conversions of
//! [`crate::wit_conversions`].

use std::io::{self, Write};
use std::path::Path;

use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::types as core;

#[cfg(feature = "host-imports")]
wit_bindgen::generate!({
    path: "../wit",
    world: "archiver",
    with: {
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
    },
});

#[cfg(not(feature = "host-imports"))]
wit_bindgen::generate!({
    path: "../wit",
    world: "archiver-plain",
    with: {
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
    },
});

use ccws::archive::types as wit;
use exports::ccws::archive::archive::Guest;

crate::wit_conversions!(wit);

/// CRC-32 by the host (see `crate::crc`).
#[cfg(feature = "host-imports")]
pub(crate) fn host_crc32(crc: u32, data: &[u8]) -> u32 {
    ccws::archive::checksum::crc32(crc, data)
}

struct Component;

export!(Component);

impl Guest for Component {
    fn default_limits() -> wit::Limits {
        core::Limits::default().into()
    }

    fn pack(
        src: String,
        out: &OutputStream,
        options: wit::PackOptions,
    ) -> Result<wit::Report, wit::ArchiveError> {
        let (opts, mut host) = pack_options(options)?;
        // No buffer here: the gzip sink buffers already.
        let sink = StreamWriter(out);
        let result = crate::pack(Path::new(&src), sink, &opts, host.as_mut().map(|h| h as _));
        result.map(|(report, _)| report.into()).map_err(Into::into)
    }

    fn unpack(
        input: &InputStream,
        dest: String,
        options: wit::UnpackOptions,
    ) -> Result<wit::Report, wit::ArchiveError> {
        let (opts, mut host) = unpack_options(options)?;
        let reader = crate::io::ChunkReader::new(|max| read_chunk(input, max));
        crate::unpack::unpack_buffered(
            reader,
            Path::new(&dest),
            &opts,
            host.as_mut().map(|h| h as _),
        )
        .map(Into::into)
        .map_err(Into::into)
    }

    fn pack_file(
        src: String,
        archive: String,
        options: wit::PackOptions,
    ) -> Result<wit::Report, wit::ArchiveError> {
        let (opts, mut host) = pack_options(options)?;
        crate::pack_file(
            Path::new(&src),
            Path::new(&archive),
            &opts,
            host.as_mut().map(|h| h as _),
        )
        .map(Into::into)
        .map_err(Into::into)
    }

    fn unpack_file(
        archive: String,
        dest: String,
        options: wit::UnpackOptions,
    ) -> Result<wit::Report, wit::ArchiveError> {
        let (opts, mut host) = unpack_options(options)?;
        crate::unpack_file(
            Path::new(&archive),
            Path::new(&dest),
            &opts,
            host.as_mut().map(|h| h as _),
        )
        .map(Into::into)
        .map_err(Into::into)
    }
    fn pack_tar(
        src: String,
        out: &OutputStream,
        options: wit::PackOptions,
    ) -> Result<wit::Report, wit::ArchiveError> {
        let (opts, mut host) = pack_options(options)?;
        let sink = StreamWriter(out);
        crate::pack_tar(Path::new(&src), sink, &opts, host.as_mut().map(|h| h as _))
            .map(|(report, _)| report.into())
            .map_err(Into::into)
    }

    fn unpack_tar(
        input: &InputStream,
        dest: String,
        options: wit::UnpackOptions,
    ) -> Result<wit::Report, wit::ArchiveError> {
        let (opts, mut host) = unpack_options(options)?;
        let reader = crate::io::ChunkReader::new(|max| read_chunk(input, max));
        crate::unpack::unpack_tar_buffered(
            reader,
            Path::new(&dest),
            &opts,
            host.as_mut().map(|h| h as _),
        )
        .map(Into::into)
        .map_err(Into::into)
    }

    fn gzip(input: &InputStream, out: &OutputStream, level: u8) -> Result<u64, wit::ArchiveError> {
        let reader = crate::io::ChunkReader::new(|max| read_chunk(input, max));
        crate::gzip(reader, StreamWriter(out), level.into())
            .map(|(n, _)| n)
            .map_err(Into::into)
    }

    fn gunzip(
        input: &InputStream,
        out: &OutputStream,
        limits: wit::Limits,
    ) -> Result<u64, wit::ArchiveError> {
        let reader = crate::io::ChunkReader::new(|max| read_chunk(input, max));
        crate::gz::gunzip_buffered(reader, StreamWriter(out), &limits.into())
            .map(|(n, _)| n)
            .map_err(Into::into)
    }

    fn deflate_block(
        dictionary: Vec<u8>,
        block: Vec<u8>,
        level: u8,
        last: bool,
    ) -> Result<Vec<u8>, wit::ArchiveError> {
        crate::deflate_block(&dictionary, &block, u32::from(level), last).map_err(Into::into)
    }
}

struct HostFilter;

impl core::Filter for HostFilter {
    fn check(&mut self, rel: &str, kind: core::EntryKind) -> core::Verdict {
        #[cfg(feature = "host-imports")]
        let verdict = ccws::archive::filter::check(rel, kind.into()).into();
        #[cfg(not(feature = "host-imports"))]
        let verdict = {
            let _ = (rel, kind);
            core::Verdict::Keep
        };
        verdict
    }
}

fn pack_options(
    o: wit::PackOptions,
) -> Result<(core::PackOptions, Option<HostFilter>), wit::ArchiveError> {
    let (options, wanted) = pack_options_from_wit(o);
    Ok((options, host_filter(wanted)?))
}

fn unpack_options(
    o: wit::UnpackOptions,
) -> Result<(core::UnpackOptions, Option<HostFilter>), wit::ArchiveError> {
    let (options, wanted) = unpack_options_from_wit(o);
    Ok((options, host_filter(wanted)?))
}

/// The host filter, when asked for and this build has one.
fn host_filter(wanted: bool) -> Result<Option<HostFilter>, wit::ArchiveError> {
    if wanted && !cfg!(feature = "host-imports") {
        return Err(wit::ArchiveError::InvalidOptions(
            "host-filter is set, but this is the archiver-plain component, which has no host \
             filter; use exclude patterns, or the archiver component"
                .into(),
        ));
    }
    Ok(wanted.then_some(HostFilter))
}

/// Read up to `max` bytes from the host's input stream; `None` at its end.
fn read_chunk(input: &InputStream, max: usize) -> io::Result<Option<Vec<u8>>> {
    match input.blocking_read(max as u64) {
        Ok(chunk) => Ok(Some(chunk)),
        Err(StreamError::Closed) => Ok(None),
        Err(StreamError::LastOperationFailed(e)) => Err(io::Error::other(e.to_debug_string())),
    }
}

/// `io::Write` over a borrowed output stream: writes as much as the host's
/// budget allows per call, waiting when it is full; flush blocks until done.
struct StreamWriter<'a>(&'a OutputStream);

impl Write for StreamWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.0.check_write() {
                Ok(0) => self.0.subscribe().block(),
                Ok(n) => {
                    let n = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    self.0.write(&buf[..n]).map_err(stream_error)?;
                    return Ok(n);
                }
                Err(e) => return Err(stream_error(e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.blocking_flush().map_err(stream_error)
    }
}

fn stream_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(io::ErrorKind::BrokenPipe, "output stream closed"),
        StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
    }
}
