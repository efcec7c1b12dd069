//! The on-disk card store: `device.secret` and one JSON file per card under
//! `cards/` (format in `card_file.rs`), every write atomic (temp file, fsync,
//! rename, fsync directory). Files that do not parse or verify are `StoreCorrupt`, naming the file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::card_crypto::{
    self, random_bytes, CardKey, DeviceSecret, KdfParams, Sealed, WrappedKey,
};
use crate::error::{Error, Result};
use crate::keys::SigningKey;
use crate::paths::{check_private_store_path, create_private_dir, current_uid};
use crate::pin::Pin;
use crate::tpm::{retry, sealed_file, Tpm};

pub use crate::card_file::{
    valid_card_id, CardFile, CardState, SigningKeyRecord, CARD_FORMAT_VERSION,
};

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
    /// `https://HOST:PORT` of the CA the card renews with (empty: none).
    pub ca_url: String,
    /// PEM bundle the CA's TLS certificate must chain to (empty: none).
    pub ca_cert_pem: String,
    /// The document-signing key and its certificate, if the CA issued one.
    pub signing: Option<NewSigningKey>,
}

/// A card's new document-signing key with its certificate.
pub struct NewSigningKey {
    /// The private key (same type as the card key).
    pub key: SigningKey,
    /// Its certificate, DER.
    pub certificate_der: Vec<u8>,
}

/// A card opened with its PIN: the signing key, and the card key that seals
/// it (kept while the card is unlocked, so a renewed key can be sealed without the PIN).
pub struct OpenedCard {
    /// The private key.
    pub key: SigningKey,
    /// The card key (wiped on drop).
    pub card_key: CardKey,
    /// The document-signing key, if the card has one.
    pub signing_key: Option<SigningKey>,
}

/// The store directory with its device secret.
pub struct CardStore {
    dir: PathBuf,
    cards_dir: PathBuf,
    secret: DeviceSecret,
    kdf: KdfParams,
    /// With `device_secret = "tpm"`: the TPM holding the sealed secret and the retry counters.
    tpm: Option<Tpm>,
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
        lanyard_fault::hit("card.write.before_rename");
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(ctx(), e));
    }
    lanyard_fault::hit("card.write.after_rename");
    fsync_dir(dir)
}

/// Refuses a store open to other users, checked when the daemon starts: the
/// directory, `cards/`, the device secret and every card file that exist must
/// be this user's and closed to group and others (the daemon makes them
/// 0700/0600; a looser mode was set by hand or by a copy). Missing ones are
/// created private later.
pub fn check_store_access(dir: &Path) -> Result<()> {
    let uid = current_uid();
    let cards_dir = dir.join("cards");
    for path in [
        dir.to_path_buf(),
        cards_dir.clone(),
        dir.join("device.secret"),
        dir.join(sealed_file::FILE_NAME),
    ] {
        if path.exists() {
            check_private_store_path(&path, uid)?;
        }
    }
    if !cards_dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(&cards_dir)
        .map_err(|e| Error::io(format!("cannot list {}", cards_dir.display()), e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::io(format!("cannot list {}", cards_dir.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".json") {
            check_private_store_path(&entry.path(), uid)?;
        }
    }
    Ok(())
}

/// Refuses to open a store whose cards were made under the other kind of
/// device secret (their keys would not open: cards would seem lost); with no
/// card yet, the other kind's secret is removed and the store switches.
fn check_secret_kind(dir: &Path, cards_dir: &Path, tpm: bool) -> Result<()> {
    let file = dir.join("device.secret");
    let sealed = dir.join(sealed_file::FILE_NAME);
    let (mine, other, other_kind) = if tpm {
        (&sealed, &file, "file")
    } else {
        (&file, &sealed, "tpm")
    };
    if mine.exists() || !other.exists() {
        return Ok(());
    }
    let has_cards = std::fs::read_dir(cards_dir)
        .map_err(|e| Error::io(format!("cannot list {}", cards_dir.display()), e))?
        .flatten()
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && name.ends_with(".json")
        });
    if has_cards {
        return Err(Error::Config {
            path: other.clone(),
            reason: format!(
                "this store's cards are protected by device_secret = \"{other_kind}\"; \
                 lanyardd.toml says \"{}\". Set device_secret = \"{other_kind}\" again \
                 (moving cards between the two is not supported: re-enrol them); nothing was changed",
                if tpm { "tpm" } else { "file" }
            ),
        });
    }
    std::fs::remove_file(other)
        .map_err(|e| Error::io(format!("cannot remove {}", other.display()), e))?;
    tracing::info!(removed = %other.display(), "empty store: device secret kind switched");
    Ok(())
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
    /// Opens (creating, 0700) the store at `dir` and its device secret
    /// (the daemon first refuses an open store: [`check_store_access`]).
    pub fn open(dir: &Path, kdf: KdfParams) -> Result<Self> {
        Self::open_with(dir, kdf, None)
    }

    /// Opens the store with its device secret in a file (`tpm` = `None`) or
    /// sealed to `tpm` (`device.secret.tpm`, created sealed the first time).
    /// A store whose cards were made under the other kind of secret is
    /// refused, changing nothing; an empty one switches.
    pub fn open_with(dir: &Path, kdf: KdfParams, tpm: Option<Tpm>) -> Result<Self> {
        let cards_dir = dir.join("cards");
        create_private_dir(&cards_dir)?;
        check_secret_kind(dir, &cards_dir, tpm.is_some())?;
        remove_leftover_temp_files(&cards_dir);
        let secret = match &tpm {
            None => DeviceSecret::load_or_create(&dir.join("device.secret"))?,
            Some(tpm) => sealed_file::load_or_create(tpm, &dir.join(sealed_file::FILE_NAME))?,
        };
        Ok(CardStore {
            dir: dir.to_path_buf(),
            cards_dir,
            secret,
            kdf,
            tpm,
        })
    }

    /// The TPM the device secret is sealed to, if it is.
    pub fn tpm(&self) -> Option<&Tpm> {
        self.tpm.as_ref()
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
        if let Some(why) = card.inconsistency() {
            return bad(&why);
        }
        if !valid_card_id(&card.card_id) || self.card_path(&card.card_id) != path {
            return bad("card_id does not match the file name");
        }
        if card.key_type().is_none() {
            return bad(&format!("unknown key type {:?}", card.key_type));
        }
        if let Some(m) = card.key_material() {
            if !m.wrapped_card_key.is_supported() || m.private_key.aead != card_crypto::AEAD_NAME {
                return bad("unknown encryption scheme");
            }
            if !m.wrapped_card_key.params.within_limits() {
                return bad("Argon2id cost beyond this build's limits");
            }
        }
        let mut card = card;
        match &self.tpm {
            Some(tpm) if card.status != CardState::Revoked => {
                card.pin_failures = retry::failures(tpm, &card, path)?;
            }
            None if card.tpm_counter.is_some()
                || card
                    .wrapped_card_key
                    .as_ref()
                    .is_some_and(|w| w.tpm_share.is_some()) =>
            {
                return bad(
                    "the card counts its PIN attempts in a TPM, but device_secret is not \"tpm\"",
                );
            }
            _ => {}
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

    /// Writes a card file atomically, always in the current format version.
    pub fn save(&self, card: &CardFile) -> Result<()> {
        self.write(card).map(drop)
    }

    /// Writes a card file like [`Self::save`] and returns it as written:
    /// with a TPM, its retry counter first brought to `pin_failures` (the
    /// counter is incremented before the file says so), defined for a new
    /// card and freed, after the write, for a revoked one.
    pub fn write(&self, card: &CardFile) -> Result<CardFile> {
        let mut card = card.clone();
        card.version = CARD_FORMAT_VERSION;
        let path = self.card_path(&card.card_id);
        let after = match &self.tpm {
            Some(tpm) => {
                let previous = match card.tpm_counter {
                    Some(_) => None,
                    None => self.load_raw(&path).and_then(|old| old.tpm_counter),
                };
                Some((
                    tpm,
                    retry::reconcile(tpm, &mut card, previous.map(|c| c.nv_index))?,
                ))
            }
            None => None,
        };
        let json = serde_json::to_vec_pretty(&card)
            .map_err(|e| Error::Internal(format!("card serialisation: {e}")))?;
        write_atomic(&path, &json)?;
        if let Some((tpm, after)) = after {
            retry::after_write(tpm, after, &card.card_id);
        }
        Ok(card)
    }

    /// Removes a card just created that cannot be served (best effort):
    /// its file, then its TPM retry counter if it has one.
    pub fn discard_new(&self, card_id: &str) {
        let path = self.card_path(card_id);
        let counter = self.load_raw(&path).and_then(|c| c.tpm_counter);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(card = %card_id, error = %e, "cannot remove the card just created");
            return;
        }
        if let (Some(tpm), Some(c)) = (&self.tpm, counter) {
            retry::after_write(tpm, retry::AfterWrite::Free(c.nv_index), card_id);
        }
    }

    /// The card file at `path` as it parses, unchecked; `None` if absent or unreadable.
    fn load_raw(&self, path: &Path) -> Option<CardFile> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A card file for `new` (not yet saved): a fresh card key seals the
    /// private key and is wrapped under `pin`.
    pub fn seal_new(&self, new: &NewCard, pin: &Pin) -> Result<CardFile> {
        if !valid_card_id(&new.card_id) {
            return Err(Error::EnrollFailed(format!(
                "the CA returned an unusable card id {:?}",
                new.card_id
            )));
        }
        let card_key = CardKey::generate()?;
        let sealed = self.seal_key(&card_key, &new.card_id, &new.key)?;
        let signing = new
            .signing
            .as_ref()
            .map(|s| self.seal_signing(&card_key, &new.card_id, s))
            .transpose()?;
        let wrapped = self.wrap(&card_key, &new.card_id, pin)?;
        Ok(CardFile {
            version: CARD_FORMAT_VERSION,
            card_id: new.card_id.clone(),
            slot: new.slot,
            holder_name: new.holder_name.clone(),
            user_id: new.user_id.clone(),
            role: new.role.clone(),
            key_type: new.key.key_type().as_str().into(),
            certificate: new.certificate_der.clone(),
            chain: new.chain_der.clone(),
            wrapped_card_key: Some(wrapped),
            private_key: Some(sealed),
            pin_failures: 0,
            ca_url: new.ca_url.clone(),
            ca_cert_pem: new.ca_cert_pem.clone(),
            status: CardState::Active,
            lifecycle: crate::card_file::LifecycleRecord {
                installed: crate::lifecycle::now_unix(),
                ..Default::default()
            },
            signing,
            tpm_counter: None,
        })
    }

    /// Seals a new document-signing key under `card_key` for `card_id`, with its certificate.
    pub fn seal_signing(
        &self,
        card_key: &CardKey,
        card_id: &str,
        new: &NewSigningKey,
    ) -> Result<SigningKeyRecord> {
        let pkcs8 = new.key.to_pkcs8()?;
        Ok(SigningKeyRecord {
            certificate: new.certificate_der.clone(),
            private_key: card_crypto::seal_signing_key(card_key, card_id, &pkcs8)?,
        })
    }

    /// Opens the card's document-signing key, if it has one, checking its type.
    pub fn open_signing_key(
        &self,
        card: &CardFile,
        card_key: &CardKey,
    ) -> Result<Option<SigningKey>> {
        let Some(record) = &card.signing else {
            return Ok(None);
        };
        let path = self.card_path(&card.card_id);
        let pkcs8 =
            card_crypto::open_signing_key(card_key, &card.card_id, &record.private_key, &path)?;
        let key = SigningKey::from_pkcs8(&pkcs8)
            .map_err(|e| Error::corrupt(&path, format!("document-signing key: {e}")))?;
        if Some(key.key_type()) != card.key_type() {
            return Err(Error::corrupt(
                &path,
                "document-signing key type does not match key_type",
            ));
        }
        Ok(Some(key))
    }

    /// Creates a card (see [`Self::seal_new`]) and writes it. Fails if a
    /// card with this id already exists. This is also how tests put a card
    /// in the store without a CA.
    pub fn create(&self, new: &NewCard, pin: &Pin) -> Result<CardFile> {
        let card = self.seal_new(new, pin)?;
        if self.card_path(&new.card_id).exists() {
            return Err(Error::EnrollFailed(format!(
                "card {} is already in this store",
                new.card_id
            )));
        }
        self.save(&card)?;
        Ok(card)
    }

    /// Seals `key` (PKCS#8) under `card_key` for `card_id`.
    pub fn seal_key(&self, card_key: &CardKey, card_id: &str, key: &SigningKey) -> Result<Sealed> {
        let pkcs8 = key.to_pkcs8()?;
        card_crypto::seal_private_key(card_key, card_id, &pkcs8)
    }

    /// Wraps `card_key` under `pin`; with a TPM, a new TPM share (sealed
    /// under the PIN, DA-protected) is mixed into the KEK.
    fn wrap(&self, card_key: &CardKey, card_id: &str, pin: &Pin) -> Result<WrappedKey> {
        let Some(tpm) = &self.tpm else {
            return card_crypto::wrap_card_key(card_key, card_id, pin, &self.secret, self.kdf);
        };
        let (sealed, share) = crate::tpm::share::create(tpm, card_id, pin)?;
        let secret = self.secret.combined_with(share.as_slice());
        let mut wrapped = card_crypto::wrap_card_key(card_key, card_id, pin, &secret, self.kdf)?;
        wrapped.tpm_share = Some(sealed);
        Ok(wrapped)
    }

    fn unwrap(&self, card: &CardFile, pin: &Pin) -> Result<Option<CardKey>> {
        let m = card.key_material().ok_or_else(|| destroyed(card))?;
        let path = self.card_path(&card.card_id);
        let w = m.wrapped_card_key;
        let secret = match (&w.tpm_share, &self.tpm) {
            (None, _) => None,
            (Some(share), Some(tpm)) => {
                // A wrong PIN is refused (and counted) by the TPM itself.
                match crate::tpm::share::open(tpm, &card.card_id, pin, share)? {
                    Some(bytes) => Some(self.secret.combined_with(bytes.as_slice())),
                    None => return Ok(None),
                }
            }
            (Some(_), None) => {
                return Err(Error::corrupt(
                    &path,
                    "the card needs its TPM share, but no TPM is configured",
                ))
            }
        };
        card_crypto::unwrap_card_key(
            w,
            &card.card_id,
            pin,
            secret.as_ref().unwrap_or(&self.secret),
            &path,
        )
    }

    /// Opens the sealed private key with an unwrapped card key, checking its type.
    pub fn open_key(&self, card: &CardFile, card_key: &CardKey) -> Result<SigningKey> {
        let path = self.card_path(&card.card_id);
        let m = card.key_material().ok_or_else(|| destroyed(card))?;
        let pkcs8 = card_crypto::open_private_key(card_key, &card.card_id, m.private_key, &path)?;
        let key = SigningKey::from_pkcs8(&pkcs8)
            .map_err(|e| Error::corrupt(&path, format!("private key: {e}")))?;
        if Some(key.key_type()) != card.key_type() {
            return Err(Error::corrupt(
                &path,
                "private key type does not match key_type",
            ));
        }
        Ok(key)
    }

    /// Decrypts the card's private key with `pin`. `Ok(None)`: wrong PIN.
    /// Does not touch the failure counter (the caller persists it first).
    pub fn unlock(&self, card: &CardFile, pin: &Pin) -> Result<Option<OpenedCard>> {
        let Some(card_key) = self.unwrap(card, pin)? else {
            return Ok(None);
        };
        let key = self.open_key(card, &card_key)?;
        let signing_key = self.open_signing_key(card, &card_key)?;
        Ok(Some(OpenedCard {
            key,
            card_key,
            signing_key,
        }))
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
        self.open_key(card, &card_key)?;
        let wrapped = self.wrap(&card_key, &card.card_id, new_pin)?;
        let mut updated = card.clone();
        updated.wrapped_card_key = Some(wrapped);
        updated.pin_failures = 0;
        Ok(Some(updated))
    }
}

/// The error for using the keys of a tombstone.
fn destroyed(card: &CardFile) -> Error {
    Error::revoked(&card.card_id)
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
            ca_url: String::new(),
            ca_cert_pem: String::new(),
            signing: None,
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
        assert_eq!(k.key.public_key_der().unwrap(), key);
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
        card.private_key.as_mut().unwrap().ciphertext[5] ^= 0x40;
        let err = store.unlock(&card, &pin("123456")).err().unwrap();
        assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
        assert!(err.to_string().contains("CARD1.json"), "{err}");
    }

    #[test]
    fn rewrap_refuses_a_card_whose_key_does_not_open() {
        let (_t, store, mut card, _) = store_with_card();
        card.private_key.as_mut().unwrap().ciphertext[5] ^= 0x40;
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
            text.replacen("\"version\": 2", "\"version\": \"two\"", 1),
            text.replacen("\"version\": 2", "\"version\": 9", 1),
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
        assert_ne!(
            new.wrapped_card_key.as_ref().unwrap().salt,
            card.wrapped_card_key.as_ref().unwrap().salt
        );
        store.save(&new).unwrap();
        assert!(store.unlock(&new, &pin("123456")).unwrap().is_none());
        assert!(store.unlock(&new, &pin("654321")).unwrap().is_some());
    }

    /// Checks that `dir` holds CARD1's file and nothing else.
    fn assert_only_card1(dir: &Path) {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("CARD1.json")]);
    }

    #[test]
    fn a_store_open_to_others_is_refused_naming_the_path_and_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, store, _, _) = store_with_card();
        let card = store.card_path("CARD1");
        drop(store);
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        chmod(tmp.path(), 0o700);
        check_store_access(tmp.path()).unwrap();
        let cases = [
            (tmp.path().to_path_buf(), 0o755, 0o700, "700"),
            (tmp.path().join("cards"), 0o770, 0o700, "700"),
            (tmp.path().join("device.secret"), 0o640, 0o600, "600"),
            (card.clone(), 0o604, 0o600, "600"),
        ];
        for (path, open, private, fix) in cases {
            chmod(&path, open);
            let err = check_store_access(tmp.path()).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::InsecureDirectory(_)), "{text}");
            assert!(text.contains(&format!("{open:04o}")), "{text}");
            assert!(
                text.contains(&format!("chmod {fix} {}", path.display())),
                "{text}"
            );
            chmod(&path, private);
        }
        check_store_access(tmp.path()).unwrap();
        // A store not created yet is fine: the daemon creates it private.
        check_store_access(&tmp.path().join("not-yet")).unwrap();
        let store = CardStore::open(tmp.path(), FAST).unwrap();
        assert!(store.load(&card).is_ok(), "the check changed nothing");
    }

    #[test]
    fn files_are_private_and_no_temp_left() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, store, _, _) = store_with_card();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.card_path("CARD1")), 0o600);
        assert_eq!(mode(&tmp.path().join("cards")), 0o700);
        assert_only_card1(&tmp.path().join("cards"));
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
    fn a_tombstone_on_disk_holds_no_key_material() {
        use base64::Engine as _;
        let (_t, store, card, _) = store_with_card();
        let path = store.card_path("CARD1");
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let secrets = [
            b64(&card.private_key.as_ref().unwrap().ciphertext),
            b64(&card.wrapped_card_key.as_ref().unwrap().card_key.ciphertext),
        ];
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(secrets.iter().all(|s| before.contains(s.as_str())));
        store.save(&card.tombstone()).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        for s in &secrets {
            assert!(!after.contains(s.as_str()), "key material left on disk");
        }
        let loaded = store.load(&path).unwrap();
        assert_eq!(loaded.status, CardState::Revoked);
        assert_eq!((loaded.slot, &loaded.certificate), (0, &card.certificate));
        let err = store.unlock(&loaded, &pin("123456")).err().unwrap();
        assert!(matches!(err, Error::CardRevoked { .. }), "{err}");
        // Nothing else of the card is left in the directory.
        assert_only_card1(path.parent().unwrap());
    }

    #[test]
    fn a_v1_card_file_is_read_and_rewritten_as_v2() {
        let (_t, store, card, public) = store_with_card();
        let path = store.card_path("CARD1");
        // What version 1 wrote: no v2 fields at all.
        let mut v1: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let obj = v1.as_object_mut().unwrap();
        for k in ["ca_url", "ca_cert_pem", "status", "lifecycle"] {
            obj.remove(k);
        }
        obj.insert("version".into(), 1.into());
        std::fs::write(&path, serde_json::to_vec_pretty(&v1).unwrap()).unwrap();
        let loaded = store.load(&path).unwrap();
        assert_eq!(loaded.version, 1);
        assert_eq!(loaded.status, CardState::Active);
        assert!(!loaded.has_ca());
        let opened = store.unlock(&loaded, &pin("123456")).unwrap().unwrap();
        assert_eq!(opened.key.public_key_der().unwrap(), public);
        store.save(&loaded).unwrap();
        let again = store.load(&path).unwrap();
        assert_eq!(again.version, CARD_FORMAT_VERSION);
        assert_eq!(again.certificate, card.certificate);
    }
}
