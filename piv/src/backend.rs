//! The contract between the PIV application and whoever holds the card:
//! the daemon implements [`CardBackend`] over the same keys, certificates
//! and PIN retry counter as the PKCS#11 token (one store, one counter).

use zeroize::Zeroizing;

/// A PIV key reference the card answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    /// 9A, PIV Authentication: the card's authentication key.
    Authentication,
    /// 9C, Digital Signature: the card's document-signing key (PIN always).
    Signature,
}

/// Key algorithms the card's keys can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA 2048 (PIV algorithm 07).
    Rsa2048,
    /// ECC P-256 (PIV algorithm 11).
    EccP256,
}

/// One key of the card as PIV shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    /// Which key reference.
    pub slot: KeySlot,
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The key's X.509 certificate, DER.
    pub certificate_der: Vec<u8>,
}

/// What the card looks like right now (read at SELECT and per command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardView {
    /// Stable card identifier; the CHUID's GUID is derived from it.
    pub card_id: String,
    /// 9A always; 9C when the card has a document-signing key.
    pub slots: Vec<SlotView>,
}

/// The PIN's state, for an empty VERIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// Verified in this card session.
    Verified,
    /// Not verified; this many tries are left (63Cx).
    NotVerified { tries_left: u8 },
    /// No tries left (6983).
    Blocked,
}

/// Why a PIN check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Wrong PIN, counted (63Cx).
    #[error("PIN incorrect, {tries_left} tries left")]
    Incorrect { tries_left: u8 },
    /// The PIN is blocked (6983).
    #[error("PIN blocked")]
    Blocked,
    /// The PIN is not acceptable as a PIN (wrong length or characters), not
    /// counted (6A80).
    #[error("PIN malformed")]
    Malformed,
    /// The card went away or the backend failed (6F00 / 6A82 as fits).
    #[error("card unavailable: {0}")]
    Unavailable(String),
}

/// What to sign. The applet has already validated the input: RSA input is
/// only ever a well-formed PKCS#1 v1.5 type-1 block (passed on as the
/// DigestInfo/data it carries, which the backend pads again identically) or
/// a verified PSS encoding; never arbitrary data for a raw RSA operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInput {
    /// The data inside a PKCS#1 v1.5 type-1 block (usually a DigestInfo):
    /// sign with RSASSA-PKCS1-v1_5 padding over exactly these bytes.
    RsaPkcs1 { data: Vec<u8> },
    /// A full PSS-encoded message EM (ends in 0xBC, DB decodes for some
    /// SHA-1/SHA-2 hash): apply the raw RSA private operation to EM.
    RsaPssEncoded { encoded: Vec<u8> },
    /// A digest (truncated or zero-padded to 32 bytes by the applet):
    /// ECDSA P-256, signature DER-encoded (as PIV returns it).
    EcdsaDigest { digest: Vec<u8> },
}

/// Why a signature failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The PIN is not verified for this operation (6982).
    #[error("security status not satisfied")]
    NotVerified,
    /// The slot has no key (6A88 / 6A86).
    #[error("no key in this slot")]
    NoKey,
    /// The input does not fit the key (6A80).
    #[error("bad input: {0}")]
    BadInput(String),
    /// The card went away or the backend failed (6F00).
    #[error("card unavailable: {0}")]
    Unavailable(String),
}

/// The card behind the PIV application. One instance per reader
/// connection; the PIV "security status" (PIN verified) lives behind it so
/// that it is the very same login state and retry counter as the token's.
pub trait CardBackend {
    /// The card now in the reader, or `None` when no card is inserted.
    fn card(&self) -> Option<CardView>;
    /// Checks `pin` (already stripped of its 0xFF padding) against the
    /// card's PIN with the card's retry counter; on success the card
    /// session counts as verified until [`CardBackend::reset`].
    fn verify_pin(&mut self, pin: Zeroizing<Vec<u8>>) -> Result<(), PinError>;
    /// The PIN state without trying a PIN.
    fn pin_status(&self) -> PinStatus;
    /// Signs with `slot`'s key. For [`KeySlot::Signature`] (PIN always),
    /// `pin` is the PIN of the VERIFY that immediately preceded this
    /// command; the backend checks it again for this one signature.
    fn sign(
        &mut self,
        slot: KeySlot,
        input: SignInput,
        pin: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Vec<u8>, SignError>;
    /// Ends the card session's security status (power off, reset, SELECT
    /// of the application again, VERIFY with P1=FF).
    fn reset(&mut self);
}
