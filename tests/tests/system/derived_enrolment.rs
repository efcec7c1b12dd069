//! Derived enrolment end to end: the "physical card" is a SoftHSM2 token
//! (its own SOFTHSM2_CONF) holding an RSA key with certificates from a
//! separate test physical-card CA; the real CA trusts that CA through
//! `[derivation]` (with a CRL file); `lanyard enroll --derive-from
//! 'pkcs11:…' --module libsofthsm2.so` loads the token in the CLI, signs the
//! CA's challenge, and the daemon gets a working virtual card with the
//! physical card's user ID (signing through the Lanyard module verifies).
//! An untrusted, expired or revoked physical certificate, a wrong card PIN
//! and an unknown object are refused with a clear error and no card.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::physical_card_ca::{to_pem, CardSpec, PhysicalCardCa, PHYSICAL_POLICY};
use lanyard_test_support::softhsm::{SoftHsm, SOFTHSM_MODULE};
use lanyard_test_support::{bin_path, run, Ca, CmdOutput, Daemon, IssuedCard, KeyType, Pcscd};

use crate::world::{
    enroll_card_at, export_certificate, openssl, percent_encode, public_key_of, scratch, sign,
    status_cards, tools_present, verify_sha256, Card,
};

const TOKEN: &str = "Physical Card";
const CARD_PIN: &str = "4321";
const NEW_PIN: &str = "246813";
const ROLE: &str = "R8000 Clinical Practitioner";
const USER_ID: &str = "555000111222";
const HOLDER: &str = "Dr Grace Physical";

/// The SoftHSM2 token playing the clinician's smartcard.
struct PhysicalToken {
    hsm: SoftHsm,
}

impl PhysicalToken {
    fn new(dir: &Path) -> PhysicalToken {
        let hsm = SoftHsm::new(dir);
        hsm.init_token(TOKEN, "87654321", CARD_PIN);
        PhysicalToken { hsm }
    }

    /// Writes `file` (a private key or DER certificate) as `kind` with `id` and `label`.
    fn write(&self, file: &Path, kind: &str, id: &str, label: &str) {
        self.hsm
            .run(
                "pkcs11-tool",
                &[
                    "--module",
                    SOFTHSM_MODULE,
                    "--token-label",
                    TOKEN,
                    "--login",
                    "--pin",
                    CARD_PIN,
                    "--write-object",
                    file.to_str().unwrap(),
                    "--type",
                    kind,
                    "--id",
                    id,
                    "--label",
                    label,
                ],
            )
            .assert_success("pkcs11-tool --write-object");
    }
}

/// A new key made with `openssl genpkey ARGS…` as `dir/NAME.pem`, and its
/// public key (SubjectPublicKeyInfo DER).
fn new_key(dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, Vec<u8>) {
    let key = dir.join(format!("{name}.pem"));
    let spki = dir.join(format!("{name}.pub.der"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend(["-out", key.to_str().unwrap()]);
    openssl(&args).assert_success("openssl genpkey");
    openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        spki.to_str().unwrap(),
    ])
    .assert_success("openssl pkey -pubout");
    let spki = std::fs::read(&spki).unwrap();
    (key, spki)
}

/// `lanyard enroll --derive-from` against `daemon` with the token's config.
fn derive(daemon: &Daemon, ca: &Ca, token: &PhysicalToken, uri: &str, stdin: &str) -> CmdOutput {
    let mut cmd = token.hsm.command(bin_path("lanyard"));
    cmd.args([
        "enroll",
        "--ca",
        ca.url(),
        "--ca-cert",
        ca.root_pem().to_str().unwrap(),
        "--derive-from",
        uri,
        "--module",
        SOFTHSM_MODULE,
        "--pin-stdin",
        "--json",
    ])
    .envs(daemon.env());
    run(cmd, Some(stdin.as_bytes()), Duration::from_secs(240))
}

fn uri(label: &str) -> String {
    format!("pkcs11:token=Physical%20Card;object={label}")
}

fn refused(out: &CmdOutput, code: i32, needle: &str, daemon: &Daemon) {
    out.assert_failure(needle);
    assert_eq!(out.code, Some(code), "{needle}: exit code\n{out}");
    assert!(out.stderr.contains(needle), "{needle}\n{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert!(
        !out.combined().contains(CARD_PIN) && !out.combined().contains(NEW_PIN),
        "a PIN was printed\n{out}"
    );
    assert!(
        status_cards(daemon).is_empty(),
        "{needle}: a card was created\n{out}"
    );
}

#[test]
fn a_physical_card_derives_a_working_virtual_card_and_bad_ones_are_refused() {
    if !tools_present() || !lanyard_test_support::require_tool("softhsm2-util") {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path();

    // The physical-card CA, its CRL (revoking serial 11 03), and a stranger CA.
    let physical_ca = PhysicalCardCa::new("Test Smartcard CA");
    let stranger = PhysicalCardCa::new("Unknown Smartcard CA");
    let anchor = dir.join("physical-ca.pem");
    std::fs::write(&anchor, physical_ca.pem()).unwrap();
    let crl = dir.join("physical.crl");
    std::fs::write(
        &crl,
        to_pem("X509 CRL", &physical_ca.crl(&[&[0x11, 3]], false)),
    )
    .unwrap();

    // The token: one RSA key under four ids, each with its own certificate.
    let token = PhysicalToken::new(dir);
    let (key, spki) = new_key(
        dir,
        "card-key",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let certs = [
        (
            "01",
            "good",
            physical_ca.issue_for_spki(&spki, &CardSpec::valid(HOLDER, USER_ID, 1)),
        ),
        (
            "02",
            "expired",
            physical_ca.issue_for_spki(&spki, &CardSpec::expired(HOLDER, USER_ID, 2)),
        ),
        (
            "03",
            "revoked",
            physical_ca.issue_for_spki(&spki, &CardSpec::valid(HOLDER, USER_ID, 3)),
        ),
        (
            "04",
            "untrusted",
            stranger.issue_for_spki(&spki, &CardSpec::valid(HOLDER, USER_ID, 4)),
        ),
    ];
    for (id, label, der) in &certs {
        token.write(&key, "privkey", id, label);
        let file = dir.join(format!("{label}.der"));
        std::fs::write(&file, der).unwrap();
        token.write(&file, "cert", id, label);
    }
    // A second card of the same person with an EC P-256 key (CKM_ECDSA).
    let (ec_key, ec_spki) = new_key(
        dir,
        "card-ec-key",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let ec_cert = physical_ca.issue_for_spki(&ec_spki, &CardSpec::valid(HOLDER, USER_ID, 5));
    token.write(&ec_key, "privkey", "05", "good-ec");
    let ec_file = dir.join("good-ec.der");
    std::fs::write(&ec_file, &ec_cert).unwrap();
    token.write(&ec_file, "cert", "05", "good-ec");

    let s = |p: &Path| p.to_str().unwrap().to_string();
    let ca = Ca::start_with_env(&[
        ("LANYARD_CA_DERIVATION_ENABLED", "true"),
        ("LANYARD_CA_DERIVATION_TRUST_ANCHORS", &s(&anchor)),
        ("LANYARD_CA_DERIVATION_ALLOWED_POLICIES", PHYSICAL_POLICY),
        ("LANYARD_CA_DERIVATION_ROLE", ROLE),
        ("LANYARD_CA_DERIVATION_CRL_FILE", &s(&crl)),
        ("LANYARD_CA_RATE_LIMIT_MAX_FAILURES", "100"),
    ]);
    let daemon = Daemon::start();
    let pins = format!("{CARD_PIN}\n{NEW_PIN}\n");

    // Refused by the CA, naming the check; nothing created.
    let out = derive(&daemon, &ca, &token, &uri("expired"), &pins);
    refused(&out, 5, "expired", &daemon);
    let out = derive(&daemon, &ca, &token, &uri("revoked"), &pins);
    refused(&out, 5, "revoked", &daemon);
    let out = derive(&daemon, &ca, &token, &uri("untrusted"), &pins);
    refused(&out, 5, "does not chain to a physical-card CA", &daemon);
    // Refused on this side: the card's PIN, an unknown object.
    let out = derive(
        &daemon,
        &ca,
        &token,
        &uri("good"),
        &format!("9999\n{NEW_PIN}\n"),
    );
    refused(&out, 4, "wrong PIN for the physical card", &daemon);
    let out = derive(&daemon, &ca, &token, &uri("nothing"), &pins);
    refused(&out, 8, "no certificate matching", &daemon);

    // The good card: a virtual card for the same person.
    let out = derive(&daemon, &ca, &token, &uri("good"), &pins);
    out.assert_success("lanyard enroll --derive-from");
    let card: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("--json output ({e})\n{out}"));
    assert_eq!(card["holder_name"], HOLDER, "{card}");
    let subject = card["subject"].as_str().unwrap_or_default();
    assert!(
        subject.contains(USER_ID),
        "the user ID is the physical card's: {card}"
    );
    assert!(subject.contains(ROLE), "the role is the policy's: {card}");
    let cards = status_cards(&daemon);
    assert_eq!(cards.len(), 1, "{cards:?}");
    let card_id = card["card_id"].as_str().unwrap().to_string();

    // It works: sign through the Lanyard module, verify with its certificate.
    let tool = daemon.pkcs11_tool();
    let slot = tool
        .slots()
        .into_iter()
        .find(|s| s.token_label.as_deref().is_some_and(|l| l.contains(HOLDER)))
        .expect("the derived card's token");
    let objects = tool.objects(slot.id, None);
    let key_id = objects
        .iter()
        .find(|o| {
            o.kind == "Public Key Object"
                && !o.field("label").unwrap_or("").contains("Digital Signature")
        })
        .and_then(|o| o.id())
        .expect("a public key with an id")
        .to_string();
    let virtual_card = Card {
        holder: HOLDER,
        pin: NEW_PIN,
        issued: IssuedCard {
            code: String::new(),
            card_id: card_id.clone(),
            expires_at: String::new(),
            json: serde_json::Value::Null,
        },
        slot: slot.id,
        token_label: slot.token_label.clone().unwrap_or_default(),
        key_id,
        key: KeyType::Rsa2048,
    };
    let cert = export_certificate(&tool, &virtual_card, dir);
    let issuer = openssl(&["x509", "-in", &s(&cert), "-noout", "-subject", "-issuer"]);
    assert!(issuer.stdout.contains(USER_ID), "{issuer}");
    let data = dir.join("prescription.txt");
    std::fs::write(&data, "derived card signs\n").unwrap();
    let sig = dir.join("prescription.sig");
    sign(&tool, &virtual_card, "SHA256-RSA-PKCS", &[], &data, &sig)
        .assert_success("pkcs11-tool --sign with the derived card");
    let public = public_key_of(&cert, dir, "derived");
    verify_sha256(&public, &sig, &data)
        .assert_success("openssl verifies the derived card's signature");

    // The EC smartcard derives a second card for the same person.
    let out = derive(&daemon, &ca, &token, &uri("good-ec"), &pins);
    out.assert_success("lanyard enroll --derive-from an EC smartcard");
    let second: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("--json output ({e})\n{out}"));
    assert_ne!(second["card_id"], card["card_id"]);
    assert!(
        second["subject"]
            .as_str()
            .unwrap_or_default()
            .contains(USER_ID),
        "{second}"
    );
    assert_eq!(status_cards(&daemon).len(), 2);

    // The CA logged a derived issuance naming the physical card's serial.
    let ca_log = ca.logs();
    assert!(
        ca_log.contains("card issued by derivation")
            && ca_log.contains("physical_serial=1101")
            && ca_log.contains("physical_serial=1105"),
        "{ca_log}"
    );
    let log = daemon.log();
    assert!(
        !log.contains(NEW_PIN),
        "the new PIN reached the daemon's log"
    );
    assert!(
        !log.contains("softhsm"),
        "the daemon never loads the physical card's module"
    );
}

/// A card in a PC/SC reader (a Lanyard card of another CA, served as a PIV
/// card through the run's pcscd and vpcd) is the physical card: the CLI uses
/// OpenSC's module by default, finds the card by its reader and the PIV
/// Authentication key's id, and the CA (trusting the other CA's issuing CA,
/// any policy) issues a card for the same person.
#[test]
fn a_card_in_a_pcsc_reader_derives_a_virtual_card_through_opensc() {
    if !crate::pcsc::pcsc_tools_present() {
        return;
    }
    let reader = Pcscd::shared().claim_reader();
    let physical_ca = Ca::start();
    let physical_daemon = crate::pcsc::start_reader_daemon(&reader, "");
    let physical_pin = "582064";
    enroll_card_at(
        &physical_ca,
        &physical_daemon,
        "Dr Pia Physical",
        "555700000099",
        KeyType::Rsa2048,
        physical_pin,
    );
    crate::pcsc::wait_for_card(&reader, true);

    let anchors = physical_ca.issuing_pem();
    let ca = Ca::start_with_env(&[
        ("LANYARD_CA_DERIVATION_ENABLED", "true"),
        (
            "LANYARD_CA_DERIVATION_TRUST_ANCHORS",
            anchors.to_str().unwrap(),
        ),
        ("LANYARD_CA_DERIVATION_ALLOWED_POLICIES", "2.5.29.32.0"),
        ("LANYARD_CA_DERIVATION_ROLE", ROLE),
    ]);
    let daemon = Daemon::start();
    let home = scratch();
    let uri = format!(
        "pkcs11:slot-description={};id=%01",
        percent_encode(&reader.name)
    );
    let derive_opensc = |stdin: &str| {
        let mut cmd = Command::new(bin_path("lanyard"));
        cmd.args([
            "enroll",
            "--ca",
            ca.url(),
            "--ca-cert",
            ca.root_pem().to_str().unwrap(),
            "--derive-from",
            &uri,
            "--pin-stdin",
            "--json",
        ])
        .envs(daemon.env())
        .env("HOME", home.path());
        run(cmd, Some(stdin.as_bytes()), Duration::from_secs(240))
    };

    // A wrong PIN for the card in the reader: counted by that card, nothing sent.
    let out = derive_opensc(&format!("000000\n{NEW_PIN}\n"));
    refused(&out, 4, "wrong PIN for the physical card", &daemon);

    let out = derive_opensc(&format!("{physical_pin}\n{NEW_PIN}\n"));
    out.assert_success("lanyard enroll --derive-from a card in a PC/SC reader");
    let card: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("--json output ({e})\n{out}"));
    assert_eq!(card["holder_name"], "Dr Pia Physical", "{card}");
    let subject = card["subject"].as_str().unwrap_or_default();
    assert!(subject.contains("555700000099"), "{card}");
    assert_eq!(status_cards(&daemon).len(), 1);
    // The physical card is still there, unchanged.
    assert_eq!(status_cards(&physical_daemon).len(), 1);
}
