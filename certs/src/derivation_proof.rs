//! The proof of possession of a derived enrolment (ca.proto EnrollDerived):
//! the message the physical card signs, binding the CA's challenge to the new
//! virtual card's CSRs so a proof cannot be relayed to another key, and the
//! check of its signature with the physical certificate's public key.

use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::BitString;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA256WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::{AlgorithmIdentifier, FromDer, SubjectPublicKeyInfo};

use crate::CertsError;

/// `challenge || SHA-256(csr_der) [|| SHA-256(signing_csr_der)]`: the
/// signing CSR's digest only when one is sent.
pub fn proof_message(challenge: &[u8], csr_der: &[u8], signing_csr_der: &[u8]) -> Vec<u8> {
    let mut message = challenge.to_vec();
    message.extend_from_slice(&Sha256::digest(csr_der));
    if !signing_csr_der.is_empty() {
        message.extend_from_slice(&Sha256::digest(signing_csr_der));
    }
    message
}

/// SHA-256 of the proof message: what an EC card signs with raw ECDSA.
pub fn proof_digest(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

/// Checks `signature` over `message` with the key `spki_der` (a
/// SubjectPublicKeyInfo): RSA PKCS#1 v1.5 with SHA-256 (2048 bits or more),
/// or ECDSA with SHA-256 (P-256 or P-384, DER signature).
pub fn verify_proof_signature(
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CertsError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| CertsError::CertificateMalformed(format!("public key: {e}")))?;
    let algorithm = if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        OID_PKCS1_SHA256WITHRSA
    } else if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        OID_SIG_ECDSA_WITH_SHA256
    } else {
        return Err(CertsError::UnsupportedProofKey(format!(
            "the physical card's key is neither RSA nor EC ({})",
            spki.algorithm.algorithm
        )));
    };
    let algorithm = AlgorithmIdentifier::new(algorithm, None);
    x509_parser::verify::verify_signature(&spki, &algorithm, &BitString::new(0, signature), message)
        .map_err(|_| CertsError::BadProofSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{KeyPair, PublicKeyData, SigningKey, PKCS_ECDSA_P256_SHA256};

    #[test]
    fn the_message_binds_both_requests() {
        let challenge = [7u8; 32];
        let one = proof_message(&challenge, b"csr", b"");
        assert_eq!(one.len(), 64);
        assert_eq!(&one[..32], &challenge);
        let two = proof_message(&challenge, b"csr", b"signing");
        assert_eq!(two.len(), 96);
        assert_eq!(&two[..64], &one[..]);
        assert_ne!(proof_message(&challenge, b"other csr", b""), one);
        assert_eq!(proof_digest(&one), <[u8; 32]>::from(Sha256::digest(&one)));
    }

    #[test]
    fn an_ec_signature_verifies_only_over_its_message() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let message = proof_message(&[1u8; 32], b"csr", b"");
        let signature = key.sign(&message).unwrap();
        let spki = key.subject_public_key_info();
        verify_proof_signature(&spki, &message, &signature).unwrap();
        let relayed = proof_message(&[1u8; 32], b"another csr", b"");
        assert!(matches!(
            verify_proof_signature(&spki, &relayed, &signature),
            Err(CertsError::BadProofSignature)
        ));
        assert!(matches!(
            verify_proof_signature(&spki, &message, b"garbage"),
            Err(CertsError::BadProofSignature)
        ));
        assert!(matches!(
            verify_proof_signature(b"not a key", &message, &signature),
            Err(CertsError::CertificateMalformed(_))
        ));
    }
}
