//! The reader link and its backend over a real daemon state (a card store in
//! a temporary directory): one PIN counter with PKCS#11 logins, signatures
//! that verify with the card's certificate, framing, removal on suspension.

use std::sync::Arc;

use lanyard_piv::{CardBackend, KeySlot, PinError, PinStatus, SignError, SignInput};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Padding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::backend::DaemonBackend;
use super::link::{self, LinkEnd};
use super::presence;
use crate::app_sessions::AppId;
use crate::card_store::testing;
use crate::config::Config;
use crate::error::Error;
use crate::keys::{KeyType, Mechanism, SigningKey};
use crate::pin::Pin;
use crate::state::{CheckInOutcome, Daemon};

const PIN: &str = "123456";

/// How long a test waits for something asynchronous; generous, not a timing check.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A daemon holding card C1 of `key_type` (PIN 123456, a CA on record so
/// that a check-in can suspend it) and a copy of its key for the checks.
async fn daemon_with(key_type: KeyType) -> (tempfile::TempDir, Arc<Daemon>, SigningKey) {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        ..Config::default()
    };
    let daemon = Daemon::open(config, tmp.path(), tmp.path().join("s")).unwrap();
    let key = SigningKey::generate(key_type).unwrap();
    let copy = SigningKey::from_pkcs8(&key.to_pkcs8().unwrap()).unwrap();
    let mut new = testing::self_signed_card("C1", 0, "Dr Ada Smith", key).unwrap();
    new.ca_url = "https://127.0.0.1:1".into();
    new.ca_cert_pem = "-----BEGIN CERTIFICATE-----\n".into();
    daemon.add_card(new, Pin::new(PIN.into())).await.unwrap();
    (tmp, Arc::new(daemon), copy)
}

fn backend(daemon: &Arc<Daemon>) -> DaemonBackend {
    DaemonBackend::new(
        daemon.clone(),
        tokio::runtime::Handle::current(),
        "C1".into(),
        1,
    )
    .unwrap()
}

fn pin(s: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(s.as_bytes().to_vec())
}

fn failures(daemon: &Daemon) -> u32 {
    daemon.card_file("C1").unwrap().pin_failures
}

/// Runs `f` on a blocking thread (the backend blocks on the daemon's async calls).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_shares_the_pin_counter_with_pkcs11_logins() {
    let (_tmp, daemon, _) = daemon_with(KeyType::EcP256).await;
    let mut b = backend(&daemon);
    let d = daemon.clone();
    let b = blocking(move || {
        assert_eq!(
            b.verify_pin(pin("000000")),
            Err(PinError::Incorrect { tries_left: 2 })
        );
        assert_eq!(failures(&d), 1, "counted in the card file");
        assert_eq!(b.pin_status(), PinStatus::NotVerified { tries_left: 2 });
        // Not a PIN at all (letters, too short): refused, not counted.
        assert_eq!(b.verify_pin(pin("12ab56")), Err(PinError::Malformed));
        assert_eq!(b.verify_pin(pin("12")), Err(PinError::Malformed));
        assert_eq!(failures(&d), 1);
        b.verify_pin(pin(PIN)).unwrap();
        assert_eq!(failures(&d), 0);
        assert_eq!(b.pin_status(), PinStatus::Verified);
        b
    })
    .await;
    // The reader's session is a login like an application's.
    assert!(daemon.card("C1", Some(b.app())).unwrap().logged_in);

    // Three wrong PINs through the reader lock the card for PKCS#11 too.
    let mut b = b;
    let b = blocking(move || {
        b.reset();
        for left in [2, 1] {
            assert_eq!(
                b.verify_pin(pin("999999")),
                Err(PinError::Incorrect { tries_left: left })
            );
        }
        assert_eq!(
            b.verify_pin(pin("999999")),
            Err(PinError::Incorrect { tries_left: 0 })
        );
        assert_eq!(b.verify_pin(pin(PIN)), Err(PinError::Blocked));
        assert_eq!(b.pin_status(), PinStatus::Blocked);
        b
    })
    .await;
    let app = AppId::new(&[7; 16]).unwrap();
    daemon.connection_opened(&app);
    let err = daemon
        .login(&app, "C1", Pin::new(PIN.into()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinLocked), "{err}");
    drop(b);
}

fn digest_info_sha256(message: &[u8]) -> Vec<u8> {
    let mut di = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    di.extend_from_slice(&openssl::sha::sha256(message));
    di
}

/// The PSS encoding inside a signature, recovered with the public key.
fn pss_encoding(key: &SigningKey, digest: &[u8]) -> Vec<u8> {
    use lanyard_proto::agent::HashAlgorithm;
    let mech = Mechanism::RsaPss {
        hash: HashAlgorithm::Sha256,
        mgf_hash: HashAlgorithm::Sha256,
        salt_len: 32,
    };
    let sig = key.sign(mech, digest).unwrap();
    let rsa = key.pkey().rsa().unwrap();
    let mut em = vec![0; rsa.size() as usize];
    let n = rsa.public_decrypt(&sig, &mut em, Padding::NONE).unwrap();
    em.truncate(n);
    em
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_signatures_need_verify_and_verify_with_the_card_certificate() {
    let (_tmp, daemon, key) = daemon_with(KeyType::Rsa2048).await;
    let cert = daemon.card("C1", None).unwrap().certificate_der;
    let public = openssl::x509::X509::from_der(&cert)
        .unwrap()
        .public_key()
        .unwrap();
    let message = b"prescription 42".to_vec();
    let digest = openssl::sha::sha256(&message).to_vec();
    let em = pss_encoding(&key, &digest);
    let mut b = backend(&daemon);
    let (pkcs1, pss) = blocking(move || {
        let input = SignInput::RsaPkcs1 {
            data: digest_info_sha256(b"prescription 42"),
        };
        assert_eq!(
            b.sign(KeySlot::Authentication, input.clone(), None),
            Err(SignError::NotVerified),
            "no signature before VERIFY"
        );
        b.verify_pin(pin(PIN)).unwrap();
        let pkcs1 = b
            .sign(KeySlot::Authentication, input.clone(), None)
            .unwrap();
        let pss = b
            .sign(
                KeySlot::Authentication,
                SignInput::RsaPssEncoded {
                    encoded: em.clone(),
                },
                None,
            )
            .unwrap();
        // Not a PSS encoding: never a raw RSA operation.
        let mut fake = vec![0x11u8; 256];
        fake[255] = 0xBC;
        assert!(matches!(
            b.sign(
                KeySlot::Authentication,
                SignInput::RsaPssEncoded { encoded: fake },
                None
            ),
            Err(SignError::BadInput(_))
        ));
        // No document-signing key on this card.
        assert!(matches!(
            b.sign(KeySlot::Signature, input.clone(), Some(pin(PIN))),
            Err(SignError::NoKey)
        ));
        // The card session ends: no more signatures, and the login is gone.
        b.reset();
        assert_eq!(
            b.sign(KeySlot::Authentication, input, None),
            Err(SignError::NotVerified)
        );
        assert!(!b.pin_status().eq(&PinStatus::Verified));
        (pkcs1, pss)
    })
    .await;
    let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
    assert!(v.verify_oneshot(&pkcs1, &message).unwrap());
    let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
    v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
    v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)
        .unwrap();
    assert!(v.verify_oneshot(&pss, &message).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn ecdsa_signatures_are_der_and_dropping_the_link_logs_out() {
    let (_tmp, daemon, _) = daemon_with(KeyType::EcP256).await;
    let cert = daemon.card("C1", None).unwrap().certificate_der;
    let public = openssl::x509::X509::from_der(&cert)
        .unwrap()
        .public_key()
        .unwrap();
    let digest = openssl::sha::sha256(b"hello").to_vec();
    let mut b = backend(&daemon);
    let app = b.app().clone();
    let (b, sig) = blocking(move || {
        b.verify_pin(pin(PIN)).unwrap();
        let sig = b
            .sign(
                KeySlot::Authentication,
                SignInput::EcdsaDigest {
                    digest: digest.clone(),
                },
                None,
            )
            .unwrap();
        (b, sig)
    })
    .await;
    let es = openssl::ecdsa::EcdsaSig::from_der(&sig).unwrap();
    let ec = PKey::from_ec_key(public.ec_key().unwrap()).unwrap();
    assert!(es
        .verify(&openssl::sha::sha256(b"hello"), &ec.ec_key().unwrap())
        .unwrap());
    assert!(daemon.card("C1", Some(&app)).unwrap().logged_in);
    drop(b);
    assert!(!daemon.card("C1", Some(&app)).unwrap().logged_in);
}

async fn send<S: tokio::io::AsyncWrite + Unpin>(client: &mut S, body: &[u8]) {
    let mut frame = (body.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    client.write_all(&frame).await.unwrap();
}

async fn receive<S: tokio::io::AsyncRead + Unpin>(client: &mut S) -> Vec<u8> {
    let mut len = [0u8; 2];
    client.read_exact(&mut len).await.unwrap();
    let mut body = vec![0; u16::from_be_bytes(len) as usize];
    client.read_exact(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_link_answers_vpcd_and_a_bad_frame_resets_it() {
    let (_tmp, daemon, _) = daemon_with(KeyType::EcP256).await;
    for bad in [vec![0u8, 0], vec![0, 1, 9]] {
        let (mut client, server) = tokio::io::duplex(4096);
        let card = presence::current(&daemon, None).unwrap();
        let link = tokio::spawn(link::serve(server, daemon.clone(), None, card));
        send(&mut client, &[4]).await;
        assert_eq!(receive(&mut client).await, lanyard_piv::atr());
        send(&mut client, &[1]).await;
        // SELECT of the PIV application: some answer ending in a status word.
        send(
            &mut client,
            &[
                0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00,
                0x00,
            ],
        )
        .await;
        assert!(receive(&mut client).await.len() >= 2);
        send(&mut client, &[0]).await;
        client.write_all(&bad).await.unwrap();
        let end = link.await.unwrap();
        assert!(matches!(end, LinkEnd::BadFrame(_)), "{end:?}");
    }
    // A closed connection ends the link too.
    let (client, server) = tokio::io::duplex(64);
    let card = presence::current(&daemon, None).unwrap();
    drop(client);
    let end = link::serve(server, daemon.clone(), None, card).await;
    assert!(matches!(end, LinkEnd::PeerClosed), "{end:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn suspension_removes_the_card_and_resumption_inserts_it() {
    let (_tmp, daemon, _) = daemon_with(KeyType::EcP256).await;
    let (_client, server) = tokio::io::duplex(64);
    let card = presence::current(&daemon, None).unwrap();
    assert_eq!(card.card_id, "C1");
    assert!(presence::current(&daemon, Some("C2")).is_none());
    let link = tokio::spawn(link::serve(server, daemon.clone(), None, card));
    let target = daemon.check_in_targets().remove(0);
    daemon
        .apply_check_in(&target, CheckInOutcome::Suspended)
        .await
        .unwrap();
    let end = tokio::time::timeout(PATIENCE, link)
        .await
        .expect("the link ends on suspension")
        .unwrap();
    assert!(matches!(end, LinkEnd::CardChanged(None)), "{end:?}");
    assert!(presence::current(&daemon, None).is_none());
    let waiting = {
        let daemon = daemon.clone();
        // The change signal alone (no recheck) must wake it.
        tokio::spawn(async move { presence::changed_within(&daemon, None, &None, None).await })
    };
    daemon
        .apply_check_in(&target, CheckInOutcome::Active)
        .await
        .unwrap();
    let back = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("resumption inserts the card")
        .unwrap();
    assert_eq!(back.map(|c| c.card_id).as_deref(), Some("C1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn listening_is_loopback_only_and_an_empty_reader_closes_connections() {
    assert!(super::listen::bind("0.0.0.0:0".parse().unwrap())
        .await
        .is_err());
    let (_tmp, daemon, _) = daemon_with(KeyType::EcP256).await;
    let listener = super::listen::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(super::listen::run(listener, daemon.clone(), None));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    send(&mut tcp, &[4]).await;
    assert_eq!(receive(&mut tcp).await, lanyard_piv::atr());
    // Naming a card that is not there: an empty reader, every connection closed.
    server.abort();
    let listener = super::listen::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(super::listen::run(listener, daemon, Some("C9".into())));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(&[0, 1, 4]).await;
    let mut buf = [0u8; 2];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
        .await
        .expect("closed, not left waiting")
        .unwrap_or(0);
    assert_eq!(n, 0, "no ATR from an empty reader");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_or_reissued_certificate_reinserts_the_card() {
    let (_tmp, daemon, _) = daemon_with(KeyType::EcP256).await;
    let app = AppId::new(&[3; 16]).unwrap();
    daemon.connection_opened(&app);
    daemon
        .login(&app, "C1", Pin::new(PIN.into()))
        .await
        .unwrap();
    let before = presence::current(&daemon, None).unwrap();
    let (_client, server) = tokio::io::duplex(64);
    let link = tokio::spawn(link::serve(server, daemon.clone(), None, before.clone()));
    let renewed = {
        let (daemon, seen) = (daemon.clone(), Some(before.clone()));
        // The change signal alone (no recheck) must wake it.
        tokio::spawn(async move { presence::changed_within(&daemon, None, &seen, None).await })
    };

    // A renewal: new key and certificate, same card.
    let snapshot = daemon.renewal_snapshot("C1").unwrap();
    let keys = daemon.unlocked_keys("C1").unwrap();
    let new_key = SigningKey::generate(KeyType::EcP256).unwrap();
    let cert = testing::self_signed_cert(&new_key, "Dr Ada Smith", 30).unwrap();
    daemon
        .install_renewed(
            &snapshot,
            keys.card_key,
            new_key,
            None,
            cert.clone(),
            vec![cert.clone()],
        )
        .await
        .unwrap();
    let end = tokio::time::timeout(PATIENCE, link)
        .await
        .expect("the link ends on renewal")
        .unwrap();
    match end {
        LinkEnd::CardChanged(Some(now)) => {
            assert_eq!(now.card_id, "C1");
            assert_eq!(now.certificate_der, cert);
            assert_ne!(now.certificate_der, before.certificate_der);
        }
        other => panic!("{other:?}"),
    }
    let now = tokio::time::timeout(PATIENCE, renewed)
        .await
        .expect("the renewal signals a change")
        .unwrap();
    assert_eq!(now.map(|c| c.certificate_der), Some(cert));

    // A re-issue in place (same card id) is a new card in the reader too.
    let seen = presence::current(&daemon, None);
    let waiting = {
        let daemon = daemon.clone();
        tokio::spawn(async move { presence::changed_within(&daemon, None, &seen, None).await })
    };
    let key = SigningKey::generate(KeyType::EcP256).unwrap();
    let new = testing::self_signed_card("C1", 0, "Dr Ada Smith", key).unwrap();
    let reissued = new.certificate_der.clone();
    daemon.add_card(new, Pin::new(PIN.into())).await.unwrap();
    let now = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("a re-issue changes the card in the reader")
        .unwrap()
        .unwrap();
    assert_eq!(now.certificate_der, reissued);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_mode_links_to_a_listening_vpcd_and_comes_back_after_it_drops() {
    let (_tmp, daemon, _) = daemon_with(KeyType::EcP256).await;
    // A stand-in for vpcd's own (listening) mode.
    let vpcd = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = vpcd.local_addr().unwrap().to_string();
    let task = tokio::spawn(super::connect::run(target, daemon.clone(), None));
    for round in 0..2 {
        let (mut tcp, _) = tokio::time::timeout(PATIENCE, vpcd.accept())
            .await
            .unwrap_or_else(|_| panic!("lanyardd connects (round {round})"))
            .unwrap();
        send(&mut tcp, &[4]).await;
        assert_eq!(receive(&mut tcp).await, lanyard_piv::atr());
        // pcscd restarts: the connection drops; lanyardd reconnects after its backoff.
        drop(tcp);
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn key_9c_signs_pss_encodings_with_the_document_key_and_the_pin_each_time() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        ..Config::default()
    };
    let daemon = Daemon::open(config, tmp.path(), tmp.path().join("s")).unwrap();
    let key = SigningKey::generate(KeyType::Rsa2048).unwrap();
    let mut new = testing::self_signed_card("C1", 0, "Dr Ada Smith", key).unwrap();
    let signing = SigningKey::generate(KeyType::Rsa2048).unwrap();
    let signing_copy = SigningKey::from_pkcs8(&signing.to_pkcs8().unwrap()).unwrap();
    let certificate_der = testing::self_signed_cert(&signing, "Dr Ada Smith", 30).unwrap();
    new.signing = Some(crate::card_store::NewSigningKey {
        key: signing,
        certificate_der: certificate_der.clone(),
    });
    daemon.add_card(new, Pin::new(PIN.into())).await.unwrap();
    let daemon = Arc::new(daemon);
    let digest = openssl::sha::sha256(b"discharge letter").to_vec();
    let em = pss_encoding(&signing_copy, &digest);
    let mut b = backend(&daemon);
    let view = b.card().unwrap();
    assert_eq!(view.slots.len(), 2, "9A and 9C");
    assert_eq!(view.slots[1].certificate_der, certificate_der);
    let sig = blocking(move || {
        b.verify_pin(pin(PIN)).unwrap();
        let input = SignInput::RsaPssEncoded { encoded: em };
        assert_eq!(
            b.sign(KeySlot::Signature, input.clone(), None),
            Err(SignError::NotVerified),
            "9C needs the PIN with the signature"
        );
        assert_eq!(
            b.sign(KeySlot::Signature, input.clone(), Some(pin("999999"))),
            Err(SignError::NotVerified)
        );
        b.sign(KeySlot::Signature, input, Some(pin(PIN))).unwrap()
    })
    .await;
    let public = PKey::public_key_from_der(&signing_copy.public_key_der().unwrap()).unwrap();
    let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
    v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
    v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)
        .unwrap();
    assert!(v.verify_oneshot(&sig, b"discharge letter").unwrap());
}
