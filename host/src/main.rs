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
    let args = match cli::args::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_error(e),
    };
    let log_format = match args.global.log_format() {
        Ok(f) => f,
        Err(e) => return fail(args.global.json, &cli::error::CliError::from(e)),
    };
    cli::logging::init(args.global.verbose, log_format);
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
            let e = cli::error::CliError::Other(format!("starting the async runtime: {e}"));
            return fail(args.global.json, &e);
        }
    };
    let json = args.global.json;
    match runtime.block_on(cli::commands::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(json, &e),
    }
}

/// Report `e` on stderr (as JSON with `--json`) and exit with its code.
fn fail(json: bool, e: &cli::error::CliError) -> ExitCode {
    if json {
        cli::output::error_json(e);
    } else {
        cli::output::say(&format!("ccws: {e}"));
    }
    ExitCode::from(e.exit_code())
}

/// A command line clap refused, or `--help` / `--version`: clap's own text
/// (help on stdout), or with `--json` a usage error as JSON on stderr.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let asked = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    // (Not an agent's own `--json`, after `--`.)
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if asked || !json {
        // A closed stream here is no panic: clap writes and reports.
        let _ = e.print();
        return ExitCode::from(if asked { 0 } else { 2 });
    }
    let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "no command given (see ccws --help)".to_owned()
    } else {
        let text = e.render().to_string();
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("usage error")
            .trim_start_matches("error: ")
            .to_owned()
    };
    cli::output::error_json(&cli::error::CliError::Usage(message));
    ExitCode::from(2)
}
