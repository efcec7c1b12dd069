//! Checking one signature per configuration and mechanism with OpenSSL and
//! the public key read from the token, so every figure is of real signatures.

use anyhow::{bail, Context};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Verifier};

use super::alg::Alg;

/// A P-256 public key from CKA_EC_POINT (DER OCTET STRING or the bare point).
pub fn p256_public_key(ec_point: &[u8]) -> anyhow::Result<PKey<Public>> {
    let point = match ec_point {
        [0x04, 65, rest @ ..] if rest.len() == 65 => rest,
        bare => bare,
    };
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut ctx = BigNumContext::new()?;
    let point = EcPoint::from_bytes(&group, point, &mut ctx)
        .context("CKA_EC_POINT is not a P-256 point")?;
    Ok(PKey::from_ec_key(EcKey::from_public_key(&group, &point)?)?)
}

/// An RSA public key from CKA_MODULUS and CKA_PUBLIC_EXPONENT.
pub fn rsa_public_key(n: &[u8], e: &[u8]) -> anyhow::Result<PKey<Public>> {
    let rsa = Rsa::from_public_components(BigNum::from_slice(n)?, BigNum::from_slice(e)?)?;
    Ok(PKey::from_rsa(rsa)?)
}

/// Checks that `signature` is `alg`'s signature of `input` under `key`.
pub fn verify(alg: Alg, key: &PKey<Public>, input: &[u8], signature: &[u8]) -> anyhow::Result<()> {
    let ok = match alg {
        Alg::Ecdsa => {
            if signature.len() != 64 {
                bail!("ECDSA signature of {} bytes, 64 expected", signature.len());
            }
            let sig = EcdsaSig::from_private_components(
                BigNum::from_slice(&signature[..32])?,
                BigNum::from_slice(&signature[32..])?,
            )?;
            sig.verify(input, &*key.ec_key()?)?
        }
        Alg::RsaPkcs => {
            let mut ctx = PkeyCtx::new(key)?;
            ctx.verify_init()?;
            ctx.set_rsa_padding(Padding::PKCS1)?;
            ctx.verify(input, signature).unwrap_or(false)
        }
        Alg::RsaPss => {
            let mut v = Verifier::new(MessageDigest::sha256(), key)?;
            v.set_rsa_padding(Padding::PKCS1_PSS)?;
            v.set_rsa_mgf1_md(MessageDigest::sha256())?;
            v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(32))?;
            v.update(input)?;
            v.verify(signature).unwrap_or(false)
        }
    };
    if !ok {
        bail!(
            "the {} signature does not verify with the token's public key",
            alg.name()
        );
    }
    Ok(())
}
