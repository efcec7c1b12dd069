//! A cycle's plan: the operation (with the fault points it passes), how the
//! cycle tries to die, and the call that runs the operation through the real clients.

use std::path::Path;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::Rng;

use crate::model::Card;
use crate::ops::{self, Outcome};
use crate::procs::DaemonProc;

/// Cards the harness keeps enrolled at most.
pub(crate) const MAX_CARDS: usize = 4;

/// What a cycle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Sign,
    WrongPin,
    ChangePin,
    Renew,
    CheckIn,
    Enroll,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Sign => "sign",
            Op::WrongPin => "wrong-pin",
            Op::ChangePin => "change-pin",
            Op::Renew => "renew",
            Op::CheckIn => "check-in",
            Op::Enroll => "enroll",
        }
    }

    /// Daemon fault points the operation passes, with how many hits it can reach.
    fn daemon_points(self) -> &'static [(&'static str, u64)] {
        match self {
            Op::Sign | Op::ChangePin => &[
                ("pin.check.after_count", 1),
                ("card.write.before_rename", 2),
                ("card.write.after_rename", 2),
            ],
            Op::WrongPin => &[
                ("pin.check.after_count", 1),
                ("card.write.before_rename", 1),
                ("card.write.after_rename", 1),
            ],
            Op::Renew => &[
                ("pin.check.after_count", 1),
                ("card.write.before_rename", 3),
                ("card.write.after_rename", 3),
            ],
            Op::CheckIn | Op::Enroll => &[
                ("card.write.before_rename", 1),
                ("card.write.after_rename", 1),
            ],
        }
    }

    /// CA fault points the operation passes.
    fn ca_points(self) -> &'static [&'static str] {
        match self {
            Op::Renew => &["ca.issue.after_sign", "ca.renew.after_commit"],
            Op::Enroll => &[
                "ca.issue.after_sign",
                "ca.code.after_use",
                "ca.code.after_commit",
            ],
            _ => &[],
        }
    }
}

/// An operation ready to run.
pub(crate) enum Call {
    Sign {
        holder: String,
        pin: String,
    },
    ChangePin {
        card_id: String,
        old: String,
        new: String,
    },
    Renew {
        card_id: String,
        pin: String,
    },
    CheckIn,
    Enroll {
        code: String,
        pin: String,
    },
}

impl Call {
    pub(crate) fn execute(
        &self,
        daemon: &DaemonProc,
        ca: &(String, std::path::PathBuf),
        scratch: &Path,
    ) -> Result<Outcome> {
        Ok(match self {
            Call::Sign { holder, pin } => ops::sign(daemon, holder, pin, scratch)?,
            Call::ChangePin { card_id, old, new } => ops::change_pin(daemon, card_id, old, new),
            Call::Renew { card_id, pin } => ops::renew(daemon, card_id, pin),
            Call::CheckIn => ops::check_in(daemon),
            Call::Enroll { code, pin } => ops::enroll(daemon, &ca.0, &ca.1, code, pin),
        })
    }
}

/// How the cycle tries to die.
#[derive(Debug, Clone)]
pub(crate) enum Kill {
    None,
    DaemonRandom(u64),
    DaemonFault(String),
    CaRandom(u64),
    CaFault(String),
}

/// Draws the next cycle: the operation, the way to die, the card.
pub(crate) fn plan(rng: &mut StdRng, cards: &[Card]) -> (Op, Kill, usize) {
    let card = rng.gen_range(0..cards.len());
    let room = cards.len() < MAX_CARDS;
    let target_ca = rng.gen_bool(0.3);
    let op = if target_ca {
        match rng.gen_range(0..10) {
            0..=1 if room => Op::Enroll,
            0..=5 => Op::Renew,
            _ => Op::CheckIn,
        }
    } else {
        match rng.gen_range(0..100) {
            0..=4 if room => Op::Enroll,
            0..=29 => Op::Sign,
            30..=49 if cards[card].acked_failures == 0 => Op::WrongPin,
            30..=49 => Op::Sign,
            50..=69 => Op::ChangePin,
            70..=84 => Op::Renew,
            _ => Op::CheckIn,
        }
    };
    let mode = rng.gen_range(0..100);
    let kill = if mode < 15 {
        Kill::None
    } else if target_ca {
        let points = op.ca_points();
        if points.is_empty() || mode < 55 {
            Kill::CaRandom(rng.gen_range(0..=800))
        } else {
            Kill::CaFault(format!("{}:1", points[rng.gen_range(0..points.len())]))
        }
    } else if mode < 55 {
        Kill::DaemonRandom(rng.gen_range(0..=800))
    } else {
        let points = op.daemon_points();
        let (name, max) = points[rng.gen_range(0..points.len())];
        Kill::DaemonFault(format!("{name}:{}", rng.gen_range(1..=max)))
    };
    (op, kill, card)
}

pub(crate) fn fault_of(kill: &Kill, daemon: bool) -> Option<String> {
    let spec = match (kill, daemon) {
        (Kill::DaemonFault(s), true) | (Kill::CaFault(s), false) => s,
        _ => return None,
    };
    Some(spec.split(':').next().unwrap_or(spec).to_string())
}
