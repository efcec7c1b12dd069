//! A renewal changes the card in the reader: lanyardd takes it out and puts it
//! back, so PC/SC clients read the new certificate — the very one the Lanyard
//! module shows after the renewal. Its own daemon and reader.

use lanyard_test_support::{KeyType, Pcscd};

use crate::lifecycle_world::{refresh_key_id, wait_for};
use crate::pcsc::{
    certificate_over_pcsc, der_of_pem, pcsc_tools_present, start_reader_daemon, wait_for_card,
};
use crate::world::{enroll_card, export_certificate, scratch};

#[test]
fn a_renewed_card_shows_its_new_certificate_over_pcsc() {
    if !pcsc_tools_present() {
        return;
    }
    let reader = Pcscd::shared().claim_reader();
    let daemon = start_reader_daemon(&reader, "");
    let pin = "775533";
    let mut card = enroll_card(
        &daemon,
        "Dr Ren Newal",
        "555700000005",
        KeyType::EcP256,
        pin,
    );
    wait_for_card(&reader, true);
    let dir = scratch();
    let tool = daemon.pkcs11_tool();
    let before_pem = export_certificate(&tool, &card, dir.path());
    let before = der_of_pem(&before_pem, dir.path(), "before");
    assert_eq!(
        certificate_over_pcsc(&reader).expect("the certificate over PC/SC"),
        before,
        "PC/SC and the module show different certificates"
    );

    daemon
        .renew(&card.issued.card_id, Some(pin))
        .assert_success("lanyard renew");
    refresh_key_id(&tool, &mut card);
    let after_pem = export_certificate(&tool, &card, dir.path());
    let after = der_of_pem(&after_pem, dir.path(), "after");
    assert_ne!(after, before, "the renewal did not change the certificate");
    wait_for("the renewed certificate over PC/SC", || {
        (certificate_over_pcsc(&reader).ok()? == after).then_some(())
    });
}
