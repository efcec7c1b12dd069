//! The CRL publisher, a background task of `serve`: it issues a CRL (number
//! from the database sequence, signed by the issuing CA, valid for two
//! intervals) when none is current, every `crl_interval_secs`, and within
//! about two seconds of any revocation, suspension or resume, whichever CA
//! process or service made it. It notices changes by polling cheap
//! aggregates, then compares what the CRL must say with the newest stored
//! CRL, so replicas sharing a database rarely publish the same content twice.

use std::sync::Arc;
use std::time::Duration;

use lanyard_certs::{CrlContents, RevokedCert};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::CaError;
use crate::issuer::IssuingCa;
use crate::store::{CrlChangeMarker, Store, StoredCrl};

/// How often the database is polled for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Polls between full content comparisons even when the aggregates did not
/// move (catches changes the aggregates cannot see, and expiries).
const FULL_CHECK_EVERY: u32 = 30;

/// One CRL entry in comparable form: serial bytes, date, reason code.
type Entry = (Vec<u8>, i64, u8);

fn entries_of_contents(revoked: &[RevokedCert]) -> Vec<Entry> {
    let mut v: Vec<Entry> = revoked
        .iter()
        .map(|r| {
            (
                r.serial.as_bytes().to_vec(),
                r.revoked_at.unix_timestamp(),
                r.reason.code(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The entries of a DER CRL, or `None` if it cannot be read.
fn entries_of_der(der: &[u8]) -> Option<Vec<Entry>> {
    let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
    let mut v: Vec<Entry> = crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                r.raw_serial().to_vec(),
                r.revocation_date.timestamp(),
                r.reason_code().map(|(_, code)| code.0).unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    Some(v)
}

/// Issues CRLs for one CA process.
#[derive(Debug, Clone)]
pub struct CrlPublisher {
    store: Store,
    issuer: Arc<IssuingCa>,
    interval: Duration,
}

impl CrlPublisher {
    /// A publisher re-issuing at least every `interval`.
    pub fn new(store: Store, issuer: Arc<IssuingCa>, interval: Duration) -> Self {
        CrlPublisher {
            store,
            issuer,
            interval,
        }
    }

    /// Builds, signs and stores a CRL with the next number; returns it.
    pub async fn publish(&self, why: &str) -> Result<StoredCrl, CaError> {
        let mut tx = self.store.begin_lifecycle().await?;
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let revoked = tx.crl_entries(now.unix_timestamp()).await?;
        let number = tx.next_crl_number().await?;
        let next_update = now
            + time::Duration::try_from(self.interval * 2)
                .map_err(|e| CaError::Crl(format!("bad CRL interval: {e}")))?;
        let contents = CrlContents {
            number: u64::try_from(number)
                .map_err(|_| CaError::Crl(format!("CRL number {number} is negative")))?,
            this_update: now,
            next_update,
            revoked,
        };
        let der = self.issuer.sign_crl(&contents)?;
        let crl = StoredCrl {
            number,
            der,
            this_update: now.unix_timestamp(),
            next_update: next_update.unix_timestamp(),
        };
        tx.insert_crl(&crl).await?;
        tx.commit(&[]).await?;
        info!(
            crl_number = number,
            entries = contents.revoked.len(),
            next_update = crl.next_update,
            reason = why,
            "CRL published"
        );
        Ok(crl)
    }

    /// Why a new CRL is needed now, or `None` if the newest one is current.
    /// `compare` also checks its content against the database.
    pub async fn needed(&self, compare: bool) -> Result<Option<&'static str>, CaError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let Some(newest) = self.store.newest_crl().await? else {
            return Ok(Some("no CRL yet"));
        };
        let interval = i64::try_from(self.interval.as_secs()).unwrap_or(i64::MAX);
        if newest.this_update.saturating_add(interval) <= now || newest.next_update <= now {
            return Ok(Some("interval"));
        }
        if !compare {
            return Ok(None);
        }
        let wanted = entries_of_contents(&self.store.crl_entries(now).await?);
        match entries_of_der(&newest.der) {
            Some(stored) if stored == wanted => Ok(None),
            Some(_) => Ok(Some("revocations changed")),
            None => Ok(Some("the stored CRL is unreadable")),
        }
    }

    /// Publishes a CRL if the newest one is missing, old or out of date.
    pub async fn publish_if_needed(&self) -> Result<Option<StoredCrl>, CaError> {
        match self.needed(true).await? {
            Some(why) => Ok(Some(self.publish(why).await?)),
            None => Ok(None),
        }
    }

    /// Runs until `stop` turns true: polls every [`POLL_INTERVAL`] and
    /// publishes when needed. Errors are logged and retried at the next poll.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last: Option<CrlChangeMarker> = None;
        let mut polls_since_full = 0u32;
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => false,
                // A dropped sender means serve is going away too.
                changed = stop.changed() => changed.is_err(),
            };
            if stopping || *stop.borrow() {
                debug!("CRL publisher stopping");
                return;
            }
            let marker = match self.store.crl_change_marker().await {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "CRL publisher cannot read the database; retrying");
                    continue;
                }
            };
            polls_since_full += 1;
            let compare = last != Some(marker) || polls_since_full >= FULL_CHECK_EVERY;
            let result = match self.needed(compare).await {
                Ok(Some(why)) => self.publish(why).await.map(|_| ()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    // Only a completed check moves the marker: a failed one is redone.
                    last = Some(marker);
                    if compare {
                        polls_since_full = 0;
                    }
                }
                Err(e) => warn!(error = %e, "CRL publishing failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_issuer::test_issuer;
    use lanyard_certs::{CertSerial, RevocationReason};

    #[test]
    fn entries_compare_regardless_of_order() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let a = RevokedCert {
            serial: CertSerial::from_random([1; 16]),
            revoked_at: t,
            reason: RevocationReason::Superseded,
        };
        let b = RevokedCert {
            serial: CertSerial::from_random([2; 16]),
            revoked_at: t,
            reason: RevocationReason::CertificateHold,
        };
        assert_eq!(
            entries_of_contents(&[a.clone(), b.clone()]),
            entries_of_contents(&[b, a])
        );
        assert!(entries_of_der(b"not a CRL").is_none());
    }

    #[tokio::test]
    async fn publishes_numbered_signed_crls_when_the_content_changes() {
        let (_guard, store) = crate::store::test_store().await;
        let issuer = Arc::new(test_issuer());
        let publisher = CrlPublisher::new(store.clone(), issuer.clone(), Duration::from_secs(600));
        assert_eq!(publisher.needed(false).await.unwrap(), Some("no CRL yet"));
        let first = publisher.publish_if_needed().await.unwrap().unwrap();
        assert_eq!(first.number, 1);
        assert_eq!(first.next_update - first.this_update, 1200);
        assert_eq!(publisher.needed(true).await.unwrap(), None);
        assert!(publisher.publish_if_needed().await.unwrap().is_none());

        // A revocation recorded by anyone: the aggregates move and the content differs.
        let marker = store.crl_change_marker().await.unwrap();
        sqlx::query(
            "INSERT INTO cards (card_id, holder_name, user_id, role, state, created_at, created_by) \
             VALUES ('0E0E0E0E0E0E', 'A', '1', 'R', 'active', 1, 'test')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let serial = lanyard_certs::CertSerial::from_random([0x44; 16]);
        sqlx::query(
            "INSERT INTO certificates (serial, card_id, der, key_kind, not_before, not_after, issued_at, revoked_at, revocation_reason) \
             VALUES ($1, '0E0E0E0E0E0E', $2, 'P-256', 1, 9999999999, 1, 1700000000, 1)",
        )
        .bind(serial.to_hex())
        .bind(b"x".to_vec())
        .execute(store.pool())
        .await
        .unwrap();
        assert_ne!(store.crl_change_marker().await.unwrap(), marker);
        // Without comparing, only the age counts.
        assert_eq!(publisher.needed(false).await.unwrap(), None);
        assert_eq!(
            publisher.needed(true).await.unwrap(),
            Some("revocations changed")
        );
        let second = publisher.publish("test").await.unwrap();
        assert_eq!(second.number, 2);
        assert_eq!(store.newest_crl().await.unwrap().unwrap(), second);
        assert_eq!(publisher.needed(true).await.unwrap(), None);

        // Signed by the issuing CA, listing the revocation with its reason and date.
        let (_, crl) = CertificateRevocationList::from_der(&second.der).unwrap();
        let (_, issuing) =
            x509_parser::prelude::X509Certificate::from_der(issuer.issuing_der()).unwrap();
        crl.verify_signature(issuing.public_key()).unwrap();
        assert_eq!(
            entries_of_der(&second.der).unwrap(),
            vec![(
                serial.as_bytes().to_vec(),
                1_700_000_000,
                RevocationReason::KeyCompromise.code()
            )]
        );
    }

    #[tokio::test]
    async fn the_task_stops_when_asked() {
        let (_guard, store) = crate::store::test_store().await;
        let publisher = CrlPublisher::new(store, Arc::new(test_issuer()), Duration::from_secs(600));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(publisher.clone().run(stopped));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the publisher stops when told")
            .unwrap();
        // Also when the sender is gone, instead of spinning.
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(publisher.run(stopped));
        drop(stop);
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the publisher stops without a sender")
            .unwrap();
    }
}
