//! Every signature mechanism the issue names, through `pkcs11-tool`, checked by OpenSSL
//! with the certificate's public key: SHA-384/512 PKCS#1, PSS with the default and a
//! different salt length (which must be honoured), CKM_RSA_PKCS on a bare 36-byte
//! MD5+SHA-1 input (as TLS 1.0 clients sign), ECDSA-SHA384 and raw CKM_ECDSA; and
//! every mechanism `pkcs11-tool -M` lists for each card: signatures checked by OpenSSL
//! and `pkcs11-tool --verify` (a changed document failing both), digests by `openssl dgst`.

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

/// One line of `pkcs11-tool -M`: `  SHA256-RSA-PKCS, keySize={2048,2048}, hw, sign, verify`.
struct Listed {
    name: String,
    flags: Vec<String>,
}

fn listed_mechanisms(card: &Card) -> Vec<Listed> {
    let slot = card.slot.to_string();
    let out = world().daemon.pkcs11_tool().run(&["--slot", &slot, "-M"]);
    out.assert_success("pkcs11-tool -M");
    let list: Vec<Listed> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let mut parts = l.trim().split(", ");
            Listed {
                name: parts.next().unwrap_or_default().to_string(),
                flags: parts.map(str::to_string).collect(),
            }
        })
        .collect();
    assert!(!list.is_empty(), "no mechanisms listed\n{out}");
    list
}

/// OpenSSL's digest option for a mechanism's hash (`SHA384-RSA-PKCS` → `-sha384`).
fn hash_of(mechanism: &str) -> Option<&'static str> {
    [
        ("SHA1", "-sha1"),
        ("SHA-1", "-sha1"),
        ("SHA224", "-sha224"),
        ("SHA256", "-sha256"),
        ("SHA384", "-sha384"),
        ("SHA512", "-sha512"),
    ]
    .into_iter()
    .find(|(prefix, _)| mechanism == *prefix || mechanism.starts_with(&format!("{prefix}-")))
    .or_else(|| {
        // ECDSA-SHA256 names its hash last.
        [
            ("-SHA1", "-sha1"),
            ("-SHA224", "-sha224"),
            ("-SHA256", "-sha256"),
            ("-SHA384", "-sha384"),
            ("-SHA512", "-sha512"),
        ]
        .into_iter()
        .find(|(suffix, _)| mechanism.ends_with(suffix))
    })
    .map(|(_, digest)| digest)
}

/// `openssl pkeyutl -verify` of a signature over the bytes in `signed.data`
/// (a digest the caller computed), with `opts` as `-pkeyopt`s.
fn pkeyutl_verify(signed: &Signed, opts: &[&str]) -> bool {
    let mut args = vec![
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        s(&signed.public_key),
        "-in",
        s(&signed.data),
        "-sigfile",
        s(&signed.sig),
    ];
    for opt in opts {
        args.extend(["-pkeyopt", opt]);
    }
    let out = openssl(&args);
    out.success() && out.stdout.contains("Signature Verified Successfully")
}

/// `pkcs11-tool --verify` through the module (the token's public key object).
fn module_verifies(card: &Card, mechanism: &str, extra: &[&str], signed: &Signed) -> bool {
    let slot = card.slot.to_string();
    let mut args = vec![
        "--slot",
        slot.as_str(),
        "--verify",
        "-m",
        mechanism,
        "--id",
        card.key_id.as_str(),
        "-i",
        s(&signed.data),
        "--signature-file",
        s(&signed.sig),
    ];
    args.extend_from_slice(extra);
    let out = world().daemon.pkcs11_tool().run(&args);
    out.success() && out.stdout.contains("Signature is valid")
}

/// Signs with `mechanism` and checks the signature with OpenSSL and with the
/// module, and that a changed document fails both.
fn sign_and_verify_listed(card: &Card, mechanism: &str) -> Result<(), String> {
    let digest_256 = {
        let dir = scratch();
        let doc = dir.path().join("doc.txt");
        std::fs::write(&doc, DOCUMENT).expect("write");
        let out = dir.path().join("digest.bin");
        openssl(&["dgst", "-sha256", "-binary", "-out", s(&out), s(&doc)])
            .assert_success("openssl dgst");
        std::fs::read(&out).expect("read digest")
    };
    let ecdsa = mechanism.starts_with("ECDSA");
    let pss = mechanism.ends_with("PSS");
    let mut extra: Vec<&str> = Vec::new();
    if ecdsa {
        extra.extend(["--signature-format", "openssl"]);
    }
    if mechanism == "RSA-PKCS-PSS" {
        extra.extend(["--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256"]);
    }
    // Mechanisms without a hash of their own sign a SHA-256 digest computed here.
    let raw = hash_of(mechanism).is_none();
    let input: &[u8] = if raw { &digest_256 } else { DOCUMENT };
    let signed = sign_file(card, mechanism, &extra, input);
    let pss_opts = ["rsa_padding_mode:pss", "rsa_pss_saltlen:auto"];
    let by_openssl = |signed: &Signed| match (hash_of(mechanism), mechanism) {
        (Some(digest), _) if pss => {
            let sigopts: Vec<&str> = pss_opts.iter().flat_map(|o| ["-sigopt", o]).collect();
            dgst_verify(signed, digest, &sigopts)
        }
        (Some(digest), _) => dgst_verify(signed, digest, &[]),
        (None, "RSA-PKCS-PSS") => pkeyutl_verify(
            signed,
            &[&pss_opts[..], &["digest:sha256", "rsa_mgf1_md:sha256"]].concat(),
        ),
        (None, "ECDSA") => pkeyutl_verify(signed, &[]),
        // CKM_RSA_PKCS pads what it is given; recovering it shows what was signed.
        (None, "RSA-PKCS") => {
            let recovered = signed.sig.with_extension("recovered");
            let out = openssl(&[
                "pkeyutl",
                "-verifyrecover",
                "-pubin",
                "-inkey",
                s(&signed.public_key),
                "-in",
                s(&signed.sig),
                "-out",
                s(&recovered),
            ]);
            out.success() && std::fs::read(&recovered).ok() == std::fs::read(&signed.data).ok()
        }
        (None, other) => panic!("no OpenSSL verification known for {other}"),
    };
    if !by_openssl(&signed) {
        return Err(format!(
            "{mechanism}: OpenSSL does not verify the signature"
        ));
    }
    if !module_verifies(card, mechanism, &extra, &signed) {
        return Err(format!(
            "{mechanism}: pkcs11-tool --verify does not accept it"
        ));
    }
    let mut altered = std::fs::read(&signed.data).expect("read data");
    altered[0] ^= 1;
    std::fs::write(&signed.data, &altered).expect("write altered data");
    if by_openssl(&signed) {
        return Err(format!("{mechanism}: OpenSSL verified a changed document"));
    }
    if module_verifies(card, mechanism, &extra, &signed) {
        return Err(format!(
            "{mechanism}: the module verified a changed document"
        ));
    }
    Ok(())
}

/// `pkcs11-tool --hash -m MECH` equals `openssl dgst`.
fn digest_matches(card: &Card, mechanism: &str) -> Result<(), String> {
    let digest =
        hash_of(mechanism).ok_or_else(|| format!("{mechanism}: no OpenSSL digest known for it"))?;
    let dir = scratch();
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, DOCUMENT).expect("write");
    let ours = dir.path().join("ours.bin");
    let slot = card.slot.to_string();
    world()
        .daemon
        .pkcs11_tool()
        .run(&[
            "--slot",
            &slot,
            "--hash",
            "-m",
            mechanism,
            "-i",
            s(&doc),
            "-o",
            s(&ours),
        ])
        .assert_success(&format!("pkcs11-tool --hash -m {mechanism}"));
    let theirs = dir.path().join("theirs.bin");
    openssl(&["dgst", digest, "-binary", "-out", s(&theirs), s(&doc)])
        .assert_success("openssl dgst");
    if std::fs::read(&ours).ok() == std::fs::read(&theirs).ok() {
        Ok(())
    } else {
        Err(format!(
            "{mechanism}: the digest differs from openssl dgst {digest}"
        ))
    }
}

#[test]
fn every_listed_mechanism_signs_and_verifies_or_digests_on_both_cards() {
    if !tools_present() {
        return;
    }
    let w = world();
    for card in [&w.rsa, &w.ec] {
        let listed = listed_mechanisms(card);
        let names: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
        let expected: &[&str] = match card.key {
            lanyard_test_support::KeyType::Rsa2048 => &[
                "RSA-PKCS",
                "SHA256-RSA-PKCS",
                "SHA384-RSA-PKCS",
                "SHA512-RSA-PKCS",
                "RSA-PKCS-PSS",
                "SHA256-RSA-PKCS-PSS",
                "SHA384-RSA-PKCS-PSS",
                "SHA512-RSA-PKCS-PSS",
            ],
            lanyard_test_support::KeyType::EcP256 => &["ECDSA", "ECDSA-SHA256", "ECDSA-SHA384"],
        };
        for want in expected {
            assert!(
                names.contains(want),
                "{}: {want} is not listed: {names:?}",
                card.holder
            );
        }
        let mut failures = Vec::new();
        for m in &listed {
            let result = if m.flags.iter().any(|f| f == "sign") {
                sign_and_verify_listed(card, &m.name)
            } else if m.flags.iter().any(|f| f == "digest") {
                digest_matches(card, &m.name)
            } else {
                Ok(())
            };
            if let Err(e) = result {
                failures.push(e);
            }
        }
        assert!(
            failures.is_empty(),
            "{} ({names:?}):\n{}",
            card.holder,
            failures.join("\n")
        );
    }
}
