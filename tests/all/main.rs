//! The integration tests of the component and the host's library, as one
//! test binary (one link of wasmtime, not one per file): the archive
//! against hostile input, GNU tar and other hosts; the S3 client against
//! real servers on loopback; workspaces turn by turn.
//!
//! The `ccws` binary's own tests are the host package's (`host/tests/cli`).

mod archive_embed;
mod archive_gnu_tar;
mod archive_hostile;
mod archive_pipeline;
mod archive_roundtrip;
mod archive_sandbox;
mod archive_wasi_layer;
mod archive_wasmtime_cli;
mod credentials;
mod s3_faults;
mod s3_race;
mod s3_retry;
mod s3_server;
mod s3_tls;
mod store_list;
mod workspace_turns;
