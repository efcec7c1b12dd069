//! OpenSC's pkcs11-tool drives the built module against the fake agent, as
//! an unmodified application would: listing, objects, signing and its own
//! --test suite on an RSA and an EC token. Skipped loudly when pkcs11-tool is
//! absent, and failed instead under CI=true.

mod support;

use std::process::{Command, Output};

use support::fake_agent::FakeAgent;
use support::{module_path, serial};

fn tool(agent: &FakeAgent, args: &[&str]) -> Option<Output> {
    // Under CI=true a missing pkcs11-tool fails the test instead of skipping.
    if !lanyard_test_support::require_tool("pkcs11-tool") {
        return None;
    }
    let out = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args(args)
        .env("LANYARD_AGENT_SOCK", &agent.path)
        .output();
    match out {
        Ok(o) => Some(o),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("pkcs11-tool not installed (apt-get install opensc); skipped");
            None
        }
        Err(e) => panic!("pkcs11-tool: {e}"),
    }
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pkcs11-tool failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn list_slots_objects_and_test_suite() {
    let _g = serial();
    let agent = FakeAgent::start();
    let Some(out) = tool(&agent, &["-L"]) else {
        return;
    };
    let listing = ok(&out);
    assert!(listing.contains("token label        : Dr Ada Smith 0123456789ABCDEF"));
    assert!(listing.contains("Dr Bob Jones"));
    let objects = ok(&tool(&agent, &["-O"]).unwrap());
    assert!(objects.contains("Public Key Object; RSA 2048 bits"));
    assert!(objects.contains("Fake Root CA"));

    for (slot, pin) in [("0", "123456"), ("1", "654321")] {
        let out = tool(&agent, &["--slot", slot, "--test", "--login", "--pin", pin]).unwrap();
        let report = ok(&out);
        assert!(report.contains("No errors"), "slot {slot}:\n{report}");
    }
}

#[test]
fn sign_with_login() {
    let _g = serial();
    let agent = FakeAgent::start();
    let dir = agent.dir.clone();
    let input = dir.join("in.txt");
    std::fs::write(&input, b"hello").unwrap();
    let sig = dir.join("sig.bin");
    let (i, o) = (input.to_str().unwrap(), sig.to_str().unwrap());
    let Some(out) = tool(
        &agent,
        &[
            "--login",
            "--pin",
            "123456",
            "--sign",
            "-m",
            "SHA256-RSA-PKCS",
            "-i",
            i,
            "-o",
            o,
        ],
    ) else {
        return;
    };
    ok(&out);
    assert_eq!(std::fs::read(&sig).unwrap().len(), 256);
    let out = tool(
        &agent,
        &[
            "--slot",
            "1",
            "--login",
            "--pin",
            "654321",
            "--sign",
            "-m",
            "ECDSA-SHA256",
            "--signature-format",
            "openssl",
            "-i",
            i,
            "-o",
            o,
        ],
    )
    .unwrap();
    ok(&out);
    let der = std::fs::read(&sig).unwrap();
    assert!(openssl::ecdsa::EcdsaSig::from_der(&der).is_ok());
    let wrong = tool(
        &agent,
        &[
            "--login",
            "--pin",
            "111111",
            "--sign",
            "-m",
            "SHA256-RSA-PKCS",
            "-i",
            i,
            "-o",
            o,
        ],
    )
    .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("CKR_PIN_INCORRECT"));
}
