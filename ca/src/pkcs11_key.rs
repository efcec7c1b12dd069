//! A private key held in a PKCS#11 token (an HSM, SoftHSM2, or an operator's
//! own Lanyard card through liblanyard_pkcs11.so), found by an RFC 7512 URI.
//! It signs for rcgen (certificates, CRLs) and for rustls (TLS client
//! authentication); the key never leaves the token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use rustls::{SignatureAlgorithm as TlsAlgorithm, SignatureScheme};
use sha2::{Digest, Sha256, Sha384};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::pkcs11_uri::{ObjectType, PinSource, Pkcs11Uri};

/// DER of the OID of NIST P-256 (CKA_EC_PARAMS).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID of NIST P-384 (CKA_EC_PARAMS).
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// Smallest RSA key accepted for signing, in bits.
const RSA_MIN_BITS: usize = 2048;

/// Why a PKCS#11 key could not be opened, made or used.
#[derive(Debug, Error)]
pub enum Pkcs11Error {
    /// The URI does not say which module to load.
    #[error("the PKCS#11 URI has no module-path; add ?module-path=/path/to/module.so (SoftHSM2 on Debian: /usr/lib/softhsm/libsofthsm2.so)")]
    NoModulePath,
    /// The module could not be loaded or initialised.
    #[error("cannot load the PKCS#11 module {}: {reason}", path.display())]
    Module {
        /// The module's path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No token matches the URI.
    #[error("no PKCS#11 token matches {uri}; tokens present: {}", list(found))]
    NoToken {
        /// The URI without its PIN.
        uri: String,
        /// The tokens that are there.
        found: Vec<String>,
    },
    /// Several tokens match the URI.
    #[error("{count} PKCS#11 tokens match {uri}; add serial= or slot-id= to choose one")]
    AmbiguousToken {
        /// The URI without its PIN.
        uri: String,
        /// How many match.
        count: usize,
    },
    /// The PIN file could not be read.
    #[error("cannot read the PIN file {}: {source}", path.display())]
    PinFile {
        /// The file named by pin-source.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The PIN file holds no PIN.
    #[error("the PIN file {} holds no PIN (its first line is empty or not text)", path.display())]
    EmptyPin {
        /// The file named by pin-source.
        path: PathBuf,
    },
    /// The token needs a PIN and the URI gives none.
    #[error(
        "token {token:?} needs a PIN; add ?pin-source=file:/path/to/pin-file to the PKCS#11 URI"
    )]
    NoPin {
        /// The token's label.
        token: String,
    },
    /// The token refused the PIN.
    #[error("wrong PIN for token {token:?}; check the file named by pin-source")]
    WrongPin {
        /// The token's label.
        token: String,
    },
    /// The token's user PIN is locked.
    #[error("the user PIN of token {token:?} is locked; its security officer must unlock it")]
    PinLocked {
        /// The token's label.
        token: String,
    },
    /// The URI names no object.
    #[error("the PKCS#11 URI names no key; add object=LABEL (or id=%XX…) to its path")]
    NoObjectNamed,
    /// The URI's type= is not a private key.
    #[error(
        "the PKCS#11 URI names a {kind}, not a private key; use type=private or leave type= out"
    )]
    NotAPrivateKey {
        /// What type= names.
        kind: &'static str,
    },
    /// No private key matches.
    #[error("no private key matches {uri} in token {token:?}")]
    NoKey {
        /// The URI without its PIN.
        uri: String,
        /// The token's label.
        token: String,
    },
    /// Several private keys match.
    #[error("{count} private keys match {uri} in token {token:?}; add id= to choose one")]
    AmbiguousKey {
        /// The URI without its PIN.
        uri: String,
        /// The token's label.
        token: String,
        /// How many match.
        count: usize,
    },
    /// A key of a kind Lanyard does not sign with.
    #[error("the key {uri} is {what}; Lanyard signs with EC P-256, EC P-384 or RSA of 2048 bits or more")]
    UnsupportedKey {
        /// The URI without its PIN.
        uri: String,
        /// What the key is.
        what: String,
    },
    /// The key's public half is nowhere to be found.
    #[error("cannot find the public key of {uri}: the token has no public key object or certificate with the same id")]
    NoPublicKey {
        /// The URI without its PIN.
        uri: String,
    },
    /// A test signature did not verify with the public key found.
    #[error("a test signature of {uri} does not verify with the public key found next to it; the token's objects do not belong together")]
    SelfTestFailed {
        /// The URI without its PIN.
        uri: String,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {action} failed: {source}")]
    Call {
        /// The call, e.g. "C_Sign".
        action: &'static str,
        /// The module's answer.
        source: CkError,
    },
}

fn list(found: &[String]) -> String {
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

fn call(action: &'static str) -> impl FnOnce(CkError) -> Pkcs11Error {
    move |source| Pkcs11Error::Call { action, source }
}

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

/// Modules stay loaded and initialised for the life of the process: several
/// keys may share one, and finalising under another user would break it.
fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let failed = |reason: String| Pkcs11Error::Module {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(failed("no such file".into()));
    }
    let ctx = Pkcs11::new(path).map_err(|e| failed(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(failed(format!("C_Initialize: {e}"))),
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// The PIN named by the URI, if any.
fn read_pin(source: Option<&PinSource>) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
    match source {
        None => Ok(None),
        Some(PinSource::Value(v)) => {
            tracing::warn!(
                "the PKCS#11 URI carries its PIN in pin-value, visible to anyone who can read \
                 the URI (ca.toml, shell history, process list); prefer pin-source=file:PATH"
            );
            Ok(Some(v.clone()))
        }
        Some(PinSource::File(path)) => {
            let bytes =
                Zeroizing::new(std::fs::read(path).map_err(|source| Pkcs11Error::PinFile {
                    path: path.clone(),
                    source,
                })?);
            let first = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.lines().next())
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.is_empty())
                .ok_or_else(|| Pkcs11Error::EmptyPin { path: path.clone() })?;
            Ok(Some(Zeroizing::new(first.to_string())))
        }
    }
}

fn describe(slot: Slot, info: &TokenInfo) -> String {
    format!(
        "{:?} (slot-id {}, serial {:?})",
        info.label(),
        slot.id(),
        info.serial_number()
    )
}

/// The one slot whose token matches every token and slot attribute of the URI.
fn find_token(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<(Slot, TokenInfo), Pkcs11Error> {
    let lib = ctx.get_library_info().map_err(call("C_GetInfo"))?;
    let lib_matches = uri
        .library_manufacturer
        .as_deref()
        .is_none_or(|m| m == lib.manufacturer_id())
        && uri
            .library_description
            .as_deref()
            .is_none_or(|d| d == lib.library_description())
        && uri.library_version.is_none_or(|(a, b)| {
            (a, b) == (lib.library_version().major(), lib.library_version().minor())
        });
    let mut found = Vec::new();
    let mut matching = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(call("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(call("C_GetTokenInfo"))?;
        // An uninitialised token (SoftHSM2's free slot) holds no keys.
        if !info.token_initialized() {
            continue;
        }
        let slot_info = ctx.get_slot_info(slot).map_err(call("C_GetSlotInfo"))?;
        found.push(describe(slot, &info));
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        if lib_matches
            && eq(&uri.token, info.label())
            && eq(&uri.manufacturer, info.manufacturer_id())
            && eq(&uri.serial, info.serial_number())
            && eq(&uri.model, info.model())
            && eq(&uri.slot_description, slot_info.slot_description())
            && eq(&uri.slot_manufacturer, slot_info.manufacturer_id())
            && uri.slot_id.is_none_or(|id| id == slot.id())
        {
            matching.push((slot, info));
        }
    }
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(Pkcs11Error::NoToken {
            uri: uri.redacted(),
            found,
        }),
        count => Err(Pkcs11Error::AmbiguousToken {
            uri: uri.redacted(),
            count,
        }),
    }
}

fn login(
    session: &Session,
    info: &TokenInfo,
    pin: Option<&Zeroizing<String>>,
) -> Result<(), Pkcs11Error> {
    let token = info.label().to_string();
    let result = match pin {
        Some(pin) => session.login(UserType::User, Some(&AuthPin::from(pin.as_str()))),
        None if !info.login_required() => return Ok(()),
        None if info.protected_authentication_path() => session.login(UserType::User, None),
        None => return Err(Pkcs11Error::NoPin { token }),
    };
    match result {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(Pkcs11Error::WrongPin { token })
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked { token }),
        Err(e) => Err(call("C_Login")(e)),
    }
}

/// The search template for the private key the URI names.
fn private_key_template(uri: &Pkcs11Uri) -> Result<Vec<Attribute>, Pkcs11Error> {
    let kind = match uri.object_type {
        None | Some(ObjectType::Private) => None,
        Some(ObjectType::Public) => Some("public key"),
        Some(ObjectType::Cert) => Some("certificate"),
        Some(ObjectType::SecretKey) => Some("secret key"),
        Some(ObjectType::Data) => Some("data object"),
    };
    if let Some(kind) = kind {
        return Err(Pkcs11Error::NotAPrivateKey { kind });
    }
    if uri.object.is_none() && uri.id.is_none() {
        return Err(Pkcs11Error::NoObjectNamed);
    }
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    Ok(template)
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

/// Opens a session on the URI's token and logs in.
fn connect(
    ctx: &Pkcs11,
    uri: &Pkcs11Uri,
    pin: Option<&Zeroizing<String>>,
    read_write: bool,
) -> Result<(Session, TokenInfo), Pkcs11Error> {
    let (slot, info) = find_token(ctx, uri)?;
    let session = if read_write {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(call("C_OpenSession"))?;
    login(&session, &info, pin)?;
    Ok((session, info))
}

/// The one private key matching the URI, if any.
fn find_private_key(
    session: &Session,
    uri: &Pkcs11Uri,
    token: &str,
) -> Result<Option<ObjectHandle>, Pkcs11Error> {
    let mut keys = session
        .find_objects(&private_key_template(uri)?)
        .map_err(call("C_FindObjects"))?;
    match keys.len() {
        0 => Ok(None),
        1 => Ok(keys.pop()),
        count => Err(Pkcs11Error::AmbiguousKey {
            uri: uri.redacted(),
            token: token.to_string(),
            count,
        }),
    }
}

fn bytes_attr(attrs: &[Attribute], pick: fn(&Attribute) -> Option<&Vec<u8>>) -> Option<Vec<u8>> {
    attrs.iter().find_map(pick).cloned()
}

/// The first object of `class` with the key's id (or, without an id, its label).
fn sibling(
    session: &Session,
    class: ObjectClass,
    id: &[u8],
    label: &[u8],
    wanted: AttributeType,
) -> Result<Option<Vec<u8>>, Pkcs11Error> {
    let mut template = vec![Attribute::Class(class)];
    if !id.is_empty() {
        template.push(Attribute::Id(id.to_vec()));
    } else if !label.is_empty() {
        template.push(Attribute::Label(label.to_vec()));
    } else {
        return Ok(None);
    }
    for handle in session
        .find_objects(&template)
        .map_err(call("C_FindObjects"))?
    {
        let attrs = session
            .get_attributes(handle, &[wanted])
            .map_err(call("C_GetAttributeValue"))?;
        let value = attrs.into_iter().find_map(|a| match a {
            Attribute::EcPoint(v) | Attribute::Value(v) => Some(v),
            _ => None,
        });
        if value.is_some() {
            return Ok(value);
        }
    }
    Ok(None)
}

/// The raw EC point from a certificate's SubjectPublicKeyInfo.
fn point_from_certificate(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// Reads the key's kind, id and public half.
fn public_half(
    session: &Session,
    key: ObjectHandle,
    uri: &Pkcs11Uri,
) -> Result<(KeyAlg, Vec<u8>, Vec<u8>), Pkcs11Error> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::Id,
                AttributeType::Label,
            ],
        )
        .map_err(call("C_GetAttributeValue"))?;
    let id = bytes_attr(&attrs, |a| match a {
        Attribute::Id(v) => Some(v),
        _ => None,
    })
    .unwrap_or_default();
    let label = bytes_attr(&attrs, |a| match a {
        Attribute::Label(v) => Some(v),
        _ => None,
    })
    .unwrap_or_default();
    let key_type = attrs.iter().find_map(|a| match a {
        Attribute::KeyType(t) => Some(*t),
        _ => None,
    });
    let unsupported = |what: String| Pkcs11Error::UnsupportedKey {
        uri: uri.redacted(),
        what,
    };
    match key_type {
        Some(t) if t == KeyType::RSA => {
            let attrs = session
                .get_attributes(
                    key,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(call("C_GetAttributeValue"))?;
            let n = bytes_attr(&attrs, |a| match a {
                Attribute::Modulus(v) => Some(v),
                _ => None,
            });
            let e = bytes_attr(&attrs, |a| match a {
                Attribute::PublicExponent(v) => Some(v),
                _ => None,
            });
            let (Some(n), Some(e)) = (n, e) else {
                return Err(Pkcs11Error::NoPublicKey {
                    uri: uri.redacted(),
                });
            };
            let bits = der::bit_length(&n);
            if bits < RSA_MIN_BITS {
                return Err(unsupported(format!("RSA-{bits}")));
            }
            Ok((KeyAlg::Rsa { bits }, der::rsa_public_key(&n, &e), id))
        }
        Some(t) if t == KeyType::EC => {
            let attrs = session
                .get_attributes(key, &[AttributeType::EcParams])
                .map_err(call("C_GetAttributeValue"))?;
            let params = bytes_attr(&attrs, |a| match a {
                Attribute::EcParams(v) => Some(v),
                _ => None,
            });
            let (alg, point_len) = match params.as_deref() {
                Some(P256_PARAMS) => (KeyAlg::EcP256, 65),
                Some(P384_PARAMS) => (KeyAlg::EcP384, 97),
                _ => return Err(unsupported("an EC key on another curve".into())),
            };
            let from_public = sibling(
                session,
                ObjectClass::PUBLIC_KEY,
                &id,
                &label,
                AttributeType::EcPoint,
            )?
            .and_then(|p| der::ec_point(&p, point_len));
            let point = match from_public {
                Some(p) => Some(p),
                None => sibling(
                    session,
                    ObjectClass::CERTIFICATE,
                    &id,
                    &label,
                    AttributeType::Value,
                )?
                .and_then(|c| point_from_certificate(&c))
                .filter(|p| p.len() == point_len),
            };
            let point = point.ok_or_else(|| Pkcs11Error::NoPublicKey {
                uri: uri.redacted(),
            })?;
            Ok((alg, point, id))
        }
        _ => Err(unsupported("neither an RSA nor an EC key".into())),
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
        let ctx = module(
            uri.module_path
                .as_deref()
                .ok_or(Pkcs11Error::NoModulePath)?,
        )?;
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
        let ctx = module(
            uri.module_path
                .as_deref()
                .ok_or(Pkcs11Error::NoModulePath)?,
        )?;
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

/// The little DER the token's values need: PKCS#11 gives ECDSA signatures as
/// r||s and RSA keys as modulus and exponent; X.509 wants DER.
mod der {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        push_len(&mut out, content.len());
        out.extend_from_slice(content);
        out
    }

    /// A non-negative INTEGER from big-endian bytes.
    fn unsigned(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().take_while(|b| **b == 0).count();
        let mut content = Vec::with_capacity(bytes.len() + 1);
        match bytes.get(start) {
            None => content.push(0),
            Some(first) => {
                if first & 0x80 != 0 {
                    content.push(0);
                }
                content.extend_from_slice(&bytes[start..]);
            }
        }
        tlv(0x02, &content)
    }

    /// DER ECDSA-Sig-Value from PKCS#11's r||s.
    pub(super) fn ecdsa_signature(raw: &[u8]) -> Option<Vec<u8>> {
        if raw.is_empty() || !raw.len().is_multiple_of(2) {
            return None;
        }
        let (r, s) = raw.split_at(raw.len() / 2);
        let mut seq = unsigned(r);
        seq.extend(unsigned(s));
        Some(tlv(0x30, &seq))
    }

    /// DER RSAPublicKey (PKCS#1) from modulus and exponent.
    pub(super) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut seq = unsigned(n);
        seq.extend(unsigned(e));
        tlv(0x30, &seq)
    }

    /// Bits in a big-endian unsigned number.
    pub(super) fn bit_length(n: &[u8]) -> usize {
        let start = n.iter().take_while(|b| **b == 0).count();
        match n.get(start) {
            None => 0,
            Some(first) => (n.len() - start - 1) * 8 + (8 - first.leading_zeros() as usize),
        }
    }

    /// The uncompressed point of `len` bytes from CKA_EC_POINT, which is a DER
    /// OCTET STRING by the standard but raw in some modules.
    pub(super) fn ec_point(value: &[u8], len: usize) -> Option<Vec<u8>> {
        if value.len() == len && value.first() == Some(&0x04) {
            return Some(value.to_vec());
        }
        let mut header = vec![0x04];
        push_len(&mut header, len);
        let point = value.strip_prefix(header.as_slice())?;
        (point.len() == len && point.first() == Some(&0x04)).then(|| point.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::der::*;

    #[test]
    fn ecdsa_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[31] = 1;
        raw[63] = 2; // s is 2 after 31 zero bytes
        let der = ecdsa_signature(&raw).unwrap();
        let mut want = vec![0x30, 0x26, 0x02, 0x21, 0x00, 0x80];
        want.extend(vec![0; 30]);
        want.push(1);
        want.extend([0x02, 0x01, 0x02]);
        assert_eq!(der, want);
        assert!(ecdsa_signature(&[]).is_none());
        assert!(ecdsa_signature(&[1, 2, 3]).is_none());
        // P-384: 96 bytes of r||s give a sequence over 127 bytes (long form).
        let der = ecdsa_signature(&[0xff; 96]).unwrap();
        assert_eq!(&der[..3], &[0x30, 0x66, 0x02]);
    }

    #[test]
    fn rsa_public_keys_and_bit_lengths() {
        let n = [vec![0x00, 0xc0], vec![0x11; 255]].concat();
        assert_eq!(bit_length(&n), 2048);
        assert_eq!(bit_length(&[0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0, 0]), 0);
        let der = rsa_public_key(&n, &[0x01, 0x00, 0x01]);
        // SEQUENCE (long length 0x82 0x01 0x0a) { INTEGER 257 bytes, INTEGER 65537 }
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x0a]);
        assert_eq!(&der[4..8], &[0x02, 0x82, 0x01, 0x01]);
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn ec_points_raw_or_wrapped() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        assert_eq!(ec_point(&point, 65).unwrap(), point);
        let wrapped = [vec![0x04, 65], point.clone()].concat();
        assert_eq!(ec_point(&wrapped, 65).unwrap(), point);
        assert!(ec_point(&wrapped, 97).is_none());
        assert!(ec_point(&[0x04, 0x02, 0x04, 0x01], 65).is_none());
        assert!(ec_point(&[], 65).is_none());
    }
}
