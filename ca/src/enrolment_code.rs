//! One-time enrolment codes: 80 random bits as 16 Crockford base32 characters,
//! shown in four groups of four to read aloud, and stored only as the SHA-256
//! of the normalised form. Codes are zeroized and never printed by `Debug`.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::CaError;

/// Crockford's base32 alphabet: no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code (16 x 5 bits = 80 bits of entropy).
pub const CODE_CHARS: usize = 16;
/// Characters per group when displayed.
const GROUP: usize = 4;

/// An enrolment code in normalised form (16 characters from [`ALPHABET`]).
pub struct EnrolmentCode(Zeroizing<String>);

impl EnrolmentCode {
    /// A new random code from the operating system's generator.
    pub fn generate() -> Result<Self, CaError> {
        let mut bytes = Zeroizing::new([0u8; 10]);
        getrandom::getrandom(bytes.as_mut())?;
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS));
        for i in 0..CODE_CHARS {
            // 5-bit group i of the 80-bit big-endian number.
            let bit = i * 5;
            let (byte, shift) = (bit / 8, bit % 8);
            let hi = u16::from(bytes[byte]) << 8;
            let lo = bytes.get(byte + 1).copied().map(u16::from).unwrap_or(0);
            let v = ((hi | lo) >> (11 - shift)) & 0x1f;
            out.push(char::from(ALPHABET[usize::from(v)]));
        }
        Ok(EnrolmentCode(out))
    }

    /// Normalises what a person typed: case, spaces and dashes are ignored and
    /// Crockford's confusables are mapped (I and L to 1, O to 0). `None` if
    /// the result cannot be a code (wrong length or a character not in the alphabet).
    pub fn parse(typed: &str) -> Option<Self> {
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS));
        for c in typed.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return None,
            };
            if out.len() == CODE_CHARS {
                return None;
            }
            out.push(c);
        }
        (out.len() == CODE_CHARS).then_some(EnrolmentCode(out))
    }

    /// The code in groups to read aloud, e.g. `7KQD-9M2X-H4TA-PZ3E`.
    pub fn grouped(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP));
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    /// The hash stored in the database.
    pub fn hash(&self) -> CodeHash {
        CodeHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for EnrolmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrolmentCode(<redacted>)")
    }
}

/// SHA-256 of a normalised code: what the database keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CodeHash([u8; 32]);

impl CodeHash {
    /// Lower-case hex, the form stored in `enrolment_codes.code_hash`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeHash({}…)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_grouped_and_parse_back() {
        let code = EnrolmentCode::generate().unwrap();
        let g = code.grouped();
        assert_eq!(g.len(), 19);
        assert_eq!(g.matches('-').count(), 3);
        let back = EnrolmentCode::parse(&g).unwrap();
        assert_eq!(back.hash(), code.hash());
    }

    #[test]
    fn codes_differ_and_use_the_whole_alphabet() {
        let mut seen = std::collections::HashSet::new();
        let mut chars = std::collections::HashSet::new();
        for _ in 0..200 {
            let c = EnrolmentCode::generate().unwrap();
            chars.extend(c.0.chars());
            assert!(seen.insert(c.0.to_string()));
        }
        assert_eq!(chars.len(), 32);
        assert!(!chars.contains(&'I') && !chars.contains(&'L') && !chars.contains(&'O'));
        assert!(!chars.contains(&'U'));
    }

    #[test]
    fn normalisation() {
        let a = EnrolmentCode::parse("7KQD-9M2X-H4TA-PZ3E").unwrap();
        for typed in [
            "7kqd9m2xh4tapz3e",
            " 7KQD 9M2X H4TA PZ3E ",
            "7kqd-9m2x-h4ta-pz3e",
        ] {
            assert_eq!(
                EnrolmentCode::parse(typed).unwrap().hash(),
                a.hash(),
                "{typed}"
            );
        }
        let b = EnrolmentCode::parse("1000-0000-0000-0000").unwrap();
        assert_eq!(
            EnrolmentCode::parse("IOoo-oooo-OOOO-0000").unwrap().hash(),
            b.hash()
        );
        assert_eq!(
            EnrolmentCode::parse("l000-0000-0000-0000").unwrap().hash(),
            b.hash()
        );
    }

    #[test]
    fn malformed_input_is_not_a_code() {
        assert!(EnrolmentCode::parse("").is_none());
        assert!(EnrolmentCode::parse("7KQD-9M2X-H4TA-PZ3").is_none());
        assert!(EnrolmentCode::parse("7KQD-9M2X-H4TA-PZ3EE").is_none());
        assert!(EnrolmentCode::parse("7KQD-9M2X-H4TA-PZ3U").is_none());
        assert!(EnrolmentCode::parse("7KQD-9M2X-H4TA-PZ3É").is_none());
    }

    #[test]
    fn debug_does_not_show_the_code() {
        let c = EnrolmentCode::parse("7KQD-9M2X-H4TA-PZ3E").unwrap();
        assert!(!format!("{c:?}").contains("7KQD"));
    }
}
