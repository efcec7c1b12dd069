//! Lanyard's PIV card application: the subset of NIST SP 800-73-4 a PIV
//! client (OpenSC's PIV driver, Windows' minidriver) needs, as a pure
//! function of command APDUs to response APDUs over a [`CardBackend`].
//! No I/O here: the daemon's vpcd link feeds APDUs in and owns the keys.

pub mod backend;

pub use backend::{CardBackend, CardView, KeySlot, PinError, PinStatus, SignError, SignInput};
