//! Builds the guest crate as a `wasm32-wasip2` component and hands its path
//! to the host crate, which embeds it (`include_bytes!`).
//!
//! Both worlds are built: `archiver` (default features) and `archiver-plain`
//! (`--no-default-features`). Set `CCWS_GUEST_WASM` / `CCWS_GUEST_PLAIN_WASM`
//! to a prebuilt `.wasm` to embed that instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for p in [
        "guest/src",
        "guest/Cargo.toml",
        "wit",
        "Cargo.lock",
        // [profile.guest] and the workspace's dependency features.
        "Cargo.toml",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=CCWS_GUEST_WASM");
    println!("cargo:rerun-if-env-changed=CCWS_GUEST_PLAIN_WASM");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    // The `archiver` world (with the host filter) and `archiver-plain` (WASI only).
    for (env_override, features, dir, name) in [
        ("CCWS_GUEST_WASM", None, "guest", "ccws_archive.wasm"),
        (
            "CCWS_GUEST_PLAIN_WASM",
            Some("--no-default-features"),
            "guest-plain",
            "ccws_archive_plain.wasm",
        ),
    ] {
        let built = match env::var_os(env_override) {
            Some(p) => PathBuf::from(p),
            None => build_guest(&root, features, dir),
        };
        let out = out_dir.join(name);
        std::fs::copy(&built, &out)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), out.display()));
    }
}

/// Run a nested `cargo build` of the guest into its own target directory (so
/// it never waits on the outer build's lock, and each world keeps its own).
fn build_guest(root: &Path, features: Option<&str>, dir: &str) -> PathBuf {
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--package",
            "ccws-archive",
            "--target",
            "wasm32-wasip2",
        ])
        .args(features)
        .args(["--profile", "guest", "--target-dir"])
        .arg(&target_dir)
        // Flags meant for the host build (or clippy's wrapper) must not leak in.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("running cargo to build the guest component");
    if !status.success() {
        panic!(
            "building the ccws guest component failed; is the target installed? \
             run `rustup target add wasm32-wasip2`"
        );
    }
    target_dir.join("wasm32-wasip2/guest/ccws_archive.wasm")
}
