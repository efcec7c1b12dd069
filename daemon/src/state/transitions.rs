//! The card lifecycle transitions of the daemon state: installing a renewed
//! key and certificate (file first, then the in-memory swap), recording
//! failures, applying a check-in (suspend, resume, revoke = destroy the
//! keys), and replacing a card in place (re-issue, PIN reset).

use std::sync::Arc;

use lanyard_proto::agent::CardInfo;

use super::{blocking_failed, CardEntry, CardKeys, Daemon, Schedule, Unlocked};
use crate::card_store::{CardFile, CardState, NewCard};
use crate::error::{Error, Result};
use crate::keys::{KeyType, SigningKey};
use crate::lifecycle::now_unix;
use crate::pin::Pin;
use crate::renewal_schedule::draw_spread;

/// What a renewal needs to know of the card, taken before the (slow) CA call.
#[derive(Debug, Clone)]
pub struct RenewalSnapshot {
    /// The card.
    pub card_id: String,
    /// Type of the current (and the new) key.
    pub key_type: KeyType,
    /// The current leaf certificate, DER (the mTLS client certificate).
    pub certificate: Vec<u8>,
    /// The chain above it, DER, issuing CA first.
    pub chain: Vec<Vec<u8>>,
    /// `https://HOST:PORT` of the CA.
    pub ca_url: String,
    /// PEM bundle the CA's TLS certificate must chain to.
    pub ca_cert_pem: String,
}

/// A card to check in with its CA.
#[derive(Debug, Clone)]
pub struct CheckInTarget {
    /// The card.
    pub card_id: String,
    /// Serial of the certificate held, lower-case hex.
    pub serial: String,
    /// `https://HOST:PORT` of the CA.
    pub ca_url: String,
    /// PEM bundle the CA's TLS certificate must chain to.
    pub ca_cert_pem: String,
}

/// What a check-in found out about a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckInOutcome {
    /// The card is in use (again).
    Active,
    /// The IT desk suspended the card.
    Suspended,
    /// The card, or the certificate held, is revoked: destroy the keys.
    /// `card_wide`: the card itself is revoked (whatever certificate is held).
    Revoked { reason: String, card_wide: bool },
    /// Nothing to change (e.g. waiting for a re-enrolment).
    Unchanged,
    /// The CA could not answer; one line.
    Failed(String),
}

impl Daemon {
    /// When the card renews next: only while unlocked, active, unexpired and
    /// with a CA on record. A retry after a failure takes precedence.
    pub(super) fn next_renewal(&self, entry: &CardEntry, now: i64) -> Option<i64> {
        let renewable = entry.unlocked.is_some()
            && entry.file.has_ca()
            && entry.file.status == CardState::Active
            && now < entry.facts.not_after;
        renewable.then(|| {
            entry.schedule.retry_at.unwrap_or_else(|| {
                let due = self.renewal_policy.renew_at(
                    entry.lifetime_start(),
                    entry.facts.not_after,
                    entry.schedule.jitter,
                );
                // A CA that issues certificates already due again must not
                // be asked more often than the shortest retry wait.
                let floor = self.renewal_policy.retry_min.as_secs() as i64;
                due.max(entry.file.lifecycle.last_renewal.saturating_add(floor))
            })
        })
    }

    /// Every scheduled renewal: (card id, Unix second it is due).
    pub fn renewal_plan(&self, now: i64) -> Vec<(String, i64)> {
        let inner = self.inner();
        inner
            .cards
            .values()
            .filter_map(|e| Some((e.file.card_id.clone(), self.next_renewal(e, now)?)))
            .collect()
    }

    /// The card's keys if some application keeps it unlocked.
    pub fn unlocked_keys(&self, card_id: &str) -> Option<CardKeys> {
        let inner = self.inner();
        let u = inner.cards.get(card_id)?.unlocked.as_ref()?;
        Some(CardKeys {
            key: u.key.clone(),
            card_key: u.card_key.clone(),
        })
    }

    /// The keys for a renewal: the unlocked ones, else opened with `pin`
    /// (a counted attempt; nothing stays unlocked). Without either: NOT_LOGGED_IN.
    pub async fn keys_for_renewal(&self, card_id: &str, pin: Option<Pin>) -> Result<CardKeys> {
        if let Some(keys) = self.unlocked_keys(card_id) {
            return Ok(keys);
        }
        let Some(pin) = pin else {
            self.card(card_id, None)?;
            return Err(Error::NotLoggedIn(card_id.into()));
        };
        self.policy.check_format(&pin)?;
        let lock = self.file_lock(card_id)?;
        let _guard = lock.lock().await;
        let u = self.keys_with_pin(card_id, pin).await?;
        Ok(CardKeys {
            key: u.key.clone(),
            card_key: u.card_key.clone(),
        })
    }

    /// What a renewal of `card_id` starts from; refuses a suspended,
    /// revoked or expired card and one without a CA on record.
    pub fn renewal_snapshot(&self, card_id: &str) -> Result<RenewalSnapshot> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        entry.check_usable()?;
        entry.check_unexpired(now_unix())?;
        if !entry.file.has_ca() {
            return Err(Error::BadRequest(format!(
                "card {card_id} has no CA on record (it was enrolled before renewal existed) and cannot renew; ask your IT desk to re-issue it"
            )));
        }
        let key_type = entry
            .file
            .key_type()
            .ok_or_else(|| Error::corrupt(self.store.card_path(card_id), "unknown key type"))?;
        Ok(RenewalSnapshot {
            card_id: card_id.to_string(),
            key_type,
            certificate: entry.file.certificate.clone(),
            chain: entry.file.chain.clone(),
            ca_url: entry.file.ca_url.clone(),
            ca_cert_pem: entry.file.ca_cert_pem.clone(),
        })
    }

    /// Installs a renewed key and certificate: the new key (and the new
    /// document-signing key, if the CA certified one; otherwise the old one
    /// stays) is sealed under the card key and the card file written
    /// atomically (until then the old key stays on disk and in use); then the
    /// in-memory keys are swapped, so applications already logged in sign
    /// with the new key without a PIN.
    pub async fn install_renewed(
        &self,
        snapshot: &RenewalSnapshot,
        card_key: Arc<crate::card_crypto::CardKey>,
        new_key: SigningKey,
        signing: Option<crate::card_store::NewSigningKey>,
        certificate: Vec<u8>,
        chain: Vec<Vec<u8>>,
    ) -> Result<CardInfo> {
        let card_id = snapshot.card_id.as_str();
        let lock = self.file_lock(card_id)?;
        let _guard = lock.lock().await;
        let mut file = self.current_file(card_id)?;
        if file.certificate != snapshot.certificate || file.status != CardState::Active {
            return Err(Error::Internal(format!(
                "card {card_id} changed while it renewed (PIN reset, re-issue or revocation); the renewed certificate was not kept"
            )));
        }
        file.certificate = certificate;
        file.chain = chain;
        let new_signing_key = match signing {
            Some(signing) => {
                let store = self.store.clone();
                let (seal_card_key, id) = (card_key.clone(), card_id.to_string());
                let (record, signing) = tokio::task::spawn_blocking(move || {
                    store
                        .seal_signing(&seal_card_key, &id, &signing)
                        .map(|r| (r, signing))
                })
                .await
                .map_err(blocking_failed)??;
                file.signing = Some(record);
                Some(Arc::new(signing.key))
            }
            None => None,
        };
        let facts = self.facts_of(&file).map_err(|e| {
            Error::CaRefused(format!("the CA's renewed certificate cannot be used: {e}"))
        })?;
        let new_key = Arc::new(new_key);
        let store = self.store.clone();
        let (seal_key, seal_card_key, id) =
            (new_key.clone(), card_key.clone(), card_id.to_string());
        let sealed =
            tokio::task::spawn_blocking(move || store.seal_key(&seal_card_key, &id, &seal_key))
                .await
                .map_err(blocking_failed)??;
        file.private_key = Some(sealed);
        file.lifecycle.installed = now_unix();
        file.lifecycle.last_renewal = file.lifecycle.installed;
        file.lifecycle.last_renewal_error.clear();
        self.save_card(file).await?;
        {
            let mut inner = self.inner();
            if let Some(entry) = inner.cards.get_mut(card_id) {
                entry.facts = facts;
                entry.schedule = Schedule::fresh();
                if let Some(u) = entry.unlocked.take() {
                    entry.unlocked = Some(Arc::new(Unlocked {
                        key: new_key,
                        card_key: u.card_key.clone(),
                        verifier: u.verifier.clone(),
                        signing_key: new_signing_key.or_else(|| u.signing_key.clone()),
                    }));
                }
            }
        }
        self.signals.cards.notify_waiters();
        self.signals.renewal.notify_one();
        self.card(card_id, None)
    }

    /// Records a failed renewal: the error (one line) in the card file, and
    /// the next attempt after backoff (or the CA's retry-after). Returns the
    /// consecutive failures and the Unix second of the next attempt.
    pub async fn renewal_failed(
        &self,
        card_id: &str,
        error: &Error,
        scheduled: bool,
    ) -> Result<(u32, Option<i64>)> {
        let retry_after = match error {
            Error::CaBusy { retry_after, .. } => *retry_after,
            _ => None,
        };
        let now = now_unix();
        let (failures, retry_at) = {
            let mut inner = self.inner();
            let entry = inner
                .cards
                .get_mut(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            if scheduled {
                entry.schedule.failures += 1;
                let delay = self.renewal_policy.retry_delay(
                    entry.schedule.failures,
                    retry_after,
                    draw_spread(),
                );
                entry.schedule.retry_at = Some(now.saturating_add(delay.as_secs().max(1) as i64));
            }
            (entry.schedule.failures, entry.schedule.retry_at)
        };
        let line = error.to_string();
        let lock = self.file_lock(card_id)?;
        let _guard = lock.lock().await;
        self.update_card(card_id, |f| f.lifecycle.last_renewal_error = line)
            .await?;
        Ok((failures, retry_at))
    }

    /// Whether the card's certificate is in the last `expiry_warning_fraction` of its lifetime.
    pub fn near_expiry(&self, card_id: &str) -> bool {
        let inner = self.inner();
        inner.cards.get(card_id).is_some_and(|e| {
            self.renewal_policy
                .near_expiry(e.lifetime_start(), e.facts.not_after, now_unix())
        })
    }

    /// The cards to check in: those with a CA on record whose keys still exist.
    pub fn check_in_targets(&self) -> Vec<CheckInTarget> {
        let inner = self.inner();
        inner
            .cards
            .values()
            .filter(|e| e.file.has_ca() && e.file.status != CardState::Revoked)
            .map(|e| CheckInTarget {
                card_id: e.file.card_id.clone(),
                serial: e.facts.serial_hex.clone(),
                ca_url: e.file.ca_url.clone(),
                ca_cert_pem: e.file.ca_cert_pem.clone(),
            })
            .collect()
    }

    /// Applies what a check-in of `target` found. A certificate-level answer
    /// for a certificate no longer held (renewed meanwhile) is ignored.
    pub async fn apply_check_in(
        &self,
        target: &CheckInTarget,
        outcome: CheckInOutcome,
    ) -> Result<()> {
        let card_id = target.card_id.as_str();
        let lock = self.file_lock(card_id)?;
        let _guard = lock.lock().await;
        let (status, same_cert) = {
            let inner = self.inner();
            let entry = inner
                .cards
                .get(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            (entry.file.status, entry.facts.serial_hex == target.serial)
        };
        if status == CardState::Revoked {
            return Ok(());
        }
        let now = now_unix();
        let checked_in = |f: &mut CardFile| {
            f.lifecycle.last_check_in = now;
            f.lifecycle.last_check_in_error.clear();
        };
        match outcome {
            CheckInOutcome::Failed(why) => {
                tracing::warn!(card = %card_id, ca = %target.ca_url, error = %why, "check-in failed; nothing changed");
                self.update_card(card_id, |f| f.lifecycle.last_check_in_error = why)
                    .await?;
            }
            CheckInOutcome::Revoked { reason, card_wide } if card_wide || same_cert => {
                self.destroy_keys_locked(card_id, &reason, checked_in)
                    .await?;
            }
            CheckInOutcome::Suspended if status == CardState::Active => {
                let mut file = self.current_file(card_id)?;
                checked_in(&mut file);
                file.status = CardState::Suspended;
                self.end_logins(card_id);
                tracing::warn!(card = %card_id, "card suspended by the IT desk; token removed, keys kept");
                self.save_card_in_force(file).await?;
            }
            CheckInOutcome::Active if status == CardState::Suspended => {
                self.update_card(card_id, |f| {
                    checked_in(f);
                    f.status = CardState::Active;
                })
                .await?;
                tracing::info!(card = %card_id, "card resumed by the IT desk");
            }
            _ => {
                self.update_card(card_id, checked_in).await?;
                tracing::debug!(card = %card_id, "checked in; nothing changed");
            }
        }
        self.signals.renewal.notify_one();
        Ok(())
    }

    /// Ends every login to the card and its unlock, and drops its keys from memory.
    fn end_logins(&self, card_id: &str) {
        let mut inner = self.inner();
        inner.sessions.forget_card(card_id);
        if let Some(entry) = inner.cards.get_mut(card_id) {
            entry.unlocked = None;
            entry.unlock = None;
            entry.schedule = Schedule::fresh();
        }
    }

    /// Destroys the card's keys: the file becomes a tombstone (written
    /// atomically, key material gone), logins end and the keys in memory
    /// are dropped. The caller holds the card's file lock.
    async fn destroy_keys_locked(
        &self,
        card_id: &str,
        why: &str,
        also: impl FnOnce(&mut CardFile),
    ) -> Result<()> {
        let mut tombstone = self.current_file(card_id)?.tombstone();
        also(&mut tombstone);
        self.end_logins(card_id);
        self.save_card_in_force(tombstone).await?;
        tracing::warn!(card = %card_id, reason = %why, "card revoked; its keys were destroyed on this device");
        Ok(())
    }

    /// Writes a card file that takes effect in memory whatever happens to
    /// the write (a suspension or revocation must stop the card now; the
    /// next write of the card persists it). The caller holds the file lock.
    async fn save_card_in_force(&self, file: CardFile) -> Result<()> {
        let result = self.save_card(file.clone()).await;
        if let Err(e) = &result {
            tracing::error!(card = %file.card_id, error = %e, "cannot write the card's new status; it holds in memory and is written with the card's next change");
            if let Some(entry) = self.inner().cards.get_mut(&file.card_id) {
                entry.file = file;
            }
            self.signals.cards.notify_waiters();
        }
        result
    }

    /// Destroys the card's keys (see `destroy_keys_locked`), taking the file lock.
    pub async fn destroy_keys(&self, card_id: &str, why: &str) -> Result<()> {
        let lock = self.file_lock(card_id)?;
        let _guard = lock.lock().await;
        self.destroy_keys_locked(card_id, why, |_| {}).await
    }

    /// Replaces the card `new.card_id` in place (its slot kept): a fresh card
    /// key wrapped under `pin` seals the new key; the counter is 0, the card
    /// active; logins end. The caller holds the card's file lock.
    async fn replace_card_locked(&self, mut new: NewCard, pin: Pin) -> Result<CardInfo> {
        let card_id = new.card_id.clone();
        let current = self.current_file(&card_id)?;
        new.slot = current.slot;
        let store = self.store.clone();
        let file = tokio::task::spawn_blocking(move || store.seal_new(&new, &pin))
            .await
            .map_err(blocking_failed)??;
        let facts = self.facts_of(&file)?;
        // End logins before the write: the old key must not sign once the new card exists.
        self.end_logins(&card_id);
        self.save_card(file).await?;
        if let Some(entry) = self.inner().cards.get_mut(&card_id) {
            entry.facts = facts;
            entry.schedule = Schedule::fresh();
        }
        self.signals.cards.notify_waiters();
        self.signals.renewal.notify_one();
        self.card(&card_id, None)
    }

    /// A re-issued card (an enrolment naming a card id this device has)
    /// replaces the old one in place.
    pub(super) async fn replace_card(&self, new: NewCard, pin: Pin) -> Result<CardInfo> {
        let lock = self.file_lock(&new.card_id)?;
        let _guard = lock.lock().await;
        let card_id = new.card_id.clone();
        let info = self.replace_card_locked(new, pin).await?;
        tracing::info!(card = %card_id, slot = info.slot, "card re-issued in place");
        Ok(info)
    }

    /// After a PIN reset: the new key, certificate and PIN replace the card,
    /// provided it still holds `expected_certificate` (the one the reset started from).
    pub async fn reset_card(
        &self,
        new: NewCard,
        pin: Pin,
        expected_certificate: &[u8],
    ) -> Result<CardInfo> {
        let lock = self.file_lock(&new.card_id)?;
        let _guard = lock.lock().await;
        let current = self.current_file(&new.card_id)?;
        if current.certificate != expected_certificate {
            return Err(Error::Internal(format!(
                "card {} changed during the PIN reset; run `lanyard status` and try again",
                new.card_id
            )));
        }
        self.replace_card_locked(new, pin).await
    }

    /// The card file as held now (for the PIN reset and tests).
    pub fn card_file(&self, card_id: &str) -> Result<CardFile> {
        self.current_file(card_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_sessions::AppId;
    use crate::card_store::testing;
    use crate::keys::Mechanism;
    use crate::state::tests::{card_c1, daemon_holding, log_in_app, PIN};
    use std::time::Duration;

    /// A daemon with card C1 (EC, CA on record) and app [1; 16] logged in.
    async fn logged_in() -> (tempfile::TempDir, Daemon, AppId) {
        let mut new = card_c1();
        new.ca_url = "https://127.0.0.1:1".into();
        new.ca_cert_pem = "-----BEGIN CERTIFICATE-----\n".into();
        let (tmp, daemon) = daemon_holding(new).await;
        let app = log_in_app(&daemon).await;
        (tmp, daemon, app)
    }

    fn verifies(public_der: &[u8], digest: &[u8], sig: &[u8]) -> bool {
        use openssl::bn::BigNum;
        let public = openssl::pkey::PKey::public_key_from_der(public_der).unwrap();
        let es = openssl::ecdsa::EcdsaSig::from_private_components(
            BigNum::from_slice(&sig[..32]).unwrap(),
            BigNum::from_slice(&sig[32..]).unwrap(),
        )
        .unwrap();
        es.verify(digest, &public.ec_key().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_renewal_swaps_the_key_for_logged_in_apps() {
        let (_t, daemon, app) = logged_in().await;
        let old_public = daemon.card("C1", None).unwrap().public_key_der;
        let snapshot = daemon.renewal_snapshot("C1").unwrap();
        let keys = daemon.unlocked_keys("C1").unwrap();
        let new_key = SigningKey::generate(KeyType::EcP256).unwrap();
        let new_public = new_key.public_key_der().unwrap();
        let cert = testing::self_signed_cert(&new_key, "Dr Ada Smith", 30).unwrap();
        let info = daemon
            .install_renewed(
                &snapshot,
                keys.card_key,
                new_key,
                None,
                cert.clone(),
                vec![cert],
            )
            .await
            .unwrap();
        assert_eq!(info.public_key_der, new_public);
        assert_ne!(info.public_key_der, old_public);
        assert!(info.lifecycle.unwrap().last_renewal > 0);
        // The same login now signs with the new key.
        let sig = daemon.sign(&app, "C1", Mechanism::Ecdsa, &[7; 32]).unwrap();
        assert!(verifies(&new_public, &[7; 32], &sig));
        // On disk: the new key opens with the same PIN.
        let store = daemon.store();
        let on_disk = store.load(&store.card_path("C1")).unwrap();
        let opened = store
            .unlock(&on_disk, &Pin::new(PIN.into()))
            .unwrap()
            .unwrap();
        assert_eq!(opened.key.public_key_der().unwrap(), new_public);
    }

    #[tokio::test]
    async fn a_renewal_with_a_signing_certificate_rekeys_the_signing_key() {
        let (_t, daemon, app) = logged_in().await;
        let snapshot = daemon.renewal_snapshot("C1").unwrap();
        let keys = daemon.unlocked_keys("C1").unwrap();
        let new_key = SigningKey::generate(KeyType::EcP256).unwrap();
        let cert = testing::self_signed_cert(&new_key, "Dr Ada Smith", 30).unwrap();
        let signing_key = SigningKey::generate(KeyType::EcP256).unwrap();
        let signing_public = signing_key.public_key_der().unwrap();
        let signing = crate::card_store::NewSigningKey {
            certificate_der: testing::self_signed_cert(&signing_key, "Dr Ada Smith", 30).unwrap(),
            key: signing_key,
        };
        let info = daemon
            .install_renewed(
                &snapshot,
                keys.card_key,
                new_key,
                Some(signing),
                cert.clone(),
                vec![cert],
            )
            .await
            .unwrap();
        assert_eq!(info.signing_key.unwrap().public_key_der, signing_public);
        // The same login signs documents with the new signing key (PIN given).
        let sig = daemon
            .sign_document(&app, "C1", Mechanism::Ecdsa, &[5; 32], Pin::new(PIN.into()))
            .await
            .unwrap();
        assert!(verifies(&signing_public, &[5; 32], &sig));
        // On disk: sealed under the same card key, opened with the same PIN.
        let store = daemon.store();
        let on_disk = store.load(&store.card_path("C1")).unwrap();
        let opened = store
            .unlock(&on_disk, &Pin::new(PIN.into()))
            .unwrap()
            .unwrap();
        let signing_on_disk = opened.signing_key.unwrap();
        assert_eq!(signing_on_disk.public_key_der().unwrap(), signing_public);
    }

    #[tokio::test]
    async fn a_renewal_whose_write_fails_keeps_the_old_key() {
        let (tmp, daemon, app) = logged_in().await;
        let old = daemon.card("C1", None).unwrap();
        let snapshot = daemon.renewal_snapshot("C1").unwrap();
        let keys = daemon.unlocked_keys("C1").unwrap();
        // Make every write in the store fail (even for root): `cards` becomes a file.
        let cards = tmp.path().join("cards");
        let aside = tmp.path().join("cards.aside");
        std::fs::rename(&cards, &aside).unwrap();
        std::fs::write(&cards, b"not a directory").unwrap();
        let new_key = SigningKey::generate(KeyType::EcP256).unwrap();
        let cert = testing::self_signed_cert(&new_key, "Dr Ada Smith", 30).unwrap();
        let err = daemon
            .install_renewed(
                &snapshot,
                keys.card_key,
                new_key,
                None,
                cert.clone(),
                vec![cert],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        // Memory: the old certificate and key are still in use.
        assert_eq!(
            daemon.card("C1", None).unwrap().certificate_der,
            old.certificate_der
        );
        let sig = daemon.sign(&app, "C1", Mechanism::Ecdsa, &[7; 32]).unwrap();
        assert!(verifies(&old.public_key_der, &[7; 32], &sig));
        // Disk: the old file, whose key opens with the PIN, is what is stored.
        std::fs::remove_file(&cards).unwrap();
        std::fs::rename(&aside, &cards).unwrap();
        let store = daemon.store();
        let on_disk = store.load(&store.card_path("C1")).unwrap();
        assert_eq!(on_disk.certificate, old.certificate_der);
        let opened = store
            .unlock(&on_disk, &Pin::new(PIN.into()))
            .unwrap()
            .unwrap();
        assert_eq!(opened.key.public_key_der().unwrap(), old.public_key_der);
    }

    #[tokio::test]
    async fn suspension_ends_logins_keeps_keys_and_resumes() {
        let (_t, daemon, app) = logged_in().await;
        let target = daemon.check_in_targets().remove(0);
        daemon
            .apply_check_in(&target, CheckInOutcome::Suspended)
            .await
            .unwrap();
        assert!(daemon.cards(Some(&app)).is_empty(), "token removed");
        assert_eq!(daemon.all_cards(None).len(), 1);
        assert!(matches!(
            daemon.sign(&app, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::CardSuspended(_))
        ));
        assert!(matches!(
            daemon.login(&app, "C1", Pin::new(PIN.into())).await,
            Err(Error::CardSuspended(_))
        ));
        daemon
            .apply_check_in(&target, CheckInOutcome::Active)
            .await
            .unwrap();
        assert_eq!(daemon.cards(Some(&app)).len(), 1);
        daemon
            .login(&app, "C1", Pin::new(PIN.into()))
            .await
            .unwrap();
        let life = daemon.card("C1", None).unwrap().lifecycle.unwrap();
        assert!(life.last_check_in > 0 && life.last_check_in_error.is_empty());
    }

    #[tokio::test]
    async fn revocation_destroys_the_keys() {
        let (_t, daemon, app) = logged_in().await;
        let target = daemon.check_in_targets().remove(0);
        daemon
            .apply_check_in(
                &target,
                CheckInOutcome::Revoked {
                    reason: "key compromise".into(),
                    card_wide: true,
                },
            )
            .await
            .unwrap();
        assert!(daemon.cards(None).is_empty());
        assert!(daemon.unlocked_keys("C1").is_none());
        assert!(matches!(
            daemon.sign(&app, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::CardRevoked { .. })
        ));
        let store = daemon.store();
        let on_disk = store.load(&store.card_path("C1")).unwrap();
        assert_eq!(on_disk.status, CardState::Revoked);
        assert!(on_disk.key_material().is_none());
        assert!(daemon.check_in_targets().is_empty());
        let info = daemon.card("C1", None).unwrap();
        assert!(info.lifecycle.unwrap().warning.contains("re-issue"));
    }

    #[tokio::test]
    async fn a_revocation_holds_in_memory_when_its_write_fails() {
        let (tmp, daemon, app) = logged_in().await;
        let target = daemon.check_in_targets().remove(0);
        let cards = tmp.path().join("cards");
        let aside = tmp.path().join("cards.aside");
        std::fs::rename(&cards, &aside).unwrap();
        std::fs::write(&cards, b"not a directory").unwrap();
        let revoked = CheckInOutcome::Revoked {
            reason: "key compromise".into(),
            card_wide: true,
        };
        assert!(daemon.apply_check_in(&target, revoked).await.is_err());
        assert!(matches!(
            daemon.sign(&app, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::CardRevoked { .. })
        ));
        assert!(matches!(
            daemon.login(&app, "C1", Pin::new(PIN.into())).await,
            Err(Error::CardRevoked { .. })
        ));
        // The next write of the card persists the tombstone.
        std::fs::remove_file(&cards).unwrap();
        std::fs::rename(&aside, &cards).unwrap();
        let lock = daemon.file_lock("C1").unwrap();
        let _guard = lock.lock().await;
        daemon.update_card("C1", |_| {}).await.unwrap();
        let store = daemon.store();
        let on_disk = store.load(&store.card_path("C1")).unwrap();
        assert_eq!(on_disk.status, CardState::Revoked);
        assert!(on_disk.key_material().is_none());
    }

    #[tokio::test]
    async fn a_revoked_old_serial_does_not_touch_a_renewed_card() {
        let (_t, daemon, _app) = logged_in().await;
        let mut target = daemon.check_in_targets().remove(0);
        target.serial = "00ff".into();
        daemon
            .apply_check_in(
                &target,
                CheckInOutcome::Revoked {
                    reason: "superseded".into(),
                    card_wide: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(daemon.cards(None).len(), 1);
        assert!(daemon.unlocked_keys("C1").is_some());
    }

    #[tokio::test]
    async fn a_failed_check_in_is_recorded_and_changes_nothing() {
        let (_t, daemon, _app) = logged_in().await;
        let target = daemon.check_in_targets().remove(0);
        daemon
            .apply_check_in(&target, CheckInOutcome::Failed("CA unreachable".into()))
            .await
            .unwrap();
        let info = daemon.card("C1", None).unwrap();
        let life = info.lifecycle.unwrap();
        assert_eq!(life.last_check_in_error, "CA unreachable");
        assert_eq!(life.last_check_in, 0);
        assert!(daemon.unlocked_keys("C1").is_some());
    }

    #[tokio::test]
    async fn failed_renewals_back_off_and_are_recorded() {
        let (_t, daemon, _app) = logged_in().await;
        let now = now_unix();
        let plan = daemon.renewal_plan(now);
        assert_eq!(plan.len(), 1, "unlocked card with a CA is scheduled");
        let busy = Error::CaBusy {
            message: "the CA is busy".into(),
            retry_after: Some(Duration::from_secs(600)),
        };
        let (failures, retry_at) = daemon.renewal_failed("C1", &busy, true).await.unwrap();
        assert_eq!(failures, 1);
        let retry_at = retry_at.unwrap();
        assert!(retry_at >= now + 600, "retry-after honoured");
        assert_eq!(daemon.renewal_plan(now_unix())[0].1, retry_at);
        let life = daemon.card("C1", None).unwrap().lifecycle.unwrap();
        assert_eq!(life.last_renewal_error, "the CA is busy");
        assert_eq!(life.next_renewal, retry_at);
        let (failures, _) = daemon
            .renewal_failed("C1", &Error::CaUnavailable("down".into()), true)
            .await
            .unwrap();
        assert_eq!(failures, 2);
        // A locked card has no renewal scheduled.
        let app = AppId::new(&[1; 16]).unwrap();
        daemon.connection_closed(&app);
        assert!(daemon.renewal_plan(now_unix()).is_empty());
        assert_eq!(
            daemon
                .card("C1", None)
                .unwrap()
                .lifecycle
                .unwrap()
                .next_renewal,
            0
        );
    }

    #[tokio::test]
    async fn a_backdated_certificate_is_scheduled_from_when_it_arrived() {
        let (_t, daemon, _app) = logged_in().await;
        let snapshot = daemon.renewal_snapshot("C1").unwrap();
        let keys = daemon.unlocked_keys("C1").unwrap();
        // As a CA issues a 60 s certificate: not_before 5 minutes early for clock skew.
        let new_key = SigningKey::generate(KeyType::EcP256).unwrap();
        let pkey =
            openssl::pkey::PKey::public_key_from_der(&new_key.public_key_der().unwrap()).unwrap();
        let now = now_unix();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_pubkey(&pkey).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::from_unix(now - 300).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::from_unix(now + 60).unwrap())
            .unwrap();
        b.sign(new_key.pkey(), openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = b.build().to_der().unwrap();
        daemon
            .install_renewed(
                &snapshot,
                keys.card_key,
                new_key,
                None,
                cert.clone(),
                vec![cert],
            )
            .await
            .unwrap();
        let (_, at) = daemon.renewal_plan(now_unix()).remove(0);
        // 0.67 of the 60 s it has (plus or minus 3 s of jitter), not at once.
        assert!(
            at >= now + 36 && at <= now + 46,
            "renewal at now{:+}",
            at - now
        );
        assert!(!daemon.near_expiry("C1"));
    }

    #[tokio::test]
    async fn renew_without_keys_or_pin_is_not_logged_in() {
        let (_t, daemon, app) = logged_in().await;
        daemon.connection_closed(&app);
        assert!(matches!(
            daemon.keys_for_renewal("C1", None).await,
            Err(Error::NotLoggedIn(_))
        ));
        assert!(matches!(
            daemon.keys_for_renewal("NOPE", None).await,
            Err(Error::NoSuchCard(_))
        ));
        assert!(matches!(
            daemon
                .keys_for_renewal("C1", Some(Pin::new("000000".into())))
                .await,
            Err(Error::PinIncorrect { tries_left: 2 })
        ));
        daemon
            .keys_for_renewal("C1", Some(Pin::new(PIN.into())))
            .await
            .unwrap();
        assert!(
            daemon.unlocked_keys("C1").is_none(),
            "a PIN unlocks for this renewal only"
        );
    }
}
