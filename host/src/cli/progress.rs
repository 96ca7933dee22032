//! Progress on stderr, shown only when it is a terminal: a bar for
//! transfers of known size, a spinner with the elapsed time for steps of
//! unknown length (a setup or teardown of a big home).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-counting bar for a transfer of `len` bytes (if known), or a hidden
/// one when stderr is not a terminal.
pub fn bar(label: &str, len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(label.to_owned());
    pb
}

/// A spinner saying `label` and how long it has taken so far, until it is
/// finished; hidden when stderr is not a terminal.
pub fn activity(label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_message(label.to_owned());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}
