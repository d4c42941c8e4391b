//! The `central` binary: `central serve` runs the service; every other
//! command is an admin client of the running service (its Unix socket).
//! Exit status 2 for usage and configuration errors, 1 for failures.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::Failure::Usage(message)) => {
            eprintln!("central: {message}");
            ExitCode::from(2)
        }
        Err(cli::Failure::Runtime(e)) => {
            eprintln!("central: {e:#}");
            ExitCode::FAILURE
        }
    }
}
