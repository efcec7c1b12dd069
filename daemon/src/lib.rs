//! lanyardd, the per-user virtual smartcard daemon, and the pieces of the
//! `lanyard` CLI, as a library so that every part can be tested alone.
//! The binaries in `src/bin/` are thin glue over these modules.

#![deny(unsafe_code)]

pub mod app_sessions;
pub mod b64_serde;
pub mod blocking_connection;
pub mod ca_client;
pub mod ca_tls;
pub mod card_crypto;
pub mod card_file;
pub mod card_info;
pub mod card_store;
pub mod check_in;
pub mod check_in_gate;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod connection;
#[cfg(test)]
mod connection_proptest;
pub mod derive;
pub mod enroll;
pub mod error;
#[allow(unsafe_code)]
pub mod hardening;
pub mod idle_exit;
pub mod idle_lock;
pub mod keys;
pub mod lifecycle;
pub mod paths;
pub mod pcsc;
pub mod pin;
pub mod pin_policy;
pub mod pinentry;
pub mod protected_login;
pub mod renewal;
pub mod renewal_schedule;
pub mod reset_pin;
pub mod server;
pub mod shutdown;
pub mod socket_activation;
pub mod state;
pub mod tpm;

pub use error::{Error, Result};

/// Version reported in Hello and Status.
pub const DAEMON_VERSION: &str = env!("CARGO_PKG_VERSION");
