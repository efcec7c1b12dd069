//! Command APDUs as ISO 7816-4 §5.1 defines them: the four cases in short
//! and extended length, parsed without trusting any length byte, and the
//! response APDU (data followed by SW1SW2).

use crate::status::Status;

/// CLA bit 0x10: more commands of this chain follow.
pub const CLA_CHAINING: u8 = 0x10;

/// A parsed command APDU borrowing the caller's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// Class byte as sent.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// The command data field (empty for cases 1 and 2).
    pub data: &'a [u8],
    /// Ne, the most response bytes expected; `None` when Le is absent.
    pub ne: Option<usize>,
    /// True when Lc/Le used the extended (3-byte / 2-byte) form.
    pub extended: bool,
}

impl Command<'_> {
    /// True when CLA says more commands of this chain follow.
    pub fn is_chained(&self) -> bool {
        self.cla & CLA_CHAINING != 0
    }
}

/// Parses `bytes` as one command APDU; a length that does not add up is
/// 6700, a class other than 00/10 (interindustry, no SM, channel 0) 6E00.
pub fn parse(bytes: &[u8]) -> Result<Command<'_>, Status> {
    let (header, body) = match bytes.split_first_chunk::<4>() {
        Some(split) => split,
        None => return Err(Status::WrongLength),
    };
    let [cla, ins, p1, p2] = *header;
    if cla & !CLA_CHAINING != 0 {
        return Err(if cla & 0x80 == 0 && cla & 0x0C != 0 {
            Status::SecureMessagingUnsupported
        } else {
            Status::ClaUnsupported
        });
    }
    let (data, ne, extended) = parse_body(body)?;
    Ok(Command {
        cla,
        ins,
        p1,
        p2,
        data,
        ne,
        extended,
    })
}

/// Splits what follows the header into (data, Ne, extended).
fn parse_body(body: &[u8]) -> Result<(&[u8], Option<usize>, bool), Status> {
    match body {
        // Case 1.
        [] => Ok((&[], None, false)),
        // Case 2S.
        [le] => Ok((&[], Some(short_ne(*le)), false)),
        // Extended: a zero byte, then two length bytes.
        [0, b1, b2, rest @ ..] => {
            let n = usize::from(u16::from_be_bytes([*b1, *b2]));
            if rest.is_empty() {
                // Case 2E.
                return Ok((&[], Some(extended_ne(n)), true));
            }
            if n == 0 {
                return Err(Status::WrongLength);
            }
            match rest.len().checked_sub(n) {
                Some(0) => Ok((rest, None, true)),
                Some(2) => {
                    let le = u16::from_be_bytes([rest[n], rest[n + 1]]);
                    Ok((&rest[..n], Some(extended_ne(usize::from(le))), true))
                }
                _ => Err(Status::WrongLength),
            }
        }
        // A zero byte that is neither Le alone nor an extended length.
        [0, ..] => Err(Status::WrongLength),
        // Short Lc (non-zero).
        [lc, rest @ ..] => {
            let n = usize::from(*lc);
            match rest.len().checked_sub(n) {
                Some(0) => Ok((rest, None, false)),
                Some(1) => Ok((&rest[..n], Some(short_ne(rest[n])), false)),
                _ => Err(Status::WrongLength),
            }
        }
    }
}

fn short_ne(le: u8) -> usize {
    if le == 0 {
        256
    } else {
        usize::from(le)
    }
}

fn extended_ne(le: usize) -> usize {
    if le == 0 {
        65536
    } else {
        le
    }
}

/// A response APDU: `data` then the status word.
pub fn response(data: &[u8], status: Status) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2);
    out.extend_from_slice(data);
    out.extend_from_slice(&status.bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_cases_short() {
        let c = parse(&[0, 0xA4, 4, 0]).expect("case 1");
        assert_eq!((c.data.len(), c.ne), (0, None));
        let c = parse(&[0, 0xC0, 0, 0, 0]).expect("case 2");
        assert_eq!(c.ne, Some(256));
        let c = parse(&[0, 0x20, 0, 0x80, 2, 1, 2]).expect("case 3");
        assert_eq!((c.data, c.ne), (&[1u8, 2][..], None));
        let c = parse(&[0x10, 0x87, 7, 0x9A, 1, 9, 0x20]).expect("case 4");
        assert_eq!(
            (c.data, c.ne, c.is_chained()),
            (&[9u8][..], Some(0x20), true)
        );
    }

    #[test]
    fn four_cases_extended() {
        let c = parse(&[0, 0xCB, 0x3F, 0xFF, 0, 0, 0]).expect("case 2E");
        assert_eq!((c.ne, c.extended), (Some(65536), true));
        let c = parse(&[0, 0xCB, 0x3F, 0xFF, 0, 0, 2, 5, 6]).expect("case 3E");
        assert_eq!((c.data, c.ne), (&[5u8, 6][..], None));
        let c = parse(&[0, 0xCB, 0x3F, 0xFF, 0, 0, 1, 5, 0x01, 0x00]).expect("case 4E");
        assert_eq!((c.data, c.ne), (&[5u8][..], Some(256)));
    }

    #[test]
    fn bad_lengths_and_classes() {
        for bad in [
            &[0u8, 0xA4, 4][..],
            &[0, 0xA4, 4, 0, 3, 1, 2],
            &[0, 0xA4, 4, 0, 1, 1, 2, 3],
            &[0, 0xA4, 4, 0, 0, 0],
            &[0, 0xA4, 4, 0, 0, 0, 0, 1],
            &[0, 0xA4, 4, 0, 0, 0, 2, 1],
            &[0, 0xA4, 4, 0, 0, 0, 1, 1, 0],
        ] {
            assert_eq!(parse(bad), Err(Status::WrongLength), "{bad:02X?}");
        }
        assert_eq!(parse(&[0x80, 0xA4, 4, 0]), Err(Status::ClaUnsupported));
        assert_eq!(parse(&[0x01, 0xA4, 4, 0]), Err(Status::ClaUnsupported));
        assert_eq!(
            parse(&[0x0C, 0xA4, 4, 0]),
            Err(Status::SecureMessagingUnsupported)
        );
    }
}
