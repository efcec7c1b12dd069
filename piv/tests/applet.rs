//! The PIV application end to end over a fake card with real keys: what
//! OpenSC's PIV driver sends (SELECT, GET DATA with GET RESPONSE, VERIFY,
//! chained GENERAL AUTHENTICATE), signatures checked with OpenSSL, and every
//! refusal with its status word and nothing changed.

mod support;

use lanyard_piv::{atr, is_lanyard_atr, Applet, KeySlot, SignInput, PIV_AID};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer, Verifier};
use support::{FakeCard, MAX_TRIES, PIN};

/// Builds a command APDU; `extended` forces the extended length form.
fn apdu(
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &[u8],
    le: Option<usize>,
    extended: bool,
) -> Vec<u8> {
    let mut out = vec![cla, ins, p1, p2];
    if extended {
        if !data.is_empty() {
            out.push(0);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        if let Some(le) = le {
            if data.is_empty() {
                out.push(0);
            }
            out.extend_from_slice(&((le % 65536) as u16).to_be_bytes());
        }
    } else {
        if !data.is_empty() {
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
        if let Some(le) = le {
            out.push((le % 256) as u8);
        }
    }
    out
}

/// Splits a response APDU into data and SW.
fn split(resp: &[u8]) -> (Vec<u8>, u16) {
    assert!(resp.len() >= 2, "response without status word");
    let (data, sw) = resp.split_at(resp.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

/// Sends like OpenSC's sc_transmit_apdu with SC_APDU_FLAGS_CHAINING on a
/// short-APDU reader: chains data over 255 bytes, then follows 61xx with
/// GET RESPONSE. Returns the data and the final SW.
fn transmit(
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

fn select(applet: &mut Applet<FakeCard>) -> (Vec<u8>, u16) {
    transmit(applet, 0xA4, 0x04, 0x00, &PIV_AID[..9], Some(256))
}

fn get_data(applet: &mut Applet<FakeCard>, tag: &[u8]) -> (Vec<u8>, u16) {
    let mut list = vec![0x5C, tag.len() as u8];
    list.extend_from_slice(tag);
    transmit(applet, 0xCB, 0x3F, 0xFF, &list, Some(256))
}

fn padded(pin: &[u8]) -> Vec<u8> {
    let mut p = pin.to_vec();
    p.resize(8, 0xFF);
    p
}

fn verify(applet: &mut Applet<FakeCard>, pin: &[u8]) -> u16 {
    transmit(applet, 0x20, 0x00, 0x80, &padded(pin), None).1
}

fn verify_state(applet: &mut Applet<FakeCard>) -> u16 {
    transmit(applet, 0x20, 0x00, 0x80, &[], None).1
}

fn ga_template(challenge: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00, 0x81];
    push_len(&mut inner, challenge.len());
    inner.extend_from_slice(challenge);
    let mut out = vec![0x7C];
    push_len(&mut out, inner.len());
    out.extend(inner);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

/// The signature inside 7C { 82 sig }.
fn signature_of(resp: &[u8]) -> Vec<u8> {
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

fn pkcs1_sha256_block(message: &[u8]) -> Vec<u8> {
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

fn new_applet(card: FakeCard) -> Applet<FakeCard> {
    let mut applet = Applet::new(card);
    applet.power_on();
    applet
}

#[test]
fn atr_is_lanyards() {
    assert!(is_lanyard_atr(atr()));
}

#[test]
fn select_answers_the_template_for_the_piv_aid_only() {
    let mut applet = new_applet(FakeCard::ec_only());
    let (data, sw) = select(&mut applet);
    assert_eq!(sw, 0x9000);
    assert_eq!(&data[..2], &[0x61, data.len() as u8 - 2]);
    let (full, sw) = transmit(&mut applet, 0xA4, 0x04, 0x00, &PIV_AID, Some(256));
    assert_eq!((full, sw), (data.clone(), 0x9000));
    let (short, sw) = transmit(&mut applet, 0xA4, 0x04, 0x00, &PIV_AID[..5], Some(256));
    assert_eq!((short, sw), (data, 0x9000));
    let (none, sw) = transmit(&mut applet, 0xA4, 0x04, 0x0C, &PIV_AID[..9], None);
    assert_eq!((none.len(), sw), (0, 0x9000));
    // Other applications (OpenPGP, a CAC, the ISO MF) are not here.
    assert_eq!(
        transmit(
            &mut applet,
            0xA4,
            0x04,
            0x00,
            &[0xD2, 0x76, 0x00, 0x01, 0x24, 0x01],
            Some(256)
        )
        .1,
        0x6A82
    );
    assert_eq!(
        transmit(
            &mut applet,
            0xA4,
            0x04,
            0x00,
            &[0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00],
            Some(256)
        )
        .1,
        0x6A82
    );
    assert_eq!(
        transmit(&mut applet, 0xA4, 0x00, 0x0C, &[0x3F, 0x00], None).1,
        0x6A82
    );
    assert_eq!(
        transmit(&mut applet, 0xA4, 0x04, 0x02, &PIV_AID, Some(256)).1,
        0x6A86
    );
    assert_eq!(
        transmit(&mut applet, 0xA4, 0x07, 0x00, &PIV_AID, Some(256)).1,
        0x6A86
    );
}

#[test]
fn get_data_serves_discovery_chuid_and_certificates() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let (discovery, sw) = get_data(&mut applet, &[0x7E]);
    assert_eq!(sw, 0x9000);
    assert_eq!(discovery[0], 0x7E);
    assert!(discovery.windows(11).any(|w| w == PIV_AID));

    let (chuid, sw) = get_data(&mut applet, &[0x5F, 0xC1, 0x02]);
    assert_eq!(sw, 0x9000);
    assert_eq!(chuid[0], 0x53);
    assert!(
        chuid.windows(10).any(|w| w == b"\x35\x0820270630"),
        "expiry from the 9A certificate"
    );

    // 9A's certificate is longer than 256 bytes: 61xx and GET RESPONSE.
    let cert_9a = applet
        .backend()
        .key(KeySlot::Authentication)
        .cert_der
        .clone();
    let (object, sw) = get_data(&mut applet, &[0x5F, 0xC1, 0x05]);
    assert_eq!(sw, 0x9000);
    assert!(object.len() > 256);
    assert_eq!(
        lanyard_piv::certificate_from_container(&object),
        Some(&cert_9a[..])
    );

    let cert_9c = applet.backend().key(KeySlot::Signature).cert_der.clone();
    let (object, sw) = get_data(&mut applet, &[0x5F, 0xC1, 0x0A]);
    assert_eq!(sw, 0x9000);
    assert_eq!(
        lanyard_piv::certificate_from_container(&object),
        Some(&cert_9c[..])
    );

    // Objects this card does not hold: CCC, key history, 9D, 9E, printed info.
    for tag in [
        [0x5F, 0xC1, 0x07],
        [0x5F, 0xC1, 0x0C],
        [0x5F, 0xC1, 0x0B],
        [0x5F, 0xC1, 0x01],
        [0x5F, 0xC1, 0x09],
    ] {
        assert_eq!(
            get_data(&mut applet, &tag),
            (Vec::new(), 0x6A82),
            "{tag:02X?}"
        );
    }
}

#[test]
fn get_data_in_one_extended_response_when_le_is_extended() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let list = [0x5C, 0x03, 0x5F, 0xC1, 0x05];
    let (data, sw) =
        split(&applet.process(&apdu(0x00, 0xCB, 0x3F, 0xFF, &list, Some(65536), true)));
    assert_eq!(sw, 0x9000);
    let cert = applet
        .backend()
        .key(KeySlot::Authentication)
        .cert_der
        .clone();
    assert_eq!(
        lanyard_piv::certificate_from_container(&data),
        Some(&cert[..])
    );
}

#[test]
fn get_data_refusals() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(
        get_data(&mut applet, &[0x5F, 0xC1, 0x0A]).1,
        0x6A82,
        "no 9C key"
    );
    assert_eq!(
        transmit(
            &mut applet,
            0xCB,
            0x00,
            0x00,
            &[0x5C, 0x01, 0x7E],
            Some(256)
        )
        .1,
        0x6A86
    );
    assert_eq!(
        transmit(
            &mut applet,
            0xCB,
            0x3F,
            0xFF,
            &[0x5C, 0x05, 0x7E],
            Some(256)
        )
        .1,
        0x6A80
    );
    assert_eq!(
        transmit(
            &mut applet,
            0xCB,
            0x3F,
            0xFF,
            &[0x4F, 0x01, 0x7E],
            Some(256)
        )
        .1,
        0x6A80
    );
    applet.backend_mut().inserted = false;
    assert_eq!(
        get_data(&mut applet, &[0x5F, 0xC1, 0x05]).1,
        0x6A82,
        "no card, no certificate"
    );
}

#[test]
fn get_response_needs_something_pending() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(
        split(&applet.process(&[0x00, 0xC0, 0x00, 0x00, 0x00])).1,
        0x6985
    );
    // Pending data is dropped by any other command.
    let first = applet.process(&apdu(
        0x00,
        0xCB,
        0x3F,
        0xFF,
        &[0x5C, 0x03, 0x5F, 0xC1, 0x05],
        Some(16),
        false,
    ));
    assert_eq!(split(&first).1 >> 8, 0x61);
    assert_eq!(verify_state(&mut applet), 0x63C3);
    assert_eq!(
        split(&applet.process(&[0x00, 0xC0, 0x00, 0x00, 0x00])).1,
        0x6985
    );
}

#[test]
fn verify_counts_wrong_pins_and_reports_state() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(verify_state(&mut applet), 0x63C0 | u16::from(MAX_TRIES));
    assert_eq!(verify(&mut applet, b"000000"), 0x63C2);
    assert_eq!(verify_state(&mut applet), 0x63C2);
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    assert_eq!(verify_state(&mut applet), 0x9000);
    // P1=FF ends the verified state.
    assert_eq!(transmit(&mut applet, 0x20, 0xFF, 0x80, &[], None).1, 0x9000);
    assert_eq!(verify_state(&mut applet), 0x63C3);
    // So does selecting the application again (a new client), but not a
    // failed selection of another application.
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    assert_eq!(
        transmit(
            &mut applet,
            0xA4,
            0x04,
            0x00,
            &[0xA0, 0x00, 0x00, 0x03, 0x97],
            Some(256)
        )
        .1,
        0x6A82
    );
    assert_eq!(verify_state(&mut applet), 0x9000);
    assert_eq!(select(&mut applet).1, 0x9000);
    assert_eq!(verify_state(&mut applet), 0x63C3);
    // So does power off.
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    applet.power_off();
    applet.power_on();
    assert_eq!(verify_state(&mut applet), 0x63C3);
}

#[test]
fn malformed_pins_are_refused_without_counting() {
    let mut applet = new_applet(FakeCard::ec_only());
    for bad in [
        apdu(0x00, 0x20, 0x00, 0x80, b"123456", None, false),
        apdu(0x00, 0x20, 0x00, 0x80, b"123456789", None, false),
        apdu(0x00, 0x20, 0x00, 0x80, b"12ab56\xFF\xFF", None, false),
        apdu(
            0x00,
            0x20,
            0x00,
            0x80,
            b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
            None,
            false,
        ),
        apdu(0x00, 0x20, 0x00, 0x80, b"1234\xFF\xFF56", None, false),
    ] {
        assert_eq!(split(&applet.process(&bad)).1, 0x6A80, "{bad:02X?}");
    }
    assert_eq!(applet.backend().verify_calls, 0);
    assert_eq!(applet.backend().tries_left, MAX_TRIES);
    // Other references (global PIN, PUK) do not exist here.
    assert_eq!(
        transmit(&mut applet, 0x20, 0x00, 0x00, &padded(PIN), None).1,
        0x6A88
    );
    assert_eq!(
        transmit(&mut applet, 0x20, 0x00, 0x81, &padded(PIN), None).1,
        0x6A88
    );
    assert_eq!(
        split(&applet.process(&apdu(0x10, 0x20, 0x00, 0x80, &padded(PIN), None, false))).1,
        0x6884
    );
    assert_eq!(applet.backend().verify_calls, 0);
}

#[test]
fn three_wrong_pins_block() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(verify(&mut applet, b"111111"), 0x63C2);
    assert_eq!(verify(&mut applet, b"222222"), 0x63C1);
    assert_eq!(verify(&mut applet, b"333333"), 0x6983);
    assert_eq!(verify_state(&mut applet), 0x6983);
    assert_eq!(verify(&mut applet, PIN), 0x6983);
}

#[test]
fn rsa_9a_signs_a_chained_pkcs1_block_after_verify() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let message = b"GET /patients/42 HTTP/1.1";
    let template = ga_template(&pkcs1_sha256_block(message));
    assert!(template.len() > 255, "needs chaining");

    assert_eq!(
        transmit(&mut applet, 0x87, 0x07, 0x9A, &template, Some(256)).1,
        0x6982
    );
    assert!(
        applet.backend().signed.is_empty(),
        "refused before the backend"
    );

    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let (resp, sw) = transmit(&mut applet, 0x87, 0x07, 0x9A, &template, Some(256));
    assert_eq!(sw, 0x9000);
    let sig = signature_of(&resp);
    assert_eq!(sig.len(), 256);
    let key = applet.backend().key(KeySlot::Authentication).pkey.clone();
    let mut v = Verifier::new(MessageDigest::sha256(), &key).expect("verifier");
    v.update(message).expect("update");
    assert!(
        v.verify(&sig).expect("verify"),
        "PKCS#1 v1.5 signature verifies"
    );
    assert!(matches!(
        applet.backend().signed.last(),
        Some((KeySlot::Authentication, SignInput::RsaPkcs1 { .. }, None))
    ));

    // The login lasts for the session: a second signature needs no VERIFY.
    assert_eq!(
        transmit(&mut applet, 0x87, 0x07, 0x9A, &template, Some(256)).1,
        0x9000
    );
}

#[test]
fn rsa_9a_signs_a_pss_encoding() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let message = b"TLS 1.3 CertificateVerify";
    let key = applet.backend().key(KeySlot::Authentication).pkey.clone();
    // A client's EM: what an RSA-PSS signature opens to with the public key.
    let mut s = Signer::new(MessageDigest::sha256(), &key).expect("signer");
    s.set_rsa_padding(Padding::PKCS1_PSS).expect("pss");
    s.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
        .expect("salt");
    s.update(message).expect("update");
    let reference = s.sign_to_vec().expect("sign");
    let mut em = vec![0u8; 256];
    key.rsa()
        .expect("rsa")
        .public_decrypt(&reference, &mut em, Padding::NONE)
        .expect("open");

    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let (resp, sw) = transmit(&mut applet, 0x87, 0x07, 0x9A, &ga_template(&em), Some(256));
    assert_eq!(sw, 0x9000);
    let sig = signature_of(&resp);
    let mut v = Verifier::new(MessageDigest::sha256(), &key).expect("verifier");
    v.set_rsa_padding(Padding::PKCS1_PSS).expect("pss");
    v.update(message).expect("update");
    assert!(v.verify(&sig).expect("verify"), "PSS signature verifies");
}

#[test]
fn rsa_refuses_raw_data_and_never_reaches_the_key() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let mut ciphertext_like = vec![0x42u8; 256];
    ciphertext_like[0] = 0x00;
    for input in [
        ciphertext_like,
        vec![0x00; 256],
        vec![0x01; 32],
        pkcs1_sha256_block(b"x")[1..].to_vec(),
    ] {
        assert_eq!(
            transmit(
                &mut applet,
                0x87,
                0x07,
                0x9A,
                &ga_template(&input),
                Some(256)
            )
            .1,
            0x6A80
        );
    }
    assert!(applet.backend().signed.is_empty());
}

#[test]
fn ec_9c_needs_the_pin_immediately_before_every_signature() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let digest = hash(MessageDigest::sha256(), b"prescription 1").expect("hash");
    let template = ga_template(&digest);

    // Logged in for the session is not enough for 9C.
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    assert_eq!(verify_state(&mut applet), 0x9000);
    assert_eq!(
        transmit(&mut applet, 0x87, 0x11, 0x9C, &template, Some(256)).1,
        0x6982
    );

    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let (resp, sw) = transmit(&mut applet, 0x87, 0x11, 0x9C, &template, Some(256));
    assert_eq!(sw, 0x9000);
    let sig = EcdsaSig::from_der(&signature_of(&resp)).expect("DER ECDSA signature");
    let ec = applet
        .backend()
        .key(KeySlot::Signature)
        .pkey
        .ec_key()
        .expect("ec");
    assert!(sig.verify(&digest, &ec).expect("verify"));
    assert!(
        matches!(applet.backend().signed.last(), Some((KeySlot::Signature, _, Some(p))) if p == PIN)
    );

    // Used once: the next signature needs another VERIFY.
    assert_eq!(
        transmit(&mut applet, 0x87, 0x11, 0x9C, &template, Some(256)).1,
        0x6982
    );
    // Any command in between drops it.
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    assert_eq!(get_data(&mut applet, &[0x7E]).1, 0x9000);
    assert_eq!(
        transmit(&mut applet, 0x87, 0x11, 0x9C, &template, Some(256)).1,
        0x6982
    );
    // A wrong PIN authorises nothing.
    assert_eq!(verify(&mut applet, b"999999"), 0x63C2);
    assert_eq!(
        transmit(&mut applet, 0x87, 0x11, 0x9C, &template, Some(256)).1,
        0x6982
    );
    assert_eq!(applet.backend().signed.len(), 1);
}

#[test]
fn ec_9a_signs_digests_of_any_sha_size() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let ec = applet
        .backend()
        .key(KeySlot::Authentication)
        .pkey
        .ec_key()
        .expect("ec");
    for md in [
        MessageDigest::sha1(),
        MessageDigest::sha256(),
        MessageDigest::sha384(),
    ] {
        let digest = hash(md, b"ssh session id").expect("hash");
        let (resp, sw) = transmit(
            &mut applet,
            0x87,
            0x11,
            0x9A,
            &ga_template(&digest),
            Some(256),
        );
        assert_eq!(sw, 0x9000);
        let sig = EcdsaSig::from_der(&signature_of(&resp)).expect("DER");
        // ECDSA over the hash's leftmost 256 bits, as OpenSSL verifies it.
        assert!(
            sig.verify(&digest, &ec).expect("verify"),
            "{}",
            digest.len()
        );
    }
}

#[test]
fn general_authenticate_refusals() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let digest = [7u8; 32];
    let t = ga_template(&digest);
    assert_eq!(
        transmit(&mut applet, 0x87, 0x07, 0x9A, &t, Some(256)).1,
        0x6A86,
        "RSA on an EC key"
    );
    assert_eq!(
        transmit(&mut applet, 0x87, 0x14, 0x9A, &t, Some(256)).1,
        0x6A86,
        "P-384"
    );
    assert_eq!(
        transmit(&mut applet, 0x87, 0x11, 0x9C, &t, Some(256)).1,
        0x6A88,
        "no 9C key"
    );
    assert_eq!(
        transmit(&mut applet, 0x87, 0x11, 0x9D, &t, Some(256)).1,
        0x6A86,
        "key management"
    );
    // OpenSC's GET CHALLENGE: 9B, 7C { 81 00 }; 6A86 twice is "not supported" to it.
    assert_eq!(
        transmit(
            &mut applet,
            0x87,
            0x00,
            0x9B,
            &[0x7C, 0x02, 0x81, 0x00],
            Some(256)
        )
        .1,
        0x6A86
    );
    // ECDH (85) is not offered; a template without 82 00 is wrong data.
    assert_eq!(
        transmit(
            &mut applet,
            0x87,
            0x11,
            0x9A,
            &[0x7C, 0x06, 0x82, 0x00, 0x85, 0x02, 1, 2],
            Some(256)
        )
        .1,
        0x6A80
    );
    assert_eq!(
        transmit(
            &mut applet,
            0x87,
            0x11,
            0x9A,
            &[0x7C, 0x03, 0x81, 0x01, 0x01],
            Some(256)
        )
        .1,
        0x6A80
    );
    assert!(applet.backend().signed.is_empty());
    applet.backend_mut().inserted = false;
    assert_eq!(
        transmit(&mut applet, 0x87, 0x11, 0x9A, &t, Some(256)).1,
        0x6A88,
        "no card"
    );
}

#[test]
fn one_extended_general_authenticate() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let message = b"extended";
    let cmd = apdu(
        0x00,
        0x87,
        0x07,
        0x9A,
        &ga_template(&pkcs1_sha256_block(message)),
        Some(65536),
        true,
    );
    let (resp, sw) = split(&applet.process(&cmd));
    assert_eq!(sw, 0x9000);
    let key = &applet.backend().key(KeySlot::Authentication).pkey;
    let mut v = Verifier::new(MessageDigest::sha256(), key).expect("verifier");
    v.update(message).expect("update");
    assert!(v.verify(&signature_of(&resp)).expect("verify"));
}

#[test]
fn a_broken_chain_is_dropped() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let template = ga_template(&pkcs1_sha256_block(b"m"));
    let first = apdu(0x10, 0x87, 0x07, 0x9A, &template[..255], None, false);
    assert_eq!(split(&applet.process(&first)).1, 0x9000);
    // Another command arrives: the chain is gone, the tail alone is wrong.
    assert_eq!(verify_state(&mut applet), 0x9000);
    let tail = apdu(0x00, 0x87, 0x07, 0x9A, &template[255..], Some(256), false);
    assert_eq!(split(&applet.process(&tail)).1, 0x6A80);
    // Chains longer than any command are refused.
    for _ in 0..16 {
        applet.process(&apdu(0x10, 0x87, 0x07, 0x9A, &[0u8; 255], None, false));
    }
    assert_eq!(
        split(&applet.process(&apdu(0x10, 0x87, 0x07, 0x9A, &[0u8; 255], None, false))).1,
        0x6700
    );
    assert!(applet.backend().signed.is_empty());
}

#[test]
fn what_other_drivers_send_is_answered_cleanly() {
    let mut applet = new_applet(FakeCard::ec_only());
    // YubiKey GET VERSION / GET SERIAL, GET CHALLENGE (ISO), READ BINARY.
    for cmd in [
        &[0x00, 0xFD, 0x00, 0x00, 0x03][..],
        &[0x00, 0xF8, 0x00, 0x00],
        &[0x00, 0x84, 0x00, 0x00, 0x08],
        &[0x00, 0xB0, 0x00, 0x00, 0x00],
    ] {
        assert_eq!(applet.process(cmd), [0x6D, 0x00], "{cmd:02X?}");
    }
    // PIV commands this card does not offer.
    assert_eq!(
        applet.process(&apdu(0x00, 0x24, 0x00, 0x80, &[0x31; 16], None, false)),
        [0x6A, 0x81]
    );
    assert_eq!(
        applet.process(&apdu(
            0x00,
            0x47,
            0x00,
            0x9A,
            &[0xAC, 0x03, 0x80, 0x01, 0x11],
            Some(256),
            false
        )),
        [0x6A, 0x81]
    );
    assert_eq!(applet.process(&[0x80, 0xCA, 0x00, 0x00]), [0x6E, 0x00]);
    assert_eq!(applet.process(&[0x0C, 0xA4, 0x04, 0x00]), [0x68, 0x82]);
    assert_eq!(applet.process(&[0x00, 0xA4]), [0x67, 0x00]);
    assert_eq!(
        applet.process(&[0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0]),
        [0x67, 0x00]
    );
}
