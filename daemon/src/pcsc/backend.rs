//! The PIV application's card: the daemon's own card, with the same store,
//! keys and PIN retry counter as the PKCS#11 token. A reader connection is
//! an application of its own (AppId `pcsc:…`): VERIFY is its C_Login.

use std::sync::Arc;

use lanyard_piv::{
    CardBackend, CardView, KeyAlgorithm, KeySlot, PinError, PinStatus, SignError, SignInput,
    SlotView,
};
use lanyard_proto::agent::KeyType as ProtoKeyType;
use tokio::runtime::Handle;
use zeroize::Zeroizing;

use crate::app_sessions::AppId;
use crate::error::Error;
use crate::keys::Mechanism;
use crate::pcsc::pss_raw;
use crate::pin::Pin;
use crate::state::Daemon;

/// The card behind one reader connection. Its methods block on the
/// daemon's async state: call them from a blocking thread (spawn_blocking).
pub struct DaemonBackend {
    daemon: Arc<Daemon>,
    handle: Handle,
    app: AppId,
    card_id: String,
    /// This card session's PIV security status: a VERIFY passed and no
    /// reset since (the daemon's login is what actually lets a key sign).
    verified: bool,
}

impl DaemonBackend {
    /// A reader connection showing `card_id`; opens its application in the
    /// daemon under an unguessable id (`pcsc:<n>:` and 16 random bytes).
    pub fn new(
        daemon: Arc<Daemon>,
        handle: Handle,
        card_id: String,
        connection: u64,
    ) -> Result<Self, Error> {
        let mut id = format!("pcsc:{connection}:").into_bytes();
        id.extend_from_slice(&crate::card_crypto::random_bytes::<16>()?);
        let app = AppId::new(&id)
            .ok_or_else(|| Error::Internal("PC/SC application id too long".into()))?;
        daemon.connection_opened(&app);
        Ok(DaemonBackend {
            daemon,
            handle,
            app,
            card_id,
            verified: false,
        })
    }

    /// The application id this connection logs in as.
    pub fn app(&self) -> &AppId {
        &self.app
    }

    /// The card shown.
    pub fn card_id(&self) -> &str {
        &self.card_id
    }

    fn sign_with_authentication_key(&self, input: SignInput) -> Result<Vec<u8>, Error> {
        let daemon = &self.daemon;
        match input {
            SignInput::RsaPkcs1 { data } => {
                daemon.sign(&self.app, &self.card_id, Mechanism::RsaPkcs1, &data)
            }
            SignInput::EcdsaDigest { digest } => {
                let raw = daemon.sign(&self.app, &self.card_id, Mechanism::Ecdsa, &digest)?;
                ecdsa_der(&raw)
            }
            SignInput::RsaPssEncoded { encoded } => {
                let key = daemon.authentication_key(&self.app, &self.card_id)?;
                pss_raw::sign_pss_encoded(&key, &encoded)
            }
        }
    }

    fn sign_with_signing_key(&self, input: SignInput, pin: Pin) -> Result<Vec<u8>, Error> {
        let (daemon, app, card) = (&self.daemon, &self.app, self.card_id.as_str());
        self.handle.block_on(async {
            match input {
                SignInput::RsaPkcs1 { data } => {
                    daemon
                        .sign_document(app, card, Mechanism::RsaPkcs1, &data, pin)
                        .await
                }
                SignInput::EcdsaDigest { digest } => {
                    let raw = daemon
                        .sign_document(app, card, Mechanism::Ecdsa, &digest, pin)
                        .await?;
                    ecdsa_der(&raw)
                }
                SignInput::RsaPssEncoded { encoded } => {
                    let key = daemon.document_key(app, card, pin).await?;
                    pss_raw::sign_pss_encoded(&key, &encoded)
                }
            }
        })
    }
}

impl Drop for DaemonBackend {
    fn drop(&mut self) {
        // The reader connection is gone: its login ends like an application's.
        self.daemon.connection_closed(&self.app);
    }
}

/// r||s (32 bytes each) as the DER `ECDSA-Sig-Value` PIV returns.
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, Error> {
    if raw.len() != 64 {
        return Err(Error::Crypto(format!(
            "ECDSA signature of {} bytes, expected 64",
            raw.len()
        )));
    }
    let r = openssl::bn::BigNum::from_slice(&raw[..32])?;
    let s = openssl::bn::BigNum::from_slice(&raw[32..])?;
    Ok(openssl::ecdsa::EcdsaSig::from_private_components(r, s)?.to_der()?)
}

/// A PIN from VERIFY as the daemon's `Pin`: text, or malformed.
fn pin_from(bytes: Zeroizing<Vec<u8>>) -> Option<Pin> {
    std::str::from_utf8(&bytes)
        .ok()
        .map(|s| Pin::new(s.to_string()))
}

fn pin_error(e: Error) -> PinError {
    match e {
        Error::PinIncorrect { tries_left } => PinError::Incorrect {
            tries_left: u8::try_from(tries_left).unwrap_or(u8::MAX),
        },
        Error::PinLocked => PinError::Blocked,
        Error::PinLenRange { .. } | Error::PinInvalid => PinError::Malformed,
        other => PinError::Unavailable(other.to_string()),
    }
}

fn sign_error(e: Error) -> SignError {
    match e {
        Error::NotLoggedIn(_) | Error::PinIncorrect { .. } | Error::PinLocked => {
            SignError::NotVerified
        }
        Error::PinLenRange { .. } | Error::PinInvalid => SignError::NotVerified,
        Error::DataLenRange(m) | Error::MechanismInvalid(m) | Error::MechanismParamInvalid(m) => {
            SignError::BadInput(m)
        }
        other => SignError::Unavailable(other.to_string()),
    }
}

impl CardBackend for DaemonBackend {
    fn card(&self) -> Option<CardView> {
        let info = self
            .daemon
            .cards(None)
            .into_iter()
            .find(|c| c.card_id == self.card_id)?;
        let algorithm = match ProtoKeyType::try_from(info.key_type).ok()? {
            ProtoKeyType::EcP256 => KeyAlgorithm::EccP256,
            ProtoKeyType::Rsa2048 | ProtoKeyType::Unspecified => KeyAlgorithm::Rsa2048,
        };
        let mut slots = vec![SlotView {
            slot: KeySlot::Authentication,
            algorithm,
            certificate_der: info.certificate_der,
        }];
        if let Some(signing) = info.signing_key {
            slots.push(SlotView {
                slot: KeySlot::Signature,
                algorithm,
                certificate_der: signing.certificate_der,
            });
        }
        Some(CardView {
            card_id: info.card_id,
            slots,
        })
    }

    fn verify_pin(&mut self, pin: Zeroizing<Vec<u8>>) -> Result<(), PinError> {
        let pin = pin_from(pin).ok_or(PinError::Malformed)?;
        let result = self
            .handle
            .block_on(self.daemon.login(&self.app, &self.card_id, pin));
        match result {
            Ok(()) => {
                self.verified = true;
                tracing::info!(card = %self.card_id, app = %self.app.short(), "PC/SC reader: PIN verified");
                Ok(())
            }
            Err(e) => {
                tracing::info!(card = %self.card_id, error = %e, "PC/SC reader: PIN not verified");
                Err(pin_error(e))
            }
        }
    }

    fn pin_status(&self) -> PinStatus {
        let Ok(info) = self.daemon.card(&self.card_id, Some(&self.app)) else {
            return PinStatus::Blocked;
        };
        let pin = info.pin.unwrap_or_default();
        if pin.locked {
            PinStatus::Blocked
        } else if self.verified && info.logged_in {
            PinStatus::Verified
        } else {
            let left = pin.max_failures.saturating_sub(pin.failures);
            PinStatus::NotVerified {
                tries_left: u8::try_from(left).unwrap_or(u8::MAX),
            }
        }
    }

    fn sign(
        &mut self,
        slot: KeySlot,
        input: SignInput,
        pin: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Vec<u8>, SignError> {
        if !self.verified {
            return Err(SignError::NotVerified);
        }
        // The first signature after a start waits for the card's check-in.
        self.handle
            .block_on(self.daemon.start_check_in().wait(&self.card_id));
        let result = match slot {
            KeySlot::Authentication => self.sign_with_authentication_key(input),
            KeySlot::Signature => {
                let has_key = self
                    .daemon
                    .card(&self.card_id, None)
                    .is_ok_and(|c| c.signing_key.is_some());
                if !has_key {
                    return Err(SignError::NoKey);
                }
                let pin = pin.and_then(pin_from).ok_or(SignError::NotVerified)?;
                self.sign_with_signing_key(input, pin)
            }
        };
        match result {
            Ok(sig) => {
                tracing::debug!(card = %self.card_id, ?slot, "PC/SC reader: signed");
                Ok(sig)
            }
            Err(e) => {
                tracing::info!(card = %self.card_id, ?slot, error = %e, "PC/SC reader: signature refused");
                Err(sign_error(e))
            }
        }
    }

    fn reset(&mut self) {
        self.verified = false;
        if self.daemon.logout(&self.app, &self.card_id).is_ok() {
            tracing::debug!(card = %self.card_id, app = %self.app.short(), "PC/SC reader: card session ended");
        }
    }
}
