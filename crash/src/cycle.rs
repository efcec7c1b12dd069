//! One cycle: pick an operation and a way to die (none, a random SIGKILL of the
//! daemon or the CA, or a fault point armed in one of them), run it, follow the
//! acknowledged outcome in the model, restart what died and check the invariants.

use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use rand::rngs::StdRng;

use crate::checks;
use crate::model::{new_pin, Card, PendingEnrolment};
use crate::ops::{self, Outcome};
use crate::plan::{fault_of, plan, Call, Kill, Op};
use crate::procs::{sigkill, CaProc, DaemonProc, Death};
use crate::report::Report;

/// The state a run carries from cycle to cycle.
pub struct World<'a> {
    pub daemon: DaemonProc,
    pub ca: CaProc,
    pub cards: Vec<Card>,
    pub scratch: &'a Path,
    pub rng: StdRng,
    pub report: Report,
    pub enrolled: u64,
    pub verbose: bool,
}

impl World<'_> {
    /// Runs one cycle.
    pub fn cycle(&mut self) -> Result<()> {
        let (op, kill, idx) = plan(&mut self.rng, &self.cards);
        if self.verbose {
            eprintln!(
                "lanyard-crash: cycle {}: {} on card {idx}, kill {kill:?}",
                self.report.cycles,
                op.name()
            );
        }
        match &kill {
            Kill::DaemonFault(spec) => {
                self.daemon.stop();
                self.report.daemon_restarts += 1;
                if !self.daemon.start(Some(spec))? {
                    // Start-up itself reached the point (it writes card files too).
                    let point = fault_of(&kill, true).unwrap_or_default();
                    self.report.kill(format!("daemon at {point} (start-up)"));
                    self.report.temp_files_left_by_kills += checks::temp_files(&self.daemon) as u64;
                    self.start_daemon_clean()?;
                    checks::daemon_invariants(
                        &self.daemon,
                        &mut self.cards,
                        self.scratch,
                        &mut self.report,
                    )?;
                    self.report.cycles += 1;
                    return Ok(());
                }
            }
            Kill::CaFault(spec) => {
                self.ca.stop();
                self.ca.start(Some(spec))?;
                self.report.ca_restarts += 1;
            }
            _ => {}
        }
        let mut pending = None;
        let call = self.prepare(op, idx, &mut pending)?;
        let ca_addr = (self.ca.url().to_string(), self.ca.dir().join("root.pem"));
        let ca_targeted = matches!(kill, Kill::CaRandom(_) | Kill::CaFault(_));
        let random_ms = match kill {
            Kill::DaemonRandom(ms) | Kill::CaRandom(ms) => Some(ms),
            _ => None,
        };
        let victim = match kill {
            Kill::DaemonRandom(_) => self.daemon.pid(),
            Kill::CaRandom(_) => self.ca.pid(),
            _ => None,
        };
        let (daemon, ca, scratch) = (&self.daemon, &mut self.ca, self.scratch);
        // The operation runs in its own thread; a CA that dies under it is
        // started again at once, as a supervisor would, while the daemon retries.
        let (outcome, ca_death) = thread::scope(|s| -> Result<(Outcome, Death)> {
            let op_thread = s.spawn(|| call.execute(daemon, &ca_addr, scratch));
            if let (Some(ms), Some(pid)) = (random_ms, victim) {
                thread::sleep(Duration::from_millis(ms));
                sigkill(pid);
            }
            let mut ca_death = Death::Alive;
            if ca_targeted {
                loop {
                    let finished = op_thread.is_finished();
                    let grace = if random_ms.is_some() && ca_death == Death::Alive {
                        Duration::from_secs(2)
                    } else {
                        Duration::ZERO
                    };
                    if ca_death == Death::Alive {
                        ca_death = ca.check_death(grace);
                        if ca_death != Death::Alive {
                            ca.start(None)?;
                        }
                    }
                    if finished {
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
            let outcome = op_thread
                .join()
                .map_err(|_| anyhow::anyhow!("the operation thread panicked"))??;
            Ok((outcome, ca_death))
        })?;
        let grace =
            if matches!(outcome, Outcome::Unknown(_)) || matches!(kill, Kill::DaemonRandom(_)) {
                Duration::from_secs(2)
            } else {
                Duration::ZERO
            };
        let daemon_death = self.daemon.check_death(grace);
        let ca_death = if ca_targeted {
            ca_death
        } else {
            self.ca.check_death(Duration::ZERO)
        };
        self.count(op, &outcome);
        if self.verbose {
            eprintln!("lanyard-crash:   -> {outcome:?}, daemon {daemon_death:?}, CA {ca_death:?}");
        }
        let (dk, ck) = (daemon_death != Death::Alive, ca_death != Death::Alive);
        for (died, death, who, random, fault) in [
            (
                dk,
                daemon_death,
                "daemon",
                matches!(kill, Kill::DaemonRandom(_)),
                fault_of(&kill, true),
            ),
            (
                ck,
                ca_death,
                "CA",
                matches!(kill, Kill::CaRandom(_)),
                fault_of(&kill, false),
            ),
        ] {
            if !died {
                continue;
            }
            match (death, fault) {
                (Death::Other(code), _) => self.report.violation(format!(
                    "the {who} died by itself (exit {code:?}) during {}",
                    op.name()
                )),
                (_, Some(point)) => self.report.kill(format!("{who} at {point}")),
                (_, None) if random => self.report.kill(format!("{who} random")),
                (_, None) => self
                    .report
                    .violation(format!("the {who} died unexpectedly during {}", op.name())),
            }
        }
        if !dk && !ck {
            if let Kill::DaemonFault(_) | Kill::CaFault(_) = kill {
                self.report.faults_not_reached += 1;
            }
            if let Outcome::Unknown(why) = &outcome {
                self.report
                    .unexpected_failures
                    .push(format!("{} failed with nothing killed: {why}", op.name()));
            }
        }
        self.follow(op, idx, &outcome, pending.as_ref(), dk || ck);

        // Restart what died (the CA first: the daemon checks in at start), and
        // take an armed but unreached fault point out.
        if ck && !ca_targeted {
            self.ca.start(None)?;
            self.report.ca_restarts += 1;
        } else if ck {
            self.report.ca_restarts += 1;
        } else if matches!(kill, Kill::CaFault(_)) {
            self.ca.stop();
            self.ca.start(None)?;
            self.report.ca_restarts += 1;
        }
        if dk {
            self.report.temp_files_left_by_kills += checks::temp_files(&self.daemon) as u64;
            self.start_daemon_clean()?;
        } else if matches!(kill, Kill::DaemonFault(_)) {
            self.daemon.stop();
            self.start_daemon_clean()?;
        }
        if let Some(p) = pending {
            self.resolve_enrolment(p)?;
        }
        if dk || ck {
            checks::daemon_invariants(
                &self.daemon,
                &mut self.cards,
                self.scratch,
                &mut self.report,
            )?;
            checks::ca_invariants(self.ca.dir(), &self.daemon, &self.cards, &mut self.report)?;
        }
        self.report.cycles += 1;
        Ok(())
    }

    fn start_daemon_clean(&mut self) -> Result<()> {
        self.report.daemon_restarts += 1;
        anyhow::ensure!(
            self.daemon.start(None)?,
            "lanyardd-fault died starting without a fault"
        );
        Ok(())
    }

    /// Everything the operation needs, drawn before it runs (so it can run in a thread).
    fn prepare(
        &mut self,
        op: Op,
        idx: usize,
        pending: &mut Option<PendingEnrolment>,
    ) -> Result<Call> {
        let card = self.cards[idx].clone();
        Ok(match op {
            Op::Sign => Call::Sign {
                holder: card.holder,
                pin: card.pin,
            },
            Op::WrongPin => Call::Sign {
                pin: new_pin(&mut self.rng, &[&card.pin]),
                holder: card.holder,
            },
            Op::ChangePin => {
                let new = new_pin(&mut self.rng, &[&card.pin]);
                self.cards[idx].pending_pin = Some(new.clone());
                Call::ChangePin {
                    card_id: card.card_id,
                    old: card.pin,
                    new,
                }
            }
            Op::Renew => Call::Renew {
                card_id: card.card_id,
                pin: card.pin,
            },
            Op::CheckIn => Call::CheckIn,
            Op::Enroll => {
                self.enrolled += 1;
                let holder = format!("Crash H{:03}", self.enrolled);
                let (card_id, code) =
                    ops::issue_card(&self.ca, &holder, &format!("55500000{:04}", self.enrolled))?;
                let pin = new_pin(&mut self.rng, &[]);
                *pending = Some(PendingEnrolment {
                    card_id,
                    holder,
                    code: code.clone(),
                    pin: pin.clone(),
                });
                Call::Enroll { code, pin }
            }
        })
    }

    fn count(&mut self, op: Op, outcome: &Outcome) {
        let c = self.report.op(op.name());
        match outcome {
            Outcome::Acked => c.acked += 1,
            Outcome::PinIncorrect => c.pin_incorrect += 1,
            Outcome::Refused(_) => c.refused += 1,
            Outcome::Unknown(_) => c.unknown += 1,
        }
    }

    /// The model follows what was acknowledged.
    fn follow(
        &mut self,
        op: Op,
        idx: usize,
        outcome: &Outcome,
        pending: Option<&PendingEnrolment>,
        killed: bool,
    ) {
        let card = &mut self.cards[idx];
        let id = card.card_id.clone();
        let in_doubt =
            matches!(outcome, Outcome::Acked) || (killed && matches!(outcome, Outcome::Unknown(_)));
        if op == Op::ChangePin && !in_doubt {
            card.pending_pin = None;
        }
        match (op, outcome) {
            (Op::Sign | Op::Renew, Outcome::Acked) => card.acked_failures = 0,
            (Op::WrongPin, Outcome::PinIncorrect) => card.acked_failures += 1,
            (Op::ChangePin, Outcome::Acked) => {
                if let Some(new) = card.pending_pin.take() {
                    card.pin = new;
                }
                card.acked_failures = 0;
            }
            (Op::Enroll, Outcome::Acked) => {}
            (_, Outcome::Unknown(_)) | (Op::CheckIn, Outcome::Acked) => {}
            (_, other) => self
                .report
                .violation(format!("{} on card {id} answered {other:?}", op.name())),
        }
        if let (Some(p), Outcome::Acked) = (pending, outcome) {
            self.cards.push(Card {
                card_id: p.card_id.clone(),
                holder: p.holder.clone(),
                pin: p.pin.clone(),
                pending_pin: None,
                acked_failures: 0,
            });
        }
    }

    /// An enrolment not acknowledged: the card was stored (adopt it), or the
    /// code is used and must be refused, or it is unused and must still work.
    fn resolve_enrolment(&mut self, p: PendingEnrolment) -> Result<()> {
        if self.cards.iter().any(|c| c.card_id == p.card_id) {
            return Ok(());
        }
        let adopt = |p: &PendingEnrolment| Card {
            card_id: p.card_id.clone(),
            holder: p.holder.clone(),
            pin: p.pin.clone(),
            pending_pin: None,
            acked_failures: 0,
        };
        if checks::listed_cards(&self.daemon)?.contains(&p.card_id) {
            self.cards.push(adopt(&p));
            return Ok(());
        }
        let used = checks::code_used(self.ca.dir(), &p.card_id)?;
        let again = ops::enroll(
            &self.daemon,
            self.ca.url(),
            &self.ca.dir().join("root.pem"),
            &p.code,
            &p.pin,
        );
        match (used, &again) {
            (true, Outcome::Refused(_)) => self.report.enrolments_spent_by_kills += 1,
            (false, Outcome::Acked) => self.cards.push(adopt(&p)),
            (true, Outcome::Acked) => self.report.violation(format!(
                "card {}: a used enrolment code worked again",
                p.card_id
            )),
            (false, other) => self.report.violation(format!(
                "card {}: an unused enrolment code was refused after a crash: {other:?}",
                p.card_id
            )),
            (true, other) => self.report.unexpected_failures.push(format!(
                "re-enrolment with a used code of {}: {other:?}",
                p.card_id
            )),
        }
        Ok(())
    }
}
