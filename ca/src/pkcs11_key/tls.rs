//! The token's key as a rustls client key, so an IT-desk operator can
//! present an operator certificate whose key stays on a token (their own
//! Lanyard card, an HSM): scheme choice and the matching PKCS#11 mechanism.

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use rustls::{SignatureAlgorithm as TlsAlgorithm, SignatureScheme};
use sha2::{Digest, Sha256, Sha384};

use super::{KeyAlg, Pkcs11Error, Pkcs11Key};

impl Pkcs11Key {
    /// Signs for TLS with `scheme` (one [`Pkcs11Key::tls_schemes`] lists).
    fn sign_tls(&self, scheme: SignatureScheme, msg: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let pss = |hash_alg, mgf, s_len: u64| PkcsPssParams {
            hash_alg,
            mgf,
            s_len: s_len.into(),
        };
        match scheme {
            SignatureScheme::ECDSA_NISTP256_SHA256 => self.sign_ecdsa(&Sha256::digest(msg)),
            SignatureScheme::ECDSA_NISTP384_SHA384 => self.sign_ecdsa(&Sha384::digest(msg)),
            SignatureScheme::RSA_PSS_SHA256 => self.sign_raw(
                &Mechanism::Sha256RsaPkcsPss(pss(
                    MechanismType::SHA256,
                    PkcsMgfType::MGF1_SHA256,
                    32,
                )),
                msg,
            ),
            SignatureScheme::RSA_PSS_SHA384 => self.sign_raw(
                &Mechanism::Sha384RsaPkcsPss(pss(
                    MechanismType::SHA384,
                    PkcsMgfType::MGF1_SHA384,
                    48,
                )),
                msg,
            ),
            SignatureScheme::RSA_PKCS1_SHA256 => self.sign_raw(&Mechanism::Sha256RsaPkcs, msg),
            SignatureScheme::RSA_PKCS1_SHA384 => self.sign_raw(&Mechanism::Sha384RsaPkcs, msg),
            _ => Err(Pkcs11Error::Call {
                action: "C_Sign (TLS signature scheme not supported)",
                source: CkError::NotSupported,
            }),
        }
    }

    /// The TLS signature schemes this key can make, most preferred first.
    pub fn tls_schemes(&self) -> &'static [SignatureScheme] {
        match self.shared.alg {
            KeyAlg::EcP256 => &[SignatureScheme::ECDSA_NISTP256_SHA256],
            KeyAlg::EcP384 => &[SignatureScheme::ECDSA_NISTP384_SHA384],
            KeyAlg::Rsa { .. } => &[
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::RSA_PSS_SHA384,
                SignatureScheme::RSA_PKCS1_SHA256,
                SignatureScheme::RSA_PKCS1_SHA384,
            ],
        }
    }
}

/// One TLS signature with a chosen scheme.
#[derive(Debug)]
struct TlsSigner {
    key: Pkcs11Key,
    scheme: SignatureScheme,
}

impl rustls::sign::Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.key.sign_tls(self.scheme, message).map_err(|e| {
            tracing::error!(error = %e, "PKCS#11 TLS signature failed");
            rustls::Error::General(format!("the PKCS#11 key could not sign: {e}"))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

impl rustls::sign::SigningKey for Pkcs11Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        let scheme = self
            .tls_schemes()
            .iter()
            .find(|s| offered.contains(s))
            .copied()?;
        Some(Box::new(TlsSigner {
            key: self.clone(),
            scheme,
        }))
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        Some(self.spki_der().into())
    }

    fn algorithm(&self) -> TlsAlgorithm {
        match self.shared.alg {
            KeyAlg::EcP256 | KeyAlg::EcP384 => TlsAlgorithm::ECDSA,
            KeyAlg::Rsa { .. } => TlsAlgorithm::RSA,
        }
    }
}
