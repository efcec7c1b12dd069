//! The `lanyard` CLI's library half: a blocking agent client, PIN input,
//! and one module per subcommand. Errors carry the documented exit codes.

pub mod change_pin;
pub mod check_in;
pub mod client;
pub mod derive_proof;
pub mod device_protection;
pub mod enroll;
pub mod lock;
pub mod nss_db;
pub mod nss_register;
pub mod pin_input;
pub mod readers;
pub mod renew;
pub mod reset_pin;
pub mod status;
pub mod unlock;

use std::path::PathBuf;

use lanyard_proto::agent::{CardInfo, ErrorCode};

/// Exit codes of `lanyard` (documented in `--help`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other error.
    pub const OTHER: u8 = 1;
    /// Bad usage.
    pub const USAGE: u8 = 2;
    /// The daemon is not running or cannot be reached.
    pub const DAEMON_UNREACHABLE: u8 = 3;
    /// PIN incorrect, locked or not acceptable.
    pub const PIN: u8 = 4;
    /// The CA or the enrolment failed (unreachable, busy, refused, reset code rejected).
    pub const ENROLL: u8 = 5;
    /// The card is revoked, suspended or expired: the IT desk must act.
    pub const CARD: u8 = 6;
    /// pcscd (the PC/SC service) is not running (`lanyard readers`).
    pub const PCSC_UNAVAILABLE: u8 = 7;
    /// Derived enrolment: the physical card's module, token, certificate or
    /// key could not be found or used.
    pub const PHYSICAL_CARD: u8 = 8;
}

/// What can go wrong in the CLI, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No daemon at the socket.
    #[error("lanyardd is not running (no socket at {0}); start it with `lanyardd`")]
    DaemonNotRunning(PathBuf),
    /// The socket exists but cannot be used.
    #[error("cannot reach lanyardd at {path}: {reason}")]
    DaemonUnreachable { path: PathBuf, reason: String },
    /// The daemon answered with an error.
    #[error("{message}")]
    Agent { code: ErrorCode, message: String },
    /// Bad arguments or input.
    #[error("{0}")]
    Usage(String),
    /// PIN entry problem (mismatch, empty).
    #[error("{0}")]
    PinEntry(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
    /// pcscd cannot be reached.
    #[error("{0}")]
    PcscUnavailable(String),
    /// The physical card of a derived enrolment cannot be used.
    #[error("{0}")]
    PhysicalCard(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::DaemonNotRunning(_) | CliError::DaemonUnreachable { .. } => {
                exit::DAEMON_UNREACHABLE
            }
            CliError::Agent { code, .. } => match code {
                ErrorCode::PinIncorrect
                | ErrorCode::PinLocked
                | ErrorCode::PinLenRange
                | ErrorCode::PinInvalid => exit::PIN,
                ErrorCode::EnrollFailed
                | ErrorCode::CaUnavailable
                | ErrorCode::SlotsFull
                | ErrorCode::CaBusy
                | ErrorCode::CaRefused
                | ErrorCode::ResetCodeRejected => exit::ENROLL,
                ErrorCode::CardRevoked | ErrorCode::CardSuspended | ErrorCode::CardExpired => {
                    exit::CARD
                }
                _ => exit::OTHER,
            },
            CliError::Usage(_) => exit::USAGE,
            CliError::PinEntry(_) => exit::PIN,
            CliError::Other(_) => exit::OTHER,
            CliError::PhysicalCard(_) => exit::PHYSICAL_CARD,
            CliError::PcscUnavailable(_) => exit::PCSC_UNAVAILABLE,
        }
    }
}

pub use crate::lifecycle::rfc3339;

/// The card `card` names (checked against `cards`), or the only card.
pub fn choose_card(cards: &[CardInfo], card: Option<&str>) -> Result<String, CliError> {
    match (card, cards) {
        (Some(id), _) => {
            if !cards.iter().any(|c| c.card_id == id) {
                return Err(CliError::Usage(format!(
                    "no card {id}; `lanyard status` lists the cards"
                )));
            }
            Ok(id.to_string())
        }
        (None, [only]) => Ok(only.card_id.clone()),
        (None, []) => Err(CliError::Usage("no card enrolled".into())),
        (None, many) => {
            let ids: Vec<&str> = many.iter().map(|c| c.card_id.as_str()).collect();
            Err(CliError::Usage(format!(
                "several cards ({}); choose one with --card ID",
                ids.join(", ")
            )))
        }
    }
}

/// `rsa-2048` / `ec-p256` from the agent's key type.
pub fn key_type_name(key_type: i32) -> &'static str {
    match lanyard_proto::agent::KeyType::try_from(key_type) {
        Ok(lanyard_proto::agent::KeyType::EcP256) => "ec-p256",
        Ok(lanyard_proto::agent::KeyType::Rsa2048) => "rsa-2048",
        _ => "unknown",
    }
}

/// Writes the command's output to stdout in one go; a closed pipe (e.g.
/// `lanyard status | head -1`) is not an error.
pub fn print_out(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Other(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}
