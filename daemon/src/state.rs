//! The daemon's shared state (like mini-redis's `db.rs`): the cards in their
//! slots, which are unlocked (key kept ready + PIN verifier), and the login
//! state per application. PIN checks persist the retry counter before checking.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use lanyard_proto::agent::{CardInfo, PinState};

use crate::app_sessions::{AppId, AppSessions};
use crate::card_crypto::KdfParams;
use crate::card_info::{cert_facts, CertFacts};
use crate::card_store::{CardFile, CardStore, NewCard};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::{Mechanism, SigningKey};
use crate::pin::{Pin, PinVerifier};
use crate::pin_policy::PinPolicy;

/// A card's key and PIN verifier, kept while at least one application is logged in.
pub struct Unlocked {
    key: Arc<SigningKey>,
    verifier: PinVerifier,
}

/// A PIN check that passed: the caller's value and, if the check changed
/// the card (a re-wrapped key), the card to write in the same step.
struct Passed<T> {
    value: T,
    updated: Option<CardFile>,
}

impl<T> Passed<T> {
    fn value(value: T) -> Self {
        Passed {
            value,
            updated: None,
        }
    }
}

struct CardEntry {
    file: CardFile,
    facts: CertFacts,
    /// Serialises PIN checks on this card, so the retry counter cannot race.
    pin_lock: Arc<tokio::sync::Mutex<()>>,
    unlocked: Option<Arc<Unlocked>>,
}

#[derive(Default)]
struct Inner {
    cards: BTreeMap<String, CardEntry>,
    sessions: AppSessions,
}

/// Everything the daemon's connections share.
pub struct Daemon {
    config: Config,
    policy: PinPolicy,
    store: Arc<CardStore>,
    socket_path: PathBuf,
    instance: [u8; 16],
    inner: Mutex<Inner>,
    /// Serialises enrolments (slot choice and card creation).
    pub(crate) enroll_lock: tokio::sync::Mutex<()>,
    /// Card files left out at start, one line each, for `lanyard status`.
    problems: Vec<String>,
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("worker task failed: {e}"))
}

impl Daemon {
    /// Opens the store at `store_dir` and loads every card in it. Bad card
    /// files are logged (naming the file) and left out.
    pub fn open(config: Config, store_dir: &std::path::Path, socket_path: PathBuf) -> Result<Self> {
        let kdf = KdfParams {
            memory_kib: config.argon2_memory_kib,
            iterations: config.argon2_iterations,
            parallelism: config.argon2_parallelism,
        };
        let store = CardStore::open(store_dir, kdf)?;
        let mut daemon = Daemon {
            policy: PinPolicy::from_config(&config),
            config,
            store: Arc::new(store),
            socket_path,
            instance: crate::card_crypto::random_bytes::<16>()?,
            inner: Mutex::new(Inner::default()),
            enroll_lock: tokio::sync::Mutex::new(()),
            problems: Vec::new(),
        };
        let mut problems = Vec::new();
        for loaded in daemon.store.load_all()? {
            let result = loaded.and_then(|file| daemon.insert_card(file));
            if let Err(e) = result {
                tracing::error!(error = %e, "card left out");
                problems.push(format!("{e}; the file was left out and kept as it is"));
            }
        }
        daemon.problems = problems;
        Ok(daemon)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters more than refusing service would, so keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a loaded or newly created card to its slot.
    fn insert_card(&self, file: CardFile) -> Result<()> {
        let path = self.store.card_path(&file.card_id);
        let key_type = file
            .key_type()
            .ok_or_else(|| Error::corrupt(&path, "unknown key type"))?;
        if file.slot >= self.config.slots {
            return Err(Error::corrupt(
                &path,
                format!(
                    "slot {} is beyond the {} configured slots",
                    file.slot, self.config.slots
                ),
            ));
        }
        let facts = cert_facts(
            &file.card_id,
            file.slot,
            &file.holder_name,
            key_type,
            &file.certificate,
            &file.chain,
            &path,
        )?;
        let mut inner = self.inner();
        if let Some(other) = inner.cards.values().find(|c| c.file.slot == file.slot) {
            return Err(Error::corrupt(
                &path,
                format!(
                    "slot {} is already held by card {}",
                    file.slot, other.file.card_id
                ),
            ));
        }
        tracing::info!(card = %file.card_id, slot = file.slot, subject = %facts.subject, "card loaded");
        inner.cards.insert(
            file.card_id.clone(),
            CardEntry {
                file,
                facts,
                pin_lock: Arc::new(tokio::sync::Mutex::new(())),
                unlocked: None,
            },
        );
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The PIN policy in force.
    pub fn policy(&self) -> &PinPolicy {
        &self.policy
    }

    /// Random id of this daemon run.
    pub fn instance(&self) -> [u8; 16] {
        self.instance
    }

    /// Path of the agent socket.
    pub fn socket_path(&self) -> &std::path::Path {
        &self.socket_path
    }

    /// Card files that could not be loaded at start, one line each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The card store directory.
    pub fn store_dir(&self) -> &std::path::Path {
        self.store.dir()
    }

    /// A connection started carrying `app`'s requests.
    pub fn connection_opened(&self, app: &AppId) {
        self.inner().sessions.connection_opened(app);
    }

    /// A connection that carried `app` closed; its logins end with its last connection.
    pub fn connection_closed(&self, app: &AppId) {
        let mut inner = self.inner();
        for card in inner.sessions.connection_closed(app) {
            if let Some(entry) = inner.cards.get_mut(&card) {
                entry.unlocked = None;
                tracing::info!(card = %card, app = %app.short(), "application gone; card key dropped");
            }
        }
    }

    fn info_of(&self, entry: &CardEntry, app: Option<&AppId>, sessions: &AppSessions) -> CardInfo {
        let mut info = entry.facts.info.clone();
        let failures = entry.file.pin_failures;
        info.pin = Some(PinState {
            failures,
            max_failures: self.policy.max_failures,
            locked: self.policy.is_locked(failures),
        });
        info.logged_in = app.is_some_and(|a| sessions.is_logged_in(a, &entry.file.card_id));
        info.pin_min_len = self.policy.min_len as u32;
        info.pin_max_len = self.policy.max_len as u32;
        info
    }

    /// Every card, in slot order, as seen by `app`.
    pub fn cards(&self, app: Option<&AppId>) -> Vec<CardInfo> {
        let inner = self.inner();
        let mut cards: Vec<CardInfo> = inner
            .cards
            .values()
            .map(|e| self.info_of(e, app, &inner.sessions))
            .collect();
        cards.sort_by_key(|c| c.slot);
        cards
    }

    /// One card as seen by `app`.
    pub fn card(&self, card_id: &str, app: Option<&AppId>) -> Result<CardInfo> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        Ok(self.info_of(entry, app, &inner.sessions))
    }

    /// The lowest slot without a card, if any.
    pub fn free_slot(&self) -> Option<u32> {
        let inner = self.inner();
        (0..self.config.slots).find(|s| !inner.cards.values().any(|c| c.file.slot == *s))
    }

    fn pin_lock(&self, card_id: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        Ok(entry.pin_lock.clone())
    }

    /// Writes a card file (atomically), then makes it the card's state in memory.
    async fn save_card(&self, file: CardFile) -> Result<()> {
        let store = self.store.clone();
        let to_save = file.clone();
        tokio::task::spawn_blocking(move || store.save(&to_save))
            .await
            .map_err(blocking_failed)??;
        if let Some(entry) = self.inner().cards.get_mut(&file.card_id) {
            entry.file = file;
        }
        Ok(())
    }

    /// Persists a new failure count for a card; returns the card as written.
    async fn persist_failures(&self, card_id: &str, failures: u32) -> Result<CardFile> {
        let mut file = {
            let inner = self.inner();
            let entry = inner
                .cards
                .get(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            entry.file.clone()
        };
        file.pin_failures = failures;
        self.save_card(file.clone()).await?;
        Ok(file)
    }

    /// One counted PIN attempt on `card_id` (the caller holds its pin lock):
    /// refuse if locked; increment and persist the counter; run `check`; on
    /// success write the card (as changed by the check, if it was) with the
    /// counter reset to 0.
    async fn counted_attempt<T, F>(&self, card_id: &str, check: F) -> Result<T>
    where
        F: FnOnce(CardFile, Option<Arc<Unlocked>>) -> Result<Option<Passed<T>>> + Send + 'static,
        T: Send + 'static,
    {
        let (failures, unlocked) = {
            let inner = self.inner();
            let entry = inner
                .cards
                .get(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            (entry.file.pin_failures, entry.unlocked.clone())
        };
        if self.policy.is_locked(failures) {
            tracing::warn!(card = %card_id, "PIN attempt on a locked card refused");
            return Err(Error::PinLocked);
        }
        let file = self.persist_failures(card_id, failures + 1).await?;
        let outcome = match tokio::task::spawn_blocking(move || check(file, unlocked))
            .await
            .map_err(blocking_failed)
            .and_then(|r| r)
        {
            Ok(outcome) => outcome,
            Err(e) => {
                // Not a wrong PIN (e.g. a corrupt file): this attempt does not count.
                tracing::error!(card = %card_id, error = %e, "PIN check could not complete; attempt not counted");
                self.persist_failures(card_id, failures).await?;
                return Err(e);
            }
        };
        match outcome {
            Some(Passed {
                value,
                updated: Some(mut file),
            }) => {
                file.pin_failures = 0;
                self.save_card(file).await?;
                Ok(value)
            }
            Some(Passed {
                value,
                updated: None,
            }) => {
                self.persist_failures(card_id, 0).await?;
                Ok(value)
            }
            None => {
                let failures = failures + 1;
                let tries_left = self.policy.tries_left(failures);
                if tries_left == 0 {
                    let mut inner = self.inner();
                    inner.sessions.forget_card(card_id);
                    if let Some(entry) = inner.cards.get_mut(card_id) {
                        entry.unlocked = None;
                    }
                    tracing::warn!(card = %card_id, failures, "wrong PIN; card now locked");
                } else {
                    tracing::warn!(card = %card_id, failures, tries_left, "wrong PIN");
                }
                Err(Error::PinIncorrect { tries_left })
            }
        }
    }

    /// C_Login: checks the PIN (counted) and logs `app` in to the card,
    /// keeping the key ready while any application is logged in.
    pub async fn login(&self, app: &AppId, card_id: &str, pin: Pin) -> Result<()> {
        self.policy.check_format(&pin)?;
        let lock = self.pin_lock(card_id)?;
        let _guard = lock.lock().await;
        let store = self.store.clone();
        let unlocked = self
            .counted_attempt(card_id, move |file, unlocked| {
                let unlocked = match unlocked {
                    Some(u) => u.verifier.matches(&pin)?.then_some(u),
                    None => match store.unlock(&file, &pin)? {
                        Some(key) => Some(Arc::new(Unlocked {
                            key: Arc::new(key),
                            verifier: PinVerifier::new(&pin)?,
                        })),
                        None => None,
                    },
                };
                Ok(unlocked.map(Passed::value))
            })
            .await?;
        let mut inner = self.inner();
        let Inner { cards, sessions } = &mut *inner;
        if !sessions.is_connected(app) {
            // Its last connection closed while the PIN was checked: the
            // application is gone, so nothing must stay logged in for it.
            return Err(Error::BadRequest(
                "application disconnected during login".into(),
            ));
        }
        let entry = cards
            .get_mut(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        if entry.unlocked.is_none() {
            entry.unlocked = Some(unlocked);
        }
        sessions.login(app, card_id);
        tracing::info!(card = %card_id, app = %app.short(), "login");
        Ok(())
    }

    /// C_Logout: ends `app`'s login; the key is dropped when no login remains.
    pub fn logout(&self, app: &AppId, card_id: &str) -> Result<()> {
        let mut inner = self.inner();
        if !inner.cards.contains_key(card_id) {
            return Err(Error::NoSuchCard(card_id.into()));
        }
        match inner.sessions.logout(app, card_id) {
            None => Err(Error::NotLoggedIn(card_id.into())),
            Some(last) => {
                if last {
                    if let Some(entry) = inner.cards.get_mut(card_id) {
                        entry.unlocked = None;
                    }
                }
                tracing::info!(card = %card_id, app = %app.short(), key_dropped = last, "logout");
                Ok(())
            }
        }
    }

    /// The hot path: signs with the ready key if `app` is logged in. No disk,
    /// no KDF, and no lock held while signing.
    pub fn sign(
        &self,
        app: &AppId,
        card_id: &str,
        mech: Mechanism,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        let key = {
            let inner = self.inner();
            let entry = inner
                .cards
                .get(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            if !inner.sessions.is_logged_in(app, card_id) {
                return Err(Error::NotLoggedIn(card_id.into()));
            }
            entry
                .unlocked
                .as_ref()
                .map(|u| u.key.clone())
                .ok_or_else(|| Error::NotLoggedIn(card_id.into()))?
        };
        key.sign(mech, data)
    }

    /// Changes a card's PIN: the old PIN is checked (counted like a login),
    /// the card key re-wrapped under the new one with a fresh salt.
    pub async fn change_pin(&self, card_id: &str, old_pin: Pin, new_pin: Pin) -> Result<()> {
        self.policy.check_format(&old_pin)?;
        self.policy.check_format(&new_pin)?;
        let lock = self.pin_lock(card_id)?;
        let _guard = lock.lock().await;
        let store = self.store.clone();
        let verifier_pin = new_pin.clone();
        self.counted_attempt(card_id, move |file, _| {
            Ok(store
                .rewrap(&file, &old_pin, &new_pin)?
                .map(|updated| Passed {
                    value: (),
                    updated: Some(updated),
                }))
        })
        .await?;
        let verifier = PinVerifier::new(&verifier_pin)?;
        let mut inner = self.inner();
        if let Some(entry) = inner.cards.get_mut(card_id) {
            if let Some(u) = entry.unlocked.take() {
                entry.unlocked = Some(Arc::new(Unlocked {
                    key: u.key.clone(),
                    verifier,
                }));
            }
        }
        tracing::info!(card = %card_id, "PIN changed");
        Ok(())
    }

    /// Puts a new card in the store (atomic write) and in its slot.
    pub async fn add_card(&self, new: NewCard, pin: Pin) -> Result<CardInfo> {
        // Everything the slot will need must be computable before the file exists.
        cert_facts(
            &new.card_id,
            new.slot,
            &new.holder_name,
            new.key.key_type(),
            &new.certificate_der,
            &new.chain_der,
            &self.store.card_path(&new.card_id),
        )
        .map_err(|e| Error::EnrollFailed(format!("the certificate cannot be used: {e}")))?;
        let store = self.store.clone();
        let file = tokio::task::spawn_blocking(move || store.create(&new, &pin))
            .await
            .map_err(blocking_failed)??;
        let card_id = file.card_id.clone();
        if let Err(e) = self.insert_card(file) {
            // Never leave a card on disk that the daemon does not serve.
            let _ = std::fs::remove_file(self.store.card_path(&card_id));
            return Err(e);
        }
        self.card(&card_id, None)
    }

    /// The store (for enrolment and tests).
    pub fn store(&self) -> &Arc<CardStore> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_store::testing;
    use crate::keys::KeyType;

    fn config() -> Config {
        Config {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..Config::default()
        }
    }

    async fn daemon_with_card() -> (tempfile::TempDir, Daemon) {
        let tmp = tempfile::tempdir().unwrap();
        let daemon = Daemon::open(config(), tmp.path(), tmp.path().join("s")).unwrap();
        let key = SigningKey::generate(KeyType::EcP256).unwrap();
        let new = testing::self_signed_card("C1", 0, "Dr Ada Smith", key).unwrap();
        daemon
            .add_card(new, Pin::new("123456".into()))
            .await
            .unwrap();
        (tmp, daemon)
    }

    /// A daemon with card C1 (PIN 123456) and app [1; 16] logged in to it.
    async fn logged_in() -> (tempfile::TempDir, Daemon, AppId) {
        let (t, daemon) = daemon_with_card().await;
        let app = AppId::new(&[1; 16]).unwrap();
        daemon.connection_opened(&app);
        daemon
            .login(&app, "C1", Pin::new("123456".into()))
            .await
            .unwrap();
        (t, daemon, app)
    }

    fn on_disk_failures(daemon: &Daemon) -> u32 {
        daemon
            .store()
            .load(&daemon.store().card_path("C1"))
            .unwrap()
            .pin_failures
    }

    #[tokio::test]
    async fn the_counter_is_on_disk_before_the_check_runs() {
        let (_t, daemon) = daemon_with_card().await;
        let store = daemon.store().clone();
        let seen = daemon
            .counted_attempt("C1", move |_, _| {
                Ok(Some(Passed::value(
                    store.load(&store.card_path("C1"))?.pin_failures,
                )))
            })
            .await
            .unwrap();
        assert_eq!(seen, 1, "incremented and written before checking");
        assert_eq!(on_disk_failures(&daemon), 0, "reset after success");

        let store = daemon.store().clone();
        let err = daemon
            .counted_attempt("C1", move |_, _| {
                assert_eq!(store.load(&store.card_path("C1"))?.pin_failures, 1);
                Ok(None::<Passed<()>>)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PinIncorrect { tries_left: 2 }));
        assert_eq!(on_disk_failures(&daemon), 1);
    }

    #[tokio::test]
    async fn key_is_kept_while_logged_in_and_dropped_after() {
        let (_t, daemon, app) = logged_in().await;
        assert!(daemon.inner().cards["C1"].unlocked.is_some());
        // A second login uses the verifier: a wrong PIN is still refused and counted.
        let err = daemon
            .login(&app, "C1", Pin::new("654321".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PinIncorrect { tries_left: 2 }));
        assert_eq!(on_disk_failures(&daemon), 1);
        daemon
            .login(&app, "C1", Pin::new("123456".into()))
            .await
            .unwrap();
        assert_eq!(on_disk_failures(&daemon), 0);
        daemon.sign(&app, "C1", Mechanism::Ecdsa, &[1; 32]).unwrap();
        daemon.connection_closed(&app);
        assert!(daemon.inner().cards["C1"].unlocked.is_none());
        assert!(matches!(
            daemon.sign(&app, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::NotLoggedIn(_))
        ));
        // An application without a connection cannot be left logged in.
        assert!(daemon
            .login(&app, "C1", Pin::new("123456".into()))
            .await
            .is_err());
        assert!(daemon.inner().cards["C1"].unlocked.is_none());
    }

    #[tokio::test]
    async fn a_changed_pin_is_what_is_on_disk() {
        let (_t, daemon, app) = logged_in().await;
        daemon
            .change_pin("C1", Pin::new("123456".into()), Pin::new("24681357".into()))
            .await
            .unwrap();
        let store = daemon.store();
        let on_disk = store.load(&store.card_path("C1")).unwrap();
        assert_eq!(on_disk.pin_failures, 0);
        assert!(store
            .unlock(&on_disk, &Pin::new("123456".into()))
            .unwrap()
            .is_none());
        assert!(store
            .unlock(&on_disk, &Pin::new("24681357".into()))
            .unwrap()
            .is_some());
        // The unlocked card's verifier follows the new PIN.
        assert!(matches!(
            daemon.login(&app, "C1", Pin::new("123456".into())).await,
            Err(Error::PinIncorrect { .. })
        ));
        daemon
            .login(&app, "C1", Pin::new("24681357".into()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn locking_ends_every_login() {
        let (_t, daemon) = daemon_with_card().await;
        let a = AppId::new(&[1; 16]).unwrap();
        let b = AppId::new(&[2; 16]).unwrap();
        daemon.connection_opened(&a);
        daemon.connection_opened(&b);
        daemon
            .login(&a, "C1", Pin::new("123456".into()))
            .await
            .unwrap();
        for _ in 0..3 {
            let _ = daemon.login(&b, "C1", Pin::new("000000".into())).await;
        }
        assert!(matches!(
            daemon.sign(&a, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::NotLoggedIn(_))
        ));
        assert!(matches!(
            daemon.login(&a, "C1", Pin::new("123456".into())).await,
            Err(Error::PinLocked)
        ));
    }
}
