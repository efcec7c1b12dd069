//! Login state per application, as PKCS#11 requires: logins are keyed by
//! (app_id, card_id), and an application's logins end when its last
//! connection closes (the module keeps its connections open until C_Finalize).

use std::collections::{HashMap, HashSet};

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

/// Open connections per application and the cards each application is logged in to.
#[derive(Debug, Default)]
pub struct AppSessions {
    connections: HashMap<AppId, usize>,
    logins: HashMap<String, HashSet<AppId>>,
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
            if apps.remove(app) && apps.is_empty() {
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

    /// Records a login of `app` to `card`.
    pub fn login(&mut self, app: &AppId, card: &str) {
        self.logins
            .entry(card.to_string())
            .or_default()
            .insert(app.clone());
    }

    /// Ends `app`'s login to `card`. Returns `None` if it was not logged in,
    /// else whether the card now has no login at all.
    pub fn logout(&mut self, app: &AppId, card: &str) -> Option<bool> {
        let apps = self.logins.get_mut(card)?;
        if !apps.remove(app) {
            return None;
        }
        let empty = apps.is_empty();
        if empty {
            self.logins.remove(card);
        }
        Some(empty)
    }

    /// Whether `app` is logged in to `card`.
    pub fn is_logged_in(&self, app: &AppId, card: &str) -> bool {
        self.logins.get(card).is_some_and(|a| a.contains(app))
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
        s.login(&app(1), "C");
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
        s.login(&app(1), "C");
        s.login(&app(2), "C");
        s.login(&app(1), "D");
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
        s.login(&app(1), "C");
        s.login(&app(2), "C");
        assert_eq!(s.logout(&app(1), "C"), Some(false));
        assert_eq!(s.logout(&app(1), "C"), None);
        assert_eq!(s.logout(&app(2), "C"), Some(true));
    }

    #[test]
    fn app_id_bounds() {
        assert!(AppId::new(&[]).is_none());
        assert!(AppId::new(&[0; 65]).is_none());
        assert!(AppId::new(&[0; 64]).is_some());
    }
}
