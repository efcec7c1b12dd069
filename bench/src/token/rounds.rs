//! Interleaved rounds: on a shared machine the load changes from second to
//! second, so the bench measures every configuration (and OpenSSL's raw
//! rate) once per round, several rounds in turn, and reports per target the
//! median of the ratios of each round: ratios of figures taken close together.

use super::raw::{RawRates, SpeedFigures};
use super::report::{AlgResult, ConfigResult, TargetCheck};

/// What one round measured.
pub struct Round {
    /// OpenSSL's raw rates in this round.
    pub raw: RawRates,
    /// Every configuration in this round (no cold start).
    pub configs: Vec<ConfigResult>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median rounds' figures per configuration and mechanism, the median
/// raw rates, and each target's median ratio (with every round's value).
pub fn combine(
    rounds: Vec<Round>,
    openssl_speed: Option<SpeedFigures>,
) -> (RawRates, Vec<ConfigResult>, Vec<TargetCheck>) {
    let mut targets: Vec<TargetCheck> = Vec::new();
    for round in &rounds {
        for (i, t) in super::report::targets(&round.configs, &round.raw)
            .into_iter()
            .enumerate()
        {
            match targets.get_mut(i) {
                Some(acc) if acc.target == t.target => acc.per_round.push(t.measured),
                _ => targets.push(TargetCheck {
                    per_round: vec![t.measured],
                    ..t
                }),
            }
        }
    }
    for t in &mut targets {
        t.measured = median(t.per_round.clone());
        t.pass = t.holds(t.measured);
    }
    let raw = RawRates {
        rsa2048_pkcs1: median(rounds.iter().map(|r| r.raw.rsa2048_pkcs1).collect()),
        rsa2048_pkcs1_ctx_reused: median(
            rounds
                .iter()
                .map(|r| r.raw.rsa2048_pkcs1_ctx_reused)
                .collect(),
        ),
        ecdsa_p256: median(rounds.iter().map(|r| r.raw.ecdsa_p256).collect()),
        openssl_speed,
    };
    let mut rounds = rounds.into_iter();
    let Some(first) = rounds.next() else {
        return (raw, Vec::new(), targets);
    };
    let rest: Vec<Round> = rounds.collect();
    let configs = first
        .configs
        .into_iter()
        .enumerate()
        .map(|(ci, mut c)| {
            for (mi, m) in c.mechanisms.iter_mut().enumerate() {
                let others: Vec<&AlgResult> = rest
                    .iter()
                    .filter_map(|r| r.configs.get(ci).and_then(|c| c.mechanisms.get(mi)))
                    .collect();
                let mut ones = vec![m.one_thread.clone()];
                ones.extend(others.iter().map(|o| o.one_thread.clone()));
                let mut twos = vec![m.two_threads.clone()];
                twos.extend(others.iter().map(|o| o.two_threads.clone()));
                let mut scalings = vec![m.scaling];
                scalings.extend(others.iter().map(|o| o.scaling));
                ones.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
                twos.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
                m.one_thread = ones.swap_remove(ones.len() / 2);
                m.two_threads = twos.swap_remove(twos.len() / 2);
                m.scaling = median(scalings);
            }
            c
        })
        .collect();
    (raw, configs, targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
