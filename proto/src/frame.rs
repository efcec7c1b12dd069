//! Blocking framing for the agent socket: a 4-byte big-endian length, then one
//! prost message. Used by the PKCS#11 module and the CLI; the daemon has an
//! async twin with the same rules.

use std::io::{self, Read, Write};

use prost::Message;

use crate::MAX_FRAME_LEN;

/// Encodes `msg` as one frame (length prefix + body) in a single buffer, so it
/// goes out in one `write` call.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut buf = Vec::with_capacity(4 + len);
    // encoded_len() is bounded by what prost can hold; frames over the limit
    // are refused by the reader, so a u32 prefix is always enough here.
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode_raw(&mut buf);
    buf
}

/// Writes one frame.
pub fn write_frame<M: Message, W: Write>(w: &mut W, msg: &M) -> io::Result<()> {
    let buf = encode(msg);
    if buf.len() - 4 > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "agent frame larger than 1 MiB",
        ));
    }
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame's body and decodes it. A length over [`MAX_FRAME_LEN`] or
/// a body that does not decode is `InvalidData`; EOF before a frame is
/// `UnexpectedEof`.
pub fn read_frame<M: Message + Default, R: Read>(r: &mut R) -> io::Result<M> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("agent frame of {len} bytes exceeds the 1 MiB limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    M::decode(body.as_slice())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad agent frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{request, Hello, Request};

    #[test]
    fn round_trip() {
        let req = Request {
            request_id: 7,
            app_id: vec![1; 16],
            body: Some(request::Body::Hello(Hello {
                version: 1,
                client: "test".into(),
            })),
        };
        let buf = encode(&req);
        let back: Request = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn oversized_length_is_refused_without_allocating() {
        let buf = (u32::MAX).to_be_bytes();
        let err = read_frame::<Request, _>(&mut &buf[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_frame_is_eof() {
        let mut buf = encode(&Request::default());
        buf.extend_from_slice(&10u32.to_be_bytes());
        buf.extend_from_slice(&[0; 3]);
        let mut r = buf.as_slice();
        let _: Request = read_frame(&mut r).unwrap();
        let err = read_frame::<Request, _>(&mut r).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn garbage_body_is_invalid_data() {
        let mut buf = 3u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_frame::<Request, _>(&mut buf.as_slice()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
