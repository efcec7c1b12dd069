//! The clinician logging in to a web clinical system: headless Chromium (Debian
//! `chromium`, `--headless --no-sandbox` as root) with a fresh NSS database
//! (`~/.pki/nssdb`) holding the module (`lanyard nss-register --db`) and
//! trusting the test server, the client certificate chosen by the
//! `AutoSelectCertificateForUrls` policy, loads a page from a local server that
//! requires a client certificate, with an EC and an RSA card. The daemon is in protected-authentication-path
//! mode, so the browser never gets the PIN: unlocked with `lanyard unlock`, the
//! page shows the card holder's certificate, signed for without any prompt;
//! after `lanyard lock` no signature is possible and the page does not load
//! (Chromium then waits on its own password dialog, which headless cannot show,
//! so the run ends at its `--timeout`; the pinentry stand-in would cancel).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{
    module_path, require_tool, run, Answer, CmdOutput, KeyType, PinentryStandIn,
};

use crate::protected_path::Protected;
use crate::tls_server::TlsServer;
use crate::world::{enroll_card, scratch, tools_present, Card};

/// Where Debian's chromium reads managed policies.
const POLICY_DIR: &str = "/etc/chromium/policies/managed";

/// A managed policy file that is removed again when dropped.
struct Policy(PathBuf);

impl Policy {
    /// Auto-selects the certificate whose subject CN is `holder` for `url`.
    fn auto_select(url: &str, holder: &str) -> Policy {
        std::fs::create_dir_all(POLICY_DIR).expect("create the chromium policy directory");
        let path = Path::new(POLICY_DIR).join(format!("lanyard-test-{}.json", std::process::id()));
        let rule = serde_json::json!({
            "pattern": url.trim_end_matches('/'),
            "filter": { "SUBJECT": { "CN": holder } },
        });
        let policy = serde_json::json!({ "AutoSelectCertificateForUrls": [rule.to_string()] });
        std::fs::write(&path, policy.to_string()).expect("write the chromium policy");
        Policy(path)
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh HOME whose ~/.pki/nssdb has the module registered and trusts `server_cert`.
fn browser_home(dir: &Path, p: &Protected, server_cert: &Path) -> PathBuf {
    let home = dir.join("home");
    let db = home.join(".pki").join("nssdb");
    let module = module_path();
    p.daemon
        .lanyard(
            &[
                "nss-register",
                "--db",
                db.to_str().expect("utf-8"),
                "--module",
                module.to_str().expect("utf-8"),
            ],
            None,
        )
        .assert_success("lanyard nss-register --db");
    let mut certutil = Command::new("certutil");
    certutil
        .arg("-A")
        .arg("-d")
        .arg(format!("sql:{}", db.display()))
        .args(["-n", "lanyard-test-server", "-t", "CP,,", "-i"])
        .arg(server_cert);
    run(certutil, None, Duration::from_secs(30)).assert_success("certutil -A the server cert");
    home
}

/// `chromium --headless --no-sandbox --dump-dom URL` with `home` and the
/// daemon's socket; navigation is stopped after `timeout_ms` if still loading.
fn dump_dom(home: &Path, p: &Protected, url: &str, timeout_ms: u32) -> CmdOutput {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
    ])
    .arg(format!(
        "--user-data-dir={}",
        home.join("profile").display()
    ))
    .arg(format!("--timeout={timeout_ms}"))
    .args(["--dump-dom", url])
    .env("HOME", home)
    .envs(p.daemon.env());
    run(cmd, None, Duration::from_secs(180))
}

/// Number of signatures the daemon has made (its log says so at debug level).
fn signatures(p: &Protected) -> usize {
    p.daemon.log().matches("signed card=").count()
}

/// What the `s_server -www` page must show for `card`'s certificate.
fn assert_page_shows(out: &CmdOutput, card: &Card) {
    out.assert_success("chromium --dump-dom with the card unlocked");
    assert!(
        out.stdout.contains("Client certificate"),
        "no client certificate in the page\n{out}"
    );
    for part in [
        format!("CN={}", card.holder),
        format!("OU={}", card.issued.card_id),
    ] {
        assert!(
            out.stdout.contains(&part),
            "not {}'s certificate\n{out}",
            card.holder
        );
    }
}

#[test]
fn chromium_logs_in_with_the_unlocked_card_and_not_after_lock() {
    if !tools_present() || !require_tool("chromium") || !require_tool("certutil") {
        return;
    }
    let dir = scratch();
    let pinentry = PinentryStandIn::new(dir.path(), "cancel", Answer::Cancel);
    // An EC card, and an RSA card in the same daemon.
    let p = Protected::start(pinentry.program(), "Dr Fay Okafor", "555100200400");
    let rsa = enroll_card(
        &p.daemon,
        "Dr Gus Lindqvist",
        "555100200401",
        KeyType::Rsa2048,
        "97531357",
    );
    let server = TlsServer::start(dir.path(), &["-naccept", "100"]);
    let url = server.url();
    let home = browser_home(dir.path(), &p, server.cert());

    // Unlocked: the page shows the chosen card's certificate; no prompt, no
    // PIN to the browser. One browser run per card, the policy choosing it.
    p.unlock();
    p.unlock_card(&rsa);
    for card in [&p.card, &rsa] {
        let _policy = Policy::auto_select(&url, card.holder);
        let out = dump_dom(&home, &p, &url, 60_000);
        assert_page_shows(&out, card);
    }
    assert_eq!(pinentry.prompts(), 0, "unlocked: no prompt");
    let signed = signatures(&p);
    assert!(
        signed >= 2,
        "the daemon signed the handshakes\n{}",
        p.daemon.log()
    );

    // Locked: nothing signs, the page does not load.
    p.lock();
    let _policy = Policy::auto_select(&url, p.card.holder);
    let out = dump_dom(&home, &p, &url, 10_000);
    assert!(
        !out.stdout.contains(&format!("CN={}", p.card.holder)),
        "the page loaded after lock\n{out}"
    );
    assert!(!out.stdout.contains("Client certificate"), "{out}");
    assert_eq!(signatures(&p), signed, "a signature after lock");
    // The server verified both cards' certificates (in the unlocked runs).
    let log = server.stop();
    for card in [&p.card, &rsa] {
        assert!(
            log.contains(&format!("CN = {}", card.holder)),
            "the server never saw {}'s certificate\n{log}",
            card.holder
        );
    }
}
