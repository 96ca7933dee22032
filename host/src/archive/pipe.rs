//! The in-memory pipe between two sandbox stages (tar ↔ gzip).
//!
//! The write end is one stage's `wasi:io` output stream, the read end the
//! other's input stream: chunks pass as `Bytes` (copied once out of one
//! guest's memory and once into the other's), with a byte capacity for
//! back-pressure and no task in between.
//!
//! A plain pipe ends with EOF when its writer goes away, which would let a
//! failed first stage look like a complete, valid stream to the second (a
//! `gzip` of a half-packed tar would still be a well-formed tar.gz). Here the
//! stream ends as [`ccws_archive::Ending`] has it: only when the first
//! stage's owner says it finished ([`PipeEnd::finish`]); if it says the stage
//! failed ([`PipeEnd::fail`]), or the write end goes away without either, the
//! reader gets an error, after the data written before it. When the reader
//! goes away, the writer's next call fails.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use ccws_archive::Ending;
use tokio::sync::Notify;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Create a pipe holding up to `capacity` bytes in flight: the write end,
/// the read end, and the handle that ends it.
pub fn pipe(capacity: usize) -> (PipeWriter, PipeReader, PipeEnd) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            chunks: VecDeque::new(),
            queued: 0,
            reader_gone: false,
        }),
        ending: Ending::new(),
        capacity,
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (
        PipeWriter(shared.clone()),
        PipeReader(shared.clone()),
        PipeEnd(shared),
    )
}

struct Shared {
    state: Mutex<State>,
    /// How the writing stage ended.
    ending: Ending,
    capacity: usize,
    /// Data or the end arrived (one waiter: the reader).
    readable: Notify,
    /// Room appeared or the reader left (one waiter: the writer).
    writable: Notify,
}

struct State {
    chunks: VecDeque<Bytes>,
    queued: usize,
    reader_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Says how the writing stage ended; the first word counts.
#[derive(Clone)]
pub struct PipeEnd(Arc<Shared>);

impl PipeEnd {
    /// The writing stage finished: the reader gets EOF after the data.
    pub fn finish(&self) {
        self.0.ending.finish();
        self.0.readable.notify_one();
    }

    /// The writing stage failed: the reader gets `why` after the data.
    pub fn fail(&self, why: impl Into<String>) {
        self.0.ending.fail(why);
        self.0.readable.notify_one();
    }
}

/// The write end: a `wasi:io` output stream.
pub struct PipeWriter(Arc<Shared>);

impl Drop for PipeWriter {
    /// Without a word from [`PipeEnd`], the stage stopped without finishing
    /// (an early return, a panic): that is a failure, never an EOF.
    fn drop(&mut self) {
        PipeEnd(self.0.clone()).fail(if std::thread::panicking() {
            "the stage writing this pipe panicked"
        } else {
            "the stage writing this pipe stopped without finishing"
        });
    }
}

fn reader_gone() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::msg(
        "the stage reading this pipe has stopped",
    ))
}

#[async_trait::async_trait]
impl Pollable for PipeWriter {
    async fn ready(&mut self) {
        loop {
            {
                let st = self.0.lock();
                if st.reader_gone || st.queued < self.0.capacity {
                    return;
                }
            }
            self.0.writable.notified().await;
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for PipeWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        // Nothing is written after the word on how the stage ended (the
        // reader relies on it).
        if self.0.ending.word().is_some() {
            return Err(StreamError::Trap(wasmtime::Error::msg(
                "write to a pipe after its stage ended",
            )));
        }
        let mut st = self.0.lock();
        if st.reader_gone {
            return Err(reader_gone());
        }
        if bytes.len() > self.0.capacity.saturating_sub(st.queued) {
            return Err(StreamError::Trap(wasmtime::Error::msg(
                "write exceeded the budget given by check-write",
            )));
        }
        if !bytes.is_empty() {
            st.queued += bytes.len();
            st.chunks.push_back(bytes);
            drop(st);
            self.0.readable.notify_one();
        }
        Ok(())
    }

    /// Written data is in the pipe already: nothing to wait for.
    fn flush(&mut self) -> StreamResult<()> {
        if self.0.lock().reader_gone {
            return Err(reader_gone());
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let st = self.0.lock();
        if st.reader_gone {
            return Err(reader_gone());
        }
        Ok(self.0.capacity.saturating_sub(st.queued))
    }
}

/// The read end: a `wasi:io` input stream.
pub struct PipeReader(Arc<Shared>);

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.reader_gone = true;
        st.chunks.clear();
        st.queued = 0;
        drop(st);
        self.0.writable.notify_one();
    }
}

#[async_trait::async_trait]
impl Pollable for PipeReader {
    async fn ready(&mut self) {
        loop {
            {
                let st = self.0.lock();
                if !st.chunks.is_empty() || self.0.ending.word().is_some() {
                    return;
                }
            }
            self.0.readable.notified().await;
        }
    }
}

#[async_trait::async_trait]
impl InputStream for PipeReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        // The word first: once there is one, nothing more is written, so
        // the data left below is all there will be.
        let word = self.0.ending.word();
        let mut st = self.0.lock();
        if !st.chunks.is_empty() {
            let chunk = take(&mut st.chunks, size);
            st.queued -= chunk.len();
            drop(st);
            self.0.writable.notify_one();
            return Ok(chunk);
        }
        drop(st);
        match word {
            None => Ok(Bytes::new()),
            Some(Ok(())) => Err(StreamError::Closed),
            Some(Err(why)) => Err(StreamError::LastOperationFailed(wasmtime::Error::msg(why))),
        }
    }
}

/// Up to `size` bytes from the front of `chunks`. One chunk is handed over
/// as it is; smaller ones queued behind each other are joined. A writer
/// held back by a full pipe writes what room it is given, so its chunks
/// fragment (in a 20k-file unpack, about 4,900 wake-ups for 40 MB: some
/// 8 KiB a chunk); handed out one by one, every fragment cost the reader a
/// call and the writer a wake-up.
fn take(chunks: &mut VecDeque<Bytes>, size: usize) -> Bytes {
    let Some(front) = chunks.front_mut() else {
        return Bytes::new();
    };
    if front.len() >= size {
        return front.split_to(size);
    }
    if chunks.len() == 1 {
        return chunks.pop_front().unwrap_or_default();
    }
    let mut joined = BytesMut::with_capacity(size.min(chunks.iter().map(Bytes::len).sum()));
    while let Some(front) = chunks.front_mut() {
        let room = size - joined.len();
        if room == 0 {
            break;
        }
        if front.len() <= room {
            joined.extend_from_slice(front);
            chunks.pop_front();
        } else {
            joined.extend_from_slice(&front.split_to(room));
        }
    }
    joined.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(r: &mut PipeReader) -> (Vec<u8>, StreamError) {
        let mut got = Vec::new();
        loop {
            r.ready().await;
            match r.read(3) {
                Ok(b) => got.extend_from_slice(&b),
                Err(e) => return (got, e),
            }
        }
    }

    #[tokio::test]
    async fn data_then_eof() {
        let (mut w, mut r, end) = pipe(8);
        w.write(Bytes::from_static(b"hello")).unwrap();
        end.finish();
        drop(w);
        let (got, end) = read_all(&mut r).await;
        assert_eq!(got, b"hello");
        assert!(matches!(end, StreamError::Closed));
    }

    #[tokio::test]
    async fn failure_replaces_eof_after_the_data() {
        let (mut w, mut r, f) = pipe(8);
        w.write(Bytes::from_static(b"abc")).unwrap();
        f.fail("first stage failed");
        f.fail("ignored: the first word counts");
        f.finish();
        drop(w);
        let (got, end) = read_all(&mut r).await;
        assert_eq!(got, b"abc");
        match end {
            StreamError::LastOperationFailed(e) => assert_eq!(e.to_string(), "first stage failed"),
            other => panic!("expected the failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn capacity_is_back_pressure() {
        let (mut w, mut r, end) = pipe(4);
        assert_eq!(w.check_write().unwrap(), 4);
        w.write(Bytes::from_static(b"abcd")).unwrap();
        assert_eq!(w.check_write().unwrap(), 0);
        assert!(matches!(
            w.write(Bytes::from_static(b"e")),
            Err(StreamError::Trap(_))
        ));
        let writer = tokio::spawn(async move {
            w.ready().await;
            w.write(Bytes::from_static(b"e")).unwrap();
            end.finish();
        });
        tokio::task::yield_now().await;
        assert_eq!(&r.read(2).unwrap()[..], b"ab");
        writer.await.unwrap();
        let (got, end) = read_all(&mut r).await;
        assert_eq!(got, b"cde");
        assert!(matches!(end, StreamError::Closed));
    }

    #[tokio::test]
    async fn fragments_are_joined_up_to_the_request() {
        let (mut w, mut r, end) = pipe(16);
        for piece in [&b"ab"[..], b"cd", b"efg", b"hijklmn"] {
            w.write(Bytes::copy_from_slice(piece)).unwrap();
        }
        assert_eq!(w.check_write().unwrap(), 2);
        assert_eq!(&r.read(5).unwrap()[..], b"abcde");
        assert_eq!(&r.read(3).unwrap()[..], b"fgh");
        assert_eq!(w.check_write().unwrap(), 10);
        // One chunk, shorter or longer than asked: handed over or split.
        assert_eq!(&r.read(100).unwrap()[..], b"ijklmn");
        w.write(Bytes::from_static(b"opqrstuvwx")).unwrap();
        assert_eq!(&r.read(4).unwrap()[..], b"opqr");
        end.finish();
        drop(w);
        let (got, end) = read_all(&mut r).await;
        assert_eq!(got, b"stuvwx");
        assert!(matches!(end, StreamError::Closed));
    }

    #[tokio::test]
    async fn a_writer_dropped_without_a_word_fails_the_pipe() {
        let (mut w, mut r, _end) = pipe(8);
        w.write(Bytes::from_static(b"ab")).unwrap();
        drop(w);
        let (got, end) = read_all(&mut r).await;
        assert_eq!(got, b"ab");
        match end {
            StreamError::LastOperationFailed(e) => {
                assert!(e.to_string().contains("without finishing"), "{e}")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_panicking_writer_fails_the_pipe() {
        let (w, mut r, _f) = pipe(8);
        let _ = std::thread::spawn(move || {
            let _w = w;
            panic!("stage panicked (test)");
        })
        .join();
        let (_, end) = read_all(&mut r).await;
        assert!(
            matches!(end, StreamError::LastOperationFailed(_)),
            "{end:?}"
        );
    }

    #[tokio::test]
    async fn writer_fails_once_the_reader_is_gone() {
        let (mut w, r, _f) = pipe(4);
        w.write(Bytes::from_static(b"ab")).unwrap();
        drop(r);
        w.ready().await;
        assert!(matches!(
            w.check_write(),
            Err(StreamError::LastOperationFailed(_))
        ));
        assert!(w.write(Bytes::from_static(b"c")).is_err());
    }
}
