//! `lanyard readers`: the PC/SC readers pcscd knows, whether a card is in each
//! and, for a Lanyard or other PIV card, its holder and certificate expiry.
//! Talks to pcscd (libpcsclite), not to lanyardd; it resets no card.

mod piv_probe;

use std::ffi::CStr;
use std::fmt::Write as _;
use std::time::Duration;

use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use piv_probe::Transmit;

use super::{print_out, rfc3339, CliError};

/// One reader in `readers --json`.
#[derive(Debug, Serialize)]
pub struct ReaderJson {
    /// The reader's PC/SC name.
    name: String,
    /// Whether a card is in the reader.
    card_present: bool,
    /// The card's ATR in lower-case hex, or null without a card.
    atr: Option<String>,
    /// What the card is, or null without a card.
    card: Option<CardJson>,
    /// Why the card could not be read, or null.
    error: Option<String>,
}

/// What a card in a reader is.
#[derive(Debug, Serialize)]
pub struct CardJson {
    /// `lanyard` (a Lanyard virtual card), `piv` (another PIV card) or
    /// `unknown` (no PIV application).
    kind: &'static str,
    /// The PIV application's label, if the card gave one.
    application_label: Option<String>,
    /// The holder's name (the certificate's common name), if read.
    holder: Option<String>,
    /// The holder's user id (a Lanyard certificate's serialNumber), if any.
    user_id: Option<String>,
    /// The Lanyard card id, if any.
    card_id: Option<String>,
    /// The PIV Authentication certificate's subject, if read.
    certificate_subject: Option<String>,
    /// RFC 3339 end of that certificate's validity, if read.
    certificate_not_after: Option<String>,
}

/// Runs `lanyard readers`.
pub fn run(json: bool) -> Result<(), CliError> {
    let readers = list()?;
    if json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "readers": readers }))
            .map_err(|e| CliError::Other(format!("cannot write JSON: {e}")))?;
        return print_out(&format!("{text}\n"));
    }
    print_out(&describe(&readers))
}

/// Every reader with what is in it.
pub fn list() -> Result<Vec<ReaderJson>, CliError> {
    let ctx = Context::establish(Scope::User).map_err(pcsc_error)?;
    let names = match ctx.list_readers_owned() {
        Ok(names) => names,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(pcsc_error(e)),
    };
    Ok(names.iter().map(|name| inspect(&ctx, name)).collect())
}

fn inspect(ctx: &Context, name: &CStr) -> ReaderJson {
    let mut report = ReaderJson {
        name: name.to_string_lossy().into_owned(),
        card_present: false,
        atr: None,
        card: None,
        error: None,
    };
    let mut states = [ReaderState::new(name.to_owned(), State::UNAWARE)];
    if let Err(e) = ctx.get_status_change(Duration::ZERO, &mut states) {
        report.error = Some(format!("cannot read the reader's state: {e}"));
        return report;
    }
    let state = &states[0];
    if !state.event_state().contains(State::PRESENT) {
        return report;
    }
    report.card_present = true;
    let atr = state.atr().to_vec();
    report.atr = Some(hex::encode(&atr));
    let mut card = CardJson::unread(lanyard_piv::is_lanyard_atr(&atr));
    if let Err(why) = read_card(ctx, name, &mut card) {
        report.error = Some(why);
    }
    report.card = Some(card);
    report
}

impl CardJson {
    fn unread(lanyard: bool) -> CardJson {
        CardJson {
            kind: if lanyard { "lanyard" } else { "unknown" },
            application_label: None,
            holder: None,
            user_id: None,
            card_id: None,
            certificate_subject: None,
            certificate_not_after: None,
        }
    }
}

/// The card handle, left as it is on disconnect: a reset would end other
/// applications' PIN verification.
struct SharedCard(Option<pcsc::Card>);

impl Drop for SharedCard {
    fn drop(&mut self) {
        if let Some(card) = self.0.take() {
            let _ = card.disconnect(Disposition::LeaveCard);
        }
    }
}

/// Commands sent inside one PC/SC transaction, so another application's
/// APDUs cannot fall between a command and its GET RESPONSE.
struct InTransaction<'a>(&'a pcsc::Card);

impl Transmit for InTransaction<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        self.0
            .transmit(apdu, &mut buf)
            .map(<[u8]>::to_vec)
            .map_err(|e| format!("the card did not answer: {e}"))
    }
}

/// Fills `report` with what the card tells; on an error, `report` keeps
/// what was learnt before it.
fn read_card(ctx: &Context, name: &CStr, report: &mut CardJson) -> Result<(), String> {
    let card = ctx
        .connect(name, ShareMode::Shared, Protocols::ANY)
        .map_err(|e| format!("cannot connect to the card: {e}"))?;
    let mut shared = SharedCard(Some(card));
    let card = shared.0.as_mut().ok_or("the card connection is closed")?;
    // Ends (leaving the card as it is) when dropped, before the disconnect.
    let transaction = card
        .transaction()
        .map_err(|e| format!("cannot start a PC/SC transaction: {e}"))?;
    let mut link = InTransaction(&transaction);
    let Some(application) = piv_probe::select_piv(&mut link)? else {
        return Ok(());
    };
    let label = application.label;
    if label.as_deref().is_some_and(|l| l.contains("Lanyard")) {
        report.kind = "lanyard";
    } else if report.kind != "lanyard" {
        report.kind = "piv";
    }
    report.application_label = label;
    if let Some(der) = piv_probe::read_authentication_certificate(&mut link)? {
        describe_certificate(report, &der)?;
    }
    Ok(())
}

/// Fills holder and expiry from the PIV Authentication certificate: the
/// Lanyard card profile's fields when it is one, else the common name.
fn describe_certificate(report: &mut CardJson, der: &[u8]) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("the card's certificate is not valid DER X.509: {e}"))?;
    report.certificate_subject = Some(cert.subject().to_string());
    report.certificate_not_after = Some(rfc3339(cert.validity().not_after.timestamp()));
    match lanyard_certs::card_identity(der) {
        Ok(identity) => {
            report.holder = Some(identity.holder.holder_name);
            report.user_id = Some(identity.holder.user_id);
            report.card_id = Some(identity.holder.card_id);
        }
        Err(_) => {
            report.holder = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string);
        }
    }
    Ok(())
}

/// The text listing, one paragraph per reader.
fn describe(readers: &[ReaderJson]) -> String {
    let mut out = String::new();
    if readers.is_empty() {
        out.push_str("No PC/SC reader found (pcscd is running but has no reader).\n");
        return out;
    }
    for reader in readers {
        let _ = writeln!(out, "{}", reader.name);
        match (&reader.card, reader.card_present) {
            (_, false) => out.push_str("  no card\n"),
            (None, true) => out.push_str("  card present\n"),
            (Some(card), true) => {
                let what = match card.kind {
                    "lanyard" => "Lanyard virtual card",
                    "piv" => "PIV card",
                    _ => "card (not PIV)",
                };
                let _ = writeln!(out, "  {what}");
                if let Some(holder) = &card.holder {
                    let _ = writeln!(out, "  holder:      {holder}");
                }
                if let Some(user_id) = &card.user_id {
                    let _ = writeln!(out, "  user id:     {user_id}");
                }
                if let Some(card_id) = &card.card_id {
                    let _ = writeln!(out, "  card id:     {card_id}");
                }
                if let Some(not_after) = &card.certificate_not_after {
                    let _ = writeln!(out, "  certificate valid until {not_after}");
                }
            }
        }
        if let Some(atr) = &reader.atr {
            let _ = writeln!(out, "  ATR:         {atr}");
        }
        if let Some(error) = &reader.error {
            let _ = writeln!(out, "  could not read the card: {error}");
        }
    }
    out
}

/// pcscd's errors as the CLI's: no service is the one a person can fix.
fn pcsc_error(e: pcsc::Error) -> CliError {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => CliError::PcscUnavailable(
            "pcscd (the PC/SC smart card service) is not running: start it with `sudo \
                 systemctl start pcscd` (Debian package pcscd)"
                .into(),
        ),
        other => CliError::Other(format!("PC/SC error: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(name: &str, card: Option<CardJson>) -> ReaderJson {
        ReaderJson {
            name: name.into(),
            card_present: card.is_some(),
            atr: card.as_ref().map(|_| "3b8d01".into()),
            card,
            error: None,
        }
    }

    #[test]
    fn text_names_each_reader_and_what_is_in_it() {
        let mut card = CardJson::unread(true);
        card.holder = Some("Dr Ada Smith".into());
        card.certificate_not_after = Some("2027-01-01T00:00:00Z".into());
        let text = describe(&[reader("R0", Some(card)), reader("R1", None)]);
        assert!(
            text.contains("R0\n  Lanyard virtual card\n  holder:      Dr Ada Smith\n"),
            "{text}"
        );
        assert!(text.contains("valid until 2027-01-01T00:00:00Z"), "{text}");
        assert!(text.contains("R1\n  no card\n"), "{text}");
        assert!(describe(&[]).contains("No PC/SC reader"));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(reader("R1", None)).expect("serialises");
        for key in ["name", "card_present", "atr", "card", "error"] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["card_present"], false);
    }

    #[test]
    fn no_pcscd_is_its_own_exit_code_with_a_hint() {
        let e = pcsc_error(pcsc::Error::NoService);
        assert_eq!(e.exit_code(), super::super::exit::PCSC_UNAVAILABLE);
        assert!(e.to_string().contains("pcscd"), "{e}");
        assert_eq!(
            pcsc_error(pcsc::Error::InternalError).exit_code(),
            super::super::exit::OTHER
        );
    }

    #[test]
    fn a_certificate_that_is_not_der_is_reported() {
        let mut card = CardJson::unread(false);
        let err = describe_certificate(&mut card, &[0x30, 0x03, 0x01]).expect_err("refused");
        assert!(err.contains("X.509"), "{err}");
        assert!(card.holder.is_none());
    }
}
