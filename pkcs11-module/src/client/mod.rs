//! The module's side of the agent protocol: a small pool of blocking Unix
//! socket connections to `lanyardd`. A thread takes a connection, makes one
//! round trip and gives it back; no lock is held while waiting for the daemon.

mod connection;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lanyard_proto::agent::{request, response, ErrorCode, HelloReply, Request};

pub use connection::Connection;

/// How long connecting (and the Hello exchange) may take before the daemon is
/// considered unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a key operation may wait for its answer (a login runs Argon2id).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read of the daemon's state (ListCards, Logout) may wait: slot
/// polling must not stall the host application behind a stuck daemon.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a protected login (NULL PIN) may wait: the daemon's PIN prompt
/// waits for the user at most 120 s (lanyardd's largest
/// `pinentry_timeout_secs`) and then answers CANCELED; plus a margin.
pub const PROTECTED_LOGIN_TIMEOUT: Duration = Duration::from_secs(150);
/// After a daemon failed to answer within the connect timeout, further
/// connects fail at once for this long instead of waiting again.
const UNRESPONSIVE_BACKOFF: Duration = Duration::from_secs(5);
/// Idle connections kept per process; more are closed when given back.
const MAX_IDLE: usize = 4;

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the Lanyard daemon is not reachable at {path}: {source}")]
    Unreachable { path: String, source: io::Error },
    #[error("the connection to the Lanyard daemon failed: {0}")]
    Io(#[from] io::Error),
    #[error("the Lanyard daemon answered out of protocol: {0}")]
    Protocol(String),
    #[error("the Lanyard daemon speaks protocol version {0}, this module speaks 1")]
    UnsupportedVersion(i32),
    #[error("the Lanyard daemon refused the request ({code:?}): {message}")]
    Agent {
        code: ErrorCode,
        message: String,
        tries_left: u32,
    },
    #[error("the module was finalized")]
    Closed,
}

/// Whether a request may be sent again after its connection broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads (ListCards, Status): safe to repeat once on a fresh connection.
    Idempotent,
    /// Login, Logout, Sign, ChangePin: never repeated behind the caller's back.
    Never,
}

/// What the module knows about the daemon it talks to.
#[derive(Debug, Clone, Default)]
struct DaemonSeen {
    /// `daemon_instance` of the first daemon answered; a different one means
    /// the daemon restarted and forgot every login.
    instance: Option<Vec<u8>>,
}

/// A per-process pool of connections to the agent socket.
pub struct AgentClient {
    path: PathBuf,
    app_id: Vec<u8>,
    may_spawn_threads: bool,
    idle: Mutex<Vec<Connection>>,
    next_request_id: AtomicU64,
    seen: Mutex<DaemonSeen>,
    /// Set when a connect timed out: no new connects before this instant.
    backoff_until: Mutex<Option<Instant>>,
    /// Incremented each time the daemon instance changes.
    epoch: AtomicU64,
    /// The last daemon greeted runs in protected-authentication-path mode.
    protected_path: AtomicBool,
    closed: AtomicBool,
}

impl AgentClient {
    /// A client for the socket at `path`; nothing is connected yet.
    /// `may_spawn_threads` is false when the application said
    /// CKF_LIBRARY_CANT_CREATE_OS_THREADS (connect then has no timeout).
    pub fn new(path: PathBuf, app_id: Vec<u8>, may_spawn_threads: bool) -> Self {
        AgentClient {
            path,
            app_id,
            may_spawn_threads,
            idle: Mutex::new(Vec::new()),
            next_request_id: AtomicU64::new(1),
            seen: Mutex::new(DaemonSeen::default()),
            backoff_until: Mutex::new(None),
            epoch: AtomicU64::new(0),
            protected_path: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Connects once (Hello included) and keeps the connection; returns the
    /// daemon's HelloReply, or the error if it cannot be reached.
    pub fn probe(&self) -> Result<HelloReply, ClientError> {
        let (conn, hello) = self.connect()?;
        self.checkin(conn);
        Ok(hello)
    }

    /// Changes each time a restarted daemon is seen.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the daemon last greeted is in protected-authentication-path
    /// mode (tokens report CKF_PROTECTED_AUTHENTICATION_PATH, C_Login takes a NULL PIN).
    pub fn protected_path(&self) -> bool {
        self.protected_path.load(Ordering::Acquire)
    }

    /// One request, one response. Daemon errors come back as
    /// [`ClientError::Agent`]; a broken pooled connection is retried once on a
    /// fresh one when `retry` allows it.
    pub fn call(&self, body: request::Body, retry: Retry) -> Result<response::Body, ClientError> {
        let mut req = Request {
            request_id: 0,
            app_id: self.app_id.clone(),
            body: Some(body),
        };
        let result = self.send(&mut req, retry);
        wipe_secrets(&mut req);
        result
    }

    fn send(&self, req: &mut Request, retry: Retry) -> Result<response::Body, ClientError> {
        let mut may_retry = retry == Retry::Idempotent;
        let mut first_attempt = true;
        loop {
            // A retry always goes out on a new connection.
            let (mut conn, reused) = self.checkout(first_attempt)?;
            first_attempt = false;
            req.request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
            match conn.round_trip(req, timeout_for(req)) {
                Ok(resp) => {
                    self.checkin(conn);
                    return into_body(resp);
                }
                Err(e) => {
                    drop(conn);
                    if may_retry && reused && e.is_broken_connection() {
                        may_retry = false;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Closes every idle connection and refuses further requests.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.idle).clear();
    }

    /// In a forked child, for the parent's client: refuses further requests
    /// and closes the child's copies of the idle connections, unless the
    /// pool's lock was held by a parent thread when the process was copied
    /// (that thread does not exist here: its lock would never be released,
    /// and the list may be half changed). Closing a copy leaves the parent's
    /// socket open; nothing is sent or shut down.
    pub fn abandon(&self) {
        self.closed.store(true, Ordering::Release);
        match self.idle.try_lock() {
            Ok(mut idle) => idle.clear(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clear(),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }

    /// Takes an idle connection that is still alive (if `pooled_ok`), or
    /// connects a new one. The flag says whether it came from the pool.
    fn checkout(&self, pooled_ok: bool) -> Result<(Connection, bool), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        if pooled_ok {
            let current = lock(&self.seen).instance.clone();
            // Dead or pre-restart connections are dropped on the way.
            while let Some(conn) = self.pop_idle() {
                if Some(conn.instance()) == current.as_deref() && conn.is_alive() {
                    return Ok((conn, true));
                }
            }
        }
        let (conn, _) = self.connect()?;
        Ok((conn, false))
    }

    fn pop_idle(&self) -> Option<Connection> {
        lock(&self.idle).pop()
    }

    fn checkin(&self, conn: Connection) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Connects and says Hello; notes a restarted daemon, and backs off from
    /// a daemon that accepts but does not answer (e.g. stopped).
    fn connect(&self) -> Result<(Connection, HelloReply), ClientError> {
        if lock(&self.backoff_until).is_some_and(|until| Instant::now() < until) {
            return Err(ClientError::Unreachable {
                path: self.path.display().to_string(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the daemon did not answer a moment ago",
                ),
            });
        }
        let result = self.connect_now();
        let timed_out = matches!(
            &result,
            Err(ClientError::Unreachable { source, .. })
                if matches!(source.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
        );
        *lock(&self.backoff_until) = timed_out.then(|| Instant::now() + UNRESPONSIVE_BACKOFF);
        result
    }

    fn connect_now(&self) -> Result<(Connection, HelloReply), ClientError> {
        let client = format!(
            "lanyard-pkcs11 {} pid {}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let (conn, hello) =
            Connection::open(&self.path, self.may_spawn_threads, &self.app_id, id, client)?;
        self.protected_path
            .store(hello.protected_path, Ordering::Release);
        let mut seen = lock(&self.seen);
        match &seen.instance {
            Some(old) if *old != hello.daemon_instance => {
                seen.instance = Some(hello.daemon_instance.clone());
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
            Some(_) => {}
            None => seen.instance = Some(hello.daemon_instance.clone()),
        }
        drop(seen);
        Ok((conn, hello))
    }
}

/// The read timeout for a request: short for state queries, long for key
/// operations, longest for a protected login (the user is typing).
fn timeout_for(req: &Request) -> Duration {
    match &req.body {
        Some(request::Body::ListCards(_))
        | Some(request::Body::Logout(_))
        | Some(request::Body::Status(_))
        | Some(request::Body::Hello(_)) => QUERY_TIMEOUT,
        Some(request::Body::Login(l)) if l.protected => PROTECTED_LOGIN_TIMEOUT,
        _ => REQUEST_TIMEOUT,
    }
}

/// Overwrites the PINs a request carried, once it has been sent.
fn wipe_secrets(req: &mut Request) {
    use zeroize::Zeroize;
    match req.body.as_mut() {
        Some(request::Body::Login(l)) => l.pin.zeroize(),
        Some(request::Body::ChangePin(c)) => {
            c.old_pin.zeroize();
            c.new_pin.zeroize();
        }
        Some(request::Body::Enroll(e)) => e.pin.zeroize(),
        Some(request::Body::Sign(s)) => s.context_pin.zeroize(),
        _ => {}
    }
}

impl ClientError {
    /// Whether the connection itself died (the daemon closed it: it stopped,
    /// crashed or restarted), as opposed to the daemon answering with an
    /// error, or not answering in time (a slow daemon is not asked twice).
    pub fn is_broken_connection(&self) -> bool {
        matches!(self, ClientError::Io(io) if !matches!(io.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock))
    }
}

/// Splits a Response into its body or the daemon's error.
fn into_body(resp: lanyard_proto::agent::Response) -> Result<response::Body, ClientError> {
    if let Some(err) = resp.error {
        return Err(ClientError::Agent {
            code: ErrorCode::try_from(err.code).unwrap_or(ErrorCode::Internal),
            message: err.message,
            tries_left: err.tries_left,
        });
    }
    resp.body
        .ok_or_else(|| ClientError::Protocol("response without body or error".into()))
}

/// Locks a mutex, recovering it if another thread panicked while holding it
/// (a panic is caught at the FFI boundary; the data stays consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_proto::agent::{ListCards, Login, Sign};

    fn req(body: request::Body) -> Request {
        Request {
            request_id: 1,
            app_id: vec![0; 16],
            body: Some(body),
        }
    }

    #[test]
    fn state_queries_wait_less_than_key_operations() {
        assert_eq!(
            timeout_for(&req(request::Body::ListCards(ListCards {}))),
            QUERY_TIMEOUT
        );
        assert_eq!(
            timeout_for(&req(request::Body::Sign(Sign::default()))),
            REQUEST_TIMEOUT
        );
        assert_eq!(
            timeout_for(&req(request::Body::Login(Login::default()))),
            REQUEST_TIMEOUT
        );
        assert_eq!(
            timeout_for(&req(request::Body::Login(Login {
                protected: true,
                ..Login::default()
            }))),
            PROTECTED_LOGIN_TIMEOUT
        );
    }

    #[test]
    fn only_a_dead_connection_is_worth_a_retry() {
        let io = |kind| ClientError::Io(io::Error::new(kind, "x"));
        assert!(io(io::ErrorKind::BrokenPipe).is_broken_connection());
        assert!(io(io::ErrorKind::UnexpectedEof).is_broken_connection());
        assert!(!io(io::ErrorKind::TimedOut).is_broken_connection());
        assert!(!io(io::ErrorKind::WouldBlock).is_broken_connection());
        assert!(!ClientError::Agent {
            code: ErrorCode::Internal,
            message: String::new(),
            tries_left: 0
        }
        .is_broken_connection());
    }

    #[test]
    fn pins_are_wiped_after_sending() {
        let mut r = req(request::Body::Login(Login {
            card_id: "C".into(),
            pin: "123456".into(),
            protected: false,
        }));
        wipe_secrets(&mut r);
        let Some(request::Body::Login(l)) = r.body else {
            panic!("body changed")
        };
        assert!(l.pin.is_empty());
        assert_eq!(l.card_id, "C");

        let mut r = req(request::Body::Sign(lanyard_proto::agent::Sign {
            card_id: "C".into(),
            context_pin: "654321".into(),
            data: vec![1, 2, 3],
            ..Default::default()
        }));
        wipe_secrets(&mut r);
        let Some(request::Body::Sign(s)) = r.body else {
            panic!("body changed")
        };
        assert!(s.context_pin.is_empty());
        assert_eq!(s.data, vec![1, 2, 3]);
    }

    #[test]
    fn an_absent_socket_is_unreachable_at_once() {
        let client = AgentClient::new("/nonexistent/lanyard/agent.sock".into(), vec![0; 16], true);
        let start = Instant::now();
        let err = client.call(request::Body::ListCards(ListCards {}), Retry::Idempotent);
        assert!(matches!(err, Err(ClientError::Unreachable { .. })));
        assert!(start.elapsed() < Duration::from_millis(200));
        client.close();
        assert!(matches!(
            client.call(request::Body::ListCards(ListCards {}), Retry::Idempotent),
            Err(ClientError::Closed)
        ));
    }
}
