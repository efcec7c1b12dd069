//! The objects a card shows as a token, built from the daemon's CardInfo:
//! the leaf certificate, the public and private key (one CKA_ID), the CA
//! chain as trusted certificates, and, when the card has one, the
//! document-signing certificate and key pair (its own CKA_ID; the private key
//! CKA_ALWAYS_AUTHENTICATE). Handles are fixed per slot.

use cryptoki_sys::*;
use lanyard_proto::agent::{CardInfo, KeyRole, SigningKeyInfo};
use openssl::x509::X509;

use crate::attribute::{bool_value, bytes_value, ulong_value, ulongs_value, AttrValue};
use crate::error::{Pkcs11Error, Result};
use crate::mechanism::{signature_mechanisms, KeyKind};

/// What an object is, for the operations that accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Certificate,
    PublicKey,
    PrivateKey,
    CaCertificate,
}

/// One token object: a handle and its attributes.
#[derive(Debug, Clone)]
pub struct Object {
    pub handle: CK_OBJECT_HANDLE,
    pub kind: ObjectKind,
    /// Which of the card's keys a certificate or key object belongs to.
    pub role: KeyRole,
    attrs: Vec<(CK_ATTRIBUTE_TYPE, AttrValue)>,
}

impl Object {
    /// The value of one attribute, if the object has it.
    pub fn get(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&AttrValue> {
        self.attrs.iter().find(|(at, _)| *at == t).map(|(_, v)| v)
    }

    /// CKA_PRIVATE: visible only to a logged-in application.
    pub fn is_private(&self) -> bool {
        self.kind == ObjectKind::PrivateKey
    }

    /// C_FindObjects template matching: every template attribute must exist
    /// with exactly these bytes (sensitive attributes never match).
    pub fn matches(&self, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
        template
            .iter()
            .all(|(t, want)| matches!(self.get(*t), Some(AttrValue::Bytes(have)) if have == want))
    }
}

const LEAF_CERT: CK_OBJECT_HANDLE = 1;
const PUBLIC_KEY: CK_OBJECT_HANDLE = 2;
const PRIVATE_KEY: CK_OBJECT_HANDLE = 3;
const SIGNING_CERT: CK_OBJECT_HANDLE = 4;
const SIGNING_PUBLIC_KEY: CK_OBJECT_HANDLE = 5;
const SIGNING_PRIVATE_KEY: CK_OBJECT_HANDLE = 6;
const CHAIN_BASE: CK_OBJECT_HANDLE = 0x10;

/// Label suffix of the document-signing objects.
pub const SIGNING_LABEL_SUFFIX: &str = " (Digital Signature)";

/// The fields of one of a card's keys with its certificate, as the daemon
/// computed them (CardInfo for the authentication key, SigningKeyInfo for
/// the document-signing key).
struct KeyView<'a> {
    certificate_der: &'a [u8],
    public_key_der: &'a [u8],
    rsa_modulus: &'a [u8],
    rsa_public_exponent: &'a [u8],
    ec_params: &'a [u8],
    ec_point: &'a [u8],
    key_bits: u32,
    subject_der: &'a [u8],
    issuer_der: &'a [u8],
    serial_der: &'a [u8],
    key_id: &'a [u8],
}

impl<'a> KeyView<'a> {
    fn authentication(c: &'a CardInfo) -> Self {
        KeyView {
            certificate_der: &c.certificate_der,
            public_key_der: &c.public_key_der,
            rsa_modulus: &c.rsa_modulus,
            rsa_public_exponent: &c.rsa_public_exponent,
            ec_params: &c.ec_params,
            ec_point: &c.ec_point,
            key_bits: c.key_bits,
            subject_der: &c.subject_der,
            issuer_der: &c.issuer_der,
            serial_der: &c.serial_der,
            key_id: &c.key_id,
        }
    }

    fn signing(s: &'a SigningKeyInfo) -> Self {
        KeyView {
            certificate_der: &s.certificate_der,
            public_key_der: &s.public_key_der,
            rsa_modulus: &s.rsa_modulus,
            rsa_public_exponent: &s.rsa_public_exponent,
            ec_params: &s.ec_params,
            ec_point: &s.ec_point,
            key_bits: s.key_bits,
            subject_der: &s.subject_der,
            issuer_der: &s.issuer_der,
            serial_der: &s.serial_der,
            key_id: &s.key_id,
        }
    }
}

/// The card's document-signing key, if it has one the module can show: of
/// the same kind and size as the authentication key (the daemon makes both
/// alike), with its own key id.
pub fn signing_key(card: &CardInfo) -> Option<&SigningKeyInfo> {
    card.signing_key.as_ref().filter(|s| {
        !s.certificate_der.is_empty()
            && !s.public_key_der.is_empty()
            && s.key_bits == card.key_bits
            && s.key_id != card.key_id
    })
}

/// The handle of object `n` of slot `slot`: stable for as long as the slot
/// holds a card, also across its renewals (see `fns::objmgmt::with_object`),
/// never 0 (CK_INVALID_HANDLE).
pub fn handle(slot: usize, n: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
    ((slot as CK_OBJECT_HANDLE + 1) << 16) | n
}

/// Builds the objects of `card` sitting in `slot`.
pub fn build(slot: usize, card: &CardInfo, kind: KeyKind) -> Result<Vec<Object>> {
    let label = if card.holder_name.is_empty() {
        card.card_id.clone()
    } else {
        card.holder_name.clone()
    };
    let auth = KeyView::authentication(card);
    let mut objects = vec![
        leaf_certificate(
            handle(slot, LEAF_CERT),
            &auth,
            &label,
            KeyRole::Authentication,
        ),
        public_key(
            handle(slot, PUBLIC_KEY),
            &auth,
            kind,
            &label,
            KeyRole::Authentication,
        ),
        private_key(
            handle(slot, PRIVATE_KEY),
            &auth,
            kind,
            &label,
            KeyRole::Authentication,
        ),
    ];
    for (i, der) in card.chain_der.iter().enumerate() {
        let n = CHAIN_BASE + i as CK_OBJECT_HANDLE;
        let role = if i + 1 == card.chain_der.len() {
            "root CA"
        } else {
            "issuing CA"
        };
        objects.push(ca_certificate(handle(slot, n), der, role)?);
    }
    if let Some(signing) = signing_key(card) {
        let view = KeyView::signing(signing);
        let label = format!("{label}{SIGNING_LABEL_SUFFIX}");
        let role = KeyRole::Signing;
        objects.extend([
            leaf_certificate(handle(slot, SIGNING_CERT), &view, &label, role),
            public_key(handle(slot, SIGNING_PUBLIC_KEY), &view, kind, &label, role),
            private_key(handle(slot, SIGNING_PRIVATE_KEY), &view, kind, &label, role),
        ]);
    }
    Ok(objects)
}

fn common(
    class: CK_OBJECT_CLASS,
    private: bool,
    label: &str,
) -> Vec<(CK_ATTRIBUTE_TYPE, AttrValue)> {
    vec![
        (CKA_CLASS, ulong_value(class)),
        (CKA_TOKEN, bool_value(true)),
        (CKA_PRIVATE, bool_value(private)),
        (CKA_MODIFIABLE, bool_value(false)),
        (CKA_COPYABLE, bool_value(false)),
        (CKA_DESTROYABLE, bool_value(false)),
        (CKA_LABEL, bytes_value(label.as_bytes())),
    ]
}

fn certificate_attrs(
    label: &str,
    value: &[u8],
    subject: &[u8],
    issuer: &[u8],
    serial: &[u8],
    id: &[u8],
    trusted: bool,
) -> Vec<(CK_ATTRIBUTE_TYPE, AttrValue)> {
    let (start, end) = validity(value);
    let mut a = common(CKO_CERTIFICATE, false, label);
    a.extend([
        (CKA_CERTIFICATE_TYPE, ulong_value(CKC_X_509)),
        (CKA_TRUSTED, bool_value(trusted)),
        // 1 = token user, 2 = authority (PKCS#11 3.0 4.6.2).
        (
            CKA_CERTIFICATE_CATEGORY,
            ulong_value(if trusted { 2 } else { 1 }),
        ),
        (CKA_CHECK_VALUE, bytes_value(&check_value(value))),
        (CKA_START_DATE, bytes_value(&start)),
        (CKA_END_DATE, bytes_value(&end)),
        (CKA_SUBJECT, bytes_value(subject)),
        (CKA_ISSUER, bytes_value(issuer)),
        (CKA_SERIAL_NUMBER, bytes_value(serial)),
        (CKA_ID, bytes_value(id)),
        (CKA_VALUE, bytes_value(value)),
        (CKA_URL, bytes_value(&[])),
        (CKA_HASH_OF_SUBJECT_PUBLIC_KEY, bytes_value(&[])),
        (CKA_HASH_OF_ISSUER_PUBLIC_KEY, bytes_value(&[])),
        (CKA_JAVA_MIDP_SECURITY_DOMAIN, ulong_value(0)),
        (CKA_NAME_HASH_ALGORITHM, ulong_value(CKM_SHA_1)),
    ]);
    a
}

/// CKA_START_DATE and CKA_END_DATE (CK_DATE, "YYYYMMDD") of a certificate;
/// empty (as PKCS#11 allows) if its validity cannot be read.
fn validity(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    // Read from the DER first: OpenSSL's decoding of the whole certificate
    // for two dates was a quarter of a cold C_Initialize (callgrind, lanyard-bench token).
    if let Some((start, end)) = crate::cert_validity::validity(der) {
        return (start.to_vec(), end.to_vec());
    }
    let dates = X509::from_der(der).ok().and_then(|cert| {
        Some((
            ck_date(cert.not_before())?.to_vec(),
            ck_date(cert.not_after())?.to_vec(),
        ))
    });
    dates.unwrap_or_default()
}

/// An ASN.1 time as a CK_DATE.
fn ck_date(t: &openssl::asn1::Asn1TimeRef) -> Option<[u8; 8]> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let days = epoch.diff(t).ok()?.days;
    let (y, m, d) = civil_from_days(i64::from(days));
    if !(0..=9999).contains(&y) {
        return None;
    }
    format!("{y:04}{m:02}{d:02}").into_bytes().try_into().ok()
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian;
/// H. Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// CKA_CHECK_VALUE of a certificate: the first 3 bytes of its SHA-1.
fn check_value(der: &[u8]) -> Vec<u8> {
    openssl::sha::sha1(der)[..3].to_vec()
}

fn leaf_certificate(
    handle: CK_OBJECT_HANDLE,
    key: &KeyView<'_>,
    label: &str,
    role: KeyRole,
) -> Object {
    Object {
        handle,
        kind: ObjectKind::Certificate,
        role,
        attrs: certificate_attrs(
            label,
            key.certificate_der,
            key.subject_der,
            key.issuer_der,
            key.serial_der,
            key.key_id,
            false,
        ),
    }
}

fn ca_certificate(handle: CK_OBJECT_HANDLE, der: &[u8], role: &str) -> Result<Object> {
    let cert = X509::from_der(der).map_err(|e| {
        Pkcs11Error::DeviceError(format!("bad CA certificate from the daemon: {e}"))
    })?;
    let subject = cert.subject_name().to_der()?;
    let issuer = cert.issuer_name().to_der()?;
    let serial = der_integer(&cert.serial_number().to_bn()?.to_vec());
    let id = openssl::sha::sha1(&cert.public_key()?.public_key_to_der()?).to_vec();
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok());
    let label = cn.unwrap_or_else(|| format!("Lanyard {role}"));
    Ok(Object {
        handle,
        kind: ObjectKind::CaCertificate,
        role: KeyRole::Authentication,
        attrs: certificate_attrs(&label, der, &subject, &issuer, &serial, &id, true),
    })
}

/// DER INTEGER of a non-negative big-endian magnitude (CKA_SERIAL_NUMBER).
fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let mut body: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    if body.first().is_none_or(|b| b & 0x80 != 0) {
        body.insert(0, 0);
    }
    let mut out = vec![0x02];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend(body);
    out
}

fn key_common(
    class: CK_OBJECT_CLASS,
    private: bool,
    card: &KeyView<'_>,
    kind: KeyKind,
    label: &str,
) -> Vec<(CK_ATTRIBUTE_TYPE, AttrValue)> {
    let mut a = common(class, private, label);
    a.extend([
        (CKA_KEY_TYPE, ulong_value(kind.ck_key_type())),
        (CKA_ID, bytes_value(card.key_id)),
        (CKA_START_DATE, bytes_value(&[])),
        (CKA_END_DATE, bytes_value(&[])),
        (CKA_DERIVE, bool_value(false)),
        (CKA_LOCAL, bool_value(true)),
        (CKA_KEY_GEN_MECHANISM, ulong_value(kind.key_gen_mechanism())),
        (
            CKA_ALLOWED_MECHANISMS,
            ulongs_value(&signature_mechanisms(kind)),
        ),
        (CKA_SUBJECT, bytes_value(card.subject_der)),
        (CKA_PUBLIC_KEY_INFO, bytes_value(card.public_key_der)),
    ]);
    match kind {
        KeyKind::Rsa => a.extend([
            (CKA_MODULUS, bytes_value(card.rsa_modulus)),
            (CKA_PUBLIC_EXPONENT, bytes_value(card.rsa_public_exponent)),
            (CKA_MODULUS_BITS, ulong_value(card.key_bits as CK_ULONG)),
        ]),
        KeyKind::Ec => a.extend([
            (CKA_EC_PARAMS, bytes_value(card.ec_params)),
            (CKA_EC_POINT, bytes_value(card.ec_point)),
        ]),
    }
    a
}

fn public_key(
    handle: CK_OBJECT_HANDLE,
    card: &KeyView<'_>,
    kind: KeyKind,
    label: &str,
    role: KeyRole,
) -> Object {
    let mut attrs = key_common(CKO_PUBLIC_KEY, false, card, kind, label);
    attrs.extend([
        (CKA_ENCRYPT, bool_value(false)),
        (CKA_VERIFY, bool_value(true)),
        (CKA_VERIFY_RECOVER, bool_value(false)),
        (CKA_WRAP, bool_value(false)),
        (CKA_TRUSTED, bool_value(false)),
    ]);
    Object {
        handle,
        kind: ObjectKind::PublicKey,
        role,
        attrs,
    }
}

fn private_key(
    handle: CK_OBJECT_HANDLE,
    card: &KeyView<'_>,
    kind: KeyKind,
    label: &str,
    role: KeyRole,
) -> Object {
    // The document-signing key wants the PIN with every signature.
    let always_authenticate = role == KeyRole::Signing;
    let mut attrs = key_common(CKO_PRIVATE_KEY, true, card, kind, label);
    attrs.extend([
        (CKA_SENSITIVE, bool_value(true)),
        (CKA_DECRYPT, bool_value(false)),
        (CKA_SIGN, bool_value(true)),
        (CKA_SIGN_RECOVER, bool_value(false)),
        (CKA_UNWRAP, bool_value(false)),
        (CKA_EXTRACTABLE, bool_value(false)),
        (CKA_ALWAYS_SENSITIVE, bool_value(true)),
        (CKA_NEVER_EXTRACTABLE, bool_value(true)),
        (CKA_WRAP_WITH_TRUSTED, bool_value(false)),
        (CKA_ALWAYS_AUTHENTICATE, bool_value(always_authenticate)),
    ]);
    let secret: &[CK_ATTRIBUTE_TYPE] = match kind {
        KeyKind::Rsa => &[
            CKA_PRIVATE_EXPONENT,
            CKA_PRIME_1,
            CKA_PRIME_2,
            CKA_EXPONENT_1,
            CKA_EXPONENT_2,
            CKA_COEFFICIENT,
        ],
        KeyKind::Ec => &[CKA_VALUE],
    };
    attrs.extend(secret.iter().map(|t| (*t, AttrValue::Sensitive)));
    Object {
        handle,
        kind: ObjectKind::PrivateKey,
        role,
        attrs,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CardInfo with a real RSA key and self-signed chain, for unit tests.
    pub fn sample_card(kind: KeyKind) -> CardInfo {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        let pkey = match kind {
            KeyKind::Rsa => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            KeyKind::Ec => {
                let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
                PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap()
            }
        };
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "Test Root")
            .unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&pkey).unwrap();
        let serial = openssl::bn::BigNum::from_u32(0x80).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&pkey, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = b.build().to_der().unwrap();
        let spki = pkey.public_key_to_der().unwrap();
        let mut card = CardInfo {
            card_id: "0123456789abcdef".into(),
            slot: 0,
            holder_name: "Dr Ada Smith".into(),
            certificate_der: cert.clone(),
            chain_der: vec![cert.clone(), cert],
            public_key_der: spki.clone(),
            key_id: openssl::sha::sha1(&spki).to_vec(),
            subject_der: name.to_der().unwrap(),
            issuer_der: name.to_der().unwrap(),
            serial_der: vec![2, 2, 0, 0x80],
            pin_min_len: 6,
            pin_max_len: 8,
            ..Default::default()
        };
        match kind {
            KeyKind::Rsa => {
                let rsa = pkey.rsa().unwrap();
                card.key_type = lanyard_proto::agent::KeyType::Rsa2048 as i32;
                card.rsa_modulus = rsa.n().to_vec();
                card.rsa_public_exponent = rsa.e().to_vec();
                card.key_bits = 2048;
            }
            KeyKind::Ec => {
                card.key_type = lanyard_proto::agent::KeyType::EcP256 as i32;
                card.key_bits = 256;
                card.ec_params = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
            }
        }
        card
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_507), (2026, 2, 23));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn certificate_dates_are_ck_dates() {
        let card = sample_card(KeyKind::Ec);
        let objs = build(0, &card, KeyKind::Ec).unwrap();
        let Some(AttrValue::Bytes(start)) = objs[0].get(CKA_START_DATE) else {
            panic!("no start date")
        };
        assert_eq!(start.len(), 8);
        assert!(start.iter().all(u8::is_ascii_digit));
        assert!(start.as_slice() >= b"20260101".as_slice());
    }

    #[test]
    fn der_integer_encoding() {
        assert_eq!(der_integer(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_integer(&[0, 0, 5]), vec![2, 1, 5]);
        assert_eq!(der_integer(&[]), vec![2, 1, 0]);
    }

    #[test]
    fn objects_share_one_id_and_ca_is_trusted() {
        let card = sample_card(KeyKind::Rsa);
        let objs = build(1, &card, KeyKind::Rsa).unwrap();
        assert_eq!(objs.len(), 5);
        let id = bytes_value(&card.key_id);
        for o in &objs[..3] {
            assert_eq!(o.get(CKA_ID), Some(&id));
            assert_eq!(o.handle >> 16, 2);
        }
        let priv_key = &objs[2];
        assert!(priv_key.is_private());
        assert_eq!(priv_key.get(CKA_SIGN), Some(&bool_value(true)));
        assert_eq!(priv_key.get(CKA_DECRYPT), Some(&bool_value(false)));
        assert_eq!(
            priv_key.get(CKA_PRIVATE_EXPONENT),
            Some(&AttrValue::Sensitive)
        );
        let root = &objs[4];
        assert_eq!(root.get(CKA_TRUSTED), Some(&bool_value(true)));
        assert_eq!(root.get(CKA_CERTIFICATE_CATEGORY), Some(&ulong_value(2)));
        assert_eq!(root.get(CKA_LABEL), Some(&bytes_value(b"Test Root")));
        assert_eq!(
            root.get(CKA_SERIAL_NUMBER),
            Some(&bytes_value(&[2, 2, 0, 0x80]))
        );
    }

    #[test]
    fn template_matching() {
        let card = sample_card(KeyKind::Ec);
        let objs = build(0, &card, KeyKind::Ec).unwrap();
        let t = vec![(CKA_CLASS, CKO_PUBLIC_KEY.to_ne_bytes().to_vec())];
        let found: Vec<_> = objs.iter().filter(|o| o.matches(&t)).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, ObjectKind::PublicKey);
        // Sensitive attributes never match.
        let t = vec![(CKA_VALUE, vec![])];
        assert!(!objs[2].matches(&t));
        assert!(objs.iter().all(|o| o.matches(&[])));
    }
}
