//! One reader slot (a pcsc-lite Lun): its card's loopback address, the link
//! while a card answers, and the card-present state pcscd polls. A dropped
//! link is a removed card; the next successful poll is an insertion.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use crate::card_link::{Atr, CardLink, Timeouts};
use crate::device_name::ReaderAddress;
use crate::error::{DriverError, Result};
use crate::frame::Control;
use crate::log::{error, info};

/// What pcscd asks of the card's power (IFDHPowerICC's Action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// IFD_POWER_UP: power on, then the ATR.
    Up,
    /// IFD_POWER_DOWN: power off.
    Down,
    /// IFD_RESET: warm reset, then the ATR.
    Reset,
}

#[derive(Debug, Default)]
struct State {
    link: Option<CardLink>,
    atr: Option<Atr>,
    /// Whether the last poll (or power up) found a card; logged on change only.
    present: bool,
    /// Whether "waiting for the card" was logged since the last removal.
    waiting_logged: bool,
}

/// A reader slot and its (possibly absent) virtual card.
#[derive(Debug)]
pub struct Slot {
    reader: ReaderAddress,
    addr: SocketAddr,
    name: String,
    timeouts: Timeouts,
    state: Mutex<State>,
}

impl Slot {
    /// A slot whose card listens at `addr` (one of `reader`'s ports); no connection yet.
    pub fn new(reader: ReaderAddress, addr: SocketAddr, lun: u64, timeouts: Timeouts) -> Slot {
        Slot {
            reader,
            addr,
            name: format!("Lun {lun:#x} ({addr})"),
            timeouts,
            state: Mutex::new(State::default()),
        }
    }

    /// The reader.conf entry this slot belongs to.
    pub fn reader(&self) -> &ReaderAddress {
        &self.reader
    }

    /// The address of this slot's card.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// IFDHICCPresence: connects if needed, then asks for the ATR; a card that
    /// does not answer is absent (and its link dropped). Never an error.
    pub fn is_present(&self) -> bool {
        let mut state = self.lock();
        let result = self.ensure_link(&mut state).and_then(|link| link.atr());
        match result {
            Ok(atr) => {
                self.mark_present(&mut state, atr);
                true
            }
            Err(e) => {
                self.drop_link(&mut state, &e);
                false
            }
        }
    }

    /// IFDHPowerICC: power up or reset answer the ATR; power down answers none.
    pub fn power(&self, action: PowerAction) -> Result<Option<Atr>> {
        let mut state = self.lock();
        if action == PowerAction::Down {
            if let Some(link) = state.link.as_mut() {
                if let Err(e) = link.control(Control::PowerOff) {
                    // The card is gone: it is off as asked.
                    self.drop_link(&mut state, &e);
                }
            }
            return Ok(None);
        }
        let control = match action {
            PowerAction::Reset => Control::Reset,
            _ => Control::PowerOn,
        };
        let result = self.ensure_link(&mut state).and_then(|link| {
            link.control(control)?;
            link.atr()
        });
        match result {
            Ok(atr) => {
                self.mark_present(&mut state, atr.clone());
                Ok(Some(atr))
            }
            Err(e) => {
                self.drop_link(&mut state, &e);
                Err(e)
            }
        }
    }

    /// The ATR of the card in the slot (TAG_IFD_ATR).
    pub fn atr(&self) -> Result<Atr> {
        let mut state = self.lock();
        if let Some(atr) = state.atr.clone() {
            if state.link.is_some() {
                return Ok(atr);
            }
        }
        let Some(link) = state.link.as_mut() else {
            return Err(DriverError::NoCard(self.addr.to_string()));
        };
        match link.atr() {
            Ok(atr) => {
                self.mark_present(&mut state, atr.clone());
                Ok(atr)
            }
            Err(e) => {
                self.drop_link(&mut state, &e);
                Err(e)
            }
        }
    }

    /// IFDHTransmitToICC: one command APDU to the card in the slot. Never
    /// connects: a new connection is a new card, which pcscd must see inserted.
    pub fn transmit(&self, apdu: &[u8]) -> Result<Vec<u8>> {
        let mut state = self.lock();
        let Some(link) = state.link.as_mut() else {
            return Err(DriverError::NoCard(self.addr.to_string()));
        };
        match link.transmit(apdu) {
            Ok(response) => Ok(response),
            // Refused before sending: the link is still in step.
            Err(e @ DriverError::ApduLength(_)) => Err(e),
            Err(e) => {
                self.drop_link(&mut state, &e);
                Err(e)
            }
        }
    }

    /// IFDHCloseChannel: closes the link (the card sees the reader go).
    pub fn close(&self) {
        let mut state = self.lock();
        if state.link.take().is_some() {
            info!(
                "{}: reader closed; connection to the card closed",
                self.name
            );
        }
        state.atr = None;
        state.present = false;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock was caught at the FFI edge; the state
        // is still a valid (if possibly stale) link, which the next poll checks.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_link<'s>(&self, state: &'s mut State) -> Result<&'s mut CardLink> {
        if state.link.is_none() {
            match CardLink::connect(self.addr, self.timeouts) {
                Ok(link) => state.link = Some(link),
                Err(e) => {
                    if !state.waiting_logged {
                        info!("{}: no card yet; polling {}", self.name, self.addr);
                        state.waiting_logged = true;
                    }
                    return Err(e);
                }
            }
        }
        state
            .link
            .as_mut()
            .ok_or_else(|| DriverError::NoCard(self.addr.to_string()))
    }

    fn mark_present(&self, state: &mut State, atr: Atr) {
        if !state.present {
            info!(
                "{}: card inserted (ATR of {} bytes)",
                self.name,
                atr.as_bytes().len()
            );
        }
        state.present = true;
        state.waiting_logged = false;
        state.atr = Some(atr);
    }

    /// Drops the link after `cause`, logging a removal once.
    fn drop_link(&self, state: &mut State, cause: &DriverError) {
        state.link = None;
        state.atr = None;
        if state.present {
            match cause {
                DriverError::Protocol(_) => error!("{}: card removed: {cause}", self.name),
                _ => info!("{}: card removed ({cause})", self.name),
            }
            state.present = false;
            state.waiting_logged = false;
        } else if matches!(cause, DriverError::Protocol(_)) && !state.waiting_logged {
            error!("{}: {cause}", self.name);
            state.waiting_logged = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_card::{TestCard, ATR};

    fn slot_for(addr: SocketAddr) -> Slot {
        let reader = ReaderAddress::parse(&addr.to_string()).unwrap();
        Slot::new(reader, addr, 0, Timeouts::default())
    }

    #[test]
    fn a_listening_card_is_present_and_answers() {
        let card = TestCard::start();
        let slot = slot_for(card.addr());
        assert!(slot.is_present());
        assert_eq!(
            slot.power(PowerAction::Up).unwrap().unwrap().as_bytes(),
            ATR
        );
        assert_eq!(slot.atr().unwrap().as_bytes(), ATR);
        assert_eq!(
            slot.transmit(&[0x00, 0x20, 0x00, 0x80, 0x02, 0x31, 0x32])
                .unwrap(),
            [0x02, 0x31, 0x32, 0x90, 0x00]
        );
        assert_eq!(
            slot.power(PowerAction::Reset).unwrap().unwrap().as_bytes(),
            ATR
        );
        assert_eq!(slot.power(PowerAction::Down).unwrap(), None);
        slot.close();
        let seen = card.remove_and_seen();
        // Presence = get ATR; power up = on + ATR; reset = reset + ATR; off.
        assert_eq!(
            seen,
            vec![
                vec![4],
                vec![1],
                vec![4],
                vec![0x00, 0x20, 0x00, 0x80, 0x02, 0x31, 0x32],
                vec![2],
                vec![4],
                vec![0]
            ]
        );
    }

    #[test]
    fn removal_and_reinsertion_follow_the_listener() {
        let card = TestCard::start();
        let slot = slot_for(card.addr());
        assert!(slot.is_present());
        let addr = card.remove();
        assert!(!slot.is_present(), "a closed card is removed");
        assert!(
            !slot.is_present(),
            "and stays removed while nothing listens"
        );
        assert!(matches!(
            slot.transmit(&[0, 0xCA, 0, 0]).unwrap_err(),
            DriverError::NoCard(_)
        ));
        assert!(matches!(slot.atr().unwrap_err(), DriverError::NoCard(_)));
        assert!(slot.power(PowerAction::Up).is_err());
        assert_eq!(slot.power(PowerAction::Down).unwrap(), None);

        let again = TestCard::start_on(addr);
        assert!(slot.is_present(), "the next poll reconnects: inserted");
        assert_eq!(
            slot.power(PowerAction::Up).unwrap().unwrap().as_bytes(),
            ATR
        );
        drop(again);
    }

    #[test]
    fn a_card_hanging_up_mid_apdu_is_removed_and_the_next_poll_reconnects() {
        let card = TestCard::start();
        let slot = slot_for(card.addr());
        assert!(slot.is_present());
        let err = slot.transmit(&[0x00, 0xEE, 0x00, 0x00]).unwrap_err();
        assert!(matches!(err, DriverError::Io { .. }), "{err:?}");
        assert!(matches!(
            slot.transmit(&[0, 0xCA, 0, 0]).unwrap_err(),
            DriverError::NoCard(_)
        ));
        // The card still listens: a new connection, a new insertion.
        assert!(slot.is_present());
        assert_eq!(slot.transmit(&[0, 0xCA, 0, 0]).unwrap(), [0x90, 0x00]);
    }

    #[test]
    fn an_apdu_too_long_for_a_frame_keeps_the_card() {
        let card = TestCard::start();
        let slot = slot_for(card.addr());
        assert!(slot.is_present());
        let mut huge = vec![0x00, 0xDB, 0x3F, 0xFF, 0x00, 0xFF, 0xFF];
        huge.resize(65_548, 0x5A); // pcscd's largest buffer
        assert!(matches!(
            slot.transmit(&huge).unwrap_err(),
            DriverError::ApduLength(65_548)
        ));
        assert_eq!(slot.transmit(&[0, 0xCA, 0, 0]).unwrap(), [0x90, 0x00]);
        let mut largest = vec![0x00, 0xDB, 0x3F, 0xFF, 0x00, 0xFF, 0xF8];
        largest.resize(65_535, 0x5A);
        let response = slot.transmit(&largest).unwrap();
        assert_eq!(response.len(), 65_535 - 4 + 2);
        drop(card);
    }

    #[test]
    fn logs_never_hold_apdu_payloads() {
        let card = TestCard::start();
        let slot = slot_for(card.addr());
        assert!(slot.is_present());
        // VERIFY with PIN 739104 (FF-padded), then a hang-up in the middle of
        // one: the error and removal lines name the address, never the data.
        let verify = [
            0x00, 0x20, 0x00, 0x80, 0x08, b'7', b'3', b'9', b'1', b'0', b'4', 0xFF, 0xFF,
        ];
        slot.transmit(&verify).unwrap();
        let mut hang_up = vec![0x00, 0xEE, 0x00, 0x80, 0x08];
        hang_up.extend_from_slice(&verify[5..]);
        assert!(slot.transmit(&hang_up).is_err());
        drop(card);
        assert!(!slot.is_present());
        let lines = crate::log::captured::lines();
        assert!(
            lines.iter().any(|l| l.contains("card removed")),
            "{lines:?}"
        );
        for line in lines {
            assert!(!line.contains("739104"), "PIN in a log line: {line}");
            assert!(
                !line.contains("37:33:39")
                    && !line.contains("373339")
                    && !line.contains("37 33 39"),
                "{line}"
            );
        }
    }
}
