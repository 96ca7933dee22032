//! Who owns a live session, and ccws's small JSON files. An owner process
//! that is gone means the session was abandoned (crash, SIGKILL) and is
//! recovered by the next Setup.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// The process that owns a live session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks since boot, from `/proc/<pid>/stat`), so a
    /// reused pid is not mistaken for the owner.
    pub start: Option<u64>,
}

impl Owner {
    /// The process `pid`, as it is now.
    pub fn of(pid: u32) -> Self {
        Owner {
            pid,
            start: start_time(pid),
        }
    }

    /// Whether that process still runs.
    pub fn is_alive(&self) -> bool {
        // SAFETY: kill with signal 0 only checks for existence/permission.
        let exists = unsafe { libc::kill(self.pid as libc::pid_t, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        exists && (self.start.is_none() || start_time(self.pid) == self.start)
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Write `value` as JSON to `dir/name` via a temp file and a rename (atomic,
/// not synced: callers that need durability sync the file themselves).
pub fn write_json<T: serde::Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    // One write: serde_json writes token by token, so never to the file directly.
    tmp.write_all(&serde_json::to_vec(value)?)?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// The most ccws reads of one of its JSON files (a manifest of a large
/// home is a few MB).
const JSON_LIMIT: u64 = 64 << 20;

/// Read JSON from `path`; `Ok(None)` if it does not exist. A symlink, a
/// FIFO or a device there, or more than [`JSON_LIMIT`] bytes, is an error,
/// not something to read.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    let Some(bytes) = super::untrusted::read_small(path, JSON_LIMIT)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_dead_one_is_not() {
        let me = Owner::of(std::process::id());
        assert!(me.start.is_some());
        assert!(me.is_alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let owner = Owner::of(pid);
        child.wait().unwrap();
        assert!(!owner.is_alive());
        let reused = Owner {
            pid: std::process::id(),
            start: me.start.map(|s| s + 1),
        };
        assert!(
            !reused.is_alive(),
            "a different start time means another process"
        );
    }
}
