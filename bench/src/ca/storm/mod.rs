//! The renewal-storm simulation: the NHS smartcard population (1.4 million
//! cards) on the CA's default certificate lifetime and the daemon's renewal
//! schedule, replayed second by second against the CA's measured capacity;
//! then again with the CA down for a day at the worst moment.

pub mod plot;
pub mod population;
pub mod sim;

use lanyard_daemon::config::Config as DaemonConfig;
use lanyard_daemon::renewal_schedule::RenewalPolicy;
use serde::Serialize;

use population::{Usage, DAY, HOUR};
use sim::{Outcome, Sample, Scenario};

/// What the storm is run with.
#[derive(Debug, Clone)]
pub struct StormParams {
    /// Cards in the population.
    pub cards: u32,
    /// Simulated days.
    pub days: u32,
    /// Days of the mass enrolment.
    pub enrol_days: u32,
    /// CA requests answered per second.
    pub capacity: f64,
    /// Hours the CA is down in the second run.
    pub outage_hours: u32,
    /// Random seed.
    pub seed: u64,
}

/// Both runs, with what they were run with.
#[derive(Debug, Serialize)]
pub struct StormReport {
    /// Cards.
    pub cards: u32,
    /// Certificate lifetime in days (the CA's default).
    pub lifetime_days: f64,
    /// Renewal at this fraction of the lifetime (the daemon's default) …
    pub renewal_fraction: f64,
    /// … plus or minus this fraction.
    pub jitter_fraction: f64,
    /// The daemon's first retry wait, seconds.
    pub retry_min_secs: u64,
    /// The daemon's longest retry wait, seconds.
    pub retry_max_secs: u64,
    /// The CA's retry-after hint when full, seconds.
    pub retry_after_secs: u32,
    /// How cards are used and enrolled.
    pub usage: Usage,
    /// Simulated days.
    pub days: u32,
    /// Requests per second the CA answers.
    pub capacity_per_s: f64,
    /// Hours the CA is down in the second run.
    pub outage_hours: u32,
    /// Without an outage.
    pub normal: Outcome,
    /// With the outage at the worst moment.
    pub outage: Outcome,
    /// The time series (not serialised).
    #[serde(skip)]
    pub normal_samples: Vec<Sample>,
    /// The time series with the outage (not serialised).
    #[serde(skip)]
    pub outage_samples: Vec<Sample>,
}

/// Runs the storm without and with the outage.
pub fn run(p: &StormParams) -> StormReport {
    let daemon = DaemonConfig::default();
    let policy = RenewalPolicy::from_config(&daemon);
    let lifetime = lanyard_ca::config::DEFAULT_CERT_LIFETIME_DAYS * DAY;
    let usage = Usage {
        enrol_days: p.enrol_days,
        ..Usage::default()
    };
    let mut scenario = Scenario {
        cards: p.cards,
        lifetime,
        horizon: p.days * DAY,
        capacity: p.capacity,
        retry_after: lanyard_ca::config::DEFAULT_RETRY_AFTER_SECS,
        policy,
        usage,
        outage: None,
        seed: p.seed,
    };
    let (normal, normal_samples) = sim::run(&scenario);
    let len = p.outage_hours * HOUR;
    let start = sim::worst_window(&normal_samples, len);
    scenario.outage = Some((start, start + len));
    let (outage, outage_samples) = sim::run(&scenario);
    StormReport {
        cards: p.cards,
        lifetime_days: f64::from(lifetime) / f64::from(DAY),
        renewal_fraction: policy.fraction,
        jitter_fraction: policy.jitter_fraction,
        retry_min_secs: policy.retry_min.as_secs(),
        retry_max_secs: policy.retry_max.as_secs(),
        retry_after_secs: scenario.retry_after,
        usage,
        days: p.days,
        capacity_per_s: p.capacity,
        outage_hours: p.outage_hours,
        normal,
        outage,
        normal_samples,
        outage_samples,
    }
}
