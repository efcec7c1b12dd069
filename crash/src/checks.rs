//! The invariants checked after every restart: no acknowledged card lost or
//! unable to sign with its acknowledged PIN, the retry counter never below the
//! failures acknowledged, no temp file left, and the CA database consistent.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use sqlx::Connection as _;

use crate::model::Card;
use crate::ops::{self, Outcome};
use crate::procs::DaemonProc;
use crate::report::Report;

/// (card id, pin_failures) of each listed card.
type Listed = Vec<(String, u32)>;

/// `lanyard status --json`'s cards and its problems.
fn status(daemon: &DaemonProc) -> Result<(Listed, Vec<String>)> {
    let out = daemon.lanyard(&["status", "--json"], None);
    anyhow::ensure!(out.success(), "lanyard status --json failed\n{out}");
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim())?;
    let cards = json["cards"]
        .as_array()
        .context("status --json: no cards")?
        .iter()
        .map(|c| {
            (
                c["card_id"].as_str().unwrap_or_default().to_string(),
                c["pin_failures"].as_u64().unwrap_or(0) as u32,
            )
        })
        .collect();
    let problems = json["problems"]
        .as_array()
        .map(|p| p.iter().map(|v| v.to_string()).collect())
        .unwrap_or_default();
    Ok((cards, problems))
}

/// The card ids the daemon lists.
pub fn listed_cards(daemon: &DaemonProc) -> Result<Vec<String>> {
    Ok(status(daemon)?.0.into_iter().map(|(id, _)| id).collect())
}

/// After a daemon restart: every acknowledged card loads, its counter is not
/// below the acknowledged failures, it signs with an acknowledged PIN (which
/// resets the counter), and the store holds nothing else.
pub fn daemon_invariants(
    daemon: &DaemonProc,
    cards: &mut [Card],
    scratch: &Path,
    report: &mut Report,
) -> Result<()> {
    report.checks += 1;
    let (listed, problems) = status(daemon)?;
    for p in problems {
        report.violation(format!("card store problem after restart: {p}"));
    }
    for card in cards.iter_mut() {
        let Some((_, failures)) = listed.iter().find(|(id, _)| *id == card.card_id) else {
            report.violation(format!(
                "card {} lost: not listed after restart",
                card.card_id
            ));
            continue;
        };
        if *failures < card.acked_failures {
            report.violation(format!(
                "card {}: retry counter {} below the {} failures acknowledged",
                card.card_id, failures, card.acked_failures
            ));
        }
        let mut opened = false;
        for pin in card.candidate_pins() {
            match ops::sign(daemon, &card.holder, &pin, scratch)? {
                Outcome::Acked => {
                    card.pin = pin;
                    card.pending_pin = None;
                    card.acked_failures = 0;
                    opened = true;
                    break;
                }
                Outcome::PinIncorrect if card.pending_pin.is_some() => {
                    card.acked_failures += 1;
                }
                other => {
                    report.violation(format!(
                        "card {} does not sign with its acknowledged PIN: {other:?}",
                        card.card_id
                    ));
                    break;
                }
            }
        }
        if !opened && card.pending_pin.is_some() {
            report.violation(format!(
                "card {}: neither the old nor the new PIN of an interrupted change opens it",
                card.card_id
            ));
        }
    }
    store_files(daemon, &listed, report)
}

/// Only `ID.json` of listed cards may remain (temp files are removed at start).
fn store_files(daemon: &DaemonProc, listed: &[(String, u32)], report: &mut Report) -> Result<()> {
    let expected: BTreeSet<String> = listed.iter().map(|(id, _)| format!("{id}.json")).collect();
    let dir = daemon.cards_dir();
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !expected.contains(&name) {
            report.violation(format!("unexplained file left in the card store: {name}"));
        }
    }
    Ok(())
}

/// Temp files in the card store now (left by a kill between write and rename).
pub fn temp_files(daemon: &DaemonProc) -> usize {
    std::fs::read_dir(daemon.cards_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .count()
        })
        .unwrap_or(0)
}

/// The leaf certificate in a card file.
fn card_certificate(daemon: &DaemonProc, card_id: &str) -> Result<Vec<u8>> {
    let path = daemon.cards_dir().join(format!("{card_id}.json"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let b64 = json["certificate"]
        .as_str()
        .with_context(|| format!("{} has no certificate", path.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}

/// The CA database: integrity, audit hash chain, no serial or code twice, one
/// used code per enrolled card, and every certificate a card holds recorded.
pub fn ca_invariants(
    ca_dir: &Path,
    daemon: &DaemonProc,
    cards: &[Card],
    report: &mut Report,
) -> Result<()> {
    report.ca_checks += 1;
    let held: Vec<(String, Vec<u8>)> = cards
        .iter()
        .map(|c| Ok((c.card_id.clone(), card_certificate(daemon, &c.card_id)?)))
        .collect::<Result<_>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let findings = rt.block_on(db_findings(&ca_dir.join("ca.db"), &held))?;
    for f in findings {
        report.violation(f);
    }
    Ok(())
}

async fn db_findings(db: &Path, held: &[(String, Vec<u8>)]) -> Result<Vec<String>> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let mut found = Vec::new();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    if integrity != "ok" {
        found.push(format!("ca.db integrity_check: {integrity}"));
    }
    match lanyard_ca::audit::verify_chain(&mut conn).await? {
        Ok(_) => {}
        Err(seq) => found.push(format!("audit chain broken at seq {seq}")),
    }
    let dup_serials: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT serial FROM certificates GROUP BY serial HAVING COUNT(*) > 1) AS d",
    )
    .fetch_one(&mut conn)
    .await?;
    if dup_serials > 0 {
        found.push(format!("{dup_serials} serials issued twice"));
    }
    let twice_used: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT card_id FROM enrolment_codes WHERE used_at IS NOT NULL \
         GROUP BY card_id HAVING COUNT(*) > 1) AS d",
    )
    .fetch_one(&mut conn)
    .await?;
    if twice_used > 0 {
        found.push(format!(
            "{twice_used} cards enrolled with more than one code"
        ));
    }
    for (card_id, der) in held {
        let used: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM enrolment_codes WHERE card_id = $1 AND used_at IS NOT NULL",
        )
        .bind(card_id)
        .fetch_one(&mut conn)
        .await?;
        if used != 1 {
            found.push(format!(
                "card {card_id} is enrolled but {used} codes are marked used"
            ));
        }
        let recorded: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM certificates WHERE card_id = $1 AND der = $2")
                .bind(card_id)
                .bind(der.clone())
                .fetch_one(&mut conn)
                .await?;
        if recorded != 1 {
            found.push(format!(
                "card {card_id} holds a certificate the CA has no record of"
            ));
        }
    }
    conn.close().await?;
    Ok(found)
}

/// Whether the CA marked `card_id`'s enrolment code used.
pub fn code_used(ca_dir: &Path, card_id: &str) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=ro", ca_dir.join("ca.db").display());
        let mut conn = sqlx::AnyConnection::connect(&url).await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM enrolment_codes WHERE card_id = $1 AND used_at IS NOT NULL",
        )
        .bind(card_id)
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        Ok(used > 0)
    })
}
