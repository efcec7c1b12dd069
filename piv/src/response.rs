//! Sending response data that may not fit: a response longer than the
//! command's Ne goes out in parts, 61xx telling how much remains for GET
//! RESPONSE (ISO 7816-4 §5.1.3 and §7.6.1).

use crate::apdu;
use crate::status::Status;

/// Most data bytes in one response: vpcd and pcsc-lite carry a response
/// APDU of at most 65535 bytes, status word included.
pub const MAX_RESPONSE_DATA: usize = 65533;

/// Response data still waiting for GET RESPONSE.
#[derive(Debug, Default)]
pub struct Pending {
    data: Vec<u8>,
    offset: usize,
}

impl Pending {
    /// Bytes not yet sent.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.offset
    }
}

/// Sends as much of `data` as `ne` allows; returns the response APDU and
/// what is left for GET RESPONSE (if anything).
pub fn send(data: Vec<u8>, ne: Option<usize>) -> (Vec<u8>, Option<Pending>) {
    next_part(Pending { data, offset: 0 }, ne)
}

/// The next part of `pending` for a GET RESPONSE expecting `ne` bytes.
pub fn next_part(mut pending: Pending, ne: Option<usize>) -> (Vec<u8>, Option<Pending>) {
    let limit = ne.unwrap_or(0).min(MAX_RESPONSE_DATA);
    let take = pending.remaining().min(limit);
    let part = &pending.data[pending.offset..pending.offset + take];
    pending.offset += take;
    let remaining = pending.remaining();
    if remaining == 0 {
        return (apdu::response(part, Status::Ok), None);
    }
    // 61 00 means 256 or more bytes remain.
    let sw2 = u8::try_from(remaining).unwrap_or(0);
    let out = apdu::response(part, Status::MoreData(sw2));
    (out, Some(pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_responses_go_at_once() {
        let (out, rest) = send(vec![1, 2, 3], Some(256));
        assert_eq!(out, [1, 2, 3, 0x90, 0x00]);
        assert!(rest.is_none());
        let (out, rest) = send(Vec::new(), None);
        assert_eq!(out, [0x90, 0x00]);
        assert!(rest.is_none());
    }

    #[test]
    fn long_responses_go_in_parts() {
        let data: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let (out, rest) = send(data.clone(), Some(256));
        assert_eq!(out.len(), 258);
        assert_eq!(&out[256..], &[0x61, 0x00]);
        let (out2, rest) = next_part(rest.expect("more"), Some(256));
        assert_eq!(&out2[256..], &[0x61, 88]);
        let (out3, rest) = next_part(rest.expect("more"), Some(88));
        assert_eq!(&out3[88..], &[0x90, 0x00]);
        assert!(rest.is_none());
        let joined: Vec<u8> = [&out[..256], &out2[..256], &out3[..88]].concat();
        assert_eq!(joined, data);
    }

    #[test]
    fn no_le_means_no_data_yet() {
        let (out, rest) = send(vec![5; 10], None);
        assert_eq!(out, [0x61, 10]);
        let (out, _) = next_part(rest.expect("pending"), Some(10));
        assert_eq!(out, [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0x90, 0x00]);
    }
}
