//! The certificate side of a Lanyard virtual card, with no I/O: the card
//! profile and its document-signing profile, the operator (registration authority) profile, the CA's own
//! profiles (root, issuing, server), CRLs, CSR checks and signature checks
//! over parsed certificates.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca_profiles;
pub mod card_identity;
pub mod card_profile;
pub mod chain;
pub mod crl;
pub mod crl_url;
pub mod csr_check;
pub mod derivation_proof;
pub mod error;
pub mod operator_profile;
pub mod pkcs11_uri;
pub mod serial;
pub mod signing_profile;
#[cfg(test)]
mod test_ca;

pub use ca_profiles::{
    generate_ca_key, generate_server_key, issuing_ca_params, root_ca_params, server_params,
};
pub use card_identity::{card_identity, CardIdentity};
pub use card_profile::{
    issue_card_certificate, issue_card_certificate_with, CardHolder, CardProfileOptions, Validity,
    CLOCK_SKEW_ALLOWANCE,
};
pub use chain::verify_issued_by;
pub use crl::{build_crl, CrlContents, RevocationReason, RevokedCert};
pub use crl_url::CrlUrl;
pub use csr_check::{check_csr, CheckedCsr, KeyKind};
pub use derivation_proof::{proof_digest, proof_message, verify_proof_signature};
pub use error::CertsError;
pub use operator_profile::{
    issue_operator_certificate, operator_identity, OperatorIdentity, OID_KP_CMC_RA, OPERATOR_UNIT,
};
pub use serial::CertSerial;
pub use signing_profile::{issue_signing_certificate, signing_certificate_params, SIGNING_PROFILE};

/// Re-exported so callers name the same rcgen types as this crate.
pub use rcgen;
