//! The command line: clap definitions for `init`, `serve` and `admin`, logging
//! to stderr, and the tokio runtime the commands run on.

use clap::{Parser, Subcommand};

use crate::error::CaError;

pub mod admin;
pub mod init;
pub mod serve;

/// Lanyard's central CA.
#[derive(Debug, Parser)]
#[command(
    name = "lanyard-ca",
    version,
    about = "Lanyard's central CA: issues virtual smartcard certificates to clinicians",
    long_about = "Lanyard's central CA.\n\n\
        Typical use:\n  \
        lanyard-ca init --dir /var/lib/lanyard-ca                  # once: keys, certificates, database\n  \
        lanyard-ca serve --dir /var/lib/lanyard-ca --listen 0.0.0.0:8443\n  \
        lanyard-ca admin issue-card --dir /var/lib/lanyard-ca --name \"Dr Ada Smith\" \\\n      \
        --user-id 555123456789 --role \"R8000 Clinical Practitioner\"\n\n\
        Clients trust DIR/root.pem. Logs go to stderr (RUST_LOG sets the level).\n\
        Exit status: 0 success, 1 error, 2 usage error."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new CA in a directory: root and issuing CA, server TLS certificate, ca.toml, ca.db.
    Init(init::InitArgs),
    /// Run the gRPC enrolment service over TLS.
    Serve(serve::ServeArgs),
    /// IT-desk commands: cards, PIN reset codes, audit, operators (over mutual TLS).
    #[command(subcommand, after_help = admin::AFTER_HELP)]
    Admin(admin::AdminCommand),
}

/// Sends `tracing` output to stderr; `RUST_LOG` overrides the level
/// (default `info` for `serve`, `warn` for the one-shot commands).
pub fn init_logging_for(command: &Command) {
    use std::io::IsTerminal;
    let default = match command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Writes `text` and a newline to stdout; a closed stdout is an error, not a panic.
pub(crate) fn print_line(text: impl std::fmt::Display) -> Result<(), CaError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|e| CaError::io("write to", "standard output", e))
}

/// Runs one command to completion.
pub fn run(cli: Cli) -> Result<(), CaError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CaError::io("start", "the async runtime", e))?;
    runtime.block_on(async move {
        match cli.command {
            Command::Init(args) => init::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Admin(cmd) => admin::run(cmd).await,
        }
    })
}
