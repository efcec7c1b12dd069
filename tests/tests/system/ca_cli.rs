//! The CA as the IT desk uses it: `init` writes a root and an issuing CA that chain,
//! with private keys 0600; `admin issue-card --json` prints a readable one-time code
//! that is stored only as a hash (it is not in the database file).

use std::os::unix::fs::PermissionsExt;

use crate::world::{openssl_verify, shared_ca, tools_present, ROLE};

#[test]
fn init_writes_a_root_and_an_issuing_ca_that_chain() {
    if !tools_present() {
        return;
    }
    let ca = shared_ca();
    let root = ca.root_pem();
    let issuing = ca.issuing_pem();
    let out = openssl_verify(&root, None, &issuing);
    out.assert_success("openssl verify issuing.pem against root.pem");
    for key in ["root.key", "issuing.key"] {
        let mode = std::fs::metadata(ca.dir().join(key))
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key} has mode {:o}", mode & 0o777);
    }
}

#[test]
fn issue_card_prints_a_readable_one_time_code_stored_only_as_a_hash() {
    let ca = shared_ca();
    let a = ca.issue_card("Dr Kim Code", "555000000009", ROLE);
    let b = ca.issue_card("Dr Kim Code", "555000000009", ROLE);
    assert_ne!(a.code, b.code, "two cards got the same code");
    assert_ne!(a.card_id, b.card_id, "two cards got the same id");
    let groups: Vec<&str> = a.code.split('-').collect();
    assert!(groups.len() >= 3, "code {:?} is not in groups", a.code);
    assert!(
        groups
            .iter()
            .all(|g| (3..=6).contains(&g.len()) && g.chars().all(|c| c.is_ascii_alphanumeric())),
        "code {:?} has groups a person cannot read aloud",
        a.code
    );
    // At least 64 bits: 16 symbols of a 32-letter alphabet are 80.
    let symbols: usize = groups.iter().map(|g| g.len()).sum();
    assert!(symbols >= 13, "code {:?} is too short for 64 bits", a.code);
    assert!(!a.expires_at.is_empty(), "no expires_at: {}", a.json);

    for entry in std::fs::read_dir(ca.dir()).expect("read the CA directory") {
        let path = entry.expect("dir entry").path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).to_uppercase();
        let compact: String = a.code.chars().filter(|c| *c != '-').collect();
        assert!(
            !text.contains(&a.code.to_uppercase()) && !text.contains(&compact.to_uppercase()),
            "the enrolment code is stored in clear in {}",
            path.display()
        );
    }
}
