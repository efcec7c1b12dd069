//! `lanyard-bench`: measures Lanyard side by side with what people would use
//! instead, in one run on one machine. `token` signs through PKCS#11 modules
//! (Lanyard, SoftHSM2 in-process, SoftHSM2 behind p11-kit remoting); `ca`
//! drives the CA's gRPC server and simulates a national renewal storm.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ca;
mod token;

/// Benchmarks for Lanyard (ratios within one run are the result; absolute
/// figures on a shared machine are noise).
#[derive(Parser)]
#[command(name = "lanyard-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// C_Sign throughput, latency and cold start: Lanyard vs SoftHSM2 vs p11-kit remoting.
    Token(token::Args),
    /// CA issuance rate over gRPC/TLS (SQLite, PostgreSQL) and the renewal-storm simulation.
    Ca(ca::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Token(args) => token::run(args),
        Command::Ca(args) => ca::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
