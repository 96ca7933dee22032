//! The guest's own unit tests, built for `wasm32-wasip2` and run in wasmtime
//! as a WASI command. There the pack source, the unpack destination and the
//! lookup of paths under the preopens are the code that talks to WASI
//! descriptors (`srcfs.rs`, `destfs.rs`, `wasifs.rs`), which the native run
//! of the same tests never reaches: every pack, unpack and file round trip
//! among them goes through it, in directories under a preopened `/tmp`.
//!
//! The tests are built with a nested `cargo test --no-run` into
//! `target/wasi-tests` (the first run compiles the guest's dependencies for
//! wasm, later ones only what changed).

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command as WasiCommand;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Build the guest's unit tests for `wasm32-wasip2` (the `archiver-plain`
/// world, which imports nothing but WASI) and return the test component.
fn build_guest_tests() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target/wasi-tests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "test",
            "--package",
            "ccws-archive",
            "--lib",
            "--target",
            "wasm32-wasip2",
            "--no-default-features",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo to build the guest's tests for wasm32-wasip2");
    assert!(
        out.status.success(),
        "building the guest's tests for wasm32-wasip2 failed (is the target installed? \
         `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "ccws_archive")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo named no test executable for the guest")
}

struct Host {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Run the test component with `tmp` preopened as `/tmp` (where the tests
/// make their temporary directories); its exit code and output.
fn run(wasm: &Path, tmp: &Path, args: &[&str]) -> (i32, String) {
    let engine = Engine::new(Config::new().wasm_component_model(true)).unwrap();
    let component = Component::from_file(&engine, wasm).unwrap();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let output = MemoryOutputPipe::new(16 << 20);
    let mut wasi = WasiCtxBuilder::new();
    wasi.preopened_dir(tmp, "/tmp", FsPerms::ReadWrite)
        .unwrap()
        .env("TMPDIR", "/tmp")
        .args(&[&["ccws_archive"], args].concat())
        .stdout(output.clone())
        .stderr(output.clone());
    let mut store = Store::new(
        &engine,
        Host {
            wasi: wasi.build(),
            table: ResourceTable::new(),
        },
    );
    let command = WasiCommand::instantiate(&mut store, &component, &linker).unwrap();
    let code = match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => 0,
        Ok(Err(())) => 1,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => exit.0,
            None => panic!("the guest's tests trapped: {e:#}\n{}", text(&output)),
        },
    };
    (code, text(&output))
}

fn text(pipe: &MemoryOutputPipe) -> String {
    String::from_utf8_lossy(&pipe.contents()).into_owned()
}

#[test]
fn the_guests_unit_tests_pass_on_its_wasi_filesystem_layer() {
    let wasm = build_guest_tests();
    let tmp = tempfile::tempdir().unwrap();
    // One thread: a WASI command has no threads.
    let (code, output) = run(&wasm, tmp.path(), &["--test-threads=1"]);
    assert_eq!(code, 0, "the guest's tests failed under WASI:\n{output}");
    let passed: usize = output
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no test summary:\n{output}"));
    // The round trips that go through the WASI layer ran and passed.
    for name in [
        "pack_file_and_unpack_file_round_trip",
        "unpack_restores_file_and_directory_mtimes",
        "what_breaks_a_limit_is_left_out_and_the_rest_unpacks",
        "missing_source_is_an_io_error_naming_it",
        "pack_tar_then_gzip_is_pack",
    ] {
        assert!(
            output
                .lines()
                .any(|l| l.contains(name) && l.ends_with("... ok")),
            "{name} did not pass under WASI:\n{output}"
        );
    }
    assert!(passed >= 60, "only {passed} tests ran:\n{output}");
    // Each test removed what it made.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind in /tmp: {left:?}");
}
