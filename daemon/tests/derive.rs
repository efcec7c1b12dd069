//! DeriveBegin / DeriveFinish over the real agent socket, for what the
//! daemon decides alone: a finish without a pending enrolment, a new PIN of
//! the wrong format, a CA that does not offer derivation, a bad CA URL — each
//! refused with a clear error and no card file. The whole flow with a real CA
//! and a smartcard is tests/tests/system/derived_enrolment.rs.

mod common;

use common::mock_ca::MockCa;
use common::*;
use lanyard_proto::agent::{request, DeriveBegin, DeriveFinish, ErrorCode, KeyType};

fn card_files(env: &TestEnv) -> usize {
    std::fs::read_dir(env.store_dir().join("cards"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn message(r: &lanyard_proto::agent::Response) -> String {
    r.error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

fn finish(pending_id: &str, pin: &str) -> request::Body {
    request::Body::DeriveFinish(DeriveFinish {
        pending_id: pending_id.into(),
        physical_certificate_der: b"certificate".to_vec(),
        physical_chain_der: Vec::new(),
        proof_signature: b"signature".to_vec(),
        pin: pin.into(),
    })
}

#[test]
fn derive_requests_refuse_what_the_daemon_can_tell_is_wrong() {
    let mut env = TestEnv::new();
    env.start();
    let ca = MockCa::start(env.tmp.path());
    let mut client = env.client(1);

    // No such pending enrolment.
    let r = client.call(finish("0123456789abcdef0123456789abcdef", PIN));
    assert_eq!(code(&r), ErrorCode::EnrollFailed as i32, "{r:?}");
    assert!(message(&r).contains("no such derived enrolment"), "{r:?}");

    // A new PIN of the wrong format, before anything else.
    let r = client.call(finish("whatever", "12"));
    assert_eq!(code(&r), ErrorCode::PinLenRange as i32, "{r:?}");

    // No certificate or signature from the physical card.
    let r = client.call(request::Body::DeriveFinish(DeriveFinish {
        pending_id: "whatever".into(),
        pin: PIN.into(),
        ..Default::default()
    }));
    assert_eq!(code(&r), ErrorCode::BadRequest as i32, "{r:?}");

    // A bad CA URL, and a CA without derivation (the stand-in CA has none).
    let root = std::fs::read(&ca.root_pem).unwrap();
    let r = client.call(request::Body::DeriveBegin(DeriveBegin {
        ca_url: "http://not-tls".into(),
        ca_cert_pem: root.clone(),
        key_type: KeyType::EcP256 as i32,
    }));
    assert_eq!(code(&r), ErrorCode::BadRequest as i32, "{r:?}");
    let r = client.call(request::Body::DeriveBegin(DeriveBegin {
        ca_url: ca.url.clone(),
        ca_cert_pem: root,
        key_type: KeyType::EcP256 as i32,
    }));
    assert_eq!(code(&r), ErrorCode::EnrollFailed as i32, "{r:?}");
    assert!(message(&r).contains("the CA refused it"), "{r:?}");

    assert_eq!(card_files(&env), 0);
    assert!(!env.log().contains(PIN), "a PIN reached the log");
}
