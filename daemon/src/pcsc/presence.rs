//! Which card is in the virtual reader: the card the PKCS#11 module would
//! show first (lowest slot; active or expired, not suspended or revoked), or
//! the one `[pcsc] card` names. Waits on the daemon's card-change signal.

use std::time::Duration;

use crate::state::Daemon;

/// A slow safety net beside the change signal (nothing relies on it).
const RECHECK: Duration = Duration::from_secs(10);

/// The card in the reader, as far as a reader connection cares: a change of
/// any of it (another card, a renewed or re-issued certificate) is a
/// removal followed by an insertion, so that clients read the card again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertedCard {
    /// The card.
    pub card_id: String,
    /// Its authentication certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Its document-signing certificate, DER, if it has one.
    pub signing_certificate_der: Option<Vec<u8>>,
}

/// The card in the reader now, if any.
pub fn current(daemon: &Daemon, wanted: Option<&str>) -> Option<InsertedCard> {
    daemon
        .cards(None)
        .into_iter()
        .find(|c| wanted.is_none_or(|w| c.card_id == w))
        .map(|c| InsertedCard {
            card_id: c.card_id,
            certificate_der: c.certificate_der,
            signing_certificate_der: c.signing_key.map(|s| s.certificate_der),
        })
}

/// Waits until the card in the reader is no longer `seen`; returns the new one.
pub async fn changed(
    daemon: &Daemon,
    wanted: Option<&str>,
    seen: &Option<InsertedCard>,
) -> Option<InsertedCard> {
    changed_within(daemon, wanted, seen, Some(RECHECK)).await
}

/// [`changed`], looking again after `recheck` too when given (without it,
/// only the daemon's change signal wakes it: what the tests check).
pub(crate) async fn changed_within(
    daemon: &Daemon,
    wanted: Option<&str>,
    seen: &Option<InsertedCard>,
    recheck: Option<Duration>,
) -> Option<InsertedCard> {
    loop {
        // Registered before looking, so a change in between is not missed.
        let notified = daemon.signals().cards.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = current(daemon, wanted);
        if &now != seen {
            return now;
        }
        match recheck {
            Some(every) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(every) => {}
                }
            }
            None => notified.await,
        }
    }
}
