//! The `wasi:io` streams a guest is handed: the caller's tokio readers and
//! writers, and the ends of a pipe between two instances. Every one charges
//! its waits to no one: time a guest spends blocked on a stream is not CPU
//! time (see `sandbox::CpuClock`).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, InputStream, OutputStream};

use super::sandbox::{Sandbox, TimedInput, TimedOutput};
use super::{HostError, PIPE_BYTES};

/// An input stream over the caller's reader.
pub fn reader<R: AsyncRead + Send + 'static>(store: &Store<Sandbox>, r: R) -> DynInputStream {
    timed_input(store, AsyncReadStream::new(r))
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
