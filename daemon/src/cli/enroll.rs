//! `lanyard enroll`: asks for the new card's PIN, then has the daemon
//! generate a key, get it certified by the CA and store the card. With
//! `--derive-from`, no code: the physical card (see `derive_proof`) signs
//! the CA's challenge between the daemon's DeriveBegin and DeriveFinish.

use std::path::Path;
use std::time::Duration;

use lanyard_proto::agent::{
    request, response, CardInfo, DeriveBegin, DeriveFinish, Enroll, ErrorCode, KeyType,
};

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
    /// Enrolment code from the IT desk (without `derive_from`; `-`: the first line of stdin).
    pub code: Option<&'a str>,
    /// RFC 7512 URI of the physical card's certificate (derived enrolment).
    pub derive_from: Option<&'a str>,
    /// The physical card's PKCS#11 module (default OpenSC's).
    pub module: Option<&'a Path>,
    /// PEM file of intermediate CA certificates above the physical card's.
    pub physical_chain: Option<&'a Path>,
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
    let card = match (args.code, args.derive_from) {
        (Some(code), None) => enroll_with_code(&mut client, &args, code, key_type, pem)?,
        (None, Some(uri)) => enroll_derived(&mut client, &args, uri, key_type, pem)?,
        _ => {
            return Err(CliError::Usage(
                "give either --code CODE or --derive-from 'pkcs11:…'".into(),
            ))
        }
    };
    print_card(&card, args.json)
}

fn enroll_with_code(
    client: &mut AgentClient,
    args: &EnrollArgs<'_>,
    code: &str,
    key_type: KeyType,
    pem: Vec<u8>,
) -> Result<CardInfo, CliError> {
    let code = pin_input::code_arg(code, "enrolment code")?;
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
        code: code.to_string(),
        key_type: key_type as i32,
        pin: pin.to_string(),
    });
    drop(pin);
    match client.call(body) {
        Ok(response::Body::Enroll(r)) => r
            .card
            .ok_or_else(|| CliError::Other("lanyardd returned no card".into())),
        Ok(_) => Err(CliError::Other(
            "lanyardd answered Enroll with something else".into(),
        )),
        Err(e) => Err(as_enrolment_failure(e)),
    }
}

/// Anything but a PIN problem is an enrolment failure for the exit code.
fn as_enrolment_failure(e: CliError) -> CliError {
    match e {
        CliError::Agent { code, message }
            if !matches!(
                code,
                ErrorCode::PinIncorrect
                    | ErrorCode::PinLocked
                    | ErrorCode::PinLenRange
                    | ErrorCode::PinInvalid
            ) =>
        {
            CliError::Agent {
                code: ErrorCode::EnrollFailed,
                message: message_for(code, message),
            }
        }
        e => e,
    }
}

/// The PEM certificates of `path`, DER.
fn read_chain(path: &Path) -> Result<Vec<Vec<u8>>, CliError> {
    let bytes = std::fs::read(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read --physical-chain {}: {e}",
            path.display()
        ))
    })?;
    let chain: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect();
    if chain.is_empty() {
        return Err(CliError::Usage(format!(
            "--physical-chain {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(chain)
}

/// Derived enrolment: the physical card proves who the clinician is.
fn enroll_derived(
    client: &mut AgentClient,
    args: &EnrollArgs<'_>,
    uri: &str,
    key_type: KeyType,
    pem: Vec<u8>,
) -> Result<CardInfo, CliError> {
    let chain = args
        .physical_chain
        .map(read_chain)
        .transpose()?
        .unwrap_or_default();
    let module = args
        .module
        .unwrap_or_else(|| Path::new(super::derive_proof::DEFAULT_MODULE));
    let physical = super::derive_proof::PhysicalCard::open(module, uri)?;
    let (physical_pin, pin) = if args.pin_stdin {
        let mut lines = pin_input::read_stdin_lines(2)?;
        let pin = lines.remove(1);
        (lines.remove(0), pin)
    } else {
        let physical_pin =
            pin_input::prompt(&format!("PIN of your smartcard {:?}: ", physical.token()))?;
        let pin = pin_input::prompt_new("Choose a PIN for the new virtual card (digits)")?;
        (physical_pin, pin)
    };
    physical.login(&physical_pin)?;
    drop(physical_pin);
    // Key generation and the CA (with retries) take a while.
    client.set_timeout(Duration::from_secs(180))?;
    let begun = match client.call(request::Body::DeriveBegin(DeriveBegin {
        ca_url: args.ca_url.to_string(),
        ca_cert_pem: pem,
        key_type: key_type as i32,
    })) {
        Ok(response::Body::DeriveBegin(r)) => r,
        Ok(_) => {
            return Err(CliError::Other(
                "lanyardd answered DeriveBegin with something else".into(),
            ))
        }
        Err(e) => return Err(as_enrolment_failure(e)),
    };
    let signature = physical.sign_proof(&begun.proof_message, &begun.proof_digest)?;
    let body = request::Body::DeriveFinish(DeriveFinish {
        pending_id: begun.pending_id,
        physical_certificate_der: physical.certificate_der().to_vec(),
        physical_chain_der: chain,
        proof_signature: signature,
        pin: pin.to_string(),
    });
    drop(pin);
    match client.call(body) {
        Ok(response::Body::DeriveFinish(r)) => r
            .card
            .ok_or_else(|| CliError::Other("lanyardd returned no card".into())),
        Ok(_) => Err(CliError::Other(
            "lanyardd answered DeriveFinish with something else".into(),
        )),
        Err(e) => Err(as_enrolment_failure(e)),
    }
}

fn print_card(card: &CardInfo, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string_pretty(&card_json(card))
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
