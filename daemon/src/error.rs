//! The daemon's one error type, and its mapping to the agent protocol's
//! `ErrorCode` (done here, in one place, so every command answers alike).

use std::path::PathBuf;

use lanyard_proto::agent::{self, ErrorCode};

/// Result with the daemon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the daemon, with messages a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed or out-of-order request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client speaks a protocol version this daemon does not.
    #[error("unsupported protocol version {0}; this lanyardd speaks version 1")]
    UnsupportedVersion(i32),
    /// No card with this id in the store.
    #[error("no card {0} in this daemon")]
    NoSuchCard(String),
    /// Wrong PIN; `tries_left` before the card locks.
    #[error("PIN incorrect ({tries_left} tries left before the card locks)")]
    PinIncorrect { tries_left: u32 },
    /// Too many wrong PINs: the card refuses every PIN until reset by the IT desk.
    #[error("card is locked after too many wrong PINs; ask your IT desk for a PIN reset")]
    PinLocked,
    /// PIN length outside the policy.
    #[error("PIN must be {min} to {max} digits long")]
    PinLenRange { min: usize, max: usize },
    /// PIN contains something other than digits.
    #[error("PIN must contain digits only")]
    PinInvalid,
    /// The application has not logged in to the card.
    #[error("not logged in to card {0}")]
    NotLoggedIn(String),
    /// The algorithm does not fit the card's key.
    #[error("mechanism not supported: {0}")]
    MechanismInvalid(String),
    /// Input too long or of the wrong length for the mechanism.
    #[error("data length out of range: {0}")]
    DataLenRange(String),
    /// Mechanism parameters (hash, MGF, salt length) not acceptable.
    #[error("mechanism parameter invalid: {0}")]
    MechanismParamInvalid(String),
    /// The CA refused the enrolment, or its answer was unusable.
    #[error("enrolment failed: {0}")]
    EnrollFailed(String),
    /// The CA could not be reached.
    #[error("{0}")]
    CaUnavailable(String),
    /// The CA is overloaded; it may have said how long to wait.
    #[error("{message}")]
    CaBusy {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The CA refused the request (permission, card state, bad request).
    #[error("{0}")]
    CaRefused(String),
    /// The CA did not accept the PIN reset code.
    #[error("{0}")]
    ResetCodeRejected(String),
    /// The card was revoked (or its keys destroyed); the IT desk must re-issue it.
    #[error("{reason}: ask your IT desk to re-issue card {card_id}")]
    CardRevoked { card_id: String, reason: String },
    /// The IT desk suspended the card.
    #[error("card {0} is suspended by your IT desk; it works again when they resume it")]
    CardSuspended(String),
    /// The card's certificate expired; `date` as RFC 3339.
    #[error("card {card_id}'s certificate expired on {date}: ask your IT desk to re-issue it")]
    CardExpired { card_id: String, date: String },
    /// Protected authentication path: the user cancelled the PIN prompt, or
    /// none could be shown; the message says which.
    #[error("{0}")]
    Canceled(String),
    /// Every fixed slot already holds a card.
    #[error("all {0} slots already hold a card; remove one before enrolling another")]
    SlotsFull(u32),
    /// A card file (or the device secret) is unreadable, tampered with or truncated.
    #[error("card store file {path} is corrupt: {reason}")]
    StoreCorrupt { path: PathBuf, reason: String },
    /// An I/O failure with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A directory the daemon relies on is unsafe (owner or mode).
    #[error("{0}")]
    InsecureDirectory(String),
    /// The listener passed by systemd (LISTEN_FDS) is unusable or malformed.
    #[error("socket activation: {0}")]
    SocketActivation(String),
    /// Another daemon already serves the socket.
    #[error("lanyardd already running on {0}")]
    AlreadyRunning(PathBuf),
    /// The configuration file is malformed or has invalid values.
    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// The TPM (with `device_secret = "tpm"`) cannot be reached or refused an operation.
    #[error("TPM: {0}")]
    Tpm(String),
    /// A failure inside OpenSSL or the AEAD/KDF code.
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    /// Anything else that is a bug rather than bad input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An I/O error with context (what the daemon was doing, on which path).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A card whose keys were destroyed because it was revoked.
    pub fn revoked(card_id: &str) -> Self {
        Error::CardRevoked {
            card_id: card_id.to_string(),
            reason: format!(
                "card {card_id} was revoked and its keys were destroyed on this device"
            ),
        }
    }

    /// A corrupt store file.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::StoreCorrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The agent protocol code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Error::NoSuchCard(_) => ErrorCode::NoSuchCard,
            Error::PinIncorrect { .. } => ErrorCode::PinIncorrect,
            Error::PinLocked => ErrorCode::PinLocked,
            Error::PinLenRange { .. } => ErrorCode::PinLenRange,
            Error::PinInvalid => ErrorCode::PinInvalid,
            Error::NotLoggedIn(_) => ErrorCode::NotLoggedIn,
            Error::MechanismInvalid(_) => ErrorCode::MechanismInvalid,
            Error::DataLenRange(_) => ErrorCode::DataLenRange,
            Error::MechanismParamInvalid(_) => ErrorCode::MechanismParamInvalid,
            Error::EnrollFailed(_) => ErrorCode::EnrollFailed,
            Error::CaUnavailable(_) => ErrorCode::CaUnavailable,
            Error::CaBusy { .. } => ErrorCode::CaBusy,
            Error::CaRefused(_) => ErrorCode::CaRefused,
            Error::ResetCodeRejected(_) => ErrorCode::ResetCodeRejected,
            Error::CardRevoked { .. } => ErrorCode::CardRevoked,
            Error::CardSuspended(_) => ErrorCode::CardSuspended,
            Error::CardExpired { .. } => ErrorCode::CardExpired,
            Error::SlotsFull(_) => ErrorCode::SlotsFull,
            Error::Canceled(_) => ErrorCode::Canceled,
            Error::StoreCorrupt { .. } => ErrorCode::StoreCorrupt,
            Error::Io { .. }
            | Error::InsecureDirectory(_)
            | Error::AlreadyRunning(_)
            | Error::SocketActivation(_)
            | Error::Config { .. }
            | Error::Crypto(_)
            | Error::Tpm(_)
            | Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The agent protocol error for this error; `tries_left` filled for PIN errors.
    pub fn to_proto(&self, tries_left: u32) -> agent::Error {
        let tries_left = match self {
            Error::PinIncorrect { tries_left } => *tries_left,
            Error::PinLocked => 0,
            _ => tries_left,
        };
        agent::Error {
            code: self.code() as i32,
            message: self.to_string(),
            tries_left,
        }
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Crypto(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_errors_carry_their_codes_and_tries() {
        let e = Error::PinIncorrect { tries_left: 2 }.to_proto(9);
        assert_eq!((e.code, e.tries_left), (ErrorCode::PinIncorrect as i32, 2));
        let e = Error::PinLocked.to_proto(9);
        assert_eq!((e.code, e.tries_left), (ErrorCode::PinLocked as i32, 0));
        let e = Error::PinLenRange { min: 6, max: 8 }.to_proto(3);
        assert_eq!((e.code, e.tries_left), (ErrorCode::PinLenRange as i32, 3));
        assert!(e.message.contains("6 to 8"));
        assert_eq!(Error::PinInvalid.code(), ErrorCode::PinInvalid);
    }

    #[test]
    fn startup_problems_are_internal_on_the_wire() {
        assert_eq!(
            Error::AlreadyRunning("/s".into()).code(),
            ErrorCode::Internal
        );
        assert_eq!(
            Error::corrupt("/c.json", "x").code(),
            ErrorCode::StoreCorrupt
        );
        assert_eq!(Error::SlotsFull(2).code(), ErrorCode::SlotsFull);
        assert_eq!(
            Error::Canceled("the PIN prompt was cancelled".into()).code(),
            ErrorCode::Canceled
        );
    }

    #[test]
    fn lifecycle_errors_carry_their_codes_and_one_line() {
        let revoked = Error::CardRevoked {
            card_id: "C1".into(),
            reason: "card C1 was revoked".into(),
        };
        assert_eq!(revoked.code(), ErrorCode::CardRevoked);
        assert_eq!(
            revoked.to_string(),
            "card C1 was revoked: ask your IT desk to re-issue card C1"
        );
        let expired = Error::CardExpired {
            card_id: "C1".into(),
            date: "2025-01-02T03:04:05Z".into(),
        };
        assert_eq!(expired.code(), ErrorCode::CardExpired);
        assert!(!expired.to_string().contains('\n'));
        assert_eq!(
            Error::CardSuspended("C1".into()).code(),
            ErrorCode::CardSuspended
        );
        let busy = Error::CaBusy {
            message: "busy".into(),
            retry_after: None,
        };
        assert_eq!(busy.code(), ErrorCode::CaBusy);
        assert_eq!(Error::CaRefused("no".into()).code(), ErrorCode::CaRefused);
        assert_eq!(
            Error::ResetCodeRejected("no".into()).code(),
            ErrorCode::ResetCodeRejected
        );
    }
}
