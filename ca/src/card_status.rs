//! What anyone may know about a card (like OCSP, and the same facts as the
//! CRL): its lifecycle state, and whether a given certificate serial belongs
//! to it and is revoked or on hold. Read-only; needs no client certificate.

use lanyard_certs::{CertSerial, RevocationReason};
use time::OffsetDateTime;

use crate::card_id::CardId;
use crate::error::CaError;
use crate::store::{CardLifecycle, Store};

/// The status of one certificate serial asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialStatus {
    /// The serial is a certificate of this card.
    pub known: bool,
    /// When and why it is on the CRL (revoked, or on hold while the card is
    /// suspended); `None` if it is not.
    pub on_crl: Option<(i64, RevocationReason)>,
}

/// A card's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardStatusReport {
    /// The card.
    pub card_id: CardId,
    /// Its state.
    pub lifecycle: CardLifecycle,
    /// The serial asked about, if one was.
    pub serial: Option<SerialStatus>,
}

impl CardStatusReport {
    /// The revocation to report: the serial's when it is on the CRL, else the
    /// card's (a revoked card, or certificateHold since a suspension).
    pub fn revocation(&self) -> Option<(i64, RevocationReason)> {
        if let Some(on_crl) = self.serial.and_then(|s| s.on_crl) {
            return Some(on_crl);
        }
        match self.lifecycle {
            CardLifecycle::Revoked { at, reason } => Some((at, reason)),
            CardLifecycle::Suspended { since } => Some((since, RevocationReason::CertificateHold)),
            CardLifecycle::Issued | CardLifecycle::Active => None,
        }
    }
}

/// Parses an optional serial: empty for none, else 32 hex characters.
fn parse_serial(text: &str) -> Result<Option<String>, CaError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    CertSerial::from_hex(t)
        .map(|s| Some(s.to_hex()))
        .map_err(|_| {
            let shown: String = t.chars().take(48).collect();
            CaError::InvalidArgument(format!(
                "{shown:?} is not a certificate serial of this CA (32 hex characters)"
            ))
        })
}

/// The status of `card` and, if given, of its certificate `serial`.
pub async fn card_status(
    store: &Store,
    card: &str,
    serial: &str,
) -> Result<CardStatusReport, CaError> {
    let card_id = CardId::parse(card)?;
    let serial = parse_serial(serial)?;
    let state = store
        .card_state(&card_id)
        .await?
        .ok_or_else(|| CaError::UnknownCard(card_id.to_string()))?;
    let serial = match serial {
        None => None,
        Some(hex) => {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let status = match store.certificate(&hex).await? {
                Some(cert) if cert.card_id == card_id.as_str() => SerialStatus {
                    known: true,
                    on_crl: cert.revoked.or(match state.lifecycle {
                        CardLifecycle::Suspended { since } if cert.not_after > now => {
                            Some((since, RevocationReason::CertificateHold))
                        }
                        _ => None,
                    }),
                },
                _ => SerialStatus {
                    known: false,
                    on_crl: None,
                },
            };
            Some(status)
        }
    };
    Ok(CardStatusReport {
        card_id,
        lifecycle: state.lifecycle,
        serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_checked() {
        assert_eq!(parse_serial("  ").unwrap(), None);
        let hex = "1a2b3c4d5e6f708192a3b4c5d6e7f801";
        assert_eq!(parse_serial(hex).unwrap().as_deref(), Some(hex));
        assert_eq!(
            parse_serial(&hex.to_uppercase()).unwrap().as_deref(),
            Some(hex)
        );
        for bad in [
            "xyz",
            "1a2b",
            &format!("{hex}00"),
            "+a2b3c4d5e6f708192a3b4c5d6e7f801",
        ] {
            let err = parse_serial(bad).unwrap_err();
            assert!(matches!(err, CaError::InvalidArgument(_)), "{bad}");
            assert!(
                err.to_string().contains("not a certificate serial"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_serials_revocation_wins_over_the_cards() {
        let report = CardStatusReport {
            card_id: CardId::parse("0A1B2C3D4E5F").unwrap(),
            lifecycle: CardLifecycle::Suspended { since: 100 },
            serial: None,
        };
        assert_eq!(
            report.revocation(),
            Some((100, RevocationReason::CertificateHold))
        );
        let report = CardStatusReport {
            serial: Some(SerialStatus {
                known: true,
                on_crl: Some((50, RevocationReason::Superseded)),
            }),
            ..report
        };
        assert_eq!(
            report.revocation(),
            Some((50, RevocationReason::Superseded))
        );
    }
}
