//! A scripted pinentry for tests: a small /bin/sh program that speaks the
//! real Assuan protocol as Debian's pinentry does (greeting, OK to OPTION and
//! SET*, GETPIN answered with percent-escaped `D` data or an ERR), and logs
//! the commands it received so a test can check what the prompt showed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How the stand-in answers GETPIN.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The user typed this PIN and pressed OK.
    Pin(String),
    /// The user pressed Cancel: `ERR 83886179 Operation cancelled`.
    Cancel,
    /// The user never answers (the daemon's prompt timeout must end it).
    Silent,
    /// `D` data exactly as given (already escaped), then OK.
    RawData(String),
    /// The user answers with this PIN once the file `gate` exists.
    Gated { pin: String, gate: PathBuf },
}

/// A pinentry stand-in written to a directory.
pub struct PinentryStandIn {
    program: PathBuf,
    log: PathBuf,
}

/// Percent-escapes `text` as Assuan `D` lines carry data (`%`, CR, LF).
pub fn assuan_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

impl PinentryStandIn {
    /// Writes the program `pinentry-<name>` into `dir`, answering GETPIN with `answer`.
    pub fn new(dir: &Path, name: &str, answer: Answer) -> PinentryStandIn {
        let program = dir.join(format!("pinentry-{name}"));
        let log = dir.join(format!("pinentry-{name}.log"));
        let getpin = match &answer {
            // Single quotes in the script: the PIN must not contain one.
            Answer::Pin(pin) => {
                assert!(!pin.contains('\''), "test PINs have no quotes");
                format!("printf '%s\\n' 'D {}'; echo OK", assuan_escape(pin))
            }
            Answer::Cancel => "echo 'ERR 83886179 Operation cancelled <Pinentry>'".to_string(),
            // exec: killing the program kills the wait, nothing lingers.
            Answer::Silent => "exec sleep 600".to_string(),
            Answer::RawData(data) => {
                assert!(!data.contains('\''), "test data has no quotes");
                format!("printf '%s\\n' 'D {data}'; echo OK")
            }
            Answer::Gated { pin, gate } => format!(
                "while [ ! -e '{}' ]; do sleep 0.1; done; printf '%s\\n' 'D {}'; echo OK",
                gate.display(),
                assuan_escape(pin)
            ),
        };
        let script = format!(
            "#!/bin/sh\n\
             # Scripted pinentry (Assuan server side) for Lanyard's tests.\n\
             log='{log}'\n\
             echo 'OK Pleased to meet you'\n\
             while IFS= read -r line; do\n\
             \tprintf '%s\\n' \"$line\" >> \"$log\"\n\
             \tcase \"$line\" in\n\
             \t\tGETPIN) {getpin} ;;\n\
             \t\tBYE) echo 'OK closing connection'; exit 0 ;;\n\
             \t\t*) echo OK ;;\n\
             \tesac\n\
             done\n",
            log = log.display(),
        );
        std::fs::write(&program, script).expect("cannot write the pinentry stand-in");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .expect("cannot make the pinentry stand-in executable");
        PinentryStandIn { program, log }
    }

    /// The program, for `pinentry_program` in lanyardd.toml.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The commands received so far, one per line (empty if it never ran).
    pub fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// How many times GETPIN was asked.
    pub fn prompts(&self) -> usize {
        self.commands().iter().filter(|c| *c == "GETPIN").count()
    }

    /// The SETDESC texts received, unescaped (`%0A` as a newline).
    pub fn descriptions(&self) -> Vec<String> {
        self.commands()
            .iter()
            .filter_map(|c| c.strip_prefix("SETDESC "))
            .map(|d| d.replace("%0A", "\n").replace("%25", "%"))
            .collect()
    }
}
