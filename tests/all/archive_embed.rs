//! Other hosts embed the component with no ccws code: the plain path-only
//! exports (`pack-file`, `unpack-file`) need nothing but WASI preopens and
//! strings. Here a minimal second Rust host, written against plain
//! `wasmtime` + `wasmtime-wasi` with dynamic values, and the Python
//! `wasmtime` package (`tests/python/embed.py`).

use std::path::Path;
use std::process::Command;

use ccws::archive::{COMPONENT_WASM, PLAIN_COMPONENT_WASM};
use ccws_tests::tree;
use wasmtime::component::{Component, Linker, ResourceTable, Val, WasmList};
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

const IFACE: &str = "ccws:archive/archive@0.1.0";
const CHECKSUM: &str = "ccws:archive/checksum@0.1.0";

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

const FILTER: &str = "ccws:archive/filter@0.1.0";

/// A minimal embedding: one engine, WASI p2, and the `filter` and
/// `checksum` imports.
struct Embedder {
    engine: Engine,
    component: Component,
    linker: Linker<Host>,
}

/// How the embedder satisfies the `ccws:archive/filter` import.
enum FilterImport {
    /// A trap: the guest calls `check` only when an options record sets
    /// `host-filter`, so a host that never does may trap.
    Trap,
    /// Exclude exactly this relative path, keep the rest.
    Exclude(&'static str),
    /// No filter at all: the WASI-only `archiver-plain` component.
    Plain,
}

impl Embedder {
    fn new(filter: FilterImport) -> Self {
        let engine = Engine::default();
        let wasm = match filter {
            FilterImport::Plain => PLAIN_COMPONENT_WASM,
            _ => COMPONENT_WASM,
        };
        let component = Component::new(&engine, wasm).expect("compiling the component");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        if let FilterImport::Plain = filter {
            return Embedder {
                engine,
                component,
                linker,
            };
        }
        // Not `linker.define_unknown_imports_as_traps(&component)`: in
        // wasmtime 48 it also stubs the `error` resource that
        // `wasi:io/streams` re-exports, and instantiation then fails (see
        // `define_unknown_imports_as_traps_breaks_wasi_p2` below).
        let mut instance = linker.instance(FILTER).unwrap();
        match filter {
            FilterImport::Trap => instance
                .func_new("check", |_, _, _, _| {
                    wasmtime::bail!("{FILTER}#check called, but this host never sets host-filter")
                })
                .unwrap(),
            FilterImport::Exclude(path) => instance
                .func_new("check", move |_, _, params, results| {
                    let verdict = match &params[0] {
                        Val::String(rel) if rel == path => "exclude",
                        _ => "keep",
                    };
                    results[0] = Val::Enum(verdict.into());
                    Ok(())
                })
                .unwrap(),
            FilterImport::Plain => unreachable!(),
        }
        // The `archiver` world also imports `checksum`: CRC-32 of the
        // guest's bytes, read in place.
        linker
            .instance(CHECKSUM)
            .unwrap()
            .func_wrap(
                "crc32",
                |store: StoreContextMut<'_, Host>, (crc, data): (u32, WasmList<u8>)| {
                    let mut h = crc32fast::Hasher::new_with_initial(crc);
                    h.update(data.as_le_slice(&store));
                    Ok((h.finalize(),))
                },
            )
            .unwrap();
        Embedder {
            engine,
            component,
            linker,
        }
    }

    /// Call export `name` of the archive interface in a fresh store with
    /// these preopens (host dir, guest path, perms).
    fn call(&self, preopens: &[(&Path, &str, FsPerms)], name: &str, args: &[Val]) -> Val {
        let mut wasi = WasiCtxBuilder::new();
        for (host, guest, perms) in preopens {
            wasi.preopened_dir(host, guest, *perms).unwrap();
        }
        let mut store = Store::new(
            &self.engine,
            Host {
                wasi: wasi.build(),
                table: ResourceTable::new(),
            },
        );
        let instance = self
            .linker
            .instantiate(&mut store, &self.component)
            .unwrap();
        let iface = instance
            .get_export_index(&mut store, None, IFACE)
            .unwrap_or_else(|| panic!("no export {IFACE}"));
        let index = instance
            .get_export_index(&mut store, Some(&iface), name)
            .unwrap_or_else(|| panic!("no export {IFACE}#{name}"));
        let func = instance.get_func(&mut store, index).unwrap();
        let mut results = [Val::Bool(false)];
        func.call(&mut store, args, &mut results)
            .unwrap_or_else(|e| panic!("calling {name}: {e:#}"));
        let [result] = results;
        result
    }
}

fn field<'a>(record: &'a Val, name: &str) -> &'a Val {
    match record {
        Val::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no field {name} in {record:?}")),
        other => panic!("not a record: {other:?}"),
    }
}

fn ok_report(result: Val) -> Val {
    match result {
        Val::Result(Ok(Some(report))) => *report,
        other => panic!("expected ok(report), got {other:?}"),
    }
}

/// The `archive-error` case name and payload of an `err` result.
fn err_case(result: Val) -> (String, Option<Box<Val>>) {
    match result {
        Val::Result(Err(Some(e))) => match *e {
            Val::Variant(case, payload) => (case, payload),
            other => panic!("not an archive-error: {other:?}"),
        },
        other => panic!("expected err(archive-error), got {other:?}"),
    }
}

fn strings(list: &Val) -> Vec<String> {
    match list {
        Val::List(items) => items
            .iter()
            .map(|v| match v {
                Val::String(s) => s.clone(),
                other => panic!("not a string: {other:?}"),
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

fn pack_options(exclude: &[&str]) -> Val {
    pack_options_with(exclude, false)
}

fn pack_options_with(exclude: &[&str], host_filter: bool) -> Val {
    Val::Record(vec![
        ("level".into(), Val::U8(6)),
        (
            "exclude".into(),
            Val::List(exclude.iter().map(|s| Val::String((*s).into())).collect()),
        ),
        ("host-filter".into(), Val::Bool(host_filter)),
        ("limits".into(), default_limits()),
    ])
}

/// `default-limits` as this crate builds them, field by field.
fn default_limits() -> Val {
    let l = ccws_archive::Limits::default();
    Val::Record(vec![
        ("max-entries".into(), Val::U64(l.max_entries)),
        ("max-total-bytes".into(), Val::U64(l.max_total_bytes)),
        ("max-file-bytes".into(), Val::U64(l.max_file_bytes)),
        ("max-path-bytes".into(), Val::U32(l.max_path_bytes)),
        ("max-depth".into(), Val::U32(l.max_depth)),
        ("max-inflate-ratio".into(), Val::U32(l.max_inflate_ratio)),
        (
            "inflate-grace-bytes".into(),
            Val::U64(l.inflate_grace_bytes),
        ),
    ])
}

fn skipped(report: &Val) -> Vec<(String, String)> {
    match field(report, "skipped") {
        Val::List(items) => items
            .iter()
            .map(|s| match (field(s, "path"), field(s, "reason")) {
                (Val::String(p), Val::Enum(r)) => (p.clone(), r.clone()),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn unpack_options(limits: Val) -> Val {
    Val::Record(vec![
        ("limits".into(), limits),
        ("exclude".into(), Val::List(Vec::new())),
        ("host-filter".into(), Val::Bool(false)),
    ])
}

#[test]
fn a_plain_wasmtime_host_uses_the_path_only_exports() {
    let host = Embedder::new(FilterImport::Trap);
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "notes/ünï.txt", "plain host".as_bytes());
    tree::write(src.path(), "skip.tmp", b"excluded");
    tree::write(src.path(), "run.sh", b"#!/bin/sh\n");
    tree::make_executable(src.path(), "run.sh");
    let out = tempfile::tempdir().unwrap();

    let limits = host.call(&[], "default-limits", &[]);
    assert_eq!(limits, default_limits());
    assert_eq!(field(&limits, "max-entries"), &Val::U64(1_000_000));
    assert_eq!(field(&limits, "max-path-bytes"), &Val::U32(3072));

    let ro = FsPerms::ReadOnly;
    let rw = FsPerms::ReadWrite;
    let report = ok_report(host.call(
        &[(src.path(), "/src", ro), (out.path(), "/out", rw)],
        "pack-file",
        &[
            Val::String("/src".into()),
            Val::String("/out/tree.tar.gz".into()),
            pack_options(&["*.tmp"]),
        ],
    ));
    assert_eq!(field(&report, "files"), &Val::U64(2));
    assert_eq!(field(&report, "dirs"), &Val::U64(1));
    // Without the host filter, a WASI guest cannot see file modes: nothing
    // is marked executable (ccws's own host supplies that bit).
    assert!(strings(field(&report, "executables")).is_empty());
    assert_eq!(
        skipped(&report),
        [("skip.tmp".to_owned(), "excluded".to_owned())]
    );

    // The archive is an ordinary tar.gz.
    let bytes = std::fs::read(out.path().join("tree.tar.gz")).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["notes/", "notes/ünï.txt", "run.sh"]);

    let report = ok_report(host.call(
        &[(out.path(), "/out", rw)],
        "unpack-file",
        &[
            Val::String("/out/tree.tar.gz".into()),
            Val::String("/out/dest".into()),
            unpack_options(limits.clone()),
        ],
    ));
    assert_eq!(field(&report, "files"), &Val::U64(2));
    assert_eq!(
        std::fs::read(out.path().join("dest/notes/ünï.txt")).unwrap(),
        "plain host".as_bytes()
    );
    assert_eq!(
        std::fs::read(out.path().join("dest/run.sh")).unwrap(),
        b"#!/bin/sh\n"
    );

    // Typed errors come back as the `err` case, not as traps.
    let (case, payload) = err_case(host.call(
        &[(out.path(), "/out", rw)],
        "unpack-file",
        &[
            Val::String("/out/missing.tar.gz".into()),
            Val::String("/out/dest2".into()),
            unpack_options(limits.clone()),
        ],
    ));
    assert_eq!(case, "io");
    assert_eq!(
        field(&payload.unwrap(), "path"),
        &Val::String("/out/missing.tar.gz".into())
    );

    std::fs::write(out.path().join("bad.tar.gz"), b"not gzip at all").unwrap();
    let (case, payload) = err_case(host.call(
        &[(out.path(), "/out", rw)],
        "unpack-file",
        &[
            Val::String("/out/bad.tar.gz".into()),
            Val::String("/out/dest3".into()),
            unpack_options(limits.clone()),
        ],
    ));
    assert_eq!(case, "corrupt");
    let message = match field(&payload.unwrap(), "message") {
        Val::String(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(message.contains("gzip"), "{message}");

    // The capability sandbox: a path outside every preopen is unreachable.
    let (case, _) = err_case(host.call(
        &[(out.path(), "/out", rw)],
        "pack-file",
        &[
            Val::String("/etc".into()),
            Val::String("/out/etc.tar.gz".into()),
            pack_options(&[]),
        ],
    ));
    assert_eq!(case, "io");
    // ... and the failed pack left no archive or partial file behind.
    let left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("etc.tar.gz"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A read-only preopen cannot be written through.
    let (case, _) = err_case(host.call(
        &[(src.path(), "/src", ro)],
        "pack-file",
        &[
            Val::String("/src".into()),
            Val::String("/src/inside.tar.gz".into()),
            pack_options(&[]),
        ],
    ));
    assert_eq!(case, "io");
    assert!(!src.path().join("inside.tar.gz").exists());

    // Nor unpacked into, whether the destination is the preopen or below it.
    for dest in ["/ro", "/ro/deeper"] {
        let (case, _) = err_case(host.call(
            &[(out.path(), "/out", rw), (src.path(), "/ro", ro)],
            "unpack-file",
            &[
                Val::String("/out/tree.tar.gz".into()),
                Val::String(dest.into()),
                unpack_options(limits.clone()),
            ],
        ));
        assert_eq!(case, "io", "{dest}");
    }
    let mut left: Vec<String> = std::fs::read_dir(src.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["notes", "run.sh", "skip.tmp"]);
    assert_eq!(
        std::fs::read(src.path().join("notes/ünï.txt")).unwrap(),
        "plain host".as_bytes()
    );
}

#[test]
fn a_plain_wasmtime_host_supplies_the_filter() {
    let host = Embedder::new(FilterImport::Exclude("private"));
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "private/key", b"k");
    tree::write(src.path(), "private/deeper/more", b"m");
    tree::write(src.path(), "public/readme", b"r");
    let out = tempfile::tempdir().unwrap();
    let report = ok_report(host.call(
        &[
            (src.path(), "/src", FsPerms::ReadOnly),
            (out.path(), "/out", FsPerms::ReadWrite),
        ],
        "pack-file",
        &[
            Val::String("/src".into()),
            Val::String("/out/a.tar.gz".into()),
            pack_options_with(&[], true),
        ],
    ));
    assert_eq!(
        skipped(&report),
        [("private".to_owned(), "excluded".to_owned())]
    );
    assert_eq!(field(&report, "files"), &Val::U64(1));

    // The trap stub really is only safe while host-filter stays false.
    let trapping = Embedder::new(FilterImport::Trap);
    let mut wasi = WasiCtxBuilder::new();
    wasi.preopened_dir(src.path(), "/src", FsPerms::ReadOnly)
        .unwrap();
    wasi.preopened_dir(out.path(), "/out", FsPerms::ReadWrite)
        .unwrap();
    let mut store = Store::new(
        &trapping.engine,
        Host {
            wasi: wasi.build(),
            table: ResourceTable::new(),
        },
    );
    let instance = trapping
        .linker
        .instantiate(&mut store, &trapping.component)
        .unwrap();
    let iface = instance.get_export_index(&mut store, None, IFACE).unwrap();
    let index = instance
        .get_export_index(&mut store, Some(&iface), "pack-file")
        .unwrap();
    let func = instance.get_func(&mut store, index).unwrap();
    let mut results = [Val::Bool(false)];
    let args = [
        Val::String("/src".into()),
        Val::String("/out/b.tar.gz".into()),
        pack_options_with(&[], true),
    ];
    let err = func.call(&mut store, &args, &mut results).unwrap_err();
    assert!(
        format!("{err:#}").contains("never sets host-filter"),
        "{err:#}"
    );
}

/// The names in a tar.gz, in order.
fn archive_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// The guest walks its source through WASI descriptors, finding the source
/// path under a preopen itself: as wasi-libc would, by the longest preopen
/// name that is a whole-component prefix, relative paths from `/`, and a
/// symlink naming the source followed (inside the preopen).
#[test]
fn pack_file_finds_its_source_under_the_longest_matching_preopen() {
    let host = Embedder::new(FilterImport::Trap);
    let data = tempfile::tempdir().unwrap();
    tree::write(data.path(), "a/b/outer.txt", b"outer");
    tree::write(data.path(), "a/b/sub/deep.txt", b"deep");
    std::os::unix::fs::symlink("a/b", data.path().join("link")).unwrap();
    let nested = tempfile::tempdir().unwrap();
    tree::write(nested.path(), "b/inner.txt", b"inner");
    let out = tempfile::tempdir().unwrap();
    let ro = FsPerms::ReadOnly;
    let preopens = [
        (data.path(), "/data", ro),
        (nested.path(), "/data/a", ro),
        (out.path(), "/out", FsPerms::ReadWrite),
    ];
    let pack = |src: &str, to: &str| {
        host.call(
            &preopens,
            "pack-file",
            &[
                Val::String(src.into()),
                Val::String(format!("/out/{to}")),
                pack_options(&[]),
            ],
        )
    };
    for (src, to, want) in [
        // "/data/a" is the longer prefix: its own tree, not data's a/.
        ("/data/a/b", "nested.tgz", &["inner.txt"][..]),
        ("/data/a/b/", "slash.tgz", &["inner.txt"][..]),
        ("data/a/b", "relative.tgz", &["inner.txt"][..]),
        (
            "/data/link",
            "link.tgz",
            &["outer.txt", "sub/", "sub/deep.txt"][..],
        ),
        ("/data/./link/sub", "dot.tgz", &["deep.txt"][..]),
    ] {
        let report = ok_report(pack(src, to));
        assert_eq!(archive_names(&out.path().join(to)), want, "{src}");
        assert_eq!(
            field(&report, "files"),
            &Val::U64(want.iter().filter(|n| !n.ends_with('/')).count() as u64),
            "{src}"
        );
    }
    // Not a whole-component prefix of any preopen, or not there at all: an
    // io error naming the path, and nothing written.
    for src in ["/dat", "/data/missing", "/data/a/b/inner.txt"] {
        let (case, payload) = err_case(pack(src, "bad.tgz"));
        assert_eq!(case, "io", "{src}");
        assert_eq!(field(&payload.unwrap(), "path"), &Val::String(src.into()));
        assert!(!out.path().join("bad.tgz").exists(), "{src}");
    }
}

/// Evidence for the comment in `Embedder::new` (and a canary: when a
/// wasmtime upgrade fixes this, the simpler advice works again).
#[test]
fn define_unknown_imports_as_traps_breaks_wasi_p2() {
    let engine = Engine::default();
    let component = Component::new(&engine, COMPONENT_WASM).unwrap();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let mut store = Store::new(
        &engine,
        Host {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        },
    );
    let err = linker.instantiate(&mut store, &component).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("wasi:io/streams") && msg.contains("mismatched resource types"),
        "{msg}"
    );
}

#[test]
fn python_wasmtime_embeds_the_component() {
    let work = tempfile::tempdir().unwrap();
    let wasm = work.path().join("ccws_archive.wasm");
    std::fs::write(&wasm, COMPONENT_WASM).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/embed.py");
    let dir = work.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    // `CCWS_PYTHON` names another interpreter.
    let python = std::env::var_os("CCWS_PYTHON").unwrap_or_else(|| "python3".into());
    let out = Command::new(python)
        .arg(&script)
        .arg(&wasm)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running python3 {}: {e} (is Python 3 installed?)",
                script.display()
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        let msg = format!(
            "the Python `wasmtime` module is missing: install it with \
             `python3 -m pip install wasmtime==48.0.0`\n{stderr}"
        );
        // CI installs it and sets this, so that there a missing module fails.
        if std::env::var_os("CCWS_REQUIRE_PYTHON_WASMTIME").is_some() {
            panic!("{msg}");
        }
        // Straight to the terminal (the test harness keeps `eprintln!` to
        // itself for a test that passes), as an ignored test's reason shows.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "python_wasmtime_embeds_the_component: skipped: {msg}"
        );
        return;
    }
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display(),
        out.status
    );
    assert!(
        stdout.contains("ok: packed and unpacked 3 files"),
        "{stdout}"
    );
}

#[test]
fn the_plain_component_imports_only_wasi() {
    let engine = Engine::default();
    let imports = |wasm: &[u8]| -> Vec<String> {
        let c = Component::new(&engine, wasm).unwrap();
        c.component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect()
    };
    // WASI, plus the types-only `types` interface (records and enums, no
    // functions: nothing for a host to supply).
    let plain = imports(PLAIN_COMPONENT_WASM);
    assert!(
        plain
            .iter()
            .all(|i| i.starts_with("wasi:") || i == "ccws:archive/types@0.1.0"),
        "{plain:?}"
    );
    assert!(!plain.iter().any(|i| i == FILTER), "{plain:?}");
    let full = imports(COMPONENT_WASM);
    assert!(full.iter().any(|i| i == FILTER), "{full:?}");

    // A host with nothing but WASI packs and unpacks with it.
    let host = Embedder::new(FilterImport::Plain);
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "a/b.txt", b"wasi only");
    let out = tempfile::tempdir().unwrap();
    let ro = FsPerms::ReadOnly;
    let rw = FsPerms::ReadWrite;
    let report = ok_report(host.call(
        &[(src.path(), "/src", ro), (out.path(), "/out", rw)],
        "pack-file",
        &[
            Val::String("/src".into()),
            Val::String("/out/t.tar.gz".into()),
            pack_options(&[]),
        ],
    ));
    assert_eq!(field(&report, "files"), &Val::U64(1));
    let limits = host.call(&[], "default-limits", &[]);
    let report = ok_report(host.call(
        &[(out.path(), "/out", rw)],
        "unpack-file",
        &[
            Val::String("/out/t.tar.gz".into()),
            Val::String("/out/x".into()),
            unpack_options(limits),
        ],
    ));
    assert_eq!(field(&report, "files"), &Val::U64(1));
    assert_eq!(
        std::fs::read(out.path().join("x/a/b.txt")).unwrap(),
        b"wasi only"
    );
    // Asking it for the host filter is a clear error, not a trap.
    let (case, payload) = err_case(host.call(
        &[(src.path(), "/src", ro), (out.path(), "/out", rw)],
        "pack-file",
        &[
            Val::String("/src".into()),
            Val::String("/out/u.tar.gz".into()),
            pack_options_with(&[], true),
        ],
    ));
    assert_eq!(case, "invalid-options");
    assert!(
        format!("{payload:?}").contains("archiver-plain"),
        "{payload:?}"
    );
}
