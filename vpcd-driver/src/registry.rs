//! The open reader slots by pcsc-lite Lun (0xRRRRSSSS: reader entry, slot).
//! Each slot has its own connection and lock, so several reader.conf entries
//! and slots share this one loaded driver safely.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::card_link::Timeouts;
use crate::device_name::ReaderAddress;
use crate::error::{DriverError, Result};
use crate::log::info;
use crate::slot::Slot;

/// A pcsc-lite Logical Unit Number: the reader entry in the high 16 bits,
/// the slot of that entry in the low 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lun(pub u64);

impl Lun {
    /// The slot within the reader entry.
    pub fn slot(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }
}

/// The open slots.
#[derive(Debug, Default)]
pub struct Registry {
    slots: Mutex<BTreeMap<Lun, Arc<Slot>>>,
}

impl Registry {
    /// The registry of this loaded driver.
    pub fn global() -> &'static Registry {
        static REGISTRY: Registry = Registry {
            slots: Mutex::new(BTreeMap::new()),
        };
        &REGISTRY
    }

    /// IFDHCreateChannel(ByName): opens `lun` as slot `lun.slot()` of `reader`
    /// (a Lun opened again replaces the old slot). Does not connect yet: the
    /// card may start later; pcscd's presence polls connect.
    pub fn open(&self, lun: Lun, reader: ReaderAddress, timeouts: Timeouts) -> Result<()> {
        let addr = reader.slot_addr(lun.slot())?;
        let slot = Arc::new(Slot::new(reader, addr, lun.0, timeouts));
        info!(
            "Lun {:#x}: reader slot {} for the card at {addr} (reversed mode)",
            lun.0,
            lun.slot()
        );
        if let Some(old) = self.lock().insert(lun, slot) {
            old.close();
        }
        Ok(())
    }

    /// The open slot `lun`.
    pub fn get(&self, lun: Lun) -> Result<Arc<Slot>> {
        self.lock()
            .get(&lun)
            .cloned()
            .ok_or(DriverError::UnknownLun(lun.0))
    }

    /// IFDHCloseChannel: closes and forgets `lun`.
    pub fn close(&self, lun: Lun) -> Result<()> {
        let slot = self
            .lock()
            .remove(&lun)
            .ok_or(DriverError::UnknownLun(lun.0))?;
        slot.close();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Lun, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}
