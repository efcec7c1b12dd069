//! serde helpers that write byte fields of the card files as base64 strings
//! (standard alphabet, padded), singly or as a list.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One byte string as base64 (`#[serde(with = "crate::b64_serde::bytes")]`).
pub mod bytes {
    use super::*;

    /// Writes base64.
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    /// Reads base64; bad base64 is a deserialisation error.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// A list of byte strings as a list of base64 strings.
pub mod list {
    use super::*;

    /// Writes a list of base64 strings.
    pub fn serialize<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<String> = v.iter().map(|c| B64.encode(c)).collect();
        list.serialize(s)
    }

    /// Reads a list of base64 strings.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.iter()
            .map(|s| B64.decode(s.as_bytes()).map_err(serde::de::Error::custom))
            .collect()
    }
}
