//! What `lanyard readers` reads from a PIV card (NIST SP 800-73-4): SELECT the
//! PIV application, GET DATA of the PIV Authentication certificate (5FC105) and
//! the certificate out of its container. Written over [`Transmit`], so the
//! APDU handling is tested without a reader.

use lanyard_piv::{PIV_AID, TAG_CERT_9A};

/// How many GET RESPONSE rounds one command may take (a certificate is a few KB).
const MAX_RESPONSE_ROUNDS: usize = 64;

/// Sends one command APDU and returns the response APDU (data and SW1 SW2).
pub trait Transmit {
    /// Sends `apdu`; the error says why the reader or card did not answer.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String>;
}

/// A response with its data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The data, all GET RESPONSE parts joined.
    pub data: Vec<u8>,
    /// SW1 SW2.
    pub sw: u16,
}

/// Sends a short-length command and collects a long answer: `61xx` asks for
/// GET RESPONSE, `6Cxx` for the same command with Le = xx.
pub fn exchange(card: &mut dyn Transmit, apdu: &[u8]) -> Result<Response, String> {
    let mut command = apdu.to_vec();
    let mut data = Vec::new();
    for _ in 0..MAX_RESPONSE_ROUNDS {
        let raw = card.transmit(&command)?;
        let (body, sw) = split_sw(&raw)?;
        data.extend_from_slice(body);
        match sw >> 8 {
            0x61 => command = vec![0x00, 0xC0, 0x00, 0x00, (sw & 0xFF) as u8],
            0x6C if command.len() > 4 => {
                let le = command.len() - 1;
                command[le] = (sw & 0xFF) as u8;
            }
            _ => return Ok(Response { data, sw }),
        }
    }
    Err(format!(
        "the card kept answering 'more data' after {MAX_RESPONSE_ROUNDS} GET RESPONSE rounds"
    ))
}

fn split_sw(raw: &[u8]) -> Result<(&[u8], u16), String> {
    match raw {
        [body @ .., sw1, sw2] => Ok((body, u16::from_be_bytes([*sw1, *sw2]))),
        _ => Err(format!(
            "the card answered {} byte(s), too short for a status word",
            raw.len()
        )),
    }
}

/// The PIV application as SELECT described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PivApplication {
    /// The application label (tag 50 of the application property template).
    pub label: Option<String>,
}

/// SELECT the PIV application: `None` when the card has none (anything but 9000).
pub fn select_piv(card: &mut dyn Transmit) -> Result<Option<PivApplication>, String> {
    let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, PIV_AID.len() as u8];
    apdu.extend_from_slice(&PIV_AID);
    apdu.push(0x00);
    let response = exchange(card, &apdu)?;
    if response.sw != 0x9000 {
        return Ok(None);
    }
    Ok(Some(PivApplication {
        label: application_label(&response.data),
    }))
}

/// The label (tag 50) inside the application property template (tag 61);
/// a template that does not parse simply has no label.
fn application_label(template: &[u8]) -> Option<String> {
    let (tag, mut rest, _) = read_tlv(template).ok()?;
    if tag != 0x61 {
        return None;
    }
    while !rest.is_empty() {
        let (tag, value, next) = read_tlv(rest).ok()?;
        if tag == 0x50 {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        rest = next;
    }
    None
}

/// The DER certificate of the PIV Authentication key (slot 9A), or `None`
/// when the card has none (6A82). Call after [`select_piv`].
pub fn read_authentication_certificate(card: &mut dyn Transmit) -> Result<Option<Vec<u8>>, String> {
    // GET DATA, tag list 5C 03 5FC105, Le = 256.
    let mut apdu = vec![0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03];
    apdu.extend_from_slice(&TAG_CERT_9A.to_be_bytes()[1..]);
    apdu.push(0x00);
    let response = exchange(card, &apdu)?;
    match response.sw {
        0x9000 => certificate_from_container(&response.data).map(Some),
        0x6A82 => Ok(None),
        sw => Err(format!(
            "GET DATA of the authentication certificate answered {sw:04X}"
        )),
    }
}

/// The certificate inside a PIV data object `53 { 70 cert, 71 info, FE lrc }`;
/// refused when it is compressed (71 = 01) or malformed.
pub fn certificate_from_container(object: &[u8]) -> Result<Vec<u8>, String> {
    let (tag, container, _) = read_tlv(object)?;
    if tag != 0x53 {
        return Err(format!(
            "the certificate object starts with tag {tag:02X}, not 53"
        ));
    }
    let mut rest = container;
    let mut certificate = None;
    while !rest.is_empty() {
        let (tag, value, next) = read_tlv(rest)?;
        match tag {
            0x70 => certificate = Some(value.to_vec()),
            0x71 if value.first().is_some_and(|info| info & 0x01 != 0) => {
                return Err("the certificate is stored compressed (CertInfo 01)".into())
            }
            _ => {}
        }
        rest = next;
    }
    certificate.ok_or_else(|| "the certificate object holds no certificate (tag 70)".into())
}

/// One BER-TLV: (tag, value, what follows). Tags of several bytes (5F50)
/// come back as one number.
fn read_tlv(buf: &[u8]) -> Result<(u32, &[u8], &[u8]), String> {
    let (&first_tag, mut rest) = buf
        .split_first()
        .ok_or("a data object ends before its tag")?;
    let mut tag = u32::from(first_tag);
    if first_tag & 0x1F == 0x1F {
        loop {
            let (&b, next) = rest
                .split_first()
                .ok_or("a data object's tag is cut short")?;
            rest = next;
            if tag > 0xFF_FFFF {
                return Err("a data object's tag is longer than 4 bytes".into());
            }
            tag = (tag << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or("a data object ends before its length")?;
    let (len, rest) = match first {
        0x00..=0x7F => (usize::from(first), rest),
        0x81..=0x83 => {
            let n = usize::from(first & 0x7F);
            if rest.len() < n {
                return Err("a data object's length is cut short".into());
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        }
        other => {
            return Err(format!(
                "a data object has an invalid length byte {other:02X}"
            ))
        }
    };
    if rest.len() < len {
        return Err(format!(
            "a data object of tag {tag:02X} claims {len} bytes but only {} follow",
            rest.len()
        ));
    }
    let (value, next) = rest.split_at(len);
    Ok((tag, value, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Answers with scripted responses and records the commands.
    struct Script {
        answers: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl Script {
        fn new(answers: &[&[u8]]) -> Script {
            Script {
                answers: answers.iter().map(|a| a.to_vec()).collect(),
                sent: Vec::new(),
            }
        }
    }

    impl Transmit for Script {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String> {
            self.sent.push(apdu.to_vec());
            self.answers
                .pop_front()
                .ok_or_else(|| "no more answers".to_string())
        }
    }

    fn container(cert: &[u8]) -> Vec<u8> {
        let mut inner = vec![0x70, 0x82, (cert.len() >> 8) as u8, cert.len() as u8];
        inner.extend_from_slice(cert);
        inner.extend_from_slice(&[0x71, 0x01, 0x00, 0xFE, 0x00]);
        let mut object = vec![0x53, 0x82, (inner.len() >> 8) as u8, inner.len() as u8];
        object.extend_from_slice(&inner);
        object
    }

    #[test]
    fn long_answers_are_collected_with_get_response() {
        let cert: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let object = container(&cert);
        let (first, second) = object.split_at(256);
        let mut a1 = first.to_vec();
        a1.extend_from_slice(&[0x61, (second.len() & 0xFF) as u8]);
        let mut a2 = second.to_vec();
        a2.extend_from_slice(&[0x90, 0x00]);
        let mut card = Script::new(&[&a1, &a2]);
        let got = read_authentication_certificate(&mut card).expect("reads");
        assert_eq!(got, Some(cert));
        assert_eq!(card.sent[0][..4], [0x00, 0xCB, 0x3F, 0xFF]);
        assert_eq!(
            card.sent[1],
            vec![0x00, 0xC0, 0x00, 0x00, second.len() as u8]
        );
    }

    #[test]
    fn wrong_le_is_resent_with_the_length_the_card_asks_for() {
        let mut card = Script::new(&[&[0x6C, 0x10], &[0x01, 0x02, 0x90, 0x00]]);
        let r = exchange(&mut card, &[0x00, 0xCA, 0x00, 0x00, 0x00]).expect("answers");
        assert_eq!(
            r,
            Response {
                data: vec![1, 2],
                sw: 0x9000
            }
        );
        assert_eq!(card.sent[1], vec![0x00, 0xCA, 0x00, 0x00, 0x10]);
    }

    #[test]
    fn select_sends_the_piv_aid_and_reads_the_label() {
        // 61 { 4F aid-part, 79 { 4F .. }, 50 "Lanyard PIV", 5F50 url }
        let mut apt = vec![
            0x61, 0x00, 0x4F, 0x06, 0, 0, 0x10, 0, 1, 0, 0x79, 0x02, 0x4F, 0x00,
        ];
        apt.extend_from_slice(&[0x50, 0x0B]);
        apt.extend_from_slice(b"Lanyard PIV");
        apt.extend_from_slice(&[0x5F, 0x50, 0x01, b'x', 0x90, 0x00]);
        apt[1] = (apt.len() - 4) as u8;
        let mut ok = Script::new(&[&apt]);
        let app = select_piv(&mut ok).expect("answers").expect("selected");
        assert_eq!(app.label.as_deref(), Some("Lanyard PIV"));
        assert_eq!(ok.sent[0][5..16], PIV_AID);
        let mut bare = Script::new(&[&[0x90, 0x00]]);
        assert_eq!(
            select_piv(&mut bare),
            Ok(Some(PivApplication { label: None }))
        );
        let mut no = Script::new(&[&[0x6A, 0x82]]);
        assert_eq!(select_piv(&mut no), Ok(None));
        // A GET RESPONSE answer without a status word is an error, not a panic.
        let mut broken = Script::new(&[&[0x61, 0x10], &[0x01]]);
        assert!(select_piv(&mut broken).is_err());
    }

    #[test]
    fn a_missing_certificate_is_none_and_other_errors_are_reported() {
        let mut none = Script::new(&[&[0x6A, 0x82]]);
        assert_eq!(read_authentication_certificate(&mut none), Ok(None));
        let mut denied = Script::new(&[&[0x69, 0x82]]);
        let err = read_authentication_certificate(&mut denied).expect_err("refused");
        assert!(err.contains("6982"), "{err}");
    }

    #[test]
    fn malformed_containers_are_refused_without_panicking() {
        assert!(certificate_from_container(&[]).is_err());
        assert!(certificate_from_container(&[0x53]).is_err());
        assert!(certificate_from_container(&[0x53, 0x82, 0x10]).is_err());
        assert!(certificate_from_container(&[0x53, 0x05, 0x70, 0x01]).is_err());
        assert!(certificate_from_container(&[0x54, 0x00]).is_err());
        assert!(certificate_from_container(&[0x53, 0x03, 0x71, 0x01, 0x00]).is_err());
        assert!(certificate_from_container(&[0x53, 0x84, 0, 0, 0, 1]).is_err());
        let compressed = [0x53, 0x06, 0x70, 0x01, 0xAA, 0x71, 0x01, 0x01];
        let err = certificate_from_container(&compressed).expect_err("compressed");
        assert!(err.contains("compressed"), "{err}");
        let plain = [0x53, 0x06, 0x70, 0x01, 0xAA, 0x71, 0x01, 0x00];
        assert_eq!(certificate_from_container(&plain), Ok(vec![0xAA]));
    }

    #[test]
    fn every_truncation_of_a_container_is_refused() {
        let object = container(&[0x30; 300]);
        assert_eq!(certificate_from_container(&object), Ok(vec![0x30; 300]));
        for cut in 0..object.len() {
            assert!(
                certificate_from_container(&object[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_endless_more_data_answer_stops() {
        let answers: Vec<&[u8]> = vec![&[0x61, 0x00]; MAX_RESPONSE_ROUNDS + 1];
        let mut card = Script::new(&answers);
        let err = exchange(&mut card, &[0, 0xCB, 0x3F, 0xFF, 0]).expect_err("stops");
        assert!(err.contains("GET RESPONSE"), "{err}");
    }
}
