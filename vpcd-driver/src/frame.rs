//! vpcd's wire format: every message is a frame with a 2-byte big-endian
//! length. A 1-byte frame from the reader is a control (power off/on, reset,
//! get ATR); a longer one is a command APDU; the card answers ATRs and APDUs.

use std::io::{self, Read, Write};

/// The largest payload a frame can carry (its length is 2 bytes).
pub const MAX_FRAME: usize = u16::MAX as usize;

/// The 1-byte control messages of vpcd's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Power the card off (no reply).
    PowerOff,
    /// Power the card on (no reply).
    PowerOn,
    /// Warm reset (no reply).
    Reset,
    /// Ask for the ATR (the reply is the ATR).
    GetAtr,
}

impl Control {
    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Control::PowerOff => 0,
            Control::PowerOn => 1,
            Control::Reset => 2,
            Control::GetAtr => 4,
        }
    }
}

/// Writes one frame of at most [`MAX_FRAME`] bytes (a longer payload is refused unsent).
pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let length = u16::try_from(payload.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a vpcd frame carries at most {MAX_FRAME} bytes"),
        )
    })?;
    let mut buffer = Vec::with_capacity(payload.len() + 2);
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(payload);
    out.write_all(&buffer)?;
    out.flush()
}

/// Reads one frame's payload (possibly empty: the caller decides whether an
/// empty frame is acceptable). A connection closed mid-frame is an error.
pub fn read_frame(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 2];
    input.read_exact(&mut length)?;
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(length))];
    input.read_exact(&mut payload)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_a_big_endian_length() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &[0x00, 0xA4, 0x04, 0x00]).unwrap();
        write_frame(&mut wire, &[Control::GetAtr.byte()]).unwrap();
        assert_eq!(wire, [0, 4, 0x00, 0xA4, 0x04, 0x00, 0, 1, 4]);

        let mut input = &wire[..];
        assert_eq!(read_frame(&mut input).unwrap(), [0x00, 0xA4, 0x04, 0x00]);
        assert_eq!(read_frame(&mut input).unwrap(), [4]);
        assert_eq!(
            read_frame(&mut input).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn the_largest_frame_passes_and_a_larger_one_is_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &vec![0x5A; MAX_FRAME]).unwrap();
        assert_eq!(&wire[..2], &[0xFF, 0xFF]);
        assert_eq!(read_frame(&mut &wire[..]).unwrap().len(), MAX_FRAME);

        let mut nothing = Vec::new();
        let err = write_frame(&mut nothing, &vec![0; MAX_FRAME + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(nothing.is_empty(), "nothing is written for a refused frame");
    }

    #[test]
    fn a_frame_cut_short_is_an_error() {
        let wire = [0u8, 5, 1, 2];
        assert_eq!(
            read_frame(&mut &wire[..]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            read_frame(&mut &[0u8][..]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn control_bytes_are_vpcds() {
        assert_eq!(
            [
                Control::PowerOff,
                Control::PowerOn,
                Control::Reset,
                Control::GetAtr
            ]
            .map(Control::byte),
            [0, 1, 2, 4]
        );
    }
}
