//! `lanyard reset-pin`: redeems the IT desk's one-time reset code. The new
//! PIN is asked twice on a terminal (or one line on stdin with
//! `--pin-stdin`, after the code's line with `--code -`); the daemon re-keys
//! the card and gets a new certificate.

use std::path::Path;
use std::time::Duration;

use lanyard_proto::agent::{request, response, ResetPin};

use super::client::AgentClient;
use super::status::{card_json, fetch};
use super::{choose_card, pin_input, print_out, rfc3339, CliError};

/// What `lanyard reset-pin` was asked to do.
pub struct ResetArgs<'a> {
    /// The reset code from the IT desk (`-`: the first line of stdin).
    pub code: &'a str,
    /// The card, if more than one.
    pub card: Option<&'a str>,
    /// Another CA address than the one on record.
    pub ca_url: Option<&'a str>,
    /// Another CA trust bundle than the one on record.
    pub ca_cert: Option<&'a Path>,
    /// Read the new PIN from the first line of stdin.
    pub pin_stdin: bool,
    /// Print the card as JSON.
    pub json: bool,
}

/// Runs `lanyard reset-pin`.
pub fn run(socket: &Path, args: ResetArgs<'_>) -> Result<(), CliError> {
    let pem = match args.ca_cert {
        Some(path) => std::fs::read(path).map_err(|e| {
            CliError::Usage(format!("cannot read --ca-cert {}: {e}", path.display()))
        })?,
        None => Vec::new(),
    };
    let mut client = AgentClient::connect(socket)?;
    let cards = fetch(&mut client)?.cards;
    let card_id = choose_card(&cards, args.card)?;
    let code = pin_input::code_arg(args.code, "reset code")?;
    let pin = if args.pin_stdin {
        pin_input::read_stdin_lines(1)?.remove(0)
    } else {
        pin_input::prompt_new(&format!("New PIN for card {card_id}"))?
    };
    // Key generation, Argon2id and the CA (with retries) take a while.
    client.set_timeout(Duration::from_secs(180))?;
    let body = request::Body::ResetPin(ResetPin {
        card_id: card_id.clone(),
        ca_url: args.ca_url.unwrap_or_default().to_string(),
        ca_cert_pem: pem,
        code: code.to_string(),
        new_pin: pin.to_string(),
    });
    drop(pin);
    let card = match client.call(body)? {
        response::Body::ResetPin(r) => r
            .card
            .ok_or_else(|| CliError::Other("lanyardd returned no card".into()))?,
        _ => {
            return Err(CliError::Other(
                "lanyardd answered ResetPin with something else".into(),
            ))
        }
    };
    if args.json {
        let text = serde_json::to_string_pretty(&card_json(&card))
            .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    print_out(&format!(
        "PIN of card {} reset; the card has a new key and a certificate valid until {}\n",
        card.card_id,
        rfc3339(card.not_after)
    ))
}
