//! The daemon's own PIN prompt for protected logins: runs the user's
//! pinentry program and speaks its Assuan protocol (greeting, OPTION,
//! SETTITLE/SETDESC/SETPROMPT, GETPIN), so the application never sees the
//! PIN. A cancel, a missing program or any failure to prompt is `Canceled`.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::pin::Pin;

/// Longest Assuan line accepted from the program (the protocol's limit is 1000 bytes).
const MAX_LINE: usize = 4096;
/// Room for one partial line and one read; never grown, so a PIN in it is never copied.
const BUFFER: usize = 2 * MAX_LINE;
/// Longest PIN data accepted from GETPIN, decoded.
const MAX_PIN_DATA: usize = 1024;
/// How long the program may take to exit after BYE before it is killed.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest SETDESC text sent, escaped (the protocol limits a line to 1000 bytes).
const MAX_DESC: usize = 900;

/// What the prompt shows.
#[derive(Debug, Clone)]
pub struct PromptText {
    /// Window title.
    pub title: String,
    /// The description: which card, for which application.
    pub description: String,
    /// The label next to the entry field.
    pub prompt: String,
}

/// Asks the user for a PIN through `program` (a path, or a name looked up
/// in PATH), giving up at `deadline`. The program inherits the daemon's
/// environment (DISPLAY, WAYLAND_DISPLAY, GPG_TTY, TERM, DBUS_SESSION_BUS_ADDRESS...).
pub async fn ask_pin(program: &str, text: &PromptText, deadline: Instant) -> Result<Pin> {
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::warn!(program, error = %e, "pinentry cannot be started; protected login cancelled");
            Error::Canceled(format!(
                "no PIN prompt could be shown: pinentry program {program:?} cannot be started ({e}); set pinentry_program in lanyardd.toml"
            ))
        })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Canceled(
            "no PIN prompt could be shown: pinentry has no pipes".into(),
        ));
    };
    let mut conversation = Assuan::new(stdin, stdout);
    let left = deadline.saturating_duration_since(Instant::now());
    let outcome = tokio::time::timeout_at(deadline, conversation.get_pin(text, left)).await;
    conversation.bye().await;
    finish(child).await;
    match outcome {
        Err(_) => {
            tracing::warn!(
                program,
                "PIN prompt not answered in time; protected login cancelled"
            );
            Err(Error::Canceled(format!(
                "the PIN prompt was not answered within {} s",
                left.as_secs()
            )))
        }
        Ok(Err(Failure::Cancelled(why))) => {
            tracing::info!(program, reply = %why, "PIN prompt cancelled");
            Err(Error::Canceled("the PIN prompt was cancelled".into()))
        }
        Ok(Err(Failure::Broken(why))) => {
            tracing::warn!(program, error = %why, "pinentry failed; protected login cancelled");
            Err(Error::Canceled(format!(
                "no PIN prompt could be shown: pinentry {why}"
            )))
        }
        Ok(Ok(pin)) => Ok(pin),
    }
}

/// Lets the program exit by itself after BYE, else kills it; either way it is reaped.
async fn finish(mut child: Child) {
    if tokio::time::timeout(EXIT_WAIT, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Why no PIN came back. Never holds PIN data.
#[derive(Debug)]
enum Failure {
    /// The program answered ERR (the user cancelled, or it timed out itself).
    Cancelled(String),
    /// The program could not be talked to: it exited, or broke the protocol.
    Broken(String),
}

/// One Assuan client conversation over the program's stdin and stdout.
struct Assuan {
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Bytes read and not yet split into lines; allocated once and wiped on drop.
    buffer: Zeroizing<Vec<u8>>,
}

/// One server line, classified.
enum Line {
    Ok,
    Err(String),
    /// `D` data, still percent-escaped.
    Data(Zeroizing<Vec<u8>>),
    Inquire,
    /// Status and comment lines, ignored.
    Other,
}

impl Assuan {
    fn new(stdin: ChildStdin, stdout: ChildStdout) -> Self {
        Assuan {
            stdin,
            stdout,
            buffer: Zeroizing::new(Vec::with_capacity(BUFFER)),
        }
    }

    /// The whole exchange: greeting, options, texts, GETPIN.
    async fn get_pin(
        &mut self,
        text: &PromptText,
        left: std::time::Duration,
    ) -> std::result::Result<Pin, Failure> {
        match self.read_line().await? {
            Line::Ok => {}
            Line::Err(e) => return Err(Failure::Broken(format!("refused to start: {e}"))),
            _ => return Err(Failure::Broken("did not greet with OK".into())),
        }
        for option in tty_options() {
            // Options a pinentry does not know are not fatal.
            self.command(&option).await?;
        }
        self.command(&format!("SETTITLE {}", escape(&text.title, MAX_DESC)))
            .await?;
        self.command(&format!("SETDESC {}", escape(&text.description, MAX_DESC)))
            .await?;
        self.command(&format!("SETPROMPT {}", escape(&text.prompt, MAX_DESC)))
            .await?;
        // The program's own timeout too, so its window goes away with ours.
        self.command(&format!("SETTIMEOUT {}", left.as_secs().max(1)))
            .await?;
        self.write_line("GETPIN").await?;
        let mut pin = Zeroizing::new(Vec::with_capacity(MAX_PIN_DATA));
        loop {
            match self.read_line().await? {
                Line::Data(data) => unescape_into(&data, &mut pin)?,
                Line::Ok => break,
                Line::Err(e) => return Err(Failure::Cancelled(e)),
                Line::Inquire => self.write_line("END").await?,
                Line::Other => {}
            }
        }
        let bytes = std::mem::take(&mut *pin);
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Pin::new(text)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(Failure::Broken("returned a PIN that is not UTF-8".into()))
            }
        }
    }

    /// Sends a command and waits for its OK or ERR (an ERR is not fatal).
    async fn command(&mut self, line: &str) -> std::result::Result<(), Failure> {
        self.write_line(line).await?;
        loop {
            match self.read_line().await? {
                Line::Ok | Line::Err(_) => return Ok(()),
                Line::Inquire => self.write_line("END").await?,
                Line::Data(_) | Line::Other => {}
            }
        }
    }

    /// Ends the conversation politely; the program may already be gone.
    async fn bye(&mut self) {
        let _ = self.write_line("BYE").await;
    }

    async fn write_line(&mut self, line: &str) -> std::result::Result<(), Failure> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let broken = |e: std::io::Error| Failure::Broken(format!("stopped reading ({e})"));
        self.stdin.write_all(&bytes).await.map_err(broken)?;
        self.stdin.flush().await.map_err(broken)
    }

    /// The next line from the program, without its line end.
    async fn read_line(&mut self) -> std::result::Result<Line, Failure> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line = Zeroizing::new(Vec::with_capacity(end));
                line.extend_from_slice(&self.buffer[..end]);
                self.buffer.drain(..=end);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(classify(line));
            }
            if self.buffer.len() >= MAX_LINE {
                return Err(Failure::Broken("sent a line that is too long".into()));
            }
            let mut chunk = Zeroizing::new([0u8; MAX_LINE]);
            let room = BUFFER - self.buffer.len();
            let n = self
                .stdout
                .read(&mut chunk[..room.min(MAX_LINE)])
                .await
                .map_err(|e| Failure::Broken(format!("cannot be read ({e})")))?;
            if n == 0 {
                return Err(Failure::Broken("exited without answering".into()));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Sorts a server line by its keyword.
fn classify(line: Zeroizing<Vec<u8>>) -> Line {
    let keyword_is = |k: &[u8]| {
        line.starts_with(k) && (line.len() == k.len() || line.get(k.len()) == Some(&b' '))
    };
    if keyword_is(b"OK") {
        Line::Ok
    } else if keyword_is(b"ERR") {
        // Code and description only, e.g. "83886179 Operation cancelled".
        let rest = line.get(4..).unwrap_or_default();
        Line::Err(String::from_utf8_lossy(rest).chars().take(200).collect())
    } else if keyword_is(b"D") {
        let mut data = Zeroizing::new(Vec::with_capacity(line.len().saturating_sub(2)));
        data.extend_from_slice(line.get(2..).unwrap_or_default());
        Line::Data(data)
    } else if keyword_is(b"INQUIRE") {
        Line::Inquire
    } else {
        Line::Other
    }
}

/// Decodes Assuan `D` data (`%XX` escapes) onto `out`, within its capacity.
fn unescape_into(data: &[u8], out: &mut Zeroizing<Vec<u8>>) -> std::result::Result<(), Failure> {
    let bad = || Failure::Broken("sent malformed PIN data".into());
    let mut i = 0;
    while i < data.len() {
        let byte = if data[i] == b'%' {
            let hex = data.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            i += 3;
            u8::from_str_radix(hex, 16).map_err(|_| bad())?
        } else {
            i += 1;
            data[i - 1]
        };
        if out.len() == out.capacity() {
            return Err(Failure::Broken("sent a PIN that is too long".into()));
        }
        out.push(byte);
    }
    Ok(())
}

/// Percent-escapes text for an Assuan command argument (`%`, CR, LF and
/// other control characters), cut to at most `max` bytes on a character boundary.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let piece = if c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            c.encode_utf8(&mut buf)
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// OPTION lines for a terminal pinentry, when the user's terminal is known
/// (GPG_TTY, as gpg-agent uses it): its name, type and character set.
fn tty_options() -> Vec<String> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty() && !v.chars().any(char::is_control))
    };
    let Some(tty) = var("GPG_TTY") else {
        return Vec::new();
    };
    let mut options = vec![format!("OPTION ttyname={tty}")];
    if let Some(term) = var("TERM") {
        options.push(format!("OPTION ttytype={term}"));
    }
    if let Some(ctype) = var("LC_ALL")
        .or_else(|| var("LC_CTYPE"))
        .or_else(|| var("LANG"))
    {
        options.push(format!("OPTION lc-ctype={ctype}"));
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_percent_and_line_ends_and_keeps_characters_whole() {
        assert_eq!(
            escape("100% Dr Ada\nSmith\r", 100),
            "100%25 Dr Ada%0ASmith%0D"
        );
        assert_eq!(escape("Zoë", 100), "Zoë");
        // 'ë' is two bytes: it does not fit in 3 after "Zo".
        assert_eq!(escape("Zoë", 3), "Zo");
        assert_eq!(escape("a\nb", 3), "a");
    }

    #[test]
    fn pin_data_is_unescaped_and_bounded() {
        let mut out = Zeroizing::new(Vec::with_capacity(8));
        unescape_into(b"12%2534", &mut out).unwrap();
        unescape_into(b"%0a", &mut out).unwrap();
        assert_eq!(out.as_slice(), b"12%34\n");
        for bad in [&b"12%2"[..], b"%zz", b"%"] {
            let mut out = Zeroizing::new(Vec::with_capacity(8));
            assert!(unescape_into(bad, &mut out).is_err());
        }
        let mut small = Zeroizing::new(Vec::with_capacity(2));
        assert!(unescape_into(b"123", &mut small).is_err());
    }

    #[test]
    fn lines_are_classified_by_keyword() {
        let line = |s: &str| classify(Zeroizing::new(s.as_bytes().to_vec()));
        assert!(matches!(line("OK"), Line::Ok));
        assert!(matches!(line("OK Pleased to meet you"), Line::Ok));
        assert!(matches!(line("OKAY"), Line::Other));
        assert!(
            matches!(line("ERR 83886179 Operation cancelled"), Line::Err(e) if e == "83886179 Operation cancelled")
        );
        assert!(matches!(line("D 12%2534"), Line::Data(d) if d.as_slice() == b"12%2534"));
        assert!(matches!(line("S PASSWORD_FROM_CACHE"), Line::Other));
        assert!(matches!(line("# comment"), Line::Other));
        assert!(matches!(line("INQUIRE QUALITY 1234"), Line::Inquire));
    }
}
