//! The fixed slots and the card (token) each may hold: what the module knows
//! about a card between refreshes, and how it is shown in CK_SLOT_INFO and
//! CK_TOKEN_INFO (fixed-width, space-padded fields).

use std::sync::Arc;

use cryptoki_sys::*;
use lanyard_proto::agent::{CardInfo, KeyRole, PinState};
use openssl::pkey::{PKey, Public};

use crate::error::{Pkcs11Error, Result};
use crate::mechanism::KeyKind;
use crate::objects::{self, Object};

/// A card as a token: the daemon's description and the objects built from it.
pub struct Token {
    pub card: CardInfo,
    pub kind: KeyKind,
    /// Modulus or field size in bits.
    pub key_bits: usize,
    /// Length of every signature the key makes (RSA: k; ECDSA: r||s).
    pub signature_len: usize,
    pub public_key: PKey<Public>,
    /// The document-signing key's public key, when the card shows one.
    pub signing_public_key: Option<PKey<Public>>,
    pub objects: Vec<Object>,
}

impl Token {
    /// Builds the token for `card` in slot `slot`.
    pub fn new(slot: usize, card: CardInfo) -> Result<Token> {
        let kind = KeyKind::from_proto(card.key_type).ok_or_else(|| {
            Pkcs11Error::DeviceError(format!("card {} has an unknown key type", card.card_id))
        })?;
        let public_key = PKey::public_key_from_der(&card.public_key_der).map_err(|e| {
            Pkcs11Error::DeviceError(format!("bad public key from the daemon: {e}"))
        })?;
        let key_bits = public_key.bits() as usize;
        let signature_len = match kind {
            KeyKind::Rsa => key_bits.div_ceil(8),
            KeyKind::Ec => 2 * key_bits.div_ceil(8),
        };
        let signing_public_key = match objects::signing_key(&card) {
            Some(s) => Some(PKey::public_key_from_der(&s.public_key_der).map_err(|e| {
                Pkcs11Error::DeviceError(format!("bad signing public key from the daemon: {e}"))
            })?),
            None => None,
        };
        let objects = objects::build(slot, &card, kind)?;
        Ok(Token {
            card,
            kind,
            key_bits,
            signature_len,
            public_key,
            signing_public_key,
            objects,
        })
    }

    /// Whether `other` describes the same card with the same keys and
    /// certificates (only PIN state or login may differ).
    pub fn same_content(&self, other: &CardInfo) -> bool {
        let c = &self.card;
        c.card_id == other.card_id
            && c.certificate_der == other.certificate_der
            && c.chain_der == other.chain_der
            && c.public_key_der == other.public_key_der
            && c.holder_name == other.holder_name
            && c.signing_key == other.signing_key
    }

    /// The public key of the card's key `role`, if the card has it.
    pub fn public_key_for(&self, role: KeyRole) -> Option<&PKey<Public>> {
        match role {
            KeyRole::Authentication => Some(&self.public_key),
            KeyRole::Signing => self.signing_public_key.as_ref(),
        }
    }

    /// The object with this handle.
    pub fn object(&self, handle: CK_OBJECT_HANDLE) -> Option<&Object> {
        self.objects.iter().find(|o| o.handle == handle)
    }
}

/// Which arrival of a card in a slot a token is. A card coming into a slot
/// (or replacing another) gets a new one; a renewal of the same card (new
/// certificate and key, same card id) keeps it. Sessions belong to one
/// insertion and report DEVICE_REMOVED once it is gone.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insertion(pub u64);

impl Insertion {
    /// The insertion of an empty slot; no session has it.
    pub const NONE: Insertion = Insertion(0);
}

/// What one slot holds right now.
#[derive(Default, Clone)]
pub struct SlotState {
    pub token: Option<Arc<Token>>,
    /// The arrival `token` belongs to ([`Insertion::NONE`] while empty).
    pub insertion: Insertion,
    pub pin: PinState,
    pub pin_min_len: u32,
    pub pin_max_len: u32,
    /// This application is logged in to the token (shared by its sessions).
    pub logged_in: bool,
}

/// Copies `s` into a fixed-width field, space padded; cut at a UTF-8
/// character boundary when too long.
pub fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let cut = utf8_prefix(s, N);
    out[..cut.len()].copy_from_slice(cut.as_bytes());
    out
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn utf8_prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Token label: holder name, a space, and the card id, in 32 bytes. The name
/// is shortened (at a character boundary) so the card id stays whole.
pub fn token_label(holder: &str, card_id: &str) -> [u8; 32] {
    let id = utf8_prefix(card_id, 32);
    if holder.is_empty() || id.len() + 1 >= 32 {
        return padded::<32>(if holder.is_empty() { id } else { card_id });
    }
    let name = utf8_prefix(holder, 32 - 1 - id.len());
    padded::<32>(&format!("{name} {id}"))
}

/// The library/slot/token version reported in the info structures.
pub fn module_version() -> CK_VERSION {
    CK_VERSION {
        major: env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
        minor: env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
    }
}

/// CK_SLOT_INFO for slot `id`.
pub fn slot_info(id: usize, state: &SlotState) -> CK_SLOT_INFO {
    let mut flags = CKF_REMOVABLE_DEVICE;
    if state.token.is_some() {
        flags |= CKF_TOKEN_PRESENT;
    }
    CK_SLOT_INFO {
        slotDescription: padded::<64>(&format!("Lanyard virtual card slot {id}")),
        manufacturerID: padded::<32>("Lanyard"),
        flags,
        hardwareVersion: module_version(),
        firmwareVersion: module_version(),
    }
}

/// Token flags from the card's PIN state; `protected_path` when the daemon
/// asks for the PIN itself (set on every token in that mode, whatever the
/// card's state: applications read the flags once).
pub fn token_flags(pin: &PinState, protected_path: bool) -> CK_FLAGS {
    let mut flags = CKF_RNG
        | CKF_LOGIN_REQUIRED
        | CKF_USER_PIN_INITIALIZED
        | CKF_TOKEN_INITIALIZED
        | CKF_WRITE_PROTECTED;
    if protected_path {
        flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
    }
    if pin.locked {
        flags |= CKF_USER_PIN_LOCKED;
    } else if pin.failures > 0 {
        flags |= CKF_USER_PIN_COUNT_LOW;
        if pin.max_failures > 0 && pin.failures + 1 >= pin.max_failures {
            flags |= CKF_USER_PIN_FINAL_TRY;
        }
    }
    flags
}

/// CK_TOKEN_INFO for a present token, given this application's session
/// counts and whether the daemon is in protected-authentication-path mode.
pub fn token_info(
    token: &Token,
    state: &SlotState,
    sessions: CK_ULONG,
    rw_sessions: CK_ULONG,
    protected_path: bool,
) -> CK_TOKEN_INFO {
    let card = &token.card;
    CK_TOKEN_INFO {
        label: token_label(&card.holder_name, &card.card_id),
        manufacturerID: padded::<32>("Lanyard"),
        model: padded::<16>("Virtual card"),
        serialNumber: padded::<16>(&card.card_id),
        flags: token_flags(&state.pin, protected_path),
        ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
        ulSessionCount: sessions,
        ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
        ulRwSessionCount: rw_sessions,
        ulMaxPinLen: state.pin_max_len as CK_ULONG,
        ulMinPinLen: state.pin_min_len as CK_ULONG,
        ulTotalPublicMemory: crate::CK_UNAVAILABLE_INFORMATION,
        ulFreePublicMemory: crate::CK_UNAVAILABLE_INFORMATION,
        ulTotalPrivateMemory: crate::CK_UNAVAILABLE_INFORMATION,
        ulFreePrivateMemory: crate::CK_UNAVAILABLE_INFORMATION,
        hardwareVersion: module_version(),
        firmwareVersion: module_version(),
        utcTime: [b' '; 16],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keeps_card_id_and_pads() {
        let l = token_label("Dr Ada Smith", "0123456789abcdef");
        assert_eq!(&l, b"Dr Ada Smith 0123456789abcdef   ");
    }

    #[test]
    fn label_truncates_name_at_char_boundary() {
        // The name budget is 32 - 1 - 16 = 15 bytes; byte 15 falls inside the
        // second 'é' (two bytes each), so the cut goes back to 14.
        let l = token_label("Dr Ada Smithéé", "0123456789abcdef");
        assert_eq!(&l, "Dr Ada Smithé 0123456789abcdef ".as_bytes());
    }

    #[test]
    fn padded_cuts_utf8_safely() {
        let p = padded::<4>("aéé");
        assert_eq!(&p, b"a\xc3\xa9 ");
        assert_eq!(&padded::<16>("0123456789abcdefXYZ"), b"0123456789abcdef");
    }

    #[test]
    fn pin_flags() {
        let f = |failures, locked| {
            token_flags(
                &PinState {
                    failures,
                    max_failures: 3,
                    locked,
                },
                false,
            )
        };
        assert_eq!(
            f(0, false) & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY),
            0
        );
        assert_eq!(f(1, false) & CKF_USER_PIN_FINAL_TRY, 0);
        assert_ne!(f(1, false) & CKF_USER_PIN_COUNT_LOW, 0);
        assert_ne!(f(2, false) & CKF_USER_PIN_FINAL_TRY, 0);
        assert_ne!(f(3, true) & CKF_USER_PIN_LOCKED, 0);
        assert_ne!(f(0, false) & CKF_WRITE_PROTECTED, 0);
        assert_eq!(f(0, false) & CKF_PROTECTED_AUTHENTICATION_PATH, 0);
        let locked = PinState {
            failures: 3,
            max_failures: 3,
            locked: true,
        };
        assert_ne!(
            token_flags(&locked, true) & CKF_PROTECTED_AUTHENTICATION_PATH,
            0
        );
    }
}
