//! OS errors in words, for reports and error messages.

use std::io;

/// `e` in words: the system's description of it without the
/// " (os error N)" std appends. In the component N is WASI's errno (a full
/// disk is 51 there, 28 on Linux), which would only mislead.
pub(crate) fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    let Some(n) = e.raw_os_error() else {
        return text;
    };
    match text.strip_suffix(&format!(" (os error {n})")) {
        Some(words) => words.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errno_is_left_out() {
        // ENOSPC: 28 on Linux, 51 in WASI.
        let enospc = if cfg!(target_os = "wasi") { 51 } else { 28 };
        let full = io::Error::from_raw_os_error(enospc);
        assert_eq!(describe(&full), "No space left on device");
        let other = io::Error::other("the stream broke");
        assert_eq!(describe(&other), "the stream broke");
    }
}
