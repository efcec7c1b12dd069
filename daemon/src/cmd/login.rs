//! Login (C_Login): checks the PIN with the retry counter and logs the
//! requesting application in to the card.

use lanyard_proto::agent::{response, Login, LoginReply};

use crate::app_sessions::AppId;
use crate::error::{Error, Result};
use crate::pin::Pin;
use crate::state::Daemon;

/// Logs `app` in to the card.
pub async fn apply(daemon: &Daemon, app: &AppId, m: Login) -> Result<response::Body> {
    let Login {
        card_id,
        pin,
        protected,
    } = m;
    if protected {
        // Protected authentication path: being built under issue 5.
        return Err(Error::BadRequest(
            "this daemon is not in protected-authentication-path mode; give the PIN".into(),
        ));
    }
    daemon.login(app, &card_id, Pin::new(pin)).await?;
    Ok(response::Body::Login(LoginReply {}))
}
