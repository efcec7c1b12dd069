//! vpcd's wire format: each message is a 2-byte big-endian length and that
//! many bytes. A 1-byte message is a control (power off/on, reset, get ATR),
//! anything longer a command APDU; the card answers get-ATR and APDUs only.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// What vpcd sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0: power off (no answer).
    PowerOff,
    /// 1: power on (no answer).
    PowerOn,
    /// 2: warm reset (no answer).
    Reset,
    /// 4: the ATR, please (answered with the ATR).
    GetAtr,
    /// A command APDU (answered with a response APDU).
    Apdu(Vec<u8>),
}

/// Why a frame was refused; the link is reset after any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadFrame {
    /// A frame of length 0 (vpcd never sends one).
    Empty,
    /// A 1-byte control message vpcd does not define.
    UnknownControl(u8),
}

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadFrame::Empty => write!(f, "empty vpcd frame"),
            BadFrame::UnknownControl(c) => write!(f, "unknown vpcd control byte {c:#04x}"),
        }
    }
}

/// Reads one message. `Ok(None)`: the peer closed the connection between
/// messages; `Ok(Some(Err(_)))`: a complete but meaningless frame.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<std::result::Result<Message, BadFrame>>> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("vpcd link read failed", e)),
    }
    // The 2-byte length itself caps a frame at 65535 bytes, which is as long
    // as anything vpcd can send (it refuses longer APDUs), so no larger check.
    let len = usize::from(u16::from_be_bytes(len));
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .await
        .map_err(|e| Error::io("vpcd link closed inside a frame", e))?;
    Ok(Some(match body.as_slice() {
        [] => Err(BadFrame::Empty),
        [0] => Ok(Message::PowerOff),
        [1] => Ok(Message::PowerOn),
        [2] => Ok(Message::Reset),
        [4] => Ok(Message::GetAtr),
        [c] => Err(BadFrame::UnknownControl(*c)),
        _ => Ok(Message::Apdu(body)),
    }))
}

/// Writes one answer (an ATR or a response APDU). Longer than a frame can
/// carry is an error (the applet never answers that long).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<()> {
    let len = u16::try_from(body.len()).map_err(|_| {
        Error::Internal(format!(
            "answer of {} bytes is longer than a vpcd frame",
            body.len()
        ))
    })?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)
        .await
        .map_err(|e| Error::io("vpcd link write failed", e))?;
    w.flush()
        .await
        .map_err(|e| Error::io("vpcd link write failed", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<Option<std::result::Result<Message, BadFrame>>> {
        let mut r = bytes;
        read_message(&mut r).await
    }

    #[tokio::test]
    async fn controls_and_apdus() {
        assert_eq!(read(&[0, 1, 0]).await.unwrap(), Some(Ok(Message::PowerOff)));
        assert_eq!(read(&[0, 1, 1]).await.unwrap(), Some(Ok(Message::PowerOn)));
        assert_eq!(read(&[0, 1, 2]).await.unwrap(), Some(Ok(Message::Reset)));
        assert_eq!(read(&[0, 1, 4]).await.unwrap(), Some(Ok(Message::GetAtr)));
        assert_eq!(
            read(&[0, 4, 0, 0xA4, 4, 0]).await.unwrap(),
            Some(Ok(Message::Apdu(vec![0, 0xA4, 4, 0])))
        );
    }

    #[tokio::test]
    async fn bad_frames_are_told_apart_from_a_closed_link() {
        assert_eq!(read(&[]).await.unwrap(), None);
        assert_eq!(read(&[0, 0]).await.unwrap(), Some(Err(BadFrame::Empty)));
        assert_eq!(
            read(&[0, 1, 3]).await.unwrap(),
            Some(Err(BadFrame::UnknownControl(3)))
        );
        // A length without its bytes, or half a length: the link is broken.
        assert!(read(&[0, 5, 1, 2]).await.is_err());
        // Half a length: the peer went away; nothing to answer either way.
        assert_eq!(read(&[0]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn answers_are_length_prefixed() {
        let mut out = Vec::new();
        write_frame(&mut out, &[0x90, 0x00]).await.unwrap();
        assert_eq!(out, vec![0, 2, 0x90, 0x00]);
        let mut out = Vec::new();
        assert!(write_frame(&mut out, &vec![0; 70_000]).await.is_err());
        assert!(out.is_empty());
    }
}
