//! A private key held in a PKCS#11 token (an HSM, SoftHSM2, or an operator's
//! own Lanyard card through liblanyard_pkcs11.so), found by an RFC 7512 URI.
//! It signs for rcgen (certificates, CRLs) and for rustls (TLS client
//! authentication, tls.rs); the key never leaves the token.

mod der;
mod error;
mod objects;
mod tls;
mod token;

use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use sha2::{Digest, Sha256, Sha384};
use zeroize::Zeroizing;

pub use error::Pkcs11Error;

use crate::pkcs11_uri::Pkcs11Uri;
use error::call;
use objects::{find_private_key, public_half, sibling, P384_PARAMS};
use token::{connect, read_pin, uri_module};

/// Whether a key was found in the token or made there just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The URI named a key that was already there.
    Existing,
    /// The token held no such key; a new P-384 key pair was generated in it.
    Generated,
}

/// The kind of key and, with it, the signature algorithm used for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlg {
    EcP256,
    EcP384,
    Rsa { bits: usize },
}

impl KeyAlg {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlg::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlg::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// An open, logged-in session and the key's handle in it.
struct Connection {
    session: Session,
    key: ObjectHandle,
}

/// What every clone of a [`Pkcs11Key`] shares.
struct Shared {
    uri: Pkcs11Uri,
    ctx: Pkcs11,
    pin: Option<Zeroizing<String>>,
    token: String,
    alg: KeyAlg,
    /// The public key as rcgen wants it: the EC point, or the DER RSAPublicKey.
    public: Vec<u8>,
    /// The key's CKA_ID (maybe empty).
    id: Vec<u8>,
    /// PKCS#11 sessions are not Sync: one signature at a time.
    conn: Mutex<Connection>,
}

/// A private key in a PKCS#11 token. Cheap to clone; clones share one session.
#[derive(Clone)]
pub struct Pkcs11Key {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("uri", &self.shared.uri.redacted())
            .field("token", &self.shared.token)
            .field("alg", &self.shared.alg)
            .finish_non_exhaustive()
    }
}

/// Errors after which a new session may succeed (token re-inserted, HSM restarted).
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

impl Pkcs11Key {
    /// Opens the private key the URI names, logging in with the URI's PIN.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, Pkcs11Error> {
        let pin = read_pin(uri.pin.as_ref())?;
        Self::open_with_pin(uri, pin)
    }

    /// As [`Pkcs11Key::open`], with a PIN the caller obtained (e.g. prompted
    /// for) instead of the URI's; `None` logs in only if the token needs no
    /// PIN or has a protected authentication path.
    pub fn open_with_pin(
        uri: &Pkcs11Uri,
        pin: Option<Zeroizing<String>>,
    ) -> Result<Self, Pkcs11Error> {
        let ctx = uri_module(uri)?;
        let (session, info) = connect(&ctx, uri, pin.as_ref(), false)?;
        let token = info.label().to_string();
        let key = find_private_key(&session, uri, &token)?.ok_or_else(|| Pkcs11Error::NoKey {
            uri: uri.redacted(),
            token: token.clone(),
        })?;
        Self::finish(ctx, uri, pin, token, session, key)
    }

    /// Opens the key the URI names, or, if the token holds none, generates an
    /// EC P-384 key pair in it: on the token, sensitive, never extractable,
    /// labelled with `object=` (and `id=` if given).
    pub fn open_or_generate(uri: &Pkcs11Uri) -> Result<(Self, KeyOrigin), Pkcs11Error> {
        let pin = read_pin(uri.pin.as_ref())?;
        let ctx = uri_module(uri)?;
        let (session, info) = connect(&ctx, uri, pin.as_ref(), true)?;
        let token = info.label().to_string();
        if let Some(key) = find_private_key(&session, uri, &token)? {
            let key = Self::finish(ctx, uri, pin, token, session, key)?;
            return Ok((key, KeyOrigin::Existing));
        }
        let label = uri.object.clone().ok_or(Pkcs11Error::NoObjectNamed)?;
        let id = match &uri.id {
            Some(id) => id.clone(),
            None => session
                .generate_random_vec(16)
                .map_err(call("C_GenerateRandom"))?,
        };
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(P384_PARAMS.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        let (public, private) = session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(call("C_GenerateKeyPair"))?;
        tracing::info!(uri = %uri.redacted(), token = %token, "generated an EC P-384 key pair in the token");
        let (ctx_again, pin_again) = (ctx.clone(), pin.clone());
        match Self::finish(ctx, uri, pin, token, session, private) {
            Ok(key) => Ok((key, KeyOrigin::Generated)),
            Err(e) => {
                // Not a key anyone can use: leave nothing behind.
                tracing::warn!(error = %e, "removing the key pair just generated");
                if let Ok((session, _)) = connect(&ctx_again, uri, pin_again.as_ref(), true) {
                    let _ = session.destroy_object(private);
                    let _ = session.destroy_object(public);
                }
                Err(e)
            }
        }
    }

    fn finish(
        ctx: Pkcs11,
        uri: &Pkcs11Uri,
        pin: Option<Zeroizing<String>>,
        token: String,
        session: Session,
        key: ObjectHandle,
    ) -> Result<Self, Pkcs11Error> {
        let (alg, public, id) = public_half(&session, key, uri)?;
        let key = Pkcs11Key {
            shared: Arc::new(Shared {
                uri: uri.clone(),
                ctx,
                pin,
                token,
                alg,
                public,
                id,
                conn: Mutex::new(Connection { session, key }),
            }),
        };
        key.self_test()?;
        tracing::info!(uri = %uri.redacted(), token = %key.shared.token, alg = ?alg, "opened PKCS#11 key");
        Ok(key)
    }

    /// Signs a throw-away certificate and checks it with the public key found,
    /// so a mismatched public key object is caught before anything is issued.
    fn self_test(&self) -> Result<(), Pkcs11Error> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let failed = || Pkcs11Error::SelfTestFailed {
            uri: self.shared.uri.redacted(),
        };
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Lanyard PKCS#11 key self-test");
        let cert = params.self_signed(self).map_err(|e| {
            tracing::error!(error = %e, "PKCS#11 self-test signature failed");
            failed()
        })?;
        let (_, parsed) = X509Certificate::from_der(cert.der()).map_err(|_| failed())?;
        parsed.verify_signature(None).map_err(|_| failed())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.shared.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs `data` with `mechanism`; on a lost session, reconnects once.
    fn sign_raw(&self, mechanism: &Mechanism<'_>, data: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let mut conn = self.lock();
        match conn.session.sign(mechanism, conn.key, data) {
            Ok(sig) => return Ok(sig),
            Err(e) if session_lost(&e) => {
                tracing::warn!(error = %e, token = %self.shared.token, "PKCS#11 session lost; reconnecting");
            }
            Err(e) => return Err(call("C_Sign")(e)),
        }
        let s = &self.shared;
        let (session, _) = connect(&s.ctx, &s.uri, s.pin.as_ref(), false)?;
        let key =
            find_private_key(&session, &s.uri, &s.token)?.ok_or_else(|| Pkcs11Error::NoKey {
                uri: s.uri.redacted(),
                token: s.token.clone(),
            })?;
        *conn = Connection { session, key };
        conn.session
            .sign(mechanism, conn.key, data)
            .map_err(call("C_Sign"))
    }

    /// Signs `msg` with ECDSA over `digest`, returning a DER ECDSA-Sig-Value.
    fn sign_ecdsa(&self, digest: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let raw = self.sign_raw(&Mechanism::Ecdsa, digest)?;
        der::ecdsa_signature(&raw).ok_or(Pkcs11Error::Call {
            action: "C_Sign (ECDSA signature of unexpected length)",
            source: CkError::InvalidValue,
        })
    }

    /// Signs `msg` as the certificate's signature algorithm says
    /// (ECDSA with SHA-256/384 for P-256/P-384, RSA PKCS#1 v1.5 with SHA-256).
    pub fn sign_message(&self, msg: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        match self.shared.alg {
            KeyAlg::EcP256 => self.sign_ecdsa(&Sha256::digest(msg)),
            KeyAlg::EcP384 => self.sign_ecdsa(&Sha384::digest(msg)),
            KeyAlg::Rsa { .. } => self.sign_raw(&Mechanism::Sha256RsaPkcs, msg),
        }
    }

    /// The DER certificate stored in the token with the key's id, if any
    /// (e.g. the operator certificate on an operator's Lanyard card).
    pub fn certificate_der(&self) -> Result<Option<Vec<u8>>, Pkcs11Error> {
        let conn = self.lock();
        let label = self.shared.uri.object.clone().unwrap_or_default();
        sibling(
            &conn.session,
            ObjectClass::CERTIFICATE,
            &self.shared.id,
            label.as_bytes(),
            AttributeType::Value,
        )
    }

    /// The DER SubjectPublicKeyInfo of the key.
    pub fn spki_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(self)
    }

    /// The URI without its PIN, for logs and messages.
    pub fn uri_redacted(&self) -> String {
        self.shared.uri.redacted()
    }

    /// The label of the token holding the key.
    pub fn token_label(&self) -> &str {
        &self.shared.token
    }

    /// Removes the key pair (private key, public key with the same id) from
    /// the token: `init` uses it to undo a key it generated when it fails later.
    pub fn destroy(self) -> Result<(), Pkcs11Error> {
        let conn = self.lock();
        let mut handles = vec![conn.key];
        if !self.shared.id.is_empty() {
            let template = [
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(self.shared.id.clone()),
            ];
            handles.extend(
                conn.session
                    .find_objects(&template)
                    .map_err(call("C_FindObjects"))?,
            );
        }
        for h in handles {
            conn.session
                .destroy_object(h)
                .map_err(call("C_DestroyObject"))?;
        }
        tracing::info!(uri = %self.shared.uri.redacted(), "removed the key pair from the token");
        Ok(())
    }
}

impl rcgen::PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.shared.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.shared.alg.rcgen()
    }
}

impl rcgen::SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_message(msg).map_err(|e| {
            tracing::error!(error = %e, uri = %self.shared.uri.redacted(), "PKCS#11 signature failed");
            rcgen::Error::RemoteKeyError
        })
    }
}
