//! The certificate side of a Lanyard virtual card, with no I/O: the card
//! profile, the CA's own profiles (root, issuing, server), CSR checks and
//! signature checks over parsed certificates.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca_profiles;
pub mod card_profile;
pub mod chain;
pub mod csr_check;
pub mod error;
pub mod serial;

pub use ca_profiles::{
    generate_ca_key, generate_server_key, issuing_ca_params, root_ca_params, server_params,
};
pub use card_profile::{issue_card_certificate, CardHolder, Validity, CLOCK_SKEW_ALLOWANCE};
pub use chain::verify_issued_by;
pub use csr_check::{check_csr, CheckedCsr, KeyKind};
pub use error::CertsError;
pub use serial::CertSerial;

/// Re-exported so callers name the same rcgen types as this crate.
pub use rcgen;
