//! The gzip stage of a pipelined pack, in several sandbox instances at once
//! (as pigz runs several threads). The guest writes every gzip member as a
//! blocked deflate stream (`ccws_archive::gzframe`): 1 MiB blocks of input,
//! each compressed on its own, primed with the 32 KiB before it. So here the
//! tar stream from the pipe is cut into those blocks, each block goes to
//! the next of N instances (`deflate-block`), and the results are written
//! in order into a `gzframe::Member`'s frame (its header, and a trailer of
//! the CRC-32 and length computed here): the same bytes as the guest's own
//! `gzip` and `pack`.
//!
//! Each instance has its own store, memory cap and CPU budget (time spent
//! waiting for the next block is not charged), and preopens nothing.

use std::collections::VecDeque;

use ccws_archive::gzframe::{Member, BLOCK};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use wasmtime::Store;
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError};

use super::pipe::PipeReader;
use super::sandbox::Sandbox;
use super::{ArchiveError, Archiver, ArchiverError, Bindings};

/// One block for an instance, and where its deflate goes.
struct Job {
    dictionary: Vec<u8>,
    block: Vec<u8>,
    last: bool,
    reply: oneshot::Sender<Result<Vec<u8>, ArchiverError>>,
}

/// Gzip everything `input` delivers into `out`, compressing its blocks in
/// one instance per store in `stores` (at least one). Returns the input
/// length and `out`, shut down. When `input` fails (the tar stage did), no
/// last block or trailer is written: `out` never holds a complete gzip of a
/// partial tar.
pub(super) async fn gzip_blocks<W>(
    archiver: &Archiver,
    stores: Vec<Store<Sandbox>>,
    mut input: PipeReader,
    mut out: W,
    level: u8,
) -> Result<(u64, W), ArchiverError>
where
    W: AsyncWrite + Unpin,
{
    // Dropping the set (on any return) aborts every instance's task.
    let mut instances = JoinSet::new();
    let mut queues = Vec::with_capacity(stores.len());
    for mut store in stores {
        let bindings = archiver
            .inner
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| archiver.trap(&store, e))?;
        let (tx, rx) = mpsc::channel(1);
        instances.spawn(instance(archiver.clone(), store, bindings, rx, level));
        queues.push(tx);
    }
    let in_flight = 2 * queues.len();

    let mut member = Member::new(level.into())?;
    out.write_all(&member.header())
        .await
        .map_err(ArchiverError::Stream)?;
    let mut total = 0u64;
    let mut pending: VecDeque<oneshot::Receiver<_>> = VecDeque::new();
    for n in 0.. {
        let mut block = Vec::with_capacity(BLOCK);
        // Blocks are full until the input ends; the rest (maybe nothing)
        // is the last block, as the guest's own writer does it.
        let last = !fill(&mut input, &mut block).await?;
        total += block.len() as u64;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            dictionary: member.next_block(&block),
            block,
            last,
            reply,
        };
        if queues[n % queues.len()].send(job).await.is_err() {
            // That instance stopped: its failure is in a pending answer.
            return Err(first_failure(pending).await);
        }
        pending.push_back(answer);
        while pending.len() >= in_flight || (last && !pending.is_empty()) {
            let deflated = next_answer(&mut pending).await?;
            out.write_all(&deflated)
                .await
                .map_err(ArchiverError::Stream)?;
        }
        if last {
            break;
        }
    }
    out.write_all(&member.trailer())
        .await
        .map_err(ArchiverError::Stream)?;
    out.shutdown().await.map_err(ArchiverError::Stream)?;
    Ok((total, out))
}

/// Read from `input` until `block` is full (`true`) or the input ends
/// (`false`). A failed input (the tar stage failed) is a `Stream` error.
async fn fill(input: &mut PipeReader, block: &mut Vec<u8>) -> Result<bool, ArchiverError> {
    while block.len() < BLOCK {
        input.ready().await;
        match input.read(BLOCK - block.len()) {
            Ok(bytes) => block.extend_from_slice(&bytes),
            Err(StreamError::Closed) => return Ok(false),
            Err(e) => {
                return Err(ArchiverError::Archive(ArchiveError::Stream {
                    entry: String::new(),
                    message: e.to_string(),
                }))
            }
        }
    }
    Ok(true)
}

/// The oldest block's deflate (the next bytes of the output).
async fn next_answer(
    pending: &mut VecDeque<oneshot::Receiver<Result<Vec<u8>, ArchiverError>>>,
) -> Result<Vec<u8>, ArchiverError> {
    let Some(answer) = pending.pop_front() else {
        unreachable!("called with blocks pending");
    };
    answer.await.unwrap_or_else(|_| Err(instance_gone()))
}

/// Why the instances stopped: the first failed answer, in block order.
async fn first_failure(
    mut pending: VecDeque<oneshot::Receiver<Result<Vec<u8>, ArchiverError>>>,
) -> ArchiverError {
    while !pending.is_empty() {
        if let Err(e) = next_answer(&mut pending).await {
            return e;
        }
    }
    instance_gone()
}

/// A block's answer never came: its instance's task panicked (the answers
/// of failed blocks are sent before an instance stops) or was aborted.
fn instance_gone() -> ArchiverError {
    ArchiverError::Trap(
        "a deflate instance stopped without answering (its task panicked, a bug in ccws: the \
         panic message is above; or the pack was cancelled)"
            .into(),
    )
}

/// One instance: deflate each block it is sent, until the queue closes or
/// a block fails (that answer is the last).
async fn instance(
    archiver: Archiver,
    mut store: Store<Sandbox>,
    bindings: Bindings,
    mut jobs: mpsc::Receiver<Job>,
    level: u8,
) {
    let clock = store.data().clock.clone();
    while let Some(job) = clock.idle(jobs.recv()).await {
        let deflated = bindings
            .ccws_archive_archive()
            .call_deflate_block(&mut store, &job.dictionary, &job.block, level, job.last)
            .await;
        let answer = archiver.outcome(&store, deflated);
        let failed = answer.is_err();
        let _ = job.reply.send(answer);
        if failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use wasmtime_wasi::p2::OutputStream;

    use super::*;
    use crate::archive::pipe::pipe;
    use crate::archive::SandboxConfig;

    /// `blocks` full blocks and a bit, then the pipe's end: a failure or
    /// EOF; two instances with `config`'s limits.
    async fn gzip_of_a_pipe(
        blocks: usize,
        fail: bool,
        config: SandboxConfig,
    ) -> (Result<u64, ArchiverError>, Vec<u8>, Vec<u8>) {
        let archiver = Archiver::new(SandboxConfig {
            cache_dir: None,
            ..config
        })
        .unwrap();
        let input: Vec<u8> = (0..blocks * BLOCK + 1000)
            .map(|i| ((i % 251) ^ (i / 4093)) as u8)
            .collect();
        let (mut w, r, end) = pipe(input.len());
        w.write(Bytes::from(input.clone())).unwrap();
        if fail {
            end.fail("the tar stage failed (test)");
        } else {
            end.finish();
        }
        drop(w);
        let stores = (0..2)
            .map(|_| archiver.store(None, None, None))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let mut out = Vec::new();
        let got = gzip_blocks(&archiver, stores, r, &mut out, 6)
            .await
            .map(|(n, _)| n);
        (got, out, input)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocks_make_the_guests_gzip() {
        for blocks in [0, 1, 3] {
            let (got, out, input) = gzip_of_a_pipe(blocks, false, SandboxConfig::default()).await;
            assert_eq!(got.unwrap(), input.len() as u64);
            let (_, guest_gzip) = ccws_archive::gzip(&input[..], Vec::new(), 6).unwrap();
            assert!(out == guest_gzip, "{blocks} blocks: not the guest's gzip");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_input_leaves_no_complete_gzip() {
        // Seven blocks with four in flight: the first ones are written out
        // before the input fails.
        let (got, out, _) = gzip_of_a_pipe(7, true, SandboxConfig::default()).await;
        match got {
            Err(ArchiverError::Archive(ArchiveError::Stream { message, .. })) => {
                assert!(message.contains("tar stage failed"), "{message}")
            }
            other => panic!("expected a stream error, got {other:?}"),
        }
        assert!(
            out.len() > BLOCK / 10,
            "blocks were written: {} bytes",
            out.len()
        );
        assert!(
            ccws_archive::gunzip(&out[..], Vec::new(), &Default::default()).is_err(),
            "a partial input must not end as a complete gzip"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_instance_over_its_cpu_budget_fails_the_gzip() {
        let tight = SandboxConfig {
            cpu_time: Some(std::time::Duration::from_millis(1)),
            ..SandboxConfig::default()
        };
        let (got, out, _) = gzip_of_a_pipe(7, false, tight).await;
        assert!(matches!(got, Err(ArchiverError::CpuTime(_))), "{got:?}");
        assert!(
            ccws_archive::gunzip(&out[..], Vec::new(), &Default::default()).is_err(),
            "a failed gzip must not look complete"
        );
    }
}
