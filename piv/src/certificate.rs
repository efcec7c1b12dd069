//! X.509 certificates in PIV: the certificate container of SP 800-73-4
//! part 1 §3.3.2 (53 { 70 certificate, 71 CertInfo 00, FE LRC }), and the
//! one field the application reads from a certificate, its notAfter date.

use crate::tlv;

/// The container GET DATA returns for a certificate (uncompressed).
pub fn container(cert_der: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(cert_der.len() + 12);
    tlv::write(&mut body, 0x70, cert_der);
    tlv::write(&mut body, 0x71, &[0x00]);
    tlv::write(&mut body, 0xFE, &[]);
    tlv::encode(0x53, &body)
}

/// The DER certificate inside a GET DATA certificate container, or `None`
/// when the bytes are not one (or say the certificate is compressed).
pub fn certificate_from_container(object: &[u8]) -> Option<&[u8]> {
    let outer = tlv::read_one(object)?;
    if outer.tag != 0x53 {
        return None;
    }
    let inner = tlv::read_all(outer.value)?;
    if tlv::find(&inner, 0x71).is_some_and(|info| info.first().is_some_and(|b| b & 0x01 != 0)) {
        return None;
    }
    tlv::find(&inner, 0x70).filter(|c| !c.is_empty())
}

/// The certificate's notAfter as `YYYYMMDD` ASCII, or `None` when the
/// bytes are not a certificate this simple DER walk can read.
pub fn not_after_yyyymmdd(cert_der: &[u8]) -> Option<[u8; 8]> {
    let cert = tlv::read(cert_der)?.0;
    let tbs = tlv::read(cert.value).filter(|(t, _)| t.tag == 0x30)?.0;
    let mut fields = tlv::read_all(tbs.value)?.into_iter();
    let mut serial = fields.next()?;
    if serial.tag == 0xA0 {
        serial = fields.next()?;
    }
    if serial.tag != 0x02 {
        return None;
    }
    // After the serial number: signature algorithm, issuer, validity.
    let validity = fields.nth(2).filter(|t| t.tag == 0x30)?;
    let times = tlv::read_all(validity.value)?;
    let not_after = times.get(1)?;
    let date: &[u8] = match (not_after.tag, not_after.value.len()) {
        (0x17, 13) => &not_after.value[..6],
        (0x18, 15) => &not_after.value[..8],
        _ => return None,
    };
    if !date.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = [0u8; 8];
    if date.len() == 6 {
        // UTCTime: YY >= 50 is 19YY (RFC 5280 §4.1.2.5.1).
        out[..2].copy_from_slice(if date[0] >= b'5' { b"19" } else { b"20" });
        out[2..].copy_from_slice(date);
    } else {
        out.copy_from_slice(date);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Builder, X509NameBuilder};

    fn cert_until(not_after: &str) -> Vec<u8> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
        let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "Dr Test").expect("cn");
        let name = name.build();
        let mut b = X509Builder::new().expect("builder");
        b.set_version(2).expect("v3");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.set_not_before(&Asn1Time::from_str("20250101000000Z").expect("t"))
            .expect("nb");
        b.set_not_after(&Asn1Time::from_str(not_after).expect("t"))
            .expect("na");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        b.build().to_der().expect("der")
    }

    #[test]
    fn reads_utc_and_generalized_not_after() {
        assert_eq!(
            not_after_yyyymmdd(&cert_until("20270315120000Z")),
            Some(*b"20270315")
        );
        assert_eq!(
            not_after_yyyymmdd(&cert_until("20620101000000Z")),
            Some(*b"20620101")
        );
        assert_eq!(not_after_yyyymmdd(b"not a certificate"), None);
        assert_eq!(not_after_yyyymmdd(&[]), None);
    }

    #[test]
    fn container_round_trips() {
        let cert = cert_until("20270315120000Z");
        let object = container(&cert);
        assert_eq!(certificate_from_container(&object), Some(&cert[..]));
        let inner = tlv::read_all(tlv::read_one(&object).expect("53").value).expect("inner");
        assert_eq!(tlv::find(&inner, 0x71), Some(&[0x00][..]));
        assert_eq!(tlv::find(&inner, 0xFE), Some(&[][..]));
        assert_eq!(
            certificate_from_container(&object[..object.len() - 1]),
            None
        );
        assert_eq!(certificate_from_container(&tlv::encode(0x53, &[])), None);
    }
}
