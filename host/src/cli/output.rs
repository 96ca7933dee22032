//! What ccws writes: results on stdout (text, or one compact JSON document
//! with `--json`), messages and errors on stderr.
//!
//! Nothing here panics on a closed stream. A closed stdout (`EPIPE`: the
//! reader went away) ends the output, not the work: the rest is dropped
//! quietly and the command exits as it would have; only a command whose
//! output is a hand-over (`setup`) asks for [`write_strict`] and undoes
//! itself when it fails.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::CliError;

/// Set once stdout was found closed: later writes are dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `bytes` to stdout and flush; any failure, a closed stdout
/// included, is an error.
pub fn write_strict(bytes: &[u8]) -> io::Result<()> {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Err(io::ErrorKind::BrokenPipe.into());
    }
    let mut out = io::stdout().lock();
    let res = out.write_all(bytes).and_then(|()| out.flush());
    if let Err(e) = &res {
        if e.kind() == io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
    res
}

/// Write `bytes` to stdout; a closed stdout drops them (and all later
/// output) quietly, another failure is an error.
pub fn write(bytes: &[u8]) -> Result<(), CliError> {
    match write_strict(bytes) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Output(e)),
    }
}

/// Write one line of text to stdout (see [`write`]).
pub fn line(text: &str) -> Result<(), CliError> {
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    write(buf.as_bytes())
}

/// `value` as one compact JSON document and a newline.
pub fn json_line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain data into memory cannot fail; a type that could
    // would be a bug, shown as a null rather than a panic.
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    bytes.push(b'\n');
    bytes
}

/// Write `value` to stdout as one compact JSON document (see [`write`]).
pub fn json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    write(&json_line(value))
}

/// Write one line to stderr; a closed or failing stderr is ignored (there
/// is nowhere left to say anything).
pub fn say(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err
        .write_all(text.as_bytes())
        .and_then(|()| err.write_all(b"\n"));
}

/// An error as a JSON document on stderr: `{"error":{"kind",...}}`.
pub fn error_json(e: &CliError) {
    let doc = serde_json::json!({
        "error": {
            "kind": e.kind(),
            "exit_code": e.exit_code(),
            "message": e.to_string(),
        }
    });
    let mut err = io::stderr().lock();
    let _ = err.write_all(&json_line(&doc));
}
