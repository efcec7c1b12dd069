//! `lanyard unlock` / `lanyard lock` in the daemon state: an unlocked card
//! keeps its keys ready until it is locked or has not been used (signature or
//! login) for its idle timeout, and every application of this user sees it
//! logged in meanwhile (PKCS#11 allows a protected-path token to start logged
//! in; Chromium asks through its own password dialog before any C_Login, so
//! this is how a browser uses the card without a prompt). Protected logins
//! (C_Login with a NULL PIN) made while it is unlocked rely on it and end with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CardEntry, Daemon, Inner};
use crate::app_sessions::{AppId, AppSessions, LoginKind};
use crate::error::{Error, Result};
use crate::lifecycle::now_unix;
use crate::pin::Pin;

/// An unlock in force: how long it lasts without use, and its last use.
#[derive(Debug, Clone, Copy)]
pub(super) struct UnlockWindow {
    idle: Duration,
    last_used: Instant,
}

impl UnlockWindow {
    /// When the unlock ends if the card is not used before.
    fn deadline(&self) -> Instant {
        self.last_used + self.idle
    }
}

impl CardEntry {
    /// Whether the card is unlocked and has been used within its idle timeout.
    fn unlock_active(&self, now: Instant) -> bool {
        self.unlock.is_some_and(|u| now < u.deadline())
    }

    /// Whether `app` may use the card's key: it logged in, or (in
    /// protected-authentication-path mode) the card is unlocked, which
    /// opens it to every application of this user until it is locked.
    pub(super) fn opened_for(
        &self,
        app: &AppId,
        sessions: &AppSessions,
        protected_path: bool,
        now: Instant,
    ) -> bool {
        sessions.is_logged_in(app, &self.file.card_id)
            || (protected_path && self.unlock_active(now))
    }

    /// A use of the card: its unlock, if any, lasts from now.
    pub(super) fn touch_unlock(&mut self, now: Instant) {
        if let Some(u) = self.unlock.as_mut() {
            u.last_used = now;
        }
    }

    /// Ends the unlock and the logins that relied on it; drops the keys if
    /// no other login needs them. Returns whether the card was unlocked.
    fn end_unlock(&mut self, sessions: &mut AppSessions) -> bool {
        let was = self.unlock.take().is_some();
        sessions.end_unlocked_logins(&self.file.card_id);
        self.drop_keys_if_unused(sessions);
        was
    }

    /// When the unlock ends if the card stays idle (Unix seconds, `now`
    /// being the Unix time of this moment), if it is unlocked.
    pub(super) fn unlocked_until(&self, now: i64) -> Option<i64> {
        let instant = Instant::now();
        let left = self
            .unlock
            .filter(|_| self.unlock_active(instant))?
            .deadline()
            .saturating_duration_since(instant);
        Some(now.saturating_add(i64::try_from(left.as_secs()).unwrap_or(i64::MAX)))
    }

    /// Ends the unlock if it has been idle past its timeout.
    pub(super) fn end_unlock_if_idle(&mut self, sessions: &mut AppSessions, now: Instant) {
        if self.unlock.is_some() && !self.unlock_active(now) {
            self.end_unlock(sessions);
            tracing::info!(card = %self.file.card_id, "unlock ended: idle timeout");
        }
    }
}

impl Daemon {
    /// `lanyard unlock`: checks the PIN (counted like a login) and keeps the
    /// card unlocked for protected logins until `lock`, or until it has not
    /// been used for `idle` (the configured timeout when `None`). Only in
    /// protected-authentication-path mode. Returns when the unlock ends if
    /// the card stays idle (Unix seconds).
    pub async fn unlock(&self, card_id: &str, pin: Pin, idle: Option<Duration>) -> Result<i64> {
        if !self.config.protected_path {
            return Err(Error::BadRequest(
                "unlock is for protected-authentication-path mode: set protected_path = true in lanyardd.toml (applications now ask for the PIN themselves)".into(),
            ));
        }
        self.policy.check_format(&pin)?;
        let idle = idle.unwrap_or(Duration::from_secs(self.config.unlock_idle_timeout_secs));
        let lock = self.file_lock(card_id)?;
        let _guard = lock.lock().await;
        let keys = self.keys_with_pin(card_id, pin).await?;
        {
            let mut inner = self.inner();
            let entry = inner
                .cards
                .get_mut(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            if entry.unlocked.is_none() {
                entry.unlocked = Some(keys);
            }
            entry.unlock = Some(UnlockWindow {
                idle,
                last_used: Instant::now(),
            });
        }
        tracing::info!(card = %card_id, idle_secs = idle.as_secs(), "card unlocked");
        // Keys are ready: renewal may be due; the idle timer has a new deadline.
        self.signals.renewal.notify_one();
        self.signals.idle_lock.notify_one();
        Ok(now_unix().saturating_add(i64::try_from(idle.as_secs()).unwrap_or(i64::MAX)))
    }

    /// `lanyard lock`: ends the unlock of `card_id` (every card when empty)
    /// and every login that relied on it. Returns the cards that were unlocked.
    pub fn lock(&self, card_id: &str) -> Result<Vec<String>> {
        let mut inner = self.inner();
        let Inner { cards, sessions } = &mut *inner;
        if !card_id.is_empty() && !cards.contains_key(card_id) {
            return Err(Error::NoSuchCard(card_id.into()));
        }
        let mut locked = Vec::new();
        for (id, entry) in cards.iter_mut() {
            if (card_id.is_empty() || id == card_id) && entry.end_unlock(sessions) {
                tracing::info!(card = %id, "card locked");
                locked.push(id.clone());
            }
        }
        Ok(locked)
    }

    /// A protected login of `app` while the card is unlocked: logs it in
    /// (relying on the unlock) and returns true; false if the card is not
    /// unlocked (the caller then asks for the PIN).
    pub fn login_if_unlocked(&self, app: &AppId, card_id: &str) -> Result<bool> {
        let now = Instant::now();
        let mut inner = self.inner();
        let Inner { cards, sessions } = &mut *inner;
        let entry = cards
            .get_mut(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        entry.check_usable()?;
        entry.end_unlock_if_idle(sessions, now);
        if !entry.unlock_active(now) {
            return Ok(false);
        }
        if !sessions.is_connected(app) {
            return Err(Error::BadRequest(
                "application disconnected during login".into(),
            ));
        }
        entry.touch_unlock(now);
        // A PIN login of this app stays one: it must not end with the unlock.
        if !sessions.is_logged_in(app, card_id) {
            sessions.login(app, card_id, LoginKind::Unlocked);
        }
        tracing::info!(card = %card_id, app = %app.short(), "login (card unlocked)");
        Ok(true)
    }

    /// Refuses a PIN prompt that could not lead to a login: the card is
    /// suspended, revoked or locked by wrong PINs.
    pub fn check_prompt_possible(&self, card_id: &str) -> Result<()> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        entry.check_usable()?;
        if self.policy.is_locked(entry.file.pin_failures) {
            return Err(Error::PinLocked);
        }
        Ok(())
    }

    /// The lock that lets one PIN prompt at a time ask for this card.
    pub fn prompt_lock(&self, card_id: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
        let inner = self.inner();
        let entry = inner
            .cards
            .get(card_id)
            .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
        Ok(entry.prompt_lock.clone())
    }

    /// Ends the unlocks idle past their timeout; returns when the next
    /// unlock in force ends if its card stays idle.
    pub fn expire_idle_unlocks(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut inner = self.inner();
        let Inner { cards, sessions } = &mut *inner;
        cards
            .values_mut()
            .filter_map(|entry| {
                entry.end_unlock_if_idle(sessions, now);
                entry.unlock.map(|u| u.deadline())
            })
            .min()
    }

    /// When the card's unlock ends if it stays idle (Unix seconds), if it is unlocked.
    pub fn unlocked_until(&self, card_id: &str) -> Option<i64> {
        self.inner().cards.get(card_id)?.unlocked_until(now_unix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::keys::Mechanism;
    use crate::state::tests::{card_c1, config, log_in_app, PIN};

    async fn protected_daemon() -> (tempfile::TempDir, Daemon) {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            protected_path: true,
            ..config()
        };
        let daemon = Daemon::open(config, tmp.path(), tmp.path().join("s")).unwrap();
        daemon
            .add_card(card_c1(), Pin::new(PIN.into()))
            .await
            .unwrap();
        (tmp, daemon)
    }

    fn app(n: u8) -> AppId {
        AppId::new(&[n; 16]).unwrap()
    }

    #[tokio::test]
    async fn an_unlocked_card_logs_apps_in_until_locked() {
        let (_t, daemon) = protected_daemon().await;
        let a = app(7);
        daemon.connection_opened(&a);
        assert!(!daemon.login_if_unlocked(&a, "C1").unwrap());
        daemon
            .unlock("C1", Pin::new(PIN.into()), None)
            .await
            .unwrap();
        assert!(daemon.login_if_unlocked(&a, "C1").unwrap());
        daemon.sign(&a, "C1", Mechanism::Ecdsa, &[1; 32]).unwrap();
        // An application that never logged in sees the card logged in and signs.
        let quiet = app(11);
        daemon.connection_opened(&quiet);
        assert!(daemon.card("C1", Some(&quiet)).unwrap().logged_in);
        daemon
            .sign(&quiet, "C1", Mechanism::Ecdsa, &[1; 32])
            .unwrap();
        // No login needs the keys, the unlock keeps them.
        daemon.connection_closed(&a);
        assert!(daemon.inner().cards["C1"].unlocked.is_some());
        let b = app(8);
        daemon.connection_opened(&b);
        assert!(daemon.login_if_unlocked(&b, "C1").unwrap());
        assert_eq!(daemon.lock("").unwrap(), vec!["C1".to_string()]);
        assert!(matches!(
            daemon.sign(&b, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::NotLoggedIn(_))
        ));
        assert!(daemon.inner().cards["C1"].unlocked.is_none());
        assert!(!daemon.login_if_unlocked(&b, "C1").unwrap());
        assert!(!daemon.card("C1", Some(&quiet)).unwrap().logged_in);
        assert!(matches!(
            daemon.sign(&quiet, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::NotLoggedIn(_))
        ));
        assert!(daemon.lock("C1").unwrap().is_empty());
        assert!(matches!(daemon.lock("C9"), Err(Error::NoSuchCard(_))));
    }

    #[tokio::test]
    async fn lock_keeps_pin_logins_and_their_keys() {
        let (_t, daemon) = protected_daemon().await;
        let pin_app = log_in_app(&daemon).await;
        daemon
            .unlock("C1", Pin::new(PIN.into()), None)
            .await
            .unwrap();
        let b = app(9);
        daemon.connection_opened(&b);
        assert!(daemon.login_if_unlocked(&b, "C1").unwrap());
        daemon.lock("C1").unwrap();
        daemon
            .sign(&pin_app, "C1", Mechanism::Ecdsa, &[1; 32])
            .unwrap();
        assert!(daemon.sign(&b, "C1", Mechanism::Ecdsa, &[1; 32]).is_err());
        // A protected login of an app already logged in with its PIN stays a PIN login.
        daemon
            .unlock("C1", Pin::new(PIN.into()), None)
            .await
            .unwrap();
        assert!(daemon.login_if_unlocked(&pin_app, "C1").unwrap());
        daemon.lock("C1").unwrap();
        daemon
            .sign(&pin_app, "C1", Mechanism::Ecdsa, &[1; 32])
            .unwrap();
    }

    #[tokio::test]
    async fn an_idle_unlock_ends_and_use_extends_it() {
        let (_t, daemon) = protected_daemon().await;
        let idle = Duration::from_millis(300);
        let a = app(3);
        daemon.connection_opened(&a);
        let until = daemon
            .unlock("C1", Pin::new(PIN.into()), Some(idle))
            .await
            .unwrap();
        assert!(until >= now_unix());
        assert!(daemon.unlocked_until("C1").is_some());
        assert!(daemon.login_if_unlocked(&a, "C1").unwrap());
        let first = daemon.expire_idle_unlocks().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        daemon.sign(&a, "C1", Mechanism::Ecdsa, &[1; 32]).unwrap();
        let extended = daemon.expire_idle_unlocks().unwrap();
        assert!(extended > first, "a signature extends the unlock");
        // Poll until the idle timeout has passed (no timed assertion).
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.expire_idle_unlocks().is_some() {
            assert!(Instant::now() < deadline, "the unlock never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(daemon.unlocked_until("C1").is_none());
        assert!(daemon.inner().cards["C1"].unlocked.is_none());
        assert!(matches!(
            daemon.sign(&a, "C1", Mechanism::Ecdsa, &[1; 32]),
            Err(Error::NotLoggedIn(_))
        ));
    }

    #[tokio::test]
    async fn unlock_counts_wrong_pins_and_needs_protected_mode() {
        let (_t, daemon) = protected_daemon().await;
        assert!(matches!(
            daemon.unlock("C1", Pin::new("654321".into()), None).await,
            Err(Error::PinIncorrect { tries_left: 2 })
        ));
        assert_eq!(daemon.card_file("C1").unwrap().pin_failures, 1);
        assert!(daemon.unlocked_until("C1").is_none());
        daemon.check_prompt_possible("C1").unwrap();
        for _ in 0..2 {
            let _ = daemon.unlock("C1", Pin::new("654321".into()), None).await;
        }
        assert!(matches!(
            daemon.check_prompt_possible("C1"),
            Err(Error::PinLocked)
        ));

        let tmp = tempfile::tempdir().unwrap();
        let plain = Daemon::open(config(), tmp.path(), tmp.path().join("s")).unwrap();
        plain
            .add_card(card_c1(), Pin::new(PIN.into()))
            .await
            .unwrap();
        assert!(matches!(
            plain.unlock("C1", Pin::new(PIN.into()), None).await,
            Err(Error::BadRequest(_))
        ));
        assert_eq!(plain.card_file("C1").unwrap().pin_failures, 0);
    }
}
