//! A blocking agent client for the CLI: connect, Hello, then one request
//! and one response at a time, with `lanyard_proto::frame`.

use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lanyard_proto::agent::{
    request, response, ErrorCode, Hello, ProtocolVersion, Request, Response,
};
use lanyard_proto::frame::{encode, read_frame};
use zeroize::Zeroizing;

use super::CliError;

/// A connected, greeted agent session.
pub struct AgentClient {
    stream: UnixStream,
    path: PathBuf,
    app_id: Vec<u8>,
    next_id: u64,
}

impl AgentClient {
    /// Connects to the daemon at `path` and does the Hello exchange.
    pub fn connect(path: &Path) -> Result<Self, CliError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
                CliError::DaemonNotRunning(path.to_path_buf())
            }
            _ => CliError::DaemonUnreachable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        let mut app_id = vec![0u8; 16];
        getrandom::getrandom(&mut app_id)
            .map_err(|e| CliError::Other(format!("no randomness from the OS: {e}")))?;
        let mut client = AgentClient {
            stream,
            path: path.to_path_buf(),
            app_id,
            next_id: 1,
        };
        client.set_timeout(Duration::from_secs(30))?;
        let hello = client.call(request::Body::Hello(Hello {
            version: ProtocolVersion::ProtocolVersion1 as i32,
            client: format!(
                "lanyard {} pid {}",
                crate::DAEMON_VERSION,
                std::process::id()
            ),
        }))?;
        match hello {
            response::Body::Hello(_) => Ok(client),
            _ => Err(CliError::Other(
                "lanyardd answered Hello with something else".into(),
            )),
        }
    }

    /// Sets how long to wait for an answer (enrolment waits for the CA).
    pub fn set_timeout(&mut self, t: Duration) -> Result<(), CliError> {
        self.stream
            .set_read_timeout(Some(t))
            .and_then(|_| self.stream.set_write_timeout(Some(t)))
            .map_err(|e| self.unreachable(e))
    }

    fn unreachable(&self, e: std::io::Error) -> CliError {
        CliError::DaemonUnreachable {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Sends one request and returns its body, or the daemon's error.
    pub fn call(&mut self, body: request::Body) -> Result<response::Body, CliError> {
        let request_id = self.next_id;
        self.next_id += 1;
        let req = Request {
            request_id,
            app_id: self.app_id.clone(),
            body: Some(body),
        };
        // The encoded frame holds the request's PIN or code: wiped after the write.
        let frame = Zeroizing::new(encode(&req));
        let written = if frame.len() - 4 > lanyard_proto::MAX_FRAME_LEN {
            Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                "agent frame larger than 1 MiB",
            ))
        } else {
            self.stream.write_all(&frame)
        };
        drop(frame);
        wipe_secrets(req);
        if let Err(e) = written {
            // The daemon may have answered and closed (e.g. refusing this uid):
            // read what it said before reporting the broken pipe.
            return match read_frame::<Response, _>(&mut self.stream) {
                Ok(Response {
                    error: Some(err), ..
                }) => Err(CliError::Agent {
                    code: ErrorCode::try_from(err.code).unwrap_or(ErrorCode::Internal),
                    message: err.message,
                }),
                _ => Err(self.unreachable(e)),
            };
        }
        let resp: Response = read_frame(&mut self.stream).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => CliError::DaemonUnreachable {
                path: self.path.clone(),
                reason: "no answer in time".into(),
            },
            _ => self.unreachable(e),
        })?;
        if let Some(err) = resp.error {
            let code = ErrorCode::try_from(err.code).unwrap_or(ErrorCode::Internal);
            return Err(CliError::Agent {
                code,
                message: err.message,
            });
        }
        if resp.request_id != request_id {
            return Err(CliError::Other(format!(
                "lanyardd answered request {} with {}",
                request_id, resp.request_id
            )));
        }
        resp.body
            .ok_or_else(|| CliError::Other("lanyardd sent an empty answer".into()))
    }
}

/// Overwrites the PINs and enrolment or reset code a request carried, once it is sent.
fn wipe_secrets(mut req: Request) {
    use zeroize::Zeroize;
    match req.body.as_mut() {
        Some(request::Body::Login(m)) => m.pin.zeroize(),
        Some(request::Body::Enroll(m)) => {
            m.pin.zeroize();
            m.code.zeroize();
        }
        Some(request::Body::ChangePin(m)) => {
            m.old_pin.zeroize();
            m.new_pin.zeroize();
        }
        Some(request::Body::Renew(m)) => m.pin.zeroize(),
        Some(request::Body::Unlock(m)) => m.pin.zeroize(),
        Some(request::Body::ResetPin(m)) => {
            m.new_pin.zeroize();
            m.code.zeroize();
        }
        _ => {}
    }
}
