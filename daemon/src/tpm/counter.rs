//! PIN retry counters as TPM NV counters (TPM_NT_COUNTER, owner auth) in an
//! index range of our own: a counter only goes up, and a re-defined one starts
//! at the highest value any counter of this TPM ever had, so no file restored
//! from a backup can bring a count back down.

use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::NvPublicBuilder;
use tss_esapi::Context;

use super::{rc_kind, Tpm};
use crate::error::{Error, Result};

/// First NV index Lanyard uses, in the owner's range (0x01000000-0x013FFFFF).
pub const FIRST_INDEX: u32 = 0x0138_4C00;
/// How many indexes the range holds.
pub const INDEX_COUNT: u32 = 0x400;

/// Whether `index` is in Lanyard's range.
pub fn in_range(index: u32) -> bool {
    (FIRST_INDEX..FIRST_INDEX + INDEX_COUNT).contains(&index)
}

fn handle(ctx: &mut Context, index: u32) -> tss_esapi::Result<NvIndexHandle> {
    let tpm_handle = NvIndexTpmHandle::new(index)?;
    Ok(ctx
        .tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle))?
        .into())
}

/// Defines a new counter at the first free index from `preferred` (wrapping
/// in the range), increments it once (a counter reads only once written) and
/// returns its index.
pub fn define(tpm: &Tpm, preferred: u32) -> Result<u32> {
    let start = preferred % INDEX_COUNT;
    for step in 0..INDEX_COUNT {
        let index = FIRST_INDEX + (start + step) % INDEX_COUNT;
        let defined = tpm.try_run(|ctx| {
            let attributes = NvIndexAttributesBuilder::new()
                .with_nv_index_type(NvIndexType::Counter)
                .with_owner_write(true)
                .with_owner_read(true)
                .build()?;
            let public = NvPublicBuilder::new()
                .with_nv_index(NvIndexTpmHandle::new(index)?)
                .with_index_name_algorithm(HashingAlgorithm::Sha256)
                .with_index_attributes(attributes)
                .with_data_area_size(8)
                .build()?;
            let nv = ctx.execute_with_nullauth_session(|ctx| {
                ctx.nv_define_space(Provision::Owner, None, public)
            })?;
            ctx.execute_with_nullauth_session(|ctx| ctx.nv_increment(NvAuth::Owner, nv))
        });
        match defined {
            Ok(()) => return Ok(index),
            Err(e) if rc_kind(&e) == Some(Tss2ResponseCodeKind::NvDefined) => continue,
            Err(e) => {
                return Err(Error::Tpm(format!(
                    "cannot define a PIN retry counter through {}: {e}",
                    tpm.tcti()
                )))
            }
        }
    }
    Err(Error::Tpm(format!(
        "every NV index from {FIRST_INDEX:#010x} to {:#010x} is taken",
        FIRST_INDEX + INDEX_COUNT - 1
    )))
}

fn read_in(ctx: &mut Context, index: u32) -> tss_esapi::Result<std::result::Result<u64, String>> {
    let nv = handle(ctx, index)?;
    let (public, _) = ctx.nv_read_public(nv)?;
    if public.attributes().index_type()? != NvIndexType::Counter {
        return Ok(Err(format!("NV index {index:#010x} is not a counter")));
    }
    let data = ctx.execute_with_nullauth_session(|ctx| ctx.nv_read(NvAuth::Owner, nv, 8, 0))?;
    Ok(data
        .value()
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| format!("NV counter {index:#010x} read {} bytes", data.value().len())))
}

/// The counter's value; an index that is missing or not a counter is an error.
pub fn read(tpm: &Tpm, index: u32) -> Result<u64> {
    tpm.run(
        &format!("read the PIN retry counter {index:#010x}"),
        |ctx| read_in(ctx, index),
    )?
    .map_err(Error::Tpm)
}

/// Increments the counter; returns the new value.
pub fn increment(tpm: &Tpm, index: u32) -> Result<u64> {
    tpm.run(
        &format!("increment the PIN retry counter {index:#010x}"),
        |ctx| {
            let nv = handle(ctx, index)?;
            ctx.execute_with_nullauth_session(|ctx| ctx.nv_increment(NvAuth::Owner, nv))?;
            read_in(ctx, index)
        },
    )?
    .map_err(Error::Tpm)
}

/// Frees the counter's index (card deletion); an index already gone is fine.
pub fn undefine(tpm: &Tpm, index: u32) -> Result<()> {
    let result = tpm.try_run(|ctx| {
        let nv = handle(ctx, index)?;
        ctx.execute_with_nullauth_session(|ctx| ctx.nv_undefine_space(Provision::Owner, nv))
    });
    match result {
        Ok(()) => Ok(()),
        Err(e) if rc_kind(&e) == Some(Tss2ResponseCodeKind::Handle) => Ok(()),
        Err(e) => Err(Error::Tpm(format!(
            "cannot free the PIN retry counter {index:#010x} through {}: {e}",
            tpm.tcti()
        ))),
    }
}

/// Whether the counter's index is defined (tests, status).
pub fn exists(tpm: &Tpm, index: u32) -> Result<bool> {
    match tpm.try_run(|ctx| handle(ctx, index).map(|_| ())) {
        Ok(()) => Ok(true),
        Err(e) if rc_kind(&e) == Some(Tss2ResponseCodeKind::Handle) => Ok(false),
        Err(e) => Err(Error::Tpm(format!(
            "cannot look up NV index {index:#010x} through {}: {e}",
            tpm.tcti()
        ))),
    }
}
