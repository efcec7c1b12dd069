//! A damaged card store loses nothing and never crashes the daemon: a truncated card
//! file is left out with a clear log line and left on disk for inspection; a card whose
//! encrypted private key was altered refuses to sign without counting a PIN failure.

use std::path::PathBuf;

use lanyard_test_support::{CmdOutput, Daemon, KeyType};

use crate::world::{enroll_card, status_cards, tools_present, Card};

/// The card files under `$XDG_DATA_HOME/lanyard/`, found by their card id.
fn card_file(daemon: &Daemon, card: &Card) -> PathBuf {
    let store = daemon.data_home().join("lanyard");
    let mut stack = vec![store.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&card.issued.card_id))
            {
                return path;
            }
        }
    }
    panic!(
        "no file named after card {} under {}",
        card.issued.card_id,
        store.display()
    );
}

fn login(daemon: &Daemon, card: &Card, pin: &str) -> CmdOutput {
    let slot = card.slot.to_string();
    daemon
        .pkcs11_tool()
        .run(&["--slot", &slot, "--login", "--pin", pin, "-O"])
}

#[test]
fn a_truncated_card_file_is_left_out_with_a_clear_log_line() {
    if !tools_present() {
        return;
    }
    let mut daemon = Daemon::start();
    let card = enroll_card(
        &daemon,
        "Dr Mo Corrupt",
        "555000000011",
        KeyType::Rsa2048,
        "357911",
    );
    let file = card_file(&daemon, &card);
    daemon.stop();
    let bytes = std::fs::read(&file).expect("read the card file");
    let truncated = &bytes[..bytes.len() / 3];
    std::fs::write(&file, truncated).expect("truncate the card file");

    daemon.start_again();
    assert!(
        status_cards(&daemon).is_empty(),
        "a corrupt card is still offered"
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("corrupt") && l.contains(&card.issued.card_id)),
        "no log line says the card file is corrupt:\n{log}"
    );
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    assert_eq!(
        std::fs::read(&file).expect("the corrupt file is still there"),
        truncated,
        "the daemon changed or removed the corrupt file"
    );
    let slots = daemon.pkcs11_tool().slots();
    assert!(slots.iter().all(|s| s.token_label.is_none()), "{slots:?}");
}

#[test]
fn an_altered_private_key_refuses_to_sign_without_counting_a_pin_failure() {
    if !tools_present() {
        return;
    }
    let mut daemon = Daemon::start();
    let card = enroll_card(
        &daemon,
        "Dr Nia Tamper",
        "555000000012",
        KeyType::Rsa2048,
        "468024",
    );
    let file = card_file(&daemon, &card);
    daemon.stop();

    // Change one base64 character of the encrypted private key: valid JSON, valid
    // base64, different ciphertext, so only the AEAD tag can notice.
    let text = std::fs::read_to_string(&file).expect("read the card file");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("the card file is JSON");
    let ciphertext = json
        .pointer_mut("/private_key/ciphertext")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("the card file has private_key.ciphertext");
    let mut altered: Vec<char> = ciphertext.chars().collect();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == 'A' { 'B' } else { 'A' };
    json["private_key"]["ciphertext"] = serde_json::Value::String(altered.into_iter().collect());
    std::fs::write(&file, serde_json::to_string_pretty(&json).expect("json")).expect("write");

    daemon.start_again();
    let out = login(&daemon, &card, card.pin);
    out.assert_failure("login with the right PIN to an altered card");
    assert!(
        !out.combined().contains("CKR_PIN_INCORRECT"),
        "an altered key reported as a wrong PIN\n{out}"
    );
    let cards = status_cards(&daemon);
    assert_eq!(cards.len(), 1);
    assert_eq!(
        cards[0]["pin_failures"].as_u64(),
        Some(0),
        "the altered key counted as a PIN failure: {cards:?}"
    );
    assert_eq!(cards[0]["locked"].as_bool(), Some(false));
    assert!(
        !daemon.log().contains("panicked"),
        "the daemon panicked:\n{}",
        daemon.log()
    );
    // The daemon is still healthy: a wrong PIN is still a wrong PIN.
    let wrong = login(&daemon, &card, "000000");
    assert!(wrong.combined().contains("CKR_PIN_INCORRECT"), "{wrong}");
}
