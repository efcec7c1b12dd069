//! A card's lifecycle as `lanyard status` shows it: its status with the CA
//! (expiry derived from the certificate) and the one-line warning a
//! clinician should act on. Pure functions of the card and the clock.

use lanyard_proto::agent::{CardStatus, Lifecycle};

use crate::card_file::{CardFile, CardState};
use crate::error::Error;
use crate::renewal_schedule::RenewalPolicy;

/// The wall clock, Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The card's status: the stored standing, or EXPIRED for an active card past not_after.
pub fn status(state: CardState, not_after: i64, now: i64) -> CardStatus {
    match state {
        CardState::Revoked => CardStatus::Revoked,
        CardState::Suspended => CardStatus::Suspended,
        CardState::Active if now >= not_after => CardStatus::Expired,
        CardState::Active => CardStatus::Active,
    }
}

/// What is known about one card at one moment.
pub struct CardMoment<'a> {
    /// The card as stored.
    pub file: &'a CardFile,
    /// Start of the certificate's lifetime for scheduling, Unix seconds
    /// (not_before, or when it arrived here if later).
    pub not_before: i64,
    /// Certificate validity, Unix seconds.
    pub not_after: i64,
    /// The next automatic renewal, if one is scheduled.
    pub next_renewal: Option<i64>,
    /// Whether some application is logged in (renewal needs that).
    pub unlocked: bool,
}

/// The one line a clinician should act on, or "" when all is well.
pub fn warning(m: &CardMoment<'_>, policy: &RenewalPolicy, now: i64) -> String {
    let id = &m.file.card_id;
    let expires = rfc3339(m.not_after);
    match status(m.file.status, m.not_after, now) {
        CardStatus::Revoked => Error::revoked(id).to_string(),
        CardStatus::Suspended => Error::CardSuspended(id.clone()).to_string(),
        CardStatus::Expired => Error::CardExpired {
            card_id: id.clone(),
            date: expires,
        }
        .to_string(),
        _ if !policy.near_expiry(m.not_before, m.not_after, now) => String::new(),
        _ if !m.file.lifecycle.last_renewal_error.is_empty() => format!(
            "card {id}'s certificate expires on {expires} and renewal is failing: {}",
            m.file.lifecycle.last_renewal_error
        ),
        _ if !m.file.has_ca() => format!(
            "card {id}'s certificate expires on {expires} and cannot renew (no CA on record): ask your IT desk to re-issue it"
        ),
        _ if !m.unlocked => format!(
            "card {id}'s certificate expires on {expires}: log in to the card or run `lanyard renew` so it renews"
        ),
        _ => String::new(),
    }
}

/// The Lifecycle message of agent.proto for this card.
pub fn lifecycle(m: &CardMoment<'_>, policy: &RenewalPolicy, now: i64) -> Lifecycle {
    let record = &m.file.lifecycle;
    Lifecycle {
        status: status(m.file.status, m.not_after, now) as i32,
        ca_url: m.file.ca_url.clone(),
        next_renewal: m.next_renewal.unwrap_or(0),
        last_renewal: record.last_renewal,
        last_renewal_error: record.last_renewal_error.clone(),
        last_check_in: record.last_check_in,
        last_check_in_error: record.last_check_in_error.clone(),
        warning: warning(m, policy, now),
        // Filled in by the state, which holds the unlock.
        unlocked_until: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn file() -> CardFile {
        CardFile {
            version: 2,
            card_id: "C1".into(),
            slot: 0,
            holder_name: "Dr Ada Smith".into(),
            user_id: "u".into(),
            role: "r".into(),
            key_type: "ec-p256".into(),
            certificate: vec![],
            chain: vec![],
            wrapped_card_key: None,
            private_key: None,
            pin_failures: 0,
            ca_url: "https://ca:1".into(),
            ca_cert_pem: "pem".into(),
            status: CardState::Active,
            lifecycle: Default::default(),
            signing: None,
            tpm_counter: None,
        }
    }

    fn at(file: &CardFile, unlocked: bool) -> CardMoment<'_> {
        CardMoment {
            file,
            not_before: 0,
            not_after: 1000,
            next_renewal: Some(670),
            unlocked,
        }
    }

    fn policy() -> RenewalPolicy {
        RenewalPolicy::from_config(&Config::default())
    }

    #[test]
    fn status_derives_expiry_from_the_certificate() {
        assert_eq!(status(CardState::Active, 100, 99), CardStatus::Active);
        assert_eq!(status(CardState::Active, 100, 100), CardStatus::Expired);
        assert_eq!(
            status(CardState::Suspended, 100, 200),
            CardStatus::Suspended
        );
        assert_eq!(status(CardState::Revoked, 100, 0), CardStatus::Revoked);
    }

    #[test]
    fn a_healthy_card_has_no_warning() {
        let f = file();
        let l = lifecycle(&at(&f, true), &policy(), 500);
        assert_eq!(l.status, CardStatus::Active as i32);
        assert_eq!((l.next_renewal, l.warning.as_str()), (670, ""));
        // Close to expiry but renewing fine and unlocked: still nothing to do.
        assert_eq!(warning(&at(&f, true), &policy(), 950), "");
    }

    #[test]
    fn an_expired_card_says_so_in_one_line() {
        let f = file();
        let w = warning(&at(&f, true), &policy(), 1000);
        assert_eq!(
            w,
            "card C1's certificate expired on 1970-01-01T00:16:40Z: ask your IT desk to re-issue it"
        );
        assert_eq!(
            lifecycle(&at(&f, true), &policy(), 2000).status,
            CardStatus::Expired as i32
        );
    }

    #[test]
    fn failing_renewal_close_to_expiry_is_a_warning() {
        let mut f = file();
        f.lifecycle.last_renewal_error = "the CA is busy".into();
        assert_eq!(warning(&at(&f, true), &policy(), 800), "", "not close yet");
        let w = warning(&at(&f, true), &policy(), 950);
        assert!(w.contains("renewal is failing: the CA is busy"), "{w}");
        assert!(!w.contains('\n'));
    }

    #[test]
    fn a_locked_or_ca_less_card_close_to_expiry_is_told_what_to_do() {
        let f = file();
        assert!(warning(&at(&f, false), &policy(), 950).contains("lanyard renew"));
        let mut no_ca = file();
        no_ca.ca_url.clear();
        assert!(warning(&at(&no_ca, true), &policy(), 950).contains("no CA on record"));
    }

    #[test]
    fn suspended_and_revoked_cards_are_explained() {
        let mut f = file();
        f.status = CardState::Suspended;
        assert!(warning(&at(&f, false), &policy(), 10).contains("suspended"));
        f.status = CardState::Revoked;
        let w = warning(&at(&f, false), &policy(), 10);
        assert!(w.contains("revoked") && w.contains("re-issue"), "{w}");
    }
}
