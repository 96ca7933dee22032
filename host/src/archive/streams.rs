//! The `wasi:io` streams a guest is handed: the caller's tokio readers and
//! writers, and the ends of a pipe between two instances. Every one charges
//! its waits to no one: time a guest spends blocked on a stream is not CPU
//! time (see `sandbox::BusyClock`).

use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

use super::sandbox::{Sandbox, TimedInput, TimedOutput};
use super::{ArchiverError, PIPE_BYTES};

/// An input stream over the caller's reader.
pub fn reader<R: AsyncRead + Send + 'static>(store: &Store<Sandbox>, r: R) -> DynInputStream {
    timed_input(store, AsyncReadStream::new(r))
}

/// Where an unpack reads its archive from.
pub enum Source {
    /// Any reader (an S3 body, a socket), read by a task as it arrives.
    Reader(Pin<Box<dyn AsyncRead + Send>>),
    /// A local file, read in place (see [`FileInput`]).
    File(std::fs::File),
}

impl Source {
    /// This source, its failures to be kept in `fault`; with `len`, so is
    /// its delivering more or fewer bytes than that.
    pub fn watched(self, fault: &InputFault, len: Option<u64>) -> WatchedSource {
        WatchedSource {
            source: self,
            fault: fault.clone(),
            len,
        }
    }
}

/// A [`Source`] with the [`InputFault`] its failures go to.
pub struct WatchedSource {
    source: Source,
    fault: InputFault,
    len: Option<u64>,
}

impl WatchedSource {
    /// The input stream a guest reads this source through.
    pub fn stream(self, store: &Store<Sandbox>) -> DynInputStream {
        match self.source {
            Source::Reader(r) => reader(store, Watched::new(r, self.fault, self.len)),
            Source::File(f) => timed_input(store, FileInput::new(f, self.fault)),
        }
    }
}

/// The first failure of an unpack's input (the caller's reader, or the
/// archive file), kept so that the host can name it as the cause: the guest
/// sees only that its stream failed.
#[derive(Clone, Default)]
pub struct InputFault(Arc<Mutex<Option<std::io::Error>>>);

impl InputFault {
    /// Keep `e` (the first one counts); the error to hand on in its place.
    fn note(&self, e: std::io::Error) -> std::io::Error {
        let copy = std::io::Error::new(e.kind(), e.to_string());
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
        copy
    }

    /// The failure, if the input failed.
    pub fn take(&self) -> Option<std::io::Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The caller's reader, its failures kept in an [`InputFault`], and held to
/// the length its source declared (an object's `Content-Length`), if any:
/// ending short of it or going past it is a failure of the input too.
struct Watched<R> {
    inner: R,
    fault: InputFault,
    len: Option<u64>,
    read: u64,
}

impl<R> Watched<R> {
    fn new(inner: R, fault: InputFault, len: Option<u64>) -> Self {
        Watched {
            inner,
            fault,
            len,
            read: 0,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining();
        if let Err(e) = ready!(Pin::new(&mut self.inner).poll_read(cx, buf)) {
            return Poll::Ready(Err(self.fault.note(e)));
        }
        let n = buf.filled().len() - before;
        self.read += n as u64;
        match self.len {
            Some(len) if self.read > len => {
                // A read that fails hands on nothing.
                buf.set_filled(before);
                let e = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the source sent more than the {len} bytes it declared"),
                );
                Poll::Ready(Err(self.fault.note(e)))
            }
            Some(len) if n == 0 && room > 0 && self.read < len => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the source ended after {} of the {len} bytes it declared",
                        self.read
                    ),
                );
                Poll::Ready(Err(self.fault.note(e)))
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// The largest read [`FileInput`] makes for one guest `read`.
const FILE_CHUNK: usize = 256 * 1024;

/// An input stream over a local file, read with plain blocking reads on the
/// calling thread, as wasmtime-wasi reads a guest's own files with
/// `allow_blocking_current_thread`: no task, no thread hop and no channel per
/// chunk, and chunks as large as the guest asks for (up to 256 KiB) where
/// `AsyncReadStream` hands out 64 KiB ones from the blocking pool.
pub struct FileInput {
    file: std::fs::File,
    fault: InputFault,
    done: bool,
}

impl FileInput {
    /// Read `file` from its current position to its end; its failures are
    /// kept in `fault`.
    pub fn new(file: std::fs::File, fault: InputFault) -> Self {
        FileInput {
            file,
            fault,
            done: false,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for FileInput {
    /// A file is always ready: a read blocks only for the disk.
    async fn ready(&mut self) {}
}

impl InputStream for FileInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.done {
            return Err(StreamError::Closed);
        }
        let want = size.min(FILE_CHUNK);
        let mut buf = Vec::with_capacity(want);
        match (&mut self.file).take(want as u64).read_to_end(&mut buf) {
            Ok(0) if want > 0 => {
                self.done = true;
                Err(StreamError::Closed)
            }
            Ok(_) => Ok(Bytes::from(buf)),
            Err(e) => {
                self.done = true;
                Err(StreamError::LastOperationFailed(self.fault.note(e).into()))
            }
        }
    }
}

/// An output stream into the host side of a pipe (see [`copier`]).
pub fn writer(store: &Store<Sandbox>, w: DuplexStream) -> DynOutputStream {
    timed_output(store, AsyncWriteStream::new(PIPE_BYTES, w))
}

/// Wrap any input stream so that its waits are not charged to `store`'s guest.
pub fn timed_input<S: InputStream>(store: &Store<Sandbox>, inner: S) -> DynInputStream {
    Box::new(TimedInput {
        inner,
        clock: store.data().clock.clone(),
    })
}

/// Wrap any output stream so that its waits are not charged to `store`'s guest.
pub fn timed_output<S: OutputStream>(store: &Store<Sandbox>, inner: S) -> DynOutputStream {
    Box::new(TimedOutput {
        inner,
        clock: store.data().clock.clone(),
    })
}

/// A task copying everything written into the returned pipe end to `out`,
/// then shutting `out` down and handing it back.
pub fn copier<W>(mut out: W) -> (DuplexStream, JoinHandle<std::io::Result<W>>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (guest_side, mut host_side) = tokio::io::duplex(PIPE_BYTES);
    let task = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut host_side, &mut out).await;
        let shut = out.shutdown().await;
        copied.and(shut).map(|_| out)
    });
    (guest_side, task)
}

/// The copier's outcome: the writer back, or why it failed.
pub async fn copied<W>(task: JoinHandle<std::io::Result<W>>) -> Result<W, ArchiverError> {
    task.await
        .map_err(|e| ArchiverError::Stream(std::io::Error::other(e)))?
        .map_err(ArchiverError::Stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_input_reads_the_whole_file_in_bounded_chunks() {
        let data: Vec<u8> = (0..FILE_CHUNK * 2 + 1000).map(|i| i as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &data).unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let mut input = FileInput::new(file, InputFault::default());
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        loop {
            match input.read(usize::MAX) {
                Ok(chunk) => {
                    sizes.push(chunk.len());
                    got.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(got, data);
        assert_eq!(sizes, [FILE_CHUNK, FILE_CHUNK, 1000]);
        // Closed stays closed.
        assert!(matches!(input.read(10), Err(StreamError::Closed)));
        // A small request is honoured.
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, b"hello").unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let mut input = FileInput::new(file, InputFault::default());
        assert_eq!(&input.read(3).unwrap()[..], b"hel");
        assert_eq!(&input.read(3).unwrap()[..], b"lo");
    }

    async fn read_watched(
        data: &[u8],
        fail: bool,
        len: Option<u64>,
    ) -> (Vec<u8>, std::io::Result<()>, Option<std::io::Error>) {
        use tokio::io::AsyncReadExt;
        let reader = tokio_test_reader(data.to_vec(), fail);
        let fault = InputFault::default();
        let mut watched = Watched::new(reader, fault.clone(), len);
        let mut got = Vec::new();
        let result = watched.read_to_end(&mut got).await.map(drop);
        (got, result, fault.take())
    }

    /// `data`, then the end or (with `fail`) a failure.
    fn tokio_test_reader(data: Vec<u8>, fail: bool) -> impl AsyncRead + Unpin {
        let failure = futures::stream::iter(fail.then(|| {
            Err::<bytes::Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset (test)",
            ))
        }));
        let chunks = futures::stream::iter(
            data.chunks(1000)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        tokio_util::io::StreamReader::new(futures::StreamExt::chain(chunks, failure))
    }

    #[tokio::test]
    async fn a_watched_reader_keeps_its_failure_and_its_declared_length() {
        let data = vec![7u8; 5000];
        // As declared, or with nothing declared: no fault.
        for len in [None, Some(5000)] {
            let (got, result, fault) = read_watched(&data, false, len).await;
            assert_eq!(got, data);
            assert!(result.is_ok() && fault.is_none(), "{len:?}");
        }
        // The reader's own failure is kept, and handed on in words.
        let (got, result, fault) = read_watched(&data, true, None).await;
        assert_eq!(got, data);
        let fault = fault.expect("kept");
        assert_eq!(fault.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(result.unwrap_err().to_string().contains("connection reset"));
        // Ending short of the declared length, or going past it.
        let (_, result, fault) = read_watched(&data, false, Some(6000)).await;
        assert!(result.is_err());
        let fault = fault.expect("kept").to_string();
        assert!(
            fault.contains("ended after 5000 of the 6000 bytes"),
            "{fault}"
        );
        let (_, result, fault) = read_watched(&data, false, Some(4000)).await;
        assert!(result.is_err());
        let fault = fault.expect("kept").to_string();
        assert!(fault.contains("more than the 4000 bytes"), "{fault}");
    }

    #[test]
    fn a_file_input_that_cannot_be_read_fails_the_stream() {
        // A directory opens but cannot be read (EISDIR).
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::open(dir.path()).unwrap();
        let mut input = FileInput::new(file, InputFault::default());
        match input.read(100) {
            Err(StreamError::LastOperationFailed(e)) => {
                assert!(
                    format!("{e:#}").to_lowercase().contains("directory"),
                    "{e:#}"
                )
            }
            other => panic!("expected a failure, got {:?}", other.map(|b| b.len())),
        }
        assert!(matches!(input.read(100), Err(StreamError::Closed)));
    }
}
