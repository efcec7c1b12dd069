//! Cards and their enrolment codes: issuing a card with its code, and the
//! enrolment transaction that marks a code used and records the certificate
//! atomically.

use lanyard_certs::{CardHolder, CertSerial, KeyKind, Validity};
use sqlx::any::AnyRow;
use sqlx::Row;
use time::OffsetDateTime;

use super::{Store, Tx};
use crate::audit::{self, AuditEvent};
use crate::enrolment_code::CodeHash;
use crate::error::CaError;

/// A card as the IT desk recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    /// 12 upper-case hex characters.
    pub card_id: String,
    /// The holder's name.
    pub holder_name: String,
    /// The holder's user id.
    pub user_id: String,
    /// The holder's role.
    pub role: String,
}

impl CardRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(CardRecord {
            card_id: row.try_get("card_id")?,
            holder_name: row.try_get("holder_name")?,
            user_id: row.try_get("user_id")?,
            role: row.try_get("role")?,
        })
    }

    /// The certificate subject for this card in `organisation`.
    pub fn holder(&self, organisation: &str) -> CardHolder {
        CardHolder {
            holder_name: self.holder_name.clone(),
            user_id: self.user_id.clone(),
            role: self.role.clone(),
            card_id: self.card_id.clone(),
            organisation: organisation.to_string(),
        }
    }
}

/// Result of looking up a code inside the enrolment transaction.
#[derive(Debug)]
pub enum CodeLookup {
    /// The code is valid: the transaction holds the write lock until completed or dropped.
    Valid(PendingEnrolment),
    /// No such code.
    Unknown,
    /// The code exists but expired.
    Expired {
        /// Its card.
        card_id: String,
    },
    /// The code was already redeemed.
    Used {
        /// Its card.
        card_id: String,
        /// Whether the code is still within its validity, the newest of its
        /// card and the card neither revoked nor suspended: a retry of the
        /// enrolment whose answer was lost may get its certificates again.
        retryable: bool,
    },
    /// The card was revoked or suspended after the code was released.
    CardRevoked {
        /// Its card.
        card_id: String,
    },
    /// A newer code was released for the card (a re-issue); only that one counts.
    Superseded {
        /// Its card.
        card_id: String,
    },
}

/// What a card certificate is for (the certificates table's `purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertPurpose {
    /// The card's authentication (TLS client login) certificate.
    Authentication,
    /// The card's document-signing certificate (profile "document-signing").
    Signing,
}

impl CertPurpose {
    /// The value stored in the `purpose` column.
    pub fn as_str(self) -> &'static str {
        match self {
            CertPurpose::Authentication => "authentication",
            CertPurpose::Signing => "signing",
        }
    }
}

/// A certificate about to be recorded.
#[derive(Debug)]
pub struct IssuedCert<'a> {
    /// Its serial.
    pub serial: CertSerial,
    /// The DER certificate.
    pub der: &'a [u8],
    /// The kind of key it certifies.
    pub key_kind: KeyKind,
    /// Its validity.
    pub validity: Validity,
    /// What it is for.
    pub purpose: CertPurpose,
}

impl Store {
    /// Inserts a card and its enrolment code, with the audit record, in one
    /// transaction. Returns `false` (and changes nothing) if the card id is taken.
    pub async fn insert_card(
        &self,
        card: &CardRecord,
        code_hash: &CodeHash,
        expires_at: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool, CaError> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT 1 FROM cards WHERE card_id = $1")
            .bind(&card.card_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_card_row_on(&mut tx, card, "issued", now.unix_timestamp(), &event.actor).await?;
        sqlx::query(
            "INSERT INTO enrolment_codes (code_hash, card_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(code_hash.to_hex())
        .bind(&card.card_id)
        .bind(now.unix_timestamp())
        .bind(expires_at.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Starts an enrolment: takes the write lock and looks the code up. Only a
    /// [`CodeLookup::Valid`] keeps the transaction open.
    pub async fn begin_enrolment(
        &self,
        code_hash: &CodeHash,
        now: OffsetDateTime,
    ) -> Result<CodeLookup, CaError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT c.card_id, c.holder_name, c.user_id, c.role, c.state, c.suspended_at, \
                    e.expires_at, e.used_at, \
                    (SELECT COUNT(*) FROM enrolment_codes n \
                      WHERE n.card_id = e.card_id AND n.created_at > e.created_at) AS newer \
             FROM enrolment_codes e JOIN cards c ON c.card_id = e.card_id \
             WHERE e.code_hash = $1",
        )
        .bind(code_hash.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(CodeLookup::Unknown);
        };
        let card = CardRecord::from_row(&row)?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let used_at: Option<i64> = row.try_get("used_at")?;
        let state: String = row.try_get("state")?;
        let suspended_at: Option<i64> = row.try_get("suspended_at")?;
        let newer: i64 = row.try_get("newer")?;
        if used_at.is_some() {
            tx.rollback().await?;
            let retryable = state != "revoked"
                && suspended_at.is_none()
                && newer == 0
                && expires_at > now.unix_timestamp();
            return Ok(CodeLookup::Used {
                card_id: card.card_id,
                retryable,
            });
        }
        if state == "revoked" || suspended_at.is_some() {
            tx.rollback().await?;
            return Ok(CodeLookup::CardRevoked {
                card_id: card.card_id,
            });
        }
        if newer > 0 {
            tx.rollback().await?;
            return Ok(CodeLookup::Superseded {
                card_id: card.card_id,
            });
        }
        if expires_at <= now.unix_timestamp() {
            tx.rollback().await?;
            return Ok(CodeLookup::Expired {
                card_id: card.card_id,
            });
        }
        Ok(CodeLookup::Valid(PendingEnrolment {
            tx,
            card,
            code_hash: *code_hash,
        }))
    }

    /// The card of an unused, unexpired code, read without the write lock:
    /// a hint for signing ahead ([`Store::begin_enrolment`] decides).
    pub async fn peek_enrolment(
        &self,
        code_hash: &CodeHash,
        now: OffsetDateTime,
    ) -> Result<Option<CardRecord>, CaError> {
        let row = sqlx::query(
            "SELECT c.card_id, c.holder_name, c.user_id, c.role \
             FROM enrolment_codes e JOIN cards c ON c.card_id = e.card_id \
             WHERE e.code_hash = $1 AND e.used_at IS NULL AND e.expires_at > $2 \
               AND c.state <> 'revoked' AND c.suspended_at IS NULL",
        )
        .bind(code_hash.to_hex())
        .bind(now.unix_timestamp())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(CardRecord::from_row).transpose()?)
    }

    /// Cards, newest first (for admin listings and tests).
    pub async fn cards(&self) -> Result<Vec<(CardRecord, String)>, CaError> {
        let rows = sqlx::query(
            "SELECT card_id, holder_name, user_id, role, state FROM cards ORDER BY created_at DESC, card_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((CardRecord::from_row(&r)?, r.try_get("state")?)))
            .collect()
    }
}

/// Inserts the row of `card` in `state` ('issued': waiting for enrolment;
/// 'active': certificates issued at once, as by derivation), made at `now` by `actor`.
pub(super) async fn insert_card_row_on(
    conn: &mut sqlx::AnyConnection,
    card: &CardRecord,
    state: &str,
    now: i64,
    actor: &str,
) -> Result<(), CaError> {
    sqlx::query(
        "INSERT INTO cards (card_id, holder_name, user_id, role, state, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&card.card_id)
    .bind(&card.holder_name)
    .bind(&card.user_id)
    .bind(&card.role)
    .bind(state)
    .bind(now)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An enrolment holding SQLite's write lock; dropping it rolls back and leaves the code unused.
#[derive(Debug)]
pub struct PendingEnrolment {
    tx: Tx,
    card: CardRecord,
    code_hash: CodeHash,
}

impl PendingEnrolment {
    /// The card the code belongs to.
    pub fn card(&self) -> &CardRecord {
        &self.card
    }

    /// Gives up: rolls back at once, leaving the code unused (dropping does the same, later).
    pub async fn abandon(self) -> Result<(), CaError> {
        Ok(self.tx.rollback().await?)
    }

    /// Whether no certificate with `serial` was ever recorded.
    pub async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
        super::lifecycle::serial_is_free_on(&mut self.tx, serial).await
    }

    /// Marks the code used, records the certificates (authentication, and
    /// document signing when issued), activates the card and appends the
    /// audit record, all in one commit.
    pub async fn complete(
        mut self,
        certs: &[IssuedCert<'_>],
        peer: Option<&str>,
        event: &AuditEvent,
    ) -> Result<(), CaError> {
        let now = OffsetDateTime::now_utc();
        let marked = sqlx::query(
            "UPDATE enrolment_codes SET used_at = $1, used_from = $2 WHERE code_hash = $3 AND used_at IS NULL",
        )
        .bind(now.unix_timestamp())
        .bind(peer)
        .bind(self.code_hash.to_hex())
        .execute(&mut *self.tx)
        .await?;
        if marked.rows_affected() != 1 {
            // Cannot happen under BEGIN IMMEDIATE; refuse rather than issue twice.
            return Err(CaError::CodeRejected);
        }
        lanyard_fault::hit("ca.code.after_use");
        for cert in certs {
            super::lifecycle::insert_certificate_on(
                &mut self.tx,
                &self.card.card_id,
                cert,
                now.unix_timestamp(),
            )
            .await?;
        }
        sqlx::query("UPDATE cards SET state = 'active' WHERE card_id = $1 AND state = 'issued'")
            .bind(&self.card.card_id)
            .execute(&mut *self.tx)
            .await?;
        audit::append(&mut self.tx, event, now).await?;
        self.tx.commit().await?;
        lanyard_fault::hit("ca.code.after_commit");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditAction, AuditEvent};
    use crate::enrolment_code::EnrolmentCode;

    fn event(action: AuditAction) -> AuditEvent {
        AuditEvent {
            actor: "admin:test".into(),
            action,
            card_id: Some("0123456789AB".into()),
            peer: None,
            detail: serde_json::json!({}),
        }
    }

    fn card() -> CardRecord {
        CardRecord {
            card_id: "0123456789AB".into(),
            holder_name: "Dr Ada Smith".into(),
            user_id: "555123456789".into(),
            role: "R8000 Clinical Practitioner".into(),
        }
    }

    fn issued(serial: u8) -> (CertSerial, Validity) {
        let now = OffsetDateTime::now_utc();
        (
            CertSerial::from_random([serial; 16]),
            Validity::card(now, time::Duration::days(30)).unwrap(),
        )
    }

    async fn store_with_card(
        expires_in: time::Duration,
    ) -> (crate::store::TestDbGuard, Store, EnrolmentCode) {
        let (tmp, store) = crate::store::test_store().await;
        let (inserted, code) = insert(&store, expires_in).await;
        assert!(inserted);
        (tmp, store, code)
    }

    async fn insert(store: &Store, expires_in: time::Duration) -> (bool, EnrolmentCode) {
        let code = EnrolmentCode::generate().unwrap();
        let expires = OffsetDateTime::now_utc() + expires_in;
        let event = event(AuditAction::CardIssued);
        let inserted = store
            .insert_card(&card(), &code.hash(), expires, &event)
            .await
            .unwrap();
        (inserted, code)
    }

    #[tokio::test]
    async fn a_code_is_redeemed_once() {
        let (_tmp, store, code) = store_with_card(time::Duration::hours(1)).await;
        let now = OffsetDateTime::now_utc();
        let CodeLookup::Valid(mut p) = store.begin_enrolment(&code.hash(), now).await.unwrap()
        else {
            panic!("code should be valid");
        };
        assert_eq!(p.card(), &card());
        let (serial, validity) = issued(1);
        assert!(p.serial_is_free(&serial).await.unwrap());
        let cert = IssuedCert {
            serial,
            der: b"der",
            key_kind: KeyKind::EcP256,
            validity,
            purpose: CertPurpose::Authentication,
        };
        p.complete(&[cert], Some("127.0.0.1"), &event(AuditAction::Enrolled))
            .await
            .unwrap();
        assert!(matches!(
            store.begin_enrolment(&code.hash(), now).await.unwrap(),
            CodeLookup::Used {
                retryable: true,
                ..
            }
        ));
        let cards = store.cards().await.unwrap();
        assert_eq!(cards[0].1, "active");
        assert_eq!(store.verify_audit().await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn abandoned_enrolment_leaves_the_code_usable() {
        let (_tmp, store, code) = store_with_card(time::Duration::hours(1)).await;
        let now = OffsetDateTime::now_utc();
        let CodeLookup::Valid(p) = store.begin_enrolment(&code.hash(), now).await.unwrap() else {
            panic!("code should be valid");
        };
        p.abandon().await.unwrap();
        assert!(matches!(
            store.begin_enrolment(&code.hash(), now).await.unwrap(),
            CodeLookup::Valid(_)
        ));
    }

    #[tokio::test]
    async fn expired_and_unknown_codes() {
        let (_tmp, store, code) = store_with_card(time::Duration::seconds(-1)).await;
        let now = OffsetDateTime::now_utc();
        assert!(matches!(
            store.begin_enrolment(&code.hash(), now).await.unwrap(),
            CodeLookup::Expired { .. }
        ));
        let other = EnrolmentCode::generate().unwrap();
        assert!(matches!(
            store.begin_enrolment(&other.hash(), now).await.unwrap(),
            CodeLookup::Unknown
        ));
    }

    #[tokio::test]
    async fn a_revoked_or_suspended_cards_code_is_refused() {
        let (_tmp, store, code) = store_with_card(time::Duration::hours(1)).await;
        let now = OffsetDateTime::now_utc();
        sqlx::query("UPDATE cards SET suspended_at = 1")
            .execute(store.pool())
            .await
            .unwrap();
        assert!(matches!(
            store.begin_enrolment(&code.hash(), now).await.unwrap(),
            CodeLookup::CardRevoked { .. }
        ));
        sqlx::query(
            "UPDATE cards SET suspended_at = NULL, state = 'revoked', revoked_at = 1, revocation_reason = 1",
        )
        .execute(store.pool())
        .await
        .unwrap();
        assert!(matches!(
            store.begin_enrolment(&code.hash(), now).await.unwrap(),
            CodeLookup::CardRevoked { .. }
        ));
    }

    #[tokio::test]
    async fn an_older_code_of_a_reissued_card_is_refused() {
        let (_tmp, store, old) = store_with_card(time::Duration::hours(1)).await;
        let new = EnrolmentCode::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        sqlx::query(
            "INSERT INTO enrolment_codes (code_hash, card_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(new.hash().to_hex())
        .bind("0123456789AB")
        .bind(now.unix_timestamp() + 1)
        .bind(now.unix_timestamp() + 3600)
        .execute(store.pool())
        .await
        .unwrap();
        assert!(matches!(
            store.begin_enrolment(&old.hash(), now).await.unwrap(),
            CodeLookup::Superseded { .. }
        ));
        assert!(matches!(
            store.begin_enrolment(&new.hash(), now).await.unwrap(),
            CodeLookup::Valid(_)
        ));
    }

    #[tokio::test]
    async fn duplicate_card_id_is_reported_not_inserted() {
        let (_tmp, store, _code) = store_with_card(time::Duration::hours(1)).await;
        let (inserted, _) = insert(&store, time::Duration::hours(1)).await;
        assert!(!inserted);
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_changed_or_deleted() {
        let (_tmp, store, _code) = store_with_card(time::Duration::hours(1)).await;
        let err = sqlx::query("UPDATE audit SET actor = 'someone else'")
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = sqlx::query("DELETE FROM audit")
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert_eq!(store.verify_audit().await.unwrap(), Ok(1));
    }

    #[tokio::test]
    async fn a_forged_audit_row_breaks_the_chain() {
        let (_tmp, store, _code) = store_with_card(time::Duration::hours(1)).await;
        store
            .record_audit(&event(AuditAction::EnrolFailed))
            .await
            .unwrap();
        // Someone with write access inserts a row without knowing how to chain it.
        sqlx::query(
            "INSERT INTO audit (at, actor, action, detail, prev_hash, hash) \
             VALUES ('2026-01-01T00:00:00Z', 'x', 'card_issued', '{}', 'bogus', 'bogus')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        assert_eq!(store.verify_audit().await.unwrap(), Err(3));
    }
}
