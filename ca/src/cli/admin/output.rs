//! What the admin commands print: readable lines, or with `--json` one JSON
//! document per command (the contract scripts rely on, see ca/README.md).
//! Both the gRPC answers and the CA-host commands go through here.

use lanyard_certs::RevocationReason;
use lanyard_proto::ca as pb;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cli::print_line;
use crate::error::CaError;

/// RFC 3339 of Unix seconds (the number itself if out of range).
pub fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// RFC 3339, or null for 0 ("never").
fn time_or_null(secs: i64) -> Value {
    if secs == 0 {
        Value::Null
    } else {
        Value::String(rfc3339(secs))
    }
}

/// The lower-case state name.
pub fn state_name(state: i32) -> &'static str {
    match pb::CardState::try_from(state) {
        Ok(pb::CardState::Issued) => "issued",
        Ok(pb::CardState::Active) => "active",
        Ok(pb::CardState::Suspended) => "suspended",
        Ok(pb::CardState::Revoked) => "revoked",
        _ => "unknown",
    }
}

fn reason_name(code: i32) -> &'static str {
    u32::try_from(code)
        .ok()
        .and_then(|c| RevocationReason::from_code(c).ok())
        .map(RevocationReason::name)
        .unwrap_or("unknown")
}

/// A newly issued or re-issued card with its enrolment code.
pub struct IssuedView<'a> {
    /// What the CA answered.
    pub response: &'a pb::IssueCardResponse,
    /// Holder name, user id and role, when known.
    pub holder: Option<(&'a str, &'a str, &'a str)>,
    /// The organisation, when known (CA-host mode).
    pub organisation: Option<&'a str>,
    /// "issued" or "re-issued".
    pub verb: &'a str,
}

/// Prints a card's enrolment code.
pub fn issued(json: bool, v: &IssuedView<'_>) -> Result<(), CaError> {
    let r = v.response;
    let expires = rfc3339(r.code_expires_at);
    if json {
        let mut out = json!({
            "code": r.code,
            "card_id": r.card_id,
            "expires_at": expires,
        });
        if let Some((name, user_id, role)) = v.holder {
            out["name"] = json!(name);
            out["user_id"] = json!(user_id);
            out["role"] = json!(role);
        }
        if let Some(org) = v.organisation {
            out["organisation"] = json!(org);
        }
        return print_line(out);
    }
    match v.holder {
        Some((name, user_id, role)) => print_line(format_args!(
            "Card {} {} to {name} (user id {user_id}, role {role})",
            r.card_id, v.verb
        ))?,
        None => print_line(format_args!("Card {} {}", r.card_id, v.verb))?,
    }
    print_line(format_args!("  enrolment code: {}", r.code))?;
    print_line(format_args!("  expires:        {expires}"))?;
    print_line("The code works once. Give it to the card holder by a trusted channel.")
}

fn card_json(c: &pb::CardSummary) -> Value {
    json!({
        "card_id": c.card_id,
        "name": c.holder_name,
        "user_id": c.user_id,
        "role": c.role,
        "state": state_name(c.state),
        "created_at": time_or_null(c.created_at),
        "cert_not_after": time_or_null(c.cert_not_after),
    })
}

/// Prints a card listing.
pub fn cards(json: bool, list: &[pb::CardSummary]) -> Result<(), CaError> {
    if json {
        return print_line(Value::Array(list.iter().map(card_json).collect()));
    }
    if list.is_empty() {
        return print_line("No cards match.");
    }
    print_line(format_args!(
        "{:<12}  {:<9}  {:<14}  {:<28}  ROLE",
        "CARD", "STATE", "USER ID", "NAME"
    ))?;
    for c in list {
        print_line(format_args!(
            "{:<12}  {:<9}  {:<14}  {:<28}  {}",
            c.card_id,
            state_name(c.state),
            c.user_id,
            c.holder_name,
            c.role
        ))?;
    }
    Ok(())
}

/// Prints one card with its certificates.
pub fn card_detail(json: bool, d: &pb::CardDetail) -> Result<(), CaError> {
    let summary = d.card.clone().unwrap_or_default();
    let revoked = summary.state == i32::from(pb::CardState::Revoked);
    if json {
        let mut out = card_json(&summary);
        out["revocation_reason"] = if revoked {
            json!(reason_name(d.revocation_reason))
        } else {
            Value::Null
        };
        out["reset_pending"] = json!(d.reset_pending);
        out["reset_tries_left"] = json!(d.reset_tries_left);
        out["certificates"] = Value::Array(
            d.certificates
                .iter()
                .map(|c| {
                    json!({
                        "serial": c.serial,
                        "key_kind": c.key_kind,
                        "purpose": c.purpose,
                        "not_before": rfc3339(c.not_before),
                        "not_after": rfc3339(c.not_after),
                        "issued_at": rfc3339(c.issued_at),
                        "revoked_at": time_or_null(c.revoked_at),
                        "reason": if c.revoked_at == 0 { Value::Null } else { json!(reason_name(c.reason)) },
                    })
                })
                .collect(),
        );
        return print_line(out);
    }
    print_line(format_args!("Card {}", summary.card_id))?;
    print_line(format_args!("  holder:  {}", summary.holder_name))?;
    print_line(format_args!("  user id: {}", summary.user_id))?;
    print_line(format_args!("  role:    {}", summary.role))?;
    let state = if revoked {
        format!("revoked ({})", reason_name(d.revocation_reason))
    } else {
        state_name(summary.state).to_string()
    };
    print_line(format_args!("  state:   {state}"))?;
    print_line(format_args!("  issued:  {}", rfc3339(summary.created_at)))?;
    if d.reset_pending {
        print_line(format_args!(
            "  a PIN reset code is outstanding ({} tries left)",
            d.reset_tries_left
        ))?;
    }
    if d.certificates.is_empty() {
        return print_line("  no certificates (not enrolled yet)");
    }
    print_line("  certificates (newest first):")?;
    for c in &d.certificates {
        let status = if c.revoked_at == 0 {
            String::new()
        } else {
            format!(
                ", revoked {} ({})",
                rfc3339(c.revoked_at),
                reason_name(c.reason)
            )
        };
        print_line(format_args!(
            "    {}  {}  valid until {}{status}",
            c.serial,
            c.key_kind,
            rfc3339(c.not_after)
        ))?;
    }
    Ok(())
}

fn pending_json(p: &pb::PendingApproval) -> Value {
    json!({
        "approval_id": p.approval_id,
        "action": p.action,
        "subject": p.subject,
        "requested_by": p.requested_by,
        "requested_at": rfc3339(p.requested_at),
    })
}

/// Prints that an action waits for a second operator.
pub fn pending(json: bool, p: &pb::PendingApproval) -> Result<(), CaError> {
    if json {
        return print_line(json!({ "pending_approval": pending_json(p) }));
    }
    print_line(format_args!(
        "{} for {} needs a second operator's approval (approval {}).",
        p.action, p.subject, p.approval_id
    ))?;
    print_line(format_args!(
        "Another operator runs: lanyard-ca admin approve {}",
        p.approval_id
    ))
}

/// Prints the pending approvals.
pub fn approvals(json: bool, list: &[pb::PendingApproval]) -> Result<(), CaError> {
    if json {
        return print_line(Value::Array(list.iter().map(pending_json).collect()));
    }
    if list.is_empty() {
        return print_line("No approvals pending.");
    }
    print_line(format_args!(
        "{:<16}  {:<12}  {:<20}  {:<20}  REQUESTED BY",
        "APPROVAL", "ACTION", "SUBJECT", "REQUESTED AT"
    ))?;
    for p in list {
        print_line(format_args!(
            "{:<16}  {:<12}  {:<20}  {:<20}  {}",
            p.approval_id,
            p.action,
            p.subject,
            rfc3339(p.requested_at),
            p.requested_by
        ))?;
    }
    Ok(())
}

/// Prints a released reset code.
pub fn reset_code(json: bool, card_id: &str, r: &pb::AdminResetPinResponse) -> Result<(), CaError> {
    let expires = rfc3339(r.code_expires_at);
    if json {
        return print_line(json!({
            "card_id": card_id,
            "code": r.code,
            "expires_at": expires,
            "tries": r.tries,
        }));
    }
    print_line(format_args!(
        "PIN reset code for card {card_id}: {}",
        r.code
    ))?;
    print_line(format_args!(
        "  expires: {expires}; wrong codes allowed: {}",
        r.tries
    ))?;
    print_line(
        "Give it to the card holder by a trusted channel; they run `lanyard reset-pin --code CODE`.",
    )
}

/// Where a new operator certificate went.
pub enum OperatorOut<'a> {
    /// Written to this file.
    File(&'a std::path::Path),
    /// Not written anywhere: this PEM is printed.
    Printed(&'a str),
}

/// Prints a new operator certificate.
pub fn operator(
    json: bool,
    name: &str,
    r: &pb::AddOperatorResponse,
    out: OperatorOut<'_>,
    not_after: Option<i64>,
) -> Result<(), CaError> {
    if json {
        let mut doc = json!({
            "name": name,
            "serial": r.serial,
            "not_after": not_after.map(rfc3339),
        });
        match out {
            OperatorOut::File(path) => doc["certificate"] = json!(path.display().to_string()),
            OperatorOut::Printed(pem) => doc["certificate_pem"] = json!(pem),
        }
        return print_line(doc);
    }
    match out {
        OperatorOut::File(path) => print_line(format_args!(
            "Operator certificate {} for {name} written to {}",
            r.serial,
            path.display()
        ))?,
        OperatorOut::Printed(pem) => {
            print_line(format_args!(
                "Operator certificate {} for {name} (save it as the operator's --cert file):",
                r.serial
            ))?;
            print_line(pem.trim_end())?;
        }
    }
    if let Some(t) = not_after {
        print_line(format_args!("  valid until {}", rfc3339(t)))?;
    }
    print_line("Use it with --cert (and the operator's key with --key).")
}

/// Prints audit records and the chain check.
pub fn audit(json: bool, r: &pb::AuditResponse) -> Result<(), CaError> {
    if json {
        let records: Vec<Value> = r
            .records
            .iter()
            .map(|a| {
                json!({
                    "seq": a.seq,
                    "at": a.at,
                    "actor": a.actor,
                    "action": a.action,
                    "card_id": Some(&a.card_id).filter(|c| !c.is_empty()),
                    "peer": Some(&a.peer).filter(|p| !p.is_empty()),
                    "detail": serde_json::from_str::<Value>(&a.detail).unwrap_or(Value::String(a.detail.clone())),
                    "hash": a.hash,
                })
            })
            .collect();
        let mut out = json!({ "records": records });
        if let Some(v) = &r.verification {
            out["verification"] = json!({
                "intact": v.intact,
                "records": v.records,
                "first_broken_seq": if v.intact { Value::Null } else { json!(v.first_broken_seq) },
            });
        }
        return print_line(out);
    }
    for a in &r.records {
        let card = if a.card_id.is_empty() {
            "-"
        } else {
            &a.card_id
        };
        let peer = if a.peer.is_empty() { "-" } else { &a.peer };
        print_line(format_args!(
            "{:>6}  {}  {:<22}  {:<12}  {:<15}  {}  {}",
            a.seq, a.at, a.action, card, peer, a.actor, a.detail
        ))?;
    }
    if let Some(v) = &r.verification {
        if v.intact {
            print_line(format_args!(
                "audit chain intact: {} records verified",
                v.records
            ))?;
        }
    }
    Ok(())
}
