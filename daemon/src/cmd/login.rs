//! Login (C_Login): checks the PIN with the retry counter and logs the
//! requesting application in to the card; a protected login (NULL PIN) goes
//! through the unlock or the daemon's own PIN prompt instead.

use lanyard_proto::agent::{response, Login, LoginReply};

use crate::app_sessions::AppId;
use crate::error::Result;
use crate::pin::Pin;
use crate::protected_login::{self, Requester};
use crate::state::Daemon;

/// Logs `app` in to the card.
pub async fn apply(
    daemon: &Daemon,
    app: &AppId,
    requester: Requester,
    m: Login,
) -> Result<response::Body> {
    let Login {
        card_id,
        pin,
        protected,
    } = m;
    if protected {
        drop(Pin::new(pin));
        protected_login::login(daemon, app, &card_id, requester).await?;
    } else {
        // A PIN from the application is accepted in protected mode too
        // (PKCS#11 allows both): clients that have their own PIN entry keep working.
        daemon.login(app, &card_id, Pin::new(pin)).await?;
    }
    Ok(response::Body::Login(LoginReply {}))
}
