//! Attribute values as PKCS#11 lays them out in memory, and the
//! C_GetAttributeValue protocol (size query, too-small buffers, unknown and
//! sensitive attributes) as a pure function the FFI layer only copies out.

use cryptoki_sys::*;

use crate::error::{Pkcs11Error, Result};

/// A stored attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// The bytes a caller receives.
    Bytes(Vec<u8>),
    /// Exists but never leaves the token (private key material).
    Sensitive,
}

/// CK_BBOOL encoding.
pub fn bool_value(b: bool) -> AttrValue {
    AttrValue::Bytes(vec![if b { CK_TRUE } else { CK_FALSE }])
}

/// CK_ULONG encoding (native endian, as the caller's C code reads it).
pub fn ulong_value(v: CK_ULONG) -> AttrValue {
    AttrValue::Bytes(v.to_ne_bytes().to_vec())
}

/// An array of CK_ULONG (e.g. CKA_ALLOWED_MECHANISMS).
pub fn ulongs_value(vs: &[CK_ULONG]) -> AttrValue {
    AttrValue::Bytes(vs.iter().flat_map(|v| v.to_ne_bytes()).collect())
}

/// Raw bytes.
pub fn bytes_value(b: &[u8]) -> AttrValue {
    AttrValue::Bytes(b.to_vec())
}

/// One entry of a caller's C_GetAttributeValue template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrRequest {
    pub attr_type: CK_ATTRIBUTE_TYPE,
    /// `None` when pValue is NULL (a length query), else ulValueLen.
    pub capacity: Option<usize>,
}

/// What the FFI layer writes back for one template entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrResult {
    /// Copy these bytes to pValue and set ulValueLen to their length.
    Value(Vec<u8>),
    /// Set ulValueLen only (length query).
    Length(usize),
    /// Set ulValueLen to CK_UNAVAILABLE_INFORMATION (unknown, sensitive or too small).
    Unavailable,
}

/// Runs the C_GetAttributeValue protocol over `lookup` (the object's
/// attributes). Every entry is processed (PKCS#11 3.0 section 5.7.5, cases
/// 1 to 5); when several errors apply, PKCS#11 lets the token return any of
/// them, and this one always returns the same, whatever the template's
/// order: ATTRIBUTE_SENSITIVE, else ATTRIBUTE_TYPE_INVALID, else
/// BUFFER_TOO_SMALL (the order of the specification's list, as SoftHSM).
pub fn get_values<'a>(
    lookup: impl Fn(CK_ATTRIBUTE_TYPE) -> Option<&'a AttrValue>,
    template: &[AttrRequest],
) -> (Vec<AttrResult>, Result<()>) {
    let mut results = Vec::with_capacity(template.len());
    let (mut sensitive, mut invalid, mut too_small) = (false, false, false);
    for req in template {
        let result = match lookup(req.attr_type) {
            None => {
                invalid = true;
                AttrResult::Unavailable
            }
            Some(AttrValue::Sensitive) => {
                sensitive = true;
                AttrResult::Unavailable
            }
            Some(AttrValue::Bytes(b)) => match req.capacity {
                None => AttrResult::Length(b.len()),
                Some(cap) if cap >= b.len() => AttrResult::Value(b.clone()),
                Some(_) => {
                    too_small = true;
                    AttrResult::Unavailable
                }
            },
        };
        results.push(result);
    }
    let rv = if sensitive {
        Err(Pkcs11Error::AttributeSensitive)
    } else if invalid {
        Err(Pkcs11Error::AttributeTypeInvalid)
    } else if too_small {
        Err(Pkcs11Error::BufferTooSmall { needed: 0 })
    } else {
        Ok(())
    };
    (results, rv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Vec<(CK_ATTRIBUTE_TYPE, AttrValue)> {
        vec![
            (CKA_LABEL, bytes_value(b"Dr Ada Smith")),
            (CKA_SIGN, bool_value(true)),
            (CKA_PRIVATE_EXPONENT, AttrValue::Sensitive),
        ]
    }

    fn run(template: &[AttrRequest]) -> (Vec<AttrResult>, Result<()>) {
        let a = attrs();
        get_values(
            |t| a.iter().find(|(at, _)| *at == t).map(|(_, v)| v),
            template,
        )
    }

    fn req(attr_type: CK_ATTRIBUTE_TYPE, capacity: Option<usize>) -> AttrRequest {
        AttrRequest {
            attr_type,
            capacity,
        }
    }

    #[test]
    fn null_value_is_a_length_query() {
        let (r, rv) = run(&[req(CKA_LABEL, None)]);
        assert_eq!(rv, Ok(()));
        assert_eq!(r, vec![AttrResult::Length(12)]);
    }

    #[test]
    fn exact_and_larger_buffers_get_the_value() {
        let (r, rv) = run(&[req(CKA_LABEL, Some(12)), req(CKA_SIGN, Some(8))]);
        assert_eq!(rv, Ok(()));
        assert_eq!(
            r,
            vec![
                AttrResult::Value(b"Dr Ada Smith".to_vec()),
                AttrResult::Value(vec![CK_TRUE])
            ]
        );
    }

    #[test]
    fn too_small_continues_with_the_rest() {
        let (r, rv) = run(&[req(CKA_LABEL, Some(3)), req(CKA_SIGN, Some(1))]);
        assert_eq!(rv.unwrap_err().rv(), CKR_BUFFER_TOO_SMALL);
        assert_eq!(
            r,
            vec![AttrResult::Unavailable, AttrResult::Value(vec![CK_TRUE])]
        );
    }

    #[test]
    fn invalid_and_sensitive_win_over_too_small() {
        let (r, rv) = run(&[
            req(CKA_LABEL, Some(1)),
            req(CKA_MODULUS, None),
            req(CKA_SIGN, None),
        ]);
        assert_eq!(rv, Err(Pkcs11Error::AttributeTypeInvalid));
        assert_eq!(
            r,
            vec![
                AttrResult::Unavailable,
                AttrResult::Unavailable,
                AttrResult::Length(1)
            ]
        );
        let (r, rv) = run(&[
            req(CKA_PRIVATE_EXPONENT, Some(512)),
            req(CKA_LABEL, Some(1)),
        ]);
        assert_eq!(rv, Err(Pkcs11Error::AttributeSensitive));
        assert_eq!(r, vec![AttrResult::Unavailable, AttrResult::Unavailable]);
    }

    #[test]
    fn sensitive_wins_over_invalid_in_either_order() {
        for template in [
            [req(CKA_MODULUS, None), req(CKA_PRIVATE_EXPONENT, None)],
            [req(CKA_PRIVATE_EXPONENT, None), req(CKA_MODULUS, None)],
        ] {
            let (r, rv) = run(&template);
            assert_eq!(rv, Err(Pkcs11Error::AttributeSensitive));
            assert_eq!(r, vec![AttrResult::Unavailable, AttrResult::Unavailable]);
        }
    }
}
