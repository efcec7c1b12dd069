//! The PIN policy: digits only, a length range, and how many consecutive
//! failures lock a card. Format errors are never counted as failures.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pin::Pin;

/// What a PIN must look like and when a card locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinPolicy {
    /// Shortest PIN accepted (never below 6).
    pub min_len: usize,
    /// Longest PIN accepted.
    pub max_len: usize,
    /// Consecutive wrong PINs that lock the card.
    pub max_failures: u32,
}

impl PinPolicy {
    /// The policy from the daemon configuration.
    pub fn from_config(config: &Config) -> Self {
        PinPolicy {
            min_len: config.pin_min_len,
            max_len: config.pin_max_len,
            max_failures: config.max_pin_failures,
        }
    }

    /// Checks the PIN's form: length first (PIN_LEN_RANGE), then digits (PIN_INVALID).
    pub fn check_format(&self, pin: &Pin) -> Result<()> {
        let len = pin.as_str().chars().count();
        if len < self.min_len || len > self.max_len {
            return Err(Error::PinLenRange {
                min: self.min_len,
                max: self.max_len,
            });
        }
        if !pin.as_str().bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::PinInvalid);
        }
        Ok(())
    }

    /// Whether a card with this many consecutive failures is locked.
    pub fn is_locked(&self, failures: u32) -> bool {
        failures >= self.max_failures
    }

    /// Tries left before the card locks.
    pub fn tries_left(&self, failures: u32) -> u32 {
        self.max_failures.saturating_sub(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PinPolicy {
        PinPolicy {
            min_len: 6,
            max_len: 8,
            max_failures: 3,
        }
    }

    #[test]
    fn accepts_digits_in_range() {
        for p in ["123456", "1234567", "12345678"] {
            policy().check_format(&Pin::new(p.into())).unwrap();
        }
    }

    #[test]
    fn wrong_length_is_len_range() {
        for p in ["12345", "123456789", ""] {
            assert!(matches!(
                policy().check_format(&Pin::new(p.into())),
                Err(Error::PinLenRange { min: 6, max: 8 })
            ));
        }
    }

    #[test]
    fn non_digits_are_invalid() {
        for p in ["12345a", "123 456", "１２３４５６"] {
            assert!(matches!(
                policy().check_format(&Pin::new(p.into())),
                Err(Error::PinInvalid)
            ));
        }
    }

    #[test]
    fn locking() {
        assert!(!policy().is_locked(2));
        assert!(policy().is_locked(3));
        assert_eq!(policy().tries_left(1), 2);
        assert_eq!(policy().tries_left(5), 0);
    }
}
