//! Derived enrolment in the database: one-time challenges (hashed, with an
//! expiry, consumed atomically under the write lock) and the issuance
//! transaction that creates the derived card, records its certificates and
//! the physical card it came from, and appends the audit record in one commit.

use sqlx::Row;
use time::OffsetDateTime;

use super::enrolment::{CardRecord, IssuedCert};
use super::{Store, Tx};
use crate::audit::{self, AuditEvent};
use crate::error::CaError;
use lanyard_certs::CertSerial;

/// Challenges are forgotten this long after they expired.
const CHALLENGE_RETENTION_SECS: i64 = 86_400;

/// What became of a challenge presented with a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeUse {
    /// It was live and is now used.
    Consumed,
    /// No such challenge (never issued, or long gone).
    Unknown,
    /// It was already used.
    Used,
    /// It expired before it was used.
    Expired,
}

/// The physical card a derived card came from, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct DerivedFrom<'a> {
    /// The physical certificate's issuer DN.
    pub issuer: &'a str,
    /// Its serial, lower-case hex.
    pub serial_hex: &'a str,
    /// Its subject DN.
    pub subject: &'a str,
    /// The allowed policy OID it carried.
    pub policy: &'a str,
}

impl Store {
    /// Records a new challenge (by its hash) valid until `expires_at`, and
    /// forgets challenges that expired more than a day ago. Returns `false`
    /// (recording nothing) when `max_live` unused, unexpired challenges exist
    /// already, so unauthenticated callers cannot grow the table without bound.
    pub async fn insert_derive_challenge(
        &self,
        challenge_hash: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
        requested_from: Option<&str>,
        max_live: i64,
    ) -> Result<bool, CaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM derive_challenges WHERE expires_at < $1")
            .bind(now.unix_timestamp() - CHALLENGE_RETENTION_SECS)
            .execute(&mut *tx)
            .await?;
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM derive_challenges WHERE used_at IS NULL AND expires_at >= $1",
        )
        .bind(now.unix_timestamp())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if live >= max_live {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO derive_challenges (challenge_hash, created_at, expires_at, requested_from) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(challenge_hash)
        .bind(now.unix_timestamp())
        .bind(expires_at.unix_timestamp())
        .bind(requested_from)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Uses the challenge with `challenge_hash` once: only a live one is
    /// marked used (under the write lock, so two requests cannot both use it).
    pub async fn consume_derive_challenge(
        &self,
        challenge_hash: &str,
        now: OffsetDateTime,
    ) -> Result<ChallengeUse, CaError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT expires_at, used_at FROM derive_challenges WHERE challenge_hash = $1",
        )
        .bind(challenge_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(ChallengeUse::Unknown);
        };
        let expires_at: i64 = row.try_get("expires_at")?;
        let used_at: Option<i64> = row.try_get("used_at")?;
        let outcome = if used_at.is_some() {
            ChallengeUse::Used
        } else if expires_at < now.unix_timestamp() {
            ChallengeUse::Expired
        } else {
            let marked = sqlx::query(
                "UPDATE derive_challenges SET used_at = $1 WHERE challenge_hash = $2 AND used_at IS NULL",
            )
            .bind(now.unix_timestamp())
            .bind(challenge_hash)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 1 {
                ChallengeUse::Consumed
            } else {
                ChallengeUse::Used
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Starts the derived issuance: takes the write lock.
    pub async fn begin_derived_issuance(&self) -> Result<DerivedIssuance, CaError> {
        Ok(DerivedIssuance {
            tx: self.begin_write().await?,
        })
    }

    /// The physical card (issuer, serial) a derived card came from, if it was derived.
    pub async fn derived_from(&self, card_id: &str) -> Result<Option<(String, String)>, CaError> {
        let row = sqlx::query(
            "SELECT physical_issuer, physical_serial FROM derived_cards WHERE card_id = $1",
        )
        .bind(card_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("physical_issuer")?, r.try_get("physical_serial")?)))
            .transpose()
    }
}

/// A derived issuance holding the write lock; dropping it rolls back.
#[derive(Debug)]
pub struct DerivedIssuance {
    tx: Tx,
}

impl DerivedIssuance {
    /// Whether no certificate with `serial` was ever recorded.
    pub async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
        super::lifecycle::serial_is_free_on(&mut self.tx, serial).await
    }

    /// Whether no card has the id `card_id`.
    pub async fn card_id_is_free(&mut self, card_id: &str) -> Result<bool, CaError> {
        Ok(sqlx::query("SELECT 1 FROM cards WHERE card_id = $1")
            .bind(card_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .is_none())
    }

    /// Creates the active card, records its certificates and where it was
    /// derived from, and appends `event`, all in one commit.
    pub async fn complete(
        mut self,
        card: &CardRecord,
        certs: &[IssuedCert<'_>],
        from: DerivedFrom<'_>,
        event: &AuditEvent,
    ) -> Result<(), CaError> {
        let now = OffsetDateTime::now_utc();
        super::enrolment::insert_card_row_on(
            &mut self.tx,
            card,
            "active",
            now.unix_timestamp(),
            &event.actor,
        )
        .await?;
        for cert in certs {
            super::lifecycle::insert_certificate_on(
                &mut self.tx,
                &card.card_id,
                cert,
                now.unix_timestamp(),
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO derived_cards (card_id, physical_issuer, physical_serial, physical_subject, policy_oid, derived_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&card.card_id)
        .bind(from.issuer)
        .bind(from.serial_hex)
        .bind(from.subject)
        .bind(from.policy)
        .bind(now.unix_timestamp())
        .execute(&mut *self.tx)
        .await?;
        audit::append(&mut self.tx, event, now).await?;
        self.tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_challenge_is_used_once_and_not_after_expiry() {
        let (_guard, store) = crate::store::test_store().await;
        let now = OffsetDateTime::now_utc();
        let later = now + time::Duration::minutes(5);
        assert!(store
            .insert_derive_challenge("aa", now, later, None, 1)
            .await
            .unwrap());
        // One live challenge is the limit here: a second is refused.
        assert!(!store
            .insert_derive_challenge("xx", now, later, None, 1)
            .await
            .unwrap());
        assert!(store
            .insert_derive_challenge(
                "bb",
                now,
                now - time::Duration::seconds(1),
                Some("127.0.0.1"),
                2,
            )
            .await
            .unwrap());
        assert_eq!(
            store.consume_derive_challenge("aa", now).await.unwrap(),
            ChallengeUse::Consumed
        );
        assert_eq!(
            store.consume_derive_challenge("aa", now).await.unwrap(),
            ChallengeUse::Used
        );
        assert_eq!(
            store.consume_derive_challenge("bb", now).await.unwrap(),
            ChallengeUse::Expired
        );
        assert_eq!(
            store.consume_derive_challenge("cc", now).await.unwrap(),
            ChallengeUse::Unknown
        );
        assert_eq!(
            store.consume_derive_challenge("xx", now).await.unwrap(),
            ChallengeUse::Unknown
        );
    }
}
