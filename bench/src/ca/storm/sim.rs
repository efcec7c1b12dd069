//! The discrete-time simulation, one step per second: each card has at most
//! one pending request (enrolment, renewal or a retry) in a time-ordered
//! heap; the CA answers up to its capacity each second and refuses the rest
//! with its `retry-after` (back-pressure), or nothing at all while it is
//! down; refused devices wait as the daemon's `RenewalPolicy` says.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use lanyard_daemon::renewal_schedule::RenewalPolicy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::population::{Traits, Usage};

/// Samples are kept per this many seconds.
pub const BUCKET: u32 = 60;

/// What the simulation is asked.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Cards in the population.
    pub cards: u32,
    /// Certificate lifetime, seconds.
    pub lifetime: u32,
    /// Simulated span, seconds.
    pub horizon: u32,
    /// Requests the CA answers per second.
    pub capacity: f64,
    /// The CA's retry-after hint when full, seconds.
    pub retry_after: u32,
    /// The daemon's renewal timings.
    pub policy: RenewalPolicy,
    /// How cards are used.
    pub usage: Usage,
    /// The CA answers nothing in [start, end).
    pub outage: Option<(u32, u32)>,
    /// Random seed (the same seed gives the same population).
    pub seed: u64,
}

/// One bucket of the time series.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Requests that reached the CA (or would have, while down).
    pub attempts: u32,
    /// Requests answered with a certificate.
    pub served: u32,
    /// Requests refused (back-pressure) or unanswered (outage).
    pub failed: u32,
    /// First attempts of a renewal or enrolment (new demand).
    pub new_demand: u32,
    /// Devices waiting for their certificate at the end of the bucket.
    pub queue: u32,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    /// Highest requests in one second.
    pub peak_attempts_per_s: u32,
    /// Highest certificates answered in one second.
    pub peak_served_per_s: u32,
    /// Highest mean requests/s over a bucket.
    pub peak_bucket_attempts_per_s: f64,
    /// Longest queue of waiting devices.
    pub max_queue: u32,
    /// Requests refused or unanswered in all.
    pub failed_requests: u64,
    /// Renewals done.
    pub renewals: u64,
    /// Longest time from a renewal falling due to the new certificate, hours.
    pub max_wait_hours: f64,
    /// Least validity left on the old certificate at renewal, days.
    pub min_margin_days: f64,
    /// Cards whose certificate expired before renewal.
    pub expired_cards: u64,
    /// Devices that failed during the outage.
    pub outage_affected: u64,
    /// From the CA's return until every device that failed during the outage has renewed, hours.
    pub drain_hours: Option<f64>,
    /// The longest queue after the outage.
    pub backlog_after_outage: u32,
    /// Unix-like second (from day 0) of the outage start, if any.
    pub outage_start: Option<u32>,
}

#[derive(Clone, Copy)]
struct Card {
    traits: Traits,
    /// 0 before enrolment.
    not_before: u32,
    not_after: u32,
    /// When the current renewal fell due (u32::MAX: none pending).
    due: u32,
    failures: u32,
    queued: bool,
    hit_by_outage: bool,
}

/// Runs `scenario`; returns the summary and one sample per [`BUCKET`].
pub fn run(s: &Scenario) -> (Outcome, Vec<Sample>) {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let mut cards: Vec<Card> = Vec::with_capacity(s.cards as usize);
    let mut heap: BinaryHeap<Reverse<(u32, u32)>> = BinaryHeap::with_capacity(s.cards as usize);
    for id in 0..s.cards {
        let traits = s.usage.draw(&mut rng);
        heap.push(Reverse((traits.enrol_at, id)));
        cards.push(Card {
            traits,
            not_before: 0,
            not_after: 0,
            due: traits.enrol_at,
            failures: 0,
            queued: false,
            hit_by_outage: false,
        });
    }
    // The spread draws of retries come from a second stream so the population
    // (and thus the baseline) is the same with and without an outage.
    let mut retry_rng = StdRng::seed_from_u64(s.seed ^ 0x5eed);
    let mut out = Outcome {
        min_margin_days: f64::INFINITY,
        outage_start: s.outage.map(|(a, _)| a),
        ..Outcome::default()
    };
    let mut samples = vec![Sample::default(); (s.horizon / BUCKET + 1) as usize];
    let mut queue: u32 = 0;
    let mut affected_left: u64 = 0;
    let mut tokens = 0.0f64;
    let mut due_now: Vec<u32> = Vec::new();
    for t in 0..s.horizon {
        due_now.clear();
        while let Some(Reverse((at, id))) = heap.peek().copied() {
            if at > t {
                break;
            }
            heap.pop();
            due_now.push(id);
        }
        let bucket = &mut samples[(t / BUCKET) as usize];
        let down = s.outage.is_some_and(|(a, b)| t >= a && t < b);
        tokens = (tokens + s.capacity).min(s.capacity.max(1.0));
        let mut served_now = 0u32;
        for &id in &due_now {
            let card = &mut cards[id as usize];
            if !card.queued {
                card.queued = true;
                queue += 1;
                bucket.new_demand += 1;
            }
            bucket.attempts += 1;
            let answered = !down && tokens >= 1.0;
            if answered {
                tokens -= 1.0;
                served_now += 1;
                bucket.served += 1;
                if card.not_before > 0 {
                    out.renewals += 1;
                    let waited = t.saturating_sub(card.due) as f64 / 3600.0;
                    out.max_wait_hours = out.max_wait_hours.max(waited);
                    if t >= card.not_after {
                        out.expired_cards += 1;
                    } else {
                        let margin = (card.not_after - t) as f64 / 86_400.0;
                        out.min_margin_days = out.min_margin_days.min(margin);
                    }
                }
                if card.hit_by_outage {
                    card.hit_by_outage = false;
                    affected_left -= 1;
                    if affected_left == 0 {
                        if let Some((_, end)) = s.outage {
                            out.drain_hours = Some(t.saturating_sub(end) as f64 / 3600.0);
                        }
                    }
                }
                card.queued = false;
                queue -= 1;
                card.failures = 0;
                card.not_before = t;
                card.not_after = t.saturating_add(s.lifetime);
                let due = s.policy.renew_at(
                    i64::from(t),
                    i64::from(card.not_after),
                    f64::from(card.traits.jitter),
                );
                let due = u32::try_from(due).unwrap_or(u32::MAX);
                card.due = due;
                let next = s.usage.next_online(due, card.traits.unlock_at);
                if next < s.horizon {
                    heap.push(Reverse((next, id)));
                }
            } else {
                bucket.failed += 1;
                out.failed_requests += 1;
                card.failures += 1;
                if down && !card.hit_by_outage {
                    card.hit_by_outage = true;
                    affected_left += 1;
                    out.outage_affected += 1;
                }
                // Down: a transport failure (backoff only); full: the CA's hint.
                let hint =
                    (!down).then(|| std::time::Duration::from_secs(u64::from(s.retry_after)));
                let delay = s
                    .policy
                    .retry_delay(card.failures, hint, retry_rng.gen::<f64>())
                    .as_secs()
                    .max(1);
                let at = t.saturating_add(u32::try_from(delay).unwrap_or(u32::MAX));
                let next = s.usage.next_online(at, card.traits.unlock_at);
                if next < s.horizon {
                    heap.push(Reverse((next, id)));
                }
            }
        }
        out.peak_attempts_per_s = out.peak_attempts_per_s.max(due_now.len() as u32);
        out.peak_served_per_s = out.peak_served_per_s.max(served_now);
        bucket.queue = queue;
        out.max_queue = out.max_queue.max(queue);
        if let Some((_, end)) = s.outage {
            if t >= end {
                out.backlog_after_outage = out.backlog_after_outage.max(queue);
            }
        }
    }
    // Cards whose certificate ran out while still waiting at the end.
    out.expired_cards += cards
        .iter()
        .filter(|c| c.queued && c.not_before > 0 && c.not_after <= s.horizon)
        .count() as u64;
    if !out.min_margin_days.is_finite() {
        out.min_margin_days = 0.0;
    }
    out.peak_bucket_attempts_per_s = samples
        .iter()
        .map(|b| f64::from(b.attempts) / f64::from(BUCKET))
        .fold(0.0, f64::max);
    (out, samples)
}

/// The start of the `len`-second window with the most new demand (the worst
/// moment for an outage), in whole buckets.
pub fn worst_window(samples: &[Sample], len: u32) -> u32 {
    let w = (len / BUCKET).max(1) as usize;
    if samples.len() <= w {
        return 0;
    }
    let mut sum: u64 = samples[..w].iter().map(|b| u64::from(b.new_demand)).sum();
    let (mut best, mut best_at) = (sum, 0usize);
    for i in w..samples.len() {
        sum += u64::from(samples[i].new_demand);
        sum -= u64::from(samples[i - w].new_demand);
        if sum > best {
            best = sum;
            best_at = i + 1 - w;
        }
    }
    best_at as u32 * BUCKET
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_daemon::config::Config;

    fn scenario(cards: u32, capacity: f64) -> Scenario {
        Scenario {
            cards,
            lifetime: 30 * 86_400,
            horizon: 70 * 86_400,
            capacity,
            retry_after: 5,
            policy: RenewalPolicy::from_config(&Config::default()),
            usage: Usage {
                enrol_days: 5,
                ..Usage::default()
            },
            outage: None,
            seed: 7,
        }
    }

    #[test]
    fn every_card_renews_in_time_with_ample_capacity() {
        let (out, samples) = run(&scenario(2_000, 100.0));
        // 2000 enrolments, then renewals at ~20 days: at least 2 each in 70 days.
        assert!(out.renewals >= 4_000, "{out:?}");
        assert_eq!(out.expired_cards, 0);
        assert_eq!(out.failed_requests, 0);
        assert!(out.min_margin_days > 5.0, "{out:?}");
        let served: u64 = samples.iter().map(|b| u64::from(b.served)).sum();
        assert_eq!(served, 2_000 + out.renewals);
    }

    #[test]
    fn a_tiny_capacity_builds_a_queue_and_refuses() {
        let (out, _) = run(&scenario(2_000, 0.01));
        assert!(out.failed_requests > 0 && out.max_queue > 100, "{out:?}");
    }

    #[test]
    fn an_outage_is_drained_and_counted() {
        let mut s = scenario(2_000, 100.0);
        let (_, base) = run(&s);
        let start = worst_window(&base, 86_400);
        s.outage = Some((start, start + 86_400));
        let (out, _) = run(&s);
        assert!(out.outage_affected > 0, "{out:?}");
        assert!(out.drain_hours.is_some(), "{out:?}");
        assert_eq!(out.expired_cards, 0);
    }
}
