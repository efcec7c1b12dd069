//! `lanyard status`: the daemon, its store and every card (subject, expiry,
//! PIN state, and its lifecycle: status with the CA, renewal, check-in,
//! warning), as text or as JSON for scripts.

use std::path::Path;

use lanyard_proto::agent::{request, response, CardInfo, CardStatus, Status, StatusReply};
use serde::Serialize;

use super::client::AgentClient;
use super::device_protection::DeviceProtection;
use std::fmt::Write as _;

use super::{key_type_name, print_out, rfc3339, CliError};

/// One card in `status --json` (and `enroll`/`renew`/`reset-pin --json`).
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
    /// `active`, `suspended`, `revoked` or `expired`.
    status: &'static str,
    ca_url: String,
    /// RFC 3339, or null when no renewal is scheduled (the card is not unlocked).
    next_renewal: Option<String>,
    /// RFC 3339, or null if never.
    last_renewal: Option<String>,
    last_renewal_error: String,
    /// RFC 3339, or null if never.
    last_check_in: Option<String>,
    last_check_in_error: String,
    /// One line to act on, or "".
    warning: String,
    /// `lanyard unlock`: RFC 3339 of when the unlock ends if the card stays
    /// idle, or null when it is not unlocked.
    unlocked_until: Option<String>,
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
    /// What protects the store at rest on this machine.
    device_protection: DeviceProtection,
}

/// The card's status as a word.
pub fn status_name(c: &CardInfo) -> &'static str {
    let status = c
        .lifecycle
        .as_ref()
        .and_then(|l| CardStatus::try_from(l.status).ok());
    match status {
        Some(CardStatus::Suspended) => "suspended",
        Some(CardStatus::Revoked) => "revoked",
        Some(CardStatus::Expired) => "expired",
        _ => "active",
    }
}

fn when(unix: i64) -> Option<String> {
    (unix != 0).then(|| rfc3339(unix))
}

/// A card as JSON.
pub fn card_json(c: &CardInfo) -> CardJson {
    let pin = c.pin.unwrap_or_default();
    let life = c.lifecycle.clone().unwrap_or_default();
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
        status: status_name(c),
        ca_url: life.ca_url,
        next_renewal: when(life.next_renewal),
        last_renewal: when(life.last_renewal),
        last_renewal_error: life.last_renewal_error,
        last_check_in: when(life.last_check_in),
        last_check_in_error: life.last_check_in_error,
        warning: life.warning,
        unlocked_until: when(life.unlocked_until),
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

/// Prints cards as a JSON array.
pub fn print_cards_json(cards: &[CardInfo]) -> Result<(), CliError> {
    let list: Vec<CardJson> = cards.iter().map(card_json).collect();
    let text = serde_json::to_string_pretty(&list)
        .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
    print_out(&format!("{text}\n"))
}

/// One card as text, several lines, each indented under a heading.
pub fn describe(out: &mut String, c: &CardInfo) {
    let pin = c.pin.unwrap_or_default();
    let life = c.lifecycle.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "Slot {}: card {} ({})",
        c.slot,
        c.card_id,
        key_type_name(c.key_type)
    );
    let _ = writeln!(out, "  holder:     {}", c.holder_name);
    let _ = writeln!(out, "  subject:    {}", c.subject);
    let _ = writeln!(out, "  status:     {}", status_name(c));
    let _ = writeln!(out, "  expires:    {}", rfc3339(c.not_after));
    if pin.locked {
        let _ = writeln!(
            out,
            "  PIN:        LOCKED after {} wrong PINs; ask your IT desk for a reset code (`lanyard reset-pin`)",
            pin.failures
        );
    } else {
        let _ = writeln!(
            out,
            "  PIN:        ok ({} of {} tries used)",
            pin.failures, pin.max_failures
        );
    }
    let next = match (life.next_renewal, life.ca_url.is_empty()) {
        (0, true) => "none (no CA on record)".to_string(),
        (0, false) if status_name(c) == "active" => {
            "when the card is unlocked (log in, or `lanyard renew`)".to_string()
        }
        (0, false) => "none".to_string(),
        (t, _) => rfc3339(t),
    };
    if life.unlocked_until != 0 {
        let _ = writeln!(
            out,
            "  unlocked:   until {} if idle (`lanyard lock` locks it now)",
            rfc3339(life.unlocked_until)
        );
    }
    let _ = writeln!(out, "  renewal:    next {next}");
    let mut last = when(life.last_renewal).unwrap_or_else(|| "never".into());
    if !life.last_renewal_error.is_empty() {
        let _ = write!(last, " (last attempt failed: {})", life.last_renewal_error);
    }
    let _ = writeln!(out, "  renewed:    {last}");
    if !life.ca_url.is_empty() {
        let mut check = when(life.last_check_in).unwrap_or_else(|| "never".into());
        if !life.last_check_in_error.is_empty() {
            let _ = write!(
                check,
                " (last attempt failed: {})",
                life.last_check_in_error
            );
        }
        let _ = writeln!(out, "  checked in: {check} with {}", life.ca_url);
    }
    if !life.warning.is_empty() {
        let _ = writeln!(out, "  WARNING:    {}", life.warning);
    }
}

/// Runs `lanyard status`.
pub fn run(socket: &Path, json: bool) -> Result<(), CliError> {
    let mut client = AgentClient::connect(socket)?;
    let status = fetch(&mut client)?;
    let protection = DeviceProtection::detect(Path::new(&status.store_path));
    if json {
        let out = StatusJson {
            daemon_version: status.daemon_version,
            socket: status.socket_path,
            store: status.store_path,
            cards: status.cards.iter().map(card_json).collect(),
            problems: status.problems,
            device_protection: protection,
        };
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    let mut out = String::new();
    let _ = writeln!(out, "lanyardd {} is running", status.daemon_version);
    let _ = writeln!(out, "  socket: {}", status.socket_path);
    let _ = writeln!(out, "  store:  {}", status.store_path);
    let _ = writeln!(out, "  protection: {}", protection.summary());
    if !protection.warning.is_empty() {
        let _ = writeln!(out, "  WARNING: {}", protection.warning);
    }
    for p in &status.problems {
        let _ = writeln!(out, "  PROBLEM: {p}");
    }
    if status.cards.is_empty() {
        let _ = writeln!(out, "No card enrolled. Enrol one with `lanyard enroll --ca URL --ca-cert FILE --code CODE`.");
    }
    for c in &status.cards {
        let _ = writeln!(out);
        describe(&mut out, c);
    }
    print_out(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_proto::agent::Lifecycle;

    fn card(lifecycle: Lifecycle) -> CardInfo {
        CardInfo {
            card_id: "C1".into(),
            not_after: 1000,
            lifecycle: Some(lifecycle),
            ..CardInfo::default()
        }
    }

    #[test]
    fn json_and_text_carry_the_lifecycle() {
        let c = card(Lifecycle {
            status: CardStatus::Expired as i32,
            ca_url: "https://ca:1".into(),
            next_renewal: 0,
            last_renewal: 500,
            last_renewal_error: "the CA is busy".into(),
            last_check_in: 0,
            last_check_in_error: "unreachable".into(),
            warning: "card C1's certificate expired".into(),
            unlocked_until: 0,
        });
        let j = serde_json::to_value(card_json(&c)).unwrap();
        assert_eq!(j["status"], "expired");
        assert_eq!(j["next_renewal"], serde_json::Value::Null);
        assert_eq!(j["last_renewal"], "1970-01-01T00:08:20Z");
        assert_eq!(j["last_renewal_error"], "the CA is busy");
        assert_eq!(j["last_check_in"], serde_json::Value::Null);
        assert_eq!(j["warning"], "card C1's certificate expired");
        assert_eq!(j["unlocked_until"], serde_json::Value::Null);
        let mut text = String::new();
        describe(&mut text, &c);
        for want in [
            "status:     expired",
            "last attempt failed: the CA is busy",
            "never (last attempt failed: unreachable)",
            "WARNING:    card C1's certificate expired",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
    }

    #[test]
    fn next_renewal_says_why_there_is_none() {
        let active = |ca: &str, next| {
            let mut t = String::new();
            describe(
                &mut t,
                &card(Lifecycle {
                    status: CardStatus::Active as i32,
                    ca_url: ca.into(),
                    next_renewal: next,
                    ..Lifecycle::default()
                }),
            );
            t
        };
        assert!(active("", 0).contains("no CA on record"));
        assert!(active("https://ca:1", 0).contains("when the card is unlocked"));
        assert!(active("https://ca:1", 700).contains("next 1970-01-01T00:11:40Z"));
    }

    #[test]
    fn an_unlocked_card_says_until_when() {
        let c = card(Lifecycle {
            status: CardStatus::Active as i32,
            unlocked_until: 900,
            ..Lifecycle::default()
        });
        let j = serde_json::to_value(card_json(&c)).unwrap();
        assert_eq!(j["unlocked_until"], "1970-01-01T00:15:00Z");
        let mut text = String::new();
        describe(&mut text, &c);
        assert!(
            text.contains("unlocked:   until 1970-01-01T00:15:00Z if idle"),
            "{text}"
        );
        let mut locked = String::new();
        describe(&mut locked, &card(Lifecycle::default()));
        assert!(!locked.contains("unlocked:"), "{locked}");
    }
}
