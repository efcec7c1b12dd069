//! `lanyard-ca`: parses the command line and hands over to `lanyard_ca::cli`.
//! Exit codes: 0 success, 1 error, 2 usage error (from clap, or a value out of
//! range); `admin` adds 3 CA unreachable, 4 permission denied, 5 not found or
//! wrong state, 6 audit chain broken (`lanyard_ca::CaError::exit_code`).

use std::process::ExitCode;

use clap::Parser;
use lanyard_ca::cli::Cli;

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    lanyard_ca::cli::init_logging_for(&cli.command);
    match lanyard_ca::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard-ca: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
