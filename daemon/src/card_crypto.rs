//! Encryption of a card at rest: a random card key seals the private key with
//! AES-256-GCM, and the card key is wrapped under a KEK derived with Argon2id
//! from the PIN, a per-card salt and the per-device secret.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::pin::Pin;

/// Length of the device secret, the card key and the KEK.
pub const KEY_LEN: usize = 32;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;

/// Fills a buffer from the OS random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf)
        .map_err(|e| Error::Crypto(format!("no randomness from the OS: {e}")))?;
    Ok(buf)
}

/// The per-device secret mixed into every KEK (file `device.secret`, 0600).
pub struct DeviceSecret(Zeroizing<[u8; KEY_LEN]>);

impl DeviceSecret {
    /// Reads the secret at `path`, creating it (32 random bytes, 0600) the first time.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let arr: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    Error::corrupt(
                        path,
                        format!("expected {KEY_LEN} bytes, found {}", bytes.len()),
                    )
                })?;
                Ok(DeviceSecret(Zeroizing::new(arr)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = Zeroizing::new(random_bytes::<KEY_LEN>()?);
                let ctx = || format!("cannot create device secret {}", path.display());
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| Error::io(ctx(), e))?;
                f.write_all(secret.as_slice())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::io(ctx(), e))?;
                if let Some(dir) = path.parent() {
                    crate::card_store::fsync_dir(dir)?;
                }
                Ok(DeviceSecret(secret))
            }
            Err(e) => Err(Error::io(
                format!("cannot read device secret {}", path.display()),
                e,
            )),
        }
    }

    /// A secret from bytes (tests, and the TPM-sealed secret once unsealed).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        DeviceSecret(Zeroizing::new(bytes))
    }

    /// The secret for a KEK that also needs a card's TPM share:
    /// SHA-256(label, device secret, share).
    pub fn combined_with(&self, share: &[u8]) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"lanyard/v1/kek-secret+tpm-share\0");
        h.update(self.0.as_slice());
        h.update(share);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        out.copy_from_slice(&h.finalize());
        DeviceSecret(out)
    }
}

/// Argon2id cost parameters, stored with each wrapped key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// A tiny cost for tests only (never for real cards): 64 KiB, one pass.
    pub const FOR_TESTS: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    /// Highest memory cost a card file may ask for: 2 GiB, RFC 9106's first
    /// recommended option. A hostile file must not make an unlock allocate
    /// terabytes or run for days.
    pub const MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;
    /// Highest number of passes a card file may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Highest number of lanes a card file may ask for.
    pub const MAX_PARALLELISM: u32 = 64;

    /// Whether this cost is within the limits above (it may still be
    /// refused by Argon2id itself, e.g. too little memory for the lanes).
    pub fn within_limits(&self) -> bool {
        self.memory_kib <= Self::MAX_MEMORY_KIB
            && self.iterations <= Self::MAX_ITERATIONS
            && self.parallelism <= Self::MAX_PARALLELISM
    }
}

/// The random key that seals a card's private key.
pub struct CardKey(Zeroizing<[u8; KEY_LEN]>);

impl CardKey {
    /// A fresh random card key.
    pub fn generate() -> Result<Self> {
        Ok(CardKey(Zeroizing::new(random_bytes::<KEY_LEN>()?)))
    }
}

/// Name of the KDF in card files.
pub const KDF_NAME: &str = "argon2id";
/// Name of the AEAD in card files.
pub const AEAD_NAME: &str = "aes-256-gcm";

/// The card key wrapped under Argon2id(PIN, salt, device secret) with
/// AES-256-GCM, exactly as stored in a card file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    /// Always [`KDF_NAME`].
    pub kdf: String,
    /// Per-card random salt.
    #[serde(with = "crate::b64_serde::bytes")]
    pub salt: Vec<u8>,
    /// Argon2id cost used.
    pub params: KdfParams,
    /// The card key sealed under the KEK.
    pub card_key: Sealed,
    /// With `device_secret = "tpm"`: the card's share sealed to the TPM under
    /// a PIN-derived authValue, mixed into the KEK's secret (see `tpm::share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_share: Option<crate::tpm::share::TpmShare>,
}

/// Data sealed with AES-256-GCM, exactly as stored in a card file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Always [`AEAD_NAME`].
    pub aead: String,
    /// GCM nonce.
    #[serde(with = "crate::b64_serde::bytes")]
    pub nonce: Vec<u8>,
    /// GCM ciphertext with tag.
    #[serde(with = "crate::b64_serde::bytes")]
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// Whether the algorithm names are the ones this build implements.
    pub fn is_supported(&self) -> bool {
        self.kdf == KDF_NAME && self.card_key.aead == AEAD_NAME
    }
}

fn aad(purpose: &str, card_id: &str) -> Vec<u8> {
    format!("lanyard/v1/{purpose}/{card_id}").into_bytes()
}

const PURPOSE_WRAP: &str = "card-key-wrap";
const PURPOSE_PRIVATE_KEY: &str = "private-key";
const PURPOSE_SIGNING_KEY: &str = "signing-key";

fn derive_kek(
    pin: &Pin,
    salt: &[u8],
    secret: &DeviceSecret,
    params: KdfParams,
) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|e| Error::Crypto(format!("Argon2id parameters: {e}")))?;
    let argon =
        Argon2::new_with_secret(secret.0.as_slice(), Algorithm::Argon2id, Version::V0x13, p)
            .map_err(|e| Error::Crypto(format!("Argon2id: {e}")))?;
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(pin.as_bytes(), salt, kek.as_mut_slice())
        .map_err(|e| Error::Crypto(format!("Argon2id: {e}")))?;
    Ok(kek)
}

fn gcm_seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Sealed> {
    let nonce = random_bytes::<NONCE_LEN>()?;
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|e| Error::Crypto(e.to_string()))?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::Crypto("AES-GCM encryption failed".into()))?;
    Ok(Sealed {
        aead: AEAD_NAME.into(),
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Why a GCM open failed: only the tag check is meaningful to callers.
#[derive(Debug)]
pub enum OpenError {
    /// Wrong key, or data changed.
    TagMismatch,
    /// The stored nonce has the wrong length.
    BadNonce,
}

fn gcm_open(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    sealed: &Sealed,
) -> std::result::Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.nonce.len() != NONCE_LEN {
        return Err(OpenError::BadNonce);
    }
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| OpenError::TagMismatch)?;
    cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| OpenError::TagMismatch)
}

/// Wraps `card_key` under the PIN with a fresh salt.
pub fn wrap_card_key(
    card_key: &CardKey,
    card_id: &str,
    pin: &Pin,
    secret: &DeviceSecret,
    params: KdfParams,
) -> Result<WrappedKey> {
    let salt = random_bytes::<SALT_LEN>()?;
    let kek = derive_kek(pin, &salt, secret, params)?;
    let sealed = gcm_seal(&kek, &aad(PURPOSE_WRAP, card_id), card_key.0.as_slice())?;
    Ok(WrappedKey {
        kdf: KDF_NAME.into(),
        salt: salt.to_vec(),
        params,
        card_key: sealed,
        tpm_share: None,
    })
}

/// Unwraps the card key. `Ok(None)` means the PIN (or device secret) is wrong.
pub fn unwrap_card_key(
    wrapped: &WrappedKey,
    card_id: &str,
    pin: &Pin,
    secret: &DeviceSecret,
    file: &Path,
) -> Result<Option<CardKey>> {
    if wrapped.salt.len() < 8 {
        return Err(Error::corrupt(file, "wrapped card key salt too short"));
    }
    let kek = derive_kek(pin, &wrapped.salt, secret, wrapped.params)
        .map_err(|e| Error::corrupt(file, format!("wrapped card key: {e}")))?;
    match gcm_open(&kek, &aad(PURPOSE_WRAP, card_id), &wrapped.card_key) {
        Ok(plain) => {
            let arr: [u8; KEY_LEN] = plain
                .as_slice()
                .try_into()
                .map_err(|_| Error::corrupt(file, "wrapped card key has the wrong length"))?;
            Ok(Some(CardKey(Zeroizing::new(arr))))
        }
        Err(OpenError::TagMismatch) => Ok(None),
        Err(OpenError::BadNonce) => Err(Error::corrupt(file, "wrapped card key nonce")),
    }
}

/// Seals the private key (PKCS#8 DER) under the card key, bound to the card id.
pub fn seal_private_key(card_key: &CardKey, card_id: &str, pkcs8: &[u8]) -> Result<Sealed> {
    gcm_seal(&card_key.0, &aad(PURPOSE_PRIVATE_KEY, card_id), pkcs8)
}

/// Opens the sealed private key. A failure here, with a card key that
/// unwrapped correctly, means the file was changed: `StoreCorrupt`.
pub fn open_private_key(
    card_key: &CardKey,
    card_id: &str,
    sealed: &Sealed,
    file: &Path,
) -> Result<Zeroizing<Vec<u8>>> {
    gcm_open(&card_key.0, &aad(PURPOSE_PRIVATE_KEY, card_id), sealed).map_err(|_| {
        Error::corrupt(
            file,
            "the encrypted private key fails its integrity check (tampered or damaged)",
        )
    })
}

/// Seals the document-signing private key (PKCS#8 DER) under the card key,
/// bound to the card id and to its role (it cannot stand in for the other key).
pub fn seal_signing_key(card_key: &CardKey, card_id: &str, pkcs8: &[u8]) -> Result<Sealed> {
    gcm_seal(&card_key.0, &aad(PURPOSE_SIGNING_KEY, card_id), pkcs8)
}

/// Opens the sealed document-signing key; a failure is `StoreCorrupt`.
pub fn open_signing_key(
    card_key: &CardKey,
    card_id: &str,
    sealed: &Sealed,
    file: &Path,
) -> Result<Zeroizing<Vec<u8>>> {
    gcm_open(&card_key.0, &aad(PURPOSE_SIGNING_KEY, card_id), sealed).map_err(|_| {
        Error::corrupt(
            file,
            "the encrypted document-signing key fails its integrity check (tampered or damaged)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_in_its_own_role() {
        let ck = CardKey::generate().unwrap();
        let f = Path::new("cards/C1.json");
        let signing = seal_signing_key(&ck, "C1", b"signing pkcs8").unwrap();
        assert_eq!(
            open_signing_key(&ck, "C1", &signing, f).unwrap().as_slice(),
            b"signing pkcs8"
        );
        assert!(open_private_key(&ck, "C1", &signing, f).is_err());
        let auth = seal_private_key(&ck, "C1", b"auth pkcs8").unwrap();
        assert!(open_signing_key(&ck, "C1", &auth, f).is_err());
        assert!(open_signing_key(&ck, "C2", &signing, f).is_err());
    }

    const FAST: KdfParams = KdfParams::FOR_TESTS;

    fn pin(s: &str) -> Pin {
        Pin::new(s.into())
    }

    #[test]
    fn wrap_unwrap_round_trip_and_wrong_pin() {
        let secret = DeviceSecret::from_bytes([7; 32]);
        let ck = CardKey::generate().unwrap();
        let w = wrap_card_key(&ck, "C1", &pin("123456"), &secret, FAST).unwrap();
        let back = unwrap_card_key(&w, "C1", &pin("123456"), &secret, Path::new("f"))
            .unwrap()
            .unwrap();
        assert_eq!(back.0.as_slice(), ck.0.as_slice());
        assert!(
            unwrap_card_key(&w, "C1", &pin("654321"), &secret, Path::new("f"))
                .unwrap()
                .is_none()
        );
        // Bound to the card id.
        assert!(
            unwrap_card_key(&w, "C2", &pin("123456"), &secret, Path::new("f"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn wrong_device_secret_cannot_unwrap() {
        let ck = CardKey::generate().unwrap();
        let w = wrap_card_key(
            &ck,
            "C1",
            &pin("123456"),
            &DeviceSecret::from_bytes([1; 32]),
            FAST,
        )
        .unwrap();
        let other = DeviceSecret::from_bytes([2; 32]);
        assert!(
            unwrap_card_key(&w, "C1", &pin("123456"), &other, Path::new("f"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sealed_private_key_detects_tampering() {
        let ck = CardKey::generate().unwrap();
        let mut s = seal_private_key(&ck, "C1", b"pkcs8 bytes").unwrap();
        assert_eq!(
            open_private_key(&ck, "C1", &s, Path::new("f"))
                .unwrap()
                .as_slice(),
            b"pkcs8 bytes"
        );
        s.ciphertext[0] ^= 1;
        let err = open_private_key(&ck, "C1", &s, Path::new("cards/C1.json")).unwrap_err();
        assert!(matches!(err, Error::StoreCorrupt { .. }));
        assert!(err.to_string().contains("cards/C1.json"));
    }

    #[test]
    fn device_secret_created_once_0600() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("device.secret");
        let a = DeviceSecret::load_or_create(&p).unwrap();
        let b = DeviceSecret::load_or_create(&p).unwrap();
        assert_eq!(a.0.as_slice(), b.0.as_slice());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&p, b"short").unwrap();
        assert!(matches!(
            DeviceSecret::load_or_create(&p),
            Err(Error::StoreCorrupt { .. })
        ));
    }
}
