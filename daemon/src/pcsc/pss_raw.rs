//! The one raw RSA private-key operation the PC/SC reader allows: on a block
//! that decodes as an EMSA-PSS encoding (RFC 8017 §9.1.2) for SHA-1 or a
//! SHA-2 hash. PIV clients pad PSS themselves; anything else is refused.

use openssl::hash::{hash, MessageDigest};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;

use crate::error::{Error, Result};
use crate::keys::{KeyType, SigningKey};

/// The longest salt accepted (as lanyard-piv): with the usual salt (the hash
/// length) a PSS block has over a thousand bits of fixed structure, but at the
/// maximum salt only about 15, which blinding could meet by trial and turn
/// this path into a raw RSA operation on chosen data (a decryption oracle).
const MAX_SALT: usize = 64;

/// The hashes a PSS encoding may use (the MGF1 hash is the same, as every PIV client does).
fn hashes() -> [MessageDigest; 5] {
    [
        MessageDigest::sha256(),
        MessageDigest::sha384(),
        MessageDigest::sha512(),
        MessageDigest::sha224(),
        MessageDigest::sha1(),
    ]
}

/// MGF1 (RFC 8017 B.2.1) of `seed`, `len` bytes.
fn mgf1(seed: &[u8], len: usize, md: MessageDigest) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len + md.size());
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut input = seed.to_vec();
        input.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&hash(md, &input)?);
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

/// Whether `em` is a PSS encoding for a key of `mod_bits` bits with hash `md`.
fn decodes_with(em: &[u8], mod_bits: usize, md: MessageDigest) -> Result<bool> {
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    let h_len = md.size();
    let lead = em.len() - em_len;
    if em[..lead].iter().any(|b| *b != 0) || em_len < h_len + 2 {
        return Ok(false);
    }
    let em = &em[lead..];
    let (masked_db, rest) = em.split_at(em_len - h_len - 1);
    let h = &rest[..h_len];
    let top_mask = 0xFFu8 >> (8 * em_len - em_bits);
    if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
        return Ok(false);
    }
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(mgf1(h, masked_db.len(), md)?)
        .map(|(a, b)| a ^ b)
        .collect();
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // DB = PS (zeros) || 0x01 || salt, the salt no longer than MAX_SALT.
    Ok(match db.iter().position(|b| *b != 0) {
        Some(at) => db[at] == 0x01 && db.len() - at - 1 <= MAX_SALT,
        None => false,
    })
}

/// Whether `em` (as long as the modulus) is a well-formed PSS encoding.
pub fn is_pss_encoding(em: &[u8], mod_bits: usize) -> Result<bool> {
    if mod_bits < 2 || em.len() != mod_bits.div_ceil(8) || em.last() != Some(&0xBC) {
        return Ok(false);
    }
    for md in hashes() {
        if decodes_with(em, mod_bits, md)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The RSA private operation on `em`, only once it is checked to be a PSS encoding.
pub fn sign_pss_encoded(key: &SigningKey, em: &[u8]) -> Result<Vec<u8>> {
    if key.key_type() != KeyType::Rsa2048 {
        return Err(Error::MechanismInvalid(
            "a PSS-encoded block needs an RSA key".into(),
        ));
    }
    let mod_bits = key.pkey().bits() as usize;
    if !is_pss_encoding(em, mod_bits)? {
        return Err(Error::DataLenRange(
            "the block is not a PSS encoding; refused (no raw RSA on other data)".into(),
        ));
    }
    let mut ctx = PkeyCtx::new(key.pkey())?;
    ctx.sign_init()?;
    ctx.set_rsa_padding(Padding::NONE)?;
    let mut sig = Vec::with_capacity(em.len());
    ctx.sign_to_vec(em, &mut sig)?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::md::Md;
    use openssl::pkey::PKey;
    use openssl::sign::RsaPssSaltlen;

    fn key() -> SigningKey {
        SigningKey::generate(KeyType::Rsa2048).unwrap()
    }

    /// EM recovered from a real PSS signature with the public key.
    fn encoding(key: &SigningKey, digest: &[u8], md: &openssl::md::MdRef, salt: i32) -> Vec<u8> {
        let mut ctx = PkeyCtx::new(key.pkey()).unwrap();
        ctx.sign_init().unwrap();
        ctx.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        ctx.set_signature_md(md).unwrap();
        ctx.set_rsa_mgf1_md(md).unwrap();
        ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt))
            .unwrap();
        let mut sig = Vec::new();
        ctx.sign_to_vec(digest, &mut sig).unwrap();
        let rsa = key.pkey().rsa().unwrap();
        let mut em = vec![0; rsa.size() as usize];
        let n = rsa.public_decrypt(&sig, &mut em, Padding::NONE).unwrap();
        em.truncate(n);
        em
    }

    fn verifies(
        key: &SigningKey,
        digest: &[u8],
        sig: &[u8],
        md: &openssl::md::MdRef,
        salt: i32,
    ) -> bool {
        let public = PKey::public_key_from_der(&key.public_key_der().unwrap()).unwrap();
        let mut v = PkeyCtx::new(&public).unwrap();
        v.verify_init().unwrap();
        v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        v.set_signature_md(md).unwrap();
        v.set_rsa_mgf1_md(md).unwrap();
        v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt)).unwrap();
        v.verify(digest, sig).unwrap_or(false)
    }

    #[test]
    fn a_pss_encoding_is_signed_and_verifies() {
        let key = key();
        for (md, dlen, salt) in [
            (Md::sha256(), 32, 32),
            (Md::sha256(), 32, 0),
            (Md::sha384(), 48, 48),
            (Md::sha1(), 20, 20),
        ] {
            let digest = vec![0x5A; dlen];
            let em = encoding(&key, &digest, md, salt);
            assert_eq!(em.len(), 256);
            let sig = sign_pss_encoded(&key, &em).unwrap();
            assert!(verifies(&key, &digest, &sig, md, salt), "salt {salt}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let key = key();
        let digest = [1u8; 32];
        let mut em = encoding(&key, &digest, Md::sha256(), 32);
        // Not ending in BC, wrong length, top bit set, a PKCS#1 v1.5 block, a ciphertext-like block.
        let mut no_bc = em.clone();
        no_bc[255] = 0xBD;
        let mut pkcs1 = vec![0x00, 0x01];
        pkcs1.extend(std::iter::repeat_n(0xFF, 221));
        pkcs1.push(0x00);
        pkcs1.extend([7u8; 32]);
        let mut top = em.clone();
        top[0] |= 0x80;
        let mut random_bc = vec![0x42u8; 256];
        random_bc[0] = 0x12;
        random_bc[255] = 0xBC;
        for bad in [no_bc, em[1..].to_vec(), pkcs1, top, random_bc, vec![0xBC]] {
            assert!(sign_pss_encoded(&key, &bad).is_err());
        }
        // A PS that is not all zeros (DB byte 10 of a 32-byte-salt SHA-256 encoding).
        em[10] ^= 0x55;
        assert!(!decodes_with(&em, 2048, MessageDigest::sha256()).unwrap());
        let ec = SigningKey::generate(KeyType::EcP256).unwrap();
        assert!(sign_pss_encoded(&ec, &encoding(&key, &digest, Md::sha256(), 32)).is_err());
    }

    #[test]
    fn a_salt_longer_than_64_bytes_is_refused() {
        // At the maximum salt a PSS block has too little structure to tell it
        // from blinded chosen data: only salts up to 64 bytes are signed.
        let key = key();
        let digest = [3u8; 32];
        let em = encoding(&key, &digest, Md::sha256(), 64);
        assert!(sign_pss_encoded(&key, &em).is_ok());
        for salt in [65, 222] {
            let em = encoding(&key, &digest, Md::sha256(), salt);
            assert!(sign_pss_encoded(&key, &em).is_err(), "salt {salt}");
        }
    }
}
