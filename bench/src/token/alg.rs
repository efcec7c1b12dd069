//! The three signing mechanisms measured, with the input each signs: a
//! SHA-256 digest for ECDSA, its DigestInfo for PKCS#1 v1.5, and a short
//! message that the token hashes itself for SHA256-RSA-PSS.

use serde::Serialize;

/// A measured mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Alg {
    /// CKM_ECDSA on P-256 over a 32-byte digest.
    Ecdsa,
    /// CKM_RSA_PKCS on RSA-2048 over a SHA-256 DigestInfo.
    RsaPkcs,
    /// CKM_SHA256_RSA_PKCS_PSS on RSA-2048 (salt 32, MGF1-SHA256).
    RsaPss,
}

/// DER prefix of a SHA-256 DigestInfo (RFC 8017 9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

impl Alg {
    /// All, in table order.
    pub const ALL: [Alg; 3] = [Alg::Ecdsa, Alg::RsaPkcs, Alg::RsaPss];

    /// The PKCS#11 name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Ecdsa => "CKM_ECDSA P-256",
            Alg::RsaPkcs => "CKM_RSA_PKCS 2048",
            Alg::RsaPss => "CKM_SHA256_RSA_PKCS_PSS 2048",
        }
    }

    /// The command-line name (cold-start child).
    pub fn arg(self) -> &'static str {
        match self {
            Alg::Ecdsa => "ecdsa",
            Alg::RsaPkcs => "rsa-pkcs",
            Alg::RsaPss => "rsa-pss",
        }
    }

    /// Parses [`Alg::arg`].
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.arg() == s)
    }

    /// The largest signature: 64 bytes (r||s) or 256 (RSA-2048).
    pub fn signature_len(self) -> usize {
        match self {
            Alg::Ecdsa => 64,
            Alg::RsaPkcs | Alg::RsaPss => 256,
        }
    }

    /// What is passed to C_Sign.
    pub fn input(self) -> Vec<u8> {
        let digest = openssl::sha::sha256(b"lanyard-bench: the document being signed");
        match self {
            Alg::Ecdsa => digest.to_vec(),
            Alg::RsaPkcs => {
                let mut v = SHA256_DIGEST_INFO.to_vec();
                v.extend_from_slice(&digest);
                v
            }
            Alg::RsaPss => b"a prescription: 28 days, one tablet daily".to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_have_the_expected_shapes() {
        assert_eq!(Alg::Ecdsa.input().len(), 32);
        assert_eq!(Alg::RsaPkcs.input().len(), 51);
        assert!(Alg::RsaPkcs.input().starts_with(&SHA256_DIGEST_INFO));
        for a in Alg::ALL {
            assert_eq!(Alg::parse(a.arg()), Some(a));
        }
        assert_eq!(Alg::parse("dsa"), None);
    }
}
