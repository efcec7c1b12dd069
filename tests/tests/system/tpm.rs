//! `device_secret = "tpm"` through the whole system, against a real swtpm: the
//! real lanyardd, the PKCS#11 module (pkcs11-tool) and the `lanyard` CLI. The
//! exact threat: wrong PINs counted (and seen by the TPM's dictionary-attack
//! counter, read with tpm2_getcap), the card file restored from an older copy,
//! and the count is still there (the TPM's NV counter holds it); the store
//! copied next to another TPM, or the TPM gone, is refused at start with a clear message.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{bin_path, require_tool, run, CmdOutput, Daemon, KeyType, Swtpm};

use crate::world::{enroll_card, status_cards, tools_present, Card};

const PIN: &str = "246810";
const WRONG: &str = "999999";

fn config(tpm: &Swtpm) -> String {
    format!("device_secret = \"tpm\"\ntpm_tcti = \"{}\"\n", tpm.tcti())
}

fn login(daemon: &Daemon, card: &Card, pin: &str) -> CmdOutput {
    let slot = card.slot.to_string();
    daemon
        .pkcs11_tool()
        .run(&["--slot", &slot, "--login", "--pin", pin, "-O"])
}

fn failures(daemon: &Daemon) -> u64 {
    status_cards(daemon)
        .first()
        .and_then(|c| c["pin_failures"].as_u64())
        .expect("pin_failures in lanyard status --json")
}

/// lanyardd run once by hand on `daemon`'s directories with `toml` as its
/// config: it must refuse to start; returns what it said.
fn refused_start(daemon: &Daemon, toml: &str) -> String {
    let conf = daemon.base_dir().join("config/lanyard/lanyardd.toml");
    std::fs::write(&conf, toml).expect("rewrite lanyardd.toml");
    let mut cmd = Command::new(bin_path("lanyardd"));
    cmd.envs(daemon.env());
    let out = run(cmd, None, Duration::from_secs(30));
    out.assert_failure("lanyardd on a store it must refuse");
    out.combined()
}

/// The TPM's dictionary-attack counter, as tpm2-tools' `tpm2_getcap` reads it.
fn lockout_counter(tpm: &Swtpm) -> u64 {
    let mut cmd = Command::new("tpm2_getcap");
    cmd.args(["-T", &tpm.tcti(), "properties-variable"]);
    let out = run(cmd, None, Duration::from_secs(30));
    out.assert_success("tpm2_getcap properties-variable");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("TPM2_PT_LOCKOUT_COUNTER:"))
        .unwrap_or_else(|| panic!("no TPM2_PT_LOCKOUT_COUNTER\n{out}"));
    let hex = line.rsplit("0x").next().unwrap_or("");
    u64::from_str_radix(hex.trim(), 16).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list the store").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_restored_card_file_cannot_roll_back_the_tpm_retry_counter() {
    if !tools_present() || !require_tool("swtpm") || !require_tool("tpm2_getcap") {
        return;
    }
    let tpm = Swtpm::start();
    let mut daemon = Daemon::builder().config(&config(&tpm)).start();
    let card = enroll_card(
        &daemon,
        "Dr Tamsin Pike",
        "555800000001",
        KeyType::EcP256,
        PIN,
    );
    let store = daemon.data_home().join("lanyard");
    assert!(store.join("device.secret.tpm").exists());
    assert!(!store.join("device.secret").exists());

    // lanyard status names the protection in force.
    let p = daemon.status_json()["device_protection"].clone();
    assert_eq!(p["device_secret"], "tpm", "{p}");
    assert_eq!(p["tpm_tcti"], tpm.tcti().as_str(), "{p}");
    assert_eq!(p["warning"], "", "{p}");
    let text = daemon.lanyard(&["status"], None);
    assert!(
        text.stdout.contains(&format!(
            "protection: device secret sealed to the TPM ({})",
            tpm.tcti()
        )),
        "{text}"
    );

    // Keep a copy of the card file with no failures, then two wrong PINs.
    let file = daemon.card_file(&card.issued.card_id);
    let backup = std::fs::read(&file).expect("card file");
    for _ in 0..2 {
        let out = login(&daemon, &card, WRONG);
        assert!(out.combined().contains("CKR_PIN_INCORRECT"), "{out}");
    }
    assert_eq!(failures(&daemon), 2);
    // Each went through the TPM: its dictionary-attack counter says so.
    assert_eq!(
        lockout_counter(&tpm),
        2,
        "wrong PINs reach the TPM's DA counter"
    );

    // The attack: put the older file back and restart the daemon.
    daemon.stop();
    std::fs::write(&file, &backup).expect("restore the old card file");
    daemon.start_again();
    assert_eq!(
        failures(&daemon),
        2,
        "the restored file rolled the count back"
    );
    // The third wrong PIN locks the card; the right one is then refused.
    let out = login(&daemon, &card, WRONG);
    assert!(!out.success(), "{out}");
    let out = login(&daemon, &card, PIN);
    assert!(out.combined().contains("CKR_PIN_LOCKED"), "{out}");
    // Restoring the copy again changes nothing either.
    daemon.stop();
    std::fs::write(&file, &backup).expect("restore the old card file");
    daemon.start_again();
    let out = login(&daemon, &card, PIN);
    assert!(out.combined().contains("CKR_PIN_LOCKED"), "{out}");

    // The store copied next to another TPM: refused, nothing changed.
    daemon.stop();
    let other = Swtpm::start();
    let before = snapshot(&store);
    let said = refused_start(&daemon, &config(&other));
    assert!(said.contains("sealed to another TPM"), "{said}");
    assert_eq!(
        snapshot(&store),
        before,
        "the refused start changed the store"
    );

    // The TPM gone: a clear error naming it.
    let mut gone = Swtpm::start();
    let tcti = gone.tcti();
    gone.stop();
    let said = refused_start(
        &daemon,
        &format!("device_secret = \"tpm\"\ntpm_tcti = \"{tcti}\"\n"),
    );
    assert!(said.contains("TPM: cannot reach the TPM through"), "{said}");
    // Back to "file" with cards sealed under the TPM: refused, not lost.
    let said = refused_start(&daemon, "device_secret = \"file\"\n");
    assert!(said.contains("device_secret = \"tpm\""), "{said}");
    assert_eq!(snapshot(&store), before);
}
