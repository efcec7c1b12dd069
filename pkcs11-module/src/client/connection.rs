//! One blocking connection to the agent socket: connect with a timeout, the
//! versioned Hello exchange, and request/response round trips in order.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use lanyard_proto::agent::{
    request, response, Hello, HelloReply, ProtocolVersion, Request, Response,
};
use lanyard_proto::frame::{encode, read_frame};

use super::{into_body, ClientError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};

/// A connected, greeted socket.
pub struct Connection {
    stream: UnixStream,
    instance: Vec<u8>,
    /// The read timeout currently set on the socket.
    timeout: Duration,
}

impl Connection {
    /// Connects to `path` and exchanges Hello.
    pub fn open(
        path: &Path,
        may_spawn_threads: bool,
        app_id: &[u8],
        request_id: u64,
        client: String,
    ) -> Result<(Connection, HelloReply), ClientError> {
        let unreachable = |source: io::Error| ClientError::Unreachable {
            path: path.display().to_string(),
            source,
        };
        let stream =
            connect_with_timeout(path, may_spawn_threads, CONNECT_TIMEOUT).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(unreachable)?;
        let mut conn = Connection {
            stream,
            instance: Vec::new(),
            timeout: CONNECT_TIMEOUT,
        };
        let hello = Request {
            request_id,
            app_id: app_id.to_vec(),
            body: Some(request::Body::Hello(Hello {
                version: ProtocolVersion::ProtocolVersion1 as i32,
                client,
            })),
        };
        let reply = match conn.round_trip(&hello, CONNECT_TIMEOUT) {
            Ok(resp) => into_body(resp)?,
            Err(ClientError::Io(e)) => return Err(unreachable(e)),
            Err(e) => return Err(e),
        };
        let response::Body::Hello(reply) = reply else {
            return Err(ClientError::Protocol(
                "Hello answered with another message".into(),
            ));
        };
        if reply.version != ProtocolVersion::ProtocolVersion1 as i32 {
            return Err(ClientError::UnsupportedVersion(reply.version));
        }
        conn.stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        conn.instance = reply.daemon_instance.clone();
        Ok((conn, reply))
    }

    /// The daemon instance this connection greeted.
    pub fn instance(&self) -> &[u8] {
        &self.instance
    }

    /// Sends one request and reads its response (same request id), waiting
    /// at most `timeout` for it.
    pub fn round_trip(
        &mut self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        use std::io::Write;
        if timeout != self.timeout {
            self.stream.set_read_timeout(Some(timeout))?;
            self.timeout = timeout;
        }
        // One buffer, one write; wiped afterwards as it may hold a PIN.
        let frame = zeroize::Zeroizing::new(encode(req));
        if frame.len() - 4 > lanyard_proto::MAX_FRAME_LEN {
            return Err(ClientError::Protocol("request larger than 1 MiB".into()));
        }
        self.stream.write_all(&frame)?;
        let resp: Response = read_frame(&mut self.stream)?;
        if resp.request_id != req.request_id {
            return Err(ClientError::Protocol(format!(
                "response to request {} while waiting for {}",
                resp.request_id, req.request_id
            )));
        }
        Ok(resp)
    }

    /// Whether the daemon still holds the other end: an idle connection must
    /// have nothing to read; EOF means the daemon closed it (e.g. restarted).
    pub fn is_alive(&self) -> bool {
        use std::io::Read;
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let alive = matches!(
            (&self.stream).read(&mut byte),
            Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
        );
        alive && self.stream.set_nonblocking(false).is_ok()
    }
}

/// `UnixStream::connect` with an upper bound on the wait: connect blocks when
/// the daemon's listen backlog is full (e.g. it is stopped). std has no
/// timeout for Unix sockets, so the connect runs on a short-lived thread.
fn connect_with_timeout(
    path: &Path,
    may_spawn_threads: bool,
    timeout: Duration,
) -> io::Result<UnixStream> {
    // The common "no daemon" cases fail at once without a thread.
    std::fs::metadata(path)?;
    if !may_spawn_threads {
        return UnixStream::connect(path);
    }
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("lanyard-connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(owned));
        })?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out connecting to the agent socket",
        )),
    }
}
