//! OpenSSH with the card: `ssh-keygen -D MODULE` lists each card's public key,
//! `ssh -I MODULE` logs in to a throwaway sshd with the card key (the PIN through
//! SSH_ASKPASS), and `ssh -R remote.sock:agent.sock` forwards the agent socket so
//! that a PKCS#11 application on the "remote" side, given LANYARD_AGENT_SOCK,
//! signs with the cards of the clinician's own daemon.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{module_path, require_tool, run, CmdOutput};

use crate::sshd::{user_name, Sshd};
use crate::world::{
    agent_socket, export_certificate, public_key_of, scratch, tools_present, verify_sha256, world,
    Card,
};

fn ssh_tools() -> bool {
    tools_present()
        && ["ssh", "ssh-keygen", "sshd"]
            .iter()
            .all(|t| require_tool(t))
}

fn ssh_keygen(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(args).envs(world().daemon.env());
    run(cmd, None, Duration::from_secs(60))
}

/// The card's public key in OpenSSH form (`ssh-rsa AAAA…`), converted by
/// ssh-keygen from the certificate the token holds.
fn ssh_public_key(card: &Card, dir: &Path) -> String {
    let cert = export_certificate(&world().daemon.pkcs11_tool(), card, dir);
    let pem = public_key_of(&cert, dir, &card.key_id);
    let out = ssh_keygen(&["-i", "-m", "PKCS8", "-f", pem.to_str().expect("utf-8")]);
    out.assert_success("ssh-keygen -i -m PKCS8");
    let mut fields = out.stdout.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(blob)) => format!("{kind} {blob}"),
        _ => panic!("no key in ssh-keygen -i output\n{out}"),
    }
}

/// `SHA256:…`, the fingerprint sshd logs for `key` (`TYPE BASE64`).
fn fingerprint(key: &str, dir: &Path) -> String {
    let file = dir.join("key.pub");
    std::fs::write(&file, format!("{key}\n")).expect("write key.pub");
    let out = ssh_keygen(&["-l", "-E", "sha256", "-f", file.to_str().expect("utf-8")]);
    out.assert_success("ssh-keygen -l");
    out.stdout
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint\n{out}"))
        .to_string()
}

#[test]
fn ssh_keygen_lists_each_cards_public_key() {
    if !ssh_tools() {
        return;
    }
    let w = world();
    let dir = scratch();
    let out = ssh_keygen(&["-D", module_path().to_str().expect("utf-8")]);
    out.assert_success("ssh-keygen -D");
    for card in [&w.rsa, &w.ec] {
        let key = ssh_public_key(card, dir.path());
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("ssh-keygen -D lacks {}'s key {key}\n{out}", card.holder));
        assert_eq!(
            line[key.len()..].trim(),
            card.holder,
            "the key's comment is not the object label\n{out}"
        );
    }
    assert!(out.stdout.contains("ssh-rsa ") && out.stdout.contains("ecdsa-sha2-nistp256 "));
}

#[test]
fn ssh_logs_in_with_each_card_key_and_the_pin_through_askpass() {
    if !ssh_tools() {
        return;
    }
    let w = world();
    let dir = scratch();
    for (card, other) in [(&w.rsa, &w.ec), (&w.ec, &w.rsa)] {
        let key = ssh_public_key(card, dir.path());
        let sshd = Sshd::start(&format!("{key} {}\n", card.holder));
        let prompts = dir.path().join(format!("prompts-{}", card.key_id));
        let out = sshd.ssh(
            card.pin,
            &prompts,
            &[],
            "echo lanyard-login-ok as $(id -un)",
            w.daemon.env(),
        );
        let log = sshd.log();
        assert!(out.success(), "ssh failed\n{out}\n--- sshd ---\n{log}");
        assert_eq!(
            out.stdout.trim(),
            format!("lanyard-login-ok as {}", user_name()),
            "{out}"
        );
        let fp = fingerprint(&key, dir.path());
        assert!(
            log.lines()
                .any(|l| l.contains("Accepted publickey for") && l.contains(&fp)),
            "sshd did not accept the card key {fp}\n{log}"
        );
        // ssh asked for this card's PIN, naming its token, and never the other's.
        let asked = std::fs::read_to_string(&prompts).unwrap_or_default();
        assert!(
            asked.contains(&format!("Enter PIN for '{}'", card.token_label)),
            "no PIN prompt for the card: {asked:?}\n{out}"
        );
        assert!(
            !asked.contains(&other.token_label),
            "asked for the other card's PIN: {asked:?}"
        );
    }
}

fn sign_remotely(card: &Card, socket: &Path, doc: &Path, sig: &Path) -> String {
    let (mechanism, format) = match card.key {
        lanyard_test_support::KeyType::Rsa2048 => ("SHA256-RSA-PKCS", ""),
        lanyard_test_support::KeyType::EcP256 => ("ECDSA-SHA256", " --signature-format openssl"),
    };
    format!(
        "LANYARD_AGENT_SOCK='{sock}' pkcs11-tool --module '{module}' --slot {slot} --login \
         --pin {pin} --sign -m {mechanism} --id {id}{format} -i '{doc}' -o '{sig}'",
        sock = socket.display(),
        module = module_path().display(),
        slot = card.slot,
        pin = card.pin,
        id = card.key_id,
        doc = doc.display(),
        sig = sig.display(),
    )
}

#[test]
fn a_forwarded_agent_socket_lets_a_remote_application_sign() {
    if !ssh_tools() {
        return;
    }
    let w = world();
    let dir = scratch();
    let login = &w.rsa;
    let key = ssh_public_key(login, dir.path());
    let sshd = Sshd::start(&format!("{key} {}\n", login.holder));
    let local = agent_socket();
    // The "remote desktop" side: its own directory, no daemon of its own.
    let remote = dir.path().join("remote");
    std::fs::create_dir(&remote).expect("mkdir remote");
    let remote_sock = remote.join("lanyard.sock");
    let doc = remote.join("letter.txt");
    std::fs::write(&doc, b"Referral letter signed on the remote desktop.\n").expect("write");
    let sig = |card: &Card| remote.join(format!("sig-{}.bin", card.key_id));
    let script = [
        format!(
            "LANYARD_AGENT_SOCK='{}' pkcs11-tool --module '{}' -L",
            remote.join("nothing-here.sock").display(),
            module_path().display()
        ),
        "echo ---".to_string(),
        format!(
            "LANYARD_AGENT_SOCK='{}' pkcs11-tool --module '{}' -L",
            remote_sock.display(),
            module_path().display()
        ),
        sign_remotely(&w.rsa, &remote_sock, &doc, &sig(&w.rsa)),
        sign_remotely(&w.ec, &remote_sock, &doc, &sig(&w.ec)),
    ]
    .join(" && ");
    let forward = format!("{}:{}", remote_sock.display(), local.display());
    let prompts = dir.path().join("prompts");
    let out = sshd.ssh(
        login.pin,
        &prompts,
        &["-R", &forward, "-o", "ExitOnForwardFailure=yes"],
        &script,
        w.daemon.env(),
    );
    let log = sshd.log();
    assert!(
        out.success(),
        "remote signing failed\n{out}\n--- sshd ---\n{log}"
    );
    let (without, with) = out
        .stdout
        .split_once("---")
        .unwrap_or_else(|| panic!("{out}"));
    for card in [&w.rsa, &w.ec] {
        assert!(
            !without.contains(&card.token_label),
            "a card was visible without the forwarded socket\n{out}"
        );
        assert!(
            with.contains(&card.token_label),
            "{} not visible through the forwarded socket\n{out}",
            card.holder
        );
        let cert = export_certificate(&w.daemon.pkcs11_tool(), card, dir.path());
        let public = public_key_of(&cert, dir.path(), &card.key_id);
        let ok = verify_sha256(&public, &sig(card), &doc);
        assert!(
            ok.success() && ok.stdout.contains("Verified OK"),
            "the remote signature by {} does not verify\n{ok}",
            card.holder
        );
    }
}
