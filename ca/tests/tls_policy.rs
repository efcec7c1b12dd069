//! What an assessor checks on the CA's port with openssl: TLS 1.2 only with
//! forward secrecy (ECDHE), TLS 1.3, nothing with RSA key exchange; and weak
//! CSR keys (RSA-1024, RSA e = 3, P-192, secp256k1) refused over real TLS
//! with InvalidArgument, no certificate recorded and the code still unused.

mod lifecycle_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{require_tool, run, CmdOutput};
use lifecycle_support::{csr_for, p256, TestCa};
use tonic::Code;

/// `openssl s_client` against the CA's port with `args`, no input.
fn s_client(ca: &TestCa, args: &[&str]) -> CmdOutput {
    let host_port = ca.url.trim_start_matches("https://");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        host_port,
        "-servername",
        "localhost",
    ])
    .arg("-CAfile")
    .arg(ca.dir().join("root.pem"))
    .args(args);
    run(cmd, None, Duration::from_secs(30))
}

/// The protocol and cipher of a completed handshake, from s_client's
/// "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" line; None when it failed
/// ("New, (NONE), Cipher is (NONE)" or no such line).
fn negotiated(out: &CmdOutput) -> Option<(String, String)> {
    out.stdout.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("New, ")?;
        let (protocol, cipher) = rest.split_once(", Cipher is ")?;
        (protocol != "(NONE)" && cipher.trim() != "(NONE)")
            .then(|| (protocol.to_string(), cipher.trim().to_string()))
    })
}

#[test]
fn tls_needs_forward_secrecy() {
    if !require_tool("openssl") {
        return;
    }
    let ca = TestCa::start(&[]);

    for (what, args) in [
        (
            "TLS 1.2 AES128-GCM-SHA256",
            &["-tls1_2", "-cipher", "AES128-GCM-SHA256"][..],
        ),
        ("TLS 1.2 RSA key exchange", &["-tls1_2", "-cipher", "kRSA"]),
        ("TLS 1.2 finite-field DHE", &["-tls1_2", "-cipher", "kDHE"]),
        ("TLS 1.1", &["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"]),
    ] {
        let out = s_client(&ca, args);
        assert!(!out.timed_out, "{what}: {out}");
        // The client offered it (connected, sent its hello); the server refused.
        assert!(out.stdout.contains("CONNECTED("), "{what}: {out}");
        assert!(negotiated(&out).is_none(), "{what} was accepted: {out}");
        assert_ne!(out.code, Some(0), "{what}: {out}");
    }

    let out = s_client(&ca, &["-tls1_2"]);
    let (protocol, cipher) = negotiated(&out).unwrap_or_else(|| panic!("TLS 1.2 refused: {out}"));
    assert_eq!(protocol, "TLSv1.2", "{out}");
    assert!(cipher.starts_with("ECDHE-"), "{cipher}: {out}");
    assert!(out.stdout.contains("Verify return code: 0 (ok)"), "{out}");

    let out = s_client(&ca, &["-tls1_3"]);
    let (protocol, cipher) = negotiated(&out).unwrap_or_else(|| panic!("TLS 1.3 refused: {out}"));
    assert_eq!(protocol, "TLSv1.3", "{out}");
    assert!(cipher.starts_with("TLS_"), "{cipher}: {out}");
}

/// A DER PKCS#10 request made by `openssl req` with a key from `genpkey ARGS`.
fn openssl_csr(dir: &Path, name: &str, genpkey: &[&str]) -> Vec<u8> {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut cmd = Command::new("openssl");
    cmd.arg("genpkey").args(genpkey).arg("-out").arg(&key);
    run(cmd, None, Duration::from_secs(60)).assert_success("openssl genpkey");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req", "-new", "-sha256", "-subj", "/CN=weak", "-outform", "DER",
    ])
    .arg("-key")
    .arg(&key)
    .arg("-out")
    .arg(&csr);
    run(cmd, None, Duration::from_secs(60)).assert_success("openssl req");
    std::fs::read(&csr).expect("the CSR openssl wrote")
}

async fn certificate_count(ca: &TestCa) -> i64 {
    let store = ca.store().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates")
        .fetch_one(store.pool())
        .await
        .expect("count certificates");
    store.close().await;
    n
}

#[tokio::test]
async fn weak_csr_keys_are_refused() {
    if !require_tool("openssl") {
        return;
    }
    let ca = TestCa::start(&[]);
    let dir = ca.tmp.path();
    let weak = [
        (
            "rsa1024",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"][..],
            "1024 bits",
        ),
        (
            "rsa2048-e3",
            &[
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-pkeyopt",
                "rsa_keygen_pubexp:3",
            ],
            "public exponent 3",
        ),
        (
            "p192",
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:prime192v1",
            ],
            "curve",
        ),
        (
            "secp256k1",
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:secp256k1",
            ],
            "curve",
        ),
    ];
    let (card_id, code) = ca.issue_card().await;
    let before = certificate_count(&ca).await;
    for (name, genpkey, says) in weak {
        let csr = openssl_csr(dir, name, genpkey);
        let err = ca.enroll(&code, csr).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(err.message().contains(says), "{name}: {err:?}");
        assert_eq!(
            certificate_count(&ca).await,
            before,
            "{name} got a certificate"
        );
    }
    // Nothing was used up: the same code enrols a strong key.
    let resp = ca.enroll(&code, csr_for(&p256())).await.expect("enrolment");
    assert_eq!(resp.card_id, card_id);
    assert_eq!(certificate_count(&ca).await, before + 1);
}
