//! Every signature mechanism the issue names, through `pkcs11-tool`, checked by OpenSSL
//! with the certificate's public key: SHA-384/512 PKCS#1, PSS with the default and a
//! different salt length (which must be honoured), CKM_RSA_PKCS on a bare 36-byte
//! MD5+SHA-1 input (as TLS 1.0 clients sign), ECDSA-SHA384 and raw CKM_ECDSA.

use std::path::{Path, PathBuf};

use crate::world::{
    export_certificate, openssl, public_key_of, scratch, sign, tools_present, world, Card,
};

struct Signed {
    _dir: tempfile::TempDir,
    data: PathBuf,
    sig: PathBuf,
    public_key: PathBuf,
}

fn sign_file(card: &Card, mechanism: &str, extra: &[&str], data: &[u8]) -> Signed {
    let w = world();
    let tool = w.daemon.pkcs11_tool();
    let dir = scratch();
    let data_path = dir.path().join("data.bin");
    std::fs::write(&data_path, data).expect("write data");
    let sig = dir.path().join("sig.bin");
    sign(&tool, card, mechanism, extra, &data_path, &sig)
        .assert_success(&format!("pkcs11-tool --sign -m {mechanism} {extra:?}"));
    let cert = export_certificate(&tool, card, dir.path());
    let public_key = public_key_of(&cert, dir.path(), "card");
    Signed {
        _dir: dir,
        data: data_path,
        sig,
        public_key,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `openssl dgst -DIGEST [OPTS…] -verify pub -signature sig data`.
fn dgst_verify(signed: &Signed, digest: &str, opts: &[&str]) -> bool {
    let mut args = vec!["dgst", digest];
    args.extend_from_slice(opts);
    args.extend([
        "-verify",
        s(&signed.public_key),
        "-signature",
        s(&signed.sig),
        s(&signed.data),
    ]);
    let out = openssl(&args);
    out.success() && out.stdout.contains("Verified OK")
}

const DOCUMENT: &[u8] = b"Referral letter for patient 943 476 5919.\n";

#[test]
fn rsa_pkcs1_with_sha384_and_sha512() {
    if !tools_present() {
        return;
    }
    for (mechanism, digest) in [
        ("SHA384-RSA-PKCS", "-sha384"),
        ("SHA512-RSA-PKCS", "-sha512"),
    ] {
        let signed = sign_file(&world().rsa, mechanism, &[], DOCUMENT);
        assert!(
            dgst_verify(&signed, digest, &[]),
            "{mechanism} did not verify"
        );
        let wrong = if digest == "-sha384" {
            "-sha512"
        } else {
            "-sha384"
        };
        assert!(
            !dgst_verify(&signed, wrong, &[]),
            "{mechanism} verified with the wrong hash"
        );
    }
}

#[test]
fn rsa_pss_honours_the_salt_length() {
    if !tools_present() {
        return;
    }
    let pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt"];
    let default = sign_file(&world().rsa, "SHA256-RSA-PKCS-PSS", &[], DOCUMENT);
    assert!(dgst_verify(
        &default,
        "-sha256",
        &[&pss[..], &["rsa_pss_saltlen:32"]].concat()
    ));

    let short = sign_file(
        &world().rsa,
        "SHA256-RSA-PKCS-PSS",
        &["--salt-len", "20"],
        DOCUMENT,
    );
    assert!(
        dgst_verify(
            &short,
            "-sha256",
            &[&pss[..], &["rsa_pss_saltlen:20"]].concat()
        ),
        "PSS with a 20-byte salt did not verify as such"
    );
    assert!(
        !dgst_verify(
            &short,
            "-sha256",
            &[&pss[..], &["rsa_pss_saltlen:32"]].concat()
        ),
        "the salt length asked for was ignored (a 32-byte salt verified)"
    );
}

#[test]
fn rsa_pkcs_signs_a_bare_md5_sha1_pair() {
    if !tools_present() {
        return;
    }
    // What a TLS 1.0/1.1 client hands to CKM_RSA_PKCS: MD5 || SHA-1, no DigestInfo.
    let dir = scratch();
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, DOCUMENT).expect("write");
    let mut pair = Vec::new();
    for digest in ["-md5", "-sha1"] {
        let out_file = dir.path().join(format!("{digest}.bin"));
        openssl(&["dgst", digest, "-binary", "-out", s(&out_file), s(&doc)])
            .assert_success("openssl dgst");
        pair.extend(std::fs::read(&out_file).expect("read digest"));
    }
    assert_eq!(pair.len(), 36);
    let signed = sign_file(&world().rsa, "RSA-PKCS", &[], &pair);
    assert_eq!(
        std::fs::metadata(&signed.sig).map(|m| m.len()).unwrap_or(0),
        256,
        "RSA-2048 signature size"
    );
    let recovered = dir.path().join("recovered.bin");
    openssl(&[
        "pkeyutl",
        "-verifyrecover",
        "-pubin",
        "-inkey",
        s(&signed.public_key),
        "-pkeyopt",
        "rsa_padding_mode:pkcs1",
        "-in",
        s(&signed.sig),
        "-out",
        s(&recovered),
    ])
    .assert_success("openssl pkeyutl -verifyrecover");
    assert_eq!(
        std::fs::read(&recovered).expect("read recovered"),
        pair,
        "the signed block is not the 36 bytes given"
    );
}

#[test]
fn ecdsa_with_sha384_and_raw_digests() {
    if !tools_present() {
        return;
    }
    let signed = sign_file(
        &world().ec,
        "ECDSA-SHA384",
        &["--signature-format", "openssl"],
        DOCUMENT,
    );
    assert!(
        dgst_verify(&signed, "-sha384", &[]),
        "ECDSA-SHA384 did not verify"
    );
    assert!(
        !dgst_verify(&signed, "-sha256", &[]),
        "ECDSA-SHA384 verified as SHA-256"
    );

    // CKM_ECDSA signs whatever digest the caller computed.
    let dir = scratch();
    let digest = dir.path().join("digest.bin");
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, DOCUMENT).expect("write");
    openssl(&["dgst", "-sha256", "-binary", "-out", s(&digest), s(&doc)])
        .assert_success("openssl dgst");
    let raw = sign_file(
        &world().ec,
        "ECDSA",
        &["--signature-format", "openssl"],
        &std::fs::read(&digest).expect("read digest"),
    );
    let out = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        s(&raw.public_key),
        "-in",
        s(&raw.data),
        "-sigfile",
        s(&raw.sig),
    ]);
    out.assert_success("openssl pkeyutl -verify of a raw ECDSA signature");
    assert!(
        out.stdout.contains("Signature Verified Successfully"),
        "{out}"
    );
}
