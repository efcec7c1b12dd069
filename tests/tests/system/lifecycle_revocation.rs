//! Revocation and suspension through the whole system: an IT-desk operator acts
//! over gRPC, the daemon's periodic check-in removes the token from a running
//! C application, the CRL served over HTTP lists the certificate and OpenSSL
//! rejects it, a copy of the revoked card cannot renew, and a resumed card
//! returns and signs after a new login.

use lanyard_test_support::{require_tool, Daemon, KeyType};

use crate::lifecycle_world::{
    assert_audited, cert_serial, certificate_into, crl_distribution_point, fetch_crl, lifecycle_ca,
    status_card, verify_with_certificate, verify_with_crl, wait_for, wait_for_crl_entry,
    CHECK_IN_DAEMON_CONFIG,
};
use crate::pkcs11_app::{
    Pkcs11App, CKR_DEVICE_REMOVED, CKR_OK, CKR_SESSION_HANDLE_INVALID, CKR_TOKEN_NOT_PRESENT,
};
use crate::world::{enroll_card_at, scratch, sign, tools_present};

fn tools() -> bool {
    tools_present() && require_tool("cc")
}

const DOCUMENT: &[u8] = b"Referral letter 2290, signed by the referring clinician.\n";

/// A session of a removed token answers CKR_DEVICE_REMOVED (or
/// CKR_TOKEN_NOT_PRESENT, or once the module closed it
/// CKR_SESSION_HANDLE_INVALID); never OK.
fn assert_session_gone(rv: u64, what: &str) {
    assert!(
        [
            CKR_DEVICE_REMOVED,
            CKR_TOKEN_NOT_PRESENT,
            CKR_SESSION_HANDLE_INVALID
        ]
        .contains(&rv),
        "{what}: expected CKR_DEVICE_REMOVED, got 0x{rv:x}"
    );
}

#[test]
fn revocation_removes_the_token_destroys_the_keys_and_reaches_the_crl() {
    if !tools() {
        return;
    }
    let lca = lifecycle_ca();
    let pin = "424242";
    let daemon = Daemon::builder().config(CHECK_IN_DAEMON_CONFIG).start();
    let card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Rhea Revoked",
        "555400000001",
        KeyType::EcP256,
        pin,
    );
    let card_id = card.issued.card_id.clone();
    let tool = daemon.pkcs11_tool();
    let dir = scratch();
    let cert = certificate_into(&tool, &card, dir.path(), "card");
    let serial = cert_serial(&cert);

    // A copy of the device taken now (checks in rarely): it will try to renew
    // with the revoked certificate.
    let copy = Daemon::builder()
        .config("check_in_interval_secs = 3600\n")
        .data_from(daemon.data_home())
        .start();

    // The certificate names the CRL the CA serves, and passes a CRL check today.
    let crl_url = crl_distribution_point(&cert);
    assert_eq!(crl_url, lca.crl_url(), "CRL Distribution Point");
    let before = fetch_crl(&crl_url, dir.path(), "before");
    assert!(!before.revoked.contains_key(&serial), "{}", before.text);
    verify_with_crl(&lca.ca, &before, &cert)
        .assert_success("openssl verify -crl_check before revocation");

    // A running application is logged in and signing.
    let mut app = Pkcs11App::start(&daemon);
    app.open(card.slot);
    assert_eq!(app.login(pin), CKR_OK);
    app.find_key();
    let data = dir.path().join("document.txt");
    std::fs::write(&data, DOCUMENT).expect("write data");
    let sig = dir.path().join("sig.bin");
    assert_eq!(app.sign(true, &data, &sig), CKR_OK);
    verify_with_certificate(&cert, &data, &sig, true, dir.path(), "before")
        .assert_success("signature before revocation");
    assert!(app.present_slots().contains(&card.slot));
    while app.slot_event().is_some() {} // start from a clean event queue

    // A reason that is not RFC 5280's is refused with a clear message and changes nothing.
    let bad = lca.admin("revoke", &["--card", &card_id, "--reason", "because"]);
    assert_eq!(bad.code, Some(2), "usage error expected\n{bad}");
    assert!(
        bad.combined().contains("key-compromise"),
        "the message lists the reasons\n{bad}"
    );
    assert_eq!(lca.show_card(&card_id)["state"], "active");

    // The IT desk revokes the card over gRPC.
    let revoked = lca.admin_json(
        "revoke",
        &["--card", &card_id, "--reason", "key-compromise"],
    );
    assert_eq!(revoked["state"], "revoked", "{revoked}");
    assert_eq!(revoked["revocation_reason"], "key-compromise", "{revoked}");

    // The daemon's next check-in removes the token from the running application.
    wait_for(
        "the revoked card's token to leave C_GetSlotList(TRUE)",
        || (!app.present_slots().contains(&card.slot)).then_some(()),
    );
    assert_session_gone(app.session_rv(), "C_GetSessionInfo after revocation");
    assert_session_gone(app.sign(true, &data, &sig), "C_Sign after revocation");
    assert_eq!(
        app.slot_event(),
        Some(card.slot),
        "C_WaitForSlotEvent reports the removal"
    );
    let status = status_card(&daemon, &card_id);
    assert_eq!(status["status"], "revoked", "{status}");
    assert!(
        status["warning"].as_str().is_some_and(|w| !w.is_empty()),
        "{status}"
    );
    app.quit();

    // The card's key material is gone from the card file (a tombstone).
    let file = daemon.card_file(&card_id);
    let stored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display())),
    )
    .expect("the card file is JSON");
    assert_eq!(stored["status"], "revoked", "{stored}");
    assert!(
        stored.get("wrapped_card_key").is_none() && stored.get("private_key").is_none(),
        "the revoked card's file still holds key material: {}",
        file.display()
    );
    let login = tool.run(&[
        "--slot",
        &card.slot.to_string(),
        "--login",
        "--pin",
        pin,
        "-O",
    ]);
    assert!(!login.success(), "a revoked card still logs in\n{login}");

    // The CRL served over HTTP lists the serial, and OpenSSL rejects the card.
    let crl = wait_for_crl_entry(&crl_url, dir.path(), &serial);
    assert_eq!(crl.revoked[&serial], "Key Compromise", "{}", crl.text);
    let rejected = verify_with_crl(&lca.ca, &crl, &cert);
    assert!(
        !rejected.success() && rejected.combined().contains("certificate revoked"),
        "openssl verify -crl_check accepted a revoked card\n{rejected}"
    );

    // The copy of the device cannot renew with the revoked certificate.
    let renew = copy.renew(&card_id, Some(pin));
    assert!(
        !renew.success(),
        "a revoked card's certificate renewed\n{renew}"
    );
    assert_eq!(
        renew.code,
        Some(5),
        "exit 5 (the CA refused) expected\n{renew}"
    );
    let said = renew.combined();
    assert!(
        said.contains("refused") && said.contains("revoked"),
        "the daemon does not report the CA's refusal\n{renew}"
    );
    let shown = lca.show_card(&card_id);
    let certs = shown["certificates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The authentication and the document-signing certificate of the
    // enrolment, both revoked; nothing newer.
    assert_eq!(
        certs.len(),
        2,
        "the CA issued a certificate to a revoked card: {shown}"
    );
    for cert in &certs {
        assert_eq!(cert["reason"], "key-compromise", "{shown}");
    }

    assert_audited(
        lca,
        &card_id,
        &["enrolled", "card_revoked", "renewal_refused"],
    );
}

#[test]
fn suspension_removes_the_token_and_resumption_brings_it_back() {
    if !tools() {
        return;
    }
    let lca = lifecycle_ca();
    let pin = "737373";
    let daemon = Daemon::builder().config(CHECK_IN_DAEMON_CONFIG).start();
    let card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Sam Suspended",
        "555400000002",
        KeyType::Rsa2048,
        pin,
    );
    let card_id = card.issued.card_id.clone();
    let tool = daemon.pkcs11_tool();
    let dir = scratch();
    let cert = certificate_into(&tool, &card, dir.path(), "card");
    let serial = cert_serial(&cert);
    let data = dir.path().join("document.txt");
    std::fs::write(&data, DOCUMENT).expect("write data");

    let mut app = Pkcs11App::start(&daemon);
    app.open(card.slot);
    assert_eq!(app.login(pin), CKR_OK);
    app.find_key();
    let sig = dir.path().join("sig.bin");
    assert_eq!(app.sign(false, &data, &sig), CKR_OK);

    let suspended = lca.admin_json("suspend", &["--card", &card_id]);
    assert_eq!(suspended["state"], "suspended", "{suspended}");
    wait_for(
        "the suspended card's token to leave C_GetSlotList(TRUE)",
        || (!app.present_slots().contains(&card.slot)).then_some(()),
    );
    assert_session_gone(app.sign(false, &data, &sig), "C_Sign while suspended");
    assert_eq!(status_card(&daemon, &card_id)["status"], "suspended");
    let login = tool.run(&[
        "--slot",
        &card.slot.to_string(),
        "--login",
        "--pin",
        pin,
        "-O",
    ]);
    assert!(!login.success(), "a suspended card still logs in\n{login}");
    // On hold: the CRL lists the certificate as certificateHold.
    let crl = wait_for_crl_entry(lca.crl_url(), dir.path(), &serial);
    assert_eq!(crl.revoked[&serial], "Certificate Hold", "{}", crl.text);
    // Suspension keeps the keys.
    let stored = std::fs::read_to_string(daemon.card_file(&card_id)).expect("read the card file");
    assert!(
        stored.contains("wrapped_card_key"),
        "suspension destroyed the keys"
    );

    let resumed = lca.admin_json("resume", &["--card", &card_id]);
    assert_eq!(resumed["state"], "active", "{resumed}");
    wait_for(
        "the resumed card's token to return to C_GetSlotList(TRUE)",
        || app.present_slots().contains(&card.slot).then_some(()),
    );
    assert_eq!(status_card(&daemon, &card_id)["status"], "active");
    // The returned token is a new arrival: the old session stays dead, a new
    // session and login sign with the same (kept) key.
    assert_session_gone(app.session_rv(), "the session opened before suspension");
    app.open(card.slot);
    assert_eq!(app.login(pin), CKR_OK, "a new login after resumption");
    app.find_key();
    let sig2 = dir.path().join("sig2.bin");
    assert_eq!(app.sign(false, &data, &sig2), CKR_OK);
    verify_with_certificate(&cert, &data, &sig2, false, dir.path(), "resumed")
        .assert_success("signature after resumption verifies with the card's certificate");
    app.quit();
    let tool_sig = dir.path().join("tool.sig");
    sign(&tool, &card, "SHA256-RSA-PKCS", &[], &data, &tool_sig)
        .assert_success("pkcs11-tool signs after resumption");

    assert_audited(lca, &card_id, &["card_suspended", "card_resumed"]);
}
