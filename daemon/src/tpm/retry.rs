//! A card's PIN failures kept in its TPM NV counter: read at load
//! (failures = value - base), and reconciled before each write of the card
//! file, incrementing the counter first, so the count is in the TPM before the file says so.

use std::path::Path;

use super::{counter, Tpm};
use crate::card_file::{CardFile, CardState, TpmCounter};
use crate::error::{Error, Result};

/// At most this many increments in one write (a count jumps by one at a time).
const MAX_STEP: u64 = 64;

/// The failures the TPM counts for `card` (whose file is `path`).
pub fn failures(tpm: &Tpm, card: &CardFile, path: &Path) -> Result<u32> {
    let Some(c) = card.tpm_counter else {
        return Err(Error::corrupt(
            path,
            "no TPM retry counter, but this store is sealed to a TPM",
        ));
    };
    if !counter::in_range(c.nv_index) {
        return Err(Error::corrupt(
            path,
            format!("TPM counter index {:#010x} is not Lanyard's", c.nv_index),
        ));
    }
    let value = counter::read(tpm, c.nv_index)?;
    let failures = value.checked_sub(c.base).ok_or_else(|| {
        Error::corrupt(
            path,
            format!(
                "TPM counter base {} is above the counter's value {value}",
                c.base
            ),
        )
    })?;
    Ok(u32::try_from(failures).unwrap_or(u32::MAX))
}

/// What must happen after the card file is written.
pub enum AfterWrite {
    /// Nothing.
    Nothing,
    /// Free this NV index (the card became a tombstone).
    Free(u32),
}

/// Makes `card.tpm_counter` agree with `card.pin_failures` before it is
/// written: defines a counter for a card without one (reusing
/// `previous_index`, the one of the file being replaced, if any), increments
/// the counter up to the failures, or moves the base down to them. A
/// revoked card loses its counter (freed after the write).
pub fn reconcile(
    tpm: &Tpm,
    card: &mut CardFile,
    previous_index: Option<u32>,
) -> Result<AfterWrite> {
    if card.status == CardState::Revoked {
        return Ok(match card.tpm_counter.take() {
            Some(c) => AfterWrite::Free(c.nv_index),
            None => AfterWrite::Nothing,
        });
    }
    let index = match (card.tpm_counter, previous_index) {
        (Some(c), _) => c.nv_index,
        (None, Some(index)) if counter::exists(tpm, index)? => index,
        (None, _) => counter::define(tpm, preferred_index(&card.card_id))?,
    };
    let mut value = counter::read(tpm, index)?;
    let wanted = u64::from(card.pin_failures);
    let base = card.tpm_counter.map(|c| c.base).unwrap_or(value);
    let counted = value.saturating_sub(base);
    if wanted > counted {
        for _ in 0..(wanted - counted).min(MAX_STEP) {
            value = counter::increment(tpm, index)?;
        }
    }
    card.tpm_counter = Some(TpmCounter {
        nv_index: index,
        base: value.saturating_sub(wanted),
    });
    Ok(AfterWrite::Nothing)
}

/// Frees the index after the file no longer names it; a failure only leaks it.
pub fn after_write(tpm: &Tpm, after: AfterWrite, card_id: &str) {
    if let AfterWrite::Free(index) = after {
        match counter::undefine(tpm, index) {
            Ok(()) => tracing::info!(card = %card_id, nv_index = index, "TPM retry counter freed"),
            Err(e) => {
                tracing::warn!(card = %card_id, nv_index = index, error = %e, "TPM retry counter not freed")
            }
        }
    }
}

/// Where to look first for a free index: spread by the card id.
fn preferred_index(card_id: &str) -> u32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(card_id.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}
