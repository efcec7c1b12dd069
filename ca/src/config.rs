//! ca.toml, the CA's configuration, as one typed struct: written by `init`,
//! read by `serve` and `admin`. Environment variables `LANYARD_CA_*` override
//! single values (see [`CaConfig::apply_env`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ca_dir::{write_atomic, PUBLIC_MODE};
use crate::derive::config::DerivationConfig;
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
    /// Lifetime of card certificates in seconds; when set it overrides
    /// `cert_lifetime_days` (short lifetimes exercise renewal in tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_lifetime_secs: Option<u64>,
    /// Where the issuing CA's private key is: `None` for the issuing.key file,
    /// or an RFC 7512 `pkcs11:` URI for a key held in an HSM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuing_key: Option<String>,
    /// The database: `None` for ca.db (SQLite) in the CA directory, or a
    /// `postgres://` URL shared by every CA replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The URL put in every certificate's CRL Distribution Points; `None`
    /// derives `http://ADDR/issuing.crl` from `serve --crl-listen ADDR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_url: Option<String>,
    /// The CRL is re-issued at least this often (and on every revocation).
    #[serde(default = "default_crl_interval_secs")]
    pub crl_interval_secs: u64,
    /// Certificates issued at once (enrol, renew, reset) before the CA
    /// answers UNAVAILABLE with a retry hint.
    #[serde(default = "default_max_concurrent_issuance")]
    pub max_concurrent_issuance: u32,
    /// The retry hint, in seconds, sent with an overload answer.
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u32,
    /// How long a PIN reset code stays valid, in hours.
    #[serde(default = "default_reset_code_validity_hours")]
    pub reset_code_validity_hours: u32,
    /// Wrong reset codes allowed for a card before its keys must be destroyed.
    #[serde(default = "default_reset_code_tries")]
    pub reset_code_tries: u32,
    /// Lifetime of IT-desk operator certificates, in days.
    #[serde(default = "default_operator_cert_lifetime_days")]
    pub operator_cert_lifetime_days: u32,
    /// Admin actions that take effect only once a second operator approves
    /// them: any of "add-operator", "reset-pin".
    #[serde(default)]
    pub require_second_operator: Vec<String>,
    /// Derived enrolment from a physical smartcard (`[derivation]`, off by default).
    #[serde(default)]
    pub derivation: DerivationConfig,
}

/// Actions that `require_second_operator` may name.
pub const DUAL_CONTROL_ACTIONS: [&str; 2] = ["add-operator", "reset-pin"];
/// Default CRL re-issue interval in seconds.
pub const DEFAULT_CRL_INTERVAL_SECS: u64 = 3600;
/// Default limit on concurrent issuance.
pub const DEFAULT_MAX_CONCURRENT_ISSUANCE: u32 = 32;
/// Default retry hint in seconds.
pub const DEFAULT_RETRY_AFTER_SECS: u32 = 5;
/// Default reset code validity in hours.
pub const DEFAULT_RESET_CODE_VALIDITY_HOURS: u32 = 24;
/// Default wrong reset codes allowed.
pub const DEFAULT_RESET_CODE_TRIES: u32 = 3;
/// Default operator certificate lifetime in days.
pub const DEFAULT_OPERATOR_CERT_LIFETIME_DAYS: u32 = 365;

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
fn default_crl_interval_secs() -> u64 {
    DEFAULT_CRL_INTERVAL_SECS
}
fn default_max_concurrent_issuance() -> u32 {
    DEFAULT_MAX_CONCURRENT_ISSUANCE
}
fn default_retry_after_secs() -> u32 {
    DEFAULT_RETRY_AFTER_SECS
}
fn default_reset_code_validity_hours() -> u32 {
    DEFAULT_RESET_CODE_VALIDITY_HOURS
}
fn default_reset_code_tries() -> u32 {
    DEFAULT_RESET_CODE_TRIES
}
fn default_operator_cert_lifetime_days() -> u32 {
    DEFAULT_OPERATOR_CERT_LIFETIME_DAYS
}

impl CaConfig {
    /// Defaults for a new CA of `organisation`.
    pub fn new(organisation: impl Into<String>) -> Self {
        CaConfig {
            organisation: organisation.into(),
            cert_lifetime_days: DEFAULT_CERT_LIFETIME_DAYS,
            enrolment_code_validity_hours: DEFAULT_CODE_VALIDITY_HOURS,
            rate_limit: RateLimitConfig::default(),
            cert_lifetime_secs: None,
            issuing_key: None,
            database: None,
            crl_url: None,
            crl_interval_secs: DEFAULT_CRL_INTERVAL_SECS,
            max_concurrent_issuance: DEFAULT_MAX_CONCURRENT_ISSUANCE,
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            reset_code_validity_hours: DEFAULT_RESET_CODE_VALIDITY_HOURS,
            reset_code_tries: DEFAULT_RESET_CODE_TRIES,
            operator_cert_lifetime_days: DEFAULT_OPERATOR_CERT_LIFETIME_DAYS,
            require_second_operator: Vec::new(),
            derivation: DerivationConfig::default(),
        }
    }

    /// The lifetime given to new card certificates.
    pub fn cert_lifetime(&self) -> time::Duration {
        match self.cert_lifetime_secs {
            Some(secs) => time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
            None => time::Duration::days(i64::from(self.cert_lifetime_days)),
        }
    }

    /// Whether `action` ("add-operator", "reset-pin") needs a second operator.
    pub fn needs_second_operator(&self, action: &str) -> bool {
        self.require_second_operator.iter().any(|a| a == action)
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

    /// Overrides from `LANYARD_CA_CERT_LIFETIME_DAYS`, `LANYARD_CA_CERT_LIFETIME_SECS`,
    /// `LANYARD_CA_CODE_VALIDITY_HOURS`, `LANYARD_CA_RATE_LIMIT_MAX_FAILURES`,
    /// `LANYARD_CA_RATE_LIMIT_WINDOW_SECS`, `LANYARD_CA_CRL_INTERVAL_SECS`,
    /// `LANYARD_CA_MAX_CONCURRENT_ISSUANCE`, `LANYARD_CA_DATABASE` and the
    /// `LANYARD_CA_DERIVATION_*` ones (see [`DerivationConfig::apply_env`]).
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
        if let Some(v) = get("LANYARD_CA_CERT_LIFETIME_SECS") {
            self.cert_lifetime_secs = Some(parse("LANYARD_CA_CERT_LIFETIME_SECS", &v)?);
        }
        if let Some(v) = get("LANYARD_CA_CRL_INTERVAL_SECS") {
            self.crl_interval_secs = parse("LANYARD_CA_CRL_INTERVAL_SECS", &v)?;
        }
        if let Some(v) = get("LANYARD_CA_MAX_CONCURRENT_ISSUANCE") {
            self.max_concurrent_issuance = parse("LANYARD_CA_MAX_CONCURRENT_ISSUANCE", &v)?;
        }
        if let Some(v) = get("LANYARD_CA_DATABASE") {
            self.database = Some(v);
        }
        self.derivation.apply_env(&get)?;
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
        if let Some(secs) = self.cert_lifetime_secs {
            let max = u64::from(MAX_CERT_LIFETIME_DAYS) * 86_400;
            if !(10..=max).contains(&secs) {
                return Err(format!(
                    "cert_lifetime_secs must be 10 to {max}, not {secs}"
                ));
            }
        }
        if !(10..=7 * 86_400).contains(&self.crl_interval_secs) {
            return Err("crl_interval_secs must be 10 to 604800".into());
        }
        if self.max_concurrent_issuance == 0 {
            return Err("max_concurrent_issuance must be at least 1".into());
        }
        if !(1..=3600).contains(&self.retry_after_secs) {
            return Err("retry_after_secs must be 1 to 3600".into());
        }
        if !(1..=MAX_CODE_VALIDITY_HOURS).contains(&self.reset_code_validity_hours) {
            return Err(format!(
                "reset_code_validity_hours must be 1 to {MAX_CODE_VALIDITY_HOURS}"
            ));
        }
        if !(1..=10).contains(&self.reset_code_tries) {
            return Err("reset_code_tries must be 1 to 10".into());
        }
        if !(1..=MAX_CERT_LIFETIME_DAYS).contains(&self.operator_cert_lifetime_days) {
            return Err(format!(
                "operator_cert_lifetime_days must be 1 to {MAX_CERT_LIFETIME_DAYS}"
            ));
        }
        if let Some(bad) = self
            .require_second_operator
            .iter()
            .find(|a| !DUAL_CONTROL_ACTIONS.contains(&a.as_str()))
        {
            return Err(format!(
                "require_second_operator: {bad:?} is not one of {DUAL_CONTROL_ACTIONS:?}"
            ));
        }
        if let Some(db) = &self.database {
            if !db.starts_with("postgres://") && !db.starts_with("postgresql://") {
                return Err("database must be a postgres:// URL (leave it out for SQLite)".into());
            }
        }
        if let Some(key) = &self.issuing_key {
            if !key.starts_with("pkcs11:") {
                return Err(
                    "issuing_key must be a pkcs11: URI (leave it out for issuing.key)".into(),
                );
            }
        }
        self.derivation.check()?;
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
             # The CRL is re-issued at least this often, in seconds (and on every revocation).\n\
             crl_interval_secs = {}\n\
             \n\
             # Certificates issued at once before the CA answers UNAVAILABLE with retry-after.\n\
             max_concurrent_issuance = {}\n\
             retry_after_secs = {}\n\
             \n\
             # PIN reset codes from `admin reset-pin`: validity in hours and wrong codes allowed.\n\
             reset_code_validity_hours = {}\n\
             reset_code_tries = {}\n\
             \n\
             # Lifetime of IT-desk operator certificates, in days.\n\
             operator_cert_lifetime_days = {}\n\
             \n\
             # Actions that need a second operator's approval: \"add-operator\", \"reset-pin\".\n\
             require_second_operator = {}\n\
             {}\
             \n\
             # Failed enrolment attempts allowed per client address within the window.\n\
             [rate_limit]\n\
             max_failures = {}\n\
             window_secs = {}\n\
             {}",
            self.cert_lifetime_days,
            self.enrolment_code_validity_hours,
            self.crl_interval_secs,
            self.max_concurrent_issuance,
            self.retry_after_secs,
            self.reset_code_validity_hours,
            self.reset_code_tries,
            self.operator_cert_lifetime_days,
            toml::Value::Array(
                self.require_second_operator
                    .iter()
                    .map(|a| toml::Value::String(a.clone()))
                    .collect()
            ),
            self.optional_lines(),
            self.rate_limit.max_failures,
            self.rate_limit.window_secs,
            self.derivation.to_toml(),
        )
    }

    /// The optional settings that are set, one `key = value` line each.
    fn optional_lines(&self) -> String {
        let mut out = String::new();
        let lines = [
            (
                "cert_lifetime_secs",
                self.cert_lifetime_secs
                    .map(|v| toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))),
            ),
            (
                "issuing_key",
                self.issuing_key.clone().map(toml::Value::String),
            ),
            ("database", self.database.clone().map(toml::Value::String)),
            ("crl_url", self.crl_url.clone().map(toml::Value::String)),
        ];
        for (key, value) in lines {
            if let Some(value) = value {
                out.push_str(&format!("\n{key} = {value}\n"));
            }
        }
        out
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
    fn optional_settings_round_trip_and_are_checked() {
        let mut cfg = CaConfig::new("X");
        cfg.cert_lifetime_secs = Some(60);
        cfg.issuing_key = Some("pkcs11:token=ca;object=issuing".into());
        cfg.database = Some("postgres://lanyard@localhost/lanyard".into());
        cfg.crl_url = Some("http://127.0.0.1:8080/issuing.crl".into());
        cfg.require_second_operator = vec!["reset-pin".into()];
        let back: CaConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
        assert!(back.check().is_ok());
        assert_eq!(back.cert_lifetime(), time::Duration::seconds(60));
        assert!(back.needs_second_operator("reset-pin"));
        assert!(!back.needs_second_operator("add-operator"));
        cfg.require_second_operator = vec!["revoke".into()];
        assert!(cfg.check().unwrap_err().contains("require_second_operator"));
        cfg.require_second_operator.clear();
        cfg.database = Some("mysql://x".into());
        assert!(cfg.check().unwrap_err().contains("postgres://"));
    }

    #[test]
    fn the_derivation_section_round_trips() {
        let mut cfg = CaConfig::new("X");
        cfg.derivation.enabled = true;
        cfg.derivation.trust_anchors = vec!["physical-card-ca.pem".into()];
        cfg.derivation.allowed_policies = vec!["1.2.826.0.1.1".into()];
        cfg.derivation.role = "R8000 Clinical Practitioner".into();
        let back: CaConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
        assert!(back.check().is_ok());
        cfg.derivation.role.clear();
        assert!(cfg.check().unwrap_err().contains("derivation.role"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<CaConfig>("organisation = \"X\"\ntypo = 1").is_err());
    }
}
