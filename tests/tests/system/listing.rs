//! What an application sees before signing: slots and tokens (`pkcs11-tool -L`),
//! objects and their attributes (`-O`), and the CLI's `lanyard status --json`.

use crate::world::{status_cards, tools_present, world, Card};
use lanyard_test_support::pkcs11_tool::ObjectInfo;

#[test]
fn list_shows_both_tokens_labelled_with_the_holders_names() {
    if !tools_present() {
        return;
    }
    let w = world();
    let out = w.daemon.pkcs11_tool().run(&["-L"]);
    out.assert_success("pkcs11-tool -L");
    let slots = lanyard_test_support::pkcs11_tool::parse_slot_list(&out.stdout);
    assert_eq!(slots.len(), 2, "default configuration has 2 slots\n{out}");
    for card in [&w.rsa, &w.ec] {
        let slot = slots
            .iter()
            .find(|s| s.id == card.slot)
            .unwrap_or_else(|| panic!("slot {} missing\n{out}", card.slot));
        let label = slot.token_label.as_deref().unwrap_or_default();
        assert!(
            label.contains(card.holder),
            "token label {label:?} lacks {:?}\n{out}",
            card.holder
        );
        assert!(
            label.len() <= 32,
            "token label longer than 32 bytes: {label:?}"
        );
    }
    assert_ne!(w.rsa.slot, w.ec.slot, "the two cards share a slot\n{out}");
    assert_eq!(
        w.rsa.slot, slots[0].id,
        "the first enrolled card is not in the first slot\n{out}"
    );
}

fn check_objects(card: &Card) {
    let w = world();
    let objects = w.daemon.pkcs11_tool().objects(card.slot, Some(card.pin));
    let with_id: Vec<&ObjectInfo> = objects
        .iter()
        .filter(|o| o.id() == Some(card.key_id.as_str()))
        .collect();
    let kinds: Vec<&str> = with_id.iter().map(|o| o.kind.as_str()).collect();
    for kind in [
        "Certificate Object",
        "Public Key Object",
        "Private Key Object",
    ] {
        assert!(
            kinds.contains(&kind),
            "{}: no {kind} with ID {} after login; objects: {objects:#?}",
            card.holder,
            card.key_id
        );
    }
    let private = with_id
        .iter()
        .find(|o| o.kind == "Private Key Object")
        .expect("checked above");
    let access = private.field("access").unwrap_or_default();
    for flag in ["sensitive", "always sensitive", "never extractable"] {
        assert!(
            access.contains(flag),
            "private key Access lacks {flag:?}: {private:?}"
        );
    }
    let usage = private.field("usage").unwrap_or_default();
    assert!(
        usage.contains("sign"),
        "private key cannot sign: {private:?}"
    );
    assert!(
        !usage.contains("decrypt") && !usage.contains("unwrap"),
        "private key may decrypt/unwrap: {private:?}"
    );
    let expected_type = match card.key {
        lanyard_test_support::KeyType::Rsa2048 => "RSA",
        lanyard_test_support::KeyType::EcP256 => "EC",
    };
    assert!(
        private.detail.starts_with(expected_type),
        "private key type: {private:?}"
    );
}

#[test]
fn objects_after_login_share_one_id_rsa() {
    if !tools_present() {
        return;
    }
    check_objects(&world().rsa);
}

#[test]
fn objects_after_login_share_one_id_ec() {
    if !tools_present() {
        return;
    }
    check_objects(&world().ec);
}

#[test]
fn status_json_describes_both_cards() {
    if !tools_present() {
        return;
    }
    let w = world();
    let status = w.daemon.status_json();
    assert!(
        status["daemon_version"].is_string(),
        "daemon_version: {status:#}"
    );
    assert_eq!(
        status["socket"].as_str(),
        w.daemon.socket().to_str(),
        "socket: {status:#}"
    );
    let store = status["store"].as_str().unwrap_or_default();
    assert!(
        store.starts_with(w.daemon.data_home().to_str().expect("utf-8"))
            && store.ends_with("lanyard"),
        "store is not $XDG_DATA_HOME/lanyard: {status:#}"
    );
    let cards = status_cards(&w.daemon);
    assert_eq!(cards.len(), 2, "status --json: {status:#}");
    for card in [&w.rsa, &w.ec] {
        let entry = cards
            .iter()
            .find(|c| c["card_id"].as_str() == Some(card.issued.card_id.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "card {} not in status --json: {status:#}",
                    card.issued.card_id
                )
            });
        assert_eq!(
            entry["holder_name"].as_str(),
            Some(card.holder),
            "{entry:#}"
        );
        assert_eq!(entry["slot"].as_u64(), Some(card.slot), "{entry:#}");
        assert_eq!(
            entry["key_type"].as_str(),
            Some(card.key.arg()),
            "{entry:#}"
        );
        let subject = entry["subject"].as_str().unwrap_or_default();
        assert!(
            subject.contains(&format!("CN={}", card.holder)),
            "subject: {entry:#}"
        );
        let not_after = entry["not_after"].as_str().unwrap_or_default();
        assert!(
            not_after.len() >= 20 && not_after.ends_with('Z'),
            "not_after (RFC 3339): {entry:#}"
        );
        assert_eq!(entry["locked"].as_bool(), Some(false), "{entry:#}");
        assert_eq!(entry["max_pin_failures"].as_u64(), Some(3), "{entry:#}");
        assert!(entry["pin_failures"].is_u64(), "{entry:#}");
    }
    let plain = w.daemon.lanyard(&["status"], None);
    plain.assert_success("lanyard status");
    for card in [&w.rsa, &w.ec] {
        assert!(
            plain.stdout.contains(card.holder),
            "plain status lacks {}\n{plain}",
            card.holder
        );
        assert!(
            plain.stdout.contains(&card.issued.card_id),
            "plain status lacks the card id\n{plain}"
        );
    }
}
