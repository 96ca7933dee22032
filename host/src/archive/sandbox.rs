//! Per-call sandbox state: the WASI context (exactly one preopen, no env, no
//! network), the memory limiter, the CPU-time accounting, and the host
//! filter and checksum.

use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Linker, ResourceTable, WasmList};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{wit, FilterHost};
use ccws_archive::{EntryKind, Verdict};

/// A host-side exclusion predicate over `/`-separated relative paths.
pub type FilterFn = Box<dyn FnMut(&str, EntryKind) -> Verdict + Send>;

/// The store data of one guest call.
pub struct Sandbox {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) filter: Option<FilterFn>,
    /// For pack: the host directory whose files' executable bits are reported.
    pub(crate) exec_root: Option<PathBuf>,
    /// The host directory preopened as the guest's root, to show the guest's
    /// paths in errors as host paths.
    pub(crate) root: Option<PathBuf>,
    pub(crate) clock: BusyClock,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for Sandbox {}

impl FilterHost for Sandbox {
    fn check(&mut self, rel: String, kind: wit::EntryKind) -> wit::Verdict {
        let kind = EntryKind::from(kind);
        let verdict = match self.filter.as_mut() {
            Some(f) => f(&rel, kind),
            None => Verdict::Keep,
        };
        let verdict = match (verdict, kind, &self.exec_root) {
            (Verdict::Keep, EntryKind::File, Some(root)) if is_executable(root, &rel) => {
                Verdict::KeepExecutable
            }
            (v, ..) => v,
        };
        verdict.into()
    }
}

/// Link the `checksum` import: CRC-32 over the guest's bytes in place. By
/// hand rather than through the bindings' `Host` trait, whose `Vec<u8>`
/// parameter would copy every chunk out of guest memory first.
pub(crate) fn link_checksum(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    linker.instance("ccws:archive/checksum@0.1.0")?.func_wrap(
        "crc32",
        |store: StoreContextMut<'_, Sandbox>, (crc, data): (u32, WasmList<u8>)| {
            Ok((ccws_archive::gzframe::crc32(crc, data.as_le_slice(&store)),))
        },
    )
}

/// Whether `root/rel` is a regular file with an executable bit. `rel` comes
/// from the guest, so anything but a plain relative path is refused.
fn is_executable(root: &Path, rel: &str) -> bool {
    let rel = Path::new(rel);
    if !rel
        .components()
        .all(|c| matches!(c, PathComponent::Normal(_)))
    {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(root.join(rel))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        let _ = root;
        false
    }
}

/// Caps the guest's linear memory and remembers whether it hit the cap.
pub struct MemoryLimiter {
    pub(crate) max_bytes: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        if !ok {
            self.hit = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The time a guest has been busy: wall time since the call began minus the
/// time it spent waiting on the host's streams (what the CPU budget counts).
#[derive(Clone)]
pub struct BusyClock {
    start: Instant,
    waited_ns: Arc<AtomicU64>,
}

impl BusyClock {
    /// Start counting now.
    pub fn start() -> Self {
        BusyClock {
            start: Instant::now(),
            waited_ns: Arc::default(),
        }
    }

    /// Time the guest has been running (not waiting on streams).
    pub fn used(&self) -> Duration {
        let waited = Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(waited)
    }

    /// Await `f` without charging the wait to the guest (a stream not
    /// ready, or an instance waiting for its next piece of work).
    pub(crate) async fn idle<T, F: std::future::Future<Output = T>>(&self, f: F) -> T {
        let t = Instant::now();
        let out = f.await;
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waited_ns.fetch_add(ns, Ordering::Relaxed);
        out
    }
}

/// An input stream whose waits are not charged to the guest's CPU budget.
pub struct TimedInput<S> {
    pub(crate) inner: S,
    pub(crate) clock: BusyClock,
}

#[async_trait::async_trait]
impl<S: InputStream> Pollable for TimedInput<S> {
    async fn ready(&mut self) {
        let clock = self.clock.clone();
        clock.idle(self.inner.ready()).await;
    }
}

#[async_trait::async_trait]
impl<S: InputStream> InputStream for TimedInput<S> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.inner.read(size)
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}

/// An output stream whose waits are not charged to the guest's CPU budget.
pub struct TimedOutput<S> {
    pub(crate) inner: S,
    pub(crate) clock: BusyClock,
}

#[async_trait::async_trait]
impl<S: OutputStream> Pollable for TimedOutput<S> {
    async fn ready(&mut self) {
        let clock = self.clock.clone();
        clock.idle(self.inner.ready()).await;
    }
}

#[async_trait::async_trait]
impl<S: OutputStream> OutputStream for TimedOutput<S> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}
