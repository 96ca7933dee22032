#![warn(missing_docs)]
//! ccws: keeps an AI coding agent's per-session home directory alive between turns, in S3.
//!
//! - [`archive`]: the sandboxed archive component (wasmtime host side).
//! - [`config`]: settings from flags, AWS variables and profiles.
//! - [`durable`]: the files ccws's own state lives in (durable renames, locks, private dirs).
//! - [`s3`]: the S3 transport (hand-rolled SigV4 over reqwest).
//! - [`store`]: S3 or the built-in local store, behind one type.
//! - [`workspace`]: per-turn Setup / Teardown, the outbox and merging.

pub mod archive;
pub mod config;
pub mod durable;
pub mod harden;
pub mod s3;
pub mod store;
pub mod workspace;
