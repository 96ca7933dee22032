//! The host side of the sandboxed archive component.
//!
//! [`Archiver`] embeds the guest component (built for `wasm32-wasip2` from
//! `guest/`), compiles it once per machine (cached on disk), and runs each
//! pack or unpack in a fresh store that preopens exactly one directory
//! (read-only for pack, read-write for unpack), with no environment and no
//! network, a memory cap and a CPU-time budget. Archive bytes stream through
//! `wasi:io` streams made from tokio readers and writers.

/// Call one export of the component on a fresh instance in `store`, through
/// [`Archiver::call`]: `|x, s| x.call_pack(s, ..)` names the instance's
/// exports `x` and the store `s`. (The boxed future is what `call`'s
/// higher-ranked closure needs; it is written here once.)
macro_rules! call_export {
    ($archiver:expr, $store:expr, |$x:ident, $s:ident| $call:expr) => {
        $archiver.call($store, |b, $s| {
            Box::pin(async move {
                let $x = b.ccws_archive_archive();
                $call.await
            })
        })
    };
}

mod bindings;
mod convert;
mod deflate;
mod engine;
mod finished;
mod nonblock;
mod pipe;
mod pipeline;
mod sandbox;
mod streams;

use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime::component::{Component, Linker, Resource};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub use ccws_archive::{
    ArchiveError, Ending, EntryKind, LimitKind, Limits, PackOptions, Producer, Report, SkipReason,
    Skipped, UnpackOptions, Verdict,
};
pub use engine::{cache_key, default_cache_dir};
pub use finished::Finished;
pub use sandbox::FilterFn;

use bindings::{Archiver as Bindings, ArchiverPre};
use sandbox::{BusyClock, MemoryLimiter, Sandbox};

/// The component ccws runs (world `archiver`: WASI plus the host's `filter`),
/// as built from `guest/` and embedded at compile time.
pub static COMPONENT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ccws_archive.wasm"));

/// The same code as world `archiver-plain` (WASI imports only), for hosts
/// with no code of their own, such as the `wasmtime` CLI. Embedded only with
/// the `plain-component` feature.
#[cfg(feature = "plain-component")]
pub static PLAIN_COMPONENT_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ccws_archive_plain.wasm"));

/// [`PLAIN_COMPONENT_WASM`] when this build embeds it (the
/// `plain-component` feature), else `None`.
pub fn plain_component_wasm() -> Option<&'static [u8]> {
    #[cfg(feature = "plain-component")]
    return Some(PLAIN_COMPONENT_WASM);
    #[cfg(not(feature = "plain-component"))]
    None
}

/// Where the guest sees the one directory it is given.
const GUEST_ROOT: &str = "/ccws";
/// How often the epoch ticks; the CPU budget is checked at this granularity.
const TICK: Duration = Duration::from_millis(10);
/// The pipe between the guest's output stream and the caller's writer.
const PIPE_BYTES: usize = 1 << 20;
/// The guest's file system calls run on the thread that runs the guest
/// (wasmtime-wasi's `allow_blocking_current_thread`), not on tokio's
/// blocking pool: one thread hop less per call.
const BLOCKING_FS: bool = true;

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Most linear memory one guest instance may use.
    pub memory_limit: usize,
    /// Most CPU time one instance may take, over all its calls (waits on
    /// streams, and a deflate instance's waits for its next block, do not
    /// count); each instance of a pipelined pack or unpack has its own.
    /// `None` runs the guest uncapped, on code compiled without the checks
    /// the cap needs (faster, inflate-bound unpacks most; BENCHMARKS.md has
    /// the figures): only for trusted input, as nothing then stops a guest
    /// that hangs.
    pub cpu_time: Option<Duration>,
    /// Where to cache the compiled component; `None` compiles in memory.
    pub cache_dir: Option<PathBuf>,
    /// Run the tar and gzip stages of `pack` and `unpack` in separate
    /// instances at once (see `pipeline.rs`). Used only on a multi-threaded
    /// tokio runtime; the default is on when the machine has more than one
    /// CPU.
    pub pipeline: bool,
    /// With `pipeline`, how many instances compress a pack's deflate blocks
    /// at once (see `deflate.rs`); the archive's bytes do not depend on it.
    /// Default: the number of CPUs, at most 8.
    pub deflate_instances: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        SandboxConfig {
            memory_limit: 512 << 20,
            cpu_time: Some(Duration::from_secs(600)),
            cache_dir: default_cache_dir(),
            pipeline: cpus > 1,
            deflate_instances: cpus.clamp(1, 8),
        }
    }
}

/// Why a call on an [`Archiver`] failed: the archive itself
/// ([`ArchiveError`]), the sandbox around it, or the caller's streams.
#[derive(Debug, thiserror::Error)]
pub enum ArchiverError {
    /// The guest reported a typed archive error.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The guest used more CPU time than allowed and was stopped.
    #[error(
        "the archive sandbox ran out of CPU time (budget {0:?}) and was stopped: the input is \
         hostile or corrupt, or larger than the budget allows (SandboxConfig::cpu_time)"
    )]
    CpuTime(Duration),
    /// The guest asked for more memory than allowed and was stopped.
    #[error(
        "the archive sandbox hit its memory limit ({0} bytes) and was stopped: the input asks \
         for more memory than an archive should (a hostile or corrupt one), or the limit is too \
         small for it (SandboxConfig::memory_limit)"
    )]
    MemoryLimit(usize),
    /// The guest trapped for another reason.
    #[error("the archive sandbox trapped: {0}")]
    Trap(String),
    /// Setting up wasmtime or the component failed.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// A host-side file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The caller's writer (a pack's output) failed.
    #[error("stream: {0}")]
    Stream(#[source] std::io::Error),
    /// The caller's input (an unpack's reader or archive file) failed: a
    /// transport or store failure, or a body shorter or longer than its
    /// declared length; not the archive's fault, nor the sandbox's.
    #[error("reading the archive failed{}: {source}", at_entry(entry))]
    Input {
        /// The entry the guest was reading ("" before the first one).
        entry: String,
        /// The input's error.
        source: std::io::Error,
    },
}

impl ArchiverError {
    /// Whether the caller's own stream failed ([`ArchiverError::Input`] or
    /// [`ArchiverError::Stream`]): the store or the transport, not the archive
    /// or the sandbox.
    pub fn is_callers_stream(&self) -> bool {
        matches!(self, ArchiverError::Input { .. } | ArchiverError::Stream(_))
    }
}

fn at_entry(entry: &str) -> String {
    if entry.is_empty() {
        String::new()
    } else {
        format!(" at entry {entry:?}")
    }
}

/// Runs the archive component. Cheap to clone; create one per process.
///
/// # Example
///
/// Pack a directory and unpack it elsewhere, each in the sandbox:
///
/// ```
/// use ccws::archive::{Archiver, PackOptions, SandboxConfig, UnpackOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
/// std::fs::create_dir_all(src.join("memory"))?;
/// std::fs::write(src.join("memory/notes.md"), "remember this")?;
///
/// let archiver = Archiver::new(SandboxConfig::default())?;
/// let archive = dir.path().join("home.tar.gz");
/// let packed = archiver
///     .pack_file(&src, &archive, &PackOptions::default(), None)
///     .await?;
/// assert_eq!(packed.files, 1);
///
/// std::fs::create_dir(&dest)?;
/// archiver
///     .unpack_file(&archive, &dest, &UnpackOptions::default(), None)
///     .await?;
/// assert_eq!(std::fs::read_to_string(dest.join("memory/notes.md"))?, "remember this");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Archiver {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pre: ArchiverPre<Sandbox>,
    config: SandboxConfig,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Archiver {
    /// Load the embedded component (from the compile cache when possible).
    pub fn new(config: SandboxConfig) -> Result<Self, ArchiverError> {
        Self::with_component(COMPONENT_WASM, config)
    }

    /// Load a component from its bytes (for testing other builds).
    pub fn with_component(wasm: &[u8], config: SandboxConfig) -> Result<Self, ArchiverError> {
        let engine = engine::new_engine(config.cpu_time.is_some())?;
        let component = engine::load_component(&engine, wasm, config.cache_dir.as_deref())?;
        let pre = link(&engine, &component)?;
        let stop = Arc::new(AtomicBool::new(false));
        if config.cpu_time.is_some() {
            spawn_ticker(engine.clone(), stop.clone());
        }
        Ok(Archiver {
            inner: Arc::new(Inner {
                engine,
                pre,
                config,
                stop,
            }),
        })
    }

    /// The sandbox settings in force.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Pack directory `src` as tar.gz into `out`, which is shut down at the
    /// end and handed back. `filter` may exclude paths (a directory: its
    /// subtree); executable bits are taken from the host's file modes.
    pub async fn pack<W>(
        &self,
        src: &Path,
        out: W,
        options: &PackOptions,
        filter: Option<FilterFn>,
    ) -> Result<(Report, W), ArchiverError>
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        // Checked here: the WIT level is a u8, so 300 would be reported as 255.
        options.check()?;
        let src = canonical_dir(src)?;
        if self.pipelined() {
            return self.pack_pipelined(src, out, options, filter).await;
        }
        let (guest_side, copier) = streams::copier(out);
        let mut store = self.store(Some((&src, FsPerms::ReadOnly)), filter, Some(src.clone()))?;
        let stream = streams::writer(&store, guest_side);
        let (res, borrowed) = lend(&mut store, stream)?;
        let opts = convert::pack_options(options, true);
        let called = call_export!(self, &mut store, |x, s| x
            .call_pack(s, GUEST_ROOT, borrowed, &opts))
        .await
        .map(Report::from);
        // Dropping the stream closes the pipe, so the copier sees the end.
        let _ = store.data_mut().table.delete(res);
        drop(store);
        match (called, streams::copied(copier).await) {
            (Ok(report), Ok(out)) => Ok((report, out)),
            // The writer failing is the root cause of a guest stream error.
            (Err(ArchiverError::Archive(ArchiveError::Stream { .. })) | Ok(_), Err(e)) => Err(e),
            (Err(e), _) => Err(e),
        }
    }

    /// Unpack the tar.gz read from `input` into `dest` (created if missing),
    /// then apply the executable bits the archive carries.
    pub async fn unpack<R>(
        &self,
        input: R,
        dest: &Path,
        options: &UnpackOptions,
        filter: Option<FilterFn>,
    ) -> Result<Report, ArchiverError>
    where
        R: AsyncRead + Send + 'static,
    {
        self.unpack_sized(input, None, dest, options, filter).await
    }

    /// [`Archiver::unpack`] of an archive whose compressed length is known
    /// (an object's size): an input that ends short of `len` bytes, or goes
    /// past them, fails as [`ArchiverError::Input`].
    pub async fn unpack_sized<R>(
        &self,
        input: R,
        len: Option<u64>,
        dest: &Path,
        options: &UnpackOptions,
        filter: Option<FilterFn>,
    ) -> Result<Report, ArchiverError>
    where
        R: AsyncRead + Send + 'static,
    {
        let input = streams::Source::Reader(Box::pin(input));
        self.unpack_source(input, len, dest, options, filter).await
    }

    /// [`Archiver::unpack`] from either kind of source, of `len` bytes if
    /// known; a failure of the source is named as the cause
    /// ([`ArchiverError::Input`]).
    async fn unpack_source(
        &self,
        input: streams::Source,
        len: Option<u64>,
        dest: &Path,
        options: &UnpackOptions,
        filter: Option<FilterFn>,
    ) -> Result<Report, ArchiverError> {
        std::fs::create_dir_all(dest).map_err(|source| ArchiverError::Io {
            path: dest.to_path_buf(),
            source,
        })?;
        let dest = canonical_dir(dest)?;
        let fault = streams::InputFault::default();
        let unpacked = if self.pipelined() {
            self.unpack_pipelined(input.watched(&fault, len), dest, options, filter)
                .await
        } else {
            self.unpack_one(input.watched(&fault, len), dest, options, filter)
                .await
        };
        match (unpacked, fault.take()) {
            // The guest saw its input stream fail: the source's own error
            // is the cause.
            (Err(ArchiverError::Archive(ArchiveError::Stream { entry, .. })), Some(source)) => {
                Err(ArchiverError::Input { entry, source })
            }
            (unpacked, _) => unpacked,
        }
    }

    /// [`Archiver::unpack`] in one instance.
    async fn unpack_one(
        &self,
        input: streams::WatchedSource,
        dest: PathBuf,
        options: &UnpackOptions,
        filter: Option<FilterFn>,
    ) -> Result<Report, ArchiverError> {
        let host_filter = filter.is_some();
        let mut store = self.store(Some((&dest, FsPerms::ReadWrite)), filter, None)?;
        let stream = input.stream(&store);
        let (res, borrowed) = lend(&mut store, stream)?;
        let opts = convert::unpack_options(options, host_filter);
        let called = call_export!(self, &mut store, |x, s| x
            .call_unpack(s, borrowed, GUEST_ROOT, &opts))
        .await
        .map(Report::from);
        let _ = store.data_mut().table.delete(res);
        let report = called?;
        apply_executables(&dest, &report.executables)?;
        Ok(report)
    }

    /// Pack `src` into a new archive file at `archive` (written beside it
    /// and renamed into place, so it is never seen half-written).
    pub async fn pack_file(
        &self,
        src: &Path,
        archive: &Path,
        options: &PackOptions,
        filter: Option<FilterFn>,
    ) -> Result<Report, ArchiverError> {
        let io_err = |source| ArchiverError::Io {
            path: archive.to_path_buf(),
            source,
        };
        let dir = archive
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
        let file = tokio::fs::File::from_std(tmp.reopen().map_err(io_err)?);
        // An archive written inside the tree it packs must not pack itself
        // (half written) or an older copy of itself.
        let own: Vec<String> = [tmp.path(), archive]
            .iter()
            .filter_map(|p| inside(src, p))
            .collect();
        let filter = if own.is_empty() {
            filter
        } else {
            let mut inner = filter;
            Some(Box::new(move |rel: &str, kind: EntryKind| {
                if own.iter().any(|o| o == rel) {
                    return Verdict::Exclude;
                }
                inner.as_mut().map_or(Verdict::Keep, |f| f(rel, kind))
            }) as FilterFn)
        };
        let (report, file) = self.pack(src, file, options, filter).await?;
        drop(file.into_std().await);
        // fsync and rename off the runtime's threads.
        let to = archive.to_path_buf();
        tokio::task::spawn_blocking(move || crate::durable::persist_synced(tmp, &to))
            .await
            .map_err(|e| io_err(std::io::Error::other(e)))?
            .map_err(io_err)?;
        Ok(report)
    }

    /// Unpack archive file `archive` into `dest`.
    pub async fn unpack_file(
        &self,
        archive: &Path,
        dest: &Path,
        options: &UnpackOptions,
        filter: Option<FilterFn>,
    ) -> Result<Report, ArchiverError> {
        let file = std::fs::File::open(archive).map_err(|source| ArchiverError::Io {
            path: archive.to_path_buf(),
            source,
        })?;
        self.unpack_source(streams::Source::File(file), None, dest, options, filter)
            .await
    }

    /// Whether to run two instances at once: asked for, and on a runtime
    /// that can run them in parallel.
    fn pipelined(&self) -> bool {
        self.inner.config.pipeline
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    }

    /// A store for one call, preopening exactly `dir` (or nothing: the gzip
    /// stages see only their streams).
    fn store(
        &self,
        dir: Option<(&Path, FsPerms)>,
        filter: Option<FilterFn>,
        exec_root: Option<PathBuf>,
    ) -> Result<Store<Sandbox>, ArchiverError> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(BLOCKING_FS);
        if let Some((dir, perms)) = dir {
            wasi.preopened_dir(dir, GUEST_ROOT, perms)
                .map_err(|e| ArchiverError::Io {
                    path: dir.to_path_buf(),
                    source: std::io::Error::other(format!("{e:#}")),
                })?;
        }
        let clock = BusyClock::start();
        let sandbox = Sandbox {
            wasi: wasi.build(),
            table: Default::default(),
            limiter: MemoryLimiter {
                max_bytes: self.inner.config.memory_limit,
                hit: false,
            },
            filter,
            exec_root,
            root: dir.map(|(d, _)| d.to_path_buf()),
            clock: clock.clone(),
        };
        let mut store = Store::new(&self.inner.engine, sandbox);
        store.limiter(|s| &mut s.limiter);
        if let Some(budget) = self.inner.config.cpu_time {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if clock.used() > budget {
                    Ok(UpdateDeadline::Interrupt)
                } else {
                    Ok(UpdateDeadline::Continue(1))
                }
            });
        }
        Ok(store)
    }

    /// Instantiate and run one export, mapping traps to typed errors.
    async fn call<T, F>(&self, store: &mut Store<Sandbox>, f: F) -> Result<T, ArchiverError>
    where
        F: for<'a> FnOnce(
            &'a Bindings,
            &'a mut Store<Sandbox>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = wasmtime::Result<Result<T, bindings::wit::ArchiveError>>,
                    > + Send
                    + 'a,
            >,
        >,
    {
        let instance = self
            .inner
            .pre
            .instantiate_async(&mut *store)
            .await
            .map_err(|e| self.trap(store, e))?;
        let out = f(&instance, store).await;
        self.outcome(store, out)
    }

    /// One export's result as a typed one: traps, the memory cap, the CPU
    /// budget and the guest's own errors told apart.
    fn outcome<T>(
        &self,
        store: &Store<Sandbox>,
        out: wasmtime::Result<Result<T, bindings::wit::ArchiveError>>,
    ) -> Result<T, ArchiverError> {
        match out {
            Ok(Ok(value)) => Ok(value),
            // The guest may survive a refused allocation (e.g. `read_to_end`
            // reports it as an I/O error) and fail "cleanly": the cause is
            // still the memory cap, not the archive.
            Ok(Err(_)) if store.data().limiter.hit => {
                Err(ArchiverError::MemoryLimit(self.inner.config.memory_limit))
            }
            Ok(Err(e)) => Err(ArchiverError::Archive(convert::error(
                e,
                store.data().root.as_deref(),
            ))),
            Err(e) => Err(self.trap(store, e)),
        }
    }

    fn trap(&self, store: &Store<Sandbox>, e: wasmtime::Error) -> ArchiverError {
        if store.data().limiter.hit {
            return ArchiverError::MemoryLimit(self.inner.config.memory_limit);
        }
        // Only a store with a budget is ever interrupted.
        if let (Some(Trap::Interrupt), Some(budget)) =
            (e.downcast_ref::<Trap>(), self.inner.config.cpu_time)
        {
            return ArchiverError::CpuTime(budget);
        }
        ArchiverError::Trap(format!("{e:#}"))
    }
}

/// Put a stream in the store's table: the owned handle (the host deletes it
/// after the call) and a borrow of it to pass to the guest.
fn lend<T: Send + 'static>(
    store: &mut Store<Sandbox>,
    stream: T,
) -> Result<(Resource<T>, Resource<T>), ArchiverError> {
    let owned = store
        .data_mut()
        .table
        .push(stream)
        .map_err(|e| ArchiverError::Engine(format!("stream table: {e}")))?;
    let borrowed = Resource::new_borrow(owned.rep());
    Ok((owned, borrowed))
}

fn link(engine: &Engine, component: &Component) -> Result<ArchiverPre<Sandbox>, ArchiverError> {
    let mut linker = Linker::<Sandbox>::new(engine);
    let err = |e: wasmtime::Error| ArchiverError::Engine(format!("linking the component: {e:#}"));
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    nonblock::link(&mut linker).map_err(err)?;
    type Here = wasmtime::component::HasSelf<Sandbox>;
    bindings::ccws::archive::types::add_to_linker::<_, Here>(&mut linker, |s| s).map_err(err)?;
    bindings::ccws::archive::filter::add_to_linker::<_, Here>(&mut linker, |s| s).map_err(err)?;
    sandbox::link_checksum(&mut linker).map_err(err)?;
    let pre = linker.instantiate_pre(component).map_err(err)?;
    ArchiverPre::new(pre).map_err(err)
}

/// Advance the engine's epoch until the archiver is dropped.
fn spawn_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("ccws-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}

fn canonical_dir(dir: &Path) -> Result<PathBuf, ArchiverError> {
    let io = |source| ArchiverError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let path = std::fs::canonicalize(dir).map_err(io)?;
    if !path.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    Ok(path)
}

/// The process's file creation mask, read from `/proc/self/status`
/// (reading it with `umask(2)` would change it for other threads
/// meanwhile); 022 where it cannot be read.
#[cfg(unix)]
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// `path` relative to the directory `root` (`/`-separated), if it is inside.
fn inside(root: &Path, path: &Path) -> Option<String> {
    let root = std::fs::canonicalize(root).ok()?;
    let parent = std::fs::canonicalize(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
    .ok()?;
    let rel = parent.join(path.file_name()?);
    let rel = rel.strip_prefix(&root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Add the execute bits the process's umask allows (0755 under the usual
/// 022, 0700 under `ccws`'s 077) to the files the archive marks
/// executable (WASI has no chmod).
/// Paths come from the guest: only plain relative paths to regular files
/// (never through a symlink) are touched.
fn apply_executables(dest: &Path, rels: &[String]) -> Result<(), ArchiverError> {
    #[cfg(unix)]
    for rel in rels {
        use std::os::unix::fs::PermissionsExt;
        let relp = Path::new(rel);
        if !relp
            .components()
            .all(|c| matches!(c, PathComponent::Normal(_)))
        {
            continue;
        }
        let mut path = dest.to_path_buf();
        let mut safe = true;
        for c in relp.components() {
            path.push(c);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if !m.file_type().is_symlink() => {}
                _ => {
                    safe = false;
                    break;
                }
            }
        }
        if safe && path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777 & !umask()))
                .map_err(|source| ArchiverError::Io { path, source })?;
        }
    }
    #[cfg(not(unix))]
    let _ = (dest, rels);
    Ok(())
}
