//! The card's asymmetric key with OpenSSL: generation (RSA-2048, EC P-256),
//! PKCS#8 import/export for the store, and the signing mechanisms the
//! PKCS#11 module offers (raw PKCS#1 v1.5, PSS with any salt, raw ECDSA).

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::md::{Md, MdRef};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::RsaPssSaltlen;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use lanyard_proto::agent::{HashAlgorithm, KeyType as ProtoKeyType, SignAlgorithm};

/// The kinds of card key Lanyard issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA, 2048-bit modulus, e = 65537 (the NHS card default).
    Rsa2048,
    /// ECDSA over NIST P-256.
    EcP256,
}

impl KeyType {
    /// The name used in card files and the CLI (`rsa-2048`, `ec-p256`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::EcP256 => "ec-p256",
        }
    }

    /// Parses the name used in card files and the CLI.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rsa-2048" => Some(KeyType::Rsa2048),
            "ec-p256" => Some(KeyType::EcP256),
            _ => None,
        }
    }

    /// From the agent protocol (unspecified means the RSA-2048 default).
    pub fn from_proto(v: i32) -> Result<Self> {
        match ProtoKeyType::try_from(v) {
            Ok(ProtoKeyType::Unspecified) | Ok(ProtoKeyType::Rsa2048) => Ok(KeyType::Rsa2048),
            Ok(ProtoKeyType::EcP256) => Ok(KeyType::EcP256),
            Err(_) => Err(Error::BadRequest(format!("unknown key type {v}"))),
        }
    }

    /// To the agent protocol.
    pub fn to_proto(self) -> ProtoKeyType {
        match self {
            KeyType::Rsa2048 => ProtoKeyType::Rsa2048,
            KeyType::EcP256 => ProtoKeyType::EcP256,
        }
    }
}

/// A signing request after validation of the protocol fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// EMSA-PKCS1-v1_5 type-1 padding over any input up to k-11 bytes.
    RsaPkcs1,
    /// RSASSA-PSS over a digest of `hash`.
    RsaPss {
        hash: HashAlgorithm,
        mgf_hash: HashAlgorithm,
        salt_len: u32,
    },
    /// ECDSA over a caller-supplied digest; r||s output.
    Ecdsa,
}

impl Mechanism {
    /// From the agent protocol's Sign fields.
    pub fn from_proto(algorithm: i32, hash: i32, mgf_hash: i32, salt_len: u32) -> Result<Self> {
        match SignAlgorithm::try_from(algorithm) {
            Ok(SignAlgorithm::RsaPkcs1) => Ok(Mechanism::RsaPkcs1),
            Ok(SignAlgorithm::Ecdsa) => Ok(Mechanism::Ecdsa),
            Ok(SignAlgorithm::RsaPss) => {
                let h = |v: i32, what: &str| match HashAlgorithm::try_from(v) {
                    Ok(HashAlgorithm::Unspecified) | Err(_) => Err(Error::MechanismParamInvalid(
                        format!("PSS needs a {what} (got {v})"),
                    )),
                    Ok(h) => Ok(h),
                };
                Ok(Mechanism::RsaPss {
                    hash: h(hash, "hash")?,
                    mgf_hash: h(mgf_hash, "MGF1 hash")?,
                    salt_len,
                })
            }
            Ok(SignAlgorithm::Unspecified) | Err(_) => Err(Error::MechanismInvalid(format!(
                "unknown signing algorithm {algorithm}"
            ))),
        }
    }
}

fn md(h: HashAlgorithm) -> Result<&'static MdRef> {
    Ok(match h {
        HashAlgorithm::Sha1 => Md::sha1(),
        HashAlgorithm::Sha224 => Md::sha224(),
        HashAlgorithm::Sha256 => Md::sha256(),
        HashAlgorithm::Sha384 => Md::sha384(),
        HashAlgorithm::Sha512 => Md::sha512(),
        HashAlgorithm::Unspecified => {
            return Err(Error::MechanismParamInvalid("hash not specified".into()))
        }
    })
}

/// A card's private key, ready to sign. Dropping it frees (and OpenSSL clears) the key.
pub struct SigningKey {
    pkey: PKey<Private>,
    key_type: KeyType,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_type.as_str())
    }
}

impl SigningKey {
    /// Generates a new key of `key_type`.
    pub fn generate(key_type: KeyType) -> Result<Self> {
        let pkey = match key_type {
            KeyType::Rsa2048 => PKey::from_rsa(Rsa::generate(2048)?)?,
            KeyType::EcP256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
                PKey::from_ec_key(EcKey::generate(&group)?)?
            }
        };
        Ok(SigningKey { pkey, key_type })
    }

    /// Wraps an existing OpenSSL key (tests, imports); only RSA-2048 and P-256 are accepted.
    pub fn from_pkey(pkey: PKey<Private>) -> Result<Self> {
        let key_type = match pkey.id() {
            Id::RSA if pkey.bits() == 2048 => KeyType::Rsa2048,
            Id::EC => {
                let ec = pkey.ec_key()?;
                if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                    return Err(Error::Crypto("EC key is not on P-256".into()));
                }
                KeyType::EcP256
            }
            _ => {
                return Err(Error::Crypto(format!(
                    "unsupported key ({:?}, {} bits)",
                    pkey.id(),
                    pkey.bits()
                )))
            }
        };
        Ok(SigningKey { pkey, key_type })
    }

    /// Loads a key from PKCS#8 DER (as decrypted from the store).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        Self::from_pkey(PKey::private_key_from_pkcs8(der)?)
    }

    /// The key as PKCS#8 DER, in a buffer wiped on drop.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.pkey.private_key_to_pkcs8()?))
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The OpenSSL key (for CSR signing).
    pub fn pkey(&self) -> &PKey<Private> {
        &self.pkey
    }

    /// SubjectPublicKeyInfo, DER.
    pub fn public_key_der(&self) -> Result<Vec<u8>> {
        Ok(self.pkey.public_key_to_der()?)
    }

    /// Signs `data` with `mech`.
    pub fn sign(&self, mech: Mechanism, data: &[u8]) -> Result<Vec<u8>> {
        match (mech, self.key_type) {
            (Mechanism::RsaPkcs1, KeyType::Rsa2048) => self.sign_pkcs1(data),
            (
                Mechanism::RsaPss {
                    hash,
                    mgf_hash,
                    salt_len,
                },
                KeyType::Rsa2048,
            ) => self.sign_pss(hash, mgf_hash, salt_len, data),
            (Mechanism::Ecdsa, KeyType::EcP256) => self.sign_ecdsa(data),
            (m, k) => Err(Error::MechanismInvalid(format!(
                "{m:?} cannot be used with a {} key",
                k.as_str()
            ))),
        }
    }

    fn sign_pkcs1(&self, data: &[u8]) -> Result<Vec<u8>> {
        let k = self.pkey.size();
        if data.len() > k - 11 {
            return Err(Error::DataLenRange(format!(
                "RSA PKCS#1 input is {} bytes; at most {} fit a {}-bit key",
                data.len(),
                k - 11,
                k * 8
            )));
        }
        // EVP_PKEY_sign with PKCS#1 padding and no digest set pads the raw
        // input (type 1) like RSA_private_encrypt, but on the provider key
        // itself, so its blinding is set up once, not per signature.
        let mut ctx = PkeyCtx::new(&self.pkey)?;
        ctx.sign_init()?;
        ctx.set_rsa_padding(Padding::PKCS1)?;
        let mut sig = Vec::with_capacity(k);
        ctx.sign_to_vec(data, &mut sig)?;
        Ok(sig)
    }

    fn sign_pss(
        &self,
        hash: HashAlgorithm,
        mgf_hash: HashAlgorithm,
        salt_len: u32,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        let md_hash = md(hash)?;
        let md_mgf = md(mgf_hash)?;
        if data.len() != md_hash.size() {
            return Err(Error::DataLenRange(format!(
                "PSS input must be a {}-byte {hash:?} digest, got {} bytes",
                md_hash.size(),
                data.len()
            )));
        }
        // RFC 8017 9.1.1: emLen >= hLen + sLen + 2, emLen = ceil((modBits - 1) / 8).
        let em_len = (self.pkey.bits() as usize - 1).div_ceil(8);
        if salt_len as usize + md_hash.size() + 2 > em_len {
            return Err(Error::MechanismParamInvalid(format!(
                "PSS salt length {salt_len} too long for this key and hash"
            )));
        }
        let salt = i32::try_from(salt_len)
            .map_err(|_| Error::MechanismParamInvalid("PSS salt length too long".into()))?;
        let mut ctx = PkeyCtx::new(&self.pkey)?;
        ctx.sign_init()?;
        ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
        ctx.set_signature_md(md_hash)?;
        ctx.set_rsa_mgf1_md(md_mgf)?;
        ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt))?;
        let mut sig = Vec::with_capacity(self.pkey.size());
        ctx.sign_to_vec(data, &mut sig)?;
        Ok(sig)
    }

    fn sign_ecdsa(&self, data: &[u8]) -> Result<Vec<u8>> {
        // Any length: OpenSSL uses the leftmost bits up to the order's size
        // (FIPS 186-4), as CKM_ECDSA expects.
        let ec = self.pkey.ec_key()?;
        let sig = EcdsaSig::sign(data, &ec)?;
        let mut out = sig.r().to_vec_padded(32)?;
        out.extend_from_slice(&sig.s().to_vec_padded(32)?);
        Ok(out)
    }
}

/// The uncompressed EC point (65 bytes) of a P-256 public key.
pub fn ec_uncompressed_point(ec: &EcKey<openssl::pkey::Public>) -> Result<Vec<u8>> {
    let mut ctx = BigNumContext::new()?;
    Ok(ec
        .public_key()
        .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openssl::bn::BigNum;
    use openssl::hash::{hash, MessageDigest};
    use std::sync::OnceLock;

    pub(crate) fn rsa_key() -> &'static SigningKey {
        static K: OnceLock<SigningKey> = OnceLock::new();
        K.get_or_init(|| SigningKey::generate(KeyType::Rsa2048).unwrap())
    }

    fn ec_key() -> SigningKey {
        SigningKey::generate(KeyType::EcP256).unwrap()
    }

    fn pss(hash: HashAlgorithm, mgf_hash: HashAlgorithm, salt_len: u32) -> Mechanism {
        Mechanism::RsaPss {
            hash,
            mgf_hash,
            salt_len,
        }
    }

    fn verify_pss(key: &SigningKey, m: Mechanism, digest: &[u8], sig: &[u8]) -> bool {
        let Mechanism::RsaPss {
            hash,
            mgf_hash,
            salt_len,
        } = m
        else {
            panic!()
        };
        let public = PKey::public_key_from_der(&key.public_key_der().unwrap()).unwrap();
        let mut ctx = PkeyCtx::new(&public).unwrap();
        ctx.verify_init().unwrap();
        ctx.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        ctx.set_signature_md(md(hash).unwrap()).unwrap();
        ctx.set_rsa_mgf1_md(md(mgf_hash).unwrap()).unwrap();
        ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt_len as i32))
            .unwrap();
        ctx.verify(digest, sig).unwrap_or(false)
    }

    #[test]
    fn rsa_pkcs1_bare_md5_sha1_pair() {
        let key = rsa_key();
        let mut data = hash(MessageDigest::md5(), b"tls handshake")
            .unwrap()
            .to_vec();
        data.extend_from_slice(&hash(MessageDigest::sha1(), b"tls handshake").unwrap());
        assert_eq!(data.len(), 36);
        let sig = key.sign(Mechanism::RsaPkcs1, &data).unwrap();
        assert_eq!(sig.len(), 256);
        let public = Rsa::public_key_from_der(&key.public_key_der().unwrap()).unwrap();
        let mut out = vec![0; 256];
        let n = public
            .public_decrypt(&sig, &mut out, Padding::PKCS1)
            .unwrap();
        assert_eq!(&out[..n], &data[..]);
    }

    #[test]
    fn rsa_pkcs1_digest_info_verifies_as_sha256_signature() {
        let key = rsa_key();
        let msg = b"a clinical document";
        let digest = hash(MessageDigest::sha256(), msg).unwrap();
        let mut di = hex::decode("3031300d060960864801650304020105000420").unwrap();
        di.extend_from_slice(&digest);
        let sig = key.sign(Mechanism::RsaPkcs1, &di).unwrap();
        let public = PKey::public_key_from_der(&key.public_key_der().unwrap()).unwrap();
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
        v.update(msg).unwrap();
        assert!(v.verify(&sig).unwrap());
    }

    #[test]
    fn rsa_pkcs1_length_limit() {
        let key = rsa_key();
        key.sign(Mechanism::RsaPkcs1, &[1; 245]).unwrap();
        assert!(matches!(
            key.sign(Mechanism::RsaPkcs1, &[1; 246]),
            Err(Error::DataLenRange(_))
        ));
    }

    #[test]
    fn rsa_pss_salt_20_and_0_with_sha256() {
        let key = rsa_key();
        let digest = hash(MessageDigest::sha256(), b"doc").unwrap();
        for salt in [20, 32, 0] {
            let m = pss(HashAlgorithm::Sha256, HashAlgorithm::Sha256, salt);
            let sig = key.sign(m, &digest).unwrap();
            assert!(verify_pss(key, m, &digest, &sig), "salt {salt}");
            // The salt length is honoured: a verifier expecting another one refuses.
            let other = pss(HashAlgorithm::Sha256, HashAlgorithm::Sha256, salt + 1);
            assert!(!verify_pss(key, other, &digest, &sig), "salt {salt}");
        }
    }

    #[test]
    fn rsa_pss_mgf_hash_differs_from_hash() {
        let key = rsa_key();
        let digest = hash(MessageDigest::sha384(), b"doc").unwrap();
        let m = pss(HashAlgorithm::Sha384, HashAlgorithm::Sha1, 48);
        let sig = key.sign(m, &digest).unwrap();
        assert!(verify_pss(key, m, &digest, &sig));
    }

    #[test]
    fn rsa_pss_checks_digest_length_and_params() {
        let key = rsa_key();
        let m = pss(HashAlgorithm::Sha256, HashAlgorithm::Sha256, 32);
        assert!(matches!(key.sign(m, &[0; 20]), Err(Error::DataLenRange(_))));
        let big = pss(HashAlgorithm::Sha256, HashAlgorithm::Sha256, 300);
        assert!(matches!(
            key.sign(big, &[0; 32]),
            Err(Error::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            Mechanism::from_proto(SignAlgorithm::RsaPss as i32, 0, 3, 32),
            Err(Error::MechanismParamInvalid(_))
        ));
    }

    #[test]
    fn ecdsa_raw_r_s_verifies() {
        let key = ec_key();
        for digest in [
            hash(MessageDigest::sha256(), b"doc").unwrap().to_vec(),
            hash(MessageDigest::sha384(), b"doc").unwrap().to_vec(),
            vec![0x5a; 100],
            vec![1; 20],
        ] {
            let sig = key.sign(Mechanism::Ecdsa, &digest).unwrap();
            assert_eq!(sig.len(), 64);
            let r = BigNum::from_slice(&sig[..32]).unwrap();
            let s = BigNum::from_slice(&sig[32..]).unwrap();
            let es = EcdsaSig::from_private_components(r, s).unwrap();
            let ec = key.pkey().ec_key().unwrap();
            assert!(es.verify(&digest, &ec).unwrap());
        }
    }

    #[test]
    fn wrong_mechanism_for_key_type() {
        assert!(matches!(
            rsa_key().sign(Mechanism::Ecdsa, &[0; 32]),
            Err(Error::MechanismInvalid(_))
        ));
        assert!(matches!(
            ec_key().sign(Mechanism::RsaPkcs1, &[0; 32]),
            Err(Error::MechanismInvalid(_))
        ));
    }

    #[test]
    fn pkcs8_round_trip() {
        let key = ec_key();
        let der = key.to_pkcs8().unwrap();
        let back = SigningKey::from_pkcs8(&der).unwrap();
        assert_eq!(back.key_type(), KeyType::EcP256);
        assert_eq!(
            back.public_key_der().unwrap(),
            key.public_key_der().unwrap()
        );
    }
}
