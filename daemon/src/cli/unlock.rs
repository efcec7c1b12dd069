//! `lanyard unlock`: the PIN is entered to Lanyard itself (terminal or
//! `--pin-stdin`), and until `lanyard lock` or the idle timeout, applications
//! in protected-authentication-path mode (browsers) log in without it.

use std::path::Path;
use std::time::Duration;

use lanyard_proto::agent::{request, response, Unlock, UnlockReply};
use serde::Serialize;

use super::client::AgentClient;
use super::{choose_card, pin_input, print_out, rfc3339, status, CliError};

/// What `lanyard unlock` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct UnlockArgs<'a> {
    /// The card, if more than one is enrolled.
    pub card: Option<&'a str>,
    /// Idle timeout in minutes; the daemon's `unlock_idle_timeout_secs` when `None`.
    pub idle_minutes: Option<u32>,
    /// Read the PIN from standard input.
    pub pin_stdin: bool,
    /// Print JSON.
    pub json: bool,
}

/// `lanyard unlock --json`.
#[derive(Debug, Serialize)]
struct UnlockJson {
    card_id: String,
    /// RFC 3339: when the unlock ends if the card is not used before.
    idle_until: String,
}

/// Runs `lanyard unlock`.
pub fn run(socket: &Path, args: UnlockArgs<'_>) -> Result<(), CliError> {
    let idle_timeout_secs = match args.idle_minutes {
        None => 0,
        Some(m) => m
            .checked_mul(60)
            .filter(|s| *s > 0)
            .ok_or_else(|| CliError::Usage(format!("--idle {m}: give 1 to 1440 minutes")))?,
    };
    let mut client = AgentClient::connect(socket)?;
    let cards = status::fetch(&mut client)?.cards;
    let card_id = choose_card(&cards, args.card)?;
    let pin = if args.pin_stdin {
        pin_input::read_stdin_lines(1)?.remove(0)
    } else {
        pin_input::prompt(&format!("PIN of card {card_id}: "))?
    };
    // The PIN check runs Argon2id.
    client.set_timeout(Duration::from_secs(60))?;
    let body = request::Body::Unlock(Unlock {
        card_id: card_id.clone(),
        pin: pin.to_string(),
        idle_timeout_secs,
    });
    drop(pin);
    let reply = match client.call(body)? {
        response::Body::Unlock(r) => r,
        _ => {
            return Err(CliError::Other(
                "lanyardd answered Unlock with something else".into(),
            ))
        }
    };
    let UnlockReply { idle_until, .. } = reply;
    if args.json {
        let text = serde_json::to_string_pretty(&UnlockJson {
            card_id,
            idle_until: rfc3339(idle_until),
        })
        .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    print_out(&format!(
        "Card {card_id} unlocked until {} if it is not used before then (each use extends it); `lanyard lock` locks it now\n",
        rfc3339(idle_until)
    ))
}
