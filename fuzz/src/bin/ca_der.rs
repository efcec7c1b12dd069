//! Fuzz target: the DER the CA parses from outside. The bytes go through the
//! CSR checks, the card and operator certificate readers and the chain check
//! (as certificate and as issuer), and a strong key is all a CSR may pass with.

use lanyard_certs::{card_identity, check_csr, operator_identity, verify_issued_by, KeyKind};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(csr) = check_csr(data) {
            match csr.key_kind() {
                KeyKind::Rsa { bits } => assert!(bits >= 2048, "{bits}-bit RSA passed"),
                other => assert!(other.bits() >= 256, "{other:?} passed"),
            }
        }
        let _ = card_identity(data);
        let _ = operator_identity(data);
        let _ = verify_issued_by(data, data);
    });
}
