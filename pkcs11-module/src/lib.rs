//! liblanyard_pkcs11: the PKCS#11 3.0 module of a Lanyard virtual card.
//! `ffi` is the only place that touches C pointers; everything below it is
//! safe Rust that forwards key operations to `lanyardd` over the agent socket.

#![deny(unsafe_code)]

pub mod attribute;
mod cert_validity;
pub mod client;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod fns;
pub mod hash;
pub mod library;
pub mod mechanism;
pub mod objects;
pub mod presence;
pub mod session;
pub mod slot;

/// Re-exported PKCS#11 types and constants (from `cryptoki-sys`).
pub use cryptoki_sys as sys;

/// Value of `ulValueLen` (and other lengths) that PKCS#11 reserves for
/// "this information is not available" (`CK_UNAVAILABLE_INFORMATION`).
pub const CK_UNAVAILABLE_INFORMATION: sys::CK_ULONG = !0;
