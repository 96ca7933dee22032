//! Crafting hostile tar.gz archives byte by byte.
//!
//! The `tar` crate refuses to write most of what an attacker would send (`..`
//! names, wrong checksums, size fields that disagree), so archives are built
//! here from raw 512-byte headers: [`Header`] fills the ustar fields and
//! computes (or deliberately breaks) the checksum, [`Tar`] strings headers and
//! bodies together, and [`gzip`] / [`GzStream`] compress the result, the
//! latter lazily so that gigabyte-sized bombs never sit in memory.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::Compression;

/// The tar block size.
pub const BLOCK: usize = 512;

/// Entry type flags (the `typeflag` byte).
pub mod kind {
    /// A regular file.
    pub const FILE: u8 = b'0';
    /// A hard link.
    pub const HARD_LINK: u8 = b'1';
    /// A symbolic link.
    pub const SYMLINK: u8 = b'2';
    /// A character device.
    pub const CHAR: u8 = b'3';
    /// A block device.
    pub const BLOCK: u8 = b'4';
    /// A directory.
    pub const DIR: u8 = b'5';
    /// A FIFO.
    pub const FIFO: u8 = b'6';
    /// A PAX extended header for the next entry.
    pub const PAX: u8 = b'x';
    /// A GNU long name for the next entry.
    pub const GNU_LONG_NAME: u8 = b'L';
    /// A GNU volume header.
    pub const GNU_VOLUME: u8 = b'V';
}

/// One raw 512-byte tar header.
#[derive(Clone)]
pub struct Header {
    block: [u8; BLOCK],
    bad_checksum: bool,
}

impl Header {
    /// A ustar header: `name` (at most 100 bytes, stored verbatim), entry type
    /// `kind`, size `size`, mode 0644 (0755 for directories), owner 0, mtime
    /// 1,000,000,000.
    pub fn new(kind: u8, name: impl AsRef<[u8]>, size: u64) -> Self {
        let mut h = Header {
            block: [0; BLOCK],
            bad_checksum: false,
        };
        h.put(0, 100, name.as_ref());
        h.put_octal(
            100,
            8,
            if kind == self::kind::DIR {
                0o755
            } else {
                0o644
            },
        );
        h.put_octal(108, 8, 0);
        h.put_octal(116, 8, 0);
        h.put_octal(124, 12, size);
        h.put_octal(136, 12, 1_000_000_000);
        h.block[156] = kind;
        h.put(257, 6, b"ustar\0");
        h.put(263, 2, b"00");
        h
    }

    /// A regular file header.
    pub fn file(name: impl AsRef<[u8]>, size: u64) -> Self {
        Self::new(kind::FILE, name, size)
    }

    /// A directory header.
    pub fn dir(name: impl AsRef<[u8]>) -> Self {
        Self::new(kind::DIR, name, 0)
    }

    /// A symlink or hard link header pointing at `target`.
    pub fn link(kind: u8, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut h = Self::new(kind, name, 0);
        h.put(157, 100, target.as_ref());
        h
    }

    /// Set the mode field.
    pub fn mode(mut self, mode: u32) -> Self {
        self.put_octal(100, 8, mode.into());
        self
    }

    /// Set the size field to exactly these bytes (e.g. garbage, or a size the
    /// body does not have).
    pub fn raw_size(mut self, field: &[u8]) -> Self {
        self.put(124, 12, field);
        self
    }

    /// Set the ustar `prefix` field (joined to the name with `/`).
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.put(345, 155, prefix.as_ref());
        self
    }

    /// Store a checksum that does not match the header.
    pub fn bad_checksum(mut self) -> Self {
        self.bad_checksum = true;
        self
    }

    /// The header as written: checksum computed (and broken if asked).
    pub fn to_bytes(&self) -> [u8; BLOCK] {
        let mut b = self.block;
        b[148..156].fill(b' ');
        let mut sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        if self.bad_checksum {
            sum += 1;
        }
        let field = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(field.as_bytes());
        b
    }

    fn put(&mut self, at: usize, len: usize, value: &[u8]) {
        assert!(
            value.len() <= len,
            "field at {at} is {len} bytes, value is {}",
            value.len()
        );
        self.block[at..at + len].fill(0);
        self.block[at..at + value.len()].copy_from_slice(value);
    }

    fn put_octal(&mut self, at: usize, len: usize, value: u64) {
        let s = format!("{value:0width$o}\0", width = len - 1);
        assert_eq!(s.len(), len, "{value} does not fit in {len} octal bytes");
        self.block[at..at + len].copy_from_slice(s.as_bytes());
    }
}

/// One PAX record, `"<len> key=value\n"` with the length counting itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    assert_eq!(out.len(), len);
    out
}

/// An uncompressed tar stream under construction.
#[derive(Default, Clone)]
pub struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    /// An empty stream.
    pub fn new() -> Self {
        Tar::default()
    }

    /// Append a header and a body, padding the body to a whole block. The
    /// body need not match the header's size (that is the point).
    pub fn entry(mut self, header: Header, body: &[u8]) -> Self {
        self.buf.extend_from_slice(&header.to_bytes());
        self.buf.extend_from_slice(body);
        self.pad();
        self
    }

    /// A regular file with `data` and a matching size.
    pub fn file(self, name: impl AsRef<[u8]>, data: &[u8]) -> Self {
        self.entry(Header::file(name, data.len() as u64), data)
    }

    /// A directory.
    pub fn dir(self, name: impl AsRef<[u8]>) -> Self {
        self.entry(Header::dir(name), &[])
    }

    /// A symlink `name -> target`.
    pub fn symlink(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.entry(Header::link(kind::SYMLINK, name, target), &[])
    }

    /// A hard link `name` to `target`.
    pub fn hard_link(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.entry(Header::link(kind::HARD_LINK, name, target), &[])
    }

    /// A PAX extended header (type `x`) with these records, describing the
    /// next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.entry(
            Header::new(kind::PAX, "PaxHeaders/x", body.len() as u64),
            &body,
        )
    }

    /// A GNU long-name entry (type `L`) carrying `name` (NUL-terminated) for
    /// the next entry.
    pub fn gnu_long_name(self, name: &[u8]) -> Self {
        let mut body = name.to_vec();
        body.push(0);
        let h = Header::new(kind::GNU_LONG_NAME, "././@LongLink", body.len() as u64);
        self.entry(h, &body)
    }

    /// Append raw bytes, unpadded.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The stream with its end-of-archive marker (two zero blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0; 2 * BLOCK]);
        self.buf
    }

    /// The stream as it is, with no end-of-archive marker.
    pub fn unterminated(self) -> Vec<u8> {
        self.buf
    }

    fn pad(&mut self) {
        let rem = self.buf.len() % BLOCK;
        if rem != 0 {
            self.buf.resize(self.buf.len() + BLOCK - rem, 0);
        }
    }
}

/// gzip `data` (default level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A reader of `n` zero bytes.
pub fn zeros(n: u64) -> io::Take<io::Repeat> {
    io::repeat(0).take(n)
}

/// A tar.gz compressed lazily from a reader of its uncompressed bytes, so
/// that an archive of gigabytes costs only what the reader actually pulls.
/// It is also an [`tokio::io::AsyncRead`] (compressing inline, a few hundred
/// KiB per poll), to feed `Archiver::unpack` directly.
pub struct GzStream<R: Read> {
    enc: flate2::read::GzEncoder<R>,
}

impl<R: Read> GzStream<R> {
    /// Compress `inner` at gzip level 1 (fast: the point is size, not ratio).
    pub fn new(inner: R) -> Self {
        GzStream {
            enc: flate2::read::GzEncoder::new(inner, Compression::fast()),
        }
    }
}

impl<R: Read> Read for GzStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.enc.read(buf)
    }
}

impl<R: Read + Unpin> tokio::io::AsyncRead for GzStream<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.enc.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_the_tar_crate() {
        let bytes = Tar::new()
            .file("a.txt", b"hello")
            .dir("d/")
            .symlink("l", "a.txt")
            .pax(&[("path", b"long/name")])
            .file("short", b"x")
            .finish();
        let mut ar = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "d/", "l", "long/name"]);
    }

    #[test]
    fn bad_checksum_is_rejected_by_the_tar_crate() {
        let bytes = Tar::new()
            .entry(Header::file("a", 1).bad_checksum(), b"x")
            .finish();
        let mut ar = tar::Archive::new(&bytes[..]);
        let err = ar.entries().unwrap().next().unwrap().err().unwrap();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        let r = pax_record("path", &[b'a'; 95]);
        assert_eq!(r.len(), 105);
        assert!(r.starts_with(b"105 path="));
    }
}
