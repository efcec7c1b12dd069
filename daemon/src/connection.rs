//! Async framing on one agent connection: the same rules as
//! `lanyard_proto::frame` (4-byte big-endian length + prost body, 1 MiB max).

use lanyard_proto::agent::{Request, Response};
use lanyard_proto::MAX_FRAME_LEN;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// One client connection, reading requests and writing responses.
pub struct Connection {
    stream: BufReader<UnixStream>,
    body: Vec<u8>,
}

impl Connection {
    /// Wraps an accepted stream.
    pub fn new(stream: UnixStream) -> Self {
        Connection {
            stream: BufReader::new(stream),
            body: Vec::new(),
        }
    }

    /// Reads the next request. `Ok(None)` on a clean close between frames;
    /// an oversized or undecodable frame is `BadRequest`.
    pub async fn read_request(&mut self) -> Result<Option<Request>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::io("agent connection read", e)),
        }
        self.body.clear();
        self.body.resize(frame_len(len)?, 0);
        self.stream
            .read_exact(&mut self.body)
            .await
            .map_err(|e| Error::io("agent connection read", e))?;
        decode_and_wipe(&mut self.body).map(Some)
    }

    /// Writes one response frame in a single write.
    pub async fn write_response(&mut self, resp: &Response) -> Result<()> {
        let buf = encode_response(resp)?;
        let stream = self.stream.get_mut();
        stream
            .write_all(&buf)
            .await
            .map_err(|e| Error::io("agent connection write", e))?;
        Ok(())
    }
}

/// The body length a frame header announces, refused above 1 MiB.
pub(crate) fn frame_len(header: [u8; 4]) -> Result<usize> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(Error::BadRequest(format!(
            "frame of {len} bytes exceeds the 1 MiB limit"
        )));
    }
    Ok(len)
}

/// Decodes a request body, then wipes it (it may hold a PIN) before the
/// buffer is reused or freed, whether or not it decoded.
pub(crate) fn decode_and_wipe(body: &mut Vec<u8>) -> Result<Request> {
    let req = Request::decode(body.as_slice())
        .map_err(|e| Error::BadRequest(format!("undecodable frame: {e}")));
    zeroize::Zeroize::zeroize(body);
    req
}

/// One response frame, refused above 1 MiB.
pub(crate) fn encode_response(resp: &Response) -> Result<Vec<u8>> {
    let buf = lanyard_proto::frame::encode(resp);
    if buf.len() - 4 > MAX_FRAME_LEN {
        return Err(Error::Internal("response larger than 1 MiB".into()));
    }
    Ok(buf)
}
