//! S3 transport: hand-rolled SigV4 over `reqwest`, streaming GET, single and multipart PUT,
//! retries with backoff and clock-skew correction.
//!
//! - [`config`]: the [`S3Config`], its builder and validation.
//! - [`sigv4`]: request signing.
//! - [`client`]: the [`S3Client`] and the object operations ([`multipart`] for large uploads,
//!   [`list`] for listing and batched deletion).
//! - [`retry`]: the [`RetryConfig`] (backoff with full jitter); `retry_context`: one budget of
//!   attempts and one backoff sequence per logical operation.
//! - [`error`]: the typed [`S3Error`].

mod cause;
mod checksum;
pub mod client;
pub mod config;
mod copy;
pub mod credential;
mod download;
pub mod error;
pub mod list;
pub mod multipart;
mod region;
mod request;
pub mod retry;
mod retry_context;
pub(crate) mod sigv4;

pub use client::{GetObject, ObjectMeta, PutCondition, S3Client};
pub use config::{ConfigError, Encryption, S3Config, S3ConfigBuilder};
pub use credential::{Cached, CredentialError, CredentialProvider, Credentials};
pub use error::S3Error;
pub use list::{DeleteFailure, ListPage};
pub use retry::RetryConfig;

#[cfg(test)]
mod sigv4_tests;
