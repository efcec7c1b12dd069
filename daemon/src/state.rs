//! The daemon's shared state (like mini-redis's `db.rs`): the cards in their
//! slots, which are unlocked (keys kept ready + PIN verifier), and the login
//! state per application. PIN checks persist the retry counter before checking.
//! Renewal, check-in, revocation and re-keying live in `state/transitions.rs`;
//! `lanyard unlock`/`lock` and protected logins in `state/unlock.rs`.

mod document_signing;
mod transitions;
mod unlock;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use lanyard_proto::agent::{CardInfo, CardStatus, PinState};

use crate::app_sessions::{AppId, AppSessions, LoginKind};
use crate::card_crypto::{CardKey, KdfParams};
use crate::card_info::{cert_facts, signing_key_info, CertFacts};
use crate::card_store::{CardFile, CardState, CardStore, NewCard};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::{Mechanism, SigningKey};
use crate::lifecycle::{now_unix, rfc3339, CardMoment};
use crate::pin::{Pin, PinVerifier};
use crate::pin_policy::PinPolicy;
use crate::renewal_schedule::{draw_jitter, RenewalPolicy};

pub use transitions::{CheckInOutcome, CheckInTarget, RenewalSnapshot};
use unlock::UnlockWindow;

/// A card's keys and PIN verifier, kept while at least one application is
/// logged in or the card is unlocked (`lanyard unlock`): the signing key, and
/// the card key so that a renewed key can be sealed without the PIN.
pub struct Unlocked {
    key: Arc<SigningKey>,
    card_key: Arc<CardKey>,
    verifier: Arc<PinVerifier>,
    /// The document-signing key, if the card has one; it signs only with
    /// the PIN given again for each signature (see [`Daemon::sign_document`]).
    signing_key: Option<Arc<SigningKey>>,
}

/// The keys a renewal works with: the current signing key (for the mTLS
/// handshake) and the card key (to seal the new key).
#[derive(Clone)]
pub struct CardKeys {
    /// The current signing key.
    pub key: Arc<SigningKey>,
    /// The card key sealing it.
    pub card_key: Arc<CardKey>,
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

/// The in-memory renewal schedule of one card.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// This certificate's jitter draw in [-1, 1] (drawn again for each new certificate).
    jitter: f64,
    /// Consecutive failed renewals.
    failures: u32,
    /// When to try again after a failure (Unix seconds).
    retry_at: Option<i64>,
}

impl Schedule {
    fn fresh() -> Self {
        Schedule {
            jitter: draw_jitter(),
            failures: 0,
            retry_at: None,
        }
    }
}

struct CardEntry {
    file: CardFile,
    facts: CertFacts,
    /// Serialises PIN checks and every change of this card's file, so the
    /// retry counter and the lifecycle writes cannot race.
    file_lock: Arc<tokio::sync::Mutex<()>>,
    unlocked: Option<Arc<Unlocked>>,
    /// `lanyard unlock`: the keys stay ready without a login until it ends.
    unlock: Option<UnlockWindow>,
    /// Serialises the daemon's own PIN prompts for this card.
    prompt_lock: Arc<tokio::sync::Mutex<()>>,
    schedule: Schedule,
}

impl CardEntry {
    /// Where the certificate's lifetime starts for scheduling: its
    /// not_before, or when it was stored here if later (CAs backdate
    /// not_before for clock skew, which would make a short-lived certificate
    /// look due for renewal at once).
    fn lifetime_start(&self) -> i64 {
        self.facts
            .not_before
            .max(self.file.lifecycle.installed.min(self.facts.not_after))
    }

    /// Refuses a card the CA suspended or revoked.
    fn check_usable(&self) -> Result<()> {
        let card_id = &self.file.card_id;
        match self.file.status {
            CardState::Active => Ok(()),
            CardState::Suspended => Err(Error::CardSuspended(card_id.clone())),
            CardState::Revoked => Err(Error::revoked(card_id)),
        }
    }

    /// Drops the keys unless a login or the unlock still needs them.
    fn drop_keys_if_unused(&mut self, sessions: &AppSessions) -> bool {
        if self.unlock.is_some() || sessions.has_logins(&self.file.card_id) {
            return false;
        }
        self.unlocked = None;
        true
    }

    /// Refuses a card whose certificate has expired (renewal is impossible).
    fn check_unexpired(&self, now: i64) -> Result<()> {
        if now >= self.facts.not_after {
            return Err(Error::CardExpired {
                card_id: self.file.card_id.clone(),
                date: rfc3339(self.facts.not_after),
            });
        }
        Ok(())
    }
}

#[derive(Default)]
struct Inner {
    cards: BTreeMap<String, CardEntry>,
    sessions: AppSessions,
}

/// Wakes the background renewal and check-in tasks.
#[derive(Default)]
pub struct Signals {
    /// Something changed the renewal plan (a login, a new certificate).
    pub renewal: tokio::sync::Notify,
    /// A check-in is wanted now (after a renewal, or a refused one).
    pub check_in: tokio::sync::Notify,
    /// A card was unlocked: the idle timer has a new deadline to watch.
    pub idle_lock: tokio::sync::Notify,
    /// A card was added or changed (status, certificate, keys); every waiter
    /// wakes (the PC/SC reader link re-reads which card is inserted).
    pub cards: tokio::sync::Notify,
}

/// Everything the daemon's connections share.
pub struct Daemon {
    config: Config,
    policy: PinPolicy,
    renewal_policy: RenewalPolicy,
    store: Arc<CardStore>,
    socket_path: PathBuf,
    instance: [u8; 16],
    inner: Mutex<Inner>,
    /// Serialises enrolments (slot choice and card creation).
    pub(crate) enroll_lock: tokio::sync::Mutex<()>,
    /// Derived enrolments waiting for the physical card's proof (memory only).
    pub(crate) derivations: crate::derive::PendingDerivations,
    /// Card files left out at start, one line each, for `lanyard status`.
    problems: Vec<String>,
    signals: Signals,
    /// Holds each card's first signature after a start until its check-in ends.
    start_check_in: crate::check_in_gate::CheckInGate,
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("worker task failed: {e}"))
}

/// Whether ListCards (the PKCS#11 module) shows a card in this status.
fn is_listed(status: CardStatus) -> bool {
    matches!(status, CardStatus::Active | CardStatus::Expired)
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
        let tpm = match config.device_secret {
            crate::config::DeviceSecretKind::File => None,
            crate::config::DeviceSecretKind::Tpm => {
                Some(crate::tpm::Tpm::connect(&config.tpm_tcti)?)
            }
        };
        let store = CardStore::open_with(store_dir, kdf, tpm)?;
        let mut daemon = Daemon {
            policy: PinPolicy::from_config(&config),
            renewal_policy: RenewalPolicy::from_config(&config),
            config,
            store: Arc::new(store),
            socket_path,
            instance: crate::card_crypto::random_bytes::<16>()?,
            inner: Mutex::new(Inner::default()),
            enroll_lock: tokio::sync::Mutex::new(()),
            derivations: Default::default(),
            problems: Vec::new(),
            signals: Signals::default(),
            start_check_in: Default::default(),
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

    /// The certificate facts of `file` (its document-signing key's too), or
    /// why they cannot be computed.
    fn facts_of(&self, file: &CardFile) -> Result<CertFacts> {
        let path = self.store.card_path(&file.card_id);
        let key_type = file
            .key_type()
            .ok_or_else(|| Error::corrupt(&path, "unknown key type"))?;
        let mut facts = cert_facts(
            &file.card_id,
            file.slot,
            &file.holder_name,
            key_type,
            &file.certificate,
            &file.chain,
            &path,
        )?;
        if let Some(signing) = &file.signing {
            facts.info.signing_key = Some(signing_key_info(
                &file.card_id,
                key_type,
                &signing.certificate,
                &path,
            )?);
        }
        Ok(facts)
    }

    /// Adds a loaded or newly created card to its slot.
    fn insert_card(&self, file: CardFile) -> Result<()> {
        let path = self.store.card_path(&file.card_id);
        if file.slot >= self.config.slots {
            return Err(Error::corrupt(
                &path,
                format!(
                    "slot {} is beyond the {} configured slots",
                    file.slot, self.config.slots
                ),
            ));
        }
        let facts = self.facts_of(&file)?;
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
        tracing::info!(card = %file.card_id, slot = file.slot, subject = %facts.subject, status = ?file.status, "card loaded");
        inner.cards.insert(
            file.card_id.clone(),
            CardEntry {
                file,
                facts,
                file_lock: Arc::new(tokio::sync::Mutex::new(())),
                unlocked: None,
                unlock: None,
                prompt_lock: Arc::new(tokio::sync::Mutex::new(())),
                schedule: Schedule::fresh(),
            },
        );
        drop(inner);
        self.signals.cards.notify_waiters();
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

    /// The renewal timings in force.
    pub fn renewal_policy(&self) -> &RenewalPolicy {
        &self.renewal_policy
    }

    /// The wake-ups of the background tasks.
    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    /// The start-up check-in gate (and the next check-in's time).
    pub fn start_check_in(&self) -> &crate::check_in_gate::CheckInGate {
        &self.start_check_in
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

    /// A connection that carried `app` closed; its logins end with its last
    /// connection (the keys stay while the card is unlocked).
    pub fn connection_closed(&self, app: &AppId) {
        let mut inner = self.inner();
        let Inner { cards, sessions } = &mut *inner;
        for card in sessions.connection_closed(app) {
            if let Some(entry) = cards.get_mut(&card) {
                let dropped = entry.drop_keys_if_unused(sessions);
                tracing::info!(card = %card, app = %app.short(), key_dropped = dropped, "application gone");
            }
        }
    }

    fn info_of(
        &self,
        entry: &CardEntry,
        app: Option<&AppId>,
        sessions: &AppSessions,
        now: i64,
    ) -> CardInfo {
        let mut info = entry.facts.info.clone();
        let failures = entry.file.pin_failures;
        info.pin = Some(PinState {
            failures,
            max_failures: self.policy.max_failures,
            locked: self.policy.is_locked(failures),
        });
        let protected = self.config.protected_path;
        let instant = std::time::Instant::now();
        info.logged_in = app.is_some_and(|a| entry.opened_for(a, sessions, protected, instant));
        info.pin_min_len = self.policy.min_len as u32;
        info.pin_max_len = self.policy.max_len as u32;
        let moment = CardMoment {
            file: &entry.file,
            not_before: entry.lifetime_start(),
            not_after: entry.facts.not_after,
            next_renewal: self.next_renewal(entry, now),
            unlocked: entry.unlocked.is_some(),
        };
        let mut lifecycle = crate::lifecycle::lifecycle(&moment, &self.renewal_policy, now);
        lifecycle.unlocked_until = entry.unlocked_until(now).unwrap_or(0);
        info.lifecycle = Some(lifecycle);
        info
    }

    fn collect_cards(&self, app: Option<&AppId>, listed_only: bool) -> Vec<CardInfo> {
        let now = now_unix();
        let inner = self.inner();
        let mut cards: Vec<CardInfo> = inner
            .cards
            .values()
            .map(|e| self.info_of(e, app, &inner.sessions, now))
            .filter(|c| {
                !listed_only
                    || c.lifecycle
                        .as_ref()
                        .and_then(|l| CardStatus::try_from(l.status).ok())
                        .is_some_and(is_listed)
            })
            .collect();
        cards.sort_by_key(|c| c.slot);
        cards
    }

    /// The cards the PKCS#11 module may show, in slot order, as seen by
    /// `app`: active and expired ones (suspended and revoked cards are removed tokens).
    pub fn cards(&self, app: Option<&AppId>) -> Vec<CardInfo> {
        self.collect_cards(app, true)
    }

    /// Every card, whatever its status, in slot order (for `lanyard status`).
    pub fn all_cards(&self, app: Option<&AppId>) -> Vec<CardInfo> {
        self.collect_cards(app, false)
    }

    /// One card as seen by `app`, whatever its status.
    pub fn card(&self, card_id: &str, app: Option<&AppId>) -> Result<CardInfo> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        Ok(self.info_of(entry, app, &inner.sessions, now_unix()))
    }

    /// `card_id`, or the only card when it is empty.
    pub fn resolve_card_id(&self, card_id: &str) -> Result<String> {
        if !card_id.is_empty() {
            return Ok(card_id.to_string());
        }
        let inner = self.inner();
        let ids: Vec<&String> = inner.cards.keys().collect();
        match ids.as_slice() {
            [only] => Ok((*only).clone()),
            [] => Err(Error::NoSuchCard("(none enrolled)".into())),
            many => Err(Error::BadRequest(format!(
                "several cards ({}); name one",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The lowest slot without a card, if any.
    pub fn free_slot(&self) -> Option<u32> {
        let inner = self.inner();
        (0..self.config.slots).find(|s| !inner.cards.values().any(|c| c.file.slot == *s))
    }

    /// Whether a card whose re-issue could arrive (revoked or expired) holds a slot.
    pub fn has_replaceable_card(&self) -> bool {
        let now = now_unix();
        self.inner()
            .cards
            .values()
            .any(|c| c.file.status == CardState::Revoked || now >= c.facts.not_after)
    }

    fn file_lock(&self, card_id: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        Ok(entry.file_lock.clone())
    }

    /// The card as it is now in memory (and on disk).
    fn current_file(&self, card_id: &str) -> Result<CardFile> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        Ok(entry.file.clone())
    }

    /// Writes a card file (atomically), then makes it the card's state in
    /// memory. The caller holds the card's file lock.
    async fn save_card(&self, file: CardFile) -> Result<()> {
        let store = self.store.clone();
        // As written: with a TPM, the retry counter's base is reconciled.
        let file = tokio::task::spawn_blocking(move || store.write(&file))
            .await
            .map_err(blocking_failed)??;
        if let Some(entry) = self.inner().cards.get_mut(&file.card_id) {
            entry.file = file;
        }
        self.signals.cards.notify_waiters();
        Ok(())
    }

    /// Changes a card's file with `change` and writes it. The caller holds
    /// the card's file lock.
    async fn update_card(
        &self,
        card_id: &str,
        change: impl FnOnce(&mut CardFile),
    ) -> Result<CardFile> {
        let mut file = self.current_file(card_id)?;
        change(&mut file);
        self.save_card(file.clone()).await?;
        Ok(file)
    }

    /// Persists a new failure count for a card; returns the card as written.
    async fn persist_failures(&self, card_id: &str, failures: u32) -> Result<CardFile> {
        self.update_card(card_id, |f| f.pin_failures = failures)
            .await
    }

    /// One counted PIN attempt on `card_id` (the caller holds its file lock):
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
            entry.check_usable()?;
            (entry.file.pin_failures, entry.unlocked.clone())
        };
        if self.policy.is_locked(failures) {
            tracing::warn!(card = %card_id, "PIN attempt on a locked card refused");
            return Err(Error::PinLocked);
        }
        let file = self.persist_failures(card_id, failures + 1).await?;
        // The attempt is counted on disk before the PIN is looked at.
        lanyard_fault::hit("pin.check.after_count");
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
                        entry.unlock = None;
                    }
                    tracing::warn!(card = %card_id, failures, "wrong PIN; card now locked");
                } else {
                    tracing::warn!(card = %card_id, failures, tries_left, "wrong PIN");
                }
                Err(Error::PinIncorrect { tries_left })
            }
        }
    }

    /// Checks `pin` (counted) and returns the card's keys: the ones kept
    /// while unlocked (checked against the verifier), else opened from the
    /// store. The caller holds the card's file lock.
    async fn keys_with_pin(&self, card_id: &str, pin: Pin) -> Result<Arc<Unlocked>> {
        let store = self.store.clone();
        self.counted_attempt(card_id, move |file, unlocked| {
            let unlocked = match unlocked {
                Some(u) => u.verifier.matches(&pin)?.then_some(u),
                None => match store.unlock(&file, &pin)? {
                    Some(opened) => Some(Arc::new(Unlocked {
                        key: Arc::new(opened.key),
                        card_key: Arc::new(opened.card_key),
                        verifier: Arc::new(PinVerifier::new(&pin)?),
                        signing_key: opened.signing_key.map(Arc::new),
                    })),
                    None => None,
                },
            };
            Ok(unlocked.map(Passed::value))
        })
        .await
    }

    /// C_Login: checks the PIN (counted) and logs `app` in to the card,
    /// keeping the keys ready while any application is logged in.
    pub async fn login(&self, app: &AppId, card_id: &str, pin: Pin) -> Result<()> {
        self.policy.check_format(&pin)?;
        let lock = self.file_lock(card_id)?;
        let _guard = lock.lock().await;
        let unlocked = self.keys_with_pin(card_id, pin).await?;
        {
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
            entry.touch_unlock(std::time::Instant::now());
            sessions.login(app, card_id, LoginKind::Pin);
        }
        tracing::info!(card = %card_id, app = %app.short(), "login");
        // An unlocked card can renew: let the scheduler plan it.
        self.signals.renewal.notify_one();
        Ok(())
    }

    /// C_Logout: ends `app`'s login; the keys are dropped when no login
    /// remains and the card is not unlocked.
    pub fn logout(&self, app: &AppId, card_id: &str) -> Result<()> {
        let mut inner = self.inner();
        let Inner { cards, sessions } = &mut *inner;
        let entry = cards
            .get_mut(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        match sessions.logout(app, card_id) {
            None => Err(Error::NotLoggedIn(card_id.into())),
            Some(_) => {
                let dropped = entry.drop_keys_if_unused(sessions);
                tracing::info!(card = %card_id, app = %app.short(), key_dropped = dropped, "logout");
                Ok(())
            }
        }
    }

    /// The hot path: signs with the ready key if `app` is logged in. No disk,
    /// no KDF, and no lock held while signing. After a renewal the same
    /// login signs with the new key. A signature extends the card's unlock.
    pub fn sign(
        &self,
        app: &AppId,
        card_id: &str,
        mech: Mechanism,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        self.authentication_key(app, card_id)?.sign(mech, data)
    }

    /// The card's authentication key for one signature by `app`, with the
    /// checks of [`Daemon::sign`] (the PC/SC reader's raw PSS path uses it).
    pub(crate) fn authentication_key(&self, app: &AppId, card_id: &str) -> Result<Arc<SigningKey>> {
        let key = {
            let mut inner = self.inner();
            let Inner { cards, sessions } = &mut *inner;
            let entry = cards
                .get_mut(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            entry.check_usable()?;
            // An unlock idle past its timeout ends here if the timer has not
            // ended it yet, and the logins that relied on it with it.
            let now = std::time::Instant::now();
            entry.end_unlock_if_idle(sessions, now);
            if !entry.opened_for(app, sessions, self.config.protected_path, now) {
                return Err(Error::NotLoggedIn(card_id.into()));
            }
            entry.touch_unlock(now);
            entry
                .unlocked
                .as_ref()
                .map(|u| u.key.clone())
                .ok_or_else(|| Error::NotLoggedIn(card_id.into()))?
        };
        Ok(key)
    }

    /// Changes a card's PIN: the old PIN is checked (counted like a login),
    /// the card key re-wrapped under the new one with a fresh salt.
    pub async fn change_pin(&self, card_id: &str, old_pin: Pin, new_pin: Pin) -> Result<()> {
        self.policy.check_format(&old_pin)?;
        self.policy.check_format(&new_pin)?;
        let lock = self.file_lock(card_id)?;
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
        let verifier = Arc::new(PinVerifier::new(&verifier_pin)?);
        let mut inner = self.inner();
        if let Some(entry) = inner.cards.get_mut(card_id) {
            if let Some(u) = entry.unlocked.take() {
                entry.unlocked = Some(Arc::new(Unlocked {
                    key: u.key.clone(),
                    card_key: u.card_key.clone(),
                    verifier,
                    signing_key: u.signing_key.clone(),
                }));
            }
        }
        tracing::info!(card = %card_id, "PIN changed");
        Ok(())
    }

    /// Puts a newly enrolled card in the store (atomic write) and in a slot.
    /// A card id this device already has (a re-issue) replaces that card in
    /// place, keeping its slot; otherwise the lowest free slot is used.
    /// The caller holds the enrolment lock.
    pub async fn add_card(&self, mut new: NewCard, pin: Pin) -> Result<CardInfo> {
        let existing = self.inner().cards.get(&new.card_id).map(|e| e.file.slot);
        new.slot = match existing {
            Some(slot) => slot,
            None => self
                .free_slot()
                .ok_or(Error::SlotsFull(self.config.slots))?,
        };
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
        let card_id = new.card_id.clone();
        if existing.is_some() {
            return self.replace_card(new, pin).await;
        }
        let store = self.store.clone();
        let file = tokio::task::spawn_blocking(move || store.create(&new, &pin))
            .await
            .map_err(blocking_failed)??;
        if let Err(e) = self.insert_card(file) {
            // Never leave a card on disk that the daemon does not serve.
            self.store.discard_new(&card_id);
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

    /// The PIN of the test cards.
    pub(super) const PIN: &str = "123456";

    /// Daemon settings with a fast PIN key derivation.
    pub(super) fn config() -> Config {
        Config {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..Config::default()
        }
    }

    /// Card C1 for Dr Ada Smith: an EC key, self-signed, no CA on record.
    pub(super) fn card_c1() -> NewCard {
        let key = SigningKey::generate(KeyType::EcP256).unwrap();
        testing::self_signed_card("C1", 0, "Dr Ada Smith", key).unwrap()
    }

    /// A daemon in a new directory holding `new` with [`PIN`].
    pub(super) async fn daemon_holding(new: NewCard) -> (tempfile::TempDir, Daemon) {
        let tmp = tempfile::tempdir().unwrap();
        let daemon = Daemon::open(config(), tmp.path(), tmp.path().join("s")).unwrap();
        daemon.add_card(new, Pin::new(PIN.into())).await.unwrap();
        (tmp, daemon)
    }

    /// App [1; 16], connected and logged in to C1.
    pub(super) async fn log_in_app(daemon: &Daemon) -> AppId {
        let app = AppId::new(&[1; 16]).unwrap();
        daemon.connection_opened(&app);
        daemon
            .login(&app, "C1", Pin::new(PIN.into()))
            .await
            .unwrap();
        app
    }

    async fn daemon_with_card() -> (tempfile::TempDir, Daemon) {
        daemon_holding(card_c1()).await
    }

    /// A daemon with card C1 (PIN 123456) and app [1; 16] logged in to it.
    async fn logged_in() -> (tempfile::TempDir, Daemon, AppId) {
        let (t, daemon) = daemon_with_card().await;
        let app = log_in_app(&daemon).await;
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
