//! The one wasmtime `Engine`, and the on-disk cache of the compiled component.
//!
//! Compiling the component takes about a second; a per-turn tool cannot pay
//! that on every start. The compiled artifact is cached under a key made of
//! the component's SHA-256, the wasmtime version and the engine's settings,
//! with a SHA-256 of the artifact beside it: a corrupt, truncated or stale
//! file is detected, recompiled and replaced.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

use super::ArchiverError;

/// Build the engine ccws runs the component in: Cranelift optimising for
/// speed and, when `interruptible`, epoch interruption (the CPU budget).
/// Interruption compiles a check of the epoch into every function entry and
/// loop header; the cache key covers the setting, so the two builds of the
/// component are cached apart.
pub fn new_engine(interruptible: bool) -> Result<Engine, ArchiverError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(interruptible)
        .cranelift_opt_level(OptLevel::Speed);
    Engine::new(&config).map_err(|e| ArchiverError::Engine(format!("creating the engine: {e:#}")))
}

/// Where the compiled component is cached by default: `$CCWS_CACHE_DIR`,
/// else the user's cache directory (`~/.cache/ccws`).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CCWS_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("ccws"))
}

/// The cache file name for `wasm` under `engine`.
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let mut sha = Sha256::new();
    sha.update(wasm);
    sha.update(env!("CARGO_PKG_VERSION").as_bytes());
    sha.update(h.finish().to_le_bytes());
    format!("component-{}", &hex::encode(sha.finalize())[..32])
}

/// Load the component from the cache, or compile it (and cache it when a
/// cache directory is given and writable).
pub fn load_component(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
) -> Result<Component, ArchiverError> {
    let Some(dir) = cache_dir else {
        return compile(engine, wasm);
    };
    let key = cache_key(engine, wasm);
    let artifact = dir.join(format!("{key}.cwasm"));
    let digest = dir.join(format!("{key}.sha256"));
    match read_verified(&artifact, &digest) {
        Ok(Some(bytes)) => {
            // SAFETY: the bytes were produced by `Engine::precompile_component`
            // of this same engine configuration (the key covers the wasmtime
            // version and settings) and their SHA-256 matches the digest
            // written next to them, so they are the artifact we wrote.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %artifact.display(), "cached component rejected, recompiling: {e:#}")
                }
            }
        }
        Ok(None) => {}
        Err(why) => {
            tracing::warn!(path = %artifact.display(), "component cache unusable, recompiling: {why}")
        }
    }
    let bytes = engine
        .precompile_component(wasm)
        .map_err(|e| ArchiverError::Engine(format!("compiling the component: {e:#}")))?;
    if let Err(e) = write_cache(dir, &artifact, &digest, &bytes) {
        tracing::warn!(dir = %dir.display(), "could not cache the compiled component: {e}");
    }
    // SAFETY: `bytes` was just produced by `precompile_component` on `engine`.
    unsafe { Component::deserialize(engine, &bytes) }
        .map_err(|e| ArchiverError::Engine(format!("loading the compiled component: {e:#}")))
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, ArchiverError> {
    Component::new(engine, wasm)
        .map_err(|e| ArchiverError::Engine(format!("compiling the component: {e:#}")))
}

/// The artifact's bytes if present and matching its digest; `Ok(None)` when
/// not cached yet; `Err` with a reason when present but bad.
fn read_verified(artifact: &Path, digest: &Path) -> Result<Option<Vec<u8>>, String> {
    let bytes = match std::fs::read(artifact) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let expected = std::fs::read_to_string(digest).map_err(|e| format!("digest: {e}"))?;
    if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
        return Err("checksum mismatch (corrupt or partial file)".into());
    }
    Ok(Some(bytes))
}

fn write_cache(dir: &Path, artifact: &Path, digest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Digest first, artifact last: a reader never sees an artifact whose
    // digest is missing or stale for long, and a mismatch only means a recompile.
    atomic_write(dir, digest, hex::encode(Sha256::digest(bytes)).as_bytes())?;
    atomic_write(dir, artifact, bytes)
}

fn atomic_write(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    crate::durable::persist_synced(tmp, path).map(drop)
}
