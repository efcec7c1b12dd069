//! pcsc-lite's IFD handler API v3 (ifdhandler.h), the symbols pcscd looks up
//! in the driver: each converts its pointers and hands over to the safe
//! registry and slot code, then converts the answer back.

use std::ffi::CStr;
use std::os::raw::c_char;

use super::{answer, clear_len, guard, wide, Dword, ResponseCodeC};
use crate::capabilities;
use crate::card_link::Timeouts;
use crate::device_name::ReaderAddress;
use crate::error::{DriverError, ResponseCode};
use crate::features;
use crate::registry::{Lun, Registry};
use crate::slot::PowerAction;

/// IFD_POWER_UP
const IFD_POWER_UP: Dword = 500;
/// IFD_POWER_DOWN
const IFD_POWER_DOWN: Dword = 501;
/// IFD_RESET
const IFD_RESET: Dword = 502;

/// SCARD_IO_HEADER of ifdhandler.h.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ScardIoHeader {
    /// The protocol (T=0: 1, T=1: 2 as SCARD_PROTOCOL_*; drivers also see 0/1).
    pub protocol: Dword,
    /// Unused by pcsc-lite.
    pub length: Dword,
}

/// Opens reader slot `lun` for the card named by reader.conf's DEVICENAME.
#[no_mangle]
pub extern "C" fn IFDHCreateChannelByName(lun: Dword, device_name: *const c_char) -> ResponseCodeC {
    guard("IFDHCreateChannelByName", || {
        if device_name.is_null() {
            return Err(DriverError::NullArgument("DEVICENAME"));
        }
        // SAFETY: pcscd passes a NUL-terminated string (the DEVICENAME of
        // reader.conf) that stays valid for the duration of the call.
        let name = unsafe { CStr::from_ptr(device_name) };
        let name = name
            .to_str()
            .map_err(|_| DriverError::DeviceName("DEVICENAME is not valid UTF-8".to_string()))?;
        let reader = ReaderAddress::parse(name)?;
        Registry::global().open(Lun(wide(lun)), reader, Timeouts::default())?;
        Ok(ResponseCode::Success)
    })
}

/// Opens reader slot `lun` for a card on 127.0.0.1 at port `channel` (CHANNELID).
#[no_mangle]
pub extern "C" fn IFDHCreateChannel(lun: Dword, channel: Dword) -> ResponseCodeC {
    guard("IFDHCreateChannel", || {
        let reader = ReaderAddress::from_channel(wide(channel))?;
        Registry::global().open(Lun(wide(lun)), reader, Timeouts::default())?;
        Ok(ResponseCode::Success)
    })
}

/// Closes reader slot `lun` and its connection.
#[no_mangle]
pub extern "C" fn IFDHCloseChannel(lun: Dword) -> ResponseCodeC {
    guard("IFDHCloseChannel", || {
        Registry::global().close(Lun(wide(lun)))?;
        Ok(ResponseCode::Success)
    })
}

/// Answers capability `tag` into `value` (`*length` bytes available).
#[no_mangle]
pub extern "C" fn IFDHGetCapabilities(
    lun: Dword,
    tag: Dword,
    length: *mut Dword,
    value: *mut u8,
) -> ResponseCodeC {
    guard("IFDHGetCapabilities", || {
        let bytes = Registry::global()
            .get(Lun(wide(lun)))
            .and_then(|slot| capabilities::get(&slot, wide(tag)));
        // SAFETY: pcscd passes `length` (null or valid) holding the size of `value`.
        unsafe { answer(bytes, value, length) }?;
        Ok(ResponseCode::Success)
    })
}

/// No capability can be set.
#[no_mangle]
pub extern "C" fn IFDHSetCapabilities(
    lun: Dword,
    tag: Dword,
    _length: Dword,
    _value: *mut u8,
) -> ResponseCodeC {
    guard("IFDHSetCapabilities", || {
        Registry::global().get(Lun(wide(lun)))?;
        Err(DriverError::NotSupported(format!(
            "setting capability {tag:#x}"
        )))
    })
}

/// Accepts any protocol: vpcd carries whole APDUs, not T=0/T=1 blocks.
#[no_mangle]
pub extern "C" fn IFDHSetProtocolParameters(
    lun: Dword,
    _protocol: Dword,
    _flags: u8,
    _pts1: u8,
    _pts2: u8,
    _pts3: u8,
) -> ResponseCodeC {
    guard("IFDHSetProtocolParameters", || {
        Registry::global().get(Lun(wide(lun)))?;
        Ok(ResponseCode::Success)
    })
}

/// Powers the card up or down or resets it; up and reset return the ATR.
#[no_mangle]
pub extern "C" fn IFDHPowerICC(
    lun: Dword,
    action: Dword,
    atr: *mut u8,
    atr_length: *mut Dword,
) -> ResponseCodeC {
    guard("IFDHPowerICC", || {
        let action = match action {
            IFD_POWER_UP => Ok(PowerAction::Up),
            IFD_POWER_DOWN => Ok(PowerAction::Down),
            IFD_RESET => Ok(PowerAction::Reset),
            other => Err(DriverError::NotSupported(format!("power action {other}"))),
        };
        let powered = action.and_then(|action| {
            let slot = Registry::global().get(Lun(wide(lun)))?;
            slot.power(action)
        });
        let atr_bytes = match powered {
            Ok(None) => {
                // SAFETY: atr_length is null (pcscd's power down) or valid.
                unsafe { clear_len(atr_length) };
                return Ok(ResponseCode::Success);
            }
            Ok(Some(card_atr)) => Ok(card_atr.as_bytes().to_vec()),
            Err(e) => Err(e),
        };
        // SAFETY: pcscd passes `atr_length` (null or valid) holding the size of `atr`.
        unsafe { answer(atr_bytes, atr, atr_length) }?;
        Ok(ResponseCode::Success)
    })
}

/// Sends a command APDU to the card and returns its response APDU.
#[no_mangle]
pub extern "C" fn IFDHTransmitToICC(
    lun: Dword,
    send_pci: ScardIoHeader,
    tx_buffer: *const u8,
    tx_length: Dword,
    rx_buffer: *mut u8,
    rx_length: *mut Dword,
    recv_pci: *mut ScardIoHeader,
) -> ResponseCodeC {
    guard("IFDHTransmitToICC", || {
        let response = if tx_buffer.is_null() {
            Err(DriverError::NullArgument("command APDU"))
        } else {
            // SAFETY: pcscd passes tx_buffer valid for tx_length bytes for the
            // duration of the call; it is only read.
            let apdu = unsafe { std::slice::from_raw_parts(tx_buffer, tx_length as usize) };
            Registry::global()
                .get(Lun(wide(lun)))
                .and_then(|slot| slot.transmit(apdu))
        };
        // SAFETY: pcscd passes `rx_length` (null or valid) holding the size of `rx_buffer`.
        unsafe { answer(response, rx_buffer, rx_length) }?;
        if !recv_pci.is_null() {
            // SAFETY: non-null recv_pci points to pcscd's SCARD_IO_HEADER.
            unsafe { (*recv_pci).protocol = send_pci.protocol };
        }
        Ok(ResponseCode::Success)
    })
}

/// Reader controls: only the PC/SC part 10 TLV properties feature.
#[no_mangle]
pub extern "C" fn IFDHControl(
    lun: Dword,
    control_code: Dword,
    _tx_buffer: *const u8,
    _tx_length: Dword,
    rx_buffer: *mut u8,
    rx_length: Dword,
    bytes_returned: *mut Dword,
) -> ResponseCodeC {
    guard("IFDHControl", || {
        if bytes_returned.is_null() {
            return Err(DriverError::NullArgument("bytes-returned pointer"));
        }
        let reply = Registry::global()
            .get(Lun(wide(lun)))
            .and_then(|_| features::control(wide(control_code)));
        // SAFETY: bytes_returned is non-null (checked) and pcscd's own
        // variable; it becomes the capacity `answer` checks against.
        unsafe { *bytes_returned = rx_length };
        // SAFETY: rx_buffer is valid for rx_length bytes (pcscd's buffer).
        unsafe { answer(reply, rx_buffer, bytes_returned) }?;
        Ok(ResponseCode::Success)
    })
}

/// Whether a card is in slot `lun`: connected and answering the ATR.
#[no_mangle]
pub extern "C" fn IFDHICCPresence(lun: Dword) -> ResponseCodeC {
    guard("IFDHICCPresence", || {
        let slot = Registry::global().get(Lun(wide(lun)))?;
        Ok(if slot.is_present() {
            ResponseCode::IccPresent
        } else {
            ResponseCode::IccNotPresent
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{TAG_IFD_ATR, TAG_IFD_SLOTS_NUMBER};
    use crate::test_card::{TestCard, ATR};
    use std::ffi::CString;

    const SUCCESS: ResponseCodeC = 0;
    const ERROR_TAG: ResponseCodeC = 600;
    const COMMUNICATION_ERROR: ResponseCodeC = 612;
    const NOT_SUPPORTED: ResponseCodeC = 614;
    const PRESENT: ResponseCodeC = 615;
    const NOT_PRESENT: ResponseCodeC = 616;
    const INSUFFICIENT_BUFFER: ResponseCodeC = 618;

    fn open(lun: Dword, name: &str) -> ResponseCodeC {
        let name = CString::new(name).unwrap();
        IFDHCreateChannelByName(lun, name.as_ptr())
    }

    fn transmit(lun: Dword, apdu: &[u8], capacity: usize) -> (ResponseCodeC, Vec<u8>) {
        let mut rx = vec![0u8; capacity];
        let mut rx_len = capacity as Dword;
        let mut recv = ScardIoHeader {
            protocol: 0,
            length: 0,
        };
        let send = ScardIoHeader {
            protocol: 2,
            length: 0,
        };
        let rv = IFDHTransmitToICC(
            lun,
            send,
            apdu.as_ptr(),
            apdu.len() as Dword,
            rx.as_mut_ptr(),
            &mut rx_len,
            &mut recv,
        );
        rx.truncate(rx_len as usize);
        if rv == SUCCESS {
            assert_eq!(recv.protocol, 2);
        }
        (rv, rx)
    }

    #[test]
    fn network_hosts_server_mode_and_null_names_open_no_reader() {
        assert_eq!(open(0x0010_0000, "192.168.0.4:35963"), COMMUNICATION_ERROR);
        assert_eq!(open(0x0010_0000, "/dev/null:0x8C7B"), COMMUNICATION_ERROR);
        assert_eq!(
            IFDHCreateChannelByName(0x0010_0000, std::ptr::null()),
            COMMUNICATION_ERROR
        );
        assert_eq!(IFDHCreateChannel(0x0010_0000, 0), COMMUNICATION_ERROR);
        // Nothing was opened: every call on that Lun fails cleanly.
        assert_eq!(IFDHICCPresence(0x0010_0000), COMMUNICATION_ERROR);
        assert_eq!(IFDHCloseChannel(0x0010_0000), COMMUNICATION_ERROR);
        // A slot beyond the entry's ports is refused too.
        assert_eq!(open(0x0010_0001, "127.0.0.1:35963"), COMMUNICATION_ERROR);
    }

    #[test]
    fn a_card_is_inserted_used_removed_and_inserted_again_through_the_c_api() {
        let lun: Dword = 0x0011_0000;
        let card = TestCard::start();
        assert_eq!(open(lun, &card.addr().to_string()), SUCCESS);

        let mut value = [0u8; 33];
        let mut len: Dword = value.len() as Dword;
        assert_eq!(
            IFDHGetCapabilities(
                lun,
                TAG_IFD_SLOTS_NUMBER as Dword,
                &mut len,
                value.as_mut_ptr()
            ),
            SUCCESS
        );
        assert_eq!(&value[..len as usize], [1]);
        assert_eq!(
            IFDHGetCapabilities(
                lun,
                TAG_IFD_SLOTS_NUMBER as Dword,
                std::ptr::null_mut(),
                value.as_mut_ptr()
            ),
            COMMUNICATION_ERROR
        );
        len = value.len() as Dword;
        assert_eq!(
            IFDHGetCapabilities(lun, 0x0FB3, &mut len, value.as_mut_ptr()),
            ERROR_TAG
        );
        assert_eq!(len, 0);
        len = value.len() as Dword;
        assert_eq!(
            IFDHGetCapabilities(lun, TAG_IFD_ATR as Dword, &mut len, value.as_mut_ptr()),
            NOT_PRESENT,
            "no ATR before the first poll connects"
        );

        assert_eq!(IFDHICCPresence(lun), PRESENT);
        len = value.len() as Dword;
        assert_eq!(
            IFDHGetCapabilities(lun, TAG_IFD_ATR as Dword, &mut len, value.as_mut_ptr()),
            SUCCESS
        );
        assert_eq!(&value[..len as usize], ATR);
        let mut atr = [0u8; 33];
        let mut atr_len: Dword = atr.len() as Dword;
        assert_eq!(
            IFDHPowerICC(lun, IFD_POWER_UP, atr.as_mut_ptr(), &mut atr_len),
            SUCCESS
        );
        assert_eq!(&atr[..atr_len as usize], ATR);
        let mut small = [0u8; 2];
        let mut small_len: Dword = 2;
        assert_eq!(
            IFDHPowerICC(lun, IFD_RESET, small.as_mut_ptr(), &mut small_len),
            INSUFFICIENT_BUFFER
        );
        assert_eq!(small_len, 0);
        assert_eq!(
            IFDHPowerICC(lun, 7, atr.as_mut_ptr(), &mut atr_len),
            NOT_SUPPORTED
        );
        assert_eq!(IFDHSetProtocolParameters(lun, 2, 0, 0, 0, 0), SUCCESS);

        let (rv, response) = transmit(lun, &[0x00, 0xCB, 0x3F, 0xFF, 0x01, 0x7E], 258);
        assert_eq!(rv, SUCCESS);
        assert_eq!(response, [0x01, 0x7E, 0x90, 0x00]);
        let (rv, response) = transmit(lun, &[0x00, 0xCB, 0x3F, 0xFF, 0x01, 0x7E], 3);
        assert_eq!((rv, response.len()), (INSUFFICIENT_BUFFER, 0));
        let (rv, _) = transmit(lun, &[0x00], 258);
        assert_eq!(
            rv, COMMUNICATION_ERROR,
            "a 1-byte APDU would read as a control"
        );
        assert_eq!(IFDHICCPresence(lun), PRESENT, "refused APDUs keep the card");

        // Power down passes pcscd's NULL pointers.
        assert_eq!(
            IFDHPowerICC(
                lun,
                IFD_POWER_DOWN,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            SUCCESS
        );

        let addr = card.remove();
        assert_eq!(IFDHICCPresence(lun), NOT_PRESENT);
        let (rv, _) = transmit(lun, &[0x00, 0xCA, 0x00, 0x00], 258);
        assert_eq!(rv, NOT_PRESENT);
        atr_len = atr.len() as Dword;
        assert_eq!(
            IFDHPowerICC(lun, IFD_POWER_UP, atr.as_mut_ptr(), &mut atr_len),
            NOT_PRESENT
        );
        assert_eq!(atr_len, 0);

        let _again = TestCard::start_on(addr);
        assert_eq!(IFDHICCPresence(lun), PRESENT);
        assert_eq!(IFDHCloseChannel(lun), SUCCESS);
        assert_eq!(IFDHICCPresence(lun), COMMUNICATION_ERROR);
    }

    #[test]
    fn several_luns_have_their_own_cards() {
        let (a, b) = (TestCard::start(), TestCard::start());
        let (lun_a, lun_b): (Dword, Dword) = (0x0012_0000, 0x0013_0000);
        assert_eq!(open(lun_a, &a.addr().to_string()), SUCCESS);
        assert_eq!(IFDHCreateChannel(lun_b, b.addr().port() as Dword), SUCCESS);
        assert_eq!(IFDHICCPresence(lun_a), PRESENT);
        assert_eq!(IFDHICCPresence(lun_b), PRESENT);
        drop(b);
        assert_eq!(IFDHICCPresence(lun_b), NOT_PRESENT);
        assert_eq!(
            IFDHICCPresence(lun_a),
            PRESENT,
            "the other reader keeps its card"
        );
        assert_eq!(IFDHCloseChannel(lun_a), SUCCESS);
        assert_eq!(IFDHCloseChannel(lun_b), SUCCESS);
    }

    #[test]
    fn the_reader_reports_its_largest_apdu_to_clients() {
        let lun: Dword = 0x0014_0000;
        assert_eq!(IFDHCreateChannel(lun, 9), SUCCESS);
        let mut rx = [0u8; 16];
        let mut returned: Dword = 99;
        let rv = IFDHControl(
            lun,
            features::CM_IOCTL_GET_FEATURE_REQUEST as Dword,
            std::ptr::null(),
            0,
            rx.as_mut_ptr(),
            rx.len() as Dword,
            &mut returned,
        );
        assert_eq!((rv, returned), (SUCCESS, 6));
        assert_eq!(&rx[..2], [0x12, 4]);
        let rv = IFDHControl(
            lun,
            features::IOCTL_FEATURE_GET_TLV_PROPERTIES as Dword,
            std::ptr::null(),
            0,
            rx.as_mut_ptr(),
            3,
            &mut returned,
        );
        assert_eq!((rv, returned), (INSUFFICIENT_BUFFER, 0));
        let rv = IFDHControl(
            lun,
            1,
            std::ptr::null(),
            0,
            rx.as_mut_ptr(),
            16,
            std::ptr::null_mut(),
        );
        assert_eq!(rv, COMMUNICATION_ERROR);
        assert_eq!(IFDHCloseChannel(lun), SUCCESS);
    }

    #[test]
    fn a_panic_in_the_body_is_an_error_code_not_an_abort() {
        let rv = super::super::guard("test", || panic!("boom"));
        assert_eq!(rv, COMMUNICATION_ERROR);
    }
}
