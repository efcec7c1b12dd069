//! The PIN policy as a PKCS#11 application meets it through C_Login: three wrong PINs
//! lock the card (then even the right PIN gets CKR_PIN_LOCKED), a correct PIN resets
//! the counter, and a PIN of the wrong length is CKR_PIN_LEN_RANGE and not counted.
//! Each test has its own daemon because it changes the card's state.

use lanyard_test_support::{CmdOutput, Daemon, KeyType};

use crate::world::{enroll_card, status_cards, tools_present, Card};

fn login(daemon: &Daemon, card: &Card, pin: &str) -> CmdOutput {
    let slot = card.slot.to_string();
    daemon
        .pkcs11_tool()
        .run(&["--slot", &slot, "--login", "--pin", pin, "-O"])
}

fn expect_rv(out: &CmdOutput, rv: &str, what: &str) {
    out.assert_failure(what);
    assert!(out.combined().contains(rv), "{what}: expected {rv}\n{out}");
}

fn locked_in_status(daemon: &Daemon) -> Option<bool> {
    status_cards(daemon)
        .first()
        .and_then(|c| c["locked"].as_bool())
}

#[test]
fn three_wrong_pins_lock_the_card_and_a_right_pin_resets_the_count() {
    if !tools_present() {
        return;
    }
    let daemon = Daemon::start();
    let card = enroll_card(
        &daemon,
        "Dr Carla Lock",
        "555000000001",
        KeyType::Rsa2048,
        "112233",
    );

    // Two failures, then the right PIN: the counter goes back to zero…
    for _ in 0..2 {
        expect_rv(
            &login(&daemon, &card, "999999"),
            "CKR_PIN_INCORRECT",
            "wrong PIN",
        );
    }
    login(&daemon, &card, card.pin).assert_success("right PIN after two failures");
    // …so two more failures still do not lock it.
    for _ in 0..2 {
        expect_rv(
            &login(&daemon, &card, "999999"),
            "CKR_PIN_INCORRECT",
            "wrong PIN",
        );
    }
    login(&daemon, &card, card.pin).assert_success("right PIN after the counter was reset");
    assert_eq!(locked_in_status(&daemon), Some(false));

    // Three in a row lock it.
    for attempt in 1..=3 {
        let out = login(&daemon, &card, "999999");
        out.assert_failure("wrong PIN");
        let text = out.combined();
        assert!(
            text.contains("CKR_PIN_INCORRECT") || (attempt == 3 && text.contains("CKR_PIN_LOCKED")),
            "attempt {attempt}\n{out}"
        );
    }
    expect_rv(
        &login(&daemon, &card, card.pin),
        "CKR_PIN_LOCKED",
        "right PIN on a locked card",
    );
    assert_eq!(
        locked_in_status(&daemon),
        Some(true),
        "lanyard status --json does not show the lock"
    );

    // The lock is persisted: a restarted daemon still refuses.
    let mut daemon = daemon;
    daemon.restart();
    expect_rv(
        &login(&daemon, &card, card.pin),
        "CKR_PIN_LOCKED",
        "right PIN after restart",
    );
}

#[test]
fn pin_of_the_wrong_length_is_rejected_and_not_counted() {
    if !tools_present() {
        return;
    }
    let daemon = Daemon::start();
    let card = enroll_card(
        &daemon,
        "Dr Dev Length",
        "555000000002",
        KeyType::Rsa2048,
        "445566",
    );

    expect_rv(
        &login(&daemon, &card, "999999"),
        "CKR_PIN_INCORRECT",
        "wrong PIN",
    );
    expect_rv(
        &login(&daemon, &card, "999999"),
        "CKR_PIN_INCORRECT",
        "wrong PIN",
    );
    // Two failures so far; wrong lengths must not become the third.
    for bad in ["12345", "123456789", "1234567890123"] {
        expect_rv(
            &login(&daemon, &card, bad),
            "CKR_PIN_LEN_RANGE",
            "PIN of the wrong length",
        );
    }
    assert_eq!(
        locked_in_status(&daemon),
        Some(false),
        "wrong-length PINs locked the card"
    );
    login(&daemon, &card, card.pin).assert_success("right PIN after wrong lengths");
}

#[test]
fn change_pin_takes_the_old_then_the_new_pin() {
    if !tools_present() {
        return;
    }
    let daemon = Daemon::start();
    let card = enroll_card(
        &daemon,
        "Dr Eve Change",
        "555000000003",
        KeyType::EcP256,
        "778899",
    );
    let out = daemon.lanyard(&["change-pin", "--pin-stdin"], Some("778899\n12345678\n"));
    out.assert_success("lanyard change-pin --pin-stdin");
    expect_rv(
        &login(&daemon, &card, card.pin),
        "CKR_PIN_INCORRECT",
        "old PIN after change",
    );
    login(&daemon, &card, "12345678").assert_success("new PIN after change");

    let wrong = daemon.lanyard(&["change-pin", "--pin-stdin"], Some("000000\n11112222\n"));
    assert_eq!(
        wrong.code,
        Some(4),
        "change-pin with a wrong old PIN: exit 4 (PIN problem)\n{wrong}"
    );
    login(&daemon, &card, "12345678").assert_success("PIN unchanged after a failed change");
}
