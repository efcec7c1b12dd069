//! `lanyard readers` against the real pcscd: the Lanyard card with its holder
//! and certificate expiry (text and JSON), a clear exit 7 without pcscd, and a
//! suspended or revoked card leaving the reader (and a resumed one coming back).

use std::process::Command;
use std::time::Duration;

use lanyard_test_support::pcscd::READER_COUNT;
use lanyard_test_support::{bin_path, run, CmdOutput, KeyType, Pcscd, VirtualReader};

use crate::lifecycle_world::{lifecycle_ca, status_card, wait_for, CHECK_IN_DAEMON_CONFIG};
use crate::pcsc::{pcsc_tools_present, pcsc_world, start_reader_daemon, wait_for_card};
use crate::world::enroll_card_at;

fn readers(args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = Command::new(bin_path("lanyard"));
    cmd.arg("readers").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, None, Duration::from_secs(60))
}

/// The entry of `reader` in `lanyard readers --json`.
fn reader_json(reader: &VirtualReader) -> serde_json::Value {
    let out = readers(&["--json"], &[]);
    out.assert_success("lanyard readers --json");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("lanyard readers --json printed invalid JSON ({e})\n{out}"));
    doc["readers"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["name"] == reader.name.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("{} is not in lanyard readers --json\n{out}", reader.name))
}

#[test]
fn readers_lists_the_lanyard_card_with_its_holder_and_expiry() {
    if !pcsc_tools_present() {
        return;
    }
    let (_turn, world) = pcsc_world();
    let entry = reader_json(&world.reader);
    assert_eq!(entry["card_present"], true, "{entry}");
    assert_eq!(entry["atr"], hex_lower(lanyard_piv::atr()), "{entry}");
    assert_eq!(entry["error"], serde_json::Value::Null, "{entry}");
    let card = &entry["card"];
    assert_eq!(card["kind"], "lanyard", "{entry}");
    assert_eq!(card["application_label"], "Lanyard PIV", "{entry}");
    assert_eq!(card["holder"], world.card.holder, "{entry}");
    assert_eq!(card["user_id"], "555700000001", "{entry}");
    assert_eq!(
        card["card_id"],
        world.card.issued.card_id.as_str(),
        "{entry}"
    );
    let status = status_card(&world.daemon, &world.card.issued.card_id);
    assert_eq!(
        card["certificate_not_after"], status["not_after"],
        "readers and status disagree on the expiry: {entry} vs {status}"
    );

    let text = readers(&[], &[]);
    text.assert_success("lanyard readers");
    assert!(
        text.stdout.contains(&format!(
            "{}\n  Lanyard virtual card\n  holder:      {}\n",
            world.reader.name, world.card.holder
        )),
        "{text}"
    );
    // Readers without a vpcd connection show no card.
    let unused = world.pcscd.reader(READER_COUNT - 1);
    assert!(
        text.stdout
            .contains(&format!("{}\n  no card\n", unused.name)),
        "{text}"
    );
}

#[test]
fn readers_without_pcscd_says_so_with_exit_7() {
    if !pcsc_tools_present() {
        return;
    }
    // libpcsclite looks for pcscd at PCSCLITE_CSOCK_NAME: point it where none listens,
    // whatever the shared pcscd does.
    let dir = crate::world::scratch();
    let socket = dir.path().join("no-pcscd.comm");
    let socket = socket.to_str().expect("UTF-8 path");
    for args in [&[][..], &["--json"][..]] {
        let out = readers(args, &[("PCSCLITE_CSOCK_NAME", socket)]);
        assert_eq!(out.code, Some(7), "exit code without pcscd\n{out}");
        assert!(
            out.stderr.contains("pcscd") && out.stderr.contains("not running"),
            "{out}"
        );
        assert!(out.stdout.is_empty(), "{out}");
    }
}

#[test]
fn a_suspended_or_revoked_card_leaves_the_reader() {
    if !pcsc_tools_present() {
        return;
    }
    let lca = lifecycle_ca();
    let reader = Pcscd::shared().claim_reader();
    let daemon = start_reader_daemon(&reader, CHECK_IN_DAEMON_CONFIG);
    // No card enrolled: nothing in the reader.
    assert_eq!(reader_json(&reader)["card_present"], false);
    let card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Rosa Removed",
        "555700000003",
        KeyType::EcP256,
        "918273",
    );
    let card_id = card.issued.card_id.as_str();
    wait_for_card(&reader, true);
    let entry = reader_json(&reader);
    assert_eq!(entry["card"]["holder"], "Dr Rosa Removed", "{entry}");

    let suspended = lca.admin_json("suspend", &["--card", card_id]);
    assert_eq!(suspended["state"], "suspended", "{suspended}");
    wait_for_card(&reader, false);
    assert_eq!(reader_json(&reader)["card_present"], false);

    lca.admin_json("resume", &["--card", card_id]);
    wait_for_card(&reader, true);
    wait_for("the resumed card's holder in lanyard readers", || {
        (reader_json(&reader)["card"]["holder"] == "Dr Rosa Removed").then_some(())
    });

    let revoked = lca.admin_json("revoke", &["--card", card_id, "--reason", "key-compromise"]);
    assert_eq!(revoked["state"], "revoked", "{revoked}");
    wait_for_card(&reader, false);
    assert_eq!(reader_json(&reader)["card_present"], false);
    assert_eq!(status_card(&daemon, card_id)["status"], "revoked");
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
