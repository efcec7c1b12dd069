//! Lanyard's central CA as a library: the `lanyard-ca` binary is thin glue
//! over these modules, and the tests drive them directly.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod ca_dir;
pub mod card_id;
pub mod card_status;
pub mod certify;
pub mod cli;
pub mod config;
pub mod crl_http;
pub mod crl_publisher;
pub mod derive;
pub mod enrolment;
pub mod enrolment_code;
pub mod error;
pub mod issuance_limit;
pub mod issuer;
mod lost_answer;
pub mod peer;
pub mod pin_reset;
pub mod pkcs11_key;
/// PKCS#11 URIs (RFC 7512), shared with the `lanyard` CLI through lanyard-certs.
pub use lanyard_certs::pkcs11_uri;
pub mod rate_limit;
pub mod renewal;
pub mod service;
pub mod store;
#[cfg(test)]
mod test_issuer;
pub mod tls;

pub use error::CaError;
