//! `lanyard check-in`: has the daemon ask the CA about every card now
//! (it also does so by itself periodically) and shows the cards.

use std::path::Path;
use std::time::Duration;

use lanyard_proto::agent::{request, response, CheckIn};

use super::client::AgentClient;
use super::status::{describe, print_cards_json};
use super::{print_out, CliError};

/// Runs `lanyard check-in`.
pub fn run(socket: &Path, json: bool) -> Result<(), CliError> {
    let mut client = AgentClient::connect(socket)?;
    client.set_timeout(Duration::from_secs(120))?;
    let cards = match client.call(request::Body::CheckIn(CheckIn {}))? {
        response::Body::CheckIn(r) => r.cards,
        _ => {
            return Err(CliError::Other(
                "lanyardd answered CheckIn with something else".into(),
            ))
        }
    };
    if json {
        return print_cards_json(&cards);
    }
    let mut out = String::new();
    for (i, c) in cards.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        describe(&mut out, c);
    }
    if cards.is_empty() {
        out.push_str("No card enrolled.\n");
    }
    print_out(&out)
}
