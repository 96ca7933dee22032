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
    /// is tested end to end in `tests/cli`.
    #[test]
    #[cfg(target_os = "linux")]
    fn forbid_inspection_clears_the_dumpable_flag() {
        // Test binaries start dumpable; this one stays non-dumpable after,
        // which changes nothing for the other tests.
        forbid_inspection().unwrap();
        assert!(!is_dumpable());
    }
}
