//! Lanyard's central CA as a library: the `lanyard-ca` binary is thin glue
//! over these modules, and the tests drive them directly.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod ca_dir;
pub mod cli;
pub mod config;
pub mod enrolment;
pub mod enrolment_code;
pub mod error;
pub mod issuer;
pub mod pkcs11_key;
pub mod pkcs11_uri;
pub mod peer;
pub mod rate_limit;
pub mod service;
pub mod store;
pub mod tls;

pub use error::CaError;
