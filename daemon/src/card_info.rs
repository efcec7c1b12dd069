//! Computes what the PKCS#11 module needs to show a card as a token
//! (CardInfo in agent.proto, with SigningKeyInfo for the document-signing
//! key) from the certificates, once per card, so the module needs no
//! certificate parser.

use lanyard_proto::agent::{CardInfo, SigningKeyInfo};
use openssl::pkey::Id;
use openssl::x509::X509;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::keys::{ec_uncompressed_point, KeyType};

/// DER of the named-curve OID prime256v1 (1.2.840.10045.3.1.7), for CKA_EC_PARAMS.
pub const P256_PARAMS_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// DER tag + length + content.
pub fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The certificate-derived fields of a card; what stays the same between requests.
#[derive(Debug, Clone, PartialEq)]
pub struct CertFacts {
    /// Leaf certificate subject as text (RFC 4514 style).
    pub subject: String,
    /// Not-before, Unix seconds.
    pub not_before: i64,
    /// Not-after, Unix seconds.
    pub not_after: i64,
    /// Serial number as lower-case hex without leading zero octets (as the CA writes it).
    pub serial_hex: String,
    /// The CardInfo with every certificate/key field filled; PIN state and
    /// login fields are set per request.
    pub info: CardInfo,
}

/// Parses the leaf certificate and computes every CardInfo field from it.
/// `what` names the source (a file) for errors.
pub fn cert_facts(
    card_id: &str,
    slot: u32,
    holder_name: &str,
    key_type: KeyType,
    cert_der: &[u8],
    chain_der: &[Vec<u8>],
    what: &std::path::Path,
) -> Result<CertFacts> {
    let bad = |r: String| Error::corrupt(what, r);
    let (rest, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| bad(format!("certificate does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate".into()));
    }
    let spki = cert.public_key();
    let key_id = openssl::sha::sha1(&spki.subject_public_key.data).to_vec();
    let subject = cert.subject().to_string();
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let serial = cert.raw_serial();
    let serial_hex = hex::encode(&serial[serial.iter().take_while(|b| **b == 0).count()..]);

    let ossl = X509::from_der(cert_der).map_err(|e| bad(format!("certificate: {e}")))?;
    let public = ossl
        .public_key()
        .map_err(|e| bad(format!("certificate public key: {e}")))?;
    let mut info = CardInfo {
        card_id: card_id.to_string(),
        slot,
        holder_name: holder_name.to_string(),
        key_type: key_type.to_proto() as i32,
        certificate_der: cert_der.to_vec(),
        chain_der: chain_der.to_vec(),
        public_key_der: spki.raw.to_vec(),
        key_bits: public.bits(),
        subject_der: cert.subject().as_raw().to_vec(),
        issuer_der: cert.issuer().as_raw().to_vec(),
        serial_der: der_tlv(0x02, cert.raw_serial()),
        key_id,
        not_after,
        subject: subject.clone(),
        ..CardInfo::default()
    };
    match (key_type, public.id()) {
        (KeyType::Rsa2048, Id::RSA) => {
            let rsa = public.rsa().map_err(|e| bad(format!("RSA key: {e}")))?;
            info.rsa_modulus = rsa.n().to_vec();
            info.rsa_public_exponent = rsa.e().to_vec();
        }
        (KeyType::EcP256, Id::EC) => {
            let ec = public.ec_key().map_err(|e| bad(format!("EC key: {e}")))?;
            let point = ec_uncompressed_point(&ec)?;
            info.ec_params = P256_PARAMS_DER.to_vec();
            info.ec_point = der_tlv(0x04, &point);
        }
        (kt, id) => {
            return Err(bad(format!(
                "certificate key {id:?} does not match the card's key type {}",
                kt.as_str()
            )))
        }
    }
    Ok(CertFacts {
        subject,
        not_before,
        not_after,
        serial_hex,
        info,
    })
}

/// The SigningKeyInfo of a card's document-signing certificate `cert_der`
/// (its key is of the card's `key_type`), computed as CardInfo's fields are.
pub fn signing_key_info(
    card_id: &str,
    key_type: KeyType,
    cert_der: &[u8],
    what: &std::path::Path,
) -> Result<SigningKeyInfo> {
    let i = cert_facts(card_id, 0, "", key_type, cert_der, &[], what)?.info;
    Ok(SigningKeyInfo {
        certificate_der: i.certificate_der,
        public_key_der: i.public_key_der,
        rsa_modulus: i.rsa_modulus,
        rsa_public_exponent: i.rsa_public_exponent,
        ec_params: i.ec_params,
        ec_point: i.ec_point,
        key_bits: i.key_bits,
        subject_der: i.subject_der,
        issuer_der: i.issuer_der,
        serial_der: i.serial_der,
        key_id: i.key_id,
        not_after: i.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_tlv(0x02, &[1]), vec![2, 1, 1]);
        assert_eq!(der_tlv(0x04, &[0; 65])[..2], [0x04, 65]);
        let long = der_tlv(0x04, &[0; 200]);
        assert_eq!(long[..3], [0x04, 0x81, 200]);
        let longer = der_tlv(0x30, &[0; 300]);
        assert_eq!(longer[..4], [0x30, 0x82, 0x01, 0x2c]);
    }
}
