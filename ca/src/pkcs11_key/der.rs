//! The little DER the token's values need: PKCS#11 gives ECDSA signatures as
//! r||s and RSA public keys as modulus and exponent, X.509 wants DER; and
//! CKA_EC_POINT is a DER OCTET STRING in most modules but raw in some.

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian bytes.
fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().take_while(|b| **b == 0).count();
    let mut content = Vec::with_capacity(bytes.len() + 1);
    match bytes.get(start) {
        None => content.push(0),
        Some(first) => {
            if first & 0x80 != 0 {
                content.push(0);
            }
            content.extend_from_slice(&bytes[start..]);
        }
    }
    tlv(0x02, &content)
}

/// DER ECDSA-Sig-Value from PKCS#11's r||s.
pub(crate) fn ecdsa_signature(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut seq = unsigned(r);
    seq.extend(unsigned(s));
    Some(tlv(0x30, &seq))
}

/// DER RSAPublicKey (PKCS#1) from modulus and exponent.
pub(crate) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut seq = unsigned(n);
    seq.extend(unsigned(e));
    tlv(0x30, &seq)
}

/// Bits in a big-endian unsigned number.
pub(crate) fn bit_length(n: &[u8]) -> usize {
    let start = n.iter().take_while(|b| **b == 0).count();
    match n.get(start) {
        None => 0,
        Some(first) => (n.len() - start - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// The uncompressed point of `len` bytes from CKA_EC_POINT, which is a DER
/// OCTET STRING by the standard but raw in some modules.
pub(crate) fn ec_point(value: &[u8], len: usize) -> Option<Vec<u8>> {
    if value.len() == len && value.first() == Some(&0x04) {
        return Some(value.to_vec());
    }
    let mut header = vec![0x04];
    push_len(&mut header, len);
    let point = value.strip_prefix(header.as_slice())?;
    (point.len() == len && point.first() == Some(&0x04)).then(|| point.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[31] = 1;
        raw[63] = 2; // s is 2 after 31 zero bytes
        let der = ecdsa_signature(&raw).unwrap();
        let mut want = vec![0x30, 0x26, 0x02, 0x21, 0x00, 0x80];
        want.extend(vec![0; 30]);
        want.push(1);
        want.extend([0x02, 0x01, 0x02]);
        assert_eq!(der, want);
        assert!(ecdsa_signature(&[]).is_none());
        assert!(ecdsa_signature(&[1, 2, 3]).is_none());
        // P-384: 96 bytes of r||s give a sequence over 127 bytes (long form).
        let der = ecdsa_signature(&[0xff; 96]).unwrap();
        assert_eq!(&der[..3], &[0x30, 0x66, 0x02]);
    }

    #[test]
    fn rsa_public_keys_and_bit_lengths() {
        let n = [vec![0x00, 0xc0], vec![0x11; 255]].concat();
        assert_eq!(bit_length(&n), 2048);
        assert_eq!(bit_length(&[0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0, 0]), 0);
        let der = rsa_public_key(&n, &[0x01, 0x00, 0x01]);
        // SEQUENCE (long length 0x82 0x01 0x0a) { INTEGER 257 bytes, INTEGER 65537 }
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x0a]);
        assert_eq!(&der[4..8], &[0x02, 0x82, 0x01, 0x01]);
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn ec_points_raw_or_wrapped() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        assert_eq!(ec_point(&point, 65).unwrap(), point);
        let wrapped = [vec![0x04, 65], point.clone()].concat();
        assert_eq!(ec_point(&wrapped, 65).unwrap(), point);
        assert!(ec_point(&wrapped, 97).is_none());
        assert!(ec_point(&[0x04, 0x02, 0x04, 0x01], 65).is_none());
        assert!(ec_point(&[], 65).is_none());
    }
}
