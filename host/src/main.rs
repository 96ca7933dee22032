//! The `ccws` binary: run once per agent turn.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // First of all, before any thread or credential exists: no other process
    // of this user may read ccws's memory or environment (/proc, ptrace),
    // and the credential variables are wiped from its environment block.
    let hardened = ccws::harden::forbid_inspection();
    // Everything ccws creates, and the agent it starts, is private to this
    // user: a home restored from the store never comes back readable by
    // others (0600 files, 0700 directories).
    // SAFETY: umask only sets the process's file creation mask.
    unsafe { libc::umask(0o077) };
    ccws::config::capture_env();
    let args = cli::args::Cli::parse();
    cli::logging::init(args.global.verbose);
    if let Err(e) = hardened {
        tracing::warn!(
            "cannot mark ccws not dumpable (other processes of this user could inspect it): {e}"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccws: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::commands::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ccws: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
