//! The card store with `device_secret = "tpm"` against a real swtpm: the
//! device secret sealed and unsealed across restarts, refused on another
//! TPM with nothing changed, PIN failures kept in an NV counter that a
//! restored older card file cannot roll back, freed when the card is revoked.

use std::collections::BTreeMap;
use std::path::Path;

use lanyard_daemon::card_crypto::KdfParams;
use lanyard_daemon::card_store::{testing, CardStore};
use lanyard_daemon::error::Error;
use lanyard_daemon::keys::{KeyType, SigningKey};
use lanyard_daemon::pin::Pin;
use lanyard_daemon::tpm::{counter, Tpm};
use lanyard_test_support::{require_tool, Swtpm};

const PIN: &str = "123456";

fn open(dir: &Path, tpm: &Swtpm) -> Result<CardStore, Error> {
    CardStore::open_with(dir, KdfParams::FOR_TESTS, Some(Tpm::connect(&tpm.tcti())?))
}

fn add_card(store: &CardStore, id: &str) {
    let key = SigningKey::generate(KeyType::EcP256).unwrap();
    let new = testing::self_signed_card(id, 0, "Dr Ada Smith", key).unwrap();
    store.create(&new, &Pin::new(PIN.into())).unwrap();
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_sealed_secret_opens_the_cards_after_a_restart_and_not_on_another_tpm() {
    if !require_tool("swtpm") {
        return;
    }
    let tpm = Swtpm::start();
    let store_dir = tempfile::tempdir().unwrap();
    let dir = store_dir.path();
    {
        let store = open(dir, &tpm).unwrap();
        add_card(&store, "C1");
    }
    assert!(!dir.join("device.secret").exists(), "no plain secret");
    let sealed = std::fs::read_to_string(dir.join("device.secret.tpm")).unwrap();
    assert!(sealed.contains("\"private\""), "{sealed}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("device.secret.tpm"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Same TPM, new store object (a daemon restart): the card opens.
    let store = open(dir, &tpm).unwrap();
    let card = store.load(&store.card_path("C1")).unwrap();
    assert!(store
        .unlock(&card, &Pin::new(PIN.into()))
        .unwrap()
        .is_some());
    drop(store);

    // The files copied next to another TPM: refused, nothing changed.
    let other = Swtpm::start();
    let before = snapshot(dir);
    let err = open(dir, &other).err().expect("another TPM must refuse");
    let msg = err.to_string();
    assert!(msg.contains("sealed to another TPM"), "{msg}");
    assert_eq!(snapshot(dir), before, "nothing changed");
}

#[test]
fn a_restored_older_card_file_shows_more_failures_never_fewer() {
    if !require_tool("swtpm") {
        return;
    }
    let tpm = Swtpm::start();
    let store_dir = tempfile::tempdir().unwrap();
    let store = open(store_dir.path(), &tpm).unwrap();
    add_card(&store, "C1");
    let path = store.card_path("C1");
    let mut card = store.load(&path).unwrap();
    assert_eq!(card.pin_failures, 0);
    let index = card.tpm_counter.expect("a TPM counter").nv_index;
    assert!(counter::in_range(index));
    let backup = std::fs::read(&path).unwrap();

    // Two wrong PINs counted (as the daemon does: written before each check).
    for n in 1..=2 {
        card.pin_failures = n;
        card = store.write(&card).unwrap();
    }
    assert_eq!(store.load(&path).unwrap().pin_failures, 2);

    // The older copy put back: the TPM still says two.
    std::fs::write(&path, &backup).unwrap();
    assert_eq!(store.load(&path).unwrap().pin_failures, 2);
    // Even after a restart (a new store, the same TPM).
    drop(store);
    let store = open(store_dir.path(), &tpm).unwrap();
    let mut card = store.load(&path).unwrap();
    assert_eq!(card.pin_failures, 2);
    // The mirror in the file is not what counts: editing it changes nothing.
    let mut json: serde_json::Value = serde_json::from_slice(&backup).unwrap();
    json["pin_failures"] = 0.into();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(store.load(&path).unwrap().pin_failures, 2);

    // A success (or the unblock code) resets the count: base = counter's value.
    card.pin_failures = 0;
    card = store.write(&card).unwrap();
    assert_eq!(store.load(&path).unwrap().pin_failures, 0);
    let after_reset = std::fs::read(&path).unwrap();
    card.pin_failures = 1;
    store.write(&card).unwrap();
    std::fs::write(&path, &after_reset).unwrap();
    assert_eq!(store.load(&path).unwrap().pin_failures, 1);
}

#[test]
fn revoking_a_card_frees_its_nv_index_and_switching_kinds_is_refused_with_cards() {
    if !require_tool("swtpm") {
        return;
    }
    let tpm = Swtpm::start();
    let store_dir = tempfile::tempdir().unwrap();
    let dir = store_dir.path();
    let store = open(dir, &tpm).unwrap();
    add_card(&store, "C1");
    let path = store.card_path("C1");
    let card = store.load(&path).unwrap();
    let index = card.tpm_counter.unwrap().nv_index;
    let probe = Tpm::connect(&tpm.tcti()).unwrap();
    assert!(counter::exists(&probe, index).unwrap());

    // A file store cannot open cards sealed under the TPM: refused, unchanged.
    let before = snapshot(dir);
    let err = CardStore::open(dir, KdfParams::FOR_TESTS)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("device_secret = \"tpm\""), "{err}");
    assert_eq!(snapshot(dir), before);

    let tomb = store.write(&card.tombstone()).unwrap();
    assert_eq!(tomb.tpm_counter, None);
    assert!(!counter::exists(&probe, index).unwrap(), "index freed");
    assert!(store.load(&path).is_ok(), "the tombstone loads");
}

#[test]
fn an_empty_file_store_switches_to_the_tpm_and_a_tpm_that_is_not_there_is_a_clear_error() {
    if !require_tool("swtpm") {
        return;
    }
    let store_dir = tempfile::tempdir().unwrap();
    let dir = store_dir.path();
    drop(CardStore::open(dir, KdfParams::FOR_TESTS).unwrap());
    assert!(dir.join("device.secret").exists());
    let tpm = Swtpm::start();
    drop(open(dir, &tpm).unwrap());
    assert!(!dir.join("device.secret").exists());
    assert!(dir.join("device.secret.tpm").exists());

    let mut gone = Swtpm::start();
    let tcti = gone.tcti();
    gone.stop();
    let err = Tpm::connect(&tcti).expect_err("no TPM there");
    let msg = err.to_string();
    assert!(msg.contains("TPM") && msg.contains(&tcti), "{msg}");
    let err = Tpm::connect("nonsense:x").expect_err("bad TCTI");
    assert!(err.to_string().contains("nonsense:x"), "{err}");
}

#[test]
fn a_reissued_card_keeps_its_counter_index_with_the_count_reset() {
    if !require_tool("swtpm") {
        return;
    }
    let tpm = Swtpm::start();
    let store_dir = tempfile::tempdir().unwrap();
    let store = open(store_dir.path(), &tpm).unwrap();
    add_card(&store, "C1");
    let path = store.card_path("C1");
    let mut card = store.load(&path).unwrap();
    let index = card.tpm_counter.unwrap().nv_index;
    card.pin_failures = 3;
    store.write(&card).unwrap();
    assert_eq!(store.load(&path).unwrap().pin_failures, 3);
    // A re-issue or PIN reset (unblock code) writes a fresh card over it.
    let key = SigningKey::generate(KeyType::EcP256).unwrap();
    let new = testing::self_signed_card("C1", 0, "Dr Ada Smith", key).unwrap();
    let fresh = store.seal_new(&new, &Pin::new("654321".into())).unwrap();
    assert_eq!(fresh.tpm_counter, None);
    let written = store.write(&fresh).unwrap();
    assert_eq!(written.tpm_counter.map(|c| c.nv_index), Some(index));
    assert_eq!(store.load(&path).unwrap().pin_failures, 0);
}

#[test]
fn a_discarded_new_card_leaves_no_file_and_no_counter() {
    if !require_tool("swtpm") {
        return;
    }
    let tpm = Swtpm::start();
    let store_dir = tempfile::tempdir().unwrap();
    let store = open(store_dir.path(), &tpm).unwrap();
    add_card(&store, "C1");
    let path = store.card_path("C1");
    let index = store.load(&path).unwrap().tpm_counter.unwrap().nv_index;
    store.discard_new("C1");
    assert!(!path.exists());
    let probe = Tpm::connect(&tpm.tcti()).unwrap();
    assert!(!counter::exists(&probe, index).unwrap());
}
