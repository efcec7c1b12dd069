//! A card's TPM share: 32 random bytes sealed to the TPM with an authValue
//! derived from the PIN and marked for dictionary-attack protection, mixed
//! into the card's KEK. Each PIN tried against the card goes through the
//! TPM (a wrong one counts towards its DA lockout), so even with the sealed
//! device secret in hand the PIN cannot be guessed offline.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::structures::{Auth, Private, Public, SensitiveData};
use tss_esapi::traits::UnMarshall;
use zeroize::Zeroizing;

use super::seal::{create_sealed, load_and_unseal};
use super::{rc_kind, Tpm};
use crate::card_crypto::{random_bytes, KEY_LEN};
use crate::error::{Error, Result};
use crate::pin::Pin;

/// The sealed share as stored in the card file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmShare {
    /// TPM2B_PUBLIC contents, marshalled.
    #[serde(with = "crate::b64_serde::bytes")]
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE contents.
    #[serde(with = "crate::b64_serde::bytes")]
    pub private: Vec<u8>,
}

/// The share's authValue for `pin` on `card_id`.
fn auth_for(card_id: &str, pin: &Pin) -> Result<Auth> {
    let mut h = Sha256::new();
    h.update(b"lanyard/v1/tpm-share-auth\0");
    h.update(card_id.as_bytes());
    h.update(b"\0");
    h.update(pin.as_bytes());
    let digest = Zeroizing::new(h.finalize().to_vec());
    Auth::try_from(digest.to_vec()).map_err(|e| Error::Tpm(format!("share authValue: {e}")))
}

/// A new share for `card_id` under `pin`: the sealed form and the bytes.
pub fn create(tpm: &Tpm, card_id: &str, pin: &Pin) -> Result<(TpmShare, Zeroizing<[u8; KEY_LEN]>)> {
    let share = Zeroizing::new(random_bytes::<KEY_LEN>()?);
    let data =
        SensitiveData::try_from(share.to_vec()).map_err(|e| Error::Tpm(format!("share: {e}")))?;
    let auth = auth_for(card_id, pin)?;
    let blob = create_sealed(tpm, "seal the card's TPM share", data, Some(auth))?;
    Ok((
        TpmShare {
            public: blob.public,
            private: blob.private,
        },
        share,
    ))
}

/// The share's bytes if `pin` is right; `Ok(None)` if it is wrong (the TPM
/// counted it). A TPM in dictionary-attack lockout is an error saying so.
pub fn open(
    tpm: &Tpm,
    card_id: &str,
    pin: &Pin,
    share: &TpmShare,
) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>> {
    let bad = |why: String| Error::Tpm(format!("the card's TPM share is unusable: {why}"));
    let public = Public::unmarshall(&share.public).map_err(|e| bad(e.to_string()))?;
    let private = Private::try_from(share.private.clone()).map_err(|e| bad(e.to_string()))?;
    let auth = auth_for(card_id, pin)?;
    let result = tpm.try_run(|ctx| load_and_unseal(ctx, public, private, Some(auth)));
    match result {
        Ok(data) => {
            let bytes = Zeroizing::new(data.value().to_vec());
            let arr: [u8; KEY_LEN] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| bad(format!("unsealed {} bytes", bytes.len())))?;
            Ok(Some(Zeroizing::new(arr)))
        }
        Err(e) => match rc_kind(&e) {
            Some(Tss2ResponseCodeKind::AuthFail) | Some(Tss2ResponseCodeKind::BadAuth) => Ok(None),
            Some(Tss2ResponseCodeKind::Lockout) => Err(Error::Tpm(format!(
                "the TPM is in dictionary-attack lockout after too many wrong PINs: no PIN can \
                 be checked until it recovers (or its owner resets the lockout) ({})",
                tpm.tcti()
            ))),
            _ => Err(Error::Tpm(format!(
                "cannot open the card's TPM share through {}: {e}",
                tpm.tcti()
            ))),
        },
    }
}
