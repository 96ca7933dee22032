//! Keeping the agent out of ccws's own process.
//!
//! `ccws run` starts the agent as the same user as itself, and Linux lets a
//! process read another of the same user's `/proc/<pid>/environ` and
//! `/proc/<pid>/mem`, or ptrace it: that is where ccws holds the store's
//! credentials. Scrubbing them from the agent's environment (see
//! `ccws run --pass-aws-env`) is not enough on its own. A process marked not
//! dumpable, as `ssh-agent` marks itself, is closed to all of that for every
//! process without `CAP_SYS_PTRACE`; the agent, a fresh `exec`, is dumpable
//! as usual.

use std::collections::HashMap;
use std::io;

/// Mark this process not dumpable (Linux; elsewhere a no-op): its
/// `/proc/<pid>/environ`, memory and ptrace are closed to other processes of
/// the same user, and it leaves no core dump.
pub fn forbid_inspection() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no
        // memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Take a copy of the process environment, then remove the variables
/// `secret` names from it and overwrite their values in place in the
/// environment block the process started with (which `/proc/<pid>/environ`
/// shows, whatever `remove_var` does), so that they live on only in the
/// returned map. Call it first thing in `main`, while no other thread runs.
pub fn take_environment(secret: &[&str]) -> HashMap<String, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            static mut environ: *mut *mut libc::c_char;
        }
        // SAFETY: single-threaded (the caller's contract); `environ` is the
        // C library's NULL-terminated array of NUL-terminated strings, and
        // each string is writable memory of this process (the initial
        // stack, or a `setenv` copy). Bytes are only overwritten up to the
        // string's own NUL.
        unsafe {
            let mut p = environ;
            while !p.is_null() && !(*p).is_null() {
                let entry = *p;
                let bytes = std::ffi::CStr::from_ptr(entry).to_bytes();
                if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
                    if secret.iter().any(|s| s.as_bytes() == &bytes[..eq]) {
                        let value = entry.add(eq + 1);
                        std::ptr::write_bytes(value, 0, bytes.len() - eq - 1);
                    }
                }
                p = p.add(1);
            }
        }
    }
    for name in secret {
        if env.contains_key(*name) {
            // SAFETY (edition 2021: a safe call): no other thread runs yet.
            std::env::remove_var(name);
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process is dumpable.
    #[cfg(target_os = "linux")]
    fn is_dumpable() -> bool {
        // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
        unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
    }

    /// The flag itself; that an agent then cannot read ccws's environment
    /// is tested end to end in `host/tests/cli`.
    #[test]
    #[cfg(target_os = "linux")]
    fn forbid_inspection_clears_the_dumpable_flag() {
        // Test binaries start dumpable; this one stays non-dumpable after,
        // which changes nothing for the other tests.
        forbid_inspection().unwrap();
        assert!(!is_dumpable());
    }
}
