//! ca.toml's `[derivation]` section: the derived-enrolment policy (trust
//! anchors for physical cards, allowed certificate policy OIDs, the role a
//! derived card gets, an optional CRL file, the challenge lifetime), with
//! `LANYARD_CA_DERIVATION_*` environment overrides.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CaError;

/// Default challenge lifetime in seconds.
pub const DEFAULT_CHALLENGE_LIFETIME_SECS: u32 = 300;
/// Longest challenge lifetime accepted in seconds.
pub const MAX_CHALLENGE_LIFETIME_SECS: u32 = 3600;
/// The file `init --physical-card-ca` writes the anchors to, in the CA directory.
pub const PHYSICAL_CARD_CA_FILE: &str = "physical-card-ca.pem";

/// The derivation policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivationConfig {
    /// Whether `EnrollDerived` is served at all (off by default).
    #[serde(default)]
    pub enabled: bool,
    /// PEM files of the CAs physical cards must chain to; relative paths are
    /// in the CA directory.
    #[serde(default)]
    pub trust_anchors: Vec<PathBuf>,
    /// Certificate policy OIDs (dotted); the physical certificate must carry
    /// at least one of them. anyPolicy (2.5.29.32.0) accepts any or none.
    #[serde(default)]
    pub allowed_policies: Vec<String>,
    /// The role written into every derived card (never taken from the request).
    #[serde(default)]
    pub role: String,
    /// A CRL file (DER or PEM, several CRLs allowed) of the physical-card
    /// CAs; when set, a certificate whose issuer has no current CRL in it is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_file: Option<PathBuf>,
    /// How long a challenge stays usable, in seconds.
    #[serde(default = "default_challenge_lifetime_secs")]
    pub challenge_lifetime_secs: u32,
}

fn default_challenge_lifetime_secs() -> u32 {
    DEFAULT_CHALLENGE_LIFETIME_SECS
}

impl Default for DerivationConfig {
    fn default() -> Self {
        DerivationConfig {
            enabled: false,
            trust_anchors: Vec::new(),
            allowed_policies: Vec::new(),
            role: String::new(),
            crl_file: None,
            challenge_lifetime_secs: DEFAULT_CHALLENGE_LIFETIME_SECS,
        }
    }
}

/// Whether `text` is a dotted OID (at least two arcs, digits only).
pub fn is_dotted_oid(text: &str) -> bool {
    let arcs: Vec<&str> = text.split('.').collect();
    arcs.len() >= 2
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.len() <= 20 && a.bytes().all(|b| b.is_ascii_digit()))
}

impl DerivationConfig {
    /// Overrides from `LANYARD_CA_DERIVATION_ENABLED` (true/false),
    /// `LANYARD_CA_DERIVATION_TRUST_ANCHORS` (paths separated by ':'),
    /// `LANYARD_CA_DERIVATION_ALLOWED_POLICIES` (OIDs separated by ','),
    /// `LANYARD_CA_DERIVATION_ROLE`, `LANYARD_CA_DERIVATION_CRL_FILE` (empty:
    /// none) and `LANYARD_CA_DERIVATION_CHALLENGE_LIFETIME_SECS`.
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), CaError> {
        let bad = |name: &str, reason: String| CaError::Config {
            path: name.into(),
            reason,
        };
        if let Some(v) = get("LANYARD_CA_DERIVATION_ENABLED") {
            self.enabled = match v.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(bad(
                        "LANYARD_CA_DERIVATION_ENABLED",
                        format!("{other:?} is not true or false"),
                    ))
                }
            };
        }
        if let Some(v) = get("LANYARD_CA_DERIVATION_TRUST_ANCHORS") {
            self.trust_anchors = v
                .split(':')
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(v) = get("LANYARD_CA_DERIVATION_ALLOWED_POLICIES") {
            self.allowed_policies = v
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect();
        }
        if let Some(v) = get("LANYARD_CA_DERIVATION_ROLE") {
            self.role = v;
        }
        if let Some(v) = get("LANYARD_CA_DERIVATION_CRL_FILE") {
            self.crl_file = (!v.trim().is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = get("LANYARD_CA_DERIVATION_CHALLENGE_LIFETIME_SECS") {
            self.challenge_lifetime_secs = v.trim().parse().map_err(|_| {
                bad(
                    "LANYARD_CA_DERIVATION_CHALLENGE_LIFETIME_SECS",
                    format!("{v:?} is not a number"),
                )
            })?;
        }
        Ok(())
    }

    /// Checks the values; when enabled, anchors, policies and a role are required.
    pub fn check(&self) -> Result<(), String> {
        if !(10..=MAX_CHALLENGE_LIFETIME_SECS).contains(&self.challenge_lifetime_secs) {
            return Err(format!(
                "derivation.challenge_lifetime_secs must be 10 to {MAX_CHALLENGE_LIFETIME_SECS}, not {}",
                self.challenge_lifetime_secs
            ));
        }
        if let Some(bad) = self.allowed_policies.iter().find(|p| !is_dotted_oid(p)) {
            return Err(format!(
                "derivation.allowed_policies: {bad:?} is not a dotted OID such as 2.16.840.1.101.3.2.1.3.13"
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.trust_anchors.is_empty() {
            return Err("derivation is enabled but derivation.trust_anchors names no PEM file of a physical-card CA".into());
        }
        if self.allowed_policies.is_empty() {
            return Err("derivation is enabled but derivation.allowed_policies is empty; list the certificate policy OIDs of the physical cards to accept".into());
        }
        if self.role.trim().is_empty() {
            return Err(
                "derivation is enabled but derivation.role (the role of derived cards) is empty"
                    .into(),
            );
        }
        Ok(())
    }

    /// `path` resolved against the CA directory `dir` when relative.
    pub fn resolve(dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        }
    }

    /// The section as `init` writes it into ca.toml, with comments.
    pub fn to_toml(&self) -> String {
        let strings = |v: &[String]| {
            toml::Value::Array(v.iter().cloned().map(toml::Value::String).collect()).to_string()
        };
        let paths: Vec<String> = self
            .trust_anchors
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let crl = match &self.crl_file {
            Some(p) => format!(
                "crl_file = {}\n",
                toml::Value::String(p.display().to_string())
            ),
            None => "# crl_file = \"physical-card.crl\"\n".to_string(),
        };
        format!(
            "\n# Derived enrolment: a clinician proves possession of a physical smartcard\n\
             # (its certificate chains to a trust anchor below, is valid, not on the CRL\n\
             # file and carries an allowed policy) and gets a virtual card for the same\n\
             # user ID and name, with the role below.\n\
             [derivation]\n\
             enabled = {}\n\
             # PEM files of the physical-card CAs (relative paths: in the CA directory).\n\
             trust_anchors = {}\n\
             # Certificate policy OIDs accepted on the physical card's certificate\n\
             # (\"2.5.29.32.0\", anyPolicy: any or none).\n\
             allowed_policies = {}\n\
             # The role of every derived card.\n\
             role = {}\n\
             # A CRL file of the physical-card CAs (DER or PEM); when set it must hold a current CRL.\n\
             {crl}\
             # How long a challenge stays usable, in seconds (10 to {MAX_CHALLENGE_LIFETIME_SECS}).\n\
             challenge_lifetime_secs = {}\n",
            self.enabled,
            strings(&paths),
            strings(&self.allowed_policies),
            toml::Value::String(self.role.clone()),
            self.challenge_lifetime_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> DerivationConfig {
        DerivationConfig {
            enabled: true,
            trust_anchors: vec![PHYSICAL_CARD_CA_FILE.into()],
            allowed_policies: vec!["2.16.840.1.101.3.2.1.3.13".into()],
            role: "R8000 Clinical Practitioner".into(),
            crl_file: Some("/etc/lanyard/physical.crl".into()),
            challenge_lifetime_secs: 120,
        }
    }

    #[test]
    fn off_by_default_and_enabled_needs_the_policy() {
        let off = DerivationConfig::default();
        assert!(!off.enabled);
        assert!(off.check().is_ok());
        assert!(enabled().check().is_ok());
        let mut c = enabled();
        c.trust_anchors.clear();
        assert!(c.check().unwrap_err().contains("trust_anchors"));
        let mut c = enabled();
        c.allowed_policies.clear();
        assert!(c.check().unwrap_err().contains("allowed_policies"));
        let mut c = enabled();
        c.role = " ".into();
        assert!(c.check().unwrap_err().contains("role"));
        let mut c = enabled();
        c.allowed_policies = vec!["not.an.oid".into()];
        assert!(c.check().unwrap_err().contains("dotted OID"));
        let mut c = enabled();
        c.challenge_lifetime_secs = 5;
        assert!(c.check().unwrap_err().contains("challenge_lifetime_secs"));
    }

    #[test]
    fn environment_overrides() {
        let mut c = DerivationConfig::default();
        let env = |k: &str| match k {
            "LANYARD_CA_DERIVATION_ENABLED" => Some("true".to_string()),
            "LANYARD_CA_DERIVATION_TRUST_ANCHORS" => Some("/a.pem:/b.pem".to_string()),
            "LANYARD_CA_DERIVATION_ALLOWED_POLICIES" => Some("1.2.3, 1.2.4".to_string()),
            "LANYARD_CA_DERIVATION_ROLE" => Some("R1".to_string()),
            "LANYARD_CA_DERIVATION_CRL_FILE" => Some("/c.crl".to_string()),
            "LANYARD_CA_DERIVATION_CHALLENGE_LIFETIME_SECS" => Some("60".to_string()),
            _ => None,
        };
        c.apply_env(&env).unwrap();
        assert!(c.enabled);
        assert_eq!(
            c.trust_anchors,
            vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]
        );
        assert_eq!(c.allowed_policies, vec!["1.2.3", "1.2.4"]);
        assert_eq!(c.role, "R1");
        assert_eq!(c.crl_file, Some(PathBuf::from("/c.crl")));
        assert_eq!(c.challenge_lifetime_secs, 60);
        let err = c
            .apply_env(&|k: &str| (k == "LANYARD_CA_DERIVATION_ENABLED").then(|| "yes".into()))
            .unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn relative_paths_are_in_the_ca_directory() {
        let dir = Path::new("/var/lib/lanyard-ca");
        assert_eq!(
            DerivationConfig::resolve(dir, Path::new("p.pem")),
            dir.join("p.pem")
        );
        assert_eq!(
            DerivationConfig::resolve(dir, Path::new("/etc/p.pem")),
            PathBuf::from("/etc/p.pem")
        );
    }
}
