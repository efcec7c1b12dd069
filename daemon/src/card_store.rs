//! The on-disk card store: `device.secret` and one JSON file per card under
//! `cards/`, every write atomic (temp file, fsync, rename, fsync directory).
//! Files that do not parse or verify are reported as `StoreCorrupt`, naming the file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::card_crypto::{
    self, random_bytes, CardKey, DeviceSecret, KdfParams, Sealed, WrappedKey,
};
use crate::error::{Error, Result};
use crate::keys::{KeyType, SigningKey};
use crate::paths::create_private_dir;
use crate::pin::Pin;

/// Version of the card file format written by this build.
pub const CARD_FORMAT_VERSION: u32 = 1;

/// Whether `id` is acceptable as a card id (it becomes a file name).
pub fn valid_card_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
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
    /// The card key under the PIN.
    pub wrapped_card_key: WrappedKey,
    /// The private key under the card key.
    pub private_key: Sealed,
    /// Consecutive wrong PINs (persisted before each check).
    pub pin_failures: u32,
}

impl CardFile {
    /// The key type, checked.
    pub fn key_type(&self) -> Option<KeyType> {
        KeyType::parse(&self.key_type)
    }
}

/// What is needed to put a new card in the store.
pub struct NewCard {
    /// The CA's card id.
    pub card_id: String,
    /// Slot chosen by the daemon.
    pub slot: u32,
    /// Holder's name.
    pub holder_name: String,
    /// Holder's user id.
    pub user_id: String,
    /// Holder's role.
    pub role: String,
    /// The card's private key.
    pub key: SigningKey,
    /// Leaf certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Chain, DER, issuing first.
    pub chain_der: Vec<Vec<u8>>,
}

/// The store directory with its device secret.
pub struct CardStore {
    dir: PathBuf,
    cards_dir: PathBuf,
    secret: DeviceSecret,
    kdf: KdfParams,
}

/// fsyncs a directory so a rename in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot fsync directory {}", dir.display()), e))
}

/// Writes `bytes` to `path` atomically: a 0600 temp file in the same
/// directory, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no directory", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::Internal(format!("{} has no file name", path.display())))?;
    let suffix = hex::encode(random_bytes::<6>()?);
    let tmp = dir.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));
    let ctx = || format!("cannot write {}", path.display());
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(ctx(), e));
    }
    fsync_dir(dir)
}

/// Logs a warning if the store directory is open to other users (the files
/// in it are 0600 and encrypted, so this is not fatal).
fn warn_if_open(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(store = %dir.display(), mode = format!("{mode:04o}"), "card store directory is open to other users; run chmod 700 on it");
        }
    }
}

/// Removes temp files a crash left between write and rename (never acknowledged).
fn remove_leftover_temp_files(cards_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cards_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed an unfinished write")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an unfinished write")
                }
            }
        }
    }
}

impl CardStore {
    /// Opens (creating, 0700) the store at `dir` and its device secret.
    pub fn open(dir: &Path, kdf: KdfParams) -> Result<Self> {
        let cards_dir = dir.join("cards");
        create_private_dir(&cards_dir)?;
        warn_if_open(dir);
        remove_leftover_temp_files(&cards_dir);
        let secret = DeviceSecret::load_or_create(&dir.join("device.secret"))?;
        Ok(CardStore {
            dir: dir.to_path_buf(),
            cards_dir,
            secret,
            kdf,
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a card's file.
    pub fn card_path(&self, card_id: &str) -> PathBuf {
        self.cards_dir.join(format!("{card_id}.json"))
    }

    /// Reads and checks one card file.
    pub fn load(&self, path: &Path) -> Result<CardFile> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let card: CardFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(path, format!("not a valid card file: {e}")))?;
        let bad = |r: &str| Err(Error::corrupt(path, r.to_string()));
        if card.version != CARD_FORMAT_VERSION {
            return bad(&format!("unknown format version {}", card.version));
        }
        if !valid_card_id(&card.card_id) || self.card_path(&card.card_id) != path {
            return bad("card_id does not match the file name");
        }
        if card.key_type().is_none() {
            return bad(&format!("unknown key type {:?}", card.key_type));
        }
        if !card.wrapped_card_key.is_supported() || card.private_key.aead != card_crypto::AEAD_NAME
        {
            return bad("unknown encryption scheme");
        }
        Ok(card)
    }

    /// Every card file in the store; a bad file gives an error in its place.
    pub fn load_all(&self) -> Result<Vec<Result<CardFile>>> {
        let entries = std::fs::read_dir(&self.cards_dir)
            .map_err(|e| Error::io(format!("cannot list {}", self.cards_dir.display()), e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| Error::io(format!("cannot list {}", self.cards_dir.display()), e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            out.push(self.load(&path));
        }
        Ok(out)
    }

    /// Writes a card file atomically.
    pub fn save(&self, card: &CardFile) -> Result<()> {
        let json = serde_json::to_vec_pretty(card)
            .map_err(|e| Error::Internal(format!("card serialisation: {e}")))?;
        write_atomic(&self.card_path(&card.card_id), &json)
    }

    /// Creates a card: a fresh card key seals the private key and is wrapped
    /// under `pin`. Fails if a card with this id already exists. This is
    /// also how tests put a card in the store without a CA.
    pub fn create(&self, new: &NewCard, pin: &Pin) -> Result<CardFile> {
        if !valid_card_id(&new.card_id) {
            return Err(Error::EnrollFailed(format!(
                "the CA returned an unusable card id {:?}",
                new.card_id
            )));
        }
        let path = self.card_path(&new.card_id);
        if path.exists() {
            return Err(Error::EnrollFailed(format!(
                "card {} is already in this store",
                new.card_id
            )));
        }
        let card_key = CardKey::generate()?;
        let pkcs8 = new.key.to_pkcs8()?;
        let sealed = card_crypto::seal_private_key(&card_key, &new.card_id, &pkcs8)?;
        let wrapped =
            card_crypto::wrap_card_key(&card_key, &new.card_id, pin, &self.secret, self.kdf)?;
        let card = CardFile {
            version: CARD_FORMAT_VERSION,
            card_id: new.card_id.clone(),
            slot: new.slot,
            holder_name: new.holder_name.clone(),
            user_id: new.user_id.clone(),
            role: new.role.clone(),
            key_type: new.key.key_type().as_str().into(),
            certificate: new.certificate_der.clone(),
            chain: new.chain_der.clone(),
            wrapped_card_key: wrapped,
            private_key: sealed,
            pin_failures: 0,
        };
        self.save(&card)?;
        Ok(card)
    }

    fn unwrap(&self, card: &CardFile, pin: &Pin) -> Result<Option<CardKey>> {
        card_crypto::unwrap_card_key(
            &card.wrapped_card_key,
            &card.card_id,
            pin,
            &self.secret,
            &self.card_path(&card.card_id),
        )
    }

    /// Decrypts the card's private key with `pin`. `Ok(None)`: wrong PIN.
    /// Does not touch the failure counter (the caller persists it first).
    pub fn unlock(&self, card: &CardFile, pin: &Pin) -> Result<Option<SigningKey>> {
        let path = self.card_path(&card.card_id);
        let Some(card_key) = self.unwrap(card, pin)? else {
            return Ok(None);
        };
        let pkcs8 =
            card_crypto::open_private_key(&card_key, &card.card_id, &card.private_key, &path)?;
        let key = SigningKey::from_pkcs8(&pkcs8)
            .map_err(|e| Error::corrupt(&path, format!("private key: {e}")))?;
        if Some(key.key_type()) != card.key_type() {
            return Err(Error::corrupt(
                &path,
                "private key type does not match key_type",
            ));
        }
        Ok(Some(key))
    }

    /// Re-wraps the card key under `new_pin` with a fresh salt, returning the
    /// updated card (not yet saved). `Ok(None)`: `old_pin` is wrong.
    pub fn rewrap(
        &self,
        card: &CardFile,
        old_pin: &Pin,
        new_pin: &Pin,
    ) -> Result<Option<CardFile>> {
        let Some(card_key) = self.unwrap(card, old_pin)? else {
            return Ok(None);
        };
        // A new PIN for a card whose key no longer opens would only hide the
        // damage until the next login: report it now, and write nothing.
        let path = self.card_path(&card.card_id);
        card_crypto::open_private_key(&card_key, &card.card_id, &card.private_key, &path)?;
        let wrapped =
            card_crypto::wrap_card_key(&card_key, &card.card_id, new_pin, &self.secret, self.kdf)?;
        let mut updated = card.clone();
        updated.wrapped_card_key = wrapped;
        updated.pin_failures = 0;
        Ok(Some(updated))
    }
}

/// Test helpers: a self-signed certificate for a key, so a card can be put
/// in the store without a CA (unit and integration tests).
pub mod testing {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::x509::{X509Builder, X509NameBuilder};

    use super::*;

    /// A self-signed certificate (DER) for `key`, subject CN=`cn`, valid `days`.
    pub fn self_signed_cert(key: &SigningKey, cn: &str, days: u32) -> Result<Vec<u8>> {
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", cn)?;
        let name = name.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let mut serial = BigNum::new()?;
        serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
        let serial = serial.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(key.pkey())?;
        let not_before = Asn1Time::days_from_now(0)?;
        let not_after = Asn1Time::days_from_now(days)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.sign(key.pkey(), MessageDigest::sha256())?;
        Ok(b.build().to_der()?)
    }

    /// A NewCard for `key` with a self-signed certificate.
    pub fn self_signed_card(
        card_id: &str,
        slot: u32,
        holder_name: &str,
        key: SigningKey,
    ) -> Result<NewCard> {
        let cert = self_signed_cert(&key, holder_name, 30)?;
        Ok(NewCard {
            card_id: card_id.into(),
            slot,
            holder_name: holder_name.into(),
            user_id: "555123456789".into(),
            role: "R8000 Clinical Practitioner".into(),
            key,
            certificate_der: cert.clone(),
            chain_der: vec![cert],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyType;

    const FAST: KdfParams = KdfParams::FOR_TESTS;

    fn pin(s: &str) -> Pin {
        Pin::new(s.into())
    }

    fn store_with_card() -> (tempfile::TempDir, CardStore, CardFile, Vec<u8>) {
        let tmp = tempfile::tempdir().unwrap();
        let store = CardStore::open(tmp.path(), FAST).unwrap();
        let key = SigningKey::generate(KeyType::EcP256).unwrap();
        let public = key.public_key_der().unwrap();
        let new = testing::self_signed_card("CARD1", 0, "Dr Ada Smith", key).unwrap();
        let card = store.create(&new, &pin("123456")).unwrap();
        (tmp, store, card, public)
    }

    #[test]
    fn right_pin_unlocks_the_same_key() {
        let (_t, store, card, key) = store_with_card();
        let loaded = store.load(&store.card_path("CARD1")).unwrap();
        assert_eq!(loaded, card);
        let k = store.unlock(&loaded, &pin("123456")).unwrap().unwrap();
        assert_eq!(k.public_key_der().unwrap(), key);
    }

    #[test]
    fn wrong_pin_cannot_decrypt() {
        let (_t, store, card, _) = store_with_card();
        assert!(store.unlock(&card, &pin("123457")).unwrap().is_none());
    }

    #[test]
    fn wrong_device_secret_cannot_decrypt() {
        let (tmp, store, card, _) = store_with_card();
        drop(store);
        std::fs::write(tmp.path().join("device.secret"), [9u8; 32]).unwrap();
        let store = CardStore::open(tmp.path(), FAST).unwrap();
        assert!(store.unlock(&card, &pin("123456")).unwrap().is_none());
    }

    #[test]
    fn tampered_ciphertext_is_store_corrupt() {
        let (_t, store, mut card, _) = store_with_card();
        card.private_key.ciphertext[5] ^= 0x40;
        let err = store.unlock(&card, &pin("123456")).err().unwrap();
        assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
        assert!(err.to_string().contains("CARD1.json"), "{err}");
    }

    #[test]
    fn rewrap_refuses_a_card_whose_key_does_not_open() {
        let (_t, store, mut card, _) = store_with_card();
        card.private_key.ciphertext[5] ^= 0x40;
        let err = store
            .rewrap(&card, &pin("123456"), &pin("654321"))
            .err()
            .unwrap();
        assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
    }

    #[test]
    fn tampered_json_is_store_corrupt() {
        let (_t, store, _, _) = store_with_card();
        let path = store.card_path("CARD1");
        let text = std::fs::read_to_string(&path).unwrap();
        for bad in [
            text.replacen("\"card_id\": \"CARD1\"", "\"card_id\": \"CARD2\"", 1),
            text.replacen("\"version\": 1", "\"version\": \"one\"", 1),
            text.replacen("\"key_type\": \"ec-p256\"", "\"key_type\": \"dsa\"", 1),
            text.replacen("\"nonce\": \"", "\"nonce\": \"!!", 1),
        ] {
            assert_ne!(bad, text);
            std::fs::write(&path, &bad).unwrap();
            let err = store.load(&path).unwrap_err();
            assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
            assert!(err.to_string().contains("CARD1.json"), "{err}");
        }
    }

    #[test]
    fn truncated_file_is_store_corrupt() {
        let (_t, store, _, _) = store_with_card();
        let path = store.card_path("CARD1");
        let bytes = std::fs::read(&path).unwrap();
        for len in [0, 1, bytes.len() / 2, bytes.len() - 2] {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let err = store.load(&path).unwrap_err();
            assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
        }
        let all = store.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].is_err());
    }

    #[test]
    fn rewrap_changes_the_pin() {
        let (_t, store, card, _) = store_with_card();
        assert!(store
            .rewrap(&card, &pin("000000"), &pin("654321"))
            .unwrap()
            .is_none());
        let new = store
            .rewrap(&card, &pin("123456"), &pin("654321"))
            .unwrap()
            .unwrap();
        assert_ne!(new.wrapped_card_key.salt, card.wrapped_card_key.salt);
        store.save(&new).unwrap();
        assert!(store.unlock(&new, &pin("123456")).unwrap().is_none());
        assert!(store.unlock(&new, &pin("654321")).unwrap().is_some());
    }

    #[test]
    fn files_are_private_and_no_temp_left() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, store, _, _) = store_with_card();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.card_path("CARD1")), 0o600);
        assert_eq!(mode(&tmp.path().join("cards")), 0o700);
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("cards"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("CARD1.json")]);
    }

    #[test]
    fn unfinished_writes_are_cleaned_up_at_open() {
        let (tmp, store, _, _) = store_with_card();
        let leftover = tmp.path().join("cards/.CARD1.json.abcdef.tmp");
        std::fs::write(&leftover, b"{\"half").unwrap();
        drop(store);
        let store = CardStore::open(tmp.path(), FAST).unwrap();
        assert!(!leftover.exists());
        assert_eq!(store.load_all().unwrap().len(), 1);
    }

    #[test]
    fn card_ids_are_file_name_safe() {
        assert!(valid_card_id("LNY-7F3K-20"));
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(!valid_card_id(bad), "{bad}");
        }
    }
}
