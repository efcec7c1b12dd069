//! The hash functions the module computes itself (digests, hash-and-sign
//! mechanisms) and the PKCS#1 v1.5 DigestInfo encoding that wraps a digest
//! before the daemon pads and signs it.

use cryptoki_sys::*;
use lanyard_proto::agent::HashAlgorithm;
use openssl::hash::{Hasher, MessageDigest};

use crate::error::{Pkcs11Error, Result};

/// A hash function known to the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// The hash a PKCS#11 digest mechanism (`CKM_SHA256`, ...) names.
    pub fn from_digest_mechanism(mech: CK_MECHANISM_TYPE) -> Option<HashAlg> {
        match mech {
            CKM_SHA_1 => Some(HashAlg::Sha1),
            CKM_SHA224 => Some(HashAlg::Sha224),
            CKM_SHA256 => Some(HashAlg::Sha256),
            CKM_SHA384 => Some(HashAlg::Sha384),
            CKM_SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The hash a `CKG_MGF1_*` mask generation function uses.
    pub fn from_mgf(mgf: CK_RSA_PKCS_MGF_TYPE) -> Option<HashAlg> {
        match mgf {
            CKG_MGF1_SHA1 => Some(HashAlg::Sha1),
            CKG_MGF1_SHA224 => Some(HashAlg::Sha224),
            CKG_MGF1_SHA256 => Some(HashAlg::Sha256),
            CKG_MGF1_SHA384 => Some(HashAlg::Sha384),
            CKG_MGF1_SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The digest mechanism of this hash.
    pub fn mechanism(self) -> CK_MECHANISM_TYPE {
        match self {
            HashAlg::Sha1 => CKM_SHA_1,
            HashAlg::Sha224 => CKM_SHA224,
            HashAlg::Sha256 => CKM_SHA256,
            HashAlg::Sha384 => CKM_SHA384,
            HashAlg::Sha512 => CKM_SHA512,
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The OpenSSL digest.
    pub fn message_digest(self) -> MessageDigest {
        match self {
            HashAlg::Sha1 => MessageDigest::sha1(),
            HashAlg::Sha224 => MessageDigest::sha224(),
            HashAlg::Sha256 => MessageDigest::sha256(),
            HashAlg::Sha384 => MessageDigest::sha384(),
            HashAlg::Sha512 => MessageDigest::sha512(),
        }
    }

    /// The OpenSSL digest as the EVP_PKEY_CTX functions take it.
    pub fn md(self) -> &'static openssl::md::MdRef {
        use openssl::md::Md;
        match self {
            HashAlg::Sha1 => Md::sha1(),
            HashAlg::Sha224 => Md::sha224(),
            HashAlg::Sha256 => Md::sha256(),
            HashAlg::Sha384 => Md::sha384(),
            HashAlg::Sha512 => Md::sha512(),
        }
    }

    /// The agent protocol's name for this hash.
    pub fn to_proto(self) -> HashAlgorithm {
        match self {
            HashAlg::Sha1 => HashAlgorithm::Sha1,
            HashAlg::Sha224 => HashAlgorithm::Sha224,
            HashAlg::Sha256 => HashAlgorithm::Sha256,
            HashAlg::Sha384 => HashAlgorithm::Sha384,
            HashAlg::Sha512 => HashAlgorithm::Sha512,
        }
    }

    /// The DER prefix of a DigestInfo for this hash (RFC 8017, 9.2 note 1);
    /// the digest follows it.
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            HashAlg::Sha1 => &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ],
            HashAlg::Sha224 => &[
                0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x04, 0x05, 0x00, 0x04, 0x1c,
            ],
            HashAlg::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            HashAlg::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            HashAlg::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// DER DigestInfo { algorithm, digest }: what CKM_SHA*_RSA_PKCS signs.
    pub fn digest_info(self, digest: &[u8]) -> Result<Vec<u8>> {
        if digest.len() != self.output_len() {
            return Err(Pkcs11Error::DataLenRange);
        }
        let prefix = self.digest_info_prefix();
        let mut out = Vec::with_capacity(prefix.len() + digest.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(digest);
        Ok(out)
    }

    /// One-shot digest.
    pub fn digest(self, data: &[u8]) -> Result<Vec<u8>> {
        Ok(openssl::hash::hash(self.message_digest(), data)?.to_vec())
    }
}

/// An incremental hash (C_DigestUpdate, C_SignUpdate, C_VerifyUpdate).
pub struct RunningHash {
    alg: HashAlg,
    hasher: Hasher,
}

impl RunningHash {
    /// Starts hashing with `alg`.
    pub fn new(alg: HashAlg) -> Result<Self> {
        Ok(RunningHash {
            alg,
            hasher: Hasher::new(alg.message_digest())?,
        })
    }

    /// The hash in use.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// Feeds more data.
    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.hasher.update(data)?)
    }

    /// Finishes and returns the digest.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        Ok(self.hasher.finish()?.to_vec())
    }
}

impl std::fmt::Debug for RunningHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHash")
            .field("alg", &self.alg)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_info_prefixes_are_well_formed_der() {
        for alg in [
            HashAlg::Sha1,
            HashAlg::Sha224,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            let di = alg.digest_info(&vec![0xab; alg.output_len()]).unwrap();
            // SEQUENCE whose length covers the rest, ending with OCTET STRING of len().
            assert_eq!(di[0], 0x30);
            assert_eq!(di[1] as usize, di.len() - 2);
            let p = alg.digest_info_prefix();
            assert_eq!(p[p.len() - 2], 0x04);
            assert_eq!(p[p.len() - 1] as usize, alg.output_len());
        }
    }

    #[test]
    fn sha256_digest_info_matches_rfc8017() {
        let d = HashAlg::Sha256.digest(b"abc").unwrap();
        let di = HashAlg::Sha256.digest_info(&d).unwrap();
        assert_eq!(
            &di[..19],
            b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"
        );
        assert_eq!(di.len(), 51);
    }

    #[test]
    fn wrong_digest_length_is_data_len_range() {
        assert_eq!(
            HashAlg::Sha384.digest_info(&[0; 32]),
            Err(Pkcs11Error::DataLenRange)
        );
    }

    #[test]
    fn running_hash_equals_one_shot() {
        let mut h = RunningHash::new(HashAlg::Sha512).unwrap();
        h.update(b"hello ").unwrap();
        h.update(b"world").unwrap();
        assert_eq!(
            h.finish().unwrap(),
            HashAlg::Sha512.digest(b"hello world").unwrap()
        );
    }
}
