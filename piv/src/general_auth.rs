//! GENERAL AUTHENTICATE (SP 800-73-4 part 2 §3.2.4) as a signature: the
//! dynamic authentication template 7C { 82 00, 81 challenge } for key 9A or
//! 9C, checked against the slot's algorithm, with RSA input accepted only
//! when it is a padded block (see `padding`).

use crate::aid::{ALG_ECC_P256, ALG_RSA_2048};
use crate::backend::{KeyAlgorithm, KeySlot, SignInput};
use crate::padding::{self, RsaInput};
use crate::status::Status;
use crate::tlv;

/// ECDSA P-256 works on 32-byte digests.
const P256_DIGEST_LEN: usize = 32;
/// The longest digest a client may send (SHA-512).
const MAX_DIGEST_LEN: usize = 64;

/// The key a GENERAL AUTHENTICATE names, and the algorithm it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// Key reference (P2).
    pub slot: KeySlot,
    /// Algorithm reference (P1).
    pub algorithm: KeyAlgorithm,
}

/// Reads P1 (algorithm) and P2 (key reference): 6A86 for any key
/// reference but 9A and 9C (this card has no management key 9B, so OpenSC
/// reads 6A86 to its GET CHALLENGE as "not supported"), or an algorithm
/// other than RSA-2048 and P-256.
pub fn key_request(p1: u8, p2: u8) -> Result<KeyRequest, Status> {
    let slot = match p2 {
        0x9A => KeySlot::Authentication,
        0x9C => KeySlot::Signature,
        _ => return Err(Status::WrongP1P2),
    };
    let algorithm = match p1 {
        ALG_RSA_2048 => KeyAlgorithm::Rsa2048,
        ALG_ECC_P256 => KeyAlgorithm::EccP256,
        _ => return Err(Status::WrongP1P2),
    };
    Ok(KeyRequest { slot, algorithm })
}

/// The challenge of a signature request template, or 6A80 when the data is
/// anything but exactly 7C { 82 00, 81 non-empty } (either order).
pub fn challenge(data: &[u8]) -> Result<&[u8], Status> {
    let template = tlv::read_one(data).ok_or(Status::WrongData)?;
    if template.tag != 0x7C {
        return Err(Status::WrongData);
    }
    let items = tlv::read_all(template.value).ok_or(Status::WrongData)?;
    let mut response_requested = false;
    let mut challenge = None;
    for item in items {
        match (item.tag, item.value.is_empty()) {
            (0x82, true) if !response_requested => response_requested = true,
            (0x81, false) if challenge.is_none() => challenge = Some(item.value),
            _ => return Err(Status::WrongData),
        }
    }
    match (response_requested, challenge) {
        (true, Some(c)) => Ok(c),
        _ => Err(Status::WrongData),
    }
}

/// What the backend is asked to sign for `challenge` with a key of
/// `algorithm`, or 6A80 when the input is not acceptable for it.
pub fn sign_input(algorithm: KeyAlgorithm, challenge: &[u8]) -> Result<SignInput, Status> {
    match algorithm {
        KeyAlgorithm::Rsa2048 => match padding::classify_rsa_2048(challenge) {
            Some(RsaInput::Pkcs1(data)) => Ok(SignInput::RsaPkcs1 {
                data: data.to_vec(),
            }),
            Some(RsaInput::Pss) => Ok(SignInput::RsaPssEncoded {
                encoded: challenge.to_vec(),
            }),
            None => Err(Status::WrongData),
        },
        KeyAlgorithm::EccP256 => {
            if challenge.is_empty() || challenge.len() > MAX_DIGEST_LEN {
                return Err(Status::WrongData);
            }
            // ECDSA uses the leftmost bits of a longer hash; a shorter one
            // is the same integer with leading zeros.
            let mut digest = vec![0u8; P256_DIGEST_LEN];
            let take = challenge.len().min(P256_DIGEST_LEN);
            digest[P256_DIGEST_LEN - take..].copy_from_slice(&challenge[..take]);
            Ok(SignInput::EcdsaDigest { digest })
        }
    }
}

/// The response template 7C { 82 signature }.
pub fn response(signature: &[u8]) -> Vec<u8> {
    tlv::encode(0x7C, &tlv::encode(0x82, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(items: &[(u32, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (tag, value) in items {
            tlv::write(&mut body, *tag, value);
        }
        tlv::encode(0x7C, &body)
    }

    #[test]
    fn key_references() {
        assert_eq!(
            key_request(0x07, 0x9A),
            Ok(KeyRequest {
                slot: KeySlot::Authentication,
                algorithm: KeyAlgorithm::Rsa2048
            })
        );
        assert_eq!(
            key_request(0x11, 0x9C),
            Ok(KeyRequest {
                slot: KeySlot::Signature,
                algorithm: KeyAlgorithm::EccP256
            })
        );
        assert_eq!(key_request(0x07, 0x9D), Err(Status::WrongP1P2));
        assert_eq!(key_request(0x00, 0x9B), Err(Status::WrongP1P2));
        assert_eq!(key_request(0x07, 0x42), Err(Status::WrongP1P2));
        assert_eq!(key_request(0x14, 0x9A), Err(Status::WrongP1P2));
    }

    #[test]
    fn templates() {
        let t = template(&[(0x82, &[]), (0x81, &[1, 2, 3])]);
        assert_eq!(challenge(&t), Ok(&[1u8, 2, 3][..]));
        let t = template(&[(0x81, &[1]), (0x82, &[])]);
        assert_eq!(challenge(&t), Ok(&[1u8][..]));
        for bad in [
            template(&[(0x81, &[1])]),
            template(&[(0x82, &[])]),
            template(&[(0x82, &[]), (0x81, &[])]),
            template(&[(0x82, &[1]), (0x81, &[1])]),
            template(&[(0x82, &[]), (0x85, &[1])]),
            template(&[(0x82, &[]), (0x81, &[1]), (0x81, &[2])]),
            template(&[(0x82, &[]), (0x81, &[1]), (0x80, &[])]),
            tlv::encode(0x7D, &tlv::encode(0x81, &[1])),
            vec![0x7C, 0x05, 0x82, 0x00],
            vec![],
        ] {
            assert_eq!(challenge(&bad), Err(Status::WrongData), "{bad:02X?}");
        }
        let mut trailing = template(&[(0x82, &[]), (0x81, &[1])]);
        trailing.push(0);
        assert_eq!(challenge(&trailing), Err(Status::WrongData));
    }

    #[test]
    fn ecc_digests_are_fitted_to_32_bytes() {
        let fit = |d: &[u8]| match sign_input(KeyAlgorithm::EccP256, d) {
            Ok(SignInput::EcdsaDigest { digest }) => digest,
            other => panic!("{other:?}"),
        };
        assert_eq!(fit(&[7u8; 32]), vec![7u8; 32]);
        let mut short = vec![0u8; 12];
        short.extend_from_slice(&[9u8; 20]);
        assert_eq!(fit(&[9u8; 20]), short);
        let long: Vec<u8> = (0..48).collect();
        assert_eq!(fit(&long), long[..32].to_vec());
        assert_eq!(
            sign_input(KeyAlgorithm::EccP256, &[]),
            Err(Status::WrongData)
        );
        assert_eq!(
            sign_input(KeyAlgorithm::EccP256, &[1u8; 65]),
            Err(Status::WrongData)
        );
    }

    #[test]
    fn rsa_needs_a_padded_block() {
        assert_eq!(
            sign_input(KeyAlgorithm::Rsa2048, &[0x55u8; 256]),
            Err(Status::WrongData)
        );
        assert_eq!(
            sign_input(KeyAlgorithm::Rsa2048, &[0x01u8; 32]),
            Err(Status::WrongData)
        );
        let mut block = vec![0x00, 0x01];
        block.resize(256 - 4, 0xFF);
        block.extend_from_slice(&[0x00, 0xA, 0xB, 0xC]);
        assert_eq!(
            sign_input(KeyAlgorithm::Rsa2048, &block),
            Ok(SignInput::RsaPkcs1 {
                data: vec![0xA, 0xB, 0xC]
            })
        );
    }
}
