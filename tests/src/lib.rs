//! Shared fixtures for the ccws integration tests and benchmarks.

pub mod awsfake;
pub mod moto;
pub mod tree;

use std::sync::OnceLock;

use ccws::archive::{Archiver, SandboxConfig};

/// One archiver per test process, with its compiled-component cache in the
/// workspace's target directory so test binaries share it. On a
/// multi-threaded runtime it runs pack and unpack as two instances at once.
pub fn archiver() -> Archiver {
    static ARCHIVER: OnceLock<Archiver> = OnceLock::new();
    ARCHIVER.get_or_init(|| shared_cache_archiver(true)).clone()
}

/// As [`archiver`], but running pack and unpack in one instance each (no
/// tar/gzip pipeline), to test that path on multi-threaded runtimes too.
pub fn archiver_serial() -> Archiver {
    static ARCHIVER: OnceLock<Archiver> = OnceLock::new();
    ARCHIVER
        .get_or_init(|| shared_cache_archiver(false))
        .clone()
}

fn shared_cache_archiver(pipeline: bool) -> Archiver {
    archiver_with(SandboxConfig {
        pipeline,
        ..SandboxConfig::default()
    })
}

/// An archiver with `config`, sharing the tests' compile cache.
pub fn archiver_with(config: SandboxConfig) -> Archiver {
    let cache = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ccws-test-cache");
    Archiver::new(SandboxConfig {
        cache_dir: Some(cache),
        ..config
    })
    .expect("loading the archive component")
}

pub mod faultproxy;
pub mod hostile;
pub mod s3s;
pub mod server;

/// Deterministic pseudo-random bytes (xorshift), so mismatches are not masked by repetition.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
