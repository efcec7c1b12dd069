//! Lanyard's PIV card application: the subset of NIST SP 800-73-4 a PIV
//! client (OpenSC's PIV driver, Windows' minidriver) needs, as a pure
//! function of command APDUs to response APDUs over a [`CardBackend`].
//! No I/O here: the daemon's vpcd link feeds APDUs in and owns the keys.

#![forbid(unsafe_code)]

mod aid;
pub mod apdu;
mod applet;
mod atr;
pub mod backend;
mod certificate;
mod chuid;
mod general_auth;
mod get_data;
mod padding;
mod response;
mod status;
mod tlv;
mod verify;

pub use aid::PIV_AID;
pub use applet::Applet;
pub use atr::{atr, is_lanyard_atr};
pub use backend::{
    CardBackend, CardView, KeyAlgorithm, KeySlot, PinError, PinStatus, SignError, SignInput,
    SlotView,
};
pub use certificate::certificate_from_container;
pub use get_data::{TAG_CERT_9A, TAG_CERT_9C, TAG_CHUID, TAG_DISCOVERY};
pub use status::Status;
