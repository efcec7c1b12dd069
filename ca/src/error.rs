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

    /// Too many failed enrolment attempts from one address.
    #[error("too many failed enrolment attempts; try again in {retry_after_secs} s")]
    RateLimited {
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

    // --- HSM-held keys (PKCS#11) ---
    /// A `pkcs11:` URI (from `init --key` or ca.toml's issuing_key) is malformed.
    #[error("bad PKCS#11 URI: {0}")]
    Pkcs11Uri(#[from] crate::pkcs11_uri::Pkcs11UriError),

    /// The PKCS#11 module, token or key could not be opened or used.
    #[error("{0}")]
    Pkcs11(#[from] crate::pkcs11_key::Pkcs11Error),
    // --- end of HSM-held keys ---
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

impl From<CaError> for tonic::Status {
    fn from(err: CaError) -> Self {
        match err {
            CaError::CodeRejected => tonic::Status::permission_denied(CODE_REJECTED_MESSAGE),
            CaError::RateLimited { .. } => tonic::Status::resource_exhausted(err.to_string()),
            CaError::BadCsr(_) | CaError::InvalidArgument(_) => {
                tonic::Status::invalid_argument(err.to_string())
            }
            CaError::NoUniqueId => tonic::Status::unavailable(err.to_string()),
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
}
