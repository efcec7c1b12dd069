//! Idle exit (`idle_exit` in lanyardd.toml, on by default when socket-activated):
//! the daemon stops once nothing needs it (no connection for the idle period,
//! no unlocked card, no renewal or check-in due, no PC/SC link); the socket unit starts it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lifecycle::now_unix;
use crate::state::Daemon;

/// Default idle period of a socket-activated daemon.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(600);

/// `[daemon]` in lanyardd.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonSection {
    /// Stop after this long idle ("10m", "90s", "0"/"off" = never). Unset:
    /// 10m when socket-activated, never when started by hand.
    pub idle_exit: Option<String>,
}

impl DaemonSection {
    /// Checks `idle_exit` parses.
    pub fn validate(&self) -> Result<(), String> {
        self.idle_exit.as_deref().map(parse_period).transpose()?;
        Ok(())
    }
}

/// The idle period in force: the flag, else the config, else 10m when
/// socket-activated and never otherwise (a daemon started by hand stays).
pub fn period(
    flag: Option<&str>,
    section: &DaemonSection,
    activated: bool,
) -> Result<Option<Duration>, String> {
    match flag.or(section.idle_exit.as_deref()) {
        Some(text) => parse_period(text),
        None => Ok(activated.then_some(DEFAULT_PERIOD)),
    }
}

/// What the daemon is doing now, as far as stopping is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleSnapshot {
    /// How long no agent connection has been open.
    pub quiet_for: Duration,
    /// Agent connections open now.
    pub open_connections: usize,
    /// Cards whose keys are in memory (logged in or `lanyard unlock`).
    pub unlocked_cards: usize,
    /// Seconds until the next planned renewal, if any (0 when due now).
    pub renewal_in: Option<u64>,
    /// Seconds until the next planned check-in, if any.
    pub check_in_in: Option<u64>,
    /// PC/SC reader links (vpcd) up now.
    pub pcsc_links: usize,
}

/// Whether to stop, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep running: the reason.
    Stay(&'static str),
    /// Stop: one line saying why.
    Exit(String),
}

/// The decision, over a snapshot: exit only when every condition holds.
pub fn decide(s: &IdleSnapshot, period: Duration) -> Verdict {
    let secs = period.as_secs();
    if s.open_connections > 0 {
        return Verdict::Stay("an agent connection is open");
    }
    if s.quiet_for < period {
        return Verdict::Stay("an agent connection was open within the idle period");
    }
    if s.unlocked_cards > 0 {
        return Verdict::Stay("a card is unlocked");
    }
    if s.pcsc_links > 0 {
        return Verdict::Stay("a PC/SC reader link is up");
    }
    if s.renewal_in.is_some_and(|t| t <= secs) {
        return Verdict::Stay("a renewal is due within the idle period");
    }
    if s.check_in_in.is_some_and(|t| t <= secs) {
        return Verdict::Stay("a check-in is due within the idle period");
    }
    Verdict::Exit(format!(
        "idle for {}: no agent connection, no unlocked card, no PC/SC link, and no renewal or \
         check-in due within that time",
        humanize(period)
    ))
}

/// Parses `idle_exit`: "0"/"off"/"never" (never), or a number with a unit
/// (s, m, h; several may follow each other, e.g. "1h30m"); a bare number is seconds.
pub fn parse_period(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if matches!(t, "0" | "off" | "never" | "false") {
        return Ok(None);
    }
    let bad = || {
        format!("idle_exit = {text:?} is not a duration like \"10m\", \"90s\", \"1h\" or \"off\"")
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        total = total
            .checked_add(number.parse().map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_secs(total)))
}

/// The period as it is written in the config ("10m", "90s").
pub fn humanize(period: Duration) -> String {
    let s = period.as_secs();
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Collects the daemon's snapshot; `quiet_for` comes from the watcher.
fn snapshot(daemon: &Daemon, quiet_for: Duration) -> IdleSnapshot {
    let now = now_unix();
    let unlocked_cards = daemon
        .all_cards(None)
        .iter()
        .filter(|c| daemon.unlocked_keys(&c.card_id).is_some())
        .count();
    let until = |at: i64| (at - now).max(0) as u64;
    let has_check_ins = !daemon.check_in_targets().is_empty();
    IdleSnapshot {
        quiet_for,
        open_connections: crate::server::open_connections(),
        unlocked_cards,
        renewal_in: daemon
            .renewal_plan(now)
            .into_iter()
            .map(|(_, at)| until(at))
            .min(),
        check_in_in: daemon
            .start_check_in()
            .next_check_in()
            .filter(|_| has_check_ins)
            .map(until),
        pcsc_links: crate::pcsc::links_up(),
    }
}

/// Returns (with the reason) once the daemon has been idle for `period`.
pub async fn watch(daemon: Arc<Daemon>, period: Duration) -> String {
    let poll = (period / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut quiet_since = Instant::now();
    let mut seen = crate::server::connections_accepted();
    let mut held_by = "";
    loop {
        tokio::time::sleep(poll).await;
        let accepted = crate::server::connections_accepted();
        if accepted != seen || crate::server::open_connections() > 0 {
            seen = accepted;
            quiet_since = Instant::now();
        }
        match decide(&snapshot(&daemon, quiet_since.elapsed()), period) {
            Verdict::Exit(why) => return why,
            // Quiet, yet held by something else: said once per reason.
            Verdict::Stay(why) if why != held_by && !why.contains("connection") => {
                tracing::info!(
                    reason = why,
                    "no agent connection for the idle period, but staying"
                );
                held_by = why;
            }
            Verdict::Stay(why) => {
                if why.contains("connection") {
                    held_by = "";
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(600);

    fn idle() -> IdleSnapshot {
        IdleSnapshot {
            quiet_for: PERIOD,
            open_connections: 0,
            unlocked_cards: 0,
            renewal_in: None,
            check_in_in: None,
            pcsc_links: 0,
        }
    }

    fn stays(s: IdleSnapshot, why: &str) {
        match decide(&s, PERIOD) {
            Verdict::Stay(reason) => assert!(reason.contains(why), "{reason}"),
            Verdict::Exit(e) => panic!("exited ({e}) for {s:?}"),
        }
    }

    #[test]
    fn a_quiet_daemon_exits_and_says_why() {
        let Verdict::Exit(why) = decide(&idle(), PERIOD) else {
            panic!("should exit");
        };
        assert!(why.contains("idle for 10m"), "{why}");
        // Renewal and check-in far away do not hold it.
        let later = IdleSnapshot {
            renewal_in: Some(601),
            check_in_in: Some(900),
            ..idle()
        };
        assert!(matches!(decide(&later, PERIOD), Verdict::Exit(_)));
    }

    #[test]
    fn an_open_or_recent_connection_holds_it() {
        stays(
            IdleSnapshot {
                open_connections: 1,
                ..idle()
            },
            "connection is open",
        );
        stays(
            IdleSnapshot {
                quiet_for: PERIOD - Duration::from_secs(1),
                ..idle()
            },
            "within the idle period",
        );
    }

    #[test]
    fn an_unlocked_card_holds_it() {
        stays(
            IdleSnapshot {
                unlocked_cards: 1,
                ..idle()
            },
            "unlocked",
        );
    }

    #[test]
    fn a_renewal_or_check_in_due_holds_it() {
        stays(
            IdleSnapshot {
                renewal_in: Some(0),
                ..idle()
            },
            "renewal",
        );
        stays(
            IdleSnapshot {
                check_in_in: Some(600),
                ..idle()
            },
            "check-in",
        );
    }

    #[test]
    fn a_pcsc_link_holds_it() {
        stays(
            IdleSnapshot {
                pcsc_links: 1,
                ..idle()
            },
            "PC/SC",
        );
    }

    #[test]
    fn on_by_default_only_when_socket_activated() {
        let none = DaemonSection::default();
        assert_eq!(period(None, &none, true), Ok(Some(DEFAULT_PERIOD)));
        assert_eq!(period(None, &none, false), Ok(None));
        let two = DaemonSection {
            idle_exit: Some("2m".into()),
        };
        assert_eq!(
            period(None, &two, false),
            Ok(Some(Duration::from_secs(120)))
        );
        assert_eq!(period(Some("off"), &two, true), Ok(None));
        assert_eq!(
            period(Some("5s"), &none, false),
            Ok(Some(Duration::from_secs(5)))
        );
        assert!(period(Some("x"), &none, true).is_err());
        let bad = DaemonSection {
            idle_exit: Some("x".into()),
        };
        assert!(bad.validate().is_err());
        assert!(two.validate().is_ok() && none.validate().is_ok());
    }

    #[test]
    fn periods_parse() {
        let secs = |t: &str| parse_period(t).unwrap().map(|d| d.as_secs());
        assert_eq!(secs("10m"), Some(600));
        assert_eq!(secs("90s"), Some(90));
        assert_eq!(secs("1h30m"), Some(5400));
        assert_eq!(secs(" 45 "), Some(45));
        for off in ["0", "off", "never", "0s"] {
            assert_eq!(secs(off), None, "{off}");
        }
        for bad in ["", "ten", "10x", "m", "-5m", "99999999999999999999h"] {
            let err = parse_period(bad).unwrap_err();
            assert!(err.contains("idle_exit"), "{bad}: {err}");
        }
        assert_eq!(humanize(Duration::from_secs(600)), "10m");
        assert_eq!(humanize(Duration::from_secs(7200)), "2h");
        assert_eq!(humanize(Duration::from_secs(90)), "90s");
    }
}
