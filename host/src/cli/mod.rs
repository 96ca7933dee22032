//! The command-line interface.

pub mod args;
pub mod commands;
pub mod error;
pub mod logging;
pub mod ops;
pub mod output;
pub mod progress;
pub mod report;
