//! VERIFY over a fake card: 63Cx with the tries left, 6983 when blocked,
//! malformed PINs refused uncounted, the state reset by P1=FF, SELECT and
//! power off.

mod support;

use support::apdus::*;
use support::{FakeCard, MAX_TRIES, PIN};

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
        status_of(
            &mut applet,
            0xA4,
            0x04,
            0x00,
            &[0xA0, 0x00, 0x00, 0x03, 0x97]
        ),
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
