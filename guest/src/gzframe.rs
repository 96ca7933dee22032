//! The blocked deflate format, in one place: every gzip member ccws writes
//! is a run of independently deflated blocks (see [`BLOCK`]).
//!
//! The public surface is what a writer that deflates the blocks elsewhere
//! needs (ccws's multi-instance gzip stage, the benchmark's threads):
//! [`Member`] (the header, each block's dictionary, the trailer),
//! [`deflate_block`], and [`crc32`], the checksum the trailer holds (which
//! the host also computes for the component, through its `checksum`
//! import). Inside the crate, [`GzWriter`] writes a member itself and
//! [`GzMember`] reads any gzip member (RFC 1952) around flate2's raw
//! deflate.

use std::io::{self, BufRead, Read, Write};

use flate2::bufread::DeflateDecoder;
use flate2::{Compress, Compression, FlushCompress, Status};

use crate::crc::Crc32;
use crate::types::ArchiveError;

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;
/// "Unknown" operating system: the same header on every platform.
const OS_UNKNOWN: u8 = 255;

/// Input bytes per deflate block. Every gzip member ccws writes is a run of
/// blocks of this many input bytes (the last one shorter), each compressed
/// on its own, primed with the 32 KiB of input before it, and ended on a
/// byte boundary (as pigz does). So a host can compress the blocks of one
/// stream in several sandbox instances at once (`deflate-block`) and get
/// the same bytes as one instance, and the bytes never depend on how the
/// input was split into writes. (The cost in size against one stream is
/// in BENCHMARKS.md.)
pub const BLOCK: usize = 1 << 20;
/// The deflate window: how much earlier input a block may refer back to.
pub const WINDOW: usize = 32 * 1024;
/// The most bytes of input per byte of output any block is written with:
/// a block that deflates smaller (long runs of one byte, such as a file of
/// zeros, deflate at up to about 1032:1) is preceded by as many empty
/// stored blocks as make up the difference. So an archive ccws writes never
/// inflates at more than this ratio, and the unpack's compression-ratio
/// guard (1000:1 by default, see `Limits::max_inflate_ratio`) never mistakes
/// one for a gzip bomb, at a cost of at most 4 KiB per MiB of such input.
pub const MAX_RATIO: usize = 256;
/// An empty, non-final stored deflate block starting on a byte boundary
/// (header bits 000, padding to the byte, LEN 0, NLEN 0xffff): valid
/// anywhere between blocks, it inflates to nothing.
const EMPTY_STORED: [u8; 5] = [0x00, 0x00, 0x00, 0xff, 0xff];

/// The CRC-32 (IEEE, as gzip uses) of `data`, continuing from `crc` (0 to
/// start): the checksum of a member's trailer. Natively, and for the
/// component through the host's `checksum` import, it is `crc32fast`'s
/// carry-less-multiply kernel.
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    crate::crc::crc32(crc, data)
}

/// Refuse a gzip level outside 0-9.
pub(crate) fn check_level(level: u32) -> Result<(), ArchiveError> {
    if level > 9 {
        return Err(ArchiveError::InvalidOptions(format!(
            "gzip level {level} is out of range 0-9"
        )));
    }
    Ok(())
}

/// The gzip member header ccws writes: no name, mtime 0, OS unknown (the
/// header flate2's `GzBuilder` writes).
fn header(level: u32) -> [u8; 10] {
    // XFL: 2 = best compression, 4 = fastest, 0 otherwise.
    let xfl = match level {
        9.. => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [MAGIC[0], MAGIC[1], DEFLATE, 0, 0, 0, 0, 0, xfl, OS_UNKNOWN]
}

/// One gzip member of the blocked format, as a writer puts it together:
/// [`Member::header`], then for each block in order (every one [`BLOCK`]
/// bytes of input but the last, which may be empty) its
/// [`deflate_block`] with the dictionary [`Member::next_block`] gives, then
/// [`Member::trailer`]. The bytes are the same whoever deflates the blocks.
#[derive(Debug)]
pub struct Member {
    level: u32,
    crc: Crc32,
    dictionary: Vec<u8>,
}

impl Member {
    /// A member at gzip `level` (0-9; anything else is `InvalidOptions`).
    pub fn new(level: u32) -> Result<Self, ArchiveError> {
        check_level(level)?;
        Ok(Self::at(level))
    }

    /// A member at `level`, already checked.
    fn at(level: u32) -> Self {
        Member {
            level,
            crc: Crc32::default(),
            dictionary: Vec::new(),
        }
    }

    /// The gzip level.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// The member's header.
    pub fn header(&self) -> [u8; 10] {
        header(self.level)
    }

    /// Count the next `block` in, and return the dictionary to deflate it
    /// with: the last [`WINDOW`] bytes of input before it.
    pub fn next_block(&mut self, block: &[u8]) -> Vec<u8> {
        self.crc.update(block);
        let tail = block[block.len().saturating_sub(WINDOW)..].to_vec();
        std::mem::replace(&mut self.dictionary, tail)
    }

    /// The member's trailer, after the last block: the CRC-32 and length
    /// (mod 2^32) of all input.
    pub fn trailer(&self) -> [u8; 8] {
        let mut t = [0u8; 8];
        t[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        t[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        t
    }
}

/// Append the raw deflate of `block` at `level` to `out`, primed with
/// `dictionary` (the input just before `block`; only its last [`WINDOW`]
/// bytes are used), and preceded by empty stored blocks if it would
/// otherwise inflate at more than [`MAX_RATIO`]. Unless `last`, the output
/// ends with an empty stored block, on a byte boundary, so the next
/// block's output can follow it; the last block ends the deflate stream.
pub fn deflate_block(
    level: u32,
    dictionary: &[u8],
    block: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let start = out.len();
    deflate_into(level, dictionary, block, last, out)?;
    let least = block.len().div_ceil(MAX_RATIO);
    let short = least.saturating_sub(out.len() - start);
    if short > 0 {
        let pad = short.div_ceil(EMPTY_STORED.len()) * EMPTY_STORED.len();
        out.splice(start..start, EMPTY_STORED.iter().copied().cycle().take(pad));
    }
    Ok(())
}

/// [`deflate_block`] without the padding.
fn deflate_into(
    level: u32,
    dictionary: &[u8],
    block: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    // A new compressor for every block: one reset after earlier blocks can
    // deflate differently (zlib-rs keeps stale window bytes that its match
    // search reads), and a block must come out the same whichever instance,
    // and whatever history, compresses it.
    let c = &mut Compress::new(Compression::new(level), false);
    let dictionary = &dictionary[dictionary.len().saturating_sub(WINDOW)..];
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Room for all of it in one call: zlib-rs's output depends on where a
    // full output buffer makes it stop and resume, and the bytes must not
    // depend on the buffer a caller brings.
    out.reserve(bound(block.len()));
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(block.len() / 2 + 64 * 1024);
        }
        let done = c.total_in() as usize;
        let status = c
            .compress_vec(&block[done..], out, flush)
            .map_err(io::Error::other)?;
        // A flush is complete once all input is in and output space is left
        // over; the last block once the stream has ended.
        match status {
            Status::StreamEnd => return Ok(()),
            _ if !last && c.total_in() as usize == block.len() && out.len() < out.capacity() => {
                return Ok(())
            }
            _ => {}
        }
    }
}

/// The most the deflate of `len` bytes can take at any level, sync flush
/// included: zlib's `deflateBound` for a raw stream plus zlib-ng's level-1
/// overhead (its quick strategy spends up to 9 bits on a byte).
fn bound(len: usize) -> usize {
    len + (len >> 3) + (len >> 12) + (len >> 14) + (len >> 25) + 64
}

/// Writes one gzip member as a blocked deflate stream (see [`BLOCK`]):
/// the same bytes whatever the write sizes, and the same bytes as the
/// host's multi-instance gzip stage.
pub(crate) struct GzWriter<W: Write> {
    out: W,
    /// Input of the current block.
    block: Vec<u8>,
    member: Member,
    compressed: Vec<u8>,
    /// Whether the header is out.
    started: bool,
}

impl<W: Write> GzWriter<W> {
    /// Start a member into `out` at `level` (checked already: 0-9).
    /// Nothing is written until a block is full or [`GzWriter::finish`] is
    /// called.
    pub(crate) fn new(out: W, level: u32) -> Self {
        GzWriter {
            out,
            block: Vec::with_capacity(BLOCK),
            member: Member::at(level),
            compressed: Vec::new(),
            started: false,
        }
    }

    /// Checksum and compress the current block, and write it out.
    fn emit(&mut self, last: bool) -> io::Result<()> {
        if !self.started {
            self.out.write_all(&self.member.header())?;
            self.started = true;
        }
        // The CRC once per block, not per write: in the component each
        // update is a call to the host, and tar writes 512-byte headers.
        let dictionary = self.member.next_block(&self.block);
        self.compressed.clear();
        deflate_block(
            self.member.level(),
            &dictionary,
            &self.block,
            last,
            &mut self.compressed,
        )?;
        self.out.write_all(&self.compressed)?;
        self.block.clear();
        Ok(())
    }

    /// Write the last block and the trailer (CRC-32, length), and hand
    /// `out` back. Dropping a `GzWriter` unfinished writes neither.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.emit(true)?;
        self.out.write_all(&self.member.trailer())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        if self.block.len() == BLOCK {
            self.emit(false)?;
        }
        Ok(n)
    }

    /// Blocks are written whole: nothing to flush but `out`.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads one gzip member from a `BufRead`, consuming exactly its bytes, so
/// that what follows (another member, padding, garbage) is left in the
/// reader. Every malformation is an `InvalidData` error (a truncation
/// `UnexpectedEof`) saying what was wrong.
pub(crate) struct GzMember<R: BufRead> {
    deflate: DeflateDecoder<R>,
    crc: Crc32,
    done: bool,
}

impl<R: BufRead> GzMember<R> {
    /// Read the member header from `input` (which must be at its first byte).
    pub(crate) fn new(mut input: R) -> io::Result<Self> {
        read_header(&mut input)?;
        Ok(GzMember {
            deflate: DeflateDecoder::new(input),
            crc: Crc32::default(),
            done: false,
        })
    }

    /// The reader, just past this member once it has been read to the end.
    pub(crate) fn into_inner(self) -> R {
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

    /// 1 MiB of runs of text-like and random bytes, as a tar of mixed
    /// files is.
    fn mixed_block(seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(BLOCK);
        while out.len() < BLOCK {
            let run = 1000 + (next() % 200_000) as usize;
            let text = next() % 2 == 0;
            for _ in 0..run.min(BLOCK - out.len()) {
                let r = next();
                out.push(if text {
                    b"abcdefgh \n"[(r % 10) as usize]
                } else {
                    r as u8
                });
            }
        }
        out
    }

    #[test]
    fn a_block_deflates_the_same_whatever_room_its_output_has() {
        // The bytes must not depend on the output buffer a caller brings:
        // the single-instance writer reuses one, the host's instances start
        // each block with a new one.
        for seed in 1..=6 {
            let block = mixed_block(seed);
            let dictionary = mixed_block(seed + 100);
            for last in [false, true] {
                let mut want = Vec::new();
                deflate_block(6, &dictionary, &block, last, &mut want).unwrap();
                for room in [1, 4096, 300_000, 600_000, 700_000, 1 << 21] {
                    let mut out = Vec::with_capacity(room);
                    deflate_block(6, &dictionary, &block, last, &mut out).unwrap();
                    assert!(
                        out == want,
                        "seed {seed}, last {last}, room {room}: {} bytes, not {}",
                        out.len(),
                        want.len()
                    );
                }
            }
        }
    }

    #[test]
    fn every_level_deflates_within_the_bound_in_one_call() {
        // Incompressible input is the worst case; level 1's quick strategy
        // is the largest (about 5 % over the input here).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..BLOCK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for block in [noise, mixed_block(7)] {
            for level in 0..=9 {
                for last in [false, true] {
                    let mut want = Vec::new();
                    deflate_block(level, &[], &block, last, &mut want).unwrap();
                    assert!(
                        want.len() <= bound(block.len()),
                        "level {level}: {} bytes over a bound of {}",
                        want.len(),
                        bound(block.len())
                    );
                    let mut out = Vec::with_capacity(1);
                    deflate_block(level, &[], &block, last, &mut out).unwrap();
                    assert!(out == want, "level {level}, last {last}: differs");
                }
            }
        }
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

    /// Text-like bytes with some repetition, `len` long.
    fn text(len: usize) -> Vec<u8> {
        let words = [
            &b"tar "[..],
            b"gzip ",
            b"deflate ",
            b"block ",
            b"window\n",
            b"ccws ",
        ];
        let mut x = 0x2545_f491u32;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            out.extend_from_slice(words[x as usize % words.len()]);
            if x.is_multiple_of(7) {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    fn flate2_gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn no_block_inflates_past_the_ratio_and_padding_is_transparent() {
        for (what, data) in [
            ("zeros", vec![0u8; 3 * BLOCK + 77]),
            ("one byte repeated", vec![b'a'; BLOCK]),
            ("text", text(2 * BLOCK)),
        ] {
            for level in [1, 6, 9] {
                let bytes = gz(&data, level);
                let ratio = data.len() / bytes.len();
                assert!(ratio <= MAX_RATIO, "{what} at {level}: {ratio}:1");
                assert_eq!(flate2_gunzip(&bytes), data, "{what} at {level}");
                assert_eq!(gunzip(&bytes).unwrap(), data, "{what} at {level}");
            }
        }
        // Every block on its own, too: the guard checks as it goes.
        let mut out = Vec::new();
        deflate_block(9, &[], &vec![0u8; BLOCK], false, &mut out).unwrap();
        assert!(out.len() >= BLOCK / MAX_RATIO, "{} bytes", out.len());
        // Text is far from the ratio: not padded at all.
        let block = text(BLOCK);
        let (mut padded, mut plain) = (Vec::new(), Vec::new());
        deflate_block(6, &[], &block, true, &mut padded).unwrap();
        deflate_into(6, &[], &block, true, &mut plain).unwrap();
        assert!(padded == plain);
    }

    #[test]
    fn header_is_flate2s() {
        for level in [0, 1, 6, 9] {
            let theirs = flate2::GzBuilder::new()
                .write(Vec::new(), Compression::new(level))
                .finish()
                .unwrap();
            assert_eq!(gz(b"", level)[..10], theirs[..10], "level {level}");
        }
    }

    #[test]
    fn blocked_streams_round_trip_at_every_size() {
        for len in [
            0,
            1,
            1000,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            2 * BLOCK + 12345,
        ] {
            let data = text(len);
            let bytes = gz(&data, 6);
            assert_eq!(flate2_gunzip(&bytes), data, "flate2 reading {len} bytes");
            assert_eq!(
                gunzip(&bytes).unwrap(),
                data,
                "GzMember reading {len} bytes"
            );
        }
    }

    #[test]
    fn the_bytes_do_not_depend_on_write_sizes() {
        let data = text(2 * BLOCK + 999);
        let one = {
            let mut w = GzWriter::new(Vec::new(), 6);
            w.write_all(&data).unwrap();
            w.finish().unwrap()
        };
        for size in [1000, 4096, BLOCK - 3, BLOCK + 7] {
            let mut w = GzWriter::new(Vec::new(), 6);
            for chunk in data.chunks(size) {
                w.write_all(chunk).unwrap();
                w.flush().unwrap();
            }
            assert_eq!(w.finish().unwrap(), one, "writes of {size}");
        }
    }

    /// What a host does with several instances: each block on its own
    /// deflater, primed with the input before it, put together in order.
    #[test]
    fn independent_blocks_put_together_equal_the_writer() {
        let data = text(3 * BLOCK + 5);
        let mut member = Member::new(6).unwrap();
        let mut assembled = member.header().to_vec();
        let blocks: Vec<&[u8]> = data.chunks(BLOCK).collect();
        for (i, block) in blocks.iter().enumerate() {
            // The whole input before the block, or the dictionary the
            // member gives: the same bytes.
            let before = &data[..i * BLOCK];
            let dictionary = member.next_block(block);
            assert_eq!(dictionary, &before[before.len().saturating_sub(WINDOW)..]);
            deflate_block(6, before, block, i + 1 == blocks.len(), &mut assembled).unwrap();
        }
        assembled.extend_from_slice(&member.trailer());
        assert_eq!(assembled, gz(&data, 6));
        assert!(matches!(
            Member::new(10),
            Err(ArchiveError::InvalidOptions(_))
        ));
    }

    #[test]
    fn blocks_cost_little_against_one_stream() {
        let data = text(4 * BLOCK);
        let ours = gz(&data, 6).len();
        let mut one = flate2::GzBuilder::new().write(Vec::new(), Compression::new(6));
        one.write_all(&data).unwrap();
        let one = one.finish().unwrap().len();
        assert!(
            (ours as f64) < one as f64 * 1.01,
            "blocked {ours} bytes against one stream's {one}"
        );
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
