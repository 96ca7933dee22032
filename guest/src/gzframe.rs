//! gzip members (RFC 1952) around flate2's raw deflate, checksummed with
//! [`crate::crc`] (so that the ccws component can have the host compute the
//! CRC): [`GzWriter`] writes one member, [`GzMember`] reads one.

use std::io::{self, BufRead, Read, Write};

use flate2::bufread::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use crate::crc::Crc32;

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;
/// "Unknown" operating system: the same header on every platform.
const OS_UNKNOWN: u8 = 255;

/// Writes one gzip member: no name, mtime 0, OS unknown, the header flate2's
/// `GzBuilder` writes, so archives are the same bytes as before this module.
pub struct GzWriter<W: Write> {
    deflate: DeflateEncoder<W>,
    crc: Crc32,
    header: Option<[u8; 10]>,
}

impl<W: Write> GzWriter<W> {
    /// Start a member into `out` at `level` (0-9). Nothing is written until
    /// the first write, flush or [`GzWriter::finish`].
    pub fn new(out: W, level: u32) -> Self {
        // XFL: 2 = best compression, 4 = fastest, 0 otherwise.
        let xfl = match level {
            9.. => 2,
            0 | 1 => 4,
            _ => 0,
        };
        GzWriter {
            deflate: DeflateEncoder::new(out, Compression::new(level)),
            crc: Crc32::default(),
            header: Some([MAGIC[0], MAGIC[1], DEFLATE, 0, 0, 0, 0, 0, xfl, OS_UNKNOWN]),
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if let Some(header) = self.header {
            // The encoder has produced nothing yet: its output starts after this.
            self.deflate.get_mut().write_all(&header)?;
            self.header = None;
        }
        Ok(())
    }

    /// Write the last deflate block and the trailer (CRC-32, length), and
    /// hand `out` back. Dropping a `GzWriter` unfinished writes no trailer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        let mut out = self.deflate.finish()?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        out.write_all(&trailer)?;
        Ok(out)
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_header()?;
        let n = self.deflate.write(data)?;
        self.crc.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_header()?;
        self.deflate.flush()
    }
}

/// Reads one gzip member from a `BufRead`, consuming exactly its bytes, so
/// that what follows (another member, padding, garbage) is left in the
/// reader. Every malformation is an `InvalidData` error (a truncation
/// `UnexpectedEof`) saying what was wrong.
pub struct GzMember<R: BufRead> {
    deflate: DeflateDecoder<R>,
    crc: Crc32,
    done: bool,
}

impl<R: BufRead> GzMember<R> {
    /// Read the member header from `input` (which must be at its first byte).
    pub fn new(mut input: R) -> io::Result<Self> {
        read_header(&mut input)?;
        Ok(GzMember {
            deflate: DeflateDecoder::new(input),
            crc: Crc32::default(),
            done: false,
        })
    }

    /// The reader, just past this member once it has been read to the end.
    pub fn into_inner(self) -> R {
        self.deflate.into_inner()
    }

    /// Check the trailer against what was decompressed.
    fn read_trailer(&mut self) -> io::Result<()> {
        let mut trailer = [0u8; 8];
        // flate2 reports the end of the deflate data both at its final block
        // and when the input ran out before it; the latter fails here.
        self.deflate
            .get_mut()
            .read_exact(&mut trailer)
            .map_err(|e| truncated(e, "the gzip stream is truncated"))?;
        let [c0, c1, c2, c3, n0, n1, n2, n3] = trailer;
        if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.sum() {
            return Err(invalid(
                "gzip CRC-32 mismatch: the compressed data is corrupt",
            ));
        }
        if u32::from_le_bytes([n0, n1, n2, n3]) != self.crc.amount() {
            return Err(invalid(
                "gzip length mismatch: the compressed data is corrupt",
            ));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for GzMember<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.deflate.read(buf)?;
        if n > 0 {
            self.crc.update(&buf[..n]);
            return Ok(n);
        }
        self.read_trailer()?;
        self.done = true;
        Ok(0)
    }
}

/// Read and check a member header, up to the first deflate byte.
fn read_header<R: BufRead>(r: &mut R) -> io::Result<()> {
    let trunc = |e| truncated(e, "the gzip header is truncated");
    let mut fixed = [0u8; 10];
    r.read_exact(&mut fixed).map_err(trunc)?;
    if fixed[..2] != MAGIC {
        return Err(invalid("not a gzip stream (bad magic bytes)"));
    }
    if fixed[2] != DEFLATE {
        return Err(invalid(format!(
            "unsupported gzip compression method {}",
            fixed[2]
        )));
    }
    let flags = fixed[3];
    if flags & RESERVED != 0 {
        return Err(invalid("invalid gzip header: reserved flag bits set"));
    }
    let mut crc = Crc32::default();
    crc.update(&fixed);
    if flags & FEXTRA != 0 {
        let mut len = [0u8; 2];
        r.read_exact(&mut len).map_err(trunc)?;
        crc.update(&len);
        skip(r, usize::from(u16::from_le_bytes(len)), &mut crc)?;
    }
    if flags & FNAME != 0 {
        skip_past_nul(r, &mut crc)?;
    }
    if flags & FCOMMENT != 0 {
        skip_past_nul(r, &mut crc)?;
    }
    if flags & FHCRC != 0 {
        let mut stored = [0u8; 2];
        r.read_exact(&mut stored).map_err(trunc)?;
        if u16::from_le_bytes(stored) != crc.sum() as u16 {
            return Err(invalid("gzip header checksum mismatch"));
        }
    }
    Ok(())
}

/// Skip `n` header bytes, adding them to `crc`.
fn skip<R: BufRead>(r: &mut R, mut n: usize, crc: &mut Crc32) -> io::Result<()> {
    while n > 0 {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Err(eof("the gzip header is truncated"));
        }
        let k = n.min(avail.len());
        crc.update(&avail[..k]);
        r.consume(k);
        n -= k;
    }
    Ok(())
}

/// Skip a NUL-terminated header field (name or comment), adding it to `crc`.
fn skip_past_nul<R: BufRead>(r: &mut R, crc: &mut Crc32) -> io::Result<()> {
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Err(eof("the gzip header is truncated"));
        }
        match avail.iter().position(|&b| b == 0) {
            Some(i) => {
                crc.update(&avail[..=i]);
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let k = avail.len();
                crc.update(avail);
                r.consume(k);
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn eof(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, message)
}

/// An `UnexpectedEof` from `read_exact` said plainly; other errors as they are.
fn truncated(e: io::Error, message: &str) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        eof(message)
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8], level: u32) -> Vec<u8> {
        let mut w = GzWriter::new(Vec::new(), level);
        for chunk in data.chunks(1000) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut m = GzMember::new(bytes)?;
        let mut out = Vec::new();
        m.read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn same_bytes_as_flate2s_gz_encoder() {
        let data = sample();
        for level in [0, 1, 6, 9] {
            let mut theirs = flate2::GzBuilder::new().write(Vec::new(), Compression::new(level));
            for chunk in data.chunks(1000) {
                theirs.write_all(chunk).unwrap();
            }
            assert_eq!(gz(&data, level), theirs.finish().unwrap(), "level {level}");
        }
        let empty = flate2::GzBuilder::new().write(Vec::new(), Compression::new(6));
        assert_eq!(gz(b"", 6), empty.finish().unwrap());
    }

    #[test]
    fn flate2_reads_ours_and_we_read_flate2s_with_every_header_field() {
        let data = sample();
        let ours = gz(&data, 6);
        let mut ours = flate2::read::GzDecoder::new(&ours[..]);
        let mut back = Vec::new();
        ours.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);

        let mut theirs = flate2::GzBuilder::new()
            .filename("name.tar")
            .comment("a comment")
            .extra(vec![1, 2, 3, 4])
            .mtime(12345)
            .write(Vec::new(), Compression::new(6));
        theirs.write_all(&data).unwrap();
        let mut bytes = theirs.finish().unwrap();
        assert_eq!(gunzip(&bytes).unwrap(), data);

        // The same with a header CRC (FHCRC), right and wrong: flate2 does
        // not write one, so add it (over the header, before the deflate data).
        let header_len = 10 + 2 + 4 + "name.tar\0".len() + "a comment\0".len();
        bytes[3] |= FHCRC;
        let hcrc = (crate::crc::crc32(0, &bytes[..header_len]) as u16).to_le_bytes();
        bytes.splice(header_len..header_len, hcrc);
        assert_eq!(gunzip(&bytes).unwrap(), data);
        bytes[header_len] ^= 1;
        let err = gunzip(&bytes).unwrap_err();
        assert!(err.to_string().contains("header checksum"), "{err}");
    }

    #[test]
    fn every_malformation_is_an_error() {
        let good = gz(&sample(), 6);
        let n = good.len();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "bad magic",
                [&[0x1f, 0x8c][..], &good[2..]].concat(),
                "magic",
            ),
            ("method", [&good[..2], &[7], &good[3..]].concat(), "method"),
            (
                "reserved flag",
                [&good[..3], &[0x20], &good[4..]].concat(),
                "reserved",
            ),
            ("short header", good[..6].to_vec(), "header is truncated"),
            (
                "name without NUL",
                [&good[..3], &[FNAME], &good[4..10], b"abc"].concat(),
                "header is truncated",
            ),
            ("truncated body", good[..n / 2].to_vec(), ""),
            ("no trailer", good[..n - 8].to_vec(), "truncated"),
            ("short trailer", good[..n - 3].to_vec(), "truncated"),
            (
                "crc",
                {
                    let mut b = good.clone();
                    b[n - 8] ^= 1;
                    b
                },
                "CRC-32",
            ),
            (
                "length",
                {
                    let mut b = good.clone();
                    b[n - 1] ^= 1;
                    b
                },
                "length",
            ),
        ];
        for (what, bytes, needle) in cases {
            let err = gunzip(&bytes).expect_err(what);
            assert!(
                err.to_string().contains(needle),
                "{what}: {err} (wanted {needle:?})"
            );
        }
    }

    #[test]
    fn a_member_consumes_exactly_its_own_bytes() {
        let data = b"first member".to_vec();
        let mut two = gz(&data, 6);
        two.extend_from_slice(b"REST");
        let mut m = GzMember::new(&two[..]).unwrap();
        let mut out = Vec::new();
        m.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(m.into_inner(), b"REST");
    }
}
