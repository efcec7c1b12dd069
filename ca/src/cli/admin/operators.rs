//! The operator commands: add-operator (the first one on the CA host with
//! --dir, later ones over the network), approvals and approve (dual control).

use std::path::Path;

use lanyard_proto::ca as pb;

use super::host::{operator_pem, write_operator_pem};
use super::operator_key::OperatorKey;
use super::output::{self, OperatorOut};
use super::{AddOperatorArgs, ApproveArgs, PlainArgs};
use crate::admin::{audit_refusal, operators, Caller, Outcome};
use crate::error::CaError;
use crate::issuer::IssuingCa;
use crate::service::admin::issued_operator;

/// Reads a PKCS#10 request, PEM or DER.
fn read_csr(path: &Path) -> Result<Vec<u8>, CaError> {
    let bytes = std::fs::read(path).map_err(|e| CaError::io("read", path, e))?;
    if bytes.starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| CaError::BadPem {
            path: path.into(),
            reason: format!("unreadable PEM ({e})"),
        })?;
        if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
            return Err(CaError::BadPem {
                path: path.into(),
                reason: format!("expected a CERTIFICATE REQUEST, found {}", pem.label),
            });
        }
        return Ok(pem.contents);
    }
    Ok(bytes)
}

/// The new operator's CSR, from whichever key option was given. On the CA
/// host `--key` names the new operator's key (there is no caller to authenticate).
fn new_operator_csr(args: &AddOperatorArgs, on_host: bool) -> Result<Vec<u8>, CaError> {
    let name = args.name.trim();
    if let Some(path) = &args.new_key {
        return OperatorKey::generate_file(path)?.csr_der(name);
    }
    if let Some(spec) = &args.operator_key {
        return OperatorKey::load(spec)?.csr_der(name);
    }
    if let Some(path) = &args.csr {
        return read_csr(path);
    }
    if on_host {
        if let Some(spec) = &args.common.conn.key {
            return OperatorKey::load(spec)?.csr_der(name);
        }
    }
    Err(CaError::InvalidArgument(format!(
        "the new operator's key is needed: --new-key FILE (generate one), {} or --csr FILE",
        if on_host {
            "--key FILE|pkcs11:URI"
        } else {
            "--operator-key FILE|pkcs11:URI"
        }
    )))
}

/// `add-operator`.
pub async fn add(args: AddOperatorArgs) -> Result<(), CaError> {
    let json = args.common.json;
    let name = args.name.trim().to_string();
    if let Some(host) = args.host.open(&args.common.conn).await? {
        let caller = Caller::host();
        let result = async {
            let issuer = IssuingCa::open(&host.dir, &host.config)?;
            let new = operators::NewOperator {
                name: name.clone(),
                csr_der: new_operator_csr(&args, true)?,
            };
            operators::add(&host.store, &host.config, &issuer, &caller, &new).await
        }
        .await;
        if let Err(e) = &result {
            audit_refusal(&host.store, &caller, "add-operator", None, e).await;
        }
        host.close().await;
        return match result? {
            Outcome::Done(op) => {
                write_operator_pem(&args.out, &op.certificate_der, &op.chain_der)?;
                let response = issued_operator(&op);
                output::operator(
                    json,
                    &name,
                    &response,
                    OperatorOut::File(&args.out),
                    Some(op.not_after.unix_timestamp()),
                )
            }
            Outcome::Pending(p) => output::pending(json, &crate::service::admin::pending(&p)),
        };
    }
    let csr_der = new_operator_csr(&args, false)?;
    let conn = &args.common.conn;
    let mut admin = conn.connect().await?;
    let response = admin
        .client
        .add_operator(pb::AddOperatorRequest {
            name: name.clone(),
            csr_der,
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    if let Some(p) = &response.pending_approval {
        return output::pending(json, p);
    }
    write_operator_pem(&args.out, &response.certificate_der, &response.chain_der)?;
    output::operator(
        json,
        &name,
        &response,
        OperatorOut::File(&args.out),
        not_after(&response.certificate_der),
    )
}

fn not_after(der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

/// `approvals`.
pub async fn approvals(args: PlainArgs) -> Result<(), CaError> {
    let mut admin = args.conn.connect().await?;
    let response = admin
        .client
        .list_approvals(pb::ListApprovalsRequest {})
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    output::approvals(args.json, &response.pending)
}

/// `approve`.
pub async fn approve(args: ApproveArgs) -> Result<(), CaError> {
    let conn = &args.common.conn;
    let json = args.common.json;
    let mut admin = conn.connect().await?;
    // The answer carries only the result; the listing says what it was about.
    let wanted = args.approval_id.trim().to_ascii_lowercase();
    let subject = admin
        .client
        .list_approvals(pb::ListApprovalsRequest {})
        .await
        .map_err(|s| admin.error(s))?
        .into_inner()
        .pending
        .into_iter()
        .find(|p| p.approval_id == wanted)
        .map(|p| p.subject);
    let response = admin
        .client
        .approve(pb::ApproveRequest {
            approval_id: args.approval_id.clone(),
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    match response.result {
        Some(pb::approve_response::Result::ResetPin(r)) => {
            output::reset_code(json, subject.as_deref().unwrap_or("?"), &r)
        }
        Some(pb::approve_response::Result::AddOperator(op)) => {
            let name = operator_name(&op.certificate_der)
                .or(subject)
                .unwrap_or_default();
            let when = not_after(&op.certificate_der);
            match &args.out {
                Some(out) => {
                    write_operator_pem(out, &op.certificate_der, &op.chain_der)?;
                    output::operator(json, &name, &op, OperatorOut::File(out), when)
                }
                // Never lose a certificate that was issued: print it.
                None => {
                    let pem = operator_pem(&op.certificate_der, &op.chain_der);
                    output::operator(json, &name, &op, OperatorOut::Printed(&pem), when)
                }
            }
        }
        None => Err(CaError::Remote {
            code: tonic::Code::Internal,
            message: "the CA approved but returned no result".into(),
        }),
    }
}

fn operator_name(der: &[u8]) -> Option<String> {
    lanyard_certs::operator_identity(der).map(|id| id.name)
}
