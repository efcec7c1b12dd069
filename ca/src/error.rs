//! The CA's one error type, and the single place where errors become gRPC
//! statuses. Messages are one line a person can act on; nothing secret
//! (enrolment codes, keys) ever goes into one.

use std::path::PathBuf;

use lanyard_certs::CertsError;
use thiserror::Error;

/// What clients see when a code is unknown, expired or used: one message for
/// all three so a caller learns nothing about which codes exist.
pub const CODE_REJECTED_MESSAGE: &str =
    "enrolment code not recognised, expired or already used; ask the IT desk for a new one";

/// gRPC metadata key of the overload hint: whole seconds to wait.
pub const RETRY_AFTER_METADATA: &str = "retry-after";

/// gRPC metadata key (value "1") telling a device to destroy the card's keys.
pub const CARD_DESTROYED_METADATA: &str = "lanyard-card-destroyed";

/// Everything that can fail in the CA.
#[derive(Debug, Error)]
pub enum CaError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "create directory"...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// `init` on a directory that already holds a CA.
    #[error("{} already holds a CA ({} exists); choose another directory or remove it first", dir.display(), found.display())]
    AlreadyInitialised {
        /// The CA directory.
        dir: PathBuf,
        /// The file that shows it is initialised.
        found: PathBuf,
    },

    /// `serve`/`admin` on a directory without a CA.
    #[error("{} is not a Lanyard CA directory ({} is missing); run `lanyard-ca init --dir {}` first", dir.display(), missing.display(), dir.display())]
    NotInitialised {
        /// The CA directory.
        dir: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// ca.toml is unreadable or holds a bad value.
    #[error("bad configuration in {}: {reason}", path.display())]
    Config {
        /// The configuration file (or the environment variable's name).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A PEM file does not hold what it should.
    #[error("{}: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A command-line value out of range.
    #[error("{0}")]
    InvalidArgument(String),

    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),

    /// The database setting is not usable.
    #[error("bad database setting: {0}")]
    BadDatabase(String),

    /// The database could not be reached.
    #[error("cannot open the database ({location}): {reason}")]
    DbConnect {
        /// Where (without any password).
        location: String,
        /// What the driver said.
        reason: String,
    },

    /// The database schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// The enrolment code is unknown, expired or already used.
    #[error("{CODE_REJECTED_MESSAGE}")]
    CodeRejected,

    /// Too many failed enrolment (or PIN reset) attempts from one address.
    #[error("too many failed {what} attempts; try again in {retry_after_secs} s")]
    RateLimited {
        /// "enrolment" or "PIN reset".
        what: &'static str,
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },

    /// The client's certificate request was refused.
    #[error("certificate request refused: {0}")]
    BadCsr(CertsError),

    /// Building or signing a certificate failed (not the client's fault).
    #[error("certificate error: {0}")]
    Certs(#[from] CertsError),

    /// A CA key could not be generated or loaded.
    #[error("key error: {0}")]
    Key(#[from] rcgen::Error),

    /// The system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),

    /// A fresh serial number collided repeatedly (practically impossible).
    #[error("could not find an unused serial number or card id; try again")]
    NoUniqueId,

    /// The gRPC server could not start or stopped with an error.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),

    // --- card lifecycle: renewal, status, PIN reset, CRL, back-pressure ---
    /// A request that needs a client certificate came without one.
    #[error("{0}")]
    Unauthenticated(String),

    /// The client certificate does not entitle the caller to this request.
    #[error("{0}")]
    CertificateRefused(String),

    /// No card with this id (Revocation, Renewal, PIN reset).
    #[error("no card {0} on this CA; check the card id")]
    UnknownCard(String),

    /// The card (or certificate) is in a state that does not allow the request.
    #[error("{0}")]
    CardNotUsable(String),

    /// A renewal or reset request certifies a key the card already had.
    #[error(
        "the certificate request reuses the key of certificate {serial}; generate a new key pair"
    )]
    KeyReused {
        /// The certificate whose key it is.
        serial: String,
    },

    /// The PIN reset code is wrong; the card's code has tries left.
    #[error("the reset code is not valid for card {card_id} ({tries_left} tries left)")]
    ResetCodeWrong {
        /// The card.
        card_id: String,
        /// Wrong codes still allowed before the card is revoked.
        tries_left: i64,
    },

    /// The card has no live PIN reset code (none, expired or used).
    #[error("card {card_id} has no valid reset code (none released, expired or already used); ask the IT desk for a new one")]
    NoResetCode {
        /// The card.
        card_id: String,
    },

    /// The card is revoked (e.g. its reset code's tries ran out) and the
    /// device must destroy its keys.
    #[error("card {card_id} is revoked{why} and its keys must be destroyed on this device; ask the IT desk to re-issue the card")]
    CardDestroyed {
        /// The card.
        card_id: String,
        /// e.g. " (too many wrong reset codes)", or "".
        why: &'static str,
    },

    /// Too many issuances at once; the client should come back later.
    #[error("the CA is busy issuing other certificates; try again in {retry_after_secs} s")]
    Overloaded {
        /// The hint sent as `retry-after`.
        retry_after_secs: u32,
    },

    /// The CRL could not be built.
    #[error("CRL error: {0}")]
    Crl(String),
    // --- end of card lifecycle ---

    // --- HSM-held keys (PKCS#11) ---
    /// A `pkcs11:` URI (from `init --key` or ca.toml's issuing_key) is malformed.
    #[error("bad PKCS#11 URI: {0}")]
    Pkcs11Uri(#[from] crate::pkcs11_uri::Pkcs11UriError),

    /// The PKCS#11 module, token or key could not be opened or used.
    #[error("{0}")]
    Pkcs11(#[from] crate::pkcs11_key::Pkcs11Error),
    // --- end of HSM-held keys ---

    // --- IT-desk administration (Admin service and `lanyard-ca admin`) ---
    /// The caller is not an IT-desk operator of this CA.
    #[error("the client certificate is not a registration-authority operator certificate of this CA: {reason}")]
    NotOperator {
        /// Why (no certificate, no id-kp-cmcRA role, unregistered, revoked, expired).
        reason: String,
    },

    /// No pending or decided approval with this id.
    #[error("no approval {approval_id}; `lanyard-ca admin approvals` lists the pending ones")]
    UnknownApproval {
        /// The id asked for.
        approval_id: String,
    },

    /// The approval was already decided.
    #[error("approval {approval_id} was already approved by {by}; nothing to do")]
    AlreadyApproved {
        /// The approval.
        approval_id: String,
        /// Who approved it.
        by: String,
    },

    /// An operator tried to approve their own request.
    #[error(
        "approval {approval_id} was requested by you; a second, different operator must approve it"
    )]
    SelfApproval {
        /// The approval.
        approval_id: String,
    },

    /// The admin CLI could not reach the CA (connection, TLS handshake).
    #[error("cannot reach the CA at {url}: {reason}")]
    CaUnreachable {
        /// The URL given with --ca.
        url: String,
        /// What failed.
        reason: String,
    },

    /// The CA answered the admin CLI with an error status.
    #[error("{message}")]
    Remote {
        /// The gRPC status code.
        code: tonic::Code,
        /// The CA's message.
        message: String,
    },

    /// `admin audit --verify` found the hash chain broken.
    #[error("the audit log is NOT intact: record {first_broken_seq} does not chain (edited, inserted or a record before it deleted); {records} records before it verified")]
    AuditBroken {
        /// The first record whose hash does not chain.
        first_broken_seq: i64,
        /// Records that verified before it.
        records: u64,
    },
    // --- end of IT-desk administration ---

    // --- derived enrolment ---
    /// `[derivation]` is not enabled in ca.toml.
    #[error("derived enrolment is not enabled on this CA; ask the IT desk for an enrolment code instead")]
    DerivationDisabled,

    /// The challenge of a derived enrolment is unknown, used or expired.
    #[error("the derivation challenge is {0}; start the derived enrolment again for a new one")]
    ChallengeRejected(&'static str),

    /// A check of the physical card or of the proof failed.
    #[error("derived enrolment refused ({check} check): {reason}")]
    DeriveRefused {
        /// Which check.
        check: crate::derive::physical_card::DeriveCheck,
        /// Why, in one line.
        reason: String,
    },
    // --- end of derived enrolment ---
}

impl From<getrandom::Error> for CaError {
    fn from(e: getrandom::Error) -> Self {
        CaError::Random(e.to_string())
    }
}

impl CaError {
    /// An [`CaError::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CaError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Exit status of `lanyard-ca` for an error (see `lanyard-ca admin --help`):
/// 1 error, 2 usage or invalid argument, 3 CA unreachable, 4 permission
/// denied, 5 not found or wrong state, 6 audit chain broken.
impl CaError {
    /// The process exit status this error ends `lanyard-ca` with.
    pub fn exit_code(&self) -> u8 {
        use tonic::Code;
        match self {
            CaError::InvalidArgument(_) | CaError::BadCsr(_) => 2,
            CaError::CaUnreachable { .. } => 3,
            CaError::NotOperator { .. } | CaError::SelfApproval { .. } => 4,
            CaError::UnknownCard(_)
            | CaError::UnknownApproval { .. }
            | CaError::CardNotUsable(_)
            | CaError::AlreadyApproved { .. } => 5,
            CaError::AuditBroken { .. } => 6,
            CaError::Remote { code, .. } => match code {
                Code::InvalidArgument => 2,
                Code::Unavailable | Code::DeadlineExceeded => 3,
                Code::PermissionDenied | Code::Unauthenticated => 4,
                Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists => 5,
                _ => 1,
            },
            _ => 1,
        }
    }
}

impl From<CaError> for tonic::Status {
    fn from(err: CaError) -> Self {
        match err {
            CaError::CodeRejected => tonic::Status::permission_denied(CODE_REJECTED_MESSAGE),
            CaError::RateLimited { .. } => tonic::Status::resource_exhausted(err.to_string()),
            CaError::BadCsr(_) | CaError::InvalidArgument(_) => {
                tonic::Status::invalid_argument(err.to_string())
            }
            CaError::NoUniqueId => tonic::Status::unavailable(err.to_string()),
            // --- card lifecycle ---
            CaError::Unauthenticated(_) => tonic::Status::unauthenticated(err.to_string()),
            CaError::CertificateRefused(_)
            | CaError::ResetCodeWrong { .. }
            | CaError::NoResetCode { .. } => tonic::Status::permission_denied(err.to_string()),
            CaError::UnknownCard(_) => tonic::Status::not_found(err.to_string()),
            CaError::CardNotUsable(_) => tonic::Status::failed_precondition(err.to_string()),
            CaError::KeyReused { .. } => tonic::Status::invalid_argument(err.to_string()),
            CaError::CardDestroyed { .. } => {
                let mut s = tonic::Status::failed_precondition(err.to_string());
                s.metadata_mut().insert(
                    CARD_DESTROYED_METADATA,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                s
            }
            CaError::Overloaded { retry_after_secs } => {
                let mut s = tonic::Status::unavailable(err.to_string());
                s.metadata_mut().insert(
                    RETRY_AFTER_METADATA,
                    tonic::metadata::MetadataValue::from(retry_after_secs),
                );
                s
            }
            // --- end of card lifecycle ---
            // --- IT-desk administration ---
            CaError::NotOperator { .. } | CaError::SelfApproval { .. } => {
                tonic::Status::permission_denied(err.to_string())
            }
            CaError::UnknownApproval { .. } => tonic::Status::not_found(err.to_string()),
            CaError::AlreadyApproved { .. } => tonic::Status::failed_precondition(err.to_string()),
            // --- end of IT-desk administration ---
            // --- derived enrolment ---
            CaError::DerivationDisabled => tonic::Status::failed_precondition(err.to_string()),
            CaError::ChallengeRejected(_) => tonic::Status::not_found(err.to_string()),
            CaError::DeriveRefused { .. } => tonic::Status::permission_denied(err.to_string()),
            // --- end of derived enrolment ---
            // Details of internal failures stay in the CA's log.
            _ => tonic::Status::internal(
                "internal error in the CA; the IT desk can find details in its log",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let s = tonic::Status::from(CaError::CodeRejected);
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert_eq!(s.message(), CODE_REJECTED_MESSAGE);
        let s = tonic::Status::from(CaError::RateLimited {
            what: "enrolment",
            retry_after_secs: 42,
        });
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("try again in 42 s"));
        let s = tonic::Status::from(CaError::BadCsr(CertsError::RsaKeyTooSmall { bits: 1024 }));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("1024"));
        let s = tonic::Status::from(CaError::Db(sqlx::Error::PoolClosed));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("Pool"));
    }

    #[test]
    fn lifecycle_statuses_and_metadata() {
        let s = tonic::Status::from(CaError::CardDestroyed {
            card_id: "0A1B2C3D4E5F".into(),
            why: " (too many wrong reset codes)",
        });
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.metadata().get(CARD_DESTROYED_METADATA).unwrap(), "1");
        assert!(s.message().contains("re-issue"), "{}", s.message());
        let s = tonic::Status::from(CaError::Overloaded {
            retry_after_secs: 9,
        });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.metadata().get(RETRY_AFTER_METADATA).unwrap(), "9");
        let s = tonic::Status::from(CaError::ResetCodeWrong {
            card_id: "0A1B2C3D4E5F".into(),
            tries_left: 2,
        });
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            s.message(),
            "the reset code is not valid for card 0A1B2C3D4E5F (2 tries left)"
        );
        assert!(s.metadata().get(CARD_DESTROYED_METADATA).is_none());
        for (e, code) in [
            (
                CaError::Unauthenticated("x".into()),
                tonic::Code::Unauthenticated,
            ),
            (
                CaError::CertificateRefused("x".into()),
                tonic::Code::PermissionDenied,
            ),
            (CaError::UnknownCard("x".into()), tonic::Code::NotFound),
            (
                CaError::CardNotUsable("x".into()),
                tonic::Code::FailedPrecondition,
            ),
            (
                CaError::KeyReused { serial: "x".into() },
                tonic::Code::InvalidArgument,
            ),
            (
                CaError::NoResetCode {
                    card_id: "x".into(),
                },
                tonic::Code::PermissionDenied,
            ),
            (CaError::Crl("x".into()), tonic::Code::Internal),
        ] {
            assert_eq!(tonic::Status::from(e).code(), code);
        }
    }
}
