//! Pack and unpack as sandbox instances running at once, joined by a pipe,
//! as `tar | pigz` and `gzip -d | tar -x` run as processes: one instance
//! walks or writes the tree (`pack-tar` / `unpack-tar`); for unpack one
//! more decompresses (`gunzip`), for pack one per CPU compresses the
//! stream's deflate blocks (`deflate-block`, see [`super::deflate`]). Each
//! instance has its own store, memory cap and CPU budget; the compression
//! instances preopen nothing.
//!
//! The bytes are the same as the single-instance path's, and so are the
//! errors: a failed stage fails the pipe (see [`super::pipe`]), and the
//! caller gets the root cause, with the entry the tar stage had reached.

use std::path::PathBuf;

use std::future::Future;

use tokio::io::AsyncWrite;
use tokio::task::JoinHandle;
use wasmtime_wasi::FsPerms;

use super::deflate;
use super::pipe::{pipe, PipeEnd};
use super::streams;
use super::{
    apply_executables, convert, lend, ArchiveError, Archiver, ArchiverError, FilterFn, PackOptions,
    Report, UnpackOptions, GUEST_ROOT, PIPE_BYTES,
};

impl Archiver {
    /// [`Archiver::pack`] pipelined: `pack-tar` here, the deflate blocks in
    /// `deflate_instances` instances driven from a task.
    pub(super) async fn pack_pipelined<W>(
        &self,
        src: PathBuf,
        out: W,
        options: &PackOptions,
        filter: Option<FilterFn>,
    ) -> Result<(Report, W), ArchiverError>
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        // Every store first: nothing runs, and `out` is untouched, unless
        // every stage can start.
        let mut tar_store =
            self.store(Some((&src, FsPerms::ReadOnly)), filter, Some(src.clone()))?;
        let deflate_stores = (0..self.inner.config.deflate_instances.max(1))
            .map(|_| self.store(None, None, None))
            .collect::<Result<Vec<_>, _>>()?;
        let (tar_w, tar_r, tar_end) = pipe(PIPE_BYTES);
        let opts = convert::pack_options(options, true);
        let level = opts.level;
        let this = self.clone();
        let gzip = StageTask::spawn(async move {
            deflate::gzip_blocks(&this, deflate_stores, tar_r, out, level).await
        });

        let output = streams::timed_output(&tar_store, tar_w);
        let tarred = run_stage(&tar_end, async {
            let (_, borrowed) = lend(&mut tar_store, output)?;
            call_export!(self, &mut tar_store, |x, s| x
                .call_pack_tar(s, GUEST_ROOT, borrowed, &opts))
            .await
            .map(Report::from)
        })
        .await;
        drop(tar_store);
        if tarred.as_ref().is_err_and(|e| !is_stream(e)) {
            // The tar stage's own failure is the answer; the gzip stage may
            // be waiting on a stalled writer.
            gzip.abort();
        }
        pack_outcome(tarred, gzip.join().await.map(|(_, out)| out))
    }

    /// [`Archiver::unpack`] in two instances: `gunzip` in a task, `unpack-tar`
    /// here.
    pub(super) async fn unpack_pipelined(
        &self,
        input: streams::WatchedSource,
        dest: PathBuf,
        options: &UnpackOptions,
        filter: Option<FilterFn>,
    ) -> Result<Report, ArchiverError> {
        // Both stores first: nothing runs, and `input` is untouched, unless
        // both stages can start.
        let host_filter = filter.is_some();
        let mut tar_store = self.store(Some((&dest, FsPerms::ReadWrite)), filter, None)?;
        let mut gz_store = self.store(None, None, None)?;
        let (tar_w, tar_r, tar_end) = pipe(PIPE_BYTES);

        let gz_in = input.stream(&gz_store);
        let gz_out = streams::timed_output(&gz_store, tar_w);
        let limits = options.limits.into();
        let this = self.clone();
        let gunzip = StageTask::spawn(async move {
            run_stage(&tar_end, async {
                let (_, in_b) = lend(&mut gz_store, gz_in)?;
                let (_, out_b) = lend(&mut gz_store, gz_out)?;
                call_export!(this, &mut gz_store, |x, s| x
                    .call_gunzip(s, in_b, out_b, limits))
                .await
            })
            .await
        });

        let tar_in = streams::timed_input(&tar_store, tar_r);
        let opts = convert::unpack_options(options, host_filter);
        let (res, borrowed) = lend(&mut tar_store, tar_in)?;
        let untarred = call_export!(self, &mut tar_store, |x, s| x
            .call_unpack_tar(s, borrowed, GUEST_ROOT, &opts))
        .await
        .map(Report::from);
        let _ = tar_store.data_mut().table.delete(res);
        // Closes the pipe's read end: a gunzip still writing stops.
        drop(tar_store);

        if untarred.as_ref().is_err_and(|e| !is_stream(e)) {
            // The tar stage's own failure is the answer; gunzip may be
            // waiting on a stalled reader, which no CPU budget would stop.
            gunzip.abort();
        }
        let gunzipped = gunzip.join().await;
        let report = unpack_outcome(untarred, gunzipped)?;
        apply_executables(&dest, &report.executables)?;
        Ok(report)
    }
}

/// Run the stage that writes a pipe, then end the pipe with its outcome.
async fn run_stage<T>(
    end: &PipeEnd,
    stage: impl Future<Output = Result<T, ArchiverError>>,
) -> Result<T, ArchiverError> {
    let result = stage.await;
    match &result {
        Ok(_) => end.finish(),
        Err(e) => end.fail(e.to_string()),
    }
    result
}

/// A stage running in its own task. Dropped before it is joined (the
/// caller's future was dropped), it is aborted: no stage outlives its call.
struct StageTask<T>(Option<JoinHandle<Result<T, ArchiverError>>>);

impl<T: Send + 'static> StageTask<T> {
    fn spawn(stage: impl Future<Output = Result<T, ArchiverError>> + Send + 'static) -> Self {
        StageTask(Some(tokio::spawn(stage)))
    }

    /// Stop the stage now: its result no longer matters.
    fn abort(&self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }

    /// The stage's result; a panic in it is resumed here.
    async fn join(mut self) -> Result<T, ArchiverError> {
        let Some(task) = self.0.take() else {
            unreachable!("a stage is joined once");
        };
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(ArchiverError::Trap(format!("pipeline stage stopped: {e}"))),
        }
    }
}

impl<T> Drop for StageTask<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

fn is_stream(e: &ArchiverError) -> bool {
    matches!(e, ArchiverError::Archive(ArchiveError::Stream { .. }))
}

/// The pack's result: the root cause when anything failed. The tar
/// stage's own failure (not a broken pipe) comes first; then the gzip
/// stage's own (an instance's, or the caller's writer, whose failure breaks
/// the pipe upstream); a broken pipe is the answer only when nothing else is.
fn pack_outcome<W>(
    tarred: Result<Report, ArchiverError>,
    gzipped: Result<W, ArchiverError>,
) -> Result<(Report, W), ArchiverError> {
    match (tarred, gzipped) {
        (Ok(report), Ok(out)) => Ok((report, out)),
        (Err(e), _) if !is_stream(&e) => Err(e),
        (_, Err(g)) if !is_stream(&g) => Err(g),
        (Err(e), _) => Err(e),
        (Ok(_), Err(g)) => Err(g),
    }
}

/// The unpack's result. `unpack-tar` failing on its own (limits, a corrupt
/// tar, I/O) is the answer; `unpack-tar` failing because its input did is
/// gunzip's failure, named with the entry the tar stage was reading.
fn unpack_outcome(
    untarred: Result<Report, ArchiverError>,
    gunzipped: Result<u64, ArchiverError>,
) -> Result<Report, ArchiverError> {
    match (untarred, gunzipped) {
        (Ok(report), Ok(_)) => Ok(report),
        (Err(e), _) if !is_stream(&e) => Err(e),
        (Err(ArchiverError::Archive(ArchiveError::Stream { entry, .. })), Err(g)) => Err(match g {
            ArchiverError::Archive(ArchiveError::Corrupt { message, .. }) => {
                ArchiverError::Archive(ArchiveError::Corrupt { entry, message })
            }
            ArchiverError::Archive(ArchiveError::Stream { message, .. }) => {
                ArchiverError::Archive(ArchiveError::Stream { entry, message })
            }
            ArchiverError::Archive(ArchiveError::LimitExceeded { limit, allowed, .. }) => {
                ArchiverError::Archive(ArchiveError::LimitExceeded {
                    limit,
                    allowed,
                    entry,
                })
            }
            other => other,
        }),
        (Err(e), _) => Err(e),
        (Ok(_), Err(g)) => Err(g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(entry: &str, message: &str) -> ArchiverError {
        ArchiverError::Archive(ArchiveError::Stream {
            entry: entry.into(),
            message: message.into(),
        })
    }

    fn corrupt(entry: &str, message: &str) -> ArchiverError {
        ArchiverError::Archive(ArchiveError::Corrupt {
            entry: entry.into(),
            message: message.into(),
        })
    }

    fn shown<T: std::fmt::Debug>(r: Result<T, ArchiverError>) -> String {
        format!("{:?}", r.map(|_| ()).unwrap_err())
    }

    #[test]
    fn unpack_names_the_entry_for_a_gzip_failure() {
        let got = unpack_outcome(
            Err(stream("dir/file", "pipe failed")),
            Err(corrupt("", "invalid gzip header")),
        );
        assert_eq!(
            shown(got),
            shown::<()>(Err(corrupt("dir/file", "invalid gzip header")))
        );
        let got = unpack_outcome(
            Err(stream("a", "pipe failed")),
            Err(stream("", "connection reset")),
        );
        assert_eq!(
            shown(got),
            shown::<()>(Err(stream("a", "connection reset")))
        );
    }

    #[test]
    fn unpack_own_failures_win() {
        let got = unpack_outcome(
            Err(corrupt("x", "checksum")),
            Err(stream("", "broken pipe")),
        );
        assert_eq!(shown(got), shown::<()>(Err(corrupt("x", "checksum"))));
        let got = unpack_outcome(Err(ArchiverError::CpuTime(Default::default())), Ok(3));
        assert!(matches!(got, Err(ArchiverError::CpuTime(_))));
        let got = unpack_outcome(Ok(Report::default()), Err(corrupt("", "crc")));
        assert_eq!(shown(got), shown::<()>(Err(corrupt("", "crc"))));
    }

    #[test]
    fn pack_root_cause() {
        let io = || ArchiverError::Stream(std::io::Error::other("disk full"));
        // The caller's writer failed: the tar stage's broken pipe follows.
        let got = pack_outcome::<()>(Err(stream("a", "pipe")), Err(io()));
        assert!(matches!(got, Err(ArchiverError::Stream(_))));
        // The tar stage's own failure beats the broken pipe it caused.
        let own = ArchiverError::Archive(ArchiveError::InvalidOptions("bad".into()));
        let got = pack_outcome::<()>(Err(own), Err(stream("", "pipe")));
        assert!(matches!(
            got,
            Err(ArchiverError::Archive(ArchiveError::InvalidOptions(_)))
        ));
        // A deflate instance over its budget: the tar stage only saw a
        // broken pipe.
        let got = pack_outcome::<()>(
            Err(stream("big", "pipe")),
            Err(ArchiverError::CpuTime(Default::default())),
        );
        assert!(matches!(got, Err(ArchiverError::CpuTime(_))));
    }
}
