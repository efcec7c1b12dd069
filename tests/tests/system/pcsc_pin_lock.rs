//! One PIN retry counter for PC/SC and PKCS#11: three wrong PINs sent as PIV
//! VERIFY through pcscd lock the card for the Lanyard PKCS#11 module too, and
//! the right PIN no longer helps on either side. Its own daemon and reader, so
//! the shared card stays usable.

use lanyard_test_support::{KeyType, Pcscd};
use pcsc::Disposition;

use crate::lifecycle_world::status_card;
use crate::pcsc::{
    connect, pcsc_tools_present, start_reader_daemon, verify_apdu, wait_for_card, PIV_SELECT,
};
use crate::world::enroll_card;

const EMPTY_VERIFY: [u8; 4] = [0x00, 0x20, 0x00, 0x80];

fn sw(card: &pcsc::Card, apdu: &[u8]) -> u16 {
    crate::pcsc::send(card, apdu).1
}

#[test]
fn three_wrong_pins_over_pcsc_lock_the_card_for_the_pkcs11_module_too() {
    if !pcsc_tools_present() {
        return;
    }
    let reader = Pcscd::shared().claim_reader();
    let daemon = start_reader_daemon(&reader, "");
    let pin = "583920";
    let card = enroll_card(
        &daemon,
        "Dr Lou Locked",
        "555700000002",
        KeyType::Rsa2048,
        pin,
    );
    wait_for_card(&reader, true);

    let mut connection = connect(&reader);
    // One transaction: another client's SELECT cannot come between the VERIFYs.
    let piv = connection.transaction().expect("begin a PC/SC transaction");
    assert_eq!(sw(&piv, &PIV_SELECT) >> 8, 0x90, "SELECT PIV");
    assert_eq!(sw(&piv, &EMPTY_VERIFY), 0x63C3, "three tries at first");
    assert_eq!(sw(&piv, &verify_apdu(b"000000")), 0x63C2, "first wrong PIN");
    // The counter is the card's: the Lanyard module and status see the failure.
    assert_eq!(
        status_card(&daemon, &card.issued.card_id)["pin_failures"],
        1
    );
    assert_eq!(
        sw(&piv, &verify_apdu(b"111111")),
        0x63C1,
        "second wrong PIN"
    );
    let third = sw(&piv, &verify_apdu(b"222222"));
    assert!(
        third == 0x63C0 || third == 0x6983,
        "third wrong PIN: expected 63C0 or 6983, got {third:04X}"
    );
    assert_eq!(
        sw(&piv, &EMPTY_VERIFY),
        0x6983,
        "blocked after three wrong PINs"
    );
    assert_eq!(
        sw(&piv, &verify_apdu(pin.as_bytes())),
        0x6983,
        "the right PIN on a blocked card"
    );
    piv.end(Disposition::LeaveCard)
        .map_err(|(_, e)| e)
        .expect("end the transaction");
    connection
        .disconnect(Disposition::ResetCard)
        .map_err(|(_, e)| e)
        .expect("disconnect");

    let status = status_card(&daemon, &card.issued.card_id);
    assert_eq!(status["locked"], true, "{status}");
    let login = daemon.pkcs11_tool().run(&[
        "--slot",
        &card.slot.to_string(),
        "--login",
        "--pin",
        pin,
        "--list-objects",
    ]);
    assert!(
        !login.success() && login.combined().contains("CKR_PIN_LOCKED"),
        "the Lanyard module still logs in after three wrong PINs over PC/SC\n{login}"
    );
    // Locked by PIN, not by the IT desk: the card stays in the reader, blocked.
    wait_for_card(&reader, true);
}
