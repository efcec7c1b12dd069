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
}
