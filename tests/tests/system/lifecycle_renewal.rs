//! Renewal with re-key through the whole system: the daemon renews a card by
//! itself while a C application stays logged in, and `lanyard renew` forces it;
//! each time a new key and certificate that chain to the CA, and the logged-in
//! application keeps signing, now with the new key, without a new login.

use lanyard_test_support::{require_tool, Daemon, KeyType};

use crate::lifecycle_world::{
    assert_audited, cert_serial, certificate_into, lifecycle_ca, public_key_text, refresh_key_id,
    renewal_ca, status_card, under_stable_certificate, verify_with_certificate, wait_for,
    CHECK_IN_DAEMON_CONFIG, RENEWAL_DAEMON_CONFIG,
};
use crate::pkcs11_app::{Pkcs11App, CKR_OK};
use crate::world::{
    enroll_card_at, openssl_verify, public_key_of, scratch, sign, tools_present, verify_sha256,
};

fn tools() -> bool {
    tools_present() && require_tool("cc")
}

const DOCUMENT: &[u8] = b"Prescription 7731: amoxicillin 500 mg, signed by the prescriber.\n";

fn renews_by_itself(key: KeyType, holder: &'static str, user_id: &str, pin: &'static str) {
    let ca = renewal_ca();
    let ec = key == KeyType::EcP256;
    let daemon = Daemon::builder().config(RENEWAL_DAEMON_CONFIG).start();
    let mut card = enroll_card_at(ca, &daemon, holder, user_id, key, pin);
    let card_id = card.issued.card_id.clone();
    let tool = daemon.pkcs11_tool();
    let dir = scratch();
    let data = dir.path().join("document.txt");
    std::fs::write(&data, DOCUMENT).expect("write data");
    let slot_before = status_card(&daemon, &card_id)["slot"].clone();

    // An application logs in once and signs (under the enrolled certificate,
    // unless a slow machine let the renewal come first: then under that one).
    let mut app = Pkcs11App::start(&daemon);
    app.open(card.slot);
    assert_eq!(app.login(pin), CKR_OK, "C_Login with the right PIN");
    app.find_key();
    let sig_before = dir.path().join("sig-before.bin");
    let (old_cert, rv) = under_stable_certificate(&tool, &mut card, dir.path(), |_| {
        app.sign(ec, &data, &sig_before)
    });
    assert_eq!(rv, CKR_OK, "C_Sign before renewal");
    let old_serial = cert_serial(&old_cert);
    let old_key = public_key_text(&old_cert, dir.path(), "old");
    verify_with_certificate(&old_cert, &data, &sig_before, ec, dir.path(), "before")
        .assert_success("the first signature verifies with the certificate of the moment");
    let old_not_after = status_card(&daemon, &card_id)["not_after"].clone();

    // The daemon renews by itself (at 15% of a 60 s lifetime) while the card is unlocked.
    let renewed = wait_for(
        &format!("lanyardd to renew card {card_id} by itself"),
        || {
            let c = status_card(&daemon, &card_id);
            (c["last_renewal"].is_string() && c["not_after"] != old_not_after).then_some(c)
        },
    );
    assert_eq!(renewed["last_renewal_error"], "", "{renewed}");
    assert_eq!(renewed["status"], "active", "{renewed}");
    assert_eq!(
        renewed["slot"], slot_before,
        "renewal moved the card: {renewed}"
    );

    // The same session signs again, without a new login, now with a new key.
    assert_eq!(app.session_rv(), CKR_OK, "the session survives the renewal");
    let sig_after = dir.path().join("sig-after.bin");
    let (new_cert, rv) = under_stable_certificate(&tool, &mut card, dir.path(), |_| {
        app.sign(ec, &data, &sig_after)
    });
    assert_eq!(rv, CKR_OK, "C_Sign in the same session after renewal");
    let new_serial = cert_serial(&new_cert);
    assert_ne!(new_serial, old_serial, "renewal kept the serial");
    let new_key = public_key_text(&new_cert, dir.path(), "new");
    assert_ne!(new_key, old_key, "renewal kept the key pair (no re-key)");
    verify_with_certificate(&new_cert, &data, &sig_after, ec, dir.path(), "after")
        .assert_success("the old session's signature verifies with the NEW certificate");
    let with_old = verify_with_certificate(&old_cert, &data, &sig_after, ec, dir.path(), "cross");
    assert!(
        !with_old.success(),
        "a signature after renewal verified with the OLD key\n{with_old}"
    );
    app.quit();

    // A fresh application (pkcs11-tool) signs; the signature verifies with the
    // certificate the token now holds, which chains to the root.
    let sig_tool = dir.path().join("sig-tool.bin");
    let (tool_cert, out) = under_stable_certificate(&tool, &mut card, dir.path(), |card| {
        let extra: &[&str] = if ec {
            &["--signature-format", "openssl"]
        } else {
            &[]
        };
        let mech = if ec {
            "ECDSA-SHA256"
        } else {
            "SHA256-RSA-PKCS"
        };
        sign(&tool, card, mech, extra, &data, &sig_tool)
    });
    out.assert_success("pkcs11-tool --sign after renewal");
    assert_ne!(cert_serial(&tool_cert), old_serial);
    let pub_pem = public_key_of(&tool_cert, dir.path(), "tool");
    let ok = verify_sha256(&pub_pem, &sig_tool, &data);
    ok.assert_success("pkcs11-tool's signature verifies with the renewed certificate");
    assert!(ok.stdout.contains("Verified OK"), "{ok}");
    let chain = openssl_verify(&ca.root_pem(), Some(&ca.issuing_pem()), &tool_cert);
    chain.assert_success("the renewed certificate chains to the root");
    assert!(chain.stdout.contains(": OK"), "{chain}");
}

#[test]
fn renewal_by_itself_rekeys_rsa_under_a_logged_in_application() {
    if !tools() {
        return;
    }
    renews_by_itself(KeyType::Rsa2048, "Dr Rosa Renew", "555300000001", "314159");
}

#[test]
fn renewal_by_itself_rekeys_ec_under_a_logged_in_application() {
    if !tools() {
        return;
    }
    renews_by_itself(KeyType::EcP256, "Dr Ezra Renew", "555300000002", "271828");
}

#[test]
fn lanyard_renew_forces_a_renewal_with_a_new_key() {
    if !tools() {
        return;
    }
    let lca = lifecycle_ca();
    let daemon = Daemon::builder().config(CHECK_IN_DAEMON_CONFIG).start();
    let pin = "161803";
    let mut card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Fern Force",
        "555300000003",
        KeyType::Rsa2048,
        pin,
    );
    let card_id = card.issued.card_id.clone();
    let tool = daemon.pkcs11_tool();
    let dir = scratch();
    let cert0 = certificate_into(&tool, &card, dir.path(), "c0");
    let key0 = public_key_text(&cert0, dir.path(), "k0");

    // Locked card: `lanyard renew` asks for the PIN and renews once.
    let out = daemon.renew(&card_id, Some(pin));
    out.assert_success("lanyard renew --pin-stdin");
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("lanyard renew --json printed invalid JSON ({e})\n{out}"));
    assert_eq!(json["card_id"], card_id.as_str(), "{json}");
    refresh_key_id(&tool, &mut card);
    let cert1 = certificate_into(&tool, &card, dir.path(), "c1");
    assert_ne!(cert_serial(&cert1), cert_serial(&cert0), "no new serial");
    let key1 = public_key_text(&cert1, dir.path(), "k1");
    assert_ne!(key1, key0, "lanyard renew kept the key pair");
    let status = status_card(&daemon, &card_id);
    assert!(status["last_renewal"].is_string(), "{status}");
    assert_eq!(status["last_renewal_error"], "", "{status}");
    assert!(
        status["next_renewal"].is_null(),
        "a locked card has no scheduled renewal: {status}"
    );

    // Unlocked by an application: no PIN needed, and the next renewal is planned.
    let mut app = Pkcs11App::start(&daemon);
    app.open(card.slot);
    assert_eq!(app.login(pin), CKR_OK);
    app.find_key();
    let out = daemon.renew(&card_id, None);
    out.assert_success("lanyard renew while an application is logged in (no PIN)");
    refresh_key_id(&tool, &mut card);
    let cert2 = certificate_into(&tool, &card, dir.path(), "c2");
    let serial2 = cert_serial(&cert2);
    assert_ne!(serial2, cert_serial(&cert1), "no new serial");
    assert_ne!(public_key_text(&cert2, dir.path(), "k2"), key1, "same key");
    let status = status_card(&daemon, &card_id);
    assert_eq!(status["last_renewal_error"], "", "{status}");
    assert_eq!(status["warning"], "", "{status}");
    let next = status["next_renewal"]
        .as_str()
        .unwrap_or_else(|| panic!("no next_renewal while unlocked: {status}"));
    let last = status["last_renewal"].as_str().unwrap_or_default();
    let not_after = status["not_after"].as_str().unwrap_or_default();
    // Same RFC 3339 UTC format throughout, so text order is time order.
    assert!(
        last < next && next < not_after,
        "next renewal {next} is not between the last renewal {last} and expiry {not_after}"
    );

    // The logged-in application signs with the new key.
    let data = dir.path().join("document.txt");
    std::fs::write(&data, DOCUMENT).expect("write data");
    let sig = dir.path().join("sig.bin");
    assert_eq!(app.sign(false, &data, &sig), CKR_OK);
    verify_with_certificate(&cert2, &data, &sig, false, dir.path(), "forced")
        .assert_success("signature after lanyard renew verifies with the new certificate");
    app.quit();
    let chain = openssl_verify(&lca.ca.root_pem(), Some(&lca.ca.issuing_pem()), &cert2);
    chain.assert_success("the renewed certificate chains to the root");

    // The CA knows six certificates: an authentication and a
    // document-signing one from the enrolment and from each of the two
    // renewals (both keys re-keyed); renewal supersedes without revoking.
    let shown = lca.show_card(&card_id);
    let certs = shown["certificates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(certs.len(), 6, "{shown}");
    assert!(
        certs.iter().all(|c| c["revoked_at"].is_null()),
        "a renewal revoked a certificate: {shown}"
    );
    let records = assert_audited(lca, &card_id, &["enrolled", "renewed"]);
    let renewals = records.iter().filter(|r| r["action"] == "renewed").count();
    assert_eq!(renewals, 2, "two renewals, two audit records: {records:?}");
}
