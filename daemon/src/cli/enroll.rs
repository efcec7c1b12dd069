//! `lanyard enroll`: asks for the new card's PIN, then has the daemon
//! generate a key, get it certified by the CA and store the card.

use std::path::Path;
use std::time::Duration;

use lanyard_proto::agent::{request, response, Enroll, ErrorCode, KeyType};

use super::client::AgentClient;
use super::status::card_json;
use std::fmt::Write as _;

use super::{key_type_name, pin_input, print_out, rfc3339, CliError};

/// What `lanyard enroll` was asked to do.
pub struct EnrollArgs<'a> {
    /// `https://HOST:PORT` of the CA.
    pub ca_url: &'a str,
    /// PEM file the CA's TLS certificate must chain to.
    pub ca_cert: &'a Path,
    /// Enrolment code from the IT desk.
    pub code: &'a str,
    /// `rsa-2048` or `ec-p256`.
    pub key: &'a str,
    /// Read the PIN from the first line of stdin.
    pub pin_stdin: bool,
    /// Print JSON.
    pub json: bool,
}

/// Runs `lanyard enroll`.
pub fn run(socket: &Path, args: EnrollArgs<'_>) -> Result<(), CliError> {
    let key_type = match args.key {
        "rsa-2048" => KeyType::Rsa2048,
        "ec-p256" => KeyType::EcP256,
        other => {
            return Err(CliError::Usage(format!(
                "--key must be rsa-2048 or ec-p256, not {other:?}"
            )))
        }
    };
    let pem = std::fs::read(args.ca_cert).map_err(|e| {
        CliError::Usage(format!(
            "cannot read --ca-cert {}: {e}",
            args.ca_cert.display()
        ))
    })?;
    // Reach the daemon before asking for a PIN, so a stopped daemon is reported at once.
    let mut client = AgentClient::connect(socket)?;
    let pin = if args.pin_stdin {
        pin_input::read_stdin_lines(1)?.remove(0)
    } else {
        pin_input::prompt_new("Choose a PIN for the new card (digits)")?
    };
    // Key generation, Argon2id and the CA (with retries) take a while.
    client.set_timeout(Duration::from_secs(180))?;
    let body = request::Body::Enroll(Enroll {
        ca_url: args.ca_url.to_string(),
        ca_cert_pem: pem,
        code: args.code.to_string(),
        key_type: key_type as i32,
        pin: pin.to_string(),
    });
    drop(pin);
    let card = match client.call(body) {
        Ok(response::Body::Enroll(r)) => r
            .card
            .ok_or_else(|| CliError::Other("lanyardd returned no card".into()))?,
        Ok(_) => {
            return Err(CliError::Other(
                "lanyardd answered Enroll with something else".into(),
            ))
        }
        // Anything but a PIN problem is an enrolment failure for the exit code.
        Err(CliError::Agent { code, message })
            if !matches!(
                code,
                ErrorCode::PinIncorrect
                    | ErrorCode::PinLocked
                    | ErrorCode::PinLenRange
                    | ErrorCode::PinInvalid
            ) =>
        {
            return Err(CliError::Agent {
                code: ErrorCode::EnrollFailed,
                message: message_for(code, message),
            })
        }
        Err(e) => return Err(e),
    };
    if args.json {
        let text = serde_json::to_string_pretty(&card_json(&card))
            .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "Card {} enrolled in slot {}", card.card_id, card.slot);
    let _ = writeln!(out, "  holder:  {}", card.holder_name);
    let _ = writeln!(out, "  subject: {}", card.subject);
    let _ = writeln!(out, "  key:     {}", key_type_name(card.key_type));
    let _ = writeln!(out, "  expires: {}", rfc3339(card.not_after));
    print_out(&out)
}

fn message_for(code: ErrorCode, message: String) -> String {
    match code {
        ErrorCode::EnrollFailed | ErrorCode::CaUnavailable | ErrorCode::SlotsFull => message,
        _ => format!("enrolment failed: {message}"),
    }
}
