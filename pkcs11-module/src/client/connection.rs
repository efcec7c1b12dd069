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
use lanyard_proto::frame::encode;
use prost::Message;

use super::{into_body, ClientError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};

/// Bytes asked for by the first read of a response: a whole Sign answer
/// (and most others) arrives in that one read.
const READ_CHUNK: usize = 8192;

/// A connected, greeted socket.
pub struct Connection {
    stream: UnixStream,
    instance: Vec<u8>,
    /// The read timeout currently set on the socket.
    timeout: Duration,
    /// Reused for each response (responses carry no secrets).
    read_buf: Vec<u8>,
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
            read_buf: Vec::new(),
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
        let resp = self.read_response()?;
        if resp.request_id != req.request_id {
            return Err(ClientError::Protocol(format!(
                "response to request {} while waiting for {}",
                resp.request_id, req.request_id
            )));
        }
        Ok(resp)
    }

    /// Reads one response frame (4-byte big-endian length + body, at most
    /// 1 MiB), usually in a single read; bytes after it are out of protocol.
    fn read_response(&mut self) -> Result<Response, ClientError> {
        use std::io::Read;
        let buf = &mut self.read_buf;
        buf.resize(READ_CHUNK.max(buf.len()), 0);
        let mut filled = 0;
        let mut total = 4;
        while filled < total {
            let n = self.stream.read(&mut buf[filled..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the daemon closed the connection",
                )
                .into());
            }
            filled += n;
            if total == 4 && filled >= 4 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if len > lanyard_proto::MAX_FRAME_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("agent frame of {len} bytes exceeds the 1 MiB limit"),
                    )
                    .into());
                }
                total = 4 + len;
                if buf.len() < total {
                    buf.resize(total, 0);
                }
            }
        }
        if filled > total {
            return Err(ClientError::Protocol(
                "the daemon sent more than one response".into(),
            ));
        }
        // Same errors as lanyard_proto::frame::read_frame.
        let resp = Response::decode(&buf[4..total]).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad agent frame: {e}")).into()
        });
        // A rare large answer (a long card list) is not kept for every call.
        if buf.len() > 8 * READ_CHUNK {
            *buf = Vec::new();
        }
        resp
    }

    /// Whether the daemon still holds the other end: an idle connection must
    /// have nothing to read; EOF means the daemon closed it (e.g. restarted).
    pub fn is_alive(&self) -> bool {
        use std::os::fd::AsFd;
        crate::ffi::socket_idle(self.stream.as_fd())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pair() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let conn = Connection {
            stream: a,
            instance: Vec::new(),
            timeout: Duration::from_secs(5),
            read_buf: Vec::new(),
        };
        (conn, b)
    }

    fn response(id: u64, filler: usize) -> Response {
        Response {
            request_id: id,
            error: Some(lanyard_proto::agent::Error {
                code: 1,
                message: "x".repeat(filler),
                tries_left: 0,
            }),
            body: None,
        }
    }

    #[test]
    fn responses_small_large_and_split_are_read_whole() {
        let (mut conn, mut peer) = pair();
        for (id, filler) in [(1, 10), (2, 3 * READ_CHUNK), (3, 20)] {
            let frame = encode(&response(id, filler));
            // Split at odd places: inside the length prefix and the body.
            peer.write_all(&frame[..2]).unwrap();
            peer.write_all(&frame[2..7]).unwrap();
            peer.write_all(&frame[7..]).unwrap();
            assert_eq!(conn.read_response().unwrap(), response(id, filler));
        }
        assert!(conn.is_alive());
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let (mut conn, mut peer) = pair();
        peer.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(
            matches!(conn.read_response(), Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::InvalidData)
        );

        let (mut conn, mut peer) = pair();
        let mut two = encode(&response(1, 1));
        two.extend(encode(&response(2, 1)));
        peer.write_all(&two).unwrap();
        assert!(matches!(
            conn.read_response(),
            Err(ClientError::Protocol(_))
        ));

        let (mut conn, mut peer) = pair();
        peer.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
        assert!(
            matches!(conn.read_response(), Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::InvalidData)
        );

        let (mut conn, peer) = pair();
        drop(peer);
        assert!(!conn.is_alive());
        assert!(
            matches!(conn.read_response(), Err(ClientError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
        );
    }

    #[test]
    fn a_connection_with_unread_data_is_not_idle() {
        let (conn, mut peer) = pair();
        assert!(conn.is_alive());
        peer.write_all(b"x").unwrap();
        assert!(!conn.is_alive());
        // The peek left the byte in place.
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut &conn.stream, &mut byte).unwrap();
        assert_eq!(&byte, b"x");
    }
}
