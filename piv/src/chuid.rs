//! The Card Holder Unique Identifier (SP 800-73-4 part 1 §3.1.2, tag
//! 5FC102): a FASC-N in the "non-federal issuer" fill (agency, system and
//! credential all nines, per the PIV-I guidance), a GUID derived from the
//! card id (clients use it as the card's serial number), the expiration date
//! (the authentication certificate's notAfter) and an empty issuer signature.

use sha2::{Digest, Sha256};

use crate::certificate;
use crate::tlv;

/// FASC-N characters in their 4-bit values (TIG SCEPACS: BCD, 5-bit with
/// odd parity).
const SS: u8 = 0x0B;
const FS: u8 = 0x0D;
const ES: u8 = 0x0F;

/// The FASC-N fields after the start sentinel, as characters: agency code,
/// system code, credential number, credential series, individual credential
/// issue, person identifier, organizational category, organization
/// identifier, person/organization association.
const FASCN_FIELDS: &[&[u8]] = &[b"9999", b"9999", b"999999", b"0", b"1", b"0000000000"];
const FASCN_TAIL: &[u8] = b"100001";

/// Expiration date when the certificate's notAfter cannot be read.
const NO_EXPIRY: &[u8; 8] = b"99991231";

/// Domain separation for the GUID hash.
const GUID_CONTEXT: &[u8] = b"lanyard-piv-guid\0";

/// The 25-byte FASC-N: 40 characters of 5 bits each.
pub fn fascn() -> [u8; 25] {
    let mut chars = vec![SS];
    for (i, field) in FASCN_FIELDS.iter().enumerate() {
        if i > 0 {
            chars.push(FS);
        }
        chars.extend(field.iter().map(|d| d - b'0'));
    }
    chars.extend(FASCN_TAIL.iter().map(|d| d - b'0'));
    chars.push(ES);
    let lrc = chars.iter().fold(0u8, |acc, c| acc ^ c);
    chars.push(lrc);

    let mut out = [0u8; 25];
    let mut bit = 0usize;
    for c in chars {
        let parity = u8::from(c.count_ones() % 2 == 0);
        // Data bits least significant first, then the parity bit.
        let code = [c & 1, (c >> 1) & 1, (c >> 2) & 1, (c >> 3) & 1, parity];
        for b in code {
            if b == 1 {
                out[bit / 8] |= 0x80 >> (bit % 8);
            }
            bit += 1;
        }
    }
    out
}

/// A stable RFC 9562 version-8 GUID for `card_id`.
pub fn guid(card_id: &str) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(GUID_CONTEXT)
        .chain_update(card_id.as_bytes())
        .finalize();
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&digest[..16]);
    guid[6] = (guid[6] & 0x0F) | 0x80;
    guid[8] = (guid[8] & 0x3F) | 0x80;
    guid
}

/// The CHUID data object wrapped in tag 53, for `card_id` whose
/// authentication certificate is `auth_cert_der`.
pub fn chuid(card_id: &str, auth_cert_der: Option<&[u8]>) -> Vec<u8> {
    let expiry = auth_cert_der
        .and_then(certificate::not_after_yyyymmdd)
        .unwrap_or(*NO_EXPIRY);
    let mut body = Vec::new();
    tlv::write(&mut body, 0x30, &fascn());
    tlv::write(&mut body, 0x34, &guid(card_id));
    tlv::write(&mut body, 0x35, &expiry);
    tlv::write(&mut body, 0x3E, &[]);
    tlv::write(&mut body, 0xFE, &[]);
    tlv::encode(0x53, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the FASC-N back to characters, checking every parity bit.
    fn decode(fascn: &[u8; 25]) -> Vec<u8> {
        let bit = |i: usize| (fascn[i / 8] >> (7 - i % 8)) & 1;
        (0..40)
            .map(|c| {
                let bits: Vec<u8> = (0..5).map(|k| bit(c * 5 + k)).collect();
                assert_eq!(bits.iter().sum::<u8>() % 2, 1, "odd parity of char {c}");
                bits[0] | bits[1] << 1 | bits[2] << 2 | bits[3] << 3
            })
            .collect()
    }

    #[test]
    fn fascn_is_the_non_federal_fill_with_valid_parity_and_lrc() {
        let f = fascn();
        // What OpenSC checks for ";9999" (a non-federal FASC-N).
        assert_eq!(&f[..3], &[0xD4, 0xE7, 0x39]);
        assert_eq!(f[3] | 0x7F, 0xFF);
        let chars = decode(&f);
        assert_eq!(chars[0], SS);
        assert_eq!(&chars[1..5], &[9, 9, 9, 9]);
        assert_eq!(chars[5], FS);
        assert_eq!(chars[38], ES);
        assert_eq!(chars[..39].iter().fold(0, |a, c| a ^ c), chars[39], "LRC");
    }

    #[test]
    fn guid_is_stable_per_card_and_versioned() {
        let a = guid("card-a");
        assert_eq!(a, guid("card-a"));
        assert_ne!(a, guid("card-b"));
        assert_eq!(a[6] >> 4, 8);
        assert_eq!(a[8] >> 6, 0b10);
    }

    #[test]
    fn chuid_has_the_mandatory_elements() {
        let c = chuid("card-a", None);
        let outer = tlv::read_one(&c).expect("53");
        assert_eq!(outer.tag, 0x53);
        let inner = tlv::read_all(outer.value).expect("contents");
        let tags: Vec<u32> = inner.iter().map(|t| t.tag).collect();
        assert_eq!(tags, [0x30, 0x34, 0x35, 0x3E, 0xFE]);
        assert_eq!(tlv::find(&inner, 0x30).map(<[u8]>::len), Some(25));
        assert_eq!(tlv::find(&inner, 0x34), Some(&guid("card-a")[..]));
        assert_eq!(tlv::find(&inner, 0x35), Some(&b"99991231"[..]));
    }
}
