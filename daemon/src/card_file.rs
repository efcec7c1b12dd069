//! The card file format (`cards/<CARD_ID>.json`): version 2 adds the CA a card
//! renews with, its standing with the CA and lifecycle bookkeeping; version 1
//! files load unchanged (serde defaults). An optional `signing` record holds
//! the document-signing key and certificate. A revoked card is a tombstone:
//! no key material.

use serde::{Deserialize, Serialize};

use crate::card_crypto::{Sealed, WrappedKey};
use crate::keys::KeyType;

/// Version of the card file format written by this build.
pub const CARD_FORMAT_VERSION: u32 = 2;
/// Oldest card file version this build still reads.
pub const OLDEST_CARD_FORMAT_VERSION: u32 = 1;

/// Whether `id` is acceptable as a card id (it becomes a file name).
pub fn valid_card_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A card's standing with the CA as last learned (expiry is derived from the
/// certificate, not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardState {
    /// In use.
    #[default]
    Active,
    /// Suspended by the IT desk: no logins, keys kept.
    Suspended,
    /// Revoked: the key material is destroyed (the file is a tombstone).
    Revoked,
}

/// Renewal and check-in bookkeeping, for `lanyard status`. Times are Unix seconds, 0 = never.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleRecord {
    /// When the current certificate was stored on this device (enrolment,
    /// renewal, PIN reset); 0 if unknown (cards from before version 2).
    pub installed: i64,
    /// Last successful renewal.
    pub last_renewal: i64,
    /// Last renewal failure, one line; empty after a success.
    pub last_renewal_error: String,
    /// Last successful check-in with the CA.
    pub last_check_in: i64,
    /// Last check-in failure, one line; empty after a success.
    pub last_check_in_error: String,
}

/// The card's document-signing key (the role of a PIV card's slot 9C): its
/// certificate and its private key sealed under the same card key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRecord {
    /// The document-signing certificate, DER.
    #[serde(with = "crate::b64_serde::bytes")]
    pub certificate: Vec<u8>,
    /// The document-signing private key under the card key.
    pub private_key: Sealed,
}

/// One card, exactly as in `cards/<CARD_ID>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardFile {
    /// File format version.
    pub version: u32,
    /// The CA's card id.
    pub card_id: String,
    /// Fixed slot of this card.
    pub slot: u32,
    /// Holder's name from the CA.
    pub holder_name: String,
    /// Holder's user id (UUID) from the CA.
    pub user_id: String,
    /// Holder's role from the CA.
    pub role: String,
    /// `rsa-2048` or `ec-p256`.
    pub key_type: String,
    /// Leaf certificate, DER.
    #[serde(with = "crate::b64_serde::bytes")]
    pub certificate: Vec<u8>,
    /// Chain above the leaf, DER, issuing first.
    #[serde(with = "crate::b64_serde::list")]
    pub chain: Vec<Vec<u8>>,
    /// The card key under the PIN; absent in a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_card_key: Option<WrappedKey>,
    /// The private key under the card key; absent in a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Sealed>,
    /// Consecutive wrong PINs (persisted before each check).
    pub pin_failures: u32,
    /// `https://HOST:PORT` of the CA for renewal and check-in; empty for v1 cards.
    #[serde(default)]
    pub ca_url: String,
    /// PEM bundle the CA's TLS certificate must chain to (given at enrolment).
    #[serde(default)]
    pub ca_cert_pem: String,
    /// Standing with the CA.
    #[serde(default)]
    pub status: CardState,
    /// Renewal and check-in bookkeeping.
    #[serde(default)]
    pub lifecycle: LifecycleRecord,
    /// The document-signing key and certificate; absent for a card enrolled
    /// without one, and in a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningKeyRecord>,
    /// With `device_secret = "tpm"`: the TPM NV counter that counts this
    /// card's PIN attempts (then `pin_failures` only mirrors it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_counter: Option<TpmCounter>,
}

/// A card's PIN retry counter in the TPM: failures = the NV counter's value
/// minus `base` (set to the value after each success), so a restored older
/// file shows more failures, never fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmCounter {
    /// The NV index (in Lanyard's range of the owner's indexes).
    pub nv_index: u32,
    /// The counter's value when the failures were last zero.
    pub base: u64,
}

/// The encrypted key material of a card that still has it.
pub struct KeyMaterial<'a> {
    /// The card key under the PIN.
    pub wrapped_card_key: &'a WrappedKey,
    /// The private key under the card key.
    pub private_key: &'a Sealed,
}

impl CardFile {
    /// The key type, checked.
    pub fn key_type(&self) -> Option<KeyType> {
        KeyType::parse(&self.key_type)
    }

    /// The key material, `None` for a tombstone.
    pub fn key_material(&self) -> Option<KeyMaterial<'_>> {
        match (&self.wrapped_card_key, &self.private_key) {
            (Some(w), Some(p)) => Some(KeyMaterial {
                wrapped_card_key: w,
                private_key: p,
            }),
            _ => None,
        }
    }

    /// Whether the CA address and trust bundle needed to renew and check in are on record.
    pub fn has_ca(&self) -> bool {
        !self.ca_url.is_empty() && !self.ca_cert_pem.is_empty()
    }

    /// The same card as a tombstone: revoked, key material removed; identity,
    /// slot and certificate kept so status can say what happened and a
    /// re-issue keeps the slot.
    pub fn tombstone(&self) -> CardFile {
        CardFile {
            version: CARD_FORMAT_VERSION,
            wrapped_card_key: None,
            private_key: None,
            signing: None,
            status: CardState::Revoked,
            ..self.clone()
        }
    }

    /// Why this file cannot be used, if it is inconsistent (version, key
    /// material against status). Names and schemes are checked by the store.
    pub fn inconsistency(&self) -> Option<String> {
        if !(OLDEST_CARD_FORMAT_VERSION..=CARD_FORMAT_VERSION).contains(&self.version) {
            return Some(format!("unknown format version {}", self.version));
        }
        let has_keys = self.key_material().is_some();
        let any_key =
            self.wrapped_card_key.is_some() || self.private_key.is_some() || self.signing.is_some();
        match self.status {
            CardState::Revoked if any_key => Some("a revoked card still holds key material".into()),
            CardState::Revoked => None,
            _ if !has_keys => Some("the card's key material is missing".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A card file exactly as version 1 of lanyardd wrote it.
    const V1: &str = r#"{
  "version": 1,
  "card_id": "CARD1",
  "slot": 0,
  "holder_name": "Dr Ada Smith",
  "user_id": "555123456789",
  "role": "R8000 Clinical Practitioner",
  "key_type": "ec-p256",
  "certificate": "AAEC",
  "chain": ["AwQF"],
  "wrapped_card_key": {
    "kdf": "argon2id",
    "salt": "AAAAAAAAAAAAAAAAAAAAAA==",
    "params": {"memory_kib": 64, "iterations": 1, "parallelism": 1},
    "card_key": {"aead": "aes-256-gcm", "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "AQID"}
  },
  "private_key": {"aead": "aes-256-gcm", "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "BAUG"},
  "pin_failures": 2
}"#;

    #[test]
    fn a_v1_file_loads_with_v2_defaults() {
        let card: CardFile = serde_json::from_str(V1).unwrap();
        assert_eq!(card.version, 1);
        assert_eq!(card.pin_failures, 2);
        assert_eq!(card.certificate, vec![0, 1, 2]);
        assert_eq!(card.status, CardState::Active);
        assert_eq!(card.ca_url, "");
        assert!(!card.has_ca());
        assert_eq!(card.lifecycle, LifecycleRecord::default());
        assert_eq!(card.signing, None);
        assert!(card.key_material().is_some());
        assert_eq!(card.inconsistency(), None);
    }

    #[test]
    fn v2_fields_round_trip() {
        let mut card: CardFile = serde_json::from_str(V1).unwrap();
        card.version = CARD_FORMAT_VERSION;
        card.ca_url = "https://ca.example:8443".into();
        card.ca_cert_pem = "-----BEGIN CERTIFICATE-----\n".into();
        card.status = CardState::Suspended;
        card.lifecycle.last_check_in = 1_700_000_000;
        card.lifecycle.last_renewal_error = "CA busy".into();
        card.signing = Some(SigningKeyRecord {
            certificate: vec![9, 9],
            private_key: card.private_key.clone().unwrap(),
        });
        let text = serde_json::to_string(&card).unwrap();
        assert!(text.contains("\"status\":\"suspended\""), "{text}");
        let back: CardFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, card);
        assert!(back.has_ca());
    }

    #[test]
    fn a_tombstone_has_no_key_material_and_says_revoked() {
        let card: CardFile = serde_json::from_str(V1).unwrap();
        let t = card.tombstone();
        assert_eq!(t.status, CardState::Revoked);
        assert!(t.key_material().is_none());
        assert_eq!((t.slot, &t.certificate), (card.slot, &card.certificate));
        let text = serde_json::to_string(&t).unwrap();
        assert!(!text.contains("wrapped_card_key") && !text.contains("private_key"));
        assert!(!text.contains("signing"), "{text}");
        assert!(!text.contains("BAUG") && !text.contains("AQID"), "{text}");
        let back: CardFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.inconsistency(), None);
    }

    #[test]
    fn inconsistent_files_are_named() {
        let card: CardFile = serde_json::from_str(V1).unwrap();
        let mut no_keys = card.clone();
        no_keys.private_key = None;
        assert!(no_keys.inconsistency().unwrap().contains("missing"));
        let mut revoked_with_keys = card.clone();
        revoked_with_keys.status = CardState::Revoked;
        assert!(revoked_with_keys.inconsistency().is_some());
        let mut future = card;
        future.version = 3;
        assert!(future.inconsistency().unwrap().contains("version 3"));
        assert!(serde_json::from_str::<CardFile>(&V1.replace("\"slot\"", "\"sloth\"")).is_err());
    }

    #[test]
    fn card_ids_are_file_name_safe() {
        assert!(valid_card_id("LNY-7F3K-20"));
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(!valid_card_id(bad), "{bad}");
        }
    }
}
