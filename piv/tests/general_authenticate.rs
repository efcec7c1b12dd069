//! GENERAL AUTHENTICATE over a fake card with real keys: RSA PKCS#1 and PSS
//! and ECDSA signatures checked with OpenSSL, the PIN rules of 9A and 9C,
//! chaining and extended length, and every refusal before the key is used.

mod support;

use lanyard_piv::{KeySlot, SignInput};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer, Verifier};
use support::apdus::*;
use support::{FakeCard, PIN};

#[test]
fn rsa_9a_signs_a_chained_pkcs1_block_after_verify() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let message = b"GET /patients/42 HTTP/1.1";
    let template = ga_template(&pkcs1_sha256_block(message));
    assert!(template.len() > 255, "needs chaining");

    assert_eq!(status_of(&mut applet, 0x87, 0x07, 0x9A, &template), 0x6982);
    assert!(
        applet.backend().signed.is_empty(),
        "refused before the backend"
    );

    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let (resp, sw) = transmit(&mut applet, 0x87, 0x07, 0x9A, &template, Some(256));
    assert_eq!(sw, 0x9000);
    let sig = signature_of(&resp);
    assert_eq!(sig.len(), 256);
    let key = applet.backend().key(KeySlot::Authentication).pkey.clone();
    let mut v = Verifier::new(MessageDigest::sha256(), &key).expect("verifier");
    v.update(message).expect("update");
    assert!(
        v.verify(&sig).expect("verify"),
        "PKCS#1 v1.5 signature verifies"
    );
    assert!(matches!(
        applet.backend().signed.last(),
        Some((KeySlot::Authentication, SignInput::RsaPkcs1 { .. }, None))
    ));

    // The login lasts for the session: a second signature needs no VERIFY.
    assert_eq!(status_of(&mut applet, 0x87, 0x07, 0x9A, &template), 0x9000);
}

#[test]
fn rsa_9a_signs_a_pss_encoding() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let message = b"TLS 1.3 CertificateVerify";
    let key = applet.backend().key(KeySlot::Authentication).pkey.clone();
    // A client's EM: what an RSA-PSS signature opens to with the public key.
    let mut s = Signer::new(MessageDigest::sha256(), &key).expect("signer");
    s.set_rsa_padding(Padding::PKCS1_PSS).expect("pss");
    s.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
        .expect("salt");
    s.update(message).expect("update");
    let reference = s.sign_to_vec().expect("sign");
    let mut em = vec![0u8; 256];
    key.rsa()
        .expect("rsa")
        .public_decrypt(&reference, &mut em, Padding::NONE)
        .expect("open");

    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let (resp, sw) = transmit(&mut applet, 0x87, 0x07, 0x9A, &ga_template(&em), Some(256));
    assert_eq!(sw, 0x9000);
    let sig = signature_of(&resp);
    let mut v = Verifier::new(MessageDigest::sha256(), &key).expect("verifier");
    v.set_rsa_padding(Padding::PKCS1_PSS).expect("pss");
    v.update(message).expect("update");
    assert!(v.verify(&sig).expect("verify"), "PSS signature verifies");
}

#[test]
fn rsa_refuses_raw_data_and_never_reaches_the_key() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let mut ciphertext_like = vec![0x42u8; 256];
    ciphertext_like[0] = 0x00;
    for input in [
        ciphertext_like,
        vec![0x00; 256],
        vec![0x01; 32],
        pkcs1_sha256_block(b"x")[1..].to_vec(),
    ] {
        assert_eq!(
            status_of(&mut applet, 0x87, 0x07, 0x9A, &ga_template(&input)),
            0x6A80
        );
    }
    assert!(applet.backend().signed.is_empty());
}

#[test]
fn ec_9c_needs_the_pin_immediately_before_every_signature() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    let digest = hash(MessageDigest::sha256(), b"prescription 1").expect("hash");
    let template = ga_template(&digest);

    // Logged in for the session is not enough for 9C.
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    assert_eq!(verify_state(&mut applet), 0x9000);
    assert_eq!(status_of(&mut applet, 0x87, 0x11, 0x9C, &template), 0x6982);

    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let (resp, sw) = transmit(&mut applet, 0x87, 0x11, 0x9C, &template, Some(256));
    assert_eq!(sw, 0x9000);
    let sig = EcdsaSig::from_der(&signature_of(&resp)).expect("DER ECDSA signature");
    let ec = applet
        .backend()
        .key(KeySlot::Signature)
        .pkey
        .ec_key()
        .expect("ec");
    assert!(sig.verify(&digest, &ec).expect("verify"));
    assert!(
        matches!(applet.backend().signed.last(), Some((KeySlot::Signature, _, Some(p))) if p == PIN)
    );

    // Used once: the next signature needs another VERIFY.
    assert_eq!(status_of(&mut applet, 0x87, 0x11, 0x9C, &template), 0x6982);
    // Any command in between drops it.
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    assert_eq!(get_data(&mut applet, &[0x7E]).1, 0x9000);
    assert_eq!(status_of(&mut applet, 0x87, 0x11, 0x9C, &template), 0x6982);
    // A wrong PIN authorises nothing.
    assert_eq!(verify(&mut applet, b"999999"), 0x63C2);
    assert_eq!(status_of(&mut applet, 0x87, 0x11, 0x9C, &template), 0x6982);
    assert_eq!(applet.backend().signed.len(), 1);
}

#[test]
fn ec_9a_signs_digests_of_any_sha_size() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let ec = applet
        .backend()
        .key(KeySlot::Authentication)
        .pkey
        .ec_key()
        .expect("ec");
    for md in [
        MessageDigest::sha1(),
        MessageDigest::sha256(),
        MessageDigest::sha384(),
    ] {
        let digest = hash(md, b"ssh session id").expect("hash");
        let (resp, sw) = transmit(
            &mut applet,
            0x87,
            0x11,
            0x9A,
            &ga_template(&digest),
            Some(256),
        );
        assert_eq!(sw, 0x9000);
        let sig = EcdsaSig::from_der(&signature_of(&resp)).expect("DER");
        // ECDSA over the hash's leftmost 256 bits, as OpenSSL verifies it.
        assert!(
            sig.verify(&digest, &ec).expect("verify"),
            "{}",
            digest.len()
        );
    }
}

#[test]
fn general_authenticate_refusals() {
    let mut applet = new_applet(FakeCard::ec_only());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let digest = [7u8; 32];
    let t = ga_template(&digest);
    let cases: [(u8, u8, &[u8], u16, &str); 7] = [
        (0x07, 0x9A, &t, 0x6A86, "RSA on an EC key"),
        (0x14, 0x9A, &t, 0x6A86, "P-384"),
        (0x11, 0x9C, &t, 0x6A88, "no 9C key"),
        (0x11, 0x9D, &t, 0x6A86, "key management"),
        // OpenSC's GET CHALLENGE; 6A86 twice is "not supported" to it.
        (
            0x00,
            0x9B,
            &[0x7C, 0x02, 0x81, 0x00],
            0x6A86,
            "9B challenge",
        ),
        (
            0x11,
            0x9A,
            &[0x7C, 0x06, 0x82, 0x00, 0x85, 0x02, 1, 2],
            0x6A80,
            "ECDH",
        ),
        (
            0x11,
            0x9A,
            &[0x7C, 0x03, 0x81, 0x01, 0x01],
            0x6A80,
            "no 82 00",
        ),
    ];
    for (p1, p2, data, expected, why) in cases {
        assert_eq!(
            status_of(&mut applet, 0x87, p1, p2, data),
            expected,
            "{why}"
        );
    }
    assert!(applet.backend().signed.is_empty());
    applet.backend_mut().inserted = false;
    assert_eq!(
        status_of(&mut applet, 0x87, 0x11, 0x9A, &t),
        0x6A88,
        "no card"
    );
}

#[test]
fn one_extended_general_authenticate() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let message = b"extended";
    let cmd = apdu(
        0x00,
        0x87,
        0x07,
        0x9A,
        &ga_template(&pkcs1_sha256_block(message)),
        Some(65536),
        true,
    );
    let (resp, sw) = split(&applet.process(&cmd));
    assert_eq!(sw, 0x9000);
    let key = &applet.backend().key(KeySlot::Authentication).pkey;
    let mut v = Verifier::new(MessageDigest::sha256(), key).expect("verifier");
    v.update(message).expect("update");
    assert!(v.verify(&signature_of(&resp)).expect("verify"));
}

#[test]
fn a_broken_chain_is_dropped() {
    let mut applet = new_applet(FakeCard::rsa_with_signing());
    assert_eq!(verify(&mut applet, PIN), 0x9000);
    let template = ga_template(&pkcs1_sha256_block(b"m"));
    let first = apdu(0x10, 0x87, 0x07, 0x9A, &template[..255], None, false);
    assert_eq!(split(&applet.process(&first)).1, 0x9000);
    // Another command arrives: the chain is gone, the tail alone is wrong.
    assert_eq!(verify_state(&mut applet), 0x9000);
    let tail = apdu(0x00, 0x87, 0x07, 0x9A, &template[255..], Some(256), false);
    assert_eq!(split(&applet.process(&tail)).1, 0x6A80);
    // Chains longer than any command are refused.
    for _ in 0..16 {
        applet.process(&apdu(0x10, 0x87, 0x07, 0x9A, &[0u8; 255], None, false));
    }
    assert_eq!(
        split(&applet.process(&apdu(0x10, 0x87, 0x07, 0x9A, &[0u8; 255], None, false))).1,
        0x6700
    );
    assert!(applet.backend().signed.is_empty());
}
