//! One vpcd connection while a card is in the reader: controls and command
//! APDUs in, ATR and response APDUs out, through the PIV application over
//! the daemon's card. Ends (the card "removed") when the inserted card changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lanyard_piv::Applet;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};
use crate::pcsc::backend::DaemonBackend;
use crate::pcsc::frame::{self, Message};
use crate::pcsc::presence::{self, InsertedCard};
use crate::state::Daemon;

/// Numbers reader connections for their application ids and logs.
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// Links up now (the idle exit waits while one is).
static LINKS_UP: AtomicU64 = AtomicU64::new(0);

/// How many reader links are up now.
pub fn links_up() -> usize {
    LINKS_UP.load(Ordering::SeqCst) as usize
}

/// Counts a link as up until dropped.
struct LinkUp;

impl LinkUp {
    fn new() -> Self {
        LINKS_UP.fetch_add(1, Ordering::SeqCst);
        LinkUp
    }
}

impl Drop for LinkUp {
    fn drop(&mut self) {
        LINKS_UP.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a link ended.
#[derive(Debug)]
pub enum LinkEnd {
    /// vpcd (pcscd) closed the connection.
    PeerClosed,
    /// The card in the reader changed or went away.
    CardChanged(Option<InsertedCard>),
    /// A frame made no sense; the link was reset.
    BadFrame(String),
    /// Reading or writing failed.
    Failed(Error),
}

type SharedApplet = Arc<Mutex<Applet<DaemonBackend>>>;

fn lock(applet: &SharedApplet) -> MutexGuard<'_, Applet<DaemonBackend>> {
    // A panic inside the applet cannot leave the card in a state that matters
    // more than dropping the link would; keep serving.
    applet.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `card` over `stream` until the link ends; the connection's login
/// to the card ends with it.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    daemon: Arc<Daemon>,
    wanted: Option<String>,
    card: InsertedCard,
) -> LinkEnd {
    let _up = LinkUp::new();
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let backend = match DaemonBackend::new(
        daemon.clone(),
        tokio::runtime::Handle::current(),
        card.card_id.clone(),
        n,
    ) {
        Ok(b) => b,
        Err(e) => return LinkEnd::Failed(e),
    };
    tracing::info!(card = %card.card_id, link = n, "PC/SC reader: card inserted (vpcd connected)");
    let applet: SharedApplet = Arc::new(Mutex::new(Applet::new(backend)));
    let seen = Some(card);
    loop {
        let message = tokio::select! {
            m = frame::read_message(&mut stream) => m,
            now = presence::changed(&daemon, wanted.as_deref(), &seen) => {
                return LinkEnd::CardChanged(now);
            }
        };
        let message = match message {
            Ok(None) => return LinkEnd::PeerClosed,
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(bad))) => return LinkEnd::BadFrame(bad.to_string()),
            Err(e) => return LinkEnd::Failed(e),
        };
        if let Err(e) = answer(&mut stream, &applet, message, n).await {
            return LinkEnd::Failed(e);
        }
    }
}

/// Acts on one message and writes its answer, if it has one.
async fn answer<S: AsyncWrite + Unpin>(
    stream: &mut S,
    applet: &SharedApplet,
    message: Message,
    link: u64,
) -> Result<()> {
    match message {
        Message::PowerOff => {
            lock(applet).power_off();
            tracing::debug!(link, "PC/SC reader: power off");
        }
        Message::PowerOn | Message::Reset => {
            lock(applet).power_on();
            tracing::debug!(link, "PC/SC reader: power on / reset");
        }
        Message::GetAtr => frame::write_frame(stream, lanyard_piv::atr()).await?,
        Message::Apdu(apdu) => {
            // INS and SW only: a VERIFY's data is the PIN.
            let ins = apdu.get(1).copied().unwrap_or(0);
            let applet = applet.clone();
            // The backend blocks on the daemon's async state (PIN checks, signing).
            let response = tokio::task::spawn_blocking(move || lock(&applet).process(&apdu))
                .await
                .map_err(|e| Error::Internal(format!("PIV application task failed: {e}")))?;
            let sw = response
                .len()
                .checked_sub(2)
                .and_then(|i| response.get(i..))
                .map(hex::encode)
                .unwrap_or_default();
            tracing::debug!(link, ins = format_args!("{ins:02X}"), sw = %sw, "PC/SC reader: APDU");
            frame::write_frame(stream, &response).await?;
        }
    }
    Ok(())
}
