//! Reader and writer adapters: error attribution, byte counting, concatenated
//! gzip members, and positional-file sinks.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use crate::ending::Ending;
use crate::fsio;
use crate::gzframe::GzMember;
use crate::types::{ArchiveError, LimitKind, Limits};

/// Remembers the first error of the wrapped reader or writer, so a failure can
/// be blamed on the stream rather than on the archive format.
#[derive(Debug, Clone, Default)]
pub struct Blame(Rc<RefCell<Option<String>>>);

impl Blame {
    /// The recorded error, if any.
    pub fn get(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Map a failure of the tracked stream at `entry` ("" for none): the
    /// stream's own error if it recorded one, else `e`.
    pub fn stream_error(&self, e: io::Error, entry: &str) -> ArchiveError {
        ArchiveError::Stream {
            entry: entry.to_owned(),
            message: self.get().unwrap_or_else(|| e.to_string()),
        }
    }

    fn note(&self, e: &io::Error) {
        let mut slot = self.0.borrow_mut();
        if slot.is_none() {
            *slot = Some(e.to_string());
        }
    }
}

/// A reader or writer whose errors are recorded in a [`Blame`].
pub struct Tracked<T> {
    inner: T,
    blame: Blame,
}

impl<T> Tracked<T> {
    /// Wrap `inner`, recording its errors in `blame`.
    pub fn new(inner: T, blame: Blame) -> Self {
        Tracked { inner, blame }
    }

    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| self.blame.note(e))
    }
}

impl<R: BufRead> BufRead for Tracked<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf().inspect_err(|e| self.blame.note(e))
    }
    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
    }
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.blame.note(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| self.blame.note(e))
    }
}

/// A writer that fails every write once its producer has failed (see
/// [`Ending`]): `tar::Builder` writes its end-of-archive marker when
/// dropped, and a failed `pack-tar` must not leave a complete-looking tar.
pub struct Gated<W> {
    inner: W,
    ending: Ending,
}

impl<W> Gated<W> {
    /// Wrap `inner`; writes stop once `ending` says the producer failed.
    pub fn new(inner: W, ending: Ending) -> Self {
        Gated { inner, ending }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn refuse(&self) -> io::Result<()> {
        if self.ending.failed() {
            return Err(io::Error::other("output shut after a failure"));
        }
        Ok(())
    }
}

impl<W: Write> Write for Gated<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.refuse()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.refuse()?;
        self.inner.flush()
    }
}

/// Which limit a reader stopped at, shared with the code that turns its
/// I/O error into an [`ArchiveError`].
#[derive(Debug, Clone, Default)]
pub struct Tripped(Rc<Cell<Option<LimitKind>>>);

impl Tripped {
    /// The limit that stopped the reader, if one did.
    pub fn get(&self) -> Option<LimitKind> {
        self.0.get()
    }

    /// Record that `limit` stopped the reader, and the error to fail with.
    fn trip(&self, limit: LimitKind, message: &str) -> io::Error {
        if self.0.get().is_none() {
            self.0.set(Some(limit));
        }
        io::Error::other(message.to_owned())
    }

    /// The error for a read that `limit` stopped at `entry`, or `None` if
    /// no limit did.
    pub fn error(&self, limits: &Limits, entry: &str) -> Option<ArchiveError> {
        self.get().map(|limit| ArchiveError::LimitExceeded {
            limit,
            allowed: limit.allowed(limits),
            entry: entry.to_owned(),
        })
    }
}

/// Counts the bytes read through it and fails once they pass `cap`.
pub struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    cap: u64,
    tripped: Tripped,
}

impl<R> Counting<R> {
    /// Wrap `inner`; `count` is shared with the caller, and `tripped` says
    /// [`LimitKind::TotalBytes`] once the cap is passed.
    pub fn new(inner: R, cap: u64, count: Rc<Cell<u64>>, tripped: Tripped) -> Self {
        Counting {
            inner,
            count,
            cap,
            tripped,
        }
    }
}

impl<R> Counting<R> {
    /// Count `n` more bytes; past the cap, an error.
    fn add(&mut self, n: usize) -> io::Result<()> {
        let total = self.count.get() + n as u64;
        self.count.set(total);
        if total > self.cap {
            return Err(self.tripped.trip(
                LimitKind::TotalBytes,
                "decompressed archive exceeds the size limit",
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.add(n)?;
        Ok(n)
    }
}

/// Forward seeks only (`SeekFrom::Current` with `n >= 0`), by consuming the
/// bytes in place: how `tar` skips padding and unread bodies without
/// zeroing and copying into a 32 KiB buffer per entry. The stream ending
/// inside the skipped bytes is an `UnexpectedEof` error (tar's own skip
/// fails there too). Returns the position (bytes counted so far).
impl<R: BufRead> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let mut left = match pos {
            SeekFrom::Current(n) if n >= 0 => n as u64,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("a stream only skips forward (asked {other:?})"),
                ))
            }
        };
        while left > 0 {
            let avail = self.inner.fill_buf()?.len();
            if avail == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside this entry's data or padding (truncated?)",
                ));
            }
            let n = avail.min(usize::try_from(left).unwrap_or(usize::MAX));
            self.inner.consume(n);
            self.add(n)?;
            left -= n as u64;
        }
        Ok(self.count.get())
    }
}

/// Decompresses one or more concatenated gzip members. Zero bytes after the
/// last member (tape-style padding) are accepted; anything else is an error,
/// as is an input with no gzip member at all. With a ratio guard (see
/// [`MultiGz::guarded`]) it stops once it has inflated too much from too
/// little.
pub struct MultiGz<R: BufRead> {
    state: GzState<Consumed<R>>,
    started: bool,
    /// Compressed bytes taken from the input.
    consumed: Rc<Cell<u64>>,
    /// Bytes inflated so far.
    inflated: u64,
    guard: Option<RatioGuard>,
}

enum GzState<R: BufRead> {
    Member(Box<GzMember<R>>),
    Between(R),
    Done,
    Failed,
}

/// The compression-ratio guard of [`Limits::max_inflate_ratio`].
struct RatioGuard {
    ratio: u64,
    grace: u64,
    tripped: Tripped,
}

impl<R: BufRead> MultiGz<R> {
    /// Start decoding `inner`, with no ratio guard.
    pub fn new(inner: R) -> Self {
        let consumed = Rc::new(Cell::new(0));
        MultiGz {
            state: GzState::Between(Consumed {
                inner,
                count: consumed.clone(),
            }),
            started: false,
            consumed,
            inflated: 0,
            guard: None,
        }
    }

    /// Start decoding `inner` under `limits`' ratio guard: once more than
    /// [`Limits::inflate_grace_bytes`] have been inflated, a read that
    /// leaves more than [`Limits::max_inflate_ratio`] inflated bytes per
    /// compressed byte taken so far fails, and `tripped` says
    /// [`LimitKind::InflateRatio`]. (A ratio of 0 turns the guard off.)
    pub fn guarded(inner: R, limits: &Limits, tripped: Tripped) -> Self {
        let mut gz = Self::new(inner);
        gz.guard = (limits.max_inflate_ratio > 0).then(|| RatioGuard {
            ratio: limits.max_inflate_ratio.into(),
            grace: limits.inflate_grace_bytes,
            tripped,
        });
        gz
    }

    /// Count `n` more inflated bytes; past the ratio guard, an error.
    fn inflate(&mut self, n: usize) -> io::Result<()> {
        self.inflated += n as u64;
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let consumed = self.consumed.get();
        if self.inflated > guard.grace && self.inflated > guard.ratio.saturating_mul(consumed) {
            return Err(guard.tripped.trip(
                LimitKind::InflateRatio,
                "the archive inflates past the compression-ratio guard",
            ));
        }
        Ok(())
    }

    /// Look past the end of a member: start the next one, or reach the end.
    fn next_member(&mut self, mut r: Consumed<R>) -> io::Result<()> {
        let first = !self.started;
        self.started = true;
        loop {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                if first {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "empty input: not a gzip stream",
                    ));
                }
                self.state = GzState::Done;
                return Ok(());
            }
            if avail[0] == 0x1f {
                self.state = GzState::Member(Box::new(GzMember::new(r)?));
                return Ok(());
            }
            if !first && avail.iter().all(|&b| b == 0) {
                let n = avail.len();
                r.consume(n);
                continue;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                if first {
                    "not a gzip stream (bad magic bytes)"
                } else {
                    "trailing garbage after the gzip stream"
                },
            ));
        }
    }
}

impl<R: BufRead> Read for MultiGz<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, GzState::Failed) {
                GzState::Member(mut dec) => {
                    let n = dec.read(buf)?;
                    if n > 0 {
                        self.inflate(n)?;
                        self.state = GzState::Member(dec);
                        return Ok(n);
                    }
                    self.state = GzState::Between(dec.into_inner());
                }
                GzState::Between(r) => self.next_member(r)?,
                GzState::Done => {
                    self.state = GzState::Done;
                    return Ok(0);
                }
                GzState::Failed => return Err(io::Error::other("gzip reader used after an error")),
            }
        }
    }
}

/// A `BufRead` that counts the bytes taken from it (consumed or read).
struct Consumed<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: BufRead> Read for Consumed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Consumed<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amount: usize) {
        self.count.set(self.count.get() + amount as u64);
        self.inner.consume(amount);
    }
}

/// How much a [`ChunkReader`] asks its source for at a time.
const CHUNK_REQUEST: usize = 256 * 1024;

/// Reads an `input-stream`-like source that hands out owned chunks, serving
/// them in place as a `BufRead` (no copy into a second buffer).
pub struct ChunkReader<F: FnMut(usize) -> io::Result<Option<Vec<u8>>>> {
    next: F,
    chunk: Vec<u8>,
    pos: usize,
}

impl<F: FnMut(usize) -> io::Result<Option<Vec<u8>>>> ChunkReader<F> {
    /// `next(max)` returns up to `max` bytes, or `None` at end of stream.
    pub fn new(next: F) -> Self {
        ChunkReader {
            next,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl<F: FnMut(usize) -> io::Result<Option<Vec<u8>>>> BufRead for ChunkReader<F> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() {
            match (self.next)(CHUNK_REQUEST)? {
                Some(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.chunk.len());
    }
}

impl<F: FnMut(usize) -> io::Result<Option<Vec<u8>>>> Read for ChunkReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A `Write` over a file using positional writes from offset 0.
pub struct PositionalWriter {
    file: File,
    offset: u64,
}

impl PositionalWriter {
    /// Write `file` from its start.
    pub fn new(file: File) -> Self {
        PositionalWriter { file, offset: 0 }
    }
}

impl Write for PositionalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        fsio::write_all_at(&self.file, buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over a file using positional reads from offset 0.
pub struct PositionalReader {
    file: File,
    offset: u64,
}

impl PositionalReader {
    /// Read `file` from its start.
    pub fn new(file: File) -> Self {
        PositionalReader { file, offset: 0 }
    }
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = fsio::read_at(&self.file, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}
