//! Certificate serial numbers: 16 random bytes, positive, with a non-zero
//! first byte so the DER INTEGER is exactly those 16 bytes and the hex stored
//! in the CA database matches the serial printed by any X.509 tool.

use std::fmt;

/// A certificate serial number made from random bytes (at least 120 bits of entropy).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertSerial([u8; 16]);

impl CertSerial {
    /// Builds a serial from 16 random bytes: the high bit is cleared (positive) and
    /// the first byte made non-zero (no leading zero octet, fixed length).
    pub fn from_random(mut bytes: [u8; 16]) -> Self {
        bytes[0] &= 0x7f;
        if bytes[0] == 0 {
            bytes[0] = 0x01;
        }
        CertSerial(bytes)
    }

    /// The 16 big-endian bytes of the serial.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case hex, as stored in the CA database.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the hex form [`CertSerial::to_hex`] writes (as stored in the CA
    /// database); anything else, including a serial this CA would not make, is refused.
    pub fn from_hex(hex: &str) -> Result<Self, crate::CertsError> {
        let invalid = || crate::CertsError::InvalidSerial {
            given: hex.chars().take(64).collect(),
        };
        // from_str_radix alone would take a '+' sign.
        if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
        }
        if bytes[0] == 0 || bytes[0] > 0x7f {
            return Err(invalid());
        }
        Ok(CertSerial(bytes))
    }

    /// The serial as rcgen wants it.
    pub fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Debug for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertSerial({})", self.to_hex())
    }
}

impl fmt::Display for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_bit_cleared_and_first_byte_non_zero() {
        let s = CertSerial::from_random([0xff; 16]);
        assert_eq!(s.as_bytes()[0], 0x7f);
        let s = CertSerial::from_random([0x80; 16]);
        assert_eq!(s.as_bytes()[0], 0x01);
        assert_eq!(s.to_hex().len(), 32);
    }

    #[test]
    fn hex_round_trips_and_bad_hex_is_refused() {
        let s = CertSerial::from_random([0x5a; 16]);
        assert_eq!(CertSerial::from_hex(&s.to_hex()).unwrap(), s);
        assert_eq!(CertSerial::from_hex(&s.to_hex().to_uppercase()).unwrap(), s);
        for bad in [
            "",
            "5a",
            &"5a".repeat(17),
            &format!("00{}", "5a".repeat(15)),
            &format!("80{}", "5a".repeat(15)),
            &format!("zz{}", "5a".repeat(15)),
            &format!("+5{}", "5a".repeat(15)),
            "é5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        ] {
            assert!(
                matches!(
                    CertSerial::from_hex(bad),
                    Err(crate::CertsError::InvalidSerial { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
