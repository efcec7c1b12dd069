//! `lanyard lock`: ends `lanyard unlock` for one card or every card; the
//! applications that relied on it must log in again.

use std::path::Path;

use lanyard_proto::agent::{request, response, Lock};
use serde::Serialize;

use super::client::AgentClient;
use super::{print_out, CliError};

/// `lanyard lock --json`.
#[derive(Debug, Serialize)]
struct LockJson {
    /// The cards that were unlocked and are now locked.
    locked: Vec<String>,
}

/// Runs `lanyard lock`.
pub fn run(socket: &Path, card: Option<&str>, json: bool) -> Result<(), CliError> {
    let mut client = AgentClient::connect(socket)?;
    let locked = match client.call(request::Body::Lock(Lock {
        card_id: card.unwrap_or_default().to_string(),
    }))? {
        response::Body::Lock(r) => r.locked,
        _ => {
            return Err(CliError::Other(
                "lanyardd answered Lock with something else".into(),
            ))
        }
    };
    if json {
        let text = serde_json::to_string_pretty(&LockJson { locked })
            .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    let text = match (locked.as_slice(), card) {
        ([], Some(id)) => format!("Card {id} was not unlocked; nothing to do\n"),
        ([], None) => "No card was unlocked; nothing to do\n".to_string(),
        (ids, _) => ids.iter().map(|id| format!("Card {id} locked\n")).collect(),
    };
    print_out(&text)
}
