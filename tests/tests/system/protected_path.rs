//! Protected-authentication-path mode through the real module: pkcs11-tool
//! sees CKF_PROTECTED_AUTHENTICATION_PATH and logs in without `--pin` (a
//! NULL PIN), which succeeds while the card is unlocked with `lanyard
//! unlock`, goes through the daemon's pinentry prompt otherwise (a scripted
//! pinentry speaking the real Assuan protocol), and is CKR_FUNCTION_CANCELED
//! when the user cancels or no pinentry can run.

use std::path::Path;

use lanyard_test_support::{Answer, Daemon, KeyType, PinentryStandIn};

use crate::world::{enroll_card, scratch, tools_present, Card};

/// A daemon in protected mode with one EC card, prompting with `pinentry`.
pub struct Protected {
    pub daemon: Daemon,
    pub card: Card,
}

impl Protected {
    /// Starts the daemon with `program` as its pinentry and enrols a card
    /// for `holder` at the shared CA.
    pub fn start(program: &Path, holder: &'static str, user_id: &str) -> Protected {
        let daemon = Daemon::builder()
            .config(&format!(
                "protected_path = true\npinentry_program = \"{}\"\npinentry_timeout_secs = 30\n\
                 log_level = \"info,lanyard_daemon::cmd::sign=debug\"\n",
                program.display()
            ))
            .start();
        let card = enroll_card(&daemon, holder, user_id, KeyType::EcP256, "24682468");
        Protected { daemon, card }
    }

    /// `lanyard unlock --pin-stdin` with the card's PIN; panics if it fails.
    pub fn unlock(&self) {
        self.unlock_card(&self.card);
    }

    /// `lanyard unlock --card ID --pin-stdin` for `card` (of this daemon).
    pub fn unlock_card(&self, card: &Card) {
        self.daemon
            .lanyard(
                &["unlock", "--card", &card.issued.card_id, "--pin-stdin"],
                Some(&format!("{}\n", card.pin)),
            )
            .assert_success("lanyard unlock");
    }

    /// `lanyard lock`; panics if it fails.
    pub fn lock(&self) {
        self.daemon
            .lanyard(&["lock"], None)
            .assert_success("lanyard lock");
    }

    /// `pkcs11-tool --login -O` on the card's slot, without `--pin`.
    fn login_and_list(&self) -> lanyard_test_support::CmdOutput {
        let slot = self.card.slot.to_string();
        self.daemon
            .pkcs11_tool()
            .run(&["--slot", &slot, "--login", "-O"])
    }
}

#[test]
fn pkcs11_tool_logs_in_without_a_pin_while_unlocked_and_is_cancelled_after_lock() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let pinentry = PinentryStandIn::new(dir.path(), "cancel", Answer::Cancel);
    let p = Protected::start(pinentry.program(), "Dr Cara Patel", "555100200300");
    let tool = p.daemon.pkcs11_tool();
    let listing = tool.run(&["-L"]);
    listing.assert_success("pkcs11-tool -L");
    assert!(
        listing.stdout.contains("PIN pad present"),
        "pkcs11-tool shows the protected path as a PIN pad\n{listing}"
    );

    p.unlock();
    let out = p.login_and_list();
    out.assert_success("pkcs11-tool --login without --pin while unlocked");
    assert!(out.stdout.contains("Private Key Object"), "{out}");
    assert_eq!(pinentry.prompts(), 0, "unlocked: no prompt");

    p.lock();
    let out = p.login_and_list();
    out.assert_failure("pkcs11-tool --login after lanyard lock, prompt cancelled");
    assert!(out.combined().contains("CKR_FUNCTION_CANCELED"), "{out}");
    assert_eq!(pinentry.prompts(), 1);
    let desc = pinentry.descriptions().join("\n");
    assert!(desc.contains(&p.card.issued.card_id), "{desc}");
    assert!(desc.contains("The application pkcs11-tool"), "{desc}");
}

#[test]
fn pkcs11_tool_logs_in_through_the_pinentry_prompt_and_a_wrong_pin_counts() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let wrong = PinentryStandIn::new(dir.path(), "wrong", Answer::Pin("13571357".into()));
    let p = Protected::start(wrong.program(), "Dr Dev Rao", "555100200301");
    let out = p.login_and_list();
    out.assert_failure("pkcs11-tool --login with a wrong PIN at the prompt");
    assert!(out.combined().contains("CKR_PIN_INCORRECT"), "{out}");
    let card = &p.daemon.status_json()["cards"][0];
    assert_eq!(card["pin_failures"], 1, "{card}");

    // The same daemon with a pinentry that gets the right PIN: the config
    // names a program path, so replace the program behind it.
    let right = PinentryStandIn::new(dir.path(), "right", Answer::Pin(p.card.pin.into()));
    std::fs::copy(right.program(), wrong.program()).expect("swap the pinentry");
    let out = p.login_and_list();
    out.assert_success("pkcs11-tool --login with the right PIN at the prompt");
    assert!(out.stdout.contains("Private Key Object"), "{out}");
    let card = &p.daemon.status_json()["cards"][0];
    assert_eq!(card["pin_failures"], 0, "{card}");
}

#[test]
fn no_pinentry_is_cancelled_through_the_module() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let p = Protected::start(
        &dir.path().join("no-such-pinentry"),
        "Dr Eve Moss",
        "555100200302",
    );
    let out = p.login_and_list();
    out.assert_failure("pkcs11-tool --login with no pinentry");
    assert!(out.combined().contains("CKR_FUNCTION_CANCELED"), "{out}");
    assert!(
        p.daemon.log().contains("pinentry cannot be started"),
        "{}",
        p.daemon.log()
    );
}
