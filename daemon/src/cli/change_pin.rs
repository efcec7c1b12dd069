//! `lanyard change-pin`: old PIN once, new PIN twice on a terminal (or two
//! lines on stdin with `--pin-stdin`); the daemon checks and re-wraps.

use std::path::Path;
use std::time::Duration;

use lanyard_proto::agent::{request, response, ChangePin};

use super::client::AgentClient;
use super::{choose_card, pin_input, print_out, status, CliError};

/// Runs `lanyard change-pin`.
pub fn run(socket: &Path, card: Option<&str>, pin_stdin: bool) -> Result<(), CliError> {
    let mut client = AgentClient::connect(socket)?;
    let cards = status::fetch(&mut client)?.cards;
    let card_id = choose_card(&cards, card)?;
    let (old, new) = if pin_stdin {
        let mut lines = pin_input::read_stdin_lines(2)?;
        let new = lines.remove(1);
        (lines.remove(0), new)
    } else {
        let old = pin_input::prompt(&format!("Current PIN of card {card_id}: "))?;
        (old, pin_input::prompt_new("New PIN")?)
    };
    client.set_timeout(Duration::from_secs(60))?;
    let body = request::Body::ChangePin(ChangePin {
        card_id: card_id.clone(),
        old_pin: old.to_string(),
        new_pin: new.to_string(),
    });
    // Wiped now; the request's copies are wiped once sent (`AgentClient::call`).
    drop((old, new));
    match client.call(body)? {
        response::Body::ChangePin(_) => print_out(&format!("PIN of card {card_id} changed\n")),
        _ => Err(CliError::Other(
            "lanyardd answered ChangePin with something else".into(),
        )),
    }
}
