//! IT-desk operators: who may call the Admin service (a client certificate
//! with the id-kp-cmcRA role that this CA issued, registered in `operators`,
//! unrevoked and unexpired), and adding one (an operator certificate for the
//! key of a CSR, valid for operator_cert_lifetime_days).

use lanyard_certs::{check_csr, operator_identity, CertSerial, Validity};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::approvals::{self, DualAction};
use super::{now_unix, Caller, OperatorId, Outcome};
use crate::audit::{AuditAction, AuditEvent};
use crate::certify::{unused_serial, SerialRegistry};
use crate::config::CaConfig;
use crate::error::CaError;
use crate::issuer::IssuingCa;
use crate::peer::Peer;
use crate::store::admin::{self as q, OperatorRecord};
use crate::store::Store;

/// Serials of card and operator certificates alike, checked in the caller's
/// write transaction: an operator's serial must be unused by either.
struct AnyCertificate<'a>(&'a mut sqlx::AnyConnection);

impl SerialRegistry for AnyCertificate<'_> {
    async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
        q::serial_is_free(self.0, &serial.to_hex()).await
    }
}

/// An operator to add: their name and the CSR of their key.
#[derive(Debug, Clone)]
pub struct NewOperator {
    /// The operator's name (the certificate's CN).
    pub name: String,
    /// PKCS#10 request for their key, DER.
    pub csr_der: Vec<u8>,
}

/// An operator certificate just issued and registered.
#[derive(Debug, Clone)]
pub struct IssuedOperator {
    /// The operator's name.
    pub name: String,
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Issuing CA then root, DER.
    pub chain_der: Vec<Vec<u8>>,
    /// Its serial, lower-case hex.
    pub serial: String,
    /// Its validity end.
    pub not_after: OffsetDateTime,
}

/// Checks the caller's client certificate and names the operator; any
/// refusal is audited (actor `peer:IP`) and answered with
/// [`CaError::NotOperator`].
pub async fn authenticate(store: &Store, peer: &Peer) -> Result<Caller, CaError> {
    match check_operator(store, peer).await? {
        Ok(id) => Ok(Caller::operator(id, peer.ip)),
        Err(reason) => {
            let presented = peer.leaf().map(describe_certificate);
            tracing::warn!(peer = %peer.ip, reason = %reason, "admin call refused: not an operator");
            let event = AuditEvent {
                actor: format!("peer:{}", peer.ip),
                action: AuditAction::AdminAuthFailed,
                card_id: presented.as_ref().and_then(|p| p.card_id.clone()),
                peer: Some(peer.ip.to_string()),
                detail: json!({
                    "reason": reason,
                    "subject": presented.as_ref().map(|p| p.subject.clone()),
                    "serial": presented.as_ref().map(|p| p.serial.clone()),
                }),
            };
            if let Err(e) = store.record_audit(&event).await {
                tracing::error!(error = %e, "could not write audit record");
            }
            Err(CaError::NotOperator { reason })
        }
    }
}

/// `Ok(Ok(operator))`, `Ok(Err(why not))`, or a database failure.
async fn check_operator(store: &Store, peer: &Peer) -> Result<Result<OperatorId, String>, CaError> {
    let Some(leaf) = peer.leaf() else {
        return Ok(Err(
            "no client certificate was presented; give --cert and --key (an operator certificate from `add-operator`)".into(),
        ));
    };
    let Some(id) = operator_identity(leaf) else {
        return Ok(Err(
            "it does not carry the registration-authority role (id-kp-cmcRA); card certificates cannot administer the CA".into(),
        ));
    };
    let Some(record) = store.operator(&id.serial_hex).await? else {
        return Ok(Err(format!(
            "certificate {} is not registered as an operator of this CA",
            id.serial_hex
        )));
    };
    if record.der != leaf {
        return Ok(Err(format!(
            "certificate {} differs from the operator certificate registered with that serial",
            id.serial_hex
        )));
    }
    if record.revoked_at.is_some() {
        return Ok(Err(format!(
            "operator certificate {} has been revoked",
            id.serial_hex
        )));
    }
    if record.not_after <= now_unix() {
        return Ok(Err(format!(
            "operator certificate {} has expired; another operator can add you again",
            id.serial_hex
        )));
    }
    Ok(Ok(OperatorId {
        name: record.name,
        serial: record.serial,
    }))
}

/// What an audit record may say about a refused client certificate.
struct Presented {
    subject: String,
    serial: String,
    card_id: Option<String>,
}

fn describe_certificate(der: &[u8]) -> Presented {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let card_id = lanyard_certs::card_identity(der)
        .ok()
        .map(|c| c.card_id().to_string());
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => Presented {
            subject: cert.subject().to_string(),
            serial: hex::encode(cert.raw_serial()),
            card_id,
        },
        Err(_) => Presented {
            subject: "(unparsable)".into(),
            serial: String::new(),
            card_id,
        },
    }
}

/// Checks the name and CSR of a new operator without issuing anything.
fn check_request(config: &CaConfig, new: &NewOperator) -> Result<(), CaError> {
    check_csr(&new.csr_der).map_err(CaError::BadCsr)?;
    let now = OffsetDateTime::now_utc();
    let validity = Validity::card(now, Duration::days(1))?;
    lanyard_certs::operator_profile::operator_certificate_params(
        &new.name,
        &config.organisation,
        &CertSerial::from_random([1; 16]),
        validity,
        None,
    )
    .map_err(|e| CaError::InvalidArgument(e.to_string()))?;
    Ok(())
}

/// Adds an operator: issues and registers their certificate, or asks for a
/// second operator's approval when `add-operator` is under dual control
/// (never for the CA host's bootstrap, which has the issuing key anyway).
pub async fn add(
    store: &Store,
    config: &CaConfig,
    issuer: &IssuingCa,
    caller: &Caller,
    new: &NewOperator,
) -> Result<Outcome<IssuedOperator>, CaError> {
    let new = NewOperator {
        name: new.name.trim().to_string(),
        csr_der: new.csr_der.clone(),
    };
    check_request(config, &new)?;
    if let Some(op) = approvals::requester(config, caller, DualAction::AddOperator) {
        let pending = approvals::request(
            store,
            caller,
            op,
            DualAction::AddOperator,
            &new.name,
            json!({ "name": new.name, "csr_der_hex": hex::encode(&new.csr_der) }),
        )
        .await?;
        return Ok(Outcome::Pending(pending));
    }
    let mut tx = store.begin_write().await?;
    let issued = add_in(&mut tx, config, issuer, caller, &new, None).await?;
    tx.commit().await?;
    Ok(Outcome::Done(issued))
}

/// Issues and registers the operator certificate inside the caller's write
/// transaction, with its audit record.
pub(crate) async fn add_in(
    conn: &mut sqlx::AnyConnection,
    config: &CaConfig,
    issuer: &IssuingCa,
    caller: &Caller,
    new: &NewOperator,
    approval_id: Option<&str>,
) -> Result<IssuedOperator, CaError> {
    let csr = check_csr(&new.csr_der).map_err(CaError::BadCsr)?;
    let serial = unused_serial(&mut AnyCertificate(&mut *conn)).await?;
    let now = OffsetDateTime::now_utc();
    let lifetime = Duration::days(i64::from(config.operator_cert_lifetime_days));
    let validity = Validity::card(now, lifetime)?;
    let (der, validity) =
        issuer.issue_operator(&csr, &new.name, &config.organisation, &serial, validity)?;
    let actor = caller.audit_actor();
    q::insert_operator(
        conn,
        &OperatorRecord {
            serial: serial.to_hex(),
            name: new.name.clone(),
            der: der.clone(),
            not_after: validity.not_after.unix_timestamp(),
            added_at: now.unix_timestamp(),
            added_by: actor.clone(),
            revoked_at: None,
        },
    )
    .await?;
    let event = caller.event(
        AuditAction::OperatorAdded,
        None,
        json!({
            "name": new.name,
            "serial": serial.to_hex(),
            "key": csr.key_kind().to_string(),
            "not_after": validity.not_after.unix_timestamp(),
            "approval_id": approval_id,
        }),
    );
    crate::audit::append(conn, &event, now).await?;
    tracing::info!(operator = %new.name, serial = %serial, actor = %actor, "operator certificate issued");
    Ok(IssuedOperator {
        name: new.name.clone(),
        certificate_der: der,
        chain_der: issuer.chain_der(),
        serial: serial.to_hex(),
        not_after: validity.not_after,
    })
}
