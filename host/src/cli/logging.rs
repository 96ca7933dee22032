//! `tracing` to stderr: warnings by default, `-v` info, `-vv` debug; `RUST_LOG` wins.

use tracing_subscriber::EnvFilter;

/// Install the subscriber.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,ccws=info",
        _ => "debug,ccws=debug,cranelift_codegen=info,wasmtime_internal_cranelift=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
