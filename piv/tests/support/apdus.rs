//! Sending commands the way a PIV client does (OpenSC's transmit: chaining
//! over 255 bytes, GET RESPONSE after 61xx) and building the data fields
//! PIV commands carry.

use lanyard_piv::{Applet, PIV_AID};
use openssl::hash::{hash, MessageDigest};

use super::FakeCard;

/// Encodes a command in the short or extended form (ISO 7816-4 §5.1).
pub fn encode(header: [u8; 4], data: &[u8], ne: Option<usize>, extended: bool) -> Vec<u8> {
    let mut out = header.to_vec();
    if extended {
        if !data.is_empty() {
            out.push(0);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        if let Some(ne) = ne {
            if data.is_empty() {
                out.push(0);
            }
            out.extend_from_slice(&((ne % 65536) as u16).to_be_bytes());
        }
    } else {
        if !data.is_empty() {
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
        if let Some(ne) = ne {
            out.push((ne % 256) as u8);
        }
    }
    out
}

/// Builds a command APDU; `extended` forces the extended length form.
pub fn apdu(
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &[u8],
    le: Option<usize>,
    extended: bool,
) -> Vec<u8> {
    encode([cla, ins, p1, p2], data, le, extended)
}

/// Splits a response APDU into data and SW.
pub fn split(resp: &[u8]) -> (Vec<u8>, u16) {
    assert!(resp.len() >= 2, "response without status word");
    let (data, sw) = resp.split_at(resp.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

/// Sends like OpenSC's sc_transmit_apdu with SC_APDU_FLAGS_CHAINING on a
/// short-APDU reader: chains data over 255 bytes, then follows 61xx with
/// GET RESPONSE. Returns the data and the final SW.
pub fn transmit(
    applet: &mut Applet<FakeCard>,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &[u8],
    le: Option<usize>,
) -> (Vec<u8>, u16) {
    let mut chunks: Vec<&[u8]> = data.chunks(255).collect();
    let last = chunks.pop().unwrap_or(&[]);
    for chunk in chunks {
        let (d, sw) = split(&applet.process(&apdu(0x10, ins, p1, p2, chunk, None, false)));
        assert_eq!((d.len(), sw), (0, 0x9000), "chain part");
    }
    let (mut out, mut sw) = split(&applet.process(&apdu(0x00, ins, p1, p2, last, le, false)));
    while sw >> 8 == 0x61 {
        let n = match sw & 0xFF {
            0 => 256,
            n => n as usize,
        };
        let (more, next) = split(&applet.process(&apdu(0x00, 0xC0, 0, 0, &[], Some(n), false)));
        out.extend(more);
        sw = next;
    }
    (out, sw)
}

/// The status word of a command sent with Le 256.
pub fn status_of(applet: &mut Applet<FakeCard>, ins: u8, p1: u8, p2: u8, data: &[u8]) -> u16 {
    transmit(applet, ins, p1, p2, data, Some(256)).1
}

pub fn select(applet: &mut Applet<FakeCard>) -> (Vec<u8>, u16) {
    transmit(applet, 0xA4, 0x04, 0x00, &PIV_AID[..9], Some(256))
}

pub fn get_data(applet: &mut Applet<FakeCard>, tag: &[u8]) -> (Vec<u8>, u16) {
    let mut list = vec![0x5C, tag.len() as u8];
    list.extend_from_slice(tag);
    transmit(applet, 0xCB, 0x3F, 0xFF, &list, Some(256))
}

pub fn padded(pin: &[u8]) -> Vec<u8> {
    let mut p = pin.to_vec();
    p.resize(8, 0xFF);
    p
}

pub fn verify(applet: &mut Applet<FakeCard>, pin: &[u8]) -> u16 {
    transmit(applet, 0x20, 0x00, 0x80, &padded(pin), None).1
}

pub fn verify_state(applet: &mut Applet<FakeCard>) -> u16 {
    transmit(applet, 0x20, 0x00, 0x80, &[], None).1
}

pub fn ga_template(challenge: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00, 0x81];
    push_len(&mut inner, challenge.len());
    inner.extend_from_slice(challenge);
    let mut out = vec![0x7C];
    push_len(&mut out, inner.len());
    out.extend(inner);
    out
}

pub fn push_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

/// The signature inside 7C { 82 sig }.
pub fn signature_of(resp: &[u8]) -> Vec<u8> {
    assert_eq!(resp[0], 0x7C);
    let (outer_len_bytes, inner) = match resp[1] {
        0x81 => (2, &resp[3..]),
        0x82 => (3, &resp[4..]),
        _ => (1, &resp[2..]),
    };
    let _ = outer_len_bytes;
    assert_eq!(inner[0], 0x82);
    match inner[1] {
        0x81 => inner[3..].to_vec(),
        0x82 => inner[4..].to_vec(),
        n => inner[2..2 + n as usize].to_vec(),
    }
}

pub fn pkcs1_sha256_block(message: &[u8]) -> Vec<u8> {
    let mut digest_info = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    digest_info.extend_from_slice(&hash(MessageDigest::sha256(), message).expect("sha256"));
    let mut block = vec![0x00, 0x01];
    block.resize(256 - digest_info.len() - 1, 0xFF);
    block.push(0x00);
    block.extend(digest_info);
    block
}

pub fn new_applet(card: FakeCard) -> Applet<FakeCard> {
    let mut applet = Applet::new(card);
    applet.power_on();
    applet
}
