//! VERIFY (SP 800-73-4 part 2 §3.2.1) for the PIV application PIN (key
//! reference 80): the PIN is 1-8 ASCII digits padded with 0xFF to 8 bytes;
//! an empty VERIFY asks the state, P1=FF resets it. A PIN that does not fit
//! this form is refused before the backend sees it, so it is never counted.

use zeroize::Zeroizing;

use crate::status::Status;

/// Key reference of the PIV application PIN.
pub const PIV_PIN_REF: u8 = 0x80;

/// The padded PIN's fixed length.
const PADDED_PIN_LEN: usize = 8;

/// What a VERIFY asks for.
pub enum VerifyRequest {
    /// Lc absent: is the PIN verified, and how many tries are left?
    Status,
    /// P1=FF, Lc absent: end the verified state.
    Reset,
    /// Check this PIN (padding removed).
    Pin(Zeroizing<Vec<u8>>),
}

/// Parses VERIFY's P1, P2 and data; a malformed PIN is 6A80.
pub fn parse(p1: u8, p2: u8, data: &[u8]) -> Result<VerifyRequest, Status> {
    if p2 != PIV_PIN_REF {
        return Err(Status::ReferenceNotFound);
    }
    match (p1, data.is_empty()) {
        (0x00, true) => Ok(VerifyRequest::Status),
        (0x00, false) => unpad(data).map(VerifyRequest::Pin),
        (0xFF, true) => Ok(VerifyRequest::Reset),
        (0xFF, false) => Err(Status::WrongData),
        _ => Err(Status::WrongP1P2),
    }
}

/// The digits of an 8-byte 0xFF-padded PIN, or 6A80.
fn unpad(data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Status> {
    if data.len() != PADDED_PIN_LEN {
        return Err(Status::WrongData);
    }
    let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || data[digits..].iter().any(|&b| b != 0xFF) {
        return Err(Status::WrongData);
    }
    Ok(Zeroizing::new(data[..digits].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin_of(data: &[u8]) -> Result<Vec<u8>, Status> {
        match parse(0x00, 0x80, data)? {
            VerifyRequest::Pin(p) => Ok(p.to_vec()),
            _ => panic!("not a PIN"),
        }
    }

    #[test]
    fn padded_pins_unpad() {
        assert_eq!(pin_of(b"123456\xFF\xFF"), Ok(b"123456".to_vec()));
        assert_eq!(pin_of(b"12345678"), Ok(b"12345678".to_vec()));
        assert_eq!(pin_of(b"1\xFF\xFF\xFF\xFF\xFF\xFF\xFF"), Ok(b"1".to_vec()));
    }

    #[test]
    fn malformed_pins_are_wrong_data() {
        for bad in [
            &b"123456"[..],
            b"123456789",
            b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
            b"12a456\xFF\xFF",
            b"1234\xFF\xFF56",
            b"123456\xFF\x00",
            b"123456  ",
        ] {
            assert_eq!(pin_of(bad).err(), Some(Status::WrongData), "{bad:02X?}");
        }
    }

    #[test]
    fn status_reset_and_references() {
        assert!(matches!(parse(0x00, 0x80, &[]), Ok(VerifyRequest::Status)));
        assert!(matches!(parse(0xFF, 0x80, &[]), Ok(VerifyRequest::Reset)));
        assert_eq!(
            parse(0xFF, 0x80, b"123456\xFF\xFF").err(),
            Some(Status::WrongData)
        );
        assert_eq!(
            parse(0x00, 0x00, &[]).err(),
            Some(Status::ReferenceNotFound)
        );
        assert_eq!(
            parse(0x00, 0x81, &[]).err(),
            Some(Status::ReferenceNotFound)
        );
        assert_eq!(parse(0x01, 0x80, &[]).err(), Some(Status::WrongP1P2));
    }
}
