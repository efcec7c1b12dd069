//! The card id: 12 upper-case hex characters (48 random bits) naming one
//! virtual card for its whole life (the OU of its certificates). Parsed once
//! at the gRPC edge, so the rest of the CA never sees an unchecked id.

use std::fmt;

use crate::error::CaError;

/// Hex characters in a card id.
pub const CARD_ID_CHARS: usize = 12;

/// A well-formed card id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CardId(String);

impl CardId {
    /// Checks `text` (surrounding white space and case do not matter).
    pub fn parse(text: &str) -> Result<Self, CaError> {
        let t = text.trim();
        if t.len() != CARD_ID_CHARS || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let shown: String = t.chars().take(40).collect();
            return Err(CaError::InvalidArgument(format!(
                "{shown:?} is not a card id (expected {CARD_ID_CHARS} hex characters, e.g. 0A1B2C3D4E5F)"
            )));
        }
        Ok(CardId(t.to_ascii_uppercase()))
    }

    /// A new random card id.
    pub fn generate() -> Result<Self, CaError> {
        let mut bytes = [0u8; CARD_ID_CHARS / 2];
        getrandom::getrandom(&mut bytes)?;
        Ok(CardId(hex::encode_upper(bytes)))
    }

    /// The id as stored and printed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            CardId::parse(" 0a1b2c3d4e5f ").unwrap().as_str(),
            "0A1B2C3D4E5F"
        );
        let g = CardId::generate().unwrap();
        assert_eq!(CardId::parse(g.as_str()).unwrap(), g);
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        for bad in [
            "",
            "0A1B2C3D4E5",
            "0A1B2C3D4E5F0",
            "0A1B2C3D4E5G",
            "+A1B2C3D4E5F",
            "0A1B 2C3D4E5F",
        ] {
            let err = CardId::parse(bad).unwrap_err();
            assert!(matches!(err, CaError::InvalidArgument(_)), "{bad:?}");
            assert!(err.to_string().contains("not a card id"), "{err}");
        }
        let long = "A".repeat(10_000);
        assert!(CardId::parse(&long).unwrap_err().to_string().len() < 200);
    }
}
