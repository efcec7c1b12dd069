//! Blocking framing on one agent connection, for the connection's own
//! thread: the same rules as `lanyard_proto::frame` (4-byte big-endian length
//! + prost body, 1 MiB max), with the request buffer wiped after decoding.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use lanyard_proto::agent::{Request, Response};

use crate::connection::{decode_and_wipe, encode_response, frame_len};
use crate::error::{Error, Result};

/// One client connection served by a thread: reads requests, writes responses.
pub struct BlockingConnection {
    reader: BufReader<UnixStream>,
    body: Vec<u8>,
}

impl BlockingConnection {
    /// Wraps an accepted stream, which must be in blocking mode.
    pub fn new(stream: UnixStream) -> Self {
        BlockingConnection {
            reader: BufReader::new(stream),
            body: Vec::new(),
        }
    }

    /// Reads the next request. `Ok(None)` on a clean close between frames;
    /// an oversized or undecodable frame is `BadRequest`.
    pub fn read_request(&mut self) -> Result<Option<Request>> {
        let mut len = [0u8; 4];
        match self.reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::io("agent connection read", e)),
        }
        self.body.clear();
        self.body.resize(frame_len(len)?, 0);
        self.reader
            .read_exact(&mut self.body)
            .map_err(|e| Error::io("agent connection read", e))?;
        decode_and_wipe(&mut self.body).map(Some)
    }

    /// Writes one response frame in a single write.
    pub fn write_response(&mut self, resp: &Response) -> Result<()> {
        let buf = encode_response(resp)?;
        self.reader
            .get_mut()
            .write_all(&buf)
            .map_err(|e| Error::io("agent connection write", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_proto::agent::{request, Hello};

    fn hello(id: u64) -> Request {
        Request {
            request_id: id,
            app_id: vec![7; 16],
            body: Some(request::Body::Hello(Hello {
                version: 1,
                client: "test".into(),
            })),
        }
    }

    #[test]
    fn frames_are_read_in_order_and_a_close_is_none() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut bytes = lanyard_proto::frame::encode(&hello(1));
        bytes.extend(lanyard_proto::frame::encode(&hello(2)));
        client.write_all(&bytes).unwrap();
        drop(client);
        let mut conn = BlockingConnection::new(server);
        assert_eq!(conn.read_request().unwrap().unwrap().request_id, 1);
        assert_eq!(conn.read_request().unwrap().unwrap().request_id, 2);
        assert!(conn.read_request().unwrap().is_none());
    }

    #[test]
    fn oversized_and_garbage_frames_are_bad_requests() {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(&(2u32 << 20).to_be_bytes()).unwrap();
        let mut conn = BlockingConnection::new(server);
        assert!(matches!(conn.read_request(), Err(Error::BadRequest(_))));

        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(&[0, 0, 0, 3, 0xFF, 0xFF, 0xFF]).unwrap();
        let mut conn = BlockingConnection::new(server);
        assert!(matches!(conn.read_request(), Err(Error::BadRequest(_))));
    }
}
