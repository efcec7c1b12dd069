//! Finding the key's objects in the token: the private key the URI names,
//! and its public half (RSA modulus and exponent from the private key; the EC
//! point from the public key object or certificate with the same id).

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::der;
use super::error::{call, Pkcs11Error};
use super::KeyAlg;
use crate::pkcs11_uri::{ObjectType, Pkcs11Uri};

/// DER of the OID of NIST P-256 (CKA_EC_PARAMS).
pub(crate) const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID of NIST P-384 (CKA_EC_PARAMS).
pub(crate) const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// Smallest RSA key accepted for signing, in bits.
const RSA_MIN_BITS: usize = 2048;

/// The search template for the private key the URI names.
pub(crate) fn private_key_template(uri: &Pkcs11Uri) -> Result<Vec<Attribute>, Pkcs11Error> {
    let kind = match uri.object_type {
        None | Some(ObjectType::Private) => None,
        Some(ObjectType::Public) => Some("public key"),
        Some(ObjectType::Cert) => Some("certificate"),
        Some(ObjectType::SecretKey) => Some("secret key"),
        Some(ObjectType::Data) => Some("data object"),
    };
    if let Some(kind) = kind {
        return Err(Pkcs11Error::NotAPrivateKey { kind });
    }
    if uri.object.is_none() && uri.id.is_none() {
        return Err(Pkcs11Error::NoObjectNamed);
    }
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    Ok(template)
}

/// The one private key matching the URI, if any.
pub(crate) fn find_private_key(
    session: &Session,
    uri: &Pkcs11Uri,
    token: &str,
) -> Result<Option<ObjectHandle>, Pkcs11Error> {
    let mut keys = session
        .find_objects(&private_key_template(uri)?)
        .map_err(call("C_FindObjects"))?;
    match keys.len() {
        0 => Ok(None),
        1 => Ok(keys.pop()),
        count => Err(Pkcs11Error::AmbiguousKey {
            uri: uri.redacted(),
            token: token.to_string(),
            count,
        }),
    }
}

fn bytes_attr(attrs: &[Attribute], pick: fn(&Attribute) -> Option<&Vec<u8>>) -> Option<Vec<u8>> {
    attrs.iter().find_map(pick).cloned()
}

/// The first object of `class` with the key's id (or, without an id, its label).
pub(crate) fn sibling(
    session: &Session,
    class: ObjectClass,
    id: &[u8],
    label: &[u8],
    wanted: AttributeType,
) -> Result<Option<Vec<u8>>, Pkcs11Error> {
    let mut template = vec![Attribute::Class(class)];
    if !id.is_empty() {
        template.push(Attribute::Id(id.to_vec()));
    } else if !label.is_empty() {
        template.push(Attribute::Label(label.to_vec()));
    } else {
        return Ok(None);
    }
    for handle in session
        .find_objects(&template)
        .map_err(call("C_FindObjects"))?
    {
        let attrs = session
            .get_attributes(handle, &[wanted])
            .map_err(call("C_GetAttributeValue"))?;
        let value = attrs.into_iter().find_map(|a| match a {
            Attribute::EcPoint(v) | Attribute::Value(v) => Some(v),
            _ => None,
        });
        if value.is_some() {
            return Ok(value);
        }
    }
    Ok(None)
}

/// The raw EC point from a certificate's SubjectPublicKeyInfo.
fn point_from_certificate(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// Reads the key's kind, id and public half.
pub(crate) fn public_half(
    session: &Session,
    key: ObjectHandle,
    uri: &Pkcs11Uri,
) -> Result<(KeyAlg, Vec<u8>, Vec<u8>), Pkcs11Error> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::Id,
                AttributeType::Label,
            ],
        )
        .map_err(call("C_GetAttributeValue"))?;
    let id = bytes_attr(&attrs, |a| match a {
        Attribute::Id(v) => Some(v),
        _ => None,
    })
    .unwrap_or_default();
    let label = bytes_attr(&attrs, |a| match a {
        Attribute::Label(v) => Some(v),
        _ => None,
    })
    .unwrap_or_default();
    let key_type = attrs.iter().find_map(|a| match a {
        Attribute::KeyType(t) => Some(*t),
        _ => None,
    });
    let unsupported = |what: String| Pkcs11Error::UnsupportedKey {
        uri: uri.redacted(),
        what,
    };
    match key_type {
        Some(t) if t == KeyType::RSA => {
            let attrs = session
                .get_attributes(
                    key,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(call("C_GetAttributeValue"))?;
            let n = bytes_attr(&attrs, |a| match a {
                Attribute::Modulus(v) => Some(v),
                _ => None,
            });
            let e = bytes_attr(&attrs, |a| match a {
                Attribute::PublicExponent(v) => Some(v),
                _ => None,
            });
            let (Some(n), Some(e)) = (n, e) else {
                return Err(Pkcs11Error::NoPublicKey {
                    uri: uri.redacted(),
                });
            };
            let bits = der::bit_length(&n);
            if bits < RSA_MIN_BITS {
                return Err(unsupported(format!("RSA-{bits}")));
            }
            Ok((KeyAlg::Rsa { bits }, der::rsa_public_key(&n, &e), id))
        }
        Some(t) if t == KeyType::EC => {
            let attrs = session
                .get_attributes(key, &[AttributeType::EcParams])
                .map_err(call("C_GetAttributeValue"))?;
            let params = bytes_attr(&attrs, |a| match a {
                Attribute::EcParams(v) => Some(v),
                _ => None,
            });
            let (alg, point_len) = match params.as_deref() {
                Some(P256_PARAMS) => (KeyAlg::EcP256, 65),
                Some(P384_PARAMS) => (KeyAlg::EcP384, 97),
                _ => return Err(unsupported("an EC key on another curve".into())),
            };
            let from_public = sibling(
                session,
                ObjectClass::PUBLIC_KEY,
                &id,
                &label,
                AttributeType::EcPoint,
            )?
            .and_then(|p| der::ec_point(&p, point_len));
            let point = match from_public {
                Some(p) => Some(p),
                None => sibling(
                    session,
                    ObjectClass::CERTIFICATE,
                    &id,
                    &label,
                    AttributeType::Value,
                )?
                .and_then(|c| point_from_certificate(&c))
                .filter(|p| p.len() == point_len),
            };
            let point = point.ok_or_else(|| Pkcs11Error::NoPublicKey {
                uri: uri.redacted(),
            })?;
            Ok((alg, point, id))
        }
        _ => Err(unsupported("neither an RSA nor an EC key".into())),
    }
}
