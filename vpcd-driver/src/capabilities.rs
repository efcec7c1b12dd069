//! IFDHGetCapabilities: the tags pcscd asks of a reader slot (its ATR, how
//! many slots, whether several readers and slots may be used at once).

use crate::device_name::MAX_SLOTS;
use crate::error::{DriverError, Result};
use crate::slot::Slot;

/// TAG_IFD_ATR: the card's ATR.
pub const TAG_IFD_ATR: u64 = 0x0303;
/// SCARD_ATTR_ATR_STRING (SCardGetAttrib): the card's ATR.
pub const SCARD_ATTR_ATR_STRING: u64 = 0x0009_0303;
/// TAG_IFD_SLOT_THREAD_SAFE: slots of one reader may be used at once.
pub const TAG_IFD_SLOT_THREAD_SAFE: u64 = 0x0FAC;
/// TAG_IFD_THREAD_SAFE: readers of this driver may be used at once.
pub const TAG_IFD_THREAD_SAFE: u64 = 0x0FAD;
/// TAG_IFD_SLOTS_NUMBER: slots of this reader entry.
pub const TAG_IFD_SLOTS_NUMBER: u64 = 0x0FAE;
/// TAG_IFD_SIMULTANEOUS_ACCESS: reader entries this driver can serve.
pub const TAG_IFD_SIMULTANEOUS_ACCESS: u64 = 0x0FAF;

/// The value of `tag` for `slot`.
pub fn get(slot: &Slot, tag: u64) -> Result<Vec<u8>> {
    match tag {
        TAG_IFD_ATR | SCARD_ATTR_ATR_STRING => Ok(slot.atr()?.as_bytes().to_vec()),
        TAG_IFD_SLOTS_NUMBER => Ok(vec![slot.reader().slots()]),
        // Each reader.conf entry naming this driver is one more reader.
        TAG_IFD_SIMULTANEOUS_ACCESS => Ok(vec![MAX_SLOTS]),
        // Every slot has its own connection and lock.
        TAG_IFD_THREAD_SAFE | TAG_IFD_SLOT_THREAD_SAFE => Ok(vec![1]),
        other => Err(DriverError::UnknownTag(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_link::Timeouts;
    use crate::device_name::ReaderAddress;

    #[test]
    fn pcscd_learns_slots_and_thread_safety_and_no_atr_without_a_card() {
        let reader = ReaderAddress::parse("127.0.0.1:1-3").unwrap();
        let slot = Slot::new(reader, reader.slot_addr(0).unwrap(), 0, Timeouts::default());
        assert_eq!(get(&slot, TAG_IFD_SLOTS_NUMBER).unwrap(), [3]);
        assert_eq!(get(&slot, TAG_IFD_SIMULTANEOUS_ACCESS).unwrap(), [16]);
        assert_eq!(get(&slot, TAG_IFD_THREAD_SAFE).unwrap(), [1]);
        assert_eq!(get(&slot, TAG_IFD_SLOT_THREAD_SAFE).unwrap(), [1]);
        assert!(matches!(
            get(&slot, TAG_IFD_ATR).unwrap_err(),
            DriverError::NoCard(_)
        ));
        // TAG_IFD_POLLING_THREAD_WITH_TIMEOUT: not offered, pcscd polls.
        assert!(matches!(
            get(&slot, 0x0FB3).unwrap_err(),
            DriverError::UnknownTag(0x0FB3)
        ));
    }
}
