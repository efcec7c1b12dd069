//! Signing with the card's document-signing key, PIN-always like a PIV
//! card's slot 9C key (CKA_ALWAYS_AUTHENTICATE): the application must be
//! logged in, and the PIN of its context-specific login is checked, through
//! the counted path, for every signature, even while the card is unlocked.

use std::sync::Arc;
use std::time::Instant;

use super::{Daemon, Inner};
use crate::app_sessions::AppId;
use crate::error::{Error, Result};
use crate::keys::{Mechanism, SigningKey};
use crate::pin::Pin;

impl Daemon {
    /// Signs `data` with the card's document-signing key if `app` is logged
    /// in and `pin` is right (a wrong one counts like a wrong login).
    pub async fn sign_document(
        &self,
        app: &AppId,
        card_id: &str,
        mech: Mechanism,
        data: &[u8],
        pin: Pin,
    ) -> Result<Vec<u8>> {
        let key = self.document_key(app, card_id, pin).await?;
        let signature = key.sign(mech, data)?;
        tracing::info!(card = %card_id, app = %app.short(), "document signed with the PIN-always key");
        Ok(signature)
    }

    /// The document-signing key for one signature by `app`, after the checks
    /// and the counted PIN of [`Daemon::sign_document`] (also used by the
    /// PC/SC reader's raw PSS path).
    pub(crate) async fn document_key(
        &self,
        app: &AppId,
        card_id: &str,
        pin: Pin,
    ) -> Result<Arc<SigningKey>> {
        {
            let mut inner = self.inner();
            let Inner { cards, sessions } = &mut *inner;
            let entry = cards
                .get_mut(card_id)
                .ok_or_else(|| Error::NoSuchCard(card_id.into()))?;
            entry.check_usable()?;
            let now = Instant::now();
            entry.end_unlock_if_idle(sessions, now);
            if !entry.opened_for(app, sessions, self.config.protected_path, now) {
                return Err(Error::NotLoggedIn(card_id.into()));
            }
            if entry.file.signing.is_none() {
                return Err(Error::BadRequest(format!(
                    "card {card_id} has no document-signing key (enrolled before the CA issued one); renew or re-enrol it"
                )));
            }
        }
        if pin.as_str().is_empty() {
            return Err(Error::BadRequest(
                "the document-signing key needs the PIN with every signature (C_Login with CKU_CONTEXT_SPECIFIC)".into(),
            ));
        }
        self.policy.check_format(&pin)?;
        let key = {
            let lock = self.file_lock(card_id)?;
            let _guard = lock.lock().await;
            let unlocked = self.keys_with_pin(card_id, pin).await?;
            unlocked.signing_key.clone().ok_or_else(|| {
                Error::BadRequest(format!("card {card_id} has no document-signing key"))
            })?
        };
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_store::{testing, NewSigningKey};
    use crate::keys::{KeyType, SigningKey};
    use crate::state::tests::{card_c1, daemon_holding, log_in_app, PIN};

    fn verifies(public_der: &[u8], digest: &[u8], sig: &[u8]) -> bool {
        use openssl::bn::BigNum;
        let public = openssl::pkey::PKey::public_key_from_der(public_der).unwrap();
        let es = openssl::ecdsa::EcdsaSig::from_private_components(
            BigNum::from_slice(&sig[..32]).unwrap(),
            BigNum::from_slice(&sig[32..]).unwrap(),
        )
        .unwrap();
        es.verify(digest, &public.ec_key().unwrap()).unwrap()
    }

    /// A daemon holding C1 with a document-signing key; its SPKI.
    async fn with_signing_key() -> (tempfile::TempDir, Daemon, Vec<u8>) {
        let mut new = card_c1();
        let key = SigningKey::generate(KeyType::EcP256).unwrap();
        let spki = key.public_key_der().unwrap();
        let certificate_der = testing::self_signed_cert(&key, "Dr Ada Smith", 30).unwrap();
        new.signing = Some(NewSigningKey {
            key,
            certificate_der,
        });
        let (tmp, daemon) = daemon_holding(new).await;
        (tmp, daemon, spki)
    }

    #[tokio::test]
    async fn the_signing_key_needs_the_login_and_the_pin_every_time() {
        let (_tmp, daemon, spki) = with_signing_key().await;
        let info = daemon.card("C1", None).unwrap();
        let signing = info.signing_key.clone().unwrap();
        assert_eq!(signing.public_key_der, spki);
        assert_ne!(signing.key_id, info.key_id);
        let digest = [7u8; 32];
        let pin = || Pin::new(PIN.into());

        // Not logged in: refused even with the right PIN, nothing counted.
        let stranger = AppId::new(&[2; 16]).unwrap();
        daemon.connection_opened(&stranger);
        let err = daemon
            .sign_document(&stranger, "C1", Mechanism::Ecdsa, &digest, pin())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotLoggedIn(_)), "{err}");

        let app = log_in_app(&daemon).await;
        let sig = daemon
            .sign_document(&app, "C1", Mechanism::Ecdsa, &digest, pin())
            .await
            .unwrap();
        assert!(verifies(&spki, &digest, &sig));
        // The authentication key signs as before, with the other key.
        let auth_sig = daemon.sign(&app, "C1", Mechanism::Ecdsa, &digest).unwrap();
        assert!(verifies(&info.public_key_der, &digest, &auth_sig));
        assert!(!verifies(&spki, &digest, &auth_sig));

        // Logged in, but a wrong or missing context PIN: refused, a wrong one counted.
        let err = daemon
            .sign_document(
                &app,
                "C1",
                Mechanism::Ecdsa,
                &digest,
                Pin::new(String::new()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err}");
        let err = daemon
            .sign_document(
                &app,
                "C1",
                Mechanism::Ecdsa,
                &digest,
                Pin::new("999999".into()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PinIncorrect { .. }), "{err}");
        assert_eq!(daemon.card_file("C1").unwrap().pin_failures, 1);
        // The right PIN again: signs, and the counter is back to 0.
        daemon
            .sign_document(&app, "C1", Mechanism::Ecdsa, &digest, pin())
            .await
            .unwrap();
        assert_eq!(daemon.card_file("C1").unwrap().pin_failures, 0);
    }

    #[tokio::test]
    async fn a_card_without_a_signing_key_says_so() {
        let (_tmp, daemon) = daemon_holding(card_c1()).await;
        assert!(daemon.card("C1", None).unwrap().signing_key.is_none());
        let app = log_in_app(&daemon).await;
        let err = daemon
            .sign_document(&app, "C1", Mechanism::Ecdsa, &[7; 32], Pin::new(PIN.into()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no document-signing key"), "{err}");
    }

    #[tokio::test]
    async fn the_signing_key_survives_a_daemon_restart_sealed_in_its_file() {
        let (tmp, daemon, spki) = with_signing_key().await;
        let file = daemon.card_file("C1").unwrap();
        let sealed = &file.signing.as_ref().unwrap().private_key;
        let text = serde_json::to_string(sealed).unwrap();
        assert!(!text.contains(&hex::encode(&spki)));
        drop(daemon);
        let daemon = Daemon::open(
            crate::state::tests::config(),
            tmp.path(),
            tmp.path().join("s"),
        )
        .unwrap();
        let app = log_in_app(&daemon).await;
        let sig = daemon
            .sign_document(&app, "C1", Mechanism::Ecdsa, &[3; 32], Pin::new(PIN.into()))
            .await
            .unwrap();
        assert!(verifies(&spki, &[3; 32], &sig));
    }
}
