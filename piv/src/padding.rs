//! Validation of the padded RSA input PIV clients send to GENERAL
//! AUTHENTICATE (SP 800-73-4 part 2 §3.2.4 leaves padding to the client):
//! only a PKCS#1 v1.5 type-1 block or a PSS encoding passes, so the card
//! never applies its private key to arbitrary data (RFC 8017 §9.1, §9.2).

use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// Bytes of an RSA-2048 modulus: the length of every RSA input.
pub const RSA_2048_LEN: usize = 256;

/// Fewest 0xFF bytes of PKCS#1 v1.5 type-1 padding (RFC 8017 §9.2 note 1).
const MIN_PKCS1_FF: usize = 8;

/// Longest PSS salt accepted: the largest hash (SHA-512). A longer salt
/// leaves the encoding with too little structure (at "maximum" salt only
/// 15 bits) to tell it from arbitrary data, so it is refused.
const MAX_PSS_SALT: usize = 64;

/// What a valid RSA input turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsaInput<'a> {
    /// A type-1 block; the data it carries (usually a DigestInfo).
    Pkcs1(&'a [u8]),
    /// A PSS encoding EM, checked to decode for some hash and MGF1 hash.
    Pss,
}

/// Classifies a 2048-bit RSA input, or `None` when it is neither a
/// well-formed PKCS#1 v1.5 type-1 block nor a PSS encoding.
pub fn classify_rsa_2048(block: &[u8]) -> Option<RsaInput<'_>> {
    if block.len() != RSA_2048_LEN {
        return None;
    }
    if let Some(data) = pkcs1_type1_data(block) {
        return Some(RsaInput::Pkcs1(data));
    }
    is_pss_encoding(block, 8 * RSA_2048_LEN - 1).then_some(RsaInput::Pss)
}

/// The data inside `00 01 FF..FF 00 data` (at least eight FF, data not
/// empty), or `None`.
fn pkcs1_type1_data(block: &[u8]) -> Option<&[u8]> {
    let rest = block.strip_prefix(&[0x00, 0x01])?;
    let ff = rest.iter().take_while(|&&b| b == 0xFF).count();
    if ff < MIN_PKCS1_FF {
        return None;
    }
    let data = rest[ff..].strip_prefix(&[0x00])?;
    (!data.is_empty()).then_some(data)
}

/// The hashes PSS may use for H and for MGF1.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

const HASHES: [Hash; 5] = [
    Hash::Sha1,
    Hash::Sha224,
    Hash::Sha256,
    Hash::Sha384,
    Hash::Sha512,
];

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha1 => run::<Sha1>(parts),
            Hash::Sha224 => run::<Sha224>(parts),
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }
}

/// MGF1 (RFC 8017 B.2.1) XORed into `out`.
fn xor_mgf1(hash: Hash, seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in out.chunks_mut(hash.len()).enumerate() {
        let c = (counter as u32).to_be_bytes();
        let mask = hash.digest(&[seed, &c]);
        for (o, m) in chunk.iter_mut().zip(mask) {
            *o ^= m;
        }
    }
}

/// True when `em` is EMSA-PSS-ENCODE output for `em_bits` (RFC 8017 §9.1.2
/// steps 4-10, without the message) for some hash length and MGF1 hash.
fn is_pss_encoding(em: &[u8], em_bits: usize) -> bool {
    let top_bits = 8 * em.len() - em_bits;
    if em.last() != Some(&0xBC) || top_bits > 7 || em[0] >> (8 - top_bits) != 0 {
        return false;
    }
    HASHES.iter().any(|&h| {
        HASHES
            .iter()
            .any(|&mgf| pss_db_decodes(em, h.len(), mgf, top_bits))
    })
}

fn pss_db_decodes(em: &[u8], h_len: usize, mgf: Hash, top_bits: usize) -> bool {
    let Some(db_len) = em.len().checked_sub(h_len + 1) else {
        return false;
    };
    if db_len < h_len + 1 {
        return false;
    }
    let (masked_db, rest) = em.split_at(db_len);
    let h = &rest[..h_len];
    let mut db = masked_db.to_vec();
    xor_mgf1(mgf, h, &mut db);
    db[0] &= 0xFF >> top_bits;
    let zeros = db.iter().take_while(|&&b| b == 0).count();
    let salt_len = db_len.saturating_sub(zeros + 1);
    db.get(zeros) == Some(&0x01) && salt_len <= MAX_PSS_SALT
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::{Padding, Rsa};
    use openssl::sign::{RsaPssSaltlen, Signer};
    use proptest::prelude::*;

    fn key() -> PKey<Private> {
        let rsa = Rsa::generate(2048).expect("RSA key");
        PKey::from_rsa(rsa).expect("pkey")
    }

    /// The EM a PSS signer produced, recovered with the public key.
    fn pss_em(
        key: &PKey<Private>,
        md: MessageDigest,
        mgf: MessageDigest,
        salt: RsaPssSaltlen,
    ) -> Vec<u8> {
        let mut signer = Signer::new(md, key).expect("signer");
        signer.set_rsa_padding(Padding::PKCS1_PSS).expect("pss");
        signer.set_rsa_mgf1_md(mgf).expect("mgf1");
        signer.set_rsa_pss_saltlen(salt).expect("salt");
        signer.update(b"prescription").expect("update");
        let sig = signer.sign_to_vec().expect("sign");
        let rsa = key.rsa().expect("rsa");
        let mut em = vec![0u8; 256];
        let n = rsa
            .public_decrypt(&sig, &mut em, Padding::NONE)
            .expect("raw public op");
        assert_eq!(n, 256);
        em
    }

    fn type1(data: &[u8]) -> Vec<u8> {
        let mut block = vec![0x00, 0x01];
        block.resize(256 - data.len() - 1, 0xFF);
        block.push(0x00);
        block.extend_from_slice(data);
        block
    }

    #[test]
    fn pkcs1_type1_blocks_pass_with_their_data() {
        let digest_info = [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09];
        let block = type1(&digest_info);
        assert_eq!(
            classify_rsa_2048(&block),
            Some(RsaInput::Pkcs1(&digest_info[..]))
        );
    }

    #[test]
    fn malformed_pkcs1_blocks_are_refused() {
        let seven_ff = type1(&[0xAA; 246]);
        assert_eq!(classify_rsa_2048(&seven_ff), None, "7 FF");
        let mut short_ff = vec![0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];
        short_ff.resize(256, 0xAB);
        assert_eq!(classify_rsa_2048(&short_ff), None, "7 FF, data after");
        let mut type2 = type1(&[1, 2, 3]);
        type2[1] = 0x02;
        assert_eq!(classify_rsa_2048(&type2), None);
        let no_separator = {
            let mut b = vec![0x00, 0x01];
            b.resize(256, 0xFF);
            b
        };
        assert_eq!(classify_rsa_2048(&no_separator), None);
        assert_eq!(classify_rsa_2048(&type1(&[])), None, "empty data");
        assert_eq!(
            classify_rsa_2048(&type1(&[1, 2, 3])[1..]),
            None,
            "255 bytes"
        );
        assert_eq!(classify_rsa_2048(&[0u8; 256]), None);
    }

    #[test]
    fn pss_encodings_from_openssl_pass() {
        let key = key();
        for md in [
            MessageDigest::sha1(),
            MessageDigest::sha224(),
            MessageDigest::sha256(),
            MessageDigest::sha384(),
            MessageDigest::sha512(),
        ] {
            let em = pss_em(&key, md, md, RsaPssSaltlen::DIGEST_LENGTH);
            assert_eq!(classify_rsa_2048(&em), Some(RsaInput::Pss));
            let em = pss_em(&key, md, MessageDigest::sha1(), RsaPssSaltlen::custom(0));
            assert_eq!(
                classify_rsa_2048(&em),
                Some(RsaInput::Pss),
                "salt 0, MGF1-SHA1"
            );
        }
    }

    #[test]
    fn pss_with_maximum_salt_is_refused() {
        let key = key();
        let em = pss_em(
            &key,
            MessageDigest::sha256(),
            MessageDigest::sha256(),
            RsaPssSaltlen::MAXIMUM_LENGTH,
        );
        assert_eq!(classify_rsa_2048(&em), None);
    }

    #[test]
    fn broken_pss_encodings_are_refused() {
        let key = key();
        let em = pss_em(
            &key,
            MessageDigest::sha256(),
            MessageDigest::sha256(),
            RsaPssSaltlen::DIGEST_LENGTH,
        );
        let mut no_bc = em.clone();
        no_bc[255] = 0xBD;
        assert_eq!(classify_rsa_2048(&no_bc), None);
        let mut top_bit = em.clone();
        top_bit[0] |= 0x80;
        assert_eq!(classify_rsa_2048(&top_bit), None);
        let mut flipped = em.clone();
        flipped[10] ^= 0x01;
        assert_eq!(classify_rsa_2048(&flipped), None);
    }

    proptest! {
        #[test]
        fn arbitrary_blocks_are_refused(mut block in proptest::collection::vec(any::<u8>(), 256)) {
            // Random data is neither form (the odds of passing are < 2^-400),
            // even when it ends like a PSS encoding.
            block[255] = 0xBC;
            block[0] &= 0x7F;
            prop_assert_eq!(classify_rsa_2048(&block), None);
        }

        #[test]
        fn any_type1_block_round_trips(data in proptest::collection::vec(any::<u8>(), 1..=245)) {
            let block = type1(&data);
            prop_assert_eq!(classify_rsa_2048(&block), Some(RsaInput::Pkcs1(&data[..])));
        }
    }
}
