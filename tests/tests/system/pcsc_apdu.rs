//! The PIV application over the real PC/SC stack (the `pcsc` crate → pcscd →
//! vpcd → lanyardd): SELECT, GET DATA, VERIFY and GENERAL AUTHENTICATE answer
//! the status words SP 800-73-4 gives, and the signature verifies with the
//! card's certificate. Inside one PC/SC transaction, ended with a card reset.

use pcsc::Disposition;

use crate::pcsc::{
    connect, der_of_pem, pcsc_tools_present, pcsc_world, send, tlv, verify_apdu,
    GET_AUTH_CERTIFICATE, PIV_SELECT,
};
use crate::world::{export_certificate, openssl, public_key_of, scratch};

/// DigestInfo prefix of SHA-256 (RFC 8017 §9.2).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// GENERAL AUTHENTICATE, RSA 2048 (07), key 9A, extended length:
/// 7C { 82 00, 81 input }.
fn general_authenticate(input: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00, 0x81, 0x82];
    inner.extend_from_slice(&(input.len() as u16).to_be_bytes());
    inner.extend_from_slice(input);
    let mut template = vec![0x7C, 0x82];
    template.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    template.extend_from_slice(&inner);
    let mut apdu = vec![0x00, 0x87, 0x07, 0x9A, 0x00];
    apdu.extend_from_slice(&(template.len() as u16).to_be_bytes());
    apdu.extend_from_slice(&template);
    apdu.extend_from_slice(&[0x00, 0x00]);
    apdu
}

/// A PKCS#1 v1.5 type-1 block of 256 bytes around `digest_info`.
fn type1_block(digest_info: &[u8]) -> Vec<u8> {
    let mut block = vec![0x00, 0x01];
    block.resize(256 - digest_info.len() - 1, 0xFF);
    block.push(0x00);
    block.extend_from_slice(digest_info);
    block
}

#[test]
fn piv_commands_over_pcsc_answer_the_right_status_words_and_sign() {
    if !pcsc_tools_present() {
        return;
    }
    let (_turn, world) = pcsc_world();
    let dir = scratch();
    let mut card = connect(&world.reader);
    let tx = card.transaction().expect("begin a PC/SC transaction");

    // SELECT by the full AID: the application property template with the label.
    let (apt, sw) = send(&tx, &PIV_SELECT);
    assert_eq!(sw, 0x9000, "SELECT PIV");
    assert_eq!(
        apt.first(),
        Some(&0x61),
        "no application property template: {apt:02X?}"
    );
    assert!(
        apt.windows(b"Lanyard PIV".len())
            .any(|w| w == b"Lanyard PIV"),
        "the template has no 'Lanyard PIV' label: {apt:02X?}"
    );
    // Unknown application: 6A82.
    let (_, sw) = send(
        &tx,
        &[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0, 0, 0x99, 0x99, 0x00],
    );
    assert_eq!(sw, 0x6A82, "SELECT of an unknown AID");
    let (_, sw) = send(&tx, &PIV_SELECT);
    assert_eq!(sw, 0x9000, "SELECT PIV again");

    // GET DATA of the 9A certificate: the certificate container holds the card's certificate.
    let (object, sw) = send(&tx, &GET_AUTH_CERTIFICATE);
    assert_eq!(sw, 0x9000, "GET DATA 5FC105");
    let (tag, container, _) = tlv(&object);
    assert_eq!(tag, 0x53, "certificate object tag");
    let (tag, cert_der, _) = tlv(container);
    assert_eq!(tag, 0x70, "certificate tag in the container");
    let pem = export_certificate(&world.daemon.pkcs11_tool(), &world.card, dir.path());
    assert_eq!(
        cert_der,
        der_of_pem(&pem, dir.path(), "card").as_slice(),
        "GET DATA returned another certificate than the module's"
    );
    // An object the card does not have: 6A82.
    let (_, sw) = send(
        &tx,
        &[
            0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x0D, 0x00,
        ],
    );
    assert_eq!(
        sw, 0x6A82,
        "GET DATA of the key-management certificate (none)"
    );

    // Signing before VERIFY: security status not satisfied.
    let data = dir.path().join("data.txt");
    std::fs::write(
        &data,
        b"Prescription 5512, signed over PC/SC with the PIV card.\n",
    )
    .expect("write data");
    // Binary output: not through `run`, which decodes text.
    let digest = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", data.to_str().expect("UTF-8")])
        .output()
        .expect("openssl dgst")
        .stdout;
    assert_eq!(digest.len(), 32);
    let mut digest_info = SHA256_DIGEST_INFO.to_vec();
    digest_info.extend_from_slice(&digest);
    let (_, sw) = send(&tx, &general_authenticate(&type1_block(&digest_info)));
    assert_eq!(sw, 0x6982, "GENERAL AUTHENTICATE before VERIFY");

    // VERIFY: empty = state (3 tries), a non-digit PIN is malformed (not counted),
    // the right PIN verifies.
    let (_, sw) = send(&tx, &[0x00, 0x20, 0x00, 0x80]);
    assert_eq!(sw, 0x63C3, "empty VERIFY before the PIN");
    let (_, sw) = send(&tx, &verify_apdu(b"12ab"));
    assert_eq!(sw, 0x6A80, "VERIFY with a malformed PIN");
    let (_, sw) = send(&tx, &[0x00, 0x20, 0x00, 0x80]);
    assert_eq!(sw, 0x63C3, "a malformed PIN was counted");
    let (_, sw) = send(&tx, &verify_apdu(world.card.pin.as_bytes()));
    assert_eq!(sw, 0x9000, "VERIFY with the right PIN");
    let (_, sw) = send(&tx, &[0x00, 0x20, 0x00, 0x80]);
    assert_eq!(sw, 0x9000, "empty VERIFY after the PIN");

    // Arbitrary data is never signed raw; a type-1 block is.
    let (_, sw) = send(&tx, &general_authenticate(&[0x5A; 256]));
    assert_eq!(sw, 0x6A80, "GENERAL AUTHENTICATE of arbitrary data");
    let (answer, sw) = send(&tx, &general_authenticate(&type1_block(&digest_info)));
    assert_eq!(sw, 0x9000, "GENERAL AUTHENTICATE of a PKCS#1 type-1 block");
    let (tag, template, _) = tlv(&answer);
    assert_eq!(tag, 0x7C, "dynamic authentication template");
    let (tag, signature, _) = tlv(template);
    assert_eq!(tag, 0x82, "response tag");
    assert_eq!(signature.len(), 256, "an RSA-2048 signature");
    let sig = dir.path().join("sig.bin");
    std::fs::write(&sig, signature).expect("write signature");
    let public = public_key_of(&pem, dir.path(), "apdu");
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        public.to_str().expect("UTF-8"),
        "-signature",
        sig.to_str().expect("UTF-8"),
        data.to_str().expect("UTF-8"),
    ])
    .assert_success("openssl verifies the GENERAL AUTHENTICATE signature");

    // Instructions the card does not know, and malformed APDUs.
    let (_, sw) = send(&tx, &[0x00, 0xFE, 0x00, 0x00]);
    assert_eq!(sw, 0x6D00, "unknown instruction");
    let (_, sw) = send(&tx, &[0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C]);
    assert_eq!(sw & 0xFF00, 0x6700, "Lc longer than the data: wrong length");

    // Reset the card at the end: the PIN verification must not outlive this test.
    tx.end(Disposition::ResetCard)
        .map_err(|(_, e)| e)
        .expect("end transaction");
    card.disconnect(Disposition::ResetCard)
        .map_err(|(_, e)| e)
        .expect("disconnect");
}
