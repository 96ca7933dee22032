//! The `wasi:io` streams a guest is handed: the caller's tokio readers and
//! writers, and the ends of a pipe between two instances. Every one charges
//! its waits to no one: time a guest spends blocked on a stream is not CPU
//! time (see `sandbox::CpuClock`).

use std::io::Read;
use std::pin::Pin;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

use super::sandbox::{Sandbox, TimedInput, TimedOutput};
use super::{HostError, PIPE_BYTES};

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
    /// The input stream a guest reads this source through.
    pub fn stream(self, store: &Store<Sandbox>) -> DynInputStream {
        match self {
            Source::Reader(r) => reader(store, r),
            Source::File(f) => timed_input(store, FileInput::new(f)),
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
    done: bool,
}

impl FileInput {
    /// Read `file` from its current position to its end.
    pub fn new(file: std::fs::File) -> Self {
        FileInput { file, done: false }
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
                Err(StreamError::LastOperationFailed(e.into()))
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
pub async fn copied<W>(task: JoinHandle<std::io::Result<W>>) -> Result<W, HostError> {
    task.await
        .map_err(|e| HostError::Stream(std::io::Error::other(e)))?
        .map_err(HostError::Stream)
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
        let mut input = FileInput::new(file);
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
        let mut input = FileInput::new(file);
        assert_eq!(&input.read(3).unwrap()[..], b"hel");
        assert_eq!(&input.read(3).unwrap()[..], b"lo");
    }

    #[test]
    fn a_file_input_that_cannot_be_read_fails_the_stream() {
        // A directory opens but cannot be read (EISDIR).
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::open(dir.path()).unwrap();
        let mut input = FileInput::new(file);
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
