//! Property tests for the DER the CA parses from outside: CSRs
//! (`check_csr`), card and operator certificates (`card_identity`,
//! `operator_identity`, `verify_issued_by`) and derivation proofs. Arbitrary
//! and mutated DER never panics and gives an error (or a result that still
//! satisfies the checks).

use std::sync::OnceLock;

use lanyard_certs::rcgen::{Issuer, KeyPair};
use lanyard_certs::{
    card_identity, check_csr, generate_ca_key, issue_card_certificate, issuing_ca_params,
    operator_identity, root_ca_params, verify_issued_by, verify_proof_signature, CardHolder,
    CertSerial, KeyKind, Validity,
};
use proptest::prelude::*;
use time::{Duration, OffsetDateTime};

/// Valid requests of every kind the tests of `csr_check` use (seeds for mutation).
const CSRS: [&[u8]; 7] = [
    include_bytes!("../testdata/rsa2048.csr.der"),
    include_bytes!("../testdata/rsa1024.csr.der"),
    include_bytes!("../testdata/rsa2048-sha1.csr.der"),
    include_bytes!("../testdata/rsa3072-pss.csr.der"),
    include_bytes!("../testdata/p256.csr.der"),
    include_bytes!("../testdata/p521.csr.der"),
    include_bytes!("../testdata/ed25519.csr.der"),
];

/// A root, an issuing CA and a card certificate it issued, DER.
struct Issued {
    issuing: Vec<u8>,
    card: Vec<u8>,
}

fn issued() -> &'static Issued {
    static ISSUED: OnceLock<Issued> = OnceLock::new();
    ISSUED.get_or_init(|| {
        let now = OffsetDateTime::now_utc();
        let root_key = generate_ca_key().unwrap();
        let root_params =
            root_ca_params("Test Trust", &CertSerial::from_random([1; 16]), now).unwrap();
        let root = Issuer::new(root_params, root_key);
        let issuing_key = generate_ca_key().unwrap();
        let issuing_params =
            issuing_ca_params("Test Trust", &CertSerial::from_random([2; 16]), now).unwrap();
        let issuing_cert = issuing_params.signed_by(&issuing_key, &root).unwrap();
        let issuer: Issuer<'static, KeyPair> =
            Issuer::from_ca_cert_der(issuing_cert.der(), issuing_key).unwrap();
        let holder = CardHolder {
            holder_name: "Dr Ada Smith".into(),
            user_id: "555123456789".into(),
            role: "R8000 Clinical Practitioner".into(),
            card_id: "0A1B2C3D4E5F".into(),
            organisation: "Test Trust".into(),
        };
        let csr = check_csr(CSRS[4]).unwrap();
        let validity = Validity::card(now, Duration::days(30)).unwrap();
        let card = issue_card_certificate(
            &csr,
            &holder,
            &CertSerial::from_random([3; 16]),
            validity,
            &issuer,
        )
        .unwrap();
        Issued {
            issuing: issuing_cert.der().to_vec(),
            card,
        }
    })
}

/// `der` with a few bytes XORed and possibly cut short.
fn mutate(der: &[u8], flips: &[(prop::sample::Index, u8)], cut: prop::sample::Index) -> Vec<u8> {
    let mut out = der.to_vec();
    for (at, byte) in flips {
        let i = at.index(out.len());
        out[i] ^= byte;
    }
    out.truncate(cut.index(out.len() + 1).max(out.len() / 2));
    out
}

fn flips() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..6)
}

#[test]
fn the_seeds_are_what_the_properties_mutate() {
    let i = issued();
    assert_eq!(card_identity(&i.card).unwrap().card_id(), "0A1B2C3D4E5F");
    verify_issued_by(&i.card, &i.issuing).unwrap();
    assert!(check_csr(CSRS[0]).is_ok() && check_csr(CSRS[1]).is_err());
}

proptest! {
    #[test]
    fn arbitrary_der_is_refused_everywhere(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(check_csr(&bytes).is_err());
        prop_assert!(card_identity(&bytes).is_err());
        prop_assert!(operator_identity(&bytes).is_none());
        prop_assert!(verify_issued_by(&bytes, &issued().issuing).is_err());
        prop_assert!(verify_issued_by(&issued().card, &bytes).is_err());
    }

    #[test]
    fn mutated_csrs_never_panic_and_pass_only_with_a_strong_key(
        seed in 0..CSRS.len(), flips in flips(), cut in any::<prop::sample::Index>(),
    ) {
        let der = mutate(CSRS[seed], &flips, cut);
        if let Ok(csr) = check_csr(&der) {
            match csr.key_kind() {
                KeyKind::Rsa { bits } => prop_assert!(bits >= 2048, "{bits}-bit RSA passed"),
                other => prop_assert!(other.bits() >= 256, "{other:?} passed"),
            }
        }
    }

    #[test]
    fn mutated_card_certificates_never_panic(flips in flips(), cut in any::<prop::sample::Index>()) {
        let i = issued();
        let der = mutate(&i.card, &flips, cut);
        let _ = card_identity(&der);
        let _ = operator_identity(&der);
        let _ = verify_issued_by(&der, &i.issuing);
        let issuing = mutate(&i.issuing, &flips, cut);
        let _ = verify_issued_by(&i.card, &issuing);
    }

    #[test]
    fn arbitrary_derivation_proofs_are_refused(
        spki_from_csr in any::<bool>(),
        spki in proptest::collection::vec(any::<u8>(), 0..200),
        message in proptest::collection::vec(any::<u8>(), 0..100),
        signature in proptest::collection::vec(any::<u8>(), 0..150),
    ) {
        let spki = if spki_from_csr {
            check_csr(CSRS[4]).unwrap().spki_der().to_vec()
        } else {
            spki
        };
        prop_assert!(verify_proof_signature(&spki, &message, &signature).is_err());
    }
}
