//! SELECT, GET DATA (with GET RESPONSE or one extended response) and what
//! other card drivers send, over a fake card with real certificates.

mod support;

use lanyard_piv::{atr, is_lanyard_atr, KeySlot, PIV_AID};
use support::apdus::*;
use support::FakeCard;

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
    // Other applications (OpenPGP, a CAC, the ISO MF) are not here; bad P1/P2.
    let cases: [(u8, u8, &[u8], u16); 5] = [
        (0x04, 0x00, &[0xD2, 0x76, 0x00, 0x01, 0x24, 0x01], 0x6A82),
        (
            0x04,
            0x00,
            &[0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00],
            0x6A82,
        ),
        (0x00, 0x0C, &[0x3F, 0x00], 0x6A82),
        (0x04, 0x02, &PIV_AID, 0x6A86),
        (0x07, 0x00, &PIV_AID, 0x6A86),
    ];
    for (p1, p2, name, expected) in cases {
        assert_eq!(
            status_of(&mut applet, 0xA4, p1, p2, name),
            expected,
            "{name:02X?}"
        );
    }
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
        status_of(&mut applet, 0xCB, 0x00, 0x00, &[0x5C, 0x01, 0x7E]),
        0x6A86
    );
    assert_eq!(
        status_of(&mut applet, 0xCB, 0x3F, 0xFF, &[0x5C, 0x05, 0x7E]),
        0x6A80
    );
    assert_eq!(
        status_of(&mut applet, 0xCB, 0x3F, 0xFF, &[0x4F, 0x01, 0x7E]),
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
