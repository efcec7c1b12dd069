//! RFC 7512 `pkcs11:` URIs as clients print them (p11tool, p11-kit, NSS's
//! modutil), parsed into percent-decoded attributes so that tests compare values,
//! not one tool's choice of which bytes to escape.

/// A parsed `pkcs11:` URI: the path attributes in order, values decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    attrs: Vec<(String, Vec<u8>)>,
}

impl Pkcs11Uri {
    /// Parses `pkcs11:name=value;name=value…` (a `?query` part is ignored).
    pub fn parse(text: &str) -> Result<Pkcs11Uri, String> {
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| format!("not a pkcs11: URI: {text:?}"))?;
        let path = rest.split('?').next().unwrap_or_default();
        let mut attrs = Vec::new();
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("attribute without '=' in {text:?}: {part:?}"))?;
            attrs.push((name.to_string(), percent_decode(value)?));
        }
        Ok(Pkcs11Uri { attrs })
    }

    /// The decoded value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The decoded value of attribute `name` as UTF-8 text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

fn percent_decode(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {value:?}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The `URL:` lines that `p11tool --list-all`/`--list-tokens` print, parsed.
pub fn p11tool_urls(text: &str) -> Vec<Pkcs11Uri> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("URL:"))
        .map(|u| Pkcs11Uri::parse(u.trim()).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Hex as `pkcs11-tool` prints a CKA_ID ("a1b2…") → bytes.
pub fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .unwrap_or_else(|| panic!("not hex: {hex:?}"))
        })
        .collect()
}

#[test]
fn parses_and_decodes_uri_attributes() {
    let uri = Pkcs11Uri::parse(
        "pkcs11:model=Virtual%20card;token=Dr%20Ada;id=%27%EB%4c;type=cert?pin-value=1",
    )
    .unwrap();
    assert_eq!(uri.text("model"), Some("Virtual card"));
    assert_eq!(uri.text("token"), Some("Dr Ada"));
    assert_eq!(uri.get("id"), Some(&[0x27, 0xeb, 0x4c][..]));
    assert_eq!(uri.text("type"), Some("cert"));
    assert_eq!(uri.get("pin-value"), None);
    assert!(Pkcs11Uri::parse("pkcs11:id=%2").is_err());
    assert!(Pkcs11Uri::parse("file:x").is_err());
    assert_eq!(hex_bytes("27eb4c"), vec![0x27, 0xeb, 0x4c]);
}
