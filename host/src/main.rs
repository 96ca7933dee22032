//! The `ccws` binary: run once per agent turn.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    cli::logging::init(args.global.verbose);
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
