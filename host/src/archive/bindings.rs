//! The generated WIT bindings for the `ccws:archive/archiver` world. All
//! `bindgen!` output lives here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "archiver",
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
    },
});

pub use self::ccws::archive::filter::Host as FilterHost;
pub use self::ccws::archive::types as wit;
