//! `lanyard-ca`: parses the command line and hands over to `lanyard_ca::cli`.
//! Exit codes: 0 success, 1 error, 2 usage error (from clap, or a value out of range).

use std::process::ExitCode;

use clap::Parser;
use lanyard_ca::cli::Cli;
use lanyard_ca::CaError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    lanyard_ca::cli::init_logging_for(&cli.command);
    match lanyard_ca::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard-ca: error: {e}");
            match e {
                CaError::InvalidArgument(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}
