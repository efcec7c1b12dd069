//! Checks a PKCS#10 request before anything is issued for it: well-formed DER,
//! an accepted key (RSA 2048..=8192 bits with an odd exponent >= 65537, EC
//! P-256 or P-384), a modern signature algorithm, and a self-signature that
//! verifies with that key.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::CertsError;

/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const RSA_MAX_BITS: usize = 8192;

/// Smallest RSA public exponent accepted.
pub const RSA_MIN_EXPONENT: u64 = 65537;

/// The kind of key a checked request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with a modulus of this many bits.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
}

impl KeyKind {
    /// The key's size in bits (the modulus for RSA, the curve order for EC).
    pub fn bits(&self) -> usize {
        match self {
            KeyKind::Rsa { bits } => *bits,
            KeyKind::EcP256 => 256,
            KeyKind::EcP384 => 384,
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::EcP256 => f.write_str("EC P-256"),
            KeyKind::EcP384 => f.write_str("EC P-384"),
        }
    }
}

/// A request that passed every check; only its public key is used for issuing.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    spki_der: Vec<u8>,
    key: KeyKind,
}

impl CheckedCsr {
    /// The DER SubjectPublicKeyInfo of the request's key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// What kind of key the request carries.
    pub fn key_kind(&self) -> KeyKind {
        self.key
    }
}

/// Parses and checks a DER PKCS#10 request. The key is checked before the
/// signature so an unsupported key is reported as such, not as a bad signature.
pub fn check_csr(der: &[u8]) -> Result<CheckedCsr, CertsError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| CertsError::CsrMalformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertsError::CsrMalformed(format!(
            "{} unexpected bytes after the request",
            rest.len()
        )));
    }

    let spki = &csr.certification_request_info.subject_pki;
    let key = key_kind(spki)?;

    let sig_alg = &csr.signature_algorithm.algorithm;
    if *sig_alg == OID_PKCS1_SHA1WITHRSA || *sig_alg == OID_SHA1_WITH_RSA {
        return Err(CertsError::WeakSignatureAlgorithm {
            algorithm: "SHA-1 with RSA".into(),
        });
    }
    csr.verify_signature().map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => CertsError::UnsupportedSignatureAlgorithm {
            algorithm: oid_name(sig_alg),
        },
        _ => CertsError::BadCsrSignature,
    })?;

    Ok(CheckedCsr {
        spki_der: spki.raw.to_vec(),
        key,
    })
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyKind, CertsError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let parsed = spki
            .parsed()
            .map_err(|e| CertsError::CsrMalformed(format!("bad RSA public key: {e}")))?;
        let PublicKey::RSA(rsa) = parsed else {
            return Err(CertsError::CsrMalformed("bad RSA public key".into()));
        };
        let bits = rsa.key_size();
        if bits < RSA_MIN_BITS {
            return Err(CertsError::RsaKeyTooSmall { bits });
        }
        if bits > RSA_MAX_BITS {
            return Err(CertsError::RsaKeyTooLarge { bits });
        }
        check_exponent(rsa.exponent)?;
        Ok(KeyKind::Rsa { bits })
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CertsError::UnsupportedCurve {
                curve: "implicit or explicit curve parameters".into(),
            })?;
        if curve == OID_EC_P256 {
            Ok(KeyKind::EcP256)
        } else if curve == OID_NIST_EC_P384 {
            Ok(KeyKind::EcP384)
        } else {
            Err(CertsError::UnsupportedCurve {
                curve: oid_name(&curve),
            })
        }
    } else {
        Err(CertsError::UnsupportedKey {
            algorithm: oid_name(alg),
        })
    }
}

/// An RSA public exponent (big-endian bytes) must be odd, at least 65537 and
/// below 2^256: e = 3 or an even e is refused.
fn check_exponent(exponent: &[u8]) -> Result<(), CertsError> {
    let digits = exponent
        .iter()
        .position(|b| *b != 0)
        .map_or(&[][..], |i| &exponent[i..]);
    let weak = |exponent: String| Err(CertsError::RsaExponentWeak { exponent });
    if digits.len() > 32 {
        return weak(format!("of {} bytes", digits.len()));
    }
    let odd = digits.last().is_some_and(|b| b % 2 == 1);
    if digits.len() > 8 {
        return if odd {
            Ok(())
        } else {
            weak(format!("of {} bytes (even)", digits.len()))
        };
    }
    let value = digits.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    if !odd || value < RSA_MIN_EXPONENT {
        return weak(value.to_string());
    }
    Ok(())
}

/// A readable name for an OID from the registry, else its dotted form.
fn oid_name(oid: &Oid<'_>) -> String {
    let registry = x509_parser::oid_registry::OidRegistry::default().with_all_crypto();
    match registry.get(oid) {
        Some(entry) => format!("{} ({oid})", entry.sn()),
        None => oid.to_id_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA2048: &[u8] = include_bytes!("../testdata/rsa2048.csr.der");
    const RSA1024: &[u8] = include_bytes!("../testdata/rsa1024.csr.der");
    const RSA2048_SHA1: &[u8] = include_bytes!("../testdata/rsa2048-sha1.csr.der");
    const RSA3072_PSS: &[u8] = include_bytes!("../testdata/rsa3072-pss.csr.der");
    const P256: &[u8] = include_bytes!("../testdata/p256.csr.der");
    const P521: &[u8] = include_bytes!("../testdata/p521.csr.der");
    const ED25519: &[u8] = include_bytes!("../testdata/ed25519.csr.der");

    #[test]
    fn rsa_2048_passes() {
        let c = check_csr(RSA2048).unwrap();
        assert_eq!(c.key_kind(), KeyKind::Rsa { bits: 2048 });
    }

    #[test]
    fn rsa_pss_signed_request_passes() {
        let c = check_csr(RSA3072_PSS).unwrap();
        assert_eq!(c.key_kind(), KeyKind::Rsa { bits: 3072 });
    }

    #[test]
    fn p256_from_openssl_and_rcgen_pass() {
        assert_eq!(check_csr(P256).unwrap().key_kind(), KeyKind::EcP256);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let c = check_csr(csr.der()).unwrap();
        assert_eq!(c.key_kind(), KeyKind::EcP256);
        assert_eq!(
            c.spki_der(),
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
    }

    #[test]
    fn p384_from_rcgen_passes() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        assert_eq!(check_csr(csr.der()).unwrap().key_kind(), KeyKind::EcP384);
    }

    #[test]
    fn rsa_1024_is_too_small() {
        assert!(matches!(
            check_csr(RSA1024),
            Err(CertsError::RsaKeyTooSmall { bits: 1024 })
        ));
    }

    #[test]
    fn rsa_exponent_must_be_odd_and_at_least_65537() {
        assert!(check_exponent(&[0x01, 0x00, 0x01]).is_ok());
        assert!(check_exponent(&[0x00, 0x01, 0x00, 0x01]).is_ok());
        assert!(check_exponent(&[0xff; 32]).is_ok());
        for weak in [
            &[0x03][..],
            &[0x01, 0x00, 0x00],
            &[0x01, 0x00, 0x02],
            &[0x00],
            &[],
            &[0x02; 16],
        ] {
            let err = check_exponent(weak).unwrap_err();
            assert!(
                matches!(err, CertsError::RsaExponentWeak { .. }),
                "{weak:?}"
            );
        }
        let err = check_exponent(&[0x01; 33]).unwrap_err();
        assert!(err.to_string().contains("of 33 bytes"), "{err}");
        assert!(check_exponent(&[0x03])
            .unwrap_err()
            .to_string()
            .contains("exponent 3;"));
    }

    #[test]
    fn p521_curve_is_refused() {
        let err = check_csr(P521).unwrap_err();
        assert!(matches!(err, CertsError::UnsupportedCurve { .. }), "{err}");
    }

    #[test]
    fn ed25519_key_is_refused() {
        let err = check_csr(ED25519).unwrap_err();
        assert!(matches!(err, CertsError::UnsupportedKey { .. }), "{err}");
        assert!(err.to_string().contains("1.3.101.112"), "{err}");
    }

    #[test]
    fn sha1_signature_is_refused() {
        assert!(matches!(
            check_csr(RSA2048_SHA1),
            Err(CertsError::WeakSignatureAlgorithm { .. })
        ));
    }

    #[test]
    fn broken_signature_is_refused() {
        let mut der = RSA2048.to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert!(matches!(check_csr(&der), Err(CertsError::BadCsrSignature)));

        let mut der = P256.to_vec();
        // Change a byte of the subject (inside the signed part) instead.
        let pos = der.windows(4).position(|w| w == b"Evil").unwrap();
        der[pos] = b'e';
        assert!(matches!(check_csr(&der), Err(CertsError::BadCsrSignature)));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        assert!(matches!(
            check_csr(b"not a csr"),
            Err(CertsError::CsrMalformed(_))
        ));
        assert!(matches!(check_csr(&[]), Err(CertsError::CsrMalformed(_))));
        let mut der = P256.to_vec();
        der.push(0);
        assert!(matches!(check_csr(&der), Err(CertsError::CsrMalformed(_))));
    }
}
