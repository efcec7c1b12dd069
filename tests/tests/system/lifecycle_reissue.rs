//! Re-issue through the whole system: the IT desk gives a card a new enrolment
//! code; enrolling with it on the device keeps the card id and the slot, with a
//! new key, and leaves the other cards alone; a revoked card comes back in its
//! slot even when every slot is taken.

use lanyard_test_support::{require_tool, Daemon, KeyType};

use crate::lifecycle_world::{
    assert_audited, cert_serial, certificate_into, lifecycle_ca, normalise_serial, public_key_text,
    refresh_key_id, status_card,
};
use crate::world::{enroll_card_at, openssl_verify, scratch, sign, status_cards, tools_present};

#[test]
fn reissue_keeps_the_card_id_and_slot_with_a_new_key() {
    if !tools_present() || !require_tool("cc") {
        return;
    }
    let lca = lifecycle_ca();
    // Three slots, the third free: a re-enrolment that took a new slot would show.
    let daemon = Daemon::builder().config("slots = 3\n").start();
    let pin = "852963";
    let mut card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Ivy Reissued",
        "555600000001",
        KeyType::EcP256,
        pin,
    );
    let other = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Otto Other",
        "555600000002",
        KeyType::EcP256,
        "741852",
    );
    let card_id = card.issued.card_id.clone();
    let tool = daemon.pkcs11_tool();
    let dir = scratch();
    let old_cert = certificate_into(&tool, &card, dir.path(), "old");
    let old_serial = cert_serial(&old_cert);
    let old_key = public_key_text(&old_cert, dir.path(), "old");
    let other_serial = cert_serial(&certificate_into(&tool, &other, dir.path(), "other"));
    let slot_before = status_card(&daemon, &card_id)["slot"].clone();

    let reissued = lca.admin_json("reissue-card", &["--card", &card_id]);
    assert_eq!(reissued["card_id"], card_id.as_str(), "{reissued}");
    let code = reissued["code"]
        .as_str()
        .unwrap_or_else(|| panic!("reissue-card --json has no code: {reissued}"));
    assert_ne!(code, card.issued.code, "the re-issue reused the old code");
    let shown = lca.show_card(&card_id);
    assert_eq!(shown["state"], "issued", "{shown}");

    let out = daemon.try_enroll(lca.ca.url(), &lca.ca.root_pem(), code, KeyType::EcP256, pin);
    out.assert_success("lanyard enroll with the re-issue code");
    let status = status_card(&daemon, &card_id);
    assert_eq!(
        status["slot"], slot_before,
        "the re-issued card moved: {status}"
    );
    assert_eq!(status["status"], "active", "{status}");
    let slots = tool.slots();
    let found = slots
        .iter()
        .find(|s| {
            s.token_label
                .as_deref()
                .is_some_and(|l| l.contains(card.holder))
        })
        .unwrap_or_else(|| panic!("no token for the re-issued card: {slots:?}"));
    assert_eq!(
        found.id, card.slot,
        "the re-issued card's token moved to another slot"
    );

    refresh_key_id(&tool, &mut card);
    let new_cert = certificate_into(&tool, &card, dir.path(), "new");
    assert_ne!(cert_serial(&new_cert), old_serial, "no new certificate");
    assert_ne!(
        public_key_text(&new_cert, dir.path(), "new"),
        old_key,
        "the re-issue kept the old key"
    );
    openssl_verify(&lca.ca.root_pem(), Some(&lca.ca.issuing_pem()), &new_cert)
        .assert_success("the re-issued certificate chains to the root");
    let data = dir.path().join("document.txt");
    std::fs::write(&data, b"Theatre list, signed after re-issue.\n").expect("write data");
    sign(
        &tool,
        &card,
        "ECDSA-SHA256",
        &["--signature-format", "openssl"],
        &data,
        &dir.path().join("sig.bin"),
    )
    .assert_success("the re-issued card signs");

    // The other card is untouched.
    assert_eq!(
        cert_serial(&certificate_into(&tool, &other, dir.path(), "other-after")),
        other_serial
    );

    // The CA: active again, the old certificate revoked as superseded.
    let shown = lca.show_card(&card_id);
    assert_eq!(shown["state"], "active", "{shown}");
    let certs = shown["certificates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let old = certs
        .iter()
        .find(|c| c["serial"].as_str().map(normalise_serial).as_deref() == Some(&old_serial))
        .unwrap_or_else(|| panic!("show-card lacks the old certificate: {shown}"));
    assert_eq!(old["reason"], "superseded", "{shown}");

    let records = assert_audited(lca, &card_id, &["card_reissued", "enrolled"]);
    let enrolments = records.iter().filter(|r| r["action"] == "enrolled").count();
    assert_eq!(enrolments, 2, "enrolment and re-enrolment: {records:?}");

    // A revoked card, re-issued while every slot is taken, returns to its slot.
    let other_id = other.issued.card_id.clone();
    enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Theo Third",
        "555600000003",
        KeyType::EcP256,
        "963852",
    );
    assert_eq!(status_cards(&daemon).len(), 3, "every slot is taken");
    let other_slot = status_card(&daemon, &other_id)["slot"].clone();
    lca.admin_json(
        "revoke",
        &["--card", &other_id, "--reason", "affiliation-changed"],
    );
    daemon.check_in().assert_success("lanyard check-in");
    assert_eq!(status_card(&daemon, &other_id)["status"], "revoked");
    let reissued = lca.admin_json("reissue-card", &["--card", &other_id]);
    let code = reissued["code"]
        .as_str()
        .expect("reissue-card --json has a code");
    daemon
        .try_enroll(
            lca.ca.url(),
            &lca.ca.root_pem(),
            code,
            KeyType::EcP256,
            "741852",
        )
        .assert_success("re-enrolment of a revoked card with every slot taken");
    let back = status_card(&daemon, &other_id);
    assert_eq!(back["slot"], other_slot, "{back}");
    assert_eq!(back["status"], "active", "{back}");
    let back_cert = certificate_into(&tool, &refreshed(&tool, other), dir.path(), "back");
    assert_ne!(cert_serial(&back_cert), other_serial, "no new certificate");
    assert_audited(lca, &other_id, &["card_revoked", "card_reissued"]);
}

/// The card with its CKA_ID read again.
fn refreshed(
    tool: &lanyard_test_support::Pkcs11Tool,
    mut card: crate::world::Card,
) -> crate::world::Card {
    refresh_key_id(tool, &mut card);
    card
}
