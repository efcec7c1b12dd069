//! The daemon's configuration: one typed struct loaded from
//! `lanyardd.toml`, the lifecycle timings and the protected-authentication-path
//! keys overridable by `LANYARDD_*` environment variables. A missing file means
//! the defaults; a malformed one is an error.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Everything an operator can tune, with the documented defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// When to renew, as a fraction of the certificate's lifetime after not_before.
    pub renewal_fraction: f64,
    /// Random spread of the renewal time, plus or minus this fraction of the lifetime.
    pub renewal_jitter_fraction: f64,
    /// First wait after a failed renewal, seconds; doubled after each further failure.
    pub renewal_retry_min_secs: u64,
    /// Longest wait between renewal attempts, seconds.
    pub renewal_retry_max_secs: u64,
    /// Warn when less than this fraction of the lifetime is left and renewal fails.
    pub expiry_warning_fraction: f64,
    /// Seconds between check-ins with the CA (revocation, suspension).
    pub check_in_interval_secs: u64,
    /// Protected authentication path: tokens report
    /// CKF_PROTECTED_AUTHENTICATION_PATH and C_Login takes a NULL PIN,
    /// answered by `lanyard unlock` or a pinentry prompt.
    pub protected_path: bool,
    /// How long `lanyard unlock` lasts without use, seconds (each signature
    /// or login extends it), unless the unlock names its own.
    pub unlock_idle_timeout_secs: u64,
    /// The pinentry program (Assuan protocol): a path, or a name looked up in PATH.
    pub pinentry_program: String,
    /// How long a pinentry prompt waits for the user before it counts as
    /// cancelled, seconds (at most [`MAX_PINENTRY_TIMEOUT_SECS`]).
    pub pinentry_timeout_secs: u64,
    /// `[pcsc]`: the card in a PC/SC reader through vpcd (off by default).
    pub pcsc: crate::pcsc::PcscConfig,
    /// `[daemon]`: `idle_exit` (on by default when socket-activated).
    pub daemon: crate::idle_exit::DaemonSection,
    /// Where the device secret is kept: `"file"` (`device.secret`, 0600) or
    /// `"tpm"` (sealed to the TPM, with the PIN retry counters in TPM NV counters).
    pub device_secret: DeviceSecretKind,
    /// How to reach the TPM with `device_secret = "tpm"` (a TSS2 TCTI string).
    pub tpm_tcti: String,
}

/// Where the device secret is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceSecretKind {
    /// In `device.secret` (0600) in the store.
    #[default]
    File,
    /// Sealed to the TPM in `device.secret.tpm`.
    Tpm,
}

/// The longest `pinentry_timeout_secs`: the PKCS#11 module waits this long,
/// plus a margin, for a protected C_Login.
pub const MAX_PINENTRY_TIMEOUT_SECS: u64 = 120;

/// The environment variables that override keys, each named after its key.
pub const ENV_OVERRIDES: [&str; 10] = [
    "LANYARDD_RENEWAL_FRACTION",
    "LANYARDD_RENEWAL_JITTER_FRACTION",
    "LANYARDD_RENEWAL_RETRY_MIN_SECS",
    "LANYARDD_RENEWAL_RETRY_MAX_SECS",
    "LANYARDD_EXPIRY_WARNING_FRACTION",
    "LANYARDD_CHECK_IN_INTERVAL_SECS",
    "LANYARDD_PROTECTED_PATH",
    "LANYARDD_UNLOCK_IDLE_TIMEOUT_SECS",
    "LANYARDD_PINENTRY_PROGRAM",
    "LANYARDD_PINENTRY_TIMEOUT_SECS",
];

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
            renewal_fraction: 0.67,
            renewal_jitter_fraction: 0.05,
            renewal_retry_min_secs: 5,
            renewal_retry_max_secs: 3600,
            expiry_warning_fraction: 0.1,
            check_in_interval_secs: 900,
            protected_path: false,
            unlock_idle_timeout_secs: 900,
            pinentry_program: "pinentry".into(),
            pinentry_timeout_secs: 60,
            pcsc: crate::pcsc::PcscConfig::default(),
            daemon: crate::idle_exit::DaemonSection::default(),
            device_secret: DeviceSecretKind::File,
            tpm_tcti: crate::tpm::DEFAULT_TCTI.into(),
        }
    }
}

impl Config {
    /// Loads `path` (a file that does not exist gives the defaults), then
    /// applies the `LANYARDD_*` environment overrides.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::Config {
                    path: path.into(),
                    reason: e.to_string(),
                })
            }
        };
        let config_error = |reason| Error::Config {
            path: path.into(),
            reason,
        };
        let mut config: Config =
            toml::from_str(&text).map_err(|e| config_error(e.message().to_string()))?;
        config
            .apply_env(|k| std::env::var(k).ok())
            .map_err(config_error)?;
        config.validate().map_err(config_error)?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Overrides keys from [`ENV_OVERRIDES`], read through `get`.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<(), String> {
        fn parse<T: std::str::FromStr>(name: &str, v: &str) -> std::result::Result<T, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("environment variable {name}={v:?} is not a valid number"))
        }
        let [fraction, jitter, retry_min, retry_max, warning, check_in, protected, idle, program, prompt] =
            ENV_OVERRIDES;
        if let Some(v) = get(fraction) {
            self.renewal_fraction = parse(fraction, &v)?;
        }
        if let Some(v) = get(jitter) {
            self.renewal_jitter_fraction = parse(jitter, &v)?;
        }
        if let Some(v) = get(retry_min) {
            self.renewal_retry_min_secs = parse(retry_min, &v)?;
        }
        if let Some(v) = get(retry_max) {
            self.renewal_retry_max_secs = parse(retry_max, &v)?;
        }
        if let Some(v) = get(warning) {
            self.expiry_warning_fraction = parse(warning, &v)?;
        }
        if let Some(v) = get(check_in) {
            self.check_in_interval_secs = parse(check_in, &v)?;
        }
        if let Some(v) = get(protected) {
            self.protected_path = match v.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(format!(
                        "environment variable {protected}={v:?} must be true or false"
                    ))
                }
            };
        }
        if let Some(v) = get(idle) {
            self.unlock_idle_timeout_secs = parse(idle, &v)?;
        }
        if let Some(v) = get(program) {
            self.pinentry_program = v;
        }
        if let Some(v) = get(prompt) {
            self.pinentry_timeout_secs = parse(prompt, &v)?;
        }
        Ok(())
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
        if self.tpm_tcti.trim().is_empty() {
            return Err("tpm_tcti must name a TCTI, e.g. \"device:/dev/tpmrm0\"".into());
        }
        if self.argon2_iterations == 0 {
            return Err("argon2_iterations must be at least 1".into());
        }
        if self.argon2_parallelism == 0 {
            return Err("argon2_parallelism must be at least 1".into());
        }
        let cost = crate::card_crypto::KdfParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        };
        if !cost.within_limits() {
            return Err(format!(
                "argon2 cost above the limits card files are read with: memory at most {} KiB, \
                 iterations at most {}, parallelism at most {}",
                crate::card_crypto::KdfParams::MAX_MEMORY_KIB,
                crate::card_crypto::KdfParams::MAX_ITERATIONS,
                crate::card_crypto::KdfParams::MAX_PARALLELISM
            ));
        }
        let fraction = |name: &str, v: f64, zero_ok: bool, below: f64| {
            let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
            if v.is_finite() && low_ok && v < below {
                Ok(())
            } else {
                let low = if zero_ok { "from 0" } else { "above 0" };
                Err(format!("{name} must be {low} and below {below}, not {v}"))
            }
        };
        fraction("renewal_fraction", self.renewal_fraction, false, 1.0)?;
        fraction(
            "renewal_jitter_fraction",
            self.renewal_jitter_fraction,
            true,
            0.5,
        )?;
        fraction(
            "expiry_warning_fraction",
            self.expiry_warning_fraction,
            true,
            1.0,
        )?;
        if self.renewal_fraction + self.renewal_jitter_fraction >= 1.0 {
            return Err("renewal_fraction + renewal_jitter_fraction must stay below 1".into());
        }
        if self.renewal_retry_min_secs == 0 {
            return Err("renewal_retry_min_secs must be at least 1".into());
        }
        if self.renewal_retry_max_secs < self.renewal_retry_min_secs {
            return Err(format!(
                "renewal_retry_max_secs ({}) must be at least renewal_retry_min_secs ({})",
                self.renewal_retry_max_secs, self.renewal_retry_min_secs
            ));
        }
        if self.check_in_interval_secs == 0 {
            return Err("check_in_interval_secs must be at least 1".into());
        }
        if self.unlock_idle_timeout_secs == 0 {
            return Err("unlock_idle_timeout_secs must be at least 1".into());
        }
        if self.pinentry_program.trim().is_empty() {
            return Err("pinentry_program must name a program".into());
        }
        if !(1..=MAX_PINENTRY_TIMEOUT_SECS).contains(&self.pinentry_timeout_secs) {
            return Err(format!(
                "pinentry_timeout_secs must be 1 to {MAX_PINENTRY_TIMEOUT_SECS}, not {}",
                self.pinentry_timeout_secs
            ));
        }
        self.pcsc.validate()?;
        self.daemon.validate()?;
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
    fn device_secret_is_file_or_tpm_with_a_tcti() {
        assert_eq!(Config::default().device_secret, DeviceSecretKind::File);
        assert_eq!(Config::default().tpm_tcti, "device:/dev/tpmrm0");
        let c = Config::parse("device_secret = \"tpm\"\ntpm_tcti = \"swtpm:port=2321\"").unwrap();
        assert_eq!(
            (c.device_secret, c.tpm_tcti.as_str()),
            (DeviceSecretKind::Tpm, "swtpm:port=2321")
        );
        assert!(Config::parse("device_secret = \"disk\"")
            .unwrap_err()
            .contains("unknown variant"));
        assert!(Config::parse("tpm_tcti = \" \"")
            .unwrap_err()
            .contains("tpm_tcti"));
    }

    #[test]
    fn pin_floor_is_enforced() {
        assert!(Config::parse("pin_min_len = 4")
            .unwrap_err()
            .contains("at least 6"));
    }

    #[test]
    fn argon2_costs_card_files_could_not_be_read_with_are_refused() {
        for bad in [
            "argon2_memory_kib = 2097153",
            "argon2_iterations = 65",
            "argon2_parallelism = 65\nargon2_memory_kib = 65536",
        ] {
            let err = Config::parse(bad).unwrap_err();
            assert!(err.contains("above the limits"), "{bad}: {err}");
        }
        assert!(Config::parse("argon2_memory_kib = 2097152\nargon2_iterations = 64").is_ok());
    }

    #[test]
    fn malformed_and_unknown_keys_are_errors() {
        assert!(Config::parse("slots = ").is_err());
        assert!(Config::parse("slot = 2").is_err());
        assert!(Config::parse("slots = \"two\"").is_err());
    }

    #[test]
    fn lifecycle_defaults_and_bounds() {
        let c = Config::default();
        assert_eq!(c.renewal_fraction, 0.67);
        assert_eq!(c.renewal_jitter_fraction, 0.05);
        assert_eq!(
            (c.renewal_retry_min_secs, c.renewal_retry_max_secs),
            (5, 3600)
        );
        assert_eq!(c.expiry_warning_fraction, 0.1);
        assert_eq!(c.check_in_interval_secs, 900);
        let c = Config::parse(
            "renewal_fraction = 0.5\nrenewal_jitter_fraction = 0.0\ncheck_in_interval_secs = 2\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.renewal_fraction,
                c.renewal_jitter_fraction,
                c.check_in_interval_secs
            ),
            (0.5, 0.0, 2)
        );
        for bad in [
            "renewal_fraction = 0.0",
            "renewal_fraction = 1.0",
            "renewal_fraction = nan",
            "renewal_jitter_fraction = -0.1",
            "renewal_fraction = 0.9\nrenewal_jitter_fraction = 0.2",
            "renewal_retry_min_secs = 0",
            "renewal_retry_min_secs = 10\nrenewal_retry_max_secs = 5",
            "check_in_interval_secs = 0",
            "expiry_warning_fraction = 1.5",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_overrides_lifecycle_keys() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "LANYARDD_CHECK_IN_INTERVAL_SECS" => Some("3".into()),
            "LANYARDD_RENEWAL_FRACTION" => Some(" 0.5 ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((c.check_in_interval_secs, c.renewal_fraction), (3, 0.5));
        let err = c
            .apply_env(|k| (k == "LANYARDD_RENEWAL_RETRY_MAX_SECS").then(|| "soon".into()))
            .unwrap_err();
        assert!(err.contains("LANYARDD_RENEWAL_RETRY_MAX_SECS"), "{err}");
    }

    #[test]
    fn protected_path_keys_defaults_bounds_and_environment() {
        let c = Config::default();
        assert!(!c.protected_path);
        assert_eq!(c.unlock_idle_timeout_secs, 900);
        assert_eq!(c.pinentry_program, "pinentry");
        assert_eq!(c.pinentry_timeout_secs, 60);
        let c = Config::parse(
            "protected_path = true\nunlock_idle_timeout_secs = 2\npinentry_program = \"/opt/pe\"\n",
        )
        .unwrap();
        assert!(c.protected_path);
        assert_eq!(c.unlock_idle_timeout_secs, 2);
        assert_eq!(c.pinentry_program, "/opt/pe");
        for bad in [
            "unlock_idle_timeout_secs = 0",
            "pinentry_program = \" \"",
            "pinentry_timeout_secs = 0",
            "pinentry_timeout_secs = 121",
            "protected_path = \"yes\"",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "LANYARDD_PROTECTED_PATH" => Some("true".into()),
            "LANYARDD_UNLOCK_IDLE_TIMEOUT_SECS" => Some("5".into()),
            "LANYARDD_PINENTRY_PROGRAM" => Some("pinentry-tty".into()),
            "LANYARDD_PINENTRY_TIMEOUT_SECS" => Some("7".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.protected_path);
        assert_eq!(
            (
                c.unlock_idle_timeout_secs,
                c.pinentry_program.as_str(),
                c.pinentry_timeout_secs
            ),
            (5, "pinentry-tty", 7)
        );
        let err = c
            .apply_env(|k| (k == "LANYARDD_PROTECTED_PATH").then(|| "yes".into()))
            .unwrap_err();
        assert!(err.contains("LANYARDD_PROTECTED_PATH"), "{err}");
    }

    #[test]
    fn pcsc_section_is_read_and_checked() {
        let c =
            Config::parse("[pcsc]\nvpcd_listen = \"127.0.0.1:35963\"\ncard = \"C1\"\n").unwrap();
        assert_eq!(c.pcsc.vpcd_listen.as_deref(), Some("127.0.0.1:35963"));
        assert_eq!(c.pcsc.card.as_deref(), Some("C1"));
        assert_eq!(Config::default().pcsc.endpoint(), Ok(None));
        let err = Config::parse("[pcsc]\nvpcd_listen = \"0.0.0.0:35963\"\n").unwrap_err();
        assert!(err.contains("not on loopback"), "{err}");
        assert!(Config::parse("[pcsc]\nvpcd = \"x\"\n").is_err());
    }

    #[test]
    fn daemon_section_idle_exit_is_read_and_checked() {
        let c = Config::parse("[daemon]\nidle_exit = \"2m\"\n").unwrap();
        assert_eq!(c.daemon.idle_exit.as_deref(), Some("2m"));
        assert_eq!(Config::default().daemon.idle_exit, None);
        let err = Config::parse("[daemon]\nidle_exit = \"soon\"\n").unwrap_err();
        assert!(err.contains("idle_exit"), "{err}");
        assert!(Config::parse("[daemon]\nidle = \"2m\"\n").is_err());
    }

    #[test]
    fn missing_file_is_default() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("nope.toml")).unwrap();
        assert_eq!(c, Config::default());
    }
}
