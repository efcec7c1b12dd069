//! The card in a PC/SC reader as OpenSC sees it, through the real pcscd and
//! vpcd: `opensc-tool` lists the reader with a card and prints Lanyard's ATR,
//! `pkcs15-tool` (OpenSC's PIV driver) lists and reads the certificate, and
//! OpenSC's own PKCS#11 module signs with the card's key — a signature OpenSSL
//! verifies with the very certificate the Lanyard module shows.

use std::path::Path;

use crate::pcsc::{
    colon_hex, der_of_pem, opensc, pcsc_ec_world, pcsc_tools_present, pcsc_world, PcscWorld,
    OPENSC_MODULE,
};
use crate::world::{export_certificate, openssl, public_key_of, scratch, verify_sha256};

/// The PIV Authentication key's and certificate's CKA_ID in OpenSC's PIV driver (slot 9A).
const PIV_AUTH_ID: &str = "01";

#[test]
fn opensc_tool_lists_the_virtual_reader_with_a_card_and_its_atr() {
    if !pcsc_tools_present() {
        return;
    }
    let (_turn, world) = pcsc_world();
    let home = scratch();
    let list = opensc("opensc-tool", &["--list-readers"], home.path());
    list.assert_success("opensc-tool --list-readers");
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains(&world.reader.name))
        .unwrap_or_else(|| panic!("{} is not listed\n{list}", world.reader.name));
    assert!(
        line.split_whitespace().nth(1) == Some("Yes"),
        "the reader shows no card: {line:?}\n{list}"
    );

    let index = world.reader.index.to_string();
    let atr = opensc("opensc-tool", &["--reader", &index, "--atr"], home.path());
    atr.assert_success("opensc-tool --atr");
    assert_eq!(
        atr.stdout.trim(),
        colon_hex(lanyard_piv::atr()),
        "the ATR is not Lanyard's\n{atr}"
    );
    assert!(lanyard_piv::is_lanyard_atr(lanyard_piv::atr()));
}

#[test]
fn pkcs15_tool_reads_the_same_certificate_as_the_lanyard_module() {
    if !pcsc_tools_present() {
        return;
    }
    let (_turn, world) = pcsc_world();
    let home = scratch();
    let dir = scratch();
    let index = world.reader.index.to_string();
    let list = opensc(
        "pkcs15-tool",
        &["--reader", &index, "--list-certificates"],
        home.path(),
    );
    list.assert_success("pkcs15-tool --list-certificates");
    assert!(
        list.stdout.contains("PIV Authentication"),
        "OpenSC's PIV driver lists no PIV Authentication certificate\n{list}"
    );
    assert!(
        list.stdout
            .contains(&format!("ID             : {PIV_AUTH_ID}")),
        "no certificate with ID {PIV_AUTH_ID}\n{list}"
    );

    let read = opensc(
        "pkcs15-tool",
        &["--reader", &index, "--read-certificate", PIV_AUTH_ID],
        home.path(),
    );
    read.assert_success("pkcs15-tool --read-certificate");
    let via_pcsc = dir.path().join("via-pcsc.pem");
    std::fs::write(&via_pcsc, &read.stdout).expect("write PEM");
    let via_module = export_certificate(&world.daemon.pkcs11_tool(), &world.card, dir.path());
    assert_eq!(
        der_of_pem(&via_pcsc, dir.path(), "pcsc"),
        der_of_pem(&via_module, dir.path(), "module"),
        "the certificate read over PC/SC differs from the Lanyard module's"
    );
    let subject = openssl(&[
        "x509",
        "-in",
        via_pcsc.to_str().expect("UTF-8"),
        "-noout",
        "-subject",
    ]);
    assert!(
        subject.stdout.contains(world.card.holder),
        "the certificate does not name {}\n{subject}",
        world.card.holder
    );
}

#[test]
fn opensc_pkcs11_signs_and_openssl_verifies_with_the_card_certificate() {
    if !pcsc_tools_present() {
        return;
    }
    let (_turn, world) = pcsc_world();
    sign_through_opensc(world, "SHA256-RSA-PKCS", &[]);
}

#[test]
fn opensc_pkcs11_signs_with_a_p256_card_too() {
    if !pcsc_tools_present() {
        return;
    }
    let (_turn, world) = pcsc_ec_world();
    // pkcs11-tool writes r||s unless asked for the DER form openssl verifies.
    sign_through_opensc(world, "ECDSA-SHA256", &["--signature-format", "openssl"]);
}

/// Signs through OpenSC's PKCS#11 module on `world`'s reader, checks that
/// module shows the Lanyard module's certificate, and verifies with it.
fn sign_through_opensc(world: &PcscWorld, mechanism: &str, extra: &[&str]) {
    let home = scratch();
    let dir = scratch();
    let data = dir.path().join("discharge-summary.txt");
    std::fs::write(&data, b"Discharge summary 7741: signed over PC/SC.\n").expect("write data");
    let sig = dir.path().join("sig.bin");
    let opensc_der = dir.path().join("opensc-cert.der");
    let p = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    let slot = world.reader.name.as_str();
    let (data_arg, sig_arg) = (p(&data), p(&sig));
    let mut args = vec![
        "--module",
        OPENSC_MODULE,
        "--slot-description",
        slot,
        "--login",
        "--pin",
        world.card.pin,
        "--sign",
        "-m",
        mechanism,
        "--id",
        PIV_AUTH_ID,
        "-i",
        &data_arg,
        "-o",
        &sig_arg,
    ];
    args.extend_from_slice(extra);
    opensc("pkcs11-tool", &args, home.path())
        .assert_success("pkcs11-tool --module opensc-pkcs11.so --sign");

    let read = opensc(
        "pkcs11-tool",
        &[
            "--module",
            OPENSC_MODULE,
            "--slot-description",
            slot,
            "--read-object",
            "--type",
            "cert",
            "--id",
            PIV_AUTH_ID,
            "-o",
            &p(&opensc_der),
        ],
        home.path(),
    );
    read.assert_success("pkcs11-tool --module opensc-pkcs11.so --read-object");
    let via_module = export_certificate(&world.daemon.pkcs11_tool(), &world.card, dir.path());
    assert_eq!(
        std::fs::read(&opensc_der).expect("read OpenSC's certificate"),
        der_of_pem(&via_module, dir.path(), "module"),
        "OpenSC's PKCS#11 module shows another certificate than the Lanyard module"
    );

    let public = public_key_of(&via_module, dir.path(), "pcsc");
    verify_sha256(&public, &sig, &data).assert_success("openssl dgst -verify");
    let tampered = dir.path().join("tampered.txt");
    std::fs::write(&tampered, b"Discharge summary 7742: signed over PC/SC.\n").expect("write");
    let refused = verify_sha256(&public, &sig, &tampered);
    assert!(!refused.success(), "a changed document verified\n{refused}");
}
