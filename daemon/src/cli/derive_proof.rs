//! The physical card of `lanyard enroll --derive-from`: its PKCS#11 module is
//! loaded in the CLI process (never in lanyardd), the token and certificate
//! the RFC 7512 URI names are found, the clinician logs in with the card's
//! PIN, and the private key with the certificate's CKA_ID signs the proof
//! (RSA: CKM_SHA256_RSA_PKCS over the message; EC: CKM_ECDSA over its
//! digest, r||s converted to DER).

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, SlotInfo, TokenInfo};
use cryptoki::types::AuthPin;
use lanyard_certs::pkcs11_uri::Pkcs11Uri;

use super::CliError;

/// OpenSC's PKCS#11 module on Debian: what talks to a card in a PC/SC reader.
pub const DEFAULT_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

fn card_error(message: String) -> CliError {
    CliError::PhysicalCard(message)
}

fn ck(what: &'static str) -> impl Fn(CkError) -> CliError {
    move |e| card_error(format!("the physical card's module failed ({what}: {e})"))
}

/// The kind of the physical card's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProofKey {
    Rsa,
    Ec,
}

/// An open session on the physical card, with its certificate.
pub struct PhysicalCard {
    session: Session,
    token: String,
    certificate_der: Vec<u8>,
    cert_id: Vec<u8>,
    _ctx: Pkcs11,
}

fn load_module(module: &Path) -> Result<Pkcs11, CliError> {
    if !module.is_file() {
        return Err(card_error(format!(
            "no PKCS#11 module at {} (install OpenSC, or give the card's module with --module PATH)",
            module.display()
        )));
    }
    let ctx = Pkcs11::new(module).map_err(|e| {
        card_error(format!(
            "cannot load the PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(ck("C_Initialize")(e)),
    }
}

/// Whether the token (and its slot: for a card, the reader) matches every
/// token and slot attribute the URI gives.
fn token_matches(uri: &Pkcs11Uri, slot: Slot, slot_info: &SlotInfo, info: &TokenInfo) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    eq(&uri.token, info.label())
        && eq(&uri.manufacturer, info.manufacturer_id())
        && eq(&uri.serial, info.serial_number())
        && eq(&uri.model, info.model())
        && eq(&uri.slot_description, slot_info.slot_description())
        && eq(&uri.slot_manufacturer, slot_info.manufacturer_id())
        && uri.slot_id.is_none_or(|id| id == slot.id())
}

/// The certificate the URI names (by label and/or id), with its CKA_ID.
fn find_certificate(session: &Session, uri: &Pkcs11Uri) -> Result<(Vec<u8>, Vec<u8>), CliError> {
    let mut template = vec![Attribute::Class(ObjectClass::CERTIFICATE)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session
        .find_objects(&template)
        .map_err(ck("C_FindObjects"))?;
    let handle = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(card_error(format!(
                "no certificate matching {} on the physical card (list them with pkcs11-tool --module MODULE -O)",
                uri.redacted()
            )))
        }
        many => {
            return Err(card_error(format!(
                "{} certificates match {}; add object= or id= to name one",
                many.len(),
                uri.redacted()
            )))
        }
    };
    let attrs = session
        .get_attributes(handle, &[AttributeType::Value, AttributeType::Id])
        .map_err(ck("C_GetAttributeValue"))?;
    let mut value = None;
    let mut id = Vec::new();
    for attr in attrs {
        match attr {
            Attribute::Value(v) => value = Some(v),
            Attribute::Id(v) => id = v,
            _ => {}
        }
    }
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| card_error("the physical card's certificate has no value".into()))?;
    Ok((value, id))
}

impl PhysicalCard {
    /// Loads `module`, finds the one token and the certificate `uri_text` names.
    pub fn open(module: &Path, uri_text: &str) -> Result<PhysicalCard, CliError> {
        let uri = Pkcs11Uri::parse(uri_text)
            .map_err(|e| CliError::Usage(format!("--derive-from: {e}")))?;
        if uri.object.is_none()
            && uri.id.is_none()
            && uri.token.is_none()
            && uri.slot_description.is_none()
        {
            return Err(CliError::Usage(
                "--derive-from must name the card, e.g. 'pkcs11:token=NAME;object=LABEL'".into(),
            ));
        }
        let ctx = load_module(module)?;
        let mut seen = Vec::new();
        let mut matching = Vec::new();
        for slot in ctx.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
            let (Ok(info), Ok(slot_info)) = (ctx.get_token_info(slot), ctx.get_slot_info(slot))
            else {
                continue;
            };
            if !info.token_initialized() {
                continue;
            }
            seen.push(format!(
                "{:?} in {:?}",
                info.label(),
                slot_info.slot_description()
            ));
            if token_matches(&uri, slot, &slot_info, &info) {
                matching.push((slot, info));
            }
        }
        let (slot, info) = match matching.len() {
            1 => matching.remove(0),
            0 => {
                let seen = if seen.is_empty() {
                    "none: is the card in the reader?".to_string()
                } else {
                    seen.join(", ")
                };
                return Err(card_error(format!(
                    "no token matching {} (tokens present: {seen})",
                    uri.redacted()
                )));
            }
            n => {
                return Err(card_error(format!(
                    "{n} tokens match {}; add token=, serial= or slot-description= (the reader) to name one",
                    uri.redacted()
                )))
            }
        };
        let session = ctx.open_ro_session(slot).map_err(ck("C_OpenSession"))?;
        let (certificate_der, cert_id) = find_certificate(&session, &uri)?;
        Ok(PhysicalCard {
            session,
            token: info.label().to_string(),
            certificate_der,
            cert_id,
            _ctx: ctx,
        })
    }

    /// The token's label.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The card's certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// Logs in with the card's PIN; a wrong or locked PIN is a PIN error.
    pub fn login(&self, pin: &str) -> Result<(), CliError> {
        match self
            .session
            .login(UserType::User, Some(&AuthPin::from(pin)))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                Err(CliError::PinEntry(format!(
                    "wrong PIN for the physical card {:?}; nothing changed (the card counts wrong PINs)",
                    self.token
                )))
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(CliError::PinEntry(format!(
                "the physical card {:?} is locked (too many wrong PINs)",
                self.token
            ))),
            Err(e) => Err(ck("C_Login")(e)),
        }
    }

    /// The private key with the certificate's CKA_ID (after login).
    fn private_key(&self) -> Result<(ObjectHandle, ProofKey), CliError> {
        if self.cert_id.is_empty() {
            return Err(card_error(
                "the physical card's certificate has no CKA_ID, so its private key cannot be found"
                    .into(),
            ));
        }
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(self.cert_id.clone()),
            ])
            .map_err(ck("C_FindObjects"))?;
        let [key] = found.as_slice() else {
            return Err(card_error(format!(
                "{} private keys on the physical card have the certificate's id (expected one)",
                found.len()
            )));
        };
        let attrs = self
            .session
            .get_attributes(*key, &[AttributeType::KeyType])
            .map_err(ck("C_GetAttributeValue"))?;
        let kind = attrs.iter().find_map(|a| match a {
            Attribute::KeyType(t) if *t == KeyType::RSA => Some(ProofKey::Rsa),
            Attribute::KeyType(t) if *t == KeyType::EC => Some(ProofKey::Ec),
            _ => None,
        });
        let kind =
            kind.ok_or_else(|| card_error("the physical card's key is neither RSA nor EC".into()))?;
        Ok((*key, kind))
    }

    /// Signs the proof: RSA over `message` with SHA-256 PKCS#1 v1.5, EC
    /// over `digest` with raw ECDSA (returned DER-encoded).
    pub fn sign_proof(&self, message: &[u8], digest: &[u8]) -> Result<Vec<u8>, CliError> {
        let (key, kind) = self.private_key()?;
        match kind {
            ProofKey::Rsa => self
                .session
                .sign(&Mechanism::Sha256RsaPkcs, key, message)
                .map_err(ck("C_Sign")),
            ProofKey::Ec => {
                let raw = self
                    .session
                    .sign(&Mechanism::Ecdsa, key, digest)
                    .map_err(ck("C_Sign"))?;
                ecdsa_raw_to_der(&raw)
            }
        }
    }
}

/// PKCS#11's ECDSA signature r||s as a DER ECDSA-Sig-Value.
fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, CliError> {
    let bad = |e: openssl::error::ErrorStack| {
        card_error(format!("the physical card's ECDSA signature: {e}"))
    };
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(card_error(format!(
            "the physical card returned an ECDSA signature of {} bytes",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let r = openssl::bn::BigNum::from_slice(r).map_err(bad)?;
    let s = openssl::bn::BigNum::from_slice(s).map_err(bad)?;
    openssl::ecdsa::EcdsaSig::from_private_components(r, s)
        .and_then(|sig| sig.to_der())
        .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_becomes_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 5;
        raw[63] = 7;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(der, vec![0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
        assert!(ecdsa_raw_to_der(&[]).is_err());
    }

    #[test]
    fn a_missing_module_is_a_clear_error() {
        let err = PhysicalCard::open(Path::new("/nonexistent/module.so"), "pkcs11:token=X")
            .err()
            .unwrap();
        assert!(err.to_string().contains("--module"), "{err}");
        let err = PhysicalCard::open(Path::new(DEFAULT_MODULE), "not a uri")
            .err()
            .unwrap();
        assert!(matches!(err, CliError::Usage(_)), "{err}");
    }
}
