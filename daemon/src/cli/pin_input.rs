//! Reading PINs for the CLI: from the terminal without echo (asked twice
//! when choosing one), or from standard input with `--pin-stdin`. Never
//! from an argument, so a PIN never shows in `ps`; a one-time code given as
//! `--code -` is read from standard input for the same reason.

use std::io::Read;
use std::os::fd::AsFd;

use zeroize::Zeroizing;

use super::CliError;

/// Longest line accepted on standard input (a PIN or a code is far shorter).
const MAX_LINE: usize = 1024;

/// Reads `n` lines from standard input (one PIN per line, trailing CR/LF
/// removed). Unbuffered, a byte at a time, from a duplicate of descriptor 0,
/// into buffers allocated once and wiped: std's stdin buffer would keep the
/// PINs in memory (and in a core) after they were used, and would read past
/// the lines asked for.
pub fn read_stdin_lines(n: usize) -> Result<Vec<Zeroizing<String>>, CliError> {
    let failed = |e: std::io::Error| {
        CliError::PinEntry(format!("cannot read the PIN from standard input: {e}"))
    };
    let mut input = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(failed)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE));
        let mut byte = Zeroizing::new([0u8; 1]);
        let mut ended = false;
        loop {
            match input.read(byte.as_mut()) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if line.len() < MAX_LINE => line.push(byte[0]),
                Ok(_) => {
                    return Err(CliError::PinEntry(format!(
                        "line {} of standard input is longer than {MAX_LINE} bytes",
                        i + 1
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(failed(e)),
            }
        }
        if ended && line.is_empty() {
            return Err(CliError::PinEntry(format!(
                "standard input ended before PIN line {} of {n}",
                i + 1
            )));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = std::str::from_utf8(&line).map_err(|_| {
            CliError::PinEntry(format!("line {} of standard input is not UTF-8", i + 1))
        })?;
        out.push(Zeroizing::new(text.to_owned()));
    }
    Ok(out)
}

/// The one-time code of `--code ARG`: ARG itself, or with `-` the first line
/// of standard input (so the code is not in the command line `ps` shows).
pub fn code_arg(arg: &str, what: &str) -> Result<Zeroizing<String>, CliError> {
    if arg != "-" {
        return Ok(Zeroizing::new(arg.to_string()));
    }
    let mut lines = read_stdin_lines(1).map_err(|_| {
        CliError::Usage(format!(
            "--code -: cannot read the {what} from standard input"
        ))
    })?;
    let code = lines.remove(0);
    if code.trim().is_empty() {
        return Err(CliError::Usage(format!(
            "--code -: the first line of standard input is empty; it must be the {what}"
        )));
    }
    Ok(Zeroizing::new(code.trim().to_string()))
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
