//! `lanyard renew`: renews a card's certificate now with a new key. Asks the
//! daemon without a PIN first (enough while an application keeps the card
//! unlocked); if the card is locked, asks for the PIN and tries again.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use lanyard_proto::agent::{request, response, CardInfo, ErrorCode, Renew};

use super::client::AgentClient;
use super::status::{card_json, fetch};
use super::{choose_card, pin_input, print_out, rfc3339, CliError};

fn call(client: &mut AgentClient, card_id: &str, pin: &str) -> Result<CardInfo, CliError> {
    match client.call(request::Body::Renew(Renew {
        card_id: card_id.to_string(),
        pin: pin.to_string(),
    }))? {
        response::Body::Renew(r) => r
            .card
            .ok_or_else(|| CliError::Other("lanyardd returned no card".into())),
        _ => Err(CliError::Other(
            "lanyardd answered Renew with something else".into(),
        )),
    }
}

/// Runs `lanyard renew`.
pub fn run(socket: &Path, card: Option<&str>, pin_stdin: bool, json: bool) -> Result<(), CliError> {
    let mut client = AgentClient::connect(socket)?;
    let cards = fetch(&mut client)?.cards;
    let card_id = choose_card(&cards, card)?;
    // Key generation and the CA (with its retries) take a while.
    client.set_timeout(Duration::from_secs(180))?;
    let card = match call(&mut client, &card_id, "") {
        Err(CliError::Agent {
            code: ErrorCode::NotLoggedIn,
            ..
        }) => {
            let pin = if pin_stdin {
                pin_input::read_stdin_lines(1)?.remove(0)
            } else {
                pin_input::prompt(&format!("PIN of card {card_id}: "))?
            };
            call(&mut client, &card_id, &pin)?
        }
        other => other?,
    };
    if json {
        let text = serde_json::to_string_pretty(&card_json(&card))
            .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Card {} renewed with a new key; the certificate is valid until {}",
        card.card_id,
        rfc3339(card.not_after)
    );
    print_out(&out)
}
