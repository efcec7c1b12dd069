//! The URL written into a certificate's CRL Distribution Points: checked once,
//! when the CA loads its configuration, so a bad value is refused before any
//! certificate carries it.

use std::fmt;

use crate::CertsError;

/// Longest URL accepted (a generous bound; real CRL URLs are short).
const MAX_URL_LEN: usize = 2048;

/// An `http://` or `https://` URL where relying parties fetch the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlUrl(String);

impl CrlUrl {
    /// Checks `url`: http or https, a host, printable ASCII without spaces.
    pub fn parse(url: &str) -> Result<Self, CertsError> {
        let refuse = |reason: &'static str| {
            Err(CertsError::InvalidCrlUrl {
                url: url.chars().take(200).collect(),
                reason,
            })
        };
        if url.len() > MAX_URL_LEN {
            return refuse("it is longer than 2048 characters");
        }
        // IA5String in the certificate, and no room for ambiguity in a URL.
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return refuse("it must be printable ASCII without spaces");
        }
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
            _ => return refuse("it must start with http:// or https://"),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return refuse("it names no host");
        }
        Ok(CrlUrl(url.to_string()))
    }

    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CrlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for CrlUrl {
    type Err = CertsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CrlUrl::parse(s)
    }
}

/// rcgen's extension value for an optional URL (empty when there is none).
pub(crate) fn distribution_points(url: Option<&CrlUrl>) -> Vec<rcgen::CrlDistributionPoint> {
    url.map(|u| rcgen::CrlDistributionPoint {
        uris: vec![u.0.clone()],
    })
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_urls() {
        for ok in [
            "http://127.0.0.1:8080/issuing.crl",
            "https://pki.example.nhs.uk/lanyard/issuing.crl",
            "HTTP://[::1]:80/c.crl",
            "http://crl.local",
        ] {
            assert_eq!(CrlUrl::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_what_cannot_be_fetched_or_encoded() {
        for (bad, why) in [
            ("", "http:// or https://"),
            ("ldap://x/crl", "http:// or https://"),
            ("127.0.0.1:8080/issuing.crl", "http:// or https://"),
            ("http:///issuing.crl", "no host"),
            ("http://:80/issuing.crl", "no host"),
            ("http://host/a crl", "printable ASCII"),
            ("http://hôst/crl", "printable ASCII"),
            ("http://host/\ncrl", "printable ASCII"),
        ] {
            let err = CrlUrl::parse(bad).unwrap_err();
            assert!(
                matches!(err, CertsError::InvalidCrlUrl { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        let long = format!("http://h/{}", "a".repeat(2100));
        assert!(CrlUrl::parse(&long).is_err());
    }
}
