//! `admin audit`: reads the audit log over the network; with --verify the CA
//! also checks the hash chain, and a broken chain is an error (exit status 6)
//! that names the first record that does not chain.

use lanyard_proto::ca as pb;

use super::output;
use super::AuditArgs;
use crate::error::CaError;

/// `audit`.
pub async fn run(args: AuditArgs) -> Result<(), CaError> {
    let conn = &args.common.conn;
    let mut admin = conn.connect().await?;
    let response = admin
        .client
        .audit(pb::AuditRequest {
            card_id: args.card.clone().unwrap_or_default(),
            after_seq: args.after_seq,
            limit: args.limit,
            verify: args.verify,
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    output::audit(args.common.json, &response)?;
    match response.verification {
        Some(v) if !v.intact => Err(CaError::AuditBroken {
            first_broken_seq: v.first_broken_seq,
            records: v.records,
        }),
        Some(_) => Ok(()),
        None if args.verify => Err(CaError::Remote {
            code: tonic::Code::Internal,
            message: "the CA did not say whether the audit chain is intact".into(),
        }),
        None => Ok(()),
    }
}
