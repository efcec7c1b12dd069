//! Login state per application, as PKCS#11 requires: logins are keyed by
//! (app_id, card_id), and an application's logins end when its last
//! connection closes (the module keeps its connections open until C_Finalize).
//! A login remembers whether it relied on `lanyard unlock`, which `lanyard lock` ends.

use std::collections::HashMap;

/// The random id an application (a module instance, or the CLI) sends with every request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AppId(Vec<u8>);

impl AppId {
    /// Longest app id accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps an app id from a request (1 to 64 bytes).
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (!bytes.is_empty() && bytes.len() <= Self::MAX_LEN).then(|| AppId(bytes.to_vec()))
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Short form for logs (not a secret, but long ids clutter).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..self.0.len().min(4)])
    }
}

impl std::fmt::Debug for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppId({})", self.short())
    }
}

/// How an application's login to a card was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// The PIN was checked: from the application, or from the daemon's own prompt.
    Pin,
    /// A protected login while the card was unlocked (`lanyard unlock`): it
    /// lasts as long as the unlock.
    Unlocked,
}

/// Open connections per application and the cards each application is logged in to.
#[derive(Debug, Default)]
pub struct AppSessions {
    connections: HashMap<AppId, usize>,
    logins: HashMap<String, HashMap<AppId, LoginKind>>,
}

impl AppSessions {
    /// A connection started carrying requests of `app`.
    pub fn connection_opened(&mut self, app: &AppId) {
        *self.connections.entry(app.clone()).or_insert(0) += 1;
    }

    /// A connection that carried `app` closed. If it was the app's last, its
    /// logins end; returns the cards that no application is logged in to any more.
    pub fn connection_closed(&mut self, app: &AppId) -> Vec<String> {
        let Some(n) = self.connections.get_mut(app) else {
            return Vec::new();
        };
        *n -= 1;
        if *n > 0 {
            return Vec::new();
        }
        self.connections.remove(app);
        let mut released = Vec::new();
        self.logins.retain(|card, apps| {
            if apps.remove(app).is_some() && apps.is_empty() {
                released.push(card.clone());
                false
            } else {
                !apps.is_empty()
            }
        });
        released
    }

    /// Whether `app` has at least one open connection.
    pub fn is_connected(&self, app: &AppId) -> bool {
        self.connections.contains_key(app)
    }

    /// Records a login of `app` to `card` (a later login replaces how an
    /// earlier one was granted).
    pub fn login(&mut self, app: &AppId, card: &str, kind: LoginKind) {
        self.logins
            .entry(card.to_string())
            .or_default()
            .insert(app.clone(), kind);
    }

    /// Ends the logins to `card` that relied on its unlock; returns whether
    /// the card now has no login at all.
    pub fn end_unlocked_logins(&mut self, card: &str) -> bool {
        let Some(apps) = self.logins.get_mut(card) else {
            return true;
        };
        apps.retain(|_, kind| *kind != LoginKind::Unlocked);
        let empty = apps.is_empty();
        if empty {
            self.logins.remove(card);
        }
        empty
    }

    /// Ends `app`'s login to `card`. Returns `None` if it was not logged in,
    /// else whether the card now has no login at all.
    pub fn logout(&mut self, app: &AppId, card: &str) -> Option<bool> {
        let apps = self.logins.get_mut(card)?;
        apps.remove(app)?;
        let empty = apps.is_empty();
        if empty {
            self.logins.remove(card);
        }
        Some(empty)
    }

    /// Whether `app` is logged in to `card`.
    pub fn is_logged_in(&self, app: &AppId, card: &str) -> bool {
        self.logins.get(card).is_some_and(|a| a.contains_key(app))
    }

    /// Whether any application is logged in to `card`.
    pub fn has_logins(&self, card: &str) -> bool {
        self.logins.contains_key(card)
    }

    /// Ends every login to `card` (e.g. the card locked or was removed).
    pub fn forget_card(&mut self, card: &str) {
        self.logins.remove(card);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(b: u8) -> AppId {
        AppId::new(&[b; 16]).unwrap()
    }

    #[test]
    fn logins_are_per_app() {
        let mut s = AppSessions::default();
        s.connection_opened(&app(1));
        s.connection_opened(&app(2));
        s.login(&app(1), "C", LoginKind::Pin);
        assert!(s.is_logged_in(&app(1), "C"));
        assert!(!s.is_logged_in(&app(2), "C"));
        assert!(!s.is_logged_in(&app(1), "D"));
    }

    #[test]
    fn last_connection_closing_ends_logins() {
        let mut s = AppSessions::default();
        s.connection_opened(&app(1));
        s.connection_opened(&app(1));
        s.connection_opened(&app(2));
        s.login(&app(1), "C", LoginKind::Pin);
        s.login(&app(2), "C", LoginKind::Unlocked);
        s.login(&app(1), "D", LoginKind::Pin);
        assert!(s.connection_closed(&app(1)).is_empty());
        assert!(s.is_logged_in(&app(1), "C"));
        assert_eq!(s.connection_closed(&app(1)), vec!["D".to_string()]);
        assert!(!s.is_logged_in(&app(1), "C"));
        assert!(s.is_logged_in(&app(2), "C"));
        assert_eq!(s.connection_closed(&app(2)), vec!["C".to_string()]);
        assert!(!s.has_logins("C"));
    }

    #[test]
    fn logout_ends_one_login() {
        let mut s = AppSessions::default();
        s.login(&app(1), "C", LoginKind::Pin);
        s.login(&app(2), "C", LoginKind::Pin);
        assert_eq!(s.logout(&app(1), "C"), Some(false));
        assert_eq!(s.logout(&app(1), "C"), None);
        assert_eq!(s.logout(&app(2), "C"), Some(true));
    }

    #[test]
    fn ending_the_unlock_ends_only_the_logins_that_relied_on_it() {
        let mut s = AppSessions::default();
        s.login(&app(1), "C", LoginKind::Unlocked);
        s.login(&app(2), "C", LoginKind::Pin);
        s.login(&app(3), "D", LoginKind::Unlocked);
        assert!(!s.end_unlocked_logins("C"));
        assert!(!s.is_logged_in(&app(1), "C"));
        assert!(s.is_logged_in(&app(2), "C"));
        assert!(s.is_logged_in(&app(3), "D"));
        assert!(s.end_unlocked_logins("D"));
        assert!(!s.has_logins("D"));
        assert!(s.end_unlocked_logins("none"));
        // A PIN login after an unlocked one no longer depends on the unlock.
        s.login(&app(4), "E", LoginKind::Unlocked);
        s.login(&app(4), "E", LoginKind::Pin);
        assert!(!s.end_unlocked_logins("E"));
        assert!(s.is_logged_in(&app(4), "E"));
    }

    #[test]
    fn app_id_bounds() {
        assert!(AppId::new(&[]).is_none());
        assert!(AppId::new(&[0; 65]).is_none());
        assert!(AppId::new(&[0; 64]).is_some());
    }
}
