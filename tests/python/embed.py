#!/usr/bin/env python3
"""Embed the ccws archive component with the Python `wasmtime` package alone.

Usage: python3 embed.py <component.wasm> <workdir>

Builds a small tree under <workdir>/src, packs it with the component's plain
`pack-file` export into <workdir>/out/tree.tar.gz, unpacks that with
`unpack-file` into <workdir>/out/dest, and checks the result. No ccws code is
involved: only WASI preopens, strings and the WIT records. Exits non-zero with
a message on any failure; exit code 3 means the `wasmtime` module is missing.
"""

import os
import sys
import zlib

try:
    import wasmtime
    from wasmtime import component as wc
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"the Python `wasmtime` package is not installed ({e}); "
          "run `python3 -m pip install wasmtime==48.0.0`", file=sys.stderr)
    sys.exit(3)

IFACE = "ccws:archive/archive@0.1.0"
FILES = {
    "hello.txt": b"hello from python\n",
    "nested/deeper/data.bin": bytes(range(256)) * 3,
    "nested/empty.txt": b"",
}


def record(**fields):
    """A WIT record value: wasmtime-py looks fields up by their WIT (kebab-case) names."""
    r = wc.Record()
    for k, v in fields.items():
        setattr(r, k.replace("_", "-"), v)
    return r



def call(linker, component, engine, preopens, name, *args):
    """Instantiate the component in a fresh store with `preopens` and call one export."""
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    for host, guest, mutable in preopens:
        wasi.preopen_dir(host, guest, mutable)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, component)
    iface = instance.get_export_index(store, IFACE)
    if iface is None:
        raise SystemExit(f"export {IFACE} not found")
    idx = instance.get_export_index(store, name, iface)
    if idx is None:
        raise SystemExit(f"export {IFACE}#{name} not found")
    func = instance.get_func(store, idx)
    out = func(store, *args)
    func.post_return(store)
    return store, instance, iface, out


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    wasm_path, work = sys.argv[1], sys.argv[2]
    src = os.path.join(work, "src")
    out = os.path.join(work, "out")
    for rel, data in FILES.items():
        p = os.path.join(src, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    os.makedirs(os.path.join(src, "empty-dir"), exist_ok=True)
    os.makedirs(os.path.join(src, "skip-me", "inner"), exist_ok=True)
    with open(os.path.join(src, "skip-me", "inner", "gone.txt"), "wb") as f:
        f.write(b"excluded by the Python filter")
    with open(os.path.join(src, "nested", "scratch.tmp"), "wb") as f:
        f.write(b"excluded by a pattern")
    os.makedirs(out, exist_ok=True)

    engine = wasmtime.Engine()
    component = wc.Component.from_file(engine, wasm_path)
    linker = wc.Linker(engine)
    linker.add_wasip2()
    # The `ccws:archive/filter` import: the exclusion predicate. (Note:
    # `define_unknown_imports_as_traps` cannot be used for it here: in
    # wasmtime 48 it also shadows the component's `wasi:io/*@0.2.12` imports,
    # which the linker's WASI only matches by semver, and instantiation then
    # fails with "mismatched resource types".)
    asked = []

    def check_path(_store, rel, kind):
        asked.append((rel, kind))
        return "exclude" if rel == "skip-me" else "keep"

    # The `ccws:archive/checksum` import: CRC-32 of the bytes the guest
    # compresses or decompresses, here by Python's zlib.
    def crc32(_store, crc, data):
        return zlib.crc32(bytes(data), crc)

    with linker.root() as root:
        with root.add_instance("ccws:archive/filter@0.1.0") as filt:
            filt.add_func("check", check_path)
        with root.add_instance("ccws:archive/checksum@0.1.0") as checksum:
            checksum.add_func("crc32", crc32)

    # default-limits, to build the unpack options from.
    _, _, _, limits = call(linker, component, engine, [], "default-limits")

    pack_opts = record(level=6, exclude=["**/*.tmp"], host_filter=True, limits=limits)
    _, _, _, res = call(linker, component, engine,
                        [(src, "/src", False), (out, "/out", True)],
                        "pack-file", "/src", "/out/tree.tar.gz", pack_opts)
    report = unwrap(res, "pack-file")
    check(report.files == len(FILES), f"pack files {report.files}")
    check(report.dirs == 3, f"pack dirs {report.dirs}")  # empty-dir, nested, nested/deeper
    skipped = sorted((s.path, s.reason) for s in report.skipped)
    check(skipped == [("nested/scratch.tmp", "excluded"), ("skip-me", "excluded")],
          f"pack skipped {skipped}")
    check(("skip-me", "directory") in asked, f"filter was not asked about skip-me: {asked}")
    check(not any(rel.startswith("skip-me/") for rel, _ in asked), "excluded subtree was walked")
    check(os.path.getsize(os.path.join(out, "tree.tar.gz")) > 0, "archive is empty")

    unpack_opts = record(limits=limits, exclude=[], host_filter=False)
    _, _, _, res = call(linker, component, engine, [(out, "/out", True)],
                        "unpack-file", "/out/tree.tar.gz", "/out/dest", unpack_opts)
    report = unwrap(res, "unpack-file")
    check(report.files == len(FILES), f"unpack files {report.files}")
    for rel, data in FILES.items():
        with open(os.path.join(out, "dest", rel), "rb") as f:
            check(f.read() == data, f"content of {rel}")
    check(os.path.isdir(os.path.join(out, "dest", "empty-dir")), "empty-dir missing")
    check(not os.path.exists(os.path.join(out, "dest", "skip-me")), "skip-me was unpacked")

    # A typed error comes back as the `err` case of the result.
    with open(os.path.join(out, "bad.tar.gz"), "wb") as f:
        f.write(b"this is not gzip")
    _, _, _, res = call(linker, component, engine, [(out, "/out", True)],
                        "unpack-file", "/out/bad.tar.gz", "/out/bad", unpack_opts)
    err = expect_err(res, "unpack-file of non-gzip")
    check(err.tag == "corrupt", f"expected corrupt, got {err.tag}")
    check("gzip" in err.payload.message, f"unexpected message {err.payload.message!r}")
    print("ok: packed and unpacked", report.files, "files through the component from Python")


def unwrap(res, what):
    """`result<report, archive-error>`: wasmtime-py lifts it untagged, since the
    two cases have different Python types: the report as a `Record`, an error
    as the `archive-error` `Variant`."""
    if isinstance(res, wc.Variant):
        payload = vars(res.payload) if hasattr(res.payload, "__dict__") else res.payload
        raise SystemExit(f"{what} failed: {res.tag}: {payload}")
    return res


def expect_err(res, what):
    if isinstance(res, wc.Variant):
        return res
    raise SystemExit(f"{what}: expected an error, got {res!r}")


def check(cond, what):
    if not cond:
        raise SystemExit(f"check failed: {what}")


if __name__ == "__main__":
    main()
