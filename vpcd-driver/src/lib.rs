//! Lanyard's pcsc-lite reader driver (IFD handler) for vpcd's reversed mode:
//! each reader slot CONNECTS to a virtual card listening on loopback
//! (`lanyardd --vpcd-listen 127.0.0.1:PORT`) and speaks vpcd's framed protocol.
//! All `unsafe` lives in [`ffi`]; everything below it is safe Rust.

#![deny(unsafe_code)]

pub mod capabilities;
pub mod card_link;
pub mod device_name;
pub mod error;
pub mod features;
#[allow(unsafe_code)]
mod ffi;
pub mod frame;
pub mod log;
pub mod registry;
pub mod slot;
#[cfg(test)]
mod test_card;

pub use error::{DriverError, Result};
