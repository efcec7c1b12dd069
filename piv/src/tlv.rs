//! BER-TLV as PIV uses it (ISO 7816-4 §5.2, SP 800-73-4 part 1 §3): tags of
//! one to three bytes, definite lengths of up to three length bytes. Decoding
//! never trusts a length; encoding always writes the shortest form.

/// One decoded TLV borrowing its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag bytes as a big-endian number (e.g. 0x5FC102, 0x7C).
    pub tag: u32,
    /// The value.
    pub value: &'a [u8],
}

/// Reads one TLV from the front of `bytes`; returns it and what follows, or
/// `None` when the bytes end early, the tag is longer than three bytes or
/// the length is indefinite or longer than three bytes.
pub fn read(bytes: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (tag, rest) = read_tag(bytes)?;
    let (len, rest) = read_len(rest)?;
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((Tlv { tag, value }, rest))
}

/// Decodes `bytes` as a sequence of TLVs filling it exactly.
pub fn read_all(mut bytes: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (tlv, rest) = read(bytes)?;
        out.push(tlv);
        bytes = rest;
    }
    Some(out)
}

/// Decodes `bytes` as exactly one TLV with nothing after it.
pub fn read_one(bytes: &[u8]) -> Option<Tlv<'_>> {
    match read(bytes)? {
        (tlv, []) => Some(tlv),
        _ => None,
    }
}

/// The value of the first TLV tagged `tag` among `tlvs`.
pub fn find<'a>(tlvs: &[Tlv<'a>], tag: u32) -> Option<&'a [u8]> {
    tlvs.iter().find(|t| t.tag == tag).map(|t| t.value)
}

fn read_tag(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (&first, mut rest) = bytes.split_first()?;
    let mut tag = u32::from(first);
    if first & 0x1F != 0x1F {
        return Some((tag, rest));
    }
    for _ in 0..2 {
        let (&b, tail) = rest.split_first()?;
        tag = (tag << 8) | u32::from(b);
        rest = tail;
        if b & 0x80 == 0 {
            return Some((tag, rest));
        }
    }
    None
}

fn read_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first < 0x80 {
        return Some((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7F);
    if n == 0 || n > 3 || rest.len() < n {
        return None;
    }
    let (len_bytes, rest) = rest.split_at(n);
    let len = len_bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((len, rest))
}

/// Appends `tag`, the DER length of `value` and `value` to `out`.
pub fn write(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    let tag_bytes = tag.to_be_bytes();
    let skip = tag_bytes.iter().take_while(|&&b| b == 0).count().min(3);
    out.extend_from_slice(&tag_bytes[skip..]);
    let len = value.len();
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(value);
}

/// `tag`, length and `value` as a new buffer.
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    write(&mut out, tag, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        assert_eq!(encode(0x53, &[]), [0x53, 0x00]);
        assert_eq!(encode(0x5FC102, &[1]), [0x5F, 0xC1, 0x02, 0x01, 0x01]);
        let long = encode(0x70, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x70, 0x82, 0x01, 0x2C]);
        let (tlv, rest) = read(&[0x7F, 0x61, 0x81, 0x01, 0xAA, 0xBB]).expect("tlv");
        assert_eq!(
            (tlv.tag, tlv.value, rest),
            (0x7F61, &[0xAA][..], &[0xBB][..])
        );
    }

    #[test]
    fn malformed_is_refused() {
        for bad in [
            &[][..],
            &[0x53],
            &[0x53, 0x02, 0x00],
            &[0x53, 0x80],
            &[0x53, 0x84, 0, 0, 0, 1],
            &[0x53, 0x82, 0x01],
            &[0x5F, 0xC1, 0x82, 0x80],
        ] {
            assert_eq!(read(bad), None, "{bad:02X?}");
        }
        assert_eq!(read_one(&[0x53, 0x00, 0x00]), None);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_all(&bytes);
        }

        #[test]
        fn encode_then_read_round_trips(
            tag in prop_oneof![
                (0u32..=0xFF).prop_filter("one-byte tag", |t| t & 0x1F != 0x1F),
                (0x1Fu32..=0xFF).prop_map(|t| (t | 0x1F) << 8 | 0x41),
                Just(0x5FC105u32),
            ],
            value in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let bytes = encode(tag, &value);
            let tlv = read_one(&bytes).expect("round trip");
            prop_assert_eq!(tlv.tag, tag);
            prop_assert_eq!(tlv.value, &value[..]);
        }
    }
}
