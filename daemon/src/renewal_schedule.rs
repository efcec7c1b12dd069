//! When to renew: the arithmetic of the renewal schedule (fraction of the
//! certificate's lifetime, jitter, exponential backoff, the CA's retry-after),
//! with the randomness passed in so every bound can be tested.

use std::time::Duration;

use crate::config::Config;

/// The renewal timings from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    /// Renew at this fraction of the lifetime after not_before.
    pub fraction: f64,
    /// Plus or minus this fraction of the lifetime, at random.
    pub jitter_fraction: f64,
    /// First wait after a failure.
    pub retry_min: Duration,
    /// Longest wait between attempts (a CA's retry-after may ask for more).
    pub retry_max: Duration,
    /// A certificate with less than this fraction of its lifetime left is "close to expiry".
    pub warning_fraction: f64,
}

impl RenewalPolicy {
    /// The policy in `config`.
    pub fn from_config(config: &Config) -> Self {
        RenewalPolicy {
            fraction: config.renewal_fraction,
            jitter_fraction: config.renewal_jitter_fraction,
            retry_min: Duration::from_secs(config.renewal_retry_min_secs),
            retry_max: Duration::from_secs(config.renewal_retry_max_secs),
            warning_fraction: config.expiry_warning_fraction,
        }
    }

    /// Unix second at which a certificate valid from `not_before` to
    /// `not_after` is due for renewal; `jitter` in [-1, 1] is this card's
    /// random draw. Always within the validity (at least a second before its end).
    pub fn renew_at(&self, not_before: i64, not_after: i64, jitter: f64) -> i64 {
        let lifetime = (not_after - not_before).max(0) as f64;
        let jitter = jitter.clamp(-1.0, 1.0);
        let offset = lifetime * (self.fraction + jitter * self.jitter_fraction);
        let at = not_before.saturating_add(offset.round() as i64);
        at.clamp(not_before, (not_after - 1).max(not_before))
    }

    /// Exponential backoff after `failures` (>= 1) failed attempts:
    /// retry_min doubled per further failure, plus up to a quarter more
    /// (`spread` in [0, 1)), never beyond retry_max.
    pub fn backoff(&self, failures: u32, spread: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(64) as i32;
        let base = Duration::try_from_secs_f64(self.retry_min.as_secs_f64() * 2f64.powi(doublings))
            .unwrap_or(self.retry_max)
            .min(self.retry_max);
        let extra = base.mul_f64(spread.clamp(0.0, 1.0) / 4.0);
        (base + extra).clamp(self.retry_min, self.retry_max)
    }

    /// How long to wait after `failures` failed attempts. When the CA said
    /// `retry_after`, at least that long plus jitter (up to a quarter of it
    /// plus a second), even beyond retry_max: an overloaded CA decides.
    pub fn retry_delay(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        spread: f64,
    ) -> Duration {
        let backoff = self.backoff(failures, spread);
        match retry_after {
            Some(hint) => {
                let span = Duration::from_secs(1) + hint / 4;
                backoff.max(hint + span.mul_f64(spread.clamp(0.0, 1.0)))
            }
            None => backoff,
        }
    }

    /// Whether less than `warning_fraction` of the lifetime is left at `now`.
    pub fn near_expiry(&self, not_before: i64, not_after: i64, now: i64) -> bool {
        let lifetime = (not_after - not_before).max(0) as f64;
        let left = (not_after - now) as f64;
        left < lifetime * self.warning_fraction
    }
}

/// A fresh jitter draw in [-1, 1].
pub fn draw_jitter() -> f64 {
    rand::random::<f64>() * 2.0 - 1.0
}

/// A fresh spread draw in [0, 1).
pub fn draw_spread() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RenewalPolicy {
        RenewalPolicy::from_config(&Config::default())
    }

    const DAY: i64 = 86_400;

    #[test]
    fn renewal_is_at_the_fraction_of_the_lifetime() {
        let p = policy();
        // 30 days from t=1000: 0.67 of it is 20.1 days.
        assert_eq!(p.renew_at(1000, 1000 + 30 * DAY, 0.0), 1000 + 1_736_640);
        let p = RenewalPolicy {
            fraction: 0.5,
            ..policy()
        };
        assert_eq!(p.renew_at(0, 60, 0.0), 30);
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let p = policy();
        let (nb, na) = (0, 100 * DAY);
        let lifetime = (na - nb) as f64;
        let lo = (lifetime * (0.67 - 0.05)).round() as i64;
        let hi = (lifetime * (0.67 + 0.05)).round() as i64;
        assert_eq!(p.renew_at(nb, na, -1.0), lo);
        assert_eq!(p.renew_at(nb, na, 1.0), hi);
        // Out-of-range draws are clamped, and real draws land inside.
        assert_eq!(p.renew_at(nb, na, -7.0), lo);
        for _ in 0..1000 {
            let at = p.renew_at(nb, na, draw_jitter());
            assert!((lo..=hi).contains(&at), "{at}");
        }
        let draws: Vec<f64> = (0..200).map(|_| draw_jitter()).collect();
        assert!(draws.iter().any(|d| *d < -0.5) && draws.iter().any(|d| *d > 0.5));
    }

    #[test]
    fn renewal_time_stays_inside_the_validity() {
        let p = RenewalPolicy {
            fraction: 0.99,
            jitter_fraction: 0.49,
            ..policy()
        };
        assert_eq!(p.renew_at(0, 60, 1.0), 59);
        assert_eq!(p.renew_at(50, 50, 0.0), 50);
        let p = RenewalPolicy {
            fraction: 0.01,
            jitter_fraction: 0.49,
            ..policy()
        };
        assert_eq!(p.renew_at(100, 160, -1.0), 100);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        let secs = |n| p.backoff(n, 0.0).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [5, 10, 20, 40]);
        assert_eq!(secs(10), 2560);
        assert_eq!(secs(11), 3600);
        assert_eq!(secs(1000), 3600);
        assert_eq!(p.backoff(0, 0.0).as_secs(), 5);
        // The spread adds up to a quarter, never past the cap.
        assert_eq!(p.backoff(1, 0.999).as_millis(), 6248);
        assert_eq!(p.backoff(11, 0.999).as_secs(), 3600);
        for n in 1..20 {
            let d = p.backoff(n, draw_spread());
            assert!(d >= p.backoff(n, 0.0) && d <= p.retry_max, "{n}: {d:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_with_jitter() {
        let p = policy();
        let hint = Duration::from_secs(120);
        // At least the hint, even where backoff alone would be shorter.
        assert_eq!(p.retry_delay(1, Some(hint), 0.0), hint);
        let most = p.retry_delay(1, Some(hint), 0.999);
        assert!(
            most > hint && most < hint + Duration::from_secs(31),
            "{most:?}"
        );
        // Backoff wins when it is longer than the hint.
        assert_eq!(
            p.retry_delay(10, Some(Duration::from_secs(1)), 0.0),
            Duration::from_secs(2560)
        );
        // A hint beyond retry_max is still honoured: the CA decides.
        let long = Duration::from_secs(7200);
        assert!(p.retry_delay(1, Some(long), 0.5) > long);
        assert_eq!(p.retry_delay(2, None, 0.0), Duration::from_secs(10));
    }

    #[test]
    fn near_expiry_is_the_last_fraction_of_the_lifetime() {
        let p = policy();
        assert!(!p.near_expiry(0, 100, 89));
        assert!(p.near_expiry(0, 100, 91));
        assert!(p.near_expiry(0, 100, 200));
    }
}
