//! The operations of a cycle, each through the real clients: `pkcs11-tool`
//! on the PKCS#11 module for signing, the `lanyard` CLI for the rest, and the
//! CA's `admin issue-card` for enrolment codes.

use std::path::Path;

use anyhow::{bail, Context, Result};
use lanyard_test_support::process::CmdOutput;
use lanyard_test_support::{module_path, Pkcs11Tool};

use crate::procs::{CaProc, DaemonProc};

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded and said so: the harness's model follows it.
    Acked,
    /// The PIN was refused as incorrect (acknowledged failure).
    PinIncorrect,
    /// Refused by the CA (e.g. an enrolment code already used), with the message.
    Refused(String),
    /// No answer, or an answer that is not one of the above (a process died).
    Unknown(String),
}

fn classify(out: &CmdOutput) -> Outcome {
    if out.success() {
        return Outcome::Acked;
    }
    let text = out.combined();
    if text.contains("CKR_PIN_INCORRECT") || (out.code == Some(4) && text.contains("ncorrect")) {
        return Outcome::PinIncorrect;
    }
    if out.code == Some(5) && !text.contains("unreachable") && !text.contains("unavailable") {
        return Outcome::Refused(tail(&text));
    }
    Outcome::Unknown(tail(&text))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Signs `data` with the card whose token label contains `holder`, logging in with `pin`.
pub fn sign(daemon: &DaemonProc, holder: &str, pin: &str, dir: &Path) -> Result<Outcome> {
    let tool = Pkcs11Tool::new(
        module_path(),
        daemon
            .env()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    );
    let slots = tool.run(&["--list-token-slots"]);
    if !slots.success() {
        return Ok(Outcome::Unknown(tail(&slots.combined())));
    }
    let Some(slot) = lanyard_test_support::pkcs11_tool::parse_slot_list(&slots.stdout)
        .into_iter()
        .find(|s| s.token_label.as_deref().is_some_and(|l| l.contains(holder)))
    else {
        return Ok(Outcome::Unknown(format!(
            "no token labelled {holder:?} in the slot list: {}",
            tail(&slots.stdout)
        )));
    };
    let slot_id = slot.id.to_string();
    let objects = tool.run(&["--slot", &slot_id, "--list-objects", "--type", "pubkey"]);
    let key_id = lanyard_test_support::pkcs11_tool::parse_objects(&objects.stdout)
        .into_iter()
        .find(|o| o.kind == "Public Key Object")
        .and_then(|o| o.id().map(str::to_string));
    let Some(key_id) = key_id else {
        return Ok(Outcome::Unknown(tail(&objects.combined())));
    };
    let data = dir.join("data.txt");
    let sig = dir.join("sig.bin");
    std::fs::write(&data, b"crash-consistency cycle\n").context("write data")?;
    let _ = std::fs::remove_file(&sig);
    let out = tool.run(&[
        "--slot",
        &slot_id,
        "--login",
        "--pin",
        pin,
        "--sign",
        "-m",
        "ECDSA-SHA256",
        "--id",
        &key_id,
        "-i",
        data.to_str().context("path")?,
        "-o",
        sig.to_str().context("path")?,
    ]);
    let outcome = classify(&out);
    if outcome == Outcome::Acked && std::fs::metadata(&sig).map(|m| m.len()).unwrap_or(0) == 0 {
        bail!("pkcs11-tool --sign succeeded without a signature\n{out}");
    }
    Ok(outcome)
}

/// `lanyard change-pin --card ID --pin-stdin`.
pub fn change_pin(daemon: &DaemonProc, card_id: &str, old: &str, new: &str) -> Outcome {
    classify(&daemon.lanyard(
        &["change-pin", "--card", card_id, "--pin-stdin"],
        Some(&format!("{old}\n{new}\n")),
    ))
}

/// `lanyard renew --card ID --pin-stdin --json` (a new key and certificate from the CA).
pub fn renew(daemon: &DaemonProc, card_id: &str, pin: &str) -> Outcome {
    classify(&daemon.lanyard(
        &["renew", "--card", card_id, "--pin-stdin", "--json"],
        Some(&format!("{pin}\n")),
    ))
}

/// `lanyard check-in --json`: every card's status from the CA (the revocation check).
pub fn check_in(daemon: &DaemonProc) -> Outcome {
    classify(&daemon.lanyard(&["check-in", "--json"], None))
}

/// `lanyard enroll` of an EC P-256 card with `code` and `pin`.
pub fn enroll(daemon: &DaemonProc, ca_url: &str, root: &Path, code: &str, pin: &str) -> Outcome {
    classify(&daemon.lanyard(
        &[
            "enroll",
            "--ca",
            ca_url,
            "--ca-cert",
            &root.to_string_lossy(),
            "--code",
            code,
            "--key",
            "ec-p256",
            "--pin-stdin",
        ],
        Some(&format!("{pin}\n")),
    ))
}

/// `admin issue-card --json` at the CA: (card id, code).
pub fn issue_card(ca: &CaProc, holder: &str, user_id: &str) -> Result<(String, String)> {
    let out = ca.admin(
        "issue-card",
        &[
            "--name",
            holder,
            "--user-id",
            user_id,
            "--role",
            "R8000 Clinical Practitioner",
            "--json",
        ],
    );
    if !out.success() {
        bail!("admin issue-card failed\n{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).context("issue-card --json output")?;
    let field = |k: &str| {
        json[k]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("issue-card --json has no {k}"))
    };
    Ok((field("card_id")?, field("code")?))
}
