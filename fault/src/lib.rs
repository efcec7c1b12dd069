//! Named fault-injection points: `LANYARD_FAULT=NAME[:N]` makes a test build
//! SIGKILL itself at the N-th (default first) time it reaches point NAME, as a
//! power cut or `kill -9` there would. Without the `enabled` feature `hit` does nothing.

#![forbid(unsafe_code)]

/// The environment variable naming the point (and hit number) to die at.
#[cfg(feature = "enabled")]
pub const VARIABLE: &str = "LANYARD_FAULT";

/// Marks fault point `name`: kills this process with SIGKILL when
/// `LANYARD_FAULT` names it and this is the requested hit. No-op in shipped builds.
#[inline(always)]
pub fn hit(name: &str) {
    #[cfg(feature = "enabled")]
    enabled::hit(name);
    #[cfg(not(feature = "enabled"))]
    let _ = name;
}

/// Whether this build honours `LANYARD_FAULT` (test builds only).
pub const fn enabled() -> bool {
    cfg!(feature = "enabled")
}

/// A parsed `NAME[:N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The fault point's name, e.g. `card.write.before_rename`.
    pub name: String,
    /// Which hit kills (1 = the first).
    pub nth: u64,
}

/// Parses `NAME[:N]` (N ≥ 1); a clear message for anything else.
pub fn parse(text: &str) -> Result<Spec, String> {
    let (name, nth) = match text.rsplit_once(':') {
        Some((name, n)) => {
            let nth =
                n.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("`{text}`: the hit number after ':' must be 1 or more")
                })?;
            (name, nth)
        }
        None => (text, 1),
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_');
    if !valid {
        return Err(format!(
            "`{text}`: a fault point is lower-case letters, digits, '.' and '_'"
        ));
    }
    Ok(Spec {
        name: name.to_string(),
        nth,
    })
}

#[cfg(feature = "enabled")]
mod enabled {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use super::{parse, Spec, VARIABLE};

    fn spec() -> Option<&'static Spec> {
        static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
        SPEC.get_or_init(|| {
            let text = std::env::var(VARIABLE).ok()?;
            match parse(&text) {
                Ok(spec) => Some(spec),
                Err(e) => {
                    // A test set it wrongly: say so, inject nothing.
                    eprintln!("{VARIABLE} ignored: {e}");
                    None
                }
            }
        })
        .as_ref()
    }

    pub fn hit(name: &str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        let Some(spec) = spec() else { return };
        if spec.name != name {
            return;
        }
        let n = HITS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == spec.nth {
            eprintln!("{VARIABLE}: fault point {name} hit {n}: SIGKILL");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            // SIGKILL cannot be caught; should raise fail, never go on past the point.
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hit_numbers_parse() {
        assert_eq!(
            parse("card.write.before_rename").unwrap(),
            Spec {
                name: "card.write.before_rename".into(),
                nth: 1
            }
        );
        assert_eq!(
            parse("pin.check.after_count:3").unwrap(),
            Spec {
                name: "pin.check.after_count".into(),
                nth: 3
            }
        );
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        for bad in ["", ":2", "a:0", "a:x", "a:-1", "A.b", "a b", "a;rm"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
