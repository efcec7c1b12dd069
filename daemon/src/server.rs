//! The agent socket: binding it safely (private directory, no second daemon,
//! stale socket removed, mode 0600), the accept loop with the SO_PEERCRED
//! uid check on every peer, and one thread per connection: a request is read,
//! handled and answered on that thread (the hot path, C_Sign, signs there
//! with no hop between async tasks), so two applications sign on two cores.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lanyard_proto::agent::{ErrorCode, Response};
use tokio::net::{UnixListener, UnixStream};

use crate::app_sessions::AppId;
use crate::blocking_connection::BlockingConnection;
use crate::cmd;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::paths::{current_uid, prepare_socket_dir};
use crate::protected_login::Requester;
use crate::state::Daemon;

/// Most distinct app ids one connection may carry (normally one).
const MAX_APPS_PER_CONNECTION: usize = 8;

/// Most connections served at once (each has a thread); more are refused.
const MAX_CONNECTIONS: usize = 256;

/// Connections being served now.
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Connections served since start (the idle-exit watcher sees short ones too).
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

/// Agent connections being served now.
pub fn open_connections() -> usize {
    CONNECTIONS.load(Ordering::SeqCst)
}

/// Agent connections served since start.
pub fn connections_accepted() -> usize {
    ACCEPTED.load(Ordering::SeqCst)
}

/// The listener systemd passed (see `socket_activation`), for the runtime;
/// its file stays when the daemon stops (systemd owns it). Needs a tokio runtime.
pub fn adopt_listener(listener: std::os::unix::net::UnixListener) -> Result<UnixListener> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("activated socket", e))?;
    UnixListener::from_std(listener).map_err(|e| Error::io("activated socket", e))
}

/// Prepares the directory, refuses to run beside a live daemon, removes a
/// stale socket, binds, and makes the socket 0600. Needs a tokio runtime.
pub fn bind_socket(path: &Path) -> Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| {
            Error::Internal(format!("socket path {} has no directory", path.display()))
        })?;
    prepare_socket_dir(dir, current_uid())?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::AlreadyRunning(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|e| {
                Error::io(format!("cannot remove stale socket {}", path.display()), e)
            })?;
            tracing::info!(socket = %path.display(), "removed stale socket");
        }
        Ok(_) => {
            return Err(Error::InsecureDirectory(format!(
                "{} exists and is not a socket; remove it or choose another path",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("cannot inspect {}", path.display()), e)),
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::io(format!("cannot listen on {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("cannot chmod {}", path.display()), e))?;
    Ok(listener)
}

/// Accepts connections until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    shutdown: impl Future<Output = ()>,
) {
    let uid = current_uid();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => admit(stream, uid, &daemon),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Avoid a hot loop on e.g. EMFILE.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

fn admit(stream: UnixStream, uid: u32, daemon: &Arc<Daemon>) {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == uid => {
            let peer = Requester { pid: cred.pid() };
            if let Err(e) = serve_on_thread(stream, daemon.clone(), peer) {
                tracing::warn!(error = %e, "cannot serve the connection; dropped");
            }
        }
        Ok(cred) => {
            tracing::warn!(
                peer_uid = cred.uid(),
                peer_pid = cred.pid().unwrap_or(-1),
                "connection from another user refused"
            );
            tokio::spawn(refuse(stream, cred.uid()));
        }
        Err(e) => tracing::warn!(error = %e, "cannot read peer credentials; connection dropped"),
    }
}

/// Counts a served connection until dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        ACCEPTED.fetch_add(1, Ordering::SeqCst);
        let taken = CONNECTIONS.fetch_add(1, Ordering::SeqCst);
        if taken >= MAX_CONNECTIONS {
            CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Hands the connection to a thread of its own (blocking reads and writes;
/// async work such as a PIN check runs on the runtime through its handle).
fn serve_on_thread(stream: UnixStream, daemon: Arc<Daemon>, peer: Requester) -> Result<()> {
    let Some(slot) = Slot::take() else {
        return Err(Error::Internal(format!(
            "{MAX_CONNECTIONS} connections are open already"
        )));
    };
    let stream = stream
        .into_std()
        .map_err(|e| Error::io("agent connection", e))?;
    stream
        .set_nonblocking(false)
        .map_err(|e| Error::io("agent connection", e))?;
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("lanyard-conn".into())
        .spawn(move || {
            let _slot = slot;
            handle(BlockingConnection::new(stream), &daemon, peer, &runtime);
        })
        .map_err(|e| Error::io("cannot start a connection thread", e))?;
    Ok(())
}

async fn refuse(stream: UnixStream, peer_uid: u32) {
    let mut conn = Connection::new(stream);
    // Answer the peer's first request (so its write does not meet a closed
    // socket), never acting on it; give up waiting after a moment.
    let request_id = match tokio::time::timeout(Duration::from_secs(2), conn.read_request()).await {
        Ok(Ok(Some(req))) => req.request_id,
        _ => 0,
    };
    let resp = Response {
        request_id,
        error: Some(lanyard_proto::agent::Error {
            code: ErrorCode::PermissionDenied as i32,
            message: format!(
                "lanyardd serves uid {} only; uid {peer_uid} is refused",
                current_uid()
            ),
            tries_left: 0,
        }),
        body: None,
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.write_response(&resp)).await;
}

fn handle(
    mut conn: BlockingConnection,
    daemon: &Arc<Daemon>,
    peer: Requester,
    runtime: &tokio::runtime::Handle,
) {
    let mut session = cmd::Session {
        peer,
        ..cmd::Session::default()
    };
    let mut apps: Vec<AppId> = Vec::new();
    loop {
        let req = match conn.read_request() {
            Ok(Some(req)) => req,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "bad frame; closing connection");
                if matches!(e, Error::BadRequest(_)) {
                    let resp = cmd::error_response(0, &e, 0);
                    let _ = conn.write_response(&resp);
                }
                break;
            }
        };
        let known = apps.iter().any(|a| a.as_bytes() == req.app_id.as_slice());
        if let Some(app) = (!known).then(|| AppId::new(&req.app_id)).flatten() {
            if apps.len() >= MAX_APPS_PER_CONNECTION {
                let e = Error::BadRequest("too many app ids on one connection".into());
                let _ = conn.write_response(&cmd::error_response(req.request_id, &e, 0));
                break;
            }
            daemon.connection_opened(&app);
            apps.push(app);
        }
        // A runtime shutting down (the daemon is stopping) makes block_on
        // panic: that ends this connection, nothing else.
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(cmd::dispatch(daemon, &mut session, req))
        }));
        let Ok(resp) = handled else {
            break;
        };
        if let Err(e) = conn.write_response(&resp) {
            tracing::debug!(error = %e, "client went away");
            break;
        }
    }
    for app in &apps {
        daemon.connection_closed(app);
    }
}
