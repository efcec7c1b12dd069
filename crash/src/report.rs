//! The counts a run reports (cycles, operations, kills by point, restarts,
//! invariant violations), as a table for people and as JSON for the test.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// How often one operation ended each way.
#[derive(Debug, Default, Serialize)]
pub struct OpCounts {
    /// Succeeded and said so.
    pub acked: u64,
    /// Refused as a wrong PIN (acknowledged failure).
    pub pin_incorrect: u64,
    /// Refused by the CA.
    pub refused: u64,
    /// No answer: a process died under it.
    pub unknown: u64,
}

/// Everything a run counted.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The random seed (a run is repeatable with `--seed`).
    pub seed: u64,
    /// Cycles run.
    pub cycles: u64,
    /// Operations by kind.
    pub operations: BTreeMap<String, OpCounts>,
    /// SIGKILLs by target and cause: `daemon random`, `daemon at card.write.before_rename`…
    pub kills: BTreeMap<String, u64>,
    /// Armed fault points the operation did not reach (the process was restarted clean).
    pub faults_not_reached: u64,
    /// Daemon starts after the first.
    pub daemon_restarts: u64,
    /// CA starts after the first.
    pub ca_restarts: u64,
    /// Daemon invariant checks run (after restarts, and at the end).
    pub checks: u64,
    /// CA database checks run.
    pub ca_checks: u64,
    /// Temp files a kill left in the card store (removed by the next start, never acknowledged).
    pub temp_files_left_by_kills: u64,
    /// Enrolments killed after the CA used the code but before the card was stored.
    pub enrolments_spent_by_kills: u64,
    /// Operations that failed while nothing was killed (should be none).
    pub unexpected_failures: Vec<String>,
    /// Broken invariants (must be none).
    pub violations: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

impl Report {
    /// Records a broken invariant.
    pub fn violation(&mut self, what: String) {
        eprintln!("lanyard-crash: VIOLATION: {what}");
        self.violations.push(what);
    }

    /// Counts a kill.
    pub fn kill(&mut self, what: String) {
        *self.kills.entry(what).or_default() += 1;
    }

    /// The counts of operation `op`.
    pub fn op(&mut self, op: &str) -> &mut OpCounts {
        self.operations.entry(op.to_string()).or_default()
    }

    /// Total kills.
    pub fn total_kills(&self) -> u64 {
        self.kills.values().sum()
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "lanyard-crash: {} cycles in {:.0} s (seed {})",
            self.cycles, self.seconds, self.seed
        );
        let _ = writeln!(
            s,
            "\n{:<14} {:>7} {:>13} {:>8} {:>8}",
            "operation", "acked", "pin_incorrect", "refused", "unknown"
        );
        for (op, c) in &self.operations {
            let _ = writeln!(
                s,
                "{op:<14} {:>7} {:>13} {:>8} {:>8}",
                c.acked, c.pin_incorrect, c.refused, c.unknown
            );
        }
        let _ = writeln!(s, "\n{:<44} {:>6}", "kill -9", "count");
        for (k, n) in &self.kills {
            let _ = writeln!(s, "{k:<44} {n:>6}");
        }
        let _ = writeln!(s, "{:<44} {:>6}", "total", self.total_kills());
        let rows = [
            ("armed fault points not reached", self.faults_not_reached),
            ("daemon restarts", self.daemon_restarts),
            ("CA restarts", self.ca_restarts),
            ("daemon invariant checks", self.checks),
            ("CA database checks", self.ca_checks),
            (
                "temp files left by kills (removed at start)",
                self.temp_files_left_by_kills,
            ),
            (
                "enrolment codes spent by kills",
                self.enrolments_spent_by_kills,
            ),
            (
                "unexpected operation failures",
                self.unexpected_failures.len() as u64,
            ),
            ("INVARIANT VIOLATIONS", self.violations.len() as u64),
        ];
        let _ = writeln!(s);
        for (k, n) in rows {
            let _ = writeln!(s, "{k:<44} {n:>6}");
        }
        for v in self.unexpected_failures.iter().chain(&self.violations) {
            let _ = writeln!(s, "  - {v}");
        }
        s
    }
}
