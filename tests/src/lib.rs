//! Shared fixtures for the ccws integration tests and benchmarks.

pub mod tree;

use std::sync::OnceLock;

use ccws::archive::{Archiver, SandboxConfig};

/// One archiver per test process, with its compiled-component cache in the
/// workspace's target directory so test binaries share it.
pub fn archiver() -> Archiver {
    static ARCHIVER: OnceLock<Archiver> = OnceLock::new();
    ARCHIVER
        .get_or_init(|| {
            let cache =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ccws-test-cache");
            Archiver::new(SandboxConfig {
                cache_dir: Some(cache),
                ..SandboxConfig::default()
            })
            .expect("loading the archive component")
        })
        .clone()
}

pub mod faultproxy;
pub mod hostile;
pub mod s3s;
