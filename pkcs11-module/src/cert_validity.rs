//! A certificate's validity dates read straight from its DER (a short walk
//! through TBSCertificate), so building a token does not run OpenSSL's full
//! certificate decoding, which also decodes the public key, for two dates.

/// One DER element at the start of `input`: (tag, contents, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

/// CK_DATE ("YYYYMMDD") of a DER UTCTime or GeneralizedTime (UTC, as DER
/// requires); `None` for anything else.
fn ck_date(tag: u8, time: &[u8]) -> Option<[u8; 8]> {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let mut out = [0u8; 8];
    match tag {
        UTC_TIME if time.len() >= 6 && digits(&time[..6]) => {
            // RFC 5280 4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
            let century: &[u8] = if time[0] >= b'5' { b"19" } else { b"20" };
            out[..2].copy_from_slice(century);
            out[2..].copy_from_slice(&time[..6]);
        }
        GENERALIZED_TIME if time.len() >= 8 && digits(&time[..8]) => {
            out.copy_from_slice(&time[..8]);
        }
        _ => return None,
    }
    Some(out)
}

/// (notBefore, notAfter) as CK_DATEs, or `None` if `der` is not shaped like
/// an X.509 certificate.
pub fn validity(der: &[u8]) -> Option<([u8; 8], [u8; 8])> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, then validity.
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (t1, not_before, rest) = element(validity)?;
    let (t2, not_after, _) = element(rest)?;
    Some((ck_date(t1, not_before)?, ck_date(t2, not_after)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_generalized_times() {
        assert_eq!(ck_date(UTC_TIME, b"260225120000Z"), Some(*b"20260225"));
        assert_eq!(ck_date(UTC_TIME, b"991231235959Z"), Some(*b"19991231"));
        assert_eq!(
            ck_date(GENERALIZED_TIME, b"20510101000000Z"),
            Some(*b"20510101")
        );
        assert_eq!(ck_date(UTC_TIME, b"26x225120000Z"), None);
        assert_eq!(ck_date(0x04, b"20510101000000Z"), None);
    }

    #[test]
    fn truncated_or_foreign_der_gives_none() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30, 0x05, 0x30]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x04, 0x02, 0x30, 0x00]), None);
    }

    #[test]
    fn dates_match_openssl_for_a_real_certificate() {
        let card = crate::objects::tests::sample_card(crate::mechanism::KeyKind::Rsa);
        let der = &card.certificate_der;
        let cert = openssl::x509::X509::from_der(der).unwrap();
        let text = |t: &openssl::asn1::Asn1TimeRef| {
            // "Feb 25 12:00:00 2026 GMT" -> compare year and day via diff.
            let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
            epoch.diff(t).unwrap().days
        };
        let (nb, na) = validity(der).expect("a certificate's validity");
        let days = |d: [u8; 8]| {
            let s = std::str::from_utf8(&d).unwrap();
            let (y, m, dd) = (&s[..4], &s[4..6], &s[6..]);
            let t = openssl::asn1::Asn1Time::from_str(&format!("{y}{m}{dd}000000Z")).unwrap();
            text(&t)
        };
        assert_eq!(days(nb), text(cert.not_before()));
        assert_eq!(days(na), text(cert.not_after()));
        // Every prefix is refused without a panic.
        for n in 0..der.len() {
            let _ = validity(&der[..n]);
        }
    }
}
