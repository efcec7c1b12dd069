//! The card lifecycle in the database: card and certificate states,
//! renewal (new certificate, older ones superseded), PIN reset codes and
//! their tries, card revocation, and the content and storage of CRLs.
//! Everything that changes state runs inside one [`LifecycleTx`].

use lanyard_certs::{CertSerial, RevocationReason, RevokedCert};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::{CardRecord, IssuedCert, Store, Tx};
use crate::audit::{self, AuditEvent};
use crate::card_id::CardId;
use crate::error::CaError;

/// Where a card is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardLifecycle {
    /// Waiting for (re-)enrolment.
    Issued,
    /// Enrolled and usable.
    Active,
    /// On hold since `since` (Unix seconds); its certificates are on the CRL
    /// as certificateHold until it is resumed.
    Suspended {
        /// Unix seconds.
        since: i64,
    },
    /// Revoked at `at` for `reason`.
    Revoked {
        /// Unix seconds.
        at: i64,
        /// RFC 5280 reason.
        reason: RevocationReason,
    },
}

impl CardLifecycle {
    /// "issued", "active", "suspended" or "revoked".
    pub fn name(&self) -> &'static str {
        match self {
            CardLifecycle::Issued => "issued",
            CardLifecycle::Active => "active",
            CardLifecycle::Suspended { .. } => "suspended",
            CardLifecycle::Revoked { .. } => "revoked",
        }
    }
}

/// A card with its lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardState {
    /// The card as the IT desk recorded it.
    pub card: CardRecord,
    /// Its state.
    pub lifecycle: CardLifecycle,
}

/// A certificate as the CA recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    /// Lower-case hex serial.
    pub serial: String,
    /// The card it belongs to.
    pub card_id: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Unix seconds.
    pub not_after: i64,
    /// When and why it was revoked, if it was.
    pub revoked: Option<(i64, RevocationReason)>,
    /// When a renewal replaced it, if one did.
    pub superseded_at: Option<i64>,
}

/// A live PIN reset code (unused, not dead; it may have expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetCodeRecord {
    /// Row id.
    pub id: i64,
    /// Hex SHA-256 of the normalised code.
    pub code_hash: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Wrong codes still allowed.
    pub tries_left: i64,
}

/// The newest CRL in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCrl {
    /// Its CRL number.
    pub number: i64,
    /// DER.
    pub der: Vec<u8>,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds.
    pub next_update: i64,
}

/// Cheap aggregates that change whenever the CRL's content changes through
/// a revocation, suspension or resume (by any CA process or the admin service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlChangeMarker {
    revoked_certs: i64,
    last_revoked_at: i64,
    suspended_cards: i64,
    suspended_sum: i64,
}

/// The RFC 5280 reason stored as `code` (unspecified if absent or unknown).
fn reason_of(code: Option<i64>) -> RevocationReason {
    code.and_then(|c| u32::try_from(c).ok())
        .and_then(|c| RevocationReason::from_code(c).ok())
        .unwrap_or(RevocationReason::Unspecified)
}

/// When and why a certificate row (`revoked_at`, `revocation_reason`) was revoked, if it was.
pub(super) fn revocation_of(row: &AnyRow) -> Result<Option<(i64, RevocationReason)>, CaError> {
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let reason: Option<i64> = row.try_get("revocation_reason")?;
    Ok(revoked_at.map(|at| (at, reason_of(reason))))
}

impl CardLifecycle {
    /// The lifecycle the card columns of `row` describe (card `card_id`):
    /// suspension is `suspended_at` on a card not revoked.
    pub(super) fn from_row(row: &AnyRow, card_id: &str) -> Result<Self, CaError> {
        let state: String = row.try_get("state")?;
        let suspended_at: Option<i64> = row.try_get("suspended_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let reason: Option<i64> = row.try_get("revocation_reason")?;
        Ok(match (state.as_str(), suspended_at) {
            ("revoked", _) => CardLifecycle::Revoked {
                at: revoked_at.unwrap_or(0),
                reason: reason_of(reason),
            },
            ("active" | "issued", Some(since)) => CardLifecycle::Suspended { since },
            ("active", None) => CardLifecycle::Active,
            ("issued", None) => CardLifecycle::Issued,
            (other, _) => {
                return Err(CaError::BadDatabase(format!(
                    "card {card_id} has the unknown state {other:?}"
                )))
            }
        })
    }
}

fn card_state_from_row(row: &AnyRow) -> Result<CardState, CaError> {
    let card = CardRecord::from_row(row)?;
    let lifecycle = CardLifecycle::from_row(row, &card.card_id)?;
    Ok(CardState { card, lifecycle })
}

fn cert_from_row(row: &AnyRow) -> Result<CertRecord, CaError> {
    Ok(CertRecord {
        serial: row.try_get("serial")?,
        card_id: row.try_get("card_id")?,
        der: row.try_get("der")?,
        not_after: row.try_get("not_after")?,
        revoked: revocation_of(row)?,
        superseded_at: row.try_get("superseded_at")?,
    })
}

const CARD_COLUMNS: &str =
    "card_id, holder_name, user_id, role, state, suspended_at, revoked_at, revocation_reason";
const CERT_COLUMNS: &str =
    "serial, card_id, der, not_after, revoked_at, revocation_reason, superseded_at";

async fn card_state_on(
    conn: &mut AnyConnection,
    card_id: &CardId,
) -> Result<Option<CardState>, CaError> {
    let row = sqlx::query(&format!(
        "SELECT {CARD_COLUMNS} FROM cards WHERE card_id = $1"
    ))
    .bind(card_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(card_state_from_row).transpose()
}

async fn certificate_on(
    conn: &mut AnyConnection,
    serial_hex: &str,
) -> Result<Option<CertRecord>, CaError> {
    let row = sqlx::query(&format!(
        "SELECT {CERT_COLUMNS} FROM certificates WHERE serial = $1"
    ))
    .bind(serial_hex)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(cert_from_row).transpose()
}

/// Whether no certificate with `serial` was ever recorded (enrolment, renewal, reset).
pub(super) async fn serial_is_free_on(
    conn: &mut AnyConnection,
    serial: &CertSerial,
) -> Result<bool, CaError> {
    Ok(sqlx::query("SELECT 1 FROM certificates WHERE serial = $1")
        .bind(serial.to_hex())
        .fetch_optional(&mut *conn)
        .await?
        .is_none())
}

/// Records a newly issued certificate of `card_id`, issued at `now`.
pub(super) async fn insert_certificate_on(
    conn: &mut AnyConnection,
    card_id: &str,
    cert: &IssuedCert<'_>,
    now: i64,
) -> Result<(), CaError> {
    sqlx::query(
        "INSERT INTO certificates (serial, card_id, der, key_kind, not_before, not_after, issued_at, purpose) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(cert.serial.to_hex())
    .bind(card_id)
    .bind(cert.der)
    .bind(cert.key_kind.to_string())
    .bind(cert.validity.not_before.unix_timestamp())
    .bind(cert.validity.not_after.unix_timestamp())
    .bind(now)
    .bind(cert.purpose.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the CRL must say at `now`: every revoked certificate with its
/// reason, and every unexpired, unrevoked certificate of a suspended card as
/// certificateHold dated from the suspension. Ordered by serial.
async fn crl_entries_on(conn: &mut AnyConnection, now: i64) -> Result<Vec<RevokedCert>, CaError> {
    let rows = sqlx::query(
        "SELECT serial, revoked_at AS at, revocation_reason AS reason FROM certificates \
           WHERE revoked_at IS NOT NULL \
         UNION ALL \
         SELECT c.serial, k.suspended_at AS at, CAST(6 AS BIGINT) AS reason \
           FROM certificates c JOIN cards k ON k.card_id = c.card_id \
           WHERE k.suspended_at IS NOT NULL AND k.state <> 'revoked' \
             AND c.revoked_at IS NULL AND c.not_after > $1 \
         ORDER BY serial",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let serial: String = row.try_get("serial")?;
        let at: i64 = row.try_get("at")?;
        let reason: Option<i64> = row.try_get("reason")?;
        let serial = CertSerial::from_hex(&serial).map_err(|e| {
            CaError::BadDatabase(format!(
                "certificate serial {serial:?} in the database: {e}"
            ))
        })?;
        let revoked_at = OffsetDateTime::from_unix_timestamp(at).map_err(|e| {
            CaError::BadDatabase(format!("revocation time {at} in the database: {e}"))
        })?;
        entries.push(RevokedCert {
            serial,
            revoked_at,
            reason: reason_of(reason),
        });
    }
    Ok(entries)
}

impl Store {
    /// Starts a lifecycle transaction (the write lock is held until commit or drop).
    pub async fn begin_lifecycle(&self) -> Result<LifecycleTx, CaError> {
        Ok(LifecycleTx {
            tx: self.begin_write().await?,
            store: self.clone(),
        })
    }

    /// The card and its state, or `None` for an unknown id.
    pub async fn card_state(&self, card_id: &CardId) -> Result<Option<CardState>, CaError> {
        let mut conn = self.pool.acquire().await?;
        card_state_on(&mut conn, card_id).await
    }

    /// The certificate with serial `serial_hex` (lower-case hex), whatever its card.
    pub async fn certificate(&self, serial_hex: &str) -> Result<Option<CertRecord>, CaError> {
        let mut conn = self.pool.acquire().await?;
        certificate_on(&mut conn, serial_hex).await
    }

    /// What the CRL must say at `now` (see the CRL rules in the README).
    pub async fn crl_entries(&self, now: i64) -> Result<Vec<RevokedCert>, CaError> {
        let mut conn = self.pool.acquire().await?;
        crl_entries_on(&mut conn, now).await
    }

    /// The aggregates the CRL publisher polls to notice changes cheaply.
    pub async fn crl_change_marker(&self) -> Result<CrlChangeMarker, CaError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL) AS revoked_certs, \
               (SELECT CAST(COALESCE(MAX(revoked_at), 0) AS BIGINT) FROM certificates) AS last_revoked_at, \
               (SELECT COUNT(*) FROM cards WHERE suspended_at IS NOT NULL) AS suspended_cards, \
               (SELECT CAST(COALESCE(SUM(suspended_at), 0) AS BIGINT) FROM cards) AS suspended_sum",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(CrlChangeMarker {
            revoked_certs: row.try_get("revoked_certs")?,
            last_revoked_at: row.try_get("last_revoked_at")?,
            suspended_cards: row.try_get("suspended_cards")?,
            suspended_sum: row.try_get("suspended_sum")?,
        })
    }

    /// The CRL with the highest number, if any was published.
    pub async fn newest_crl(&self) -> Result<Option<StoredCrl>, CaError> {
        let row = sqlx::query(
            "SELECT crl_number, der, this_update, next_update FROM crls \
             ORDER BY crl_number DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredCrl {
                number: r.try_get("crl_number")?,
                der: r.try_get("der")?,
                this_update: r.try_get("this_update")?,
                next_update: r.try_get("next_update")?,
            })
        })
        .transpose()
    }
}

/// A write transaction for lifecycle changes; dropping it rolls back.
#[derive(Debug)]
pub struct LifecycleTx {
    tx: Tx,
    store: Store,
}

impl LifecycleTx {
    /// The card and its state, read under the write lock.
    pub async fn card_state(&mut self, card_id: &CardId) -> Result<Option<CardState>, CaError> {
        card_state_on(&mut self.tx, card_id).await
    }

    /// The certificate with serial `serial_hex`, read under the write lock.
    pub async fn certificate(&mut self, serial_hex: &str) -> Result<Option<CertRecord>, CaError> {
        certificate_on(&mut self.tx, serial_hex).await
    }

    /// Every certificate the card ever had.
    pub async fn card_certificates(
        &mut self,
        card_id: &CardId,
    ) -> Result<Vec<CertRecord>, CaError> {
        let rows = sqlx::query(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE card_id = $1 ORDER BY issued_at DESC"
        ))
        .bind(card_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    /// Whether no certificate with `serial` was ever recorded.
    pub async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
        serial_is_free_on(&mut self.tx, serial).await
    }

    /// Records a newly issued certificate of `card_id`.
    pub async fn insert_certificate(
        &mut self,
        card_id: &CardId,
        cert: &IssuedCert<'_>,
        now: i64,
    ) -> Result<(), CaError> {
        insert_certificate_on(&mut self.tx, card_id.as_str(), cert, now).await
    }

    /// Marks every unrevoked, not yet superseded certificate of the card
    /// except `keep` (the ones just issued) superseded (a renewal: not
    /// revoked, not on the CRL). Returns their serials.
    pub async fn supersede_others(
        &mut self,
        card_id: &CardId,
        keep: &[CertSerial],
        now: i64,
    ) -> Result<Vec<String>, CaError> {
        let serials = self
            .serials_where(
                card_id,
                keep,
                "revoked_at IS NULL AND superseded_at IS NULL",
            )
            .await?;
        for serial in &serials {
            sqlx::query("UPDATE certificates SET superseded_at = $1 WHERE serial = $2")
                .bind(now)
                .bind(serial)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(serials)
    }

    /// Revokes every unrevoked certificate of the card except `keep` with
    /// `reason`. Returns their serials.
    pub async fn revoke_others(
        &mut self,
        card_id: &CardId,
        keep: &[CertSerial],
        reason: RevocationReason,
        now: i64,
    ) -> Result<Vec<String>, CaError> {
        let serials = self
            .serials_where(card_id, keep, "revoked_at IS NULL")
            .await?;
        for serial in &serials {
            sqlx::query(
                "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3",
            )
            .bind(now)
            .bind(i64::from(reason.code()))
            .bind(serial)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(serials)
    }

    /// The card's certificates meeting `condition`, except `keep`, by serial.
    async fn serials_where(
        &mut self,
        card_id: &CardId,
        keep: &[CertSerial],
        condition: &'static str,
    ) -> Result<Vec<String>, CaError> {
        let keep: Vec<String> = keep.iter().map(CertSerial::to_hex).collect();
        let rows = sqlx::query(&format!(
            "SELECT serial FROM certificates WHERE card_id = $1 AND {condition} ORDER BY serial"
        ))
        .bind(card_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        let mut serials = Vec::new();
        for row in rows {
            let serial: String = row.try_get("serial")?;
            if !keep.contains(&serial) {
                serials.push(serial);
            }
        }
        Ok(serials)
    }

    /// Revokes the card itself (state 'revoked', not suspended any more),
    /// every unrevoked certificate of it, and its outstanding codes (the
    /// Admin service's revocation). Returns the certificates' serials.
    pub async fn revoke_card(
        &mut self,
        card_id: &CardId,
        reason: RevocationReason,
        now: i64,
    ) -> Result<Vec<String>, CaError> {
        let serials = self
            .serials_where(card_id, &[], "revoked_at IS NULL")
            .await?;
        super::admin::revoke_card(&mut self.tx, card_id, reason, now).await?;
        Ok(serials)
    }

    /// Makes an enrolled card active (a PIN reset of a card still marked issued).
    pub async fn activate_card(&mut self, card_id: &CardId) -> Result<(), CaError> {
        sqlx::query("UPDATE cards SET state = 'active' WHERE card_id = $1 AND state = 'issued'")
            .bind(card_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The card's live reset code (unused and not dead), newest first.
    pub async fn live_reset_code(
        &mut self,
        card_id: &CardId,
    ) -> Result<Option<ResetCodeRecord>, CaError> {
        let row = sqlx::query(
            "SELECT id, code_hash, expires_at, tries_left FROM reset_codes \
             WHERE card_id = $1 AND used_at IS NULL AND dead_at IS NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(card_id.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| {
            Ok(ResetCodeRecord {
                id: r.try_get("id")?,
                code_hash: r.try_get("code_hash")?,
                expires_at: r.try_get("expires_at")?,
                tries_left: r.try_get("tries_left")?,
            })
        })
        .transpose()
    }

    /// Stores the tries left after a wrong code; at 0 the code dies.
    pub async fn set_reset_tries(
        &mut self,
        code_id: i64,
        tries_left: i64,
        now: i64,
    ) -> Result<(), CaError> {
        let dead_at = (tries_left <= 0).then_some(now);
        sqlx::query("UPDATE reset_codes SET tries_left = $1, dead_at = $2 WHERE id = $3")
            .bind(tries_left.max(0))
            .bind(dead_at)
            .bind(code_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Marks a reset code redeemed.
    pub async fn use_reset_code(&mut self, code_id: i64, now: i64) -> Result<(), CaError> {
        let n = sqlx::query(
            "UPDATE reset_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND dead_at IS NULL",
        )
        .bind(now)
        .bind(code_id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n != 1 {
            // Cannot happen under the write lock; refuse rather than reset twice.
            return Err(CaError::BadDatabase(
                "the reset code changed during the reset".into(),
            ));
        }
        Ok(())
    }

    /// What the CRL must say at `now`, read under the write lock.
    pub async fn crl_entries(&mut self, now: i64) -> Result<Vec<RevokedCert>, CaError> {
        crl_entries_on(&mut self.tx, now).await
    }

    /// The next CRL number from the database sequence.
    pub async fn next_crl_number(&mut self) -> Result<i64, CaError> {
        let store = self.store.clone();
        store.next_crl_number(&mut self.tx).await
    }

    /// Stores a signed CRL.
    pub async fn insert_crl(&mut self, crl: &StoredCrl) -> Result<(), CaError> {
        sqlx::query(
            "INSERT INTO crls (crl_number, der, this_update, next_update) VALUES ($1, $2, $3, $4)",
        )
        .bind(crl.number)
        .bind(&crl.der)
        .bind(crl.this_update)
        .bind(crl.next_update)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Appends `events` to the audit chain and commits everything.
    pub async fn commit(mut self, events: &[AuditEvent]) -> Result<(), CaError> {
        let now = OffsetDateTime::now_utc();
        for event in events {
            audit::append(&mut self.tx, event, now).await?;
        }
        self.tx.commit().await?;
        Ok(())
    }

    /// Gives up, changing nothing.
    pub async fn rollback(self) -> Result<(), CaError> {
        Ok(self.tx.rollback().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditAction;
    use crate::enrolment_code::EnrolmentCode;
    use lanyard_certs::{KeyKind, Validity};

    fn event() -> AuditEvent {
        AuditEvent {
            actor: "admin:test".into(),
            action: AuditAction::CardIssued,
            card_id: None,
            peer: None,
            detail: serde_json::json!({}),
        }
    }

    async fn card(store: &Store, id: &str) -> CardId {
        let record = CardRecord {
            card_id: id.into(),
            holder_name: "Dr Ada Smith".into(),
            user_id: "555123456789".into(),
            role: "R8000 Clinical Practitioner".into(),
        };
        let code = EnrolmentCode::generate().unwrap();
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert!(store
            .insert_card(&record, &code.hash(), expires, &event())
            .await
            .unwrap());
        sqlx::query("UPDATE cards SET state = 'active' WHERE card_id = $1")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        CardId::parse(id).unwrap()
    }

    /// Records a certificate with serial bytes `n`, valid until `now + secs`.
    async fn cert(store: &Store, card: &CardId, n: u8, secs: i64) -> CertSerial {
        let now = OffsetDateTime::now_utc();
        let serial = CertSerial::from_random([n; 16]);
        let mut tx = store.begin_lifecycle().await.unwrap();
        assert!(tx.serial_is_free(&serial).await.unwrap());
        let issued = IssuedCert {
            serial,
            der: b"not parsed here",
            key_kind: KeyKind::EcP256,
            purpose: crate::store::CertPurpose::Authentication,
            validity: Validity {
                not_before: now - time::Duration::minutes(5),
                not_after: now + time::Duration::seconds(secs),
            },
        };
        tx.insert_certificate(card, &issued, now.unix_timestamp())
            .await
            .unwrap();
        assert!(!tx.serial_is_free(&serial).await.unwrap());
        tx.commit(&[]).await.unwrap();
        serial
    }

    fn listed(entries: &[RevokedCert]) -> Vec<(CertSerial, i64, RevocationReason)> {
        entries
            .iter()
            .map(|e| (e.serial, e.revoked_at.unix_timestamp(), e.reason))
            .collect()
    }

    #[tokio::test]
    async fn crl_content_follows_revocation_suspension_and_resume() {
        let (_guard, store) = crate::store::test_store().await;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let a = card(&store, "0A0A0A0A0A0A").await;
        let b = card(&store, "0B0B0B0B0B0B").await;
        let a1 = cert(&store, &a, 0x11, 3600).await;
        let _a_expired = cert(&store, &a, 0x12, -10).await;
        let b1 = cert(&store, &b, 0x21, 3600).await;
        assert!(store.crl_entries(now).await.unwrap().is_empty());
        let quiet = store.crl_change_marker().await.unwrap();

        sqlx::query("UPDATE cards SET suspended_at = 100 WHERE card_id = $1")
            .bind(a.as_str())
            .execute(store.pool())
            .await
            .unwrap();
        // Only the unexpired certificate of the suspended card, on hold since the suspension.
        assert_eq!(
            listed(&store.crl_entries(now).await.unwrap()),
            vec![(a1, 100, RevocationReason::CertificateHold)]
        );
        let suspended = store.crl_change_marker().await.unwrap();
        assert_ne!(suspended, quiet);
        assert_eq!(
            store.card_state(&a).await.unwrap().unwrap().lifecycle,
            CardLifecycle::Suspended { since: 100 }
        );

        sqlx::query("UPDATE cards SET suspended_at = NULL WHERE card_id = $1")
            .bind(a.as_str())
            .execute(store.pool())
            .await
            .unwrap();
        assert!(store.crl_entries(now).await.unwrap().is_empty());
        assert_eq!(store.crl_change_marker().await.unwrap(), quiet);

        let mut tx = store.begin_lifecycle().await.unwrap();
        let revoked = tx
            .revoke_card(&b, RevocationReason::KeyCompromise, 200)
            .await
            .unwrap();
        tx.commit(&[]).await.unwrap();
        assert_eq!(revoked, vec![b1.to_hex()]);
        assert_eq!(
            listed(&store.crl_entries(now).await.unwrap()),
            vec![(b1, 200, RevocationReason::KeyCompromise)]
        );
        assert_ne!(store.crl_change_marker().await.unwrap(), quiet);
        assert_eq!(
            store.card_state(&b).await.unwrap().unwrap().lifecycle,
            CardLifecycle::Revoked {
                at: 200,
                reason: RevocationReason::KeyCompromise
            }
        );
        let record = store.certificate(&b1.to_hex()).await.unwrap().unwrap();
        assert_eq!(record.revoked, Some((200, RevocationReason::KeyCompromise)));
        assert!(store
            .card_state(&CardId::parse("0C0C0C0C0C0C").unwrap())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn renewal_supersedes_and_reset_revokes_the_others() {
        let (_guard, store) = crate::store::test_store().await;
        let c = card(&store, "0C0C0C0C0C0C").await;
        let old = cert(&store, &c, 0x31, 3600).await;
        let new = cert(&store, &c, 0x32, 3600).await;

        let mut tx = store.begin_lifecycle().await.unwrap();
        assert_eq!(
            tx.supersede_others(&c, &[new], 300).await.unwrap(),
            vec![old.to_hex()]
        );
        // Already superseded: nothing more to do.
        assert!(tx
            .supersede_others(&c, &[new], 301)
            .await
            .unwrap()
            .is_empty());
        tx.commit(&[]).await.unwrap();
        let record = store.certificate(&old.to_hex()).await.unwrap().unwrap();
        assert_eq!(record.superseded_at, Some(300));
        assert_eq!(record.revoked, None);
        // Superseded is not on the CRL.
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!(store.crl_entries(now).await.unwrap().is_empty());

        let mut tx = store.begin_lifecycle().await.unwrap();
        assert_eq!(tx.card_certificates(&c).await.unwrap().len(), 2);
        assert_eq!(
            tx.revoke_others(&c, &[new], RevocationReason::Superseded, 400)
                .await
                .unwrap(),
            vec![old.to_hex()]
        );
        tx.commit(&[]).await.unwrap();
        assert_eq!(
            listed(&store.crl_entries(now).await.unwrap()),
            vec![(old, 400, RevocationReason::Superseded)]
        );
        let kept = store.certificate(&new.to_hex()).await.unwrap().unwrap();
        assert_eq!(kept.revoked, None);
    }

    #[tokio::test]
    async fn reset_codes_count_down_die_and_are_used_once() {
        let (_guard, store) = crate::store::test_store().await;
        let c = card(&store, "0D0D0D0D0D0D").await;
        let insert = |hash: &'static str| {
            sqlx::query(
                "INSERT INTO reset_codes (card_id, code_hash, created_at, created_by, expires_at, tries_left) \
                 VALUES ($1, $2, 1, 'operator:test', 9999999999, 3)",
            )
            .bind(c.as_str())
            .bind(hash)
            .execute(store.pool())
        };
        insert("aa").await.unwrap();
        let mut tx = store.begin_lifecycle().await.unwrap();
        let live = tx.live_reset_code(&c).await.unwrap().unwrap();
        assert_eq!((live.code_hash.as_str(), live.tries_left), ("aa", 3));
        tx.set_reset_tries(live.id, 1, 500).await.unwrap();
        assert_eq!(tx.live_reset_code(&c).await.unwrap().unwrap().tries_left, 1);
        tx.set_reset_tries(live.id, 0, 501).await.unwrap();
        assert!(tx.live_reset_code(&c).await.unwrap().is_none());
        tx.commit(&[]).await.unwrap();

        insert("bb").await.unwrap();
        let mut tx = store.begin_lifecycle().await.unwrap();
        let live = tx.live_reset_code(&c).await.unwrap().unwrap();
        assert_eq!(live.code_hash, "bb");
        tx.use_reset_code(live.id, 600).await.unwrap();
        assert!(tx.use_reset_code(live.id, 601).await.is_err());
        assert!(tx.live_reset_code(&c).await.unwrap().is_none());
        // Dropping the transaction rolls everything back: the code is live again.
        drop(tx);
        let mut tx = store.begin_lifecycle().await.unwrap();
        assert!(tx.live_reset_code(&c).await.unwrap().is_some());
        tx.rollback().await.unwrap();
    }
}
