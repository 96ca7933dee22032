//! The command-line interface.

pub mod args;
pub mod commands;
pub mod error;
pub mod logging;
pub mod progress;
