//! The daemon's configuration: one typed struct loaded from
//! `lanyardd.toml`. A missing file means the defaults; a malformed one is an error.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Everything an operator can tune, with the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Number of fixed slots (tokens) the module exposes.
    pub slots: u32,
    /// Shortest PIN accepted; never below 6.
    pub pin_min_len: usize,
    /// Longest PIN accepted.
    pub pin_max_len: usize,
    /// Consecutive wrong PINs that lock a card.
    pub max_pin_failures: u32,
    /// Argon2id memory cost for the PIN KDF, KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// Default log filter (`RUST_LOG` overrides it).
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            slots: 2,
            pin_min_len: 6,
            pin_max_len: 8,
            max_pin_failures: 3,
            argon2_memory_kib: 65536,
            argon2_iterations: 3,
            argon2_parallelism: 1,
            log_level: "info".into(),
        }
    }
}

impl Config {
    /// Loads `path`; a file that does not exist gives the defaults.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(Error::Config {
                    path: path.into(),
                    reason: e.to_string(),
                })
            }
        };
        Self::parse(&text).map_err(|reason| Error::Config {
            path: path.into(),
            reason,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.slots == 0 || self.slots > 16 {
            return Err(format!("slots must be 1 to 16, not {}", self.slots));
        }
        if self.pin_min_len < 6 {
            return Err(format!(
                "pin_min_len must be at least 6, not {}",
                self.pin_min_len
            ));
        }
        if self.pin_max_len < self.pin_min_len || self.pin_max_len > 64 {
            return Err(format!(
                "pin_max_len must be between pin_min_len ({}) and 64, not {}",
                self.pin_min_len, self.pin_max_len
            ));
        }
        if self.max_pin_failures == 0 || self.max_pin_failures > 100 {
            return Err(format!(
                "max_pin_failures must be 1 to 100, not {}",
                self.max_pin_failures
            ));
        }
        if self.argon2_memory_kib < 8 * self.argon2_parallelism.max(1) {
            return Err("argon2_memory_kib must be at least 8 * argon2_parallelism".into());
        }
        if self.argon2_iterations == 0 {
            return Err("argon2_iterations must be at least 1".into());
        }
        if self.argon2_parallelism == 0 {
            return Err("argon2_parallelism must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn values_are_read() {
        let c = Config::parse("slots = 4\npin_max_len = 10\nlog_level = \"debug\"\n").unwrap();
        assert_eq!(c.slots, 4);
        assert_eq!(c.pin_max_len, 10);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.pin_min_len, 6);
    }

    #[test]
    fn pin_floor_is_enforced() {
        assert!(Config::parse("pin_min_len = 4")
            .unwrap_err()
            .contains("at least 6"));
    }

    #[test]
    fn malformed_and_unknown_keys_are_errors() {
        assert!(Config::parse("slots = ").is_err());
        assert!(Config::parse("slot = 2").is_err());
        assert!(Config::parse("slots = \"two\"").is_err());
    }

    #[test]
    fn missing_file_is_default() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("nope.toml")).unwrap();
        assert_eq!(c, Config::default());
    }
}
