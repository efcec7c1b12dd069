//! A root and issuing CA made in memory for the unit tests of this crate,
//! built with the same profiles `lanyard-ca init` uses, and the card holder
//! those tests issue to.

use rcgen::{Issuer, KeyPair};
use time::OffsetDateTime;

use crate::{generate_ca_key, issuing_ca_params, root_ca_params, CardHolder, CertSerial};

/// A two-level CA: the issuer signs, the DERs are for checking.
pub(crate) struct TestCa {
    pub(crate) root_der: Vec<u8>,
    pub(crate) issuing_der: Vec<u8>,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new root and issuing CA of "Test Trust".
    pub(crate) fn new() -> TestCa {
        let now = OffsetDateTime::now_utc();
        let root_key = generate_ca_key().unwrap();
        let root_params =
            root_ca_params("Test Trust", &CertSerial::from_random([1; 16]), now).unwrap();
        let root_cert = root_params.self_signed(&root_key).unwrap();
        let root = Issuer::new(root_params, root_key);
        let issuing_key = generate_ca_key().unwrap();
        let issuing_params =
            issuing_ca_params("Test Trust", &CertSerial::from_random([2; 16]), now).unwrap();
        let issuing_cert = issuing_params.signed_by(&issuing_key, &root).unwrap();
        let issuer = Issuer::from_ca_cert_der(issuing_cert.der(), issuing_key).unwrap();
        TestCa {
            root_der: root_cert.der().to_vec(),
            issuing_der: issuing_cert.der().to_vec(),
            issuer,
        }
    }
}

/// Dr Ada Smith's card 0A1B2C3D4E5F at "Test Trust".
pub(crate) fn holder() -> CardHolder {
    CardHolder {
        holder_name: "Dr Ada Smith".into(),
        user_id: "555123456789".into(),
        role: "R8000 Clinical Practitioner".into(),
        card_id: "0A1B2C3D4E5F".into(),
        organisation: "Test Trust".into(),
    }
}
