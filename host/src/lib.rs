//! ccws: keeps an AI coding agent's per-session home directory alive between turns, in S3.
//!
//! - [`archive`]: the sandboxed archive component (wasmtime host side).
//! - [`s3`]: the S3 transport (hand-rolled SigV4 over reqwest).

pub mod archive;
pub mod s3;
