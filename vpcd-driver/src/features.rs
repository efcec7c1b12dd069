//! IFDHControl: the PC/SC part 10 reader features. Only
//! FEATURE_GET_TLV_PROPERTIES, telling clients (OpenSC) how large an APDU
//! the reader carries, so they may use extended length.

use crate::error::{DriverError, Result};
use crate::frame::MAX_FRAME;

/// SCARD_CTL_CODE(code) of reader.h.
const fn scard_ctl_code(code: u64) -> u64 {
    0x4200_0000 + code
}

/// CM_IOCTL_GET_FEATURE_REQUEST: which features the reader has.
pub const CM_IOCTL_GET_FEATURE_REQUEST: u64 = scard_ctl_code(3400);
/// FEATURE_GET_TLV_PROPERTIES (PC/SC part 10).
const FEATURE_GET_TLV_PROPERTIES: u8 = 0x12;
/// The control code this driver gives that feature (CCID's numbering).
pub const IOCTL_FEATURE_GET_TLV_PROPERTIES: u64 =
    scard_ctl_code(FEATURE_GET_TLV_PROPERTIES as u64 + 0x33_0000);
/// PCSCv2_PART10_PROPERTY_dwMaxAPDUDataSize.
const PROPERTY_MAX_APDU_DATA_SIZE: u8 = 10;
/// The data a frame can carry in an extended APDU: a frame holds 65535 bytes,
/// a case 4 extended command adds 4 header, 3 Lc and 2 Le bytes.
pub const MAX_APDU_DATA: u32 = (MAX_FRAME - 9) as u32;

/// The answer to control code `code`.
pub fn control(code: u64) -> Result<Vec<u8>> {
    match code {
        CM_IOCTL_GET_FEATURE_REQUEST => {
            // One TLV: tag, length 4, the control code big-endian (part 10 2.2).
            let mut tlv = vec![FEATURE_GET_TLV_PROPERTIES, 4];
            tlv.extend_from_slice(&(IOCTL_FEATURE_GET_TLV_PROPERTIES as u32).to_be_bytes());
            Ok(tlv)
        }
        IOCTL_FEATURE_GET_TLV_PROPERTIES => {
            // Property values are little-endian (part 10 2.6.14).
            let mut tlv = vec![PROPERTY_MAX_APDU_DATA_SIZE, 4];
            tlv.extend_from_slice(&MAX_APDU_DATA.to_le_bytes());
            Ok(tlv)
        }
        other => Err(DriverError::NotSupported(format!(
            "reader control code {other:#x}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tlv_properties_feature_tells_the_largest_apdu() {
        assert_eq!(CM_IOCTL_GET_FEATURE_REQUEST, 0x4200_0D48);
        assert_eq!(
            control(CM_IOCTL_GET_FEATURE_REQUEST).unwrap(),
            [0x12, 4, 0x42, 0x33, 0x00, 0x12]
        );
        assert_eq!(
            control(IOCTL_FEATURE_GET_TLV_PROPERTIES).unwrap(),
            [10, 4, 0xF6, 0xFF, 0x00, 0x00]
        );
        assert!(matches!(
            control(scard_ctl_code(1)).unwrap_err(),
            DriverError::NotSupported(_)
        ));
    }
}
