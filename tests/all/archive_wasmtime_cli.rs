//! The `wasmtime` CLI runs the WASI-only `archiver-plain` component with no
//! host code at all: pack-file and unpack-file invoked directly.
//!
//! The CLI takes ~15 minutes to build here, so CI does not install it and
//! this test is ignored by default. Install the CLI with
//! `cargo install wasmtime-cli@48.0.8 --locked` (or name one with
//! `WASMTIME_CLI`), then run
//! `cargo test -p ccws-tests --test all archive_wasmtime_cli -- --ignored`.

use std::path::PathBuf;
use std::process::Command;

use ccws::archive::PLAIN_COMPONENT_WASM;
use ccws_tests::tree;

fn wasmtime_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WASMTIME_CLI") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")))
        .map(|d| d.join("wasmtime"))
        .find(|p| p.is_file())
}

fn invoke(cli: &PathBuf, work: &std::path::Path, wasm: &std::path::Path, call: &str) -> String {
    let out = Command::new(cli)
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/work", work.display()))
        .arg("--invoke")
        .arg(call)
        .arg(wasm)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wasmtime run --invoke {call}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
#[ignore = "needs the wasmtime CLI: cargo install wasmtime-cli@48.0.8 --locked"]
fn the_wasmtime_cli_runs_the_plain_component() {
    let cli = wasmtime_cli().expect(
        "no wasmtime CLI on PATH or in WASMTIME_CLI: cargo install wasmtime-cli@48.0.8 --locked",
    );
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("ccws_archive_plain.wasm");
    std::fs::write(&wasm, PLAIN_COMPONENT_WASM).unwrap();
    let work = dir.path().join("work");
    tree::write(&work, "src/notes/a.md", b"from the wasmtime CLI");
    tree::write(&work, "src/skip.tmp", b"left out");

    let packed = invoke(
        &cli,
        &work,
        &wasm,
        r#"pack-file("/work/src", "/work/t.tar.gz", {level: 6, exclude: ["*.tmp"], host-filter: false, limits: {max-entries: 1000, max-total-bytes: 1000000, max-file-bytes: 1000000, max-path-bytes: 4096, max-depth: 128, max-inflate-ratio: 1000, inflate-grace-bytes: 67108864}})"#,
    );
    assert!(packed.starts_with("ok({files: 1, dirs: 1"), "{packed}");
    assert!(
        packed.contains(r#"path: "skip.tmp", reason: excluded"#),
        "{packed}"
    );

    let unpacked = invoke(
        &cli,
        &work,
        &wasm,
        r#"unpack-file("/work/t.tar.gz", "/work/out", {limits: {max-entries: 1000, max-total-bytes: 1000000, max-file-bytes: 1000000, max-path-bytes: 4096, max-depth: 128, max-inflate-ratio: 1000, inflate-grace-bytes: 67108864}, exclude: [], host-filter: false})"#,
    );
    assert!(unpacked.starts_with("ok({files: 1"), "{unpacked}");
    assert_eq!(
        std::fs::read(work.join("out/notes/a.md")).unwrap(),
        b"from the wasmtime CLI"
    );

    // A hostile path is refused by the guest's own rules, CLI or not.
    let escaped = invoke(
        &cli,
        &work,
        &wasm,
        r#"unpack-file("/work/nope.tar.gz", "/work/out2", {limits: {max-entries: 1000, max-total-bytes: 1000000, max-file-bytes: 1000000, max-path-bytes: 4096, max-depth: 128, max-inflate-ratio: 1000, inflate-grace-bytes: 67108864}, exclude: [], host-filter: false})"#,
    );
    assert!(escaped.starts_with("err(io("), "{escaped}");
}
