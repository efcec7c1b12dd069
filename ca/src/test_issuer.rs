//! An issuing CA made in memory for unit tests (root, issuing CA and a file
//! key), so tests that sign certificates or CRLs need no CA directory.

use lanyard_certs::rcgen::{Certificate, Issuer, KeyPair};
use lanyard_certs::{generate_ca_key, issuing_ca_params, root_ca_params, CertSerial};
use time::OffsetDateTime;

use crate::issuer::IssuingCa;

/// A fresh root and an issuing CA under it: (root, issuing CA, issuing key).
pub(crate) fn test_hierarchy() -> (Certificate, Certificate, KeyPair) {
    let now = OffsetDateTime::now_utc();
    let root_key = generate_ca_key().unwrap();
    let root_params = root_ca_params("Test Trust", &CertSerial::from_random([1; 16]), now).unwrap();
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root = Issuer::new(root_params, &root_key);
    let key = generate_ca_key().unwrap();
    let issuing = issuing_ca_params("Test Trust", &CertSerial::from_random([2; 16]), now)
        .unwrap()
        .signed_by(&key, &root)
        .unwrap();
    (root_cert, issuing, key)
}

/// A fresh in-memory issuing CA under its own root.
pub(crate) fn test_issuer() -> IssuingCa {
    let (root, issuing, key) = test_hierarchy();
    IssuingCa::from_parts(issuing.der().to_vec(), root.der().to_vec(), key).unwrap()
}
