//! Lanyard wire protocols, generated at build time from `proto/*.proto`.
//! `agent` is the module/CLI <-> daemon protocol; `ca` (feature `grpc`) the CA's services,
//! with `tls_channel` to reach them over a TLS client configuration of our own.

/// Module/CLI <-> daemon messages (length-delimited prost frames on a Unix socket).
pub mod agent {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/lanyard.agent.v1.rs"));
}

/// The CA's gRPC services and messages.
#[cfg(feature = "grpc")]
pub mod ca {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/lanyard.ca.v1.rs"));
}

/// Largest frame either side accepts on the agent socket.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

pub mod frame;
pub mod socket_path;
#[cfg(feature = "grpc")]
pub mod tls_channel;
