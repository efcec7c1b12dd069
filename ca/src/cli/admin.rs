//! `lanyard-ca admin …`: IT-desk commands that work on the CA directory
//! directly (safe while `serve` runs: SQLite WAL with a busy timeout).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::audit::{admin_actor, AuditAction, AuditEvent};
use crate::ca_dir::CaDir;
use crate::cli::print_line;
use crate::config::{CaConfig, MAX_CODE_VALIDITY_HOURS};
use crate::enrolment_code::EnrolmentCode;
use crate::error::CaError;
use crate::store::{CardRecord, Store};

/// Attempts at drawing an unused random card id.
const CARD_ID_ATTEMPTS: usize = 8;

/// IT-desk commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Issue a virtual card to a person and print its one-time enrolment code.
    #[command(
        long_about = "Issue a virtual card to a person and print its one-time enrolment code.\n\n\
            The code (16 characters in four groups, e.g. 7KQD-9M2X-H4TA-PZ3E) works once, \
            expires after --valid-hours (default from ca.toml, 72), and is stored only as a hash: \
            give it to the card holder by a trusted channel. They enrol with \
            `lanyard enroll --ca https://HOST:PORT --ca-cert root.pem --code CODE`."
    )]
    IssueCard(IssueCardArgs),
    /// List every card with its state (issued: waiting for enrolment; active; revoked).
    ListCards(ListCardsArgs),
}

/// Arguments of `admin list-cards`.
#[derive(Debug, Args)]
pub struct ListCardsArgs {
    /// The CA directory made by `init`.
    #[arg(long, value_name = "DIR", env = "LANYARD_CA_DIR")]
    pub dir: PathBuf,
    /// Print one JSON array of {card_id, name, user_id, role, state}.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `admin issue-card`.
#[derive(Debug, Args)]
pub struct IssueCardArgs {
    /// The CA directory made by `init`.
    #[arg(long, value_name = "DIR", env = "LANYARD_CA_DIR")]
    pub dir: PathBuf,
    /// The holder's name as it should appear on the card, e.g. "Dr Ada Smith".
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The holder's user id, e.g. 555123456789.
    #[arg(long, value_name = "ID")]
    pub user_id: String,
    /// The holder's role, e.g. "R8000 Clinical Practitioner".
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// Hours the enrolment code stays valid (default: enrolment_code_validity_hours in ca.toml).
    #[arg(long, value_name = "H", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CODE_VALIDITY_HOURS)))]
    pub valid_hours: Option<u32>,
    /// Print one JSON object: code, card_id, expires_at (RFC 3339), name, user_id, role.
    #[arg(long)]
    pub json: bool,
}

/// Runs an admin command.
pub async fn run(cmd: AdminCommand) -> Result<(), CaError> {
    match cmd {
        AdminCommand::IssueCard(args) => issue_card(args).await,
        AdminCommand::ListCards(args) => list_cards(args).await,
    }
}

fn new_card_id() -> Result<String, CaError> {
    let mut bytes = [0u8; 6];
    getrandom::getrandom(&mut bytes)?;
    Ok(hex::encode_upper(bytes))
}

async fn issue_card(args: IssueCardArgs) -> Result<(), CaError> {
    let dir = CaDir::new(&args.dir);
    dir.require_initialised()?;
    let config = CaConfig::load(&dir.config())?;
    let hours = args
        .valid_hours
        .unwrap_or(config.enrolment_code_validity_hours);
    let name = args.name.trim().to_string();
    let user_id = args.user_id.trim().to_string();
    let role = args.role.trim().to_string();

    let store = Store::open_configured(&dir, &config).await?;
    let result = async {
        let expires_at = (OffsetDateTime::now_utc() + Duration::hours(i64::from(hours)))
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let code = EnrolmentCode::generate()?;
        for _ in 0..CARD_ID_ATTEMPTS {
            let card = CardRecord {
                card_id: new_card_id()?,
                holder_name: name.clone(),
                user_id: user_id.clone(),
                role: role.clone(),
            };
            // Refuse now what could not go into a certificate at enrolment.
            card.holder(&config.organisation)
                .check()
                .map_err(|e| CaError::InvalidArgument(e.to_string()))?;
            let event = AuditEvent {
                actor: admin_actor(),
                action: AuditAction::CardIssued,
                card_id: Some(card.card_id.clone()),
                peer: None,
                detail: json!({
                    "holder_name": card.holder_name,
                    "user_id": card.user_id,
                    "role": card.role,
                    "code_expires_at": expires_at.unix_timestamp(),
                }),
            };
            if store
                .insert_card(&card, &code.hash(), expires_at, &event)
                .await?
            {
                return Ok((card, code, expires_at));
            }
        }
        Err(CaError::NoUniqueId)
    }
    .await;
    store.close().await;
    let (card, code, expires_at) = result?;

    let expires = expires_at.format(&Rfc3339).unwrap_or_default();
    let grouped = code.grouped();
    tracing::info!(card_id = %card.card_id, "card issued");
    if args.json {
        let out = json!({
            "code": grouped.as_str(),
            "card_id": card.card_id,
            "expires_at": expires,
            "name": card.holder_name,
            "user_id": card.user_id,
            "role": card.role,
            "organisation": config.organisation,
        });
        print_line(&out)?;
    } else {
        print_line(format_args!(
            "Card {} issued to {} (user id {}, role {})",
            card.card_id, card.holder_name, card.user_id, card.role
        ))?;
        print_line(format_args!("  enrolment code: {}", grouped.as_str()))?;
        print_line(format_args!("  expires:        {expires}"))?;
        print_line(format_args!(
            "The code works once. Give it to the card holder by a trusted channel."
        ))?;
    }
    Ok(())
}

async fn list_cards(args: ListCardsArgs) -> Result<(), CaError> {
    let dir = CaDir::new(&args.dir);
    dir.require_initialised()?;
    let config = CaConfig::load(&dir.config())?;
    let store = Store::open_configured(&dir, &config).await?;
    let cards = store.cards().await;
    store.close().await;
    let cards = cards?;
    if args.json {
        let list: Vec<_> = cards
            .iter()
            .map(|(c, state)| {
                json!({
                    "card_id": c.card_id,
                    "name": c.holder_name,
                    "user_id": c.user_id,
                    "role": c.role,
                    "state": state,
                })
            })
            .collect();
        print_line(serde_json::Value::Array(list))?;
    } else if cards.is_empty() {
        print_line("No cards issued yet.")?;
    } else {
        print_line(format_args!(
            "{:<12}  {:<8}  {:<14}  {:<28}  ROLE",
            "CARD", "STATE", "USER ID", "NAME"
        ))?;
        for (c, state) in &cards {
            print_line(format_args!(
                "{:<12}  {:<8}  {:<14}  {:<28}  {}",
                c.card_id, state, c.user_id, c.holder_name, c.role
            ))?;
        }
    }
    Ok(())
}
