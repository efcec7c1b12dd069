//! gRPC service implementations: thin adapters that convert proto messages
//! into domain calls and errors into statuses, nothing more.

pub mod admin;
pub mod enrollment;
pub mod renewal;
pub mod revocation;
