//! The simulated population: every card's working day (the daemon renews
//! only while the card is unlocked, so a renewal falling due at night waits
//! for the next morning's unlock), its enrolment moment in a mass
//! enrolment over working days, and its renewal jitter drawn once, as the daemon draws it.

use rand::rngs::StdRng;
use rand::Rng;

/// Seconds in a day.
pub const DAY: u32 = 86_400;
/// Seconds in an hour.
pub const HOUR: u32 = 3_600;

/// How cards are used and enrolled.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Usage {
    /// Earliest start of a working day (seconds after midnight).
    pub first_unlock: u32,
    /// Start times spread uniformly over this many seconds after `first_unlock`.
    pub unlock_spread: u32,
    /// How long a card stays unlocked each day (24 h: always).
    pub online: u32,
    /// The mass enrolment lasts this many days from day 0.
    pub enrol_days: u32,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            first_unlock: 7 * HOUR,
            unlock_spread: 2 * HOUR,
            online: 10 * HOUR,
            enrol_days: 21,
        }
    }
}

/// One card's fixed traits.
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    /// Its daily unlock time, seconds after midnight.
    pub unlock_at: u32,
    /// The daemon's per-card renewal jitter in [-1, 1].
    pub jitter: f32,
    /// When it first asks the CA for its certificate (enrolment).
    pub enrol_at: u32,
}

impl Usage {
    /// Draws a card.
    pub fn draw(&self, rng: &mut StdRng) -> Traits {
        let unlock_at = self.first_unlock + rng.gen_range(0..self.unlock_spread.max(1));
        let day = rng.gen_range(0..self.enrol_days.max(1));
        // Enrolled at the IT desk some time in the first two hours of the shift.
        let enrol_at = day * DAY + unlock_at + rng.gen_range(0..2 * HOUR);
        Traits {
            unlock_at,
            jitter: rng.gen_range(-1.0f32..=1.0),
            enrol_at,
        }
    }

    /// The first moment at or after `t` when a card unlocked daily at
    /// `unlock_at` is unlocked.
    pub fn next_online(&self, t: u32, unlock_at: u32) -> u32 {
        if self.online >= DAY {
            return t;
        }
        let day = t / DAY;
        let sod = t % DAY;
        let end = unlock_at + self.online;
        if sod >= unlock_at && sod < end {
            t
        } else if sod < unlock_at && !(end > DAY && sod < end - DAY) {
            day * DAY + unlock_at
        } else if end > DAY && sod < end - DAY {
            t
        } else {
            (day + 1) * DAY + unlock_at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_wait_for_the_working_day() {
        let u = Usage::default();
        let at = 8 * HOUR;
        assert_eq!(u.next_online(9 * HOUR, at), 9 * HOUR);
        assert_eq!(u.next_online(3 * HOUR, at), at);
        assert_eq!(u.next_online(20 * HOUR, at), DAY + at);
        assert_eq!(
            u.next_online(DAY + 17 * HOUR + 59, at),
            DAY + 17 * HOUR + 59
        );
        let always = Usage { online: DAY, ..u };
        assert_eq!(always.next_online(3 * HOUR, at), 3 * HOUR);
        // A night shift from 20:00 for 10 h covers 02:00.
        assert_eq!(u.next_online(2 * HOUR, 20 * HOUR), 2 * HOUR);
        assert_eq!(u.next_online(7 * HOUR, 20 * HOUR), 20 * HOUR);
    }
}
