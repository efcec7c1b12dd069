//! Java's SunPKCS11 provider (OpenJDK 17): the small program in
//! `java/Pkcs11Sign.java`, compiled here with javac, loads the module from a
//! SunPKCS11 config file, finds the card's key entry in the PKCS11 KeyStore, signs
//! with SHA256withRSA / SHA256withECDSA and verifies in software with the
//! entry's certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use lanyard_test_support::process::remove_at_exit;
use lanyard_test_support::{module_path, require_tool, run, KeyType};

use crate::world::{tools_present, world, Card};

/// Compiles the program once per test run; returns its class directory.
fn classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("lanyard-java.")
            .tempdir()
            .expect("create the class directory")
            .keep();
        remove_at_exit(&dir);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/java/Pkcs11Sign.java");
        let mut javac = Command::new("javac");
        javac.arg("-d").arg(&dir).arg(&src);
        run(javac, None, Duration::from_secs(180)).assert_success("javac Pkcs11Sign.java");
        dir
    })
}

/// Runs the program for `card` with SunPKCS11 pointed at its slot; returns the
/// `key=value` lines it printed.
fn sign_with_java(card: &Card, algorithm: &str) -> Vec<(String, String)> {
    let classes = classes();
    let dir = crate::world::scratch();
    let config = dir.path().join("lanyard-pkcs11.cfg");
    std::fs::write(
        &config,
        format!(
            "name = Lanyard\nlibrary = {}\nslot = {}\n",
            module_path().display(),
            card.slot
        ),
    )
    .expect("write the SunPKCS11 config");
    let mut java = Command::new("java");
    java.arg("-cp")
        .arg(classes)
        .arg("Pkcs11Sign")
        .arg(&config)
        .arg(card.pin)
        .arg(algorithm)
        .envs(world().daemon.env());
    let out = run(java, None, Duration::from_secs(120));
    out.assert_success(&format!("java Pkcs11Sign {algorithm}"));
    out.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check(card: &Card, algorithm: &str, key_algorithm: &str, verifier: &str) {
    let lines = sign_with_java(card, algorithm);
    let value = |k: &str| {
        lines
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k} in the program's output: {lines:?}"))
    };
    assert_eq!(value("provider"), "SunPKCS11-Lanyard", "{lines:?}");
    let mut key_entries: Vec<&str> = lines
        .iter()
        .filter(|(k, v)| k == "alias" && v.ends_with("(key entry)"))
        .map(|(_, v)| v.as_str())
        .collect();
    key_entries.sort_unstable();
    // The authentication key, and the document-signing key (issue 5 row 9).
    assert_eq!(
        key_entries,
        vec![
            format!("{} (Digital Signature) (key entry)", card.holder),
            format!("{} (key entry)", card.holder),
        ],
        "the KeyStore's key entries: {lines:?}"
    );
    assert_eq!(value("key_algorithm"), key_algorithm, "{lines:?}");
    assert!(
        value("subject").contains(&format!("CN={}", card.holder)),
        "{lines:?}"
    );
    // Verified outside the token, by the JDK's own provider.
    assert_eq!(value("verifier_provider"), verifier, "{lines:?}");
    assert_eq!(value("verified"), "true", "{lines:?}");
    assert_eq!(value("altered_verified"), "false", "{lines:?}");
    if card.key == KeyType::Rsa2048 {
        assert_eq!(value("signature_bytes"), "256", "{lines:?}");
    }
}

fn java_tools() -> bool {
    tools_present() && require_tool("javac") && require_tool("java")
}

#[test]
fn sunpkcs11_signs_sha256_with_rsa_on_the_rsa_card() {
    if !java_tools() {
        return;
    }
    check(&world().rsa, "SHA256withRSA", "RSA", "SunRsaSign");
}

#[test]
fn sunpkcs11_signs_sha256_with_ecdsa_on_the_ec_card() {
    if !java_tools() {
        return;
    }
    check(&world().ec, "SHA256withECDSA", "EC", "SunEC");
}
