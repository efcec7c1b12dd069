//! Sealing the device secret: a keyed-hash sealed-data object created under
//! a primary storage key made from a fixed template in the owner hierarchy,
//! so the same TPM re-creates the same parent at each start and no other TPM can load the object.

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{
    Auth, Digest, EccPoint, KeyedHashScheme, Private, Public, PublicBuilder,
    PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;
use zeroize::Zeroizing;

use super::{rc_kind, Tpm};
use crate::error::{Error, Result};

/// A sealed object as stored: the TPM's public and private blobs.
pub struct SealedBlob {
    /// TPM2B_PUBLIC contents, marshalled.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE contents (encrypted by the TPM under the parent).
    pub private: Vec<u8>,
}

/// The fixed template of the parent: an ECC P-256 restricted decryption
/// (storage) key with AES-128-CFB, as tpm2-tools' default primary.
fn primary_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The template of a sealed object: data only, bound to this TPM and
/// parent; `da_protected`: a wrong authValue counts towards the TPM's
/// dictionary-attack lockout.
fn sealed_template(da_protected: bool) -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .with_no_da(!da_protected)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// Creates the parent (the same key each time on the same TPM).
fn primary(ctx: &mut Context) -> tss_esapi::Result<KeyHandle> {
    let template = primary_template()?;
    ctx.execute_with_nullauth_session(|ctx| {
        ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
    })
    .map(|r| r.key_handle)
}

/// Seals `secret` to the TPM.
pub fn seal(tpm: &Tpm, secret: &[u8]) -> Result<SealedBlob> {
    let data = SensitiveData::try_from(secret.to_vec())
        .map_err(|e| Error::Tpm(format!("secret too long to seal: {e}")))?;
    create_sealed(tpm, "seal the device secret", data, None)
}

/// Creates a sealed-data object holding `data` under the fixed parent. With an
/// `auth`, unsealing needs it and the object counts toward the TPM's
/// dictionary-attack lockout; without, it needs none and does not.
pub(super) fn create_sealed(
    tpm: &Tpm,
    what: &str,
    data: SensitiveData,
    auth: Option<Auth>,
) -> Result<SealedBlob> {
    let da_protected = auth.is_some();
    let (public, private) = tpm.run(what, |ctx| {
        let parent = primary(ctx)?;
        let created = ctx.execute_with_nullauth_session(|ctx| {
            ctx.create(
                parent,
                sealed_template(da_protected)?,
                auth,
                Some(data),
                None,
                None,
            )
        });
        ctx.flush_context(parent.into())?;
        let created = created?;
        Ok((created.out_public.marshall()?, created.out_private))
    })?;
    Ok(SealedBlob {
        public,
        private: private.value().to_vec(),
    })
}

/// Loads a sealed object under the fixed parent and unseals it, with `auth`
/// when it has one; every handle is flushed whatever happens.
pub(super) fn load_and_unseal(
    ctx: &mut Context,
    public: Public,
    private: Private,
    auth: Option<Auth>,
) -> tss_esapi::Result<SensitiveData> {
    let parent = primary(ctx)?;
    let loaded = ctx.execute_with_nullauth_session(|ctx| ctx.load(parent, private, public));
    ctx.flush_context(parent.into())?;
    let loaded = loaded?;
    let data = match auth {
        Some(auth) => ctx.tr_set_auth(loaded.into(), auth),
        None => Ok(()),
    }
    .and_then(|()| ctx.execute_with_nullauth_session(|ctx| ctx.unseal(loaded.into())));
    ctx.flush_context(loaded.into())?;
    data
}

/// Unseals a blob made by [`seal`] on this TPM. A blob from another TPM (or
/// changed) cannot be loaded: the error says so.
pub fn unseal(tpm: &Tpm, blob: &SealedBlob) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |why: String| Error::Tpm(format!("the sealed device secret is unusable: {why}"));
    let public = Public::unmarshall(&blob.public).map_err(|e| bad(e.to_string()))?;
    let private = Private::try_from(blob.private.clone()).map_err(|e| bad(e.to_string()))?;
    let result = tpm.try_run(|ctx| load_and_unseal(ctx, public, private, None));
    match result {
        Ok(data) => Ok(Zeroizing::new(data.value().to_vec())),
        Err(e) if is_foreign(&e) => Err(Error::Tpm(format!(
            "the device secret is sealed to another TPM (or its blob was changed), so this \
             store cannot be opened on this machine through {}: {e}",
            tpm.tcti()
        ))),
        Err(e) => Err(Error::Tpm(format!(
            "cannot unseal the device secret through {}: {e}",
            tpm.tcti()
        ))),
    }
}

/// Whether a load failure means the blob does not belong to this TPM.
fn is_foreign(e: &tss_esapi::Error) -> bool {
    matches!(
        rc_kind(e),
        Some(Tss2ResponseCodeKind::Integrity)
            | Some(Tss2ResponseCodeKind::Size)
            | Some(Tss2ResponseCodeKind::Value)
            | Some(Tss2ResponseCodeKind::Binding)
    )
}
