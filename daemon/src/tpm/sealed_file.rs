//! `device.secret.tpm`: the device secret sealed to the TPM (public and
//! private blobs, JSON, 0600, written atomically). Created at the first start
//! with `device_secret = "tpm"`, unsealed at each start.

use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::seal::{seal, unseal, SealedBlob};
use super::Tpm;
use crate::card_crypto::{random_bytes, DeviceSecret, KEY_LEN};
use crate::error::{Error, Result};

/// Name of the file in the store.
pub const FILE_NAME: &str = "device.secret.tpm";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedFile {
    version: u32,
    #[serde(with = "crate::b64_serde::bytes")]
    public: Vec<u8>,
    #[serde(with = "crate::b64_serde::bytes")]
    private: Vec<u8>,
}

/// Unseals the secret in `path`, or creates, seals and writes one the first time.
pub fn load_or_create(tpm: &Tpm, path: &Path) -> Result<DeviceSecret> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file: SealedFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(path, format!("not a sealed device secret: {e}")))?;
            if file.version != 1 {
                return Err(Error::corrupt(
                    path,
                    format!("unknown version {}", file.version),
                ));
            }
            let blob = SealedBlob {
                public: file.public,
                private: file.private,
            };
            let secret = unseal(tpm, &blob)?;
            let arr: [u8; KEY_LEN] = secret.as_slice().try_into().map_err(|_| {
                Error::corrupt(
                    path,
                    format!("unsealed {} bytes, not {KEY_LEN}", secret.len()),
                )
            })?;
            Ok(DeviceSecret::from_bytes(arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = Zeroizing::new(random_bytes::<KEY_LEN>()?);
            let blob = seal(tpm, secret.as_slice())?;
            let json = serde_json::to_vec_pretty(&SealedFile {
                version: 1,
                public: blob.public,
                private: blob.private,
            })
            .map_err(|e| Error::Internal(format!("sealed secret serialisation: {e}")))?;
            crate::card_store::write_atomic(path, &json)?;
            Ok(DeviceSecret::from_bytes(*secret))
        }
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}
