//! `lanyard status`: the daemon, its store and every card (subject, expiry,
//! PIN state), as text or as JSON for scripts.

use std::path::Path;

use lanyard_proto::agent::{request, response, CardInfo, Status, StatusReply};
use serde::Serialize;

use super::client::AgentClient;
use std::fmt::Write as _;

use super::{key_type_name, print_out, rfc3339, CliError};

/// One card in `status --json`.
#[derive(Debug, Serialize)]
pub struct CardJson {
    card_id: String,
    slot: u32,
    holder_name: String,
    subject: String,
    key_type: &'static str,
    not_after: String,
    locked: bool,
    pin_failures: u32,
    max_pin_failures: u32,
}

/// `status --json` as a whole.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    daemon_version: String,
    socket: String,
    store: String,
    cards: Vec<CardJson>,
    /// Card files the daemon could not load (kept on disk as they are).
    problems: Vec<String>,
}

/// A card as JSON (shared with `enroll --json`).
pub fn card_json(c: &CardInfo) -> CardJson {
    let pin = c.pin.unwrap_or_default();
    CardJson {
        card_id: c.card_id.clone(),
        slot: c.slot,
        holder_name: c.holder_name.clone(),
        subject: c.subject.clone(),
        key_type: key_type_name(c.key_type),
        not_after: rfc3339(c.not_after),
        locked: pin.locked,
        pin_failures: pin.failures,
        max_pin_failures: pin.max_failures,
    }
}

/// Fetches the daemon's status.
pub fn fetch(client: &mut AgentClient) -> Result<StatusReply, CliError> {
    match client.call(request::Body::Status(Status {}))? {
        response::Body::Status(s) => Ok(s),
        _ => Err(CliError::Other(
            "lanyardd answered Status with something else".into(),
        )),
    }
}

/// Runs `lanyard status`.
pub fn run(socket: &Path, json: bool) -> Result<(), CliError> {
    let mut client = AgentClient::connect(socket)?;
    let status = fetch(&mut client)?;
    if json {
        let out = StatusJson {
            daemon_version: status.daemon_version,
            socket: status.socket_path,
            store: status.store_path,
            cards: status.cards.iter().map(card_json).collect(),
            problems: status.problems,
        };
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    let mut out = String::new();
    let _ = writeln!(out, "lanyardd {} is running", status.daemon_version);
    let _ = writeln!(out, "  socket: {}", status.socket_path);
    let _ = writeln!(out, "  store:  {}", status.store_path);
    for p in &status.problems {
        let _ = writeln!(out, "  PROBLEM: {p}");
    }
    if status.cards.is_empty() {
        let _ = writeln!(out, "No card enrolled. Enrol one with `lanyard enroll --ca URL --ca-cert FILE --code CODE`.");
    }
    for c in &status.cards {
        let pin = c.pin.unwrap_or_default();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Slot {}: card {} ({})",
            c.slot,
            c.card_id,
            key_type_name(c.key_type)
        );
        let _ = writeln!(out, "  holder:  {}", c.holder_name);
        let _ = writeln!(out, "  subject: {}", c.subject);
        let _ = writeln!(out, "  expires: {}", rfc3339(c.not_after));
        if pin.locked {
            let _ = writeln!(
                out,
                "  PIN:     LOCKED after {} wrong PINs; ask your IT desk for a reset",
                pin.failures
            );
        } else {
            let _ = writeln!(
                out,
                "  PIN:     ok ({} of {} tries used)",
                pin.failures, pin.max_failures
            );
        }
    }
    print_out(&out)
}
