//! Lanyard's PIV card application: the subset of NIST SP 800-73-4 a PIV
//! client (OpenSC's PIV driver, Windows' minidriver) needs, as a pure
//! function of command APDUs to response APDUs over a [`CardBackend`].
//! No I/O here: the daemon's vpcd link feeds APDUs in and owns the keys.

#![forbid(unsafe_code)]

pub mod aid;
pub mod apdu;
pub mod applet;
pub mod atr;
pub mod backend;
pub mod certificate;
pub mod chuid;
pub mod general_auth;
pub mod get_data;
pub mod padding;
pub mod response;
pub mod status;
pub mod tlv;
pub mod verify;

pub use aid::PIV_AID;
pub use applet::Applet;
pub use atr::{atr, is_lanyard_atr};
pub use backend::{
    CardBackend, CardView, KeyAlgorithm, KeySlot, PinError, PinStatus, SignError, SignInput,
    SlotView,
};
pub use certificate::certificate_from_container;
pub use status::Status;
