//! Builds the guest crate as the `archiver` WASI component for the host
//! crate to embed (`include_bytes!`), and with the `plain-component`
//! feature the `archiver-plain` one (`--no-default-features`) too.
//!
//! Each is a nested `cargo build` of the guest for `wasm32-wasip2`, into a
//! target directory of its own under `OUT_DIR` (so it never waits on the
//! outer build's lock, and writes nothing outside `OUT_DIR`), with the
//! `guest` profile defined here: optimised for speed, fat LTO, one codegen
//! unit, panics abort, no debug info. The script reruns when a file the
//! nested build read changes (its dep-info for the component: the guest's
//! sources and the WIT files), when the guest's manifest or the cargo
//! configuration (`.cargo/config.toml`, the wasm target's flags) changes,
//! and when the script itself does; edits elsewhere in the workspace's
//! manifests or lock file do not rebuild the component. (A lock edit that
//! changes only the version of one of the guest's dependencies is not seen
//! either: `touch guest/Cargo.toml` after one.)
//!
//! Set `CCWS_GUEST_WASM` (and `CCWS_GUEST_PLAIN_WASM`) to a prebuilt `.wasm`
//! to embed that instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `guest` profile of the nested builds.
const PROFILE: &[&str] = &[
    "profile.guest.inherits=\"release\"",
    "profile.guest.opt-level=3",
    "profile.guest.debug=false",
    "profile.guest.debug-assertions=false",
    "profile.guest.overflow-checks=false",
    "profile.guest.strip=true",
    "profile.guest.lto=true",
    "profile.guest.codegen-units=1",
    "profile.guest.panic=\"abort\"",
    "profile.guest.incremental=false",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for p in ["guest/Cargo.toml", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    let mut worlds = vec![("CCWS_GUEST_WASM", None, "archiver", "ccws_archive.wasm")];
    if env::var_os("CARGO_FEATURE_PLAIN_COMPONENT").is_some() {
        worlds.push((
            "CCWS_GUEST_PLAIN_WASM",
            Some("--no-default-features"),
            "archiver-plain",
            "ccws_archive_plain.wasm",
        ));
    }
    for (env_override, features, world, name) in worlds {
        println!("cargo:rerun-if-env-changed={env_override}");
        let built = match env::var_os(env_override) {
            Some(p) => {
                let p = PathBuf::from(p);
                println!("cargo:rerun-if-changed={}", p.display());
                p
            }
            None => build_guest(&root, features, &out_dir.join(world)),
        };
        let out = out_dir.join(name);
        std::fs::copy(&built, &out)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), out.display()));
    }
}

/// Run a nested `cargo build` of the guest into `target_dir`; returns the
/// component's path, after asking to rerun when any file it was built from
/// changes.
fn build_guest(root: &Path, features: Option<&str>, target_dir: &Path) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
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
        .arg(target_dir);
    for setting in PROFILE {
        command.args(["--config", setting]);
    }
    let status = command
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
    let built = target_dir.join("wasm32-wasip2/guest/ccws_archive.wasm");
    rerun_from_dep_info(&built.with_extension("d"));
    built
}

/// `cargo:rerun-if-changed` for every file cargo's dep-info at `path` lists
/// (a Makefile rule, `target: dep dep ...`, spaces in names escaped as `\ `).
fn rerun_from_dep_info(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading the guest's dep-info {}: {e}", path.display()));
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut dep = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    dep.push(' ');
                    chars.next();
                }
                ' ' => emit(&mut dep),
                c => dep.push(c),
            }
        }
        emit(&mut dep);
    }
}

fn emit(dep: &mut String) {
    if !dep.is_empty() {
        println!("cargo:rerun-if-changed={dep}");
        dep.clear();
    }
}
