//! Lanyard's PIV card application: the subset of NIST SP 800-73-4 a PIV
//! client (OpenSC's PIV driver, Windows' minidriver) needs, as a pure
//! function of command APDUs to response APDUs over a [`CardBackend`].
//! No I/O here: the daemon's vpcd link feeds APDUs in and owns the keys.

#![forbid(unsafe_code)]

pub mod apdu;
pub mod applet;
pub mod atr;
pub mod backend;
pub mod status;

pub use applet::Applet;
pub use atr::{atr, is_lanyard_atr};
pub use backend::{
    CardBackend, CardView, KeyAlgorithm, KeySlot, PinError, PinStatus, SignError, SignInput,
    SlotView,
};
pub use status::Status;
