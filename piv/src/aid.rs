//! The PIV application's identity: its AID (SP 800-73-4 part 1 §2.2), the
//! application property template SELECT returns (part 2 §3.1.1, table 3)
//! and the Discovery Object that names the AID and the PIN policy (part 1
//! §3.3.2).

use crate::tlv;

/// The full PIV AID: RID A0 00 00 03 08, PIX 00 00 10 00 01 00.
pub const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

/// The shortest name SELECT may use: the RID alone.
const MIN_SELECT_LEN: usize = 5;

/// The label SELECT shows (tag 50).
const APPLICATION_LABEL: &[u8] = b"Lanyard PIV";

/// PIV algorithm identifier for RSA 2048 (part 1 table 5).
pub const ALG_RSA_2048: u8 = 0x07;
/// PIV algorithm identifier for ECC P-256.
pub const ALG_ECC_P256: u8 = 0x11;

/// True when `name` (SELECT's data) selects the PIV application: the full
/// AID or a truncation of it that still holds the RID (ISO 7816-4 partial
/// DF name).
pub fn selects_piv(name: &[u8]) -> bool {
    name.len() >= MIN_SELECT_LEN && PIV_AID.starts_with(name)
}

/// The application property template (tag 61) SELECT answers with: PIX
/// (4F), coexistent tag allocation authority (79 { 4F RID }), label (50),
/// and the algorithms the card's keys can have (AC { 80 07, 80 11, 06 00 }).
pub fn application_property_template() -> Vec<u8> {
    let mut authority = Vec::new();
    tlv::write(&mut authority, 0x4F, &PIV_AID[..MIN_SELECT_LEN]);
    let mut algorithms = Vec::new();
    tlv::write(&mut algorithms, 0x80, &[ALG_RSA_2048]);
    tlv::write(&mut algorithms, 0x80, &[ALG_ECC_P256]);
    tlv::write(&mut algorithms, 0x06, &[]);

    let mut body = Vec::new();
    tlv::write(&mut body, 0x4F, &PIV_AID[MIN_SELECT_LEN..]);
    tlv::write(&mut body, 0x79, &authority);
    tlv::write(&mut body, 0x50, APPLICATION_LABEL);
    tlv::write(&mut body, 0xAC, &algorithms);
    tlv::encode(0x61, &body)
}

/// The Discovery Object (tag 7E): the AID and the PIN usage policy 40 00
/// (the PIV application PIN satisfies the access rules; no global PIN).
pub fn discovery_object() -> Vec<u8> {
    let mut body = Vec::new();
    tlv::write(&mut body, 0x4F, &PIV_AID);
    tlv::write(&mut body, 0x5F2F, &[0x40, 0x00]);
    tlv::encode(0x7E, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_truncated_aids_select() {
        assert!(selects_piv(&PIV_AID));
        assert!(selects_piv(&PIV_AID[..9]));
        assert!(selects_piv(&PIV_AID[..5]));
        assert!(!selects_piv(&PIV_AID[..4]));
        assert!(!selects_piv(&[0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01]));
        let mut longer = PIV_AID.to_vec();
        longer.push(0);
        assert!(!selects_piv(&longer));
    }

    #[test]
    fn template_carries_pix_authority_label_and_algorithms() {
        let apt = application_property_template();
        let outer = tlv::read_one(&apt).expect("61");
        assert_eq!(outer.tag, 0x61);
        let inner = tlv::read_all(outer.value).expect("contents");
        assert_eq!(
            tlv::find(&inner, 0x4F),
            Some(&[0x00, 0x00, 0x10, 0x00, 0x01, 0x00][..])
        );
        let authority = tlv::read_all(tlv::find(&inner, 0x79).expect("79")).expect("79 contents");
        assert_eq!(tlv::find(&authority, 0x4F), Some(&PIV_AID[..5]));
        assert_eq!(tlv::find(&inner, 0x50), Some(&b"Lanyard PIV"[..]));
        let algs = tlv::read_all(tlv::find(&inner, 0xAC).expect("AC")).expect("AC contents");
        let ids: Vec<_> = algs
            .iter()
            .filter(|t| t.tag == 0x80)
            .map(|t| t.value)
            .collect();
        assert_eq!(ids, [&[0x07][..], &[0x11][..]]);
        assert_eq!(tlv::find(&algs, 0x06), Some(&[][..]));
    }

    #[test]
    fn discovery_names_the_aid_and_pin_policy() {
        let d = discovery_object();
        let outer = tlv::read_one(&d).expect("7E");
        assert_eq!(outer.tag, 0x7E);
        let inner = tlv::read_all(outer.value).expect("contents");
        assert_eq!(tlv::find(&inner, 0x4F), Some(&PIV_AID[..]));
        assert_eq!(tlv::find(&inner, 0x5F2F), Some(&[0x40, 0x00][..]));
    }
}
