//! Reading PINs for the CLI: from the terminal without echo (asked twice
//! when choosing one), or from standard input with `--pin-stdin`. Never
//! from an argument, so a PIN never shows in `ps`.

use std::io::BufRead;

use zeroize::Zeroizing;

use super::CliError;

/// Reads `n` lines from standard input (one PIN per line, trailing CR/LF removed).
pub fn read_stdin_lines(n: usize) -> Result<Vec<Zeroizing<String>>, CliError> {
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut line = Zeroizing::new(String::new());
        let read = lock.read_line(&mut line).map_err(|e| {
            CliError::PinEntry(format!("cannot read the PIN from standard input: {e}"))
        })?;
        if read == 0 {
            return Err(CliError::PinEntry(format!(
                "standard input ended before PIN line {} of {n}",
                i + 1
            )));
        }
        let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
        out.push(trimmed);
    }
    Ok(out)
}

/// Asks for a PIN on the terminal without echo.
pub fn prompt(text: &str) -> Result<Zeroizing<String>, CliError> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot ask for the PIN on a terminal ({e}); use --pin-stdin"
            ))
        })
}

/// Asks for a new PIN twice on the terminal; they must match.
pub fn prompt_new(what: &str) -> Result<Zeroizing<String>, CliError> {
    let first = prompt(&format!("{what}: "))?;
    let second = prompt(&format!("{what} again: "))?;
    if *first != *second {
        return Err(CliError::PinEntry(
            "the two PINs do not match; nothing changed".into(),
        ));
    }
    Ok(first)
}
