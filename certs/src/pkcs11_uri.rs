//! PKCS#11 URIs (RFC 7512) naming a key or certificate in a token: which
//! module to load (`module-path`), which token and which object in it, and where
//! the PIN comes from (`pin-source=file:…`). Parsing only: the CA opens its
//! HSM key with it, the `lanyard` CLI the physical card of a derived enrolment.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;
use zeroize::Zeroizing;

/// Why a `pkcs11:` URI was refused. Each names the attribute at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Pkcs11UriError {
    /// The text does not start with `pkcs11:`.
    #[error("a PKCS#11 URI starts with \"pkcs11:\" (RFC 7512)")]
    NotPkcs11,
    /// RFC 7512 URIs have no fragment.
    #[error("'#' is not allowed in a PKCS#11 URI; write it as %23")]
    Fragment,
    /// `;;`, a trailing `;` or `&`, or an empty query.
    #[error("empty attribute in the {part} of the PKCS#11 URI (stray ';', '&' or '?')")]
    EmptyAttribute {
        /// "path" or "query".
        part: &'static str,
    },
    /// An attribute without `=`.
    #[error("attribute {attribute:?} in the PKCS#11 URI has no '=' and value")]
    MissingValue {
        /// The attribute as written.
        attribute: String,
    },
    /// An attribute name with characters RFC 7512 does not allow.
    #[error("{name:?} is not a valid PKCS#11 URI attribute name")]
    BadAttributeName {
        /// The name as written.
        name: String,
    },
    /// The same attribute twice.
    #[error("attribute {attribute} appears more than once in the PKCS#11 URI")]
    Duplicate {
        /// The attribute.
        attribute: String,
    },
    /// `%` not followed by two hex digits.
    #[error("attribute {attribute}: '%' must be followed by two hex digits (percent-encoding)")]
    BadEscape {
        /// The attribute.
        attribute: String,
    },
    /// A character that must be percent-encoded appears as is.
    #[error("attribute {attribute}: the character {character:?} must be percent-encoded (e.g. a space as %20)")]
    MustBeEncoded {
        /// The attribute.
        attribute: String,
        /// The character.
        character: char,
    },
    /// A text attribute whose decoded bytes are not UTF-8.
    #[error("attribute {attribute}: the percent-decoded value is not UTF-8 text")]
    NotUtf8 {
        /// The attribute.
        attribute: String,
    },
    /// A value out of its attribute's syntax.
    #[error("attribute {attribute}: {reason}")]
    BadValue {
        /// The attribute.
        attribute: &'static str,
        /// What the value must look like.
        reason: &'static str,
    },
    /// Both `pin-source` and `pin-value`.
    #[error("give either pin-source or pin-value in a PKCS#11 URI, not both")]
    PinSourceAndValue,
    /// A `pin-source` that is not a file.
    #[error("pin-source must be file:/ABSOLUTE/PATH (a file holding the PIN)")]
    UnsupportedPinSource,
}

/// The kind of object `type=` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// `type=public`
    Public,
    /// `type=private`
    Private,
    /// `type=cert`
    Cert,
    /// `type=secret-key`
    SecretKey,
    /// `type=data`
    Data,
}

/// Where the token's PIN comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// `pin-source=file:PATH`: the first line of the file.
    File(PathBuf),
    /// `pin-value=…`: the PIN itself, visible to anyone who sees the URI.
    Value(Zeroizing<String>),
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PinSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// A parsed `pkcs11:` URI. Text values are percent-decoded; absent
/// attributes match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label (`token=`).
    pub token: Option<String>,
    /// Token manufacturer (`manufacturer=`).
    pub manufacturer: Option<String>,
    /// Token serial number (`serial=`).
    pub serial: Option<String>,
    /// Token model (`model=`).
    pub model: Option<String>,
    /// Slot id (`slot-id=`).
    pub slot_id: Option<u64>,
    /// Slot description (`slot-description=`).
    pub slot_description: Option<String>,
    /// Slot manufacturer (`slot-manufacturer=`).
    pub slot_manufacturer: Option<String>,
    /// Module manufacturer (`library-manufacturer=`).
    pub library_manufacturer: Option<String>,
    /// Module description (`library-description=`).
    pub library_description: Option<String>,
    /// Module version (`library-version=M` or `M.m`).
    pub library_version: Option<(u8, u8)>,
    /// Object label (`object=`).
    pub object: Option<String>,
    /// Object id (`id=`, percent-encoded bytes).
    pub id: Option<Vec<u8>>,
    /// Object kind (`type=`).
    pub object_type: Option<ObjectType>,
    /// The module to load (`module-path=`), an absolute path.
    pub module_path: Option<PathBuf>,
    /// A module name (`module-name=`), parsed but not resolved by Lanyard.
    pub module_name: Option<String>,
    /// Where the PIN comes from (`pin-source=` or `pin-value=`).
    pub pin: Option<PinSource>,
    /// Vendor-specific attributes (RFC 7512 §2.3), which Lanyard ignores.
    pub vendor_attributes: Vec<String>,
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = Pkcs11UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pkcs11Uri::parse(s)
    }
}

/// Characters RFC 7512 allows unencoded besides ALPHA / DIGIT / "-" "." "_" "~".
const PATH_EXTRA: &str = ":[]@!$'()*+,=&";
/// The query also allows "/", "?" and "|" (and "&" separates).
const QUERY_EXTRA: &str = ":[]@!$'()*+,=/?|;";

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~".contains(c)
}

/// Percent-decodes `raw`, refusing characters that must be encoded.
fn decode(attribute: &str, raw: &str, extra: &str) -> Result<Vec<u8>, Pkcs11UriError> {
    let mut out = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Pkcs11UriError::BadEscape {
                    attribute: attribute.to_string(),
                })?;
            out.push(hex);
            i += 3;
            continue;
        }
        let c = raw[i..].chars().next().unwrap_or('\u{fffd}');
        if !(is_unreserved(c) || extra.contains(c)) {
            return Err(Pkcs11UriError::MustBeEncoded {
                attribute: attribute.to_string(),
                character: c,
            });
        }
        out.push(b);
        i += 1;
    }
    Ok(out)
}

fn text(attribute: &str, raw: &str, extra: &str) -> Result<String, Pkcs11UriError> {
    String::from_utf8(decode(attribute, raw, extra)?).map_err(|_| Pkcs11UriError::NotUtf8 {
        attribute: attribute.to_string(),
    })
}

fn set<T>(slot: &mut Option<T>, attribute: &str, value: T) -> Result<(), Pkcs11UriError> {
    if slot.is_some() {
        return Err(Pkcs11UriError::Duplicate {
            attribute: attribute.to_string(),
        });
    }
    *slot = Some(value);
    Ok(())
}

fn check_name(name: &str) -> Result<(), Pkcs11UriError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Pkcs11UriError::BadAttributeName {
            name: name.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// Splits `part` at `sep` into (name, raw value) pairs.
fn attributes<'a>(
    part: &'a str,
    sep: char,
    which: &'static str,
) -> Result<Vec<(&'a str, &'a str)>, Pkcs11UriError> {
    if part.is_empty() {
        return Ok(Vec::new());
    }
    part.split(sep)
        .map(|attr| {
            if attr.is_empty() {
                return Err(Pkcs11UriError::EmptyAttribute { part: which });
            }
            let (name, value) =
                attr.split_once('=')
                    .ok_or_else(|| Pkcs11UriError::MissingValue {
                        attribute: attr.chars().take(64).collect(),
                    })?;
            check_name(name)?;
            Ok((name, value))
        })
        .collect()
}

fn parse_version(raw: &str) -> Result<(u8, u8), Pkcs11UriError> {
    let bad = Pkcs11UriError::BadValue {
        attribute: "library-version",
        reason: "must be MAJOR or MAJOR.MINOR, each 0 to 255",
    };
    let (major, minor) = raw.split_once('.').unwrap_or((raw, "0"));
    let num = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u8>().ok()
    };
    match (num(major), num(minor)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(bad),
    }
}

impl Pkcs11Uri {
    /// Parses an RFC 7512 URI.
    pub fn parse(uri: &str) -> Result<Self, Pkcs11UriError> {
        let rest = match uri.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("pkcs11:") => &uri[7..],
            _ => return Err(Pkcs11UriError::NotPkcs11),
        };
        if rest.contains('#') {
            return Err(Pkcs11UriError::Fragment);
        }
        let (path, query) = match rest.split_once('?') {
            Some((_, "")) => return Err(Pkcs11UriError::EmptyAttribute { part: "query" }),
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut out = Pkcs11Uri::default();
        for (name, raw) in attributes(path, ';', "path")? {
            out.path_attribute(name, raw)?;
        }
        let mut pin_value = None;
        let mut pin_source = None;
        for (name, raw) in attributes(query.unwrap_or_default(), '&', "query")? {
            match name {
                "module-path" => {
                    let path = PathBuf::from(text(name, raw, QUERY_EXTRA)?);
                    if !path.is_absolute() {
                        return Err(Pkcs11UriError::BadValue {
                            attribute: "module-path",
                            reason: "must be an absolute path to the module's .so file",
                        });
                    }
                    set(&mut out.module_path, name, path)?;
                }
                "module-name" => set(&mut out.module_name, name, text(name, raw, QUERY_EXTRA)?)?,
                "pin-value" => set(
                    &mut pin_value,
                    name,
                    Zeroizing::new(text(name, raw, QUERY_EXTRA)?),
                )?,
                "pin-source" => {
                    let source = text(name, raw, QUERY_EXTRA)?;
                    set(&mut pin_source, name, pin_file(&source)?)?;
                }
                _ => out.vendor_attributes.push(name.to_string()),
            }
        }
        out.pin = match (pin_source, pin_value) {
            (Some(_), Some(_)) => return Err(Pkcs11UriError::PinSourceAndValue),
            (Some(path), None) => Some(PinSource::File(path)),
            (None, Some(value)) => Some(PinSource::Value(value)),
            (None, None) => None,
        };
        Ok(out)
    }

    fn path_attribute(&mut self, name: &str, raw: &str) -> Result<(), Pkcs11UriError> {
        let t = |raw| text(name, raw, PATH_EXTRA);
        match name {
            "token" => set(&mut self.token, name, t(raw)?),
            "manufacturer" => set(&mut self.manufacturer, name, t(raw)?),
            "serial" => set(&mut self.serial, name, t(raw)?),
            "model" => set(&mut self.model, name, t(raw)?),
            "object" => set(&mut self.object, name, t(raw)?),
            "slot-description" => set(&mut self.slot_description, name, t(raw)?),
            "slot-manufacturer" => set(&mut self.slot_manufacturer, name, t(raw)?),
            "library-manufacturer" => set(&mut self.library_manufacturer, name, t(raw)?),
            "library-description" => set(&mut self.library_description, name, t(raw)?),
            "library-version" => set(&mut self.library_version, name, parse_version(&t(raw)?)?),
            "id" => set(&mut self.id, name, decode(name, raw, PATH_EXTRA)?),
            "slot-id" => {
                let v = t(raw)?;
                let id = v
                    .parse::<u64>()
                    .ok()
                    .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(Pkcs11UriError::BadValue {
                        attribute: "slot-id",
                        reason: "must be a decimal number",
                    })?;
                set(&mut self.slot_id, name, id)
            }
            "type" => {
                let kind = match t(raw)?.as_str() {
                    "public" => ObjectType::Public,
                    "private" => ObjectType::Private,
                    "cert" => ObjectType::Cert,
                    "secret-key" => ObjectType::SecretKey,
                    "data" => ObjectType::Data,
                    _ => {
                        return Err(Pkcs11UriError::BadValue {
                            attribute: "type",
                            reason: "must be public, private, cert, secret-key or data",
                        })
                    }
                };
                set(&mut self.object_type, name, kind)
            }
            _ => {
                self.vendor_attributes.push(name.to_string());
                Ok(())
            }
        }
    }

    /// The URI without any PIN, safe for logs and messages.
    pub fn redacted(&self) -> String {
        let enc = |s: &str| encode(s.as_bytes());
        let mut path = Vec::new();
        let texts = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("model", &self.model),
            ("slot-description", &self.slot_description),
            ("slot-manufacturer", &self.slot_manufacturer),
            ("library-manufacturer", &self.library_manufacturer),
            ("library-description", &self.library_description),
            ("object", &self.object),
        ];
        for (name, value) in texts {
            if let Some(v) = value {
                path.push(format!("{name}={}", enc(v)));
            }
        }
        if let Some(id) = self.slot_id {
            path.push(format!("slot-id={id}"));
        }
        if let Some((a, b)) = self.library_version {
            path.push(format!("library-version={a}.{b}"));
        }
        if let Some(id) = &self.id {
            path.push(format!("id={}", encode_all(id)));
        }
        if let Some(kind) = self.object_type {
            let k = match kind {
                ObjectType::Public => "public",
                ObjectType::Private => "private",
                ObjectType::Cert => "cert",
                ObjectType::SecretKey => "secret-key",
                ObjectType::Data => "data",
            };
            path.push(format!("type={k}"));
        }
        let mut query = Vec::new();
        if let Some(p) = &self.module_path {
            query.push(format!(
                "module-path={}",
                encode(p.to_string_lossy().as_bytes())
            ));
        }
        if let Some(PinSource::File(p)) = &self.pin {
            query.push(format!(
                "pin-source=file:{}",
                encode(p.to_string_lossy().as_bytes())
            ));
        }
        let mut out = format!("pkcs11:{}", path.join(";"));
        if !query.is_empty() {
            out.push('?');
            out.push_str(&query.join("&"));
        }
        out
    }
}

/// `file:/abs`, `file:///abs` or a plain absolute path.
fn pin_file(source: &str) -> Result<PathBuf, Pkcs11UriError> {
    let path = if let Some(rest) = source.strip_prefix("file://") {
        rest
    } else if let Some(rest) = source.strip_prefix("file:") {
        rest
    } else if source.contains(':') {
        return Err(Pkcs11UriError::UnsupportedPinSource);
    } else {
        source
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(Pkcs11UriError::UnsupportedPinSource);
    }
    Ok(path)
}

/// Percent-encodes what RFC 7512 does not allow as is (path rules, so the
/// result is valid in both parts).
fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        let c = b as char;
        if b.is_ascii() && (is_unreserved(c) || (PATH_EXTRA.contains(c) && c != '&') || c == '/') {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn rfc_7512_examples_parse() {
        // Every example of RFC 7512 §3.3.
        assert_eq!(parse("pkcs11:"), Pkcs11Uri::default());
        let u = parse("pkcs11:object=my-pubkey;type=public");
        assert_eq!(u.object.as_deref(), Some("my-pubkey"));
        assert_eq!(u.object_type, Some(ObjectType::Public));
        let u = parse("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
        assert_eq!(u.pin, Some(PinSource::File("/etc/token".into())));
        let u = parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
             manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;\
             type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
             ?pin-source=file:/etc/token_pin",
        );
        assert_eq!(u.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(u.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(u.model.as_deref(), Some("1.0"));
        assert_eq!(u.serial.as_deref(), Some(""));
        assert_eq!(
            u.id.as_deref(),
            Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
        );
        assert_eq!(u.object_type, Some(ObjectType::Cert));
        let u = parse("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(u.module_name.as_deref(), Some("mypkcs11"));
        let u = parse("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1");
        assert_eq!(u.module_path, Some("/mnt/libmypkcs11.so.1".into()));
        let u = parse(
            "pkcs11:token=Software%20PKCS%2311%20softtoken;\
             manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin",
        );
        assert_eq!(
            u.pin,
            Some(PinSource::Value(Zeroizing::new("the-pin".into())))
        );
        let u = parse("pkcs11:slot-description=Sun%20Metaslot");
        assert_eq!(u.slot_description.as_deref(), Some("Sun Metaslot"));
        let u = parse(
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;\
             library-description=Soft%20Token%20Library;library-version=1.23",
        );
        assert_eq!(u.library_manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(u.library_description.as_deref(), Some("Soft Token Library"));
        assert_eq!(u.library_version, Some((1, 23)));
        let u = parse(
            "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;\
             id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
        );
        assert_eq!(u.token.as_deref(), Some("My token% created by Joe"));
        assert_eq!(u.library_version, Some((3, 0)));
        assert_eq!(
            u.id.as_deref(),
            Some(&[1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6][..])
        );
        let u = parse(
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;\
             object=my-certificate;type=cert",
        );
        assert_eq!(u.token.as_deref(), Some("A name with a substring %;"));
        let u = parse(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;\
             object=my-certificate;type=cert",
        );
        assert_eq!(
            u.token.as_deref(),
            Some("Name with a small A with acute: \u{e1}")
        );
        let u = parse(
            "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a\
             ?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
        );
        assert_eq!(u.vendor_attributes, ["vendor-aaa", "vendor-bbb"]);
        assert_eq!(u.pin, Some(PinSource::File("/etc/token_pin".into())));
    }

    #[test]
    fn lanyard_uris_parse() {
        let u = parse(
            "pkcs11:token=lanyard-ca;object=issuing;slot-id=7\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:///run/ca/pin",
        );
        assert_eq!(u.token.as_deref(), Some("lanyard-ca"));
        assert_eq!(u.slot_id, Some(7));
        assert_eq!(
            u.module_path,
            Some("/usr/lib/softhsm/libsofthsm2.so".into())
        );
        assert_eq!(u.pin, Some(PinSource::File("/run/ca/pin".into())));
        // Scheme is case-insensitive; plain absolute pin-source paths are files too.
        let u = parse("PKCS11:object=k?pin-source=/run/pin");
        assert_eq!(u.pin, Some(PinSource::File("/run/pin".into())));
    }

    #[test]
    fn malformed_uris_get_precise_errors() {
        use Pkcs11UriError as E;
        let err = |s: &str| Pkcs11Uri::parse(s).unwrap_err();
        assert_eq!(err("http://x"), E::NotPkcs11);
        assert_eq!(err("pkcs1"), E::NotPkcs11);
        assert_eq!(err(""), E::NotPkcs11);
        assert_eq!(err("pkcs11:object=a#b"), E::Fragment);
        assert_eq!(
            err("pkcs11:token=a;;object=b"),
            E::EmptyAttribute { part: "path" }
        );
        assert_eq!(err("pkcs11:token=a;"), E::EmptyAttribute { part: "path" });
        assert_eq!(err("pkcs11:token=a?"), E::EmptyAttribute { part: "query" });
        assert_eq!(
            err("pkcs11:token=a?module-path=/x&&pin-value=1"),
            E::EmptyAttribute { part: "query" }
        );
        assert!(matches!(err("pkcs11:token"), E::MissingValue { .. }));
        assert!(matches!(err("pkcs11:=x"), E::BadAttributeName { .. }));
        assert!(matches!(err("pkcs11:to ken=x"), E::BadAttributeName { .. }));
        assert_eq!(
            err("pkcs11:token=a;token=b"),
            E::Duplicate {
                attribute: "token".into()
            }
        );
        assert!(matches!(
            err("pkcs11:?pin-source=file:/a&pin-source=file:/b"),
            E::Duplicate { .. }
        ));
        for bad in [
            "pkcs11:id=%",
            "pkcs11:id=%1",
            "pkcs11:id=%zz",
            "pkcs11:id=%+1",
        ] {
            assert_eq!(
                err(bad),
                E::BadEscape {
                    attribute: "id".into()
                },
                "{bad}"
            );
        }
        assert_eq!(
            err("pkcs11:token=My Token"),
            E::MustBeEncoded {
                attribute: "token".into(),
                character: ' '
            }
        );
        assert_eq!(
            err("pkcs11:object=a/b"),
            E::MustBeEncoded {
                attribute: "object".into(),
                character: '/'
            }
        );
        assert!(matches!(
            err("pkcs11:token=caf\u{e9}"),
            E::MustBeEncoded { .. }
        ));
        assert_eq!(
            err("pkcs11:token=%ff%fe"),
            E::NotUtf8 {
                attribute: "token".into()
            }
        );
        assert!(matches!(
            err("pkcs11:slot-id=-1"),
            E::BadValue {
                attribute: "slot-id",
                ..
            }
        ));
        assert!(matches!(
            err("pkcs11:slot-id=+1"),
            E::BadValue {
                attribute: "slot-id",
                ..
            }
        ));
        assert!(matches!(
            err("pkcs11:slot-id=99999999999999999999999"),
            E::BadValue { .. }
        ));
        assert!(matches!(
            err("pkcs11:type=key"),
            E::BadValue {
                attribute: "type",
                ..
            }
        ));
        assert!(matches!(
            err("pkcs11:library-version=1.2.3"),
            E::BadValue { .. }
        ));
        assert!(matches!(
            err("pkcs11:library-version=256"),
            E::BadValue { .. }
        ));
        assert!(matches!(
            err("pkcs11:?module-path=libsofthsm2.so"),
            E::BadValue {
                attribute: "module-path",
                ..
            }
        ));
        assert_eq!(
            err("pkcs11:?pin-source=file:/a&pin-value=1"),
            E::PinSourceAndValue
        );
        assert_eq!(
            err("pkcs11:?pin-source=https://example/pin"),
            E::UnsupportedPinSource
        );
        assert_eq!(
            err("pkcs11:?pin-source=file:relative/pin"),
            E::UnsupportedPinSource
        );
        // Messages name the fix.
        assert!(err("pkcs11:token=My Token").to_string().contains("%20"));
    }

    #[test]
    fn redacted_form_hides_the_pin_and_round_trips() {
        let u = parse(
            "pkcs11:token=My%20CA;object=issuing;id=%01%ff;slot-id=3;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
        );
        let r = u.redacted();
        assert!(!r.contains("1234"), "{r}");
        assert!(!format!("{u:?}").contains("1234"));
        let back = parse(&r);
        assert_eq!(back.token, u.token);
        assert_eq!(back.object, u.object);
        assert_eq!(back.id, u.id);
        assert_eq!(back.slot_id, u.slot_id);
        assert_eq!(back.module_path, u.module_path);
        assert_eq!(back.pin, None);
        let with_file = parse("pkcs11:object=k?pin-source=file:/run/my%20pin");
        assert_eq!(parse(&with_file.redacted()), with_file);
    }
}
