//! A protected login (C_Login with a NULL PIN, protected-authentication-path
//! mode): at once while the card is unlocked (`lanyard unlock`), otherwise
//! after the daemon's own pinentry prompt, one prompt per card at a time.

use std::time::Duration;

use crate::app_sessions::AppId;
use crate::error::{Error, Result};
use crate::pinentry::{self, PromptText};
use crate::state::Daemon;

/// Who asked for the login: the peer process of the agent connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requester {
    /// Its pid (SO_PEERCRED), if known.
    pub pid: Option<i32>,
}

impl Requester {
    /// The requesting program's name from /proc/PID/comm, printable
    /// characters only, if it can be read.
    pub fn name(&self) -> Option<String> {
        let pid = self.pid.filter(|p| *p > 0)?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let name: String = comm
            .trim_end_matches('\n')
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        (!name.is_empty()).then_some(name)
    }
}

/// Logs `app` in to `card_id` without a PIN from the application.
pub async fn login(
    daemon: &Daemon,
    app: &AppId,
    card_id: &str,
    requester: Requester,
) -> Result<()> {
    if !daemon.config().protected_path {
        return Err(Error::BadRequest(
            "this daemon is not in protected-authentication-path mode (protected_path = false); give the PIN".into(),
        ));
    }
    if daemon.login_if_unlocked(app, card_id)? {
        return Ok(());
    }
    daemon.check_prompt_possible(card_id)?;
    let timeout = Duration::from_secs(daemon.config().pinentry_timeout_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    let lock = daemon.prompt_lock(card_id)?;
    let _one_prompt = tokio::time::timeout_at(deadline, lock.lock())
        .await
        .map_err(|_| {
            Error::Canceled(format!(
                "another PIN prompt for card {card_id} stayed open for {} s",
                timeout.as_secs()
            ))
        })?;
    // The card may have been unlocked, or locked by wrong PINs, while this waited.
    if daemon.login_if_unlocked(app, card_id)? {
        return Ok(());
    }
    daemon.check_prompt_possible(card_id)?;
    let text = prompt_text(daemon, card_id, &requester)?;
    tracing::info!(card = %card_id, app = %app.short(), requester = ?requester.name(), "asking for the PIN with pinentry");
    let pin = pinentry::ask_pin(&daemon.config().pinentry_program, &text, deadline).await?;
    daemon.login(app, card_id, pin).await
}

/// What the prompt says: the card, its holder, the application that asked,
/// and the tries left when a wrong PIN was entered before.
fn prompt_text(daemon: &Daemon, card_id: &str, requester: &Requester) -> Result<PromptText> {
    let card = daemon.card(card_id, None)?;
    let who = match requester.name() {
        Some(name) => format!("The application {name}"),
        None => "An application".to_string(),
    };
    let mut description = format!(
        "{who} asks to use the Lanyard card of {} (card {card_id}).\nEnter the card's PIN to allow it.",
        card.holder_name
    );
    if let Some(pin) = card.pin.filter(|p| p.failures > 0) {
        let left = pin.max_failures.saturating_sub(pin.failures);
        description.push_str(&format!(
            "\nA wrong PIN was entered before: {left} tries left before the card locks."
        ));
    }
    Ok(PromptText {
        title: "Lanyard".into(),
        description,
        prompt: "PIN:".into(),
    })
}
