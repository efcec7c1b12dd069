//! ca.toml, the CA's configuration, as one typed struct: written by `init`,
//! read by `serve` and `admin`. Environment variables `LANYARD_CA_*` override
//! single values (see [`CaConfig::apply_env`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ca_dir::{write_atomic, PUBLIC_MODE};
use crate::error::CaError;

/// Default card certificate lifetime in days.
pub const DEFAULT_CERT_LIFETIME_DAYS: u32 = 30;
/// Default enrolment code validity in hours.
pub const DEFAULT_CODE_VALIDITY_HOURS: u32 = 72;
/// Longest card certificate lifetime accepted in days.
pub const MAX_CERT_LIFETIME_DAYS: u32 = 825;
/// Longest enrolment code validity accepted in hours (30 days).
pub const MAX_CODE_VALIDITY_HOURS: u32 = 720;

/// The CA's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Organisation name, the O= of every certificate.
    pub organisation: String,
    /// Lifetime of card certificates in days.
    #[serde(default = "default_cert_lifetime_days")]
    pub cert_lifetime_days: u32,
    /// How long an enrolment code stays valid, in hours.
    #[serde(default = "default_code_validity_hours")]
    pub enrolment_code_validity_hours: u32,
    /// Limits on failed enrolment attempts per client address.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

/// Failed-attempt limits: `max_failures` within `window_secs` blocks an address
/// until the oldest failure leaves the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Failed attempts allowed per address within the window.
    pub max_failures: u32,
    /// Window length in seconds.
    pub window_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_failures: 5,
            window_secs: 60,
        }
    }
}

fn default_cert_lifetime_days() -> u32 {
    DEFAULT_CERT_LIFETIME_DAYS
}
fn default_code_validity_hours() -> u32 {
    DEFAULT_CODE_VALIDITY_HOURS
}

impl CaConfig {
    /// Defaults for a new CA of `organisation`.
    pub fn new(organisation: impl Into<String>) -> Self {
        CaConfig {
            organisation: organisation.into(),
            cert_lifetime_days: DEFAULT_CERT_LIFETIME_DAYS,
            enrolment_code_validity_hours: DEFAULT_CODE_VALIDITY_HOURS,
            rate_limit: RateLimitConfig::default(),
        }
    }

    /// Reads and checks `path`, then applies environment overrides.
    pub fn load(path: &Path) -> Result<Self, CaError> {
        let text = std::fs::read_to_string(path).map_err(|e| CaError::io("read", path, e))?;
        let mut cfg: CaConfig = toml::from_str(&text).map_err(|e| CaError::Config {
            path: path.into(),
            reason: e.message().to_string(),
        })?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.check().map_err(|reason| CaError::Config {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Overrides from `LANYARD_CA_CERT_LIFETIME_DAYS`, `LANYARD_CA_CODE_VALIDITY_HOURS`,
    /// `LANYARD_CA_RATE_LIMIT_MAX_FAILURES` and `LANYARD_CA_RATE_LIMIT_WINDOW_SECS`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), CaError> {
        fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, CaError> {
            v.trim().parse().map_err(|_| CaError::Config {
                path: name.into(),
                reason: format!("{v:?} is not a number"),
            })
        }
        if let Some(v) = get("LANYARD_CA_CERT_LIFETIME_DAYS") {
            self.cert_lifetime_days = parse("LANYARD_CA_CERT_LIFETIME_DAYS", &v)?;
        }
        if let Some(v) = get("LANYARD_CA_CODE_VALIDITY_HOURS") {
            self.enrolment_code_validity_hours = parse("LANYARD_CA_CODE_VALIDITY_HOURS", &v)?;
        }
        if let Some(v) = get("LANYARD_CA_RATE_LIMIT_MAX_FAILURES") {
            self.rate_limit.max_failures = parse("LANYARD_CA_RATE_LIMIT_MAX_FAILURES", &v)?;
        }
        if let Some(v) = get("LANYARD_CA_RATE_LIMIT_WINDOW_SECS") {
            self.rate_limit.window_secs = parse("LANYARD_CA_RATE_LIMIT_WINDOW_SECS", &v)?;
        }
        Ok(())
    }

    /// Checks every value is in range; the error says which and why.
    pub fn check(&self) -> Result<(), String> {
        if self.organisation.trim().is_empty() {
            return Err("organisation must not be empty".into());
        }
        if !(1..=MAX_CERT_LIFETIME_DAYS).contains(&self.cert_lifetime_days) {
            return Err(format!(
                "cert_lifetime_days must be 1 to {MAX_CERT_LIFETIME_DAYS}, not {}",
                self.cert_lifetime_days
            ));
        }
        if !(1..=MAX_CODE_VALIDITY_HOURS).contains(&self.enrolment_code_validity_hours) {
            return Err(format!(
                "enrolment_code_validity_hours must be 1 to {MAX_CODE_VALIDITY_HOURS}, not {}",
                self.enrolment_code_validity_hours
            ));
        }
        if self.rate_limit.max_failures == 0 {
            return Err("rate_limit.max_failures must be at least 1".into());
        }
        if !(1..=86_400).contains(&self.rate_limit.window_secs) {
            return Err("rate_limit.window_secs must be 1 to 86400".into());
        }
        Ok(())
    }

    /// The file as `init` writes it: every setting, with a comment.
    pub fn to_toml(&self) -> String {
        let org = toml::Value::String(self.organisation.clone());
        format!(
            "# Lanyard CA configuration (written by `lanyard-ca init`).\n\
             # Environment variables LANYARD_CA_CERT_LIFETIME_DAYS, LANYARD_CA_CODE_VALIDITY_HOURS,\n\
             # LANYARD_CA_RATE_LIMIT_MAX_FAILURES and LANYARD_CA_RATE_LIMIT_WINDOW_SECS override them.\n\
             \n\
             # The O= of every certificate this CA issues.\n\
             organisation = {org}\n\
             \n\
             # Lifetime of card certificates, in days (1 to {MAX_CERT_LIFETIME_DAYS}).\n\
             cert_lifetime_days = {}\n\
             \n\
             # How long an enrolment code from `admin issue-card` stays valid, in hours (1 to {MAX_CODE_VALIDITY_HOURS}).\n\
             enrolment_code_validity_hours = {}\n\
             \n\
             # Failed enrolment attempts allowed per client address within the window.\n\
             [rate_limit]\n\
             max_failures = {}\n\
             window_secs = {}\n",
            self.cert_lifetime_days,
            self.enrolment_code_validity_hours,
            self.rate_limit.max_failures,
            self.rate_limit.window_secs,
        )
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), CaError> {
        write_atomic(path, self.to_toml().as_bytes(), PUBLIC_MODE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_reads_back() {
        let cfg = CaConfig::new("St \"Mary's\" Trust");
        let back: CaConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
        assert!(back.check().is_ok());
    }

    #[test]
    fn defaults_fill_missing_values() {
        let cfg: CaConfig = toml::from_str("organisation = \"X\"").unwrap();
        assert_eq!(cfg.cert_lifetime_days, 30);
        assert_eq!(cfg.enrolment_code_validity_hours, 72);
        assert_eq!(cfg.rate_limit, RateLimitConfig::default());
    }

    #[test]
    fn env_overrides_and_range_checks() {
        let mut cfg = CaConfig::new("X");
        cfg.apply_env(|k| (k == "LANYARD_CA_CERT_LIFETIME_DAYS").then(|| "7".into()))
            .unwrap();
        assert_eq!(cfg.cert_lifetime_days, 7);
        assert!(cfg
            .apply_env(|k| (k == "LANYARD_CA_CODE_VALIDITY_HOURS").then(|| "x".into()))
            .is_err());
        cfg.cert_lifetime_days = 0;
        assert!(cfg.check().unwrap_err().contains("cert_lifetime_days"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<CaConfig>("organisation = \"X\"\ntypo = 1").is_err());
    }
}
