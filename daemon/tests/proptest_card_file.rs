//! Property tests for the card-store file parser (`CardStore::load`):
//! arbitrary bytes and mutated valid files never panic and give a clear
//! error (or a card that passes the store's checks), hostile Argon2id costs
//! are refused before they are run, and a valid card round-trips.

use std::path::PathBuf;

use lanyard_daemon::card_crypto::KdfParams;
use lanyard_daemon::card_file::{CardFile, CardState};
use lanyard_daemon::card_store::{testing, CardStore};
use lanyard_daemon::error::Error;
use lanyard_daemon::keys::{KeyType, SigningKey};
use lanyard_daemon::pin::Pin;
use proptest::prelude::*;

const PIN: &str = "123456";

/// A store holding one real card (EC P-256, self-signed), the card and the
/// exact bytes of its file.
struct Fixture {
    _tmp: tempfile::TempDir,
    store: CardStore,
    card: CardFile,
    path: PathBuf,
    bytes: Vec<u8>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = CardStore::open(tmp.path(), KdfParams::FOR_TESTS).unwrap();
    let key = SigningKey::generate(KeyType::EcP256).unwrap();
    let new = testing::self_signed_card("CARD1", 0, "Dr Ada Smith", key).unwrap();
    let card = store.create(&new, &Pin::new(PIN.into())).unwrap();
    let path = store.card_path("CARD1");
    let bytes = std::fs::read(&path).unwrap();
    Fixture {
        _tmp: tmp,
        store,
        card,
        path,
        bytes,
    }
}

/// Loads `bytes` as the card's file. A card that loads must also survive a
/// wrong and the right PIN without panicking (either may fail cleanly).
fn load_bytes(f: &Fixture, bytes: &[u8]) -> Result<CardFile, Error> {
    std::fs::write(&f.path, bytes).unwrap();
    let loaded = f.store.load(&f.path);
    if let Ok(card) = &loaded {
        assert_eq!(card.inconsistency(), None, "a loaded card is consistent");
        let _ = f.store.unlock(card, &Pin::new("000000".into()));
        let _ = f.store.unlock(card, &Pin::new(PIN.into()));
    }
    loaded
}

/// The card's file as JSON, with `edit` applied.
fn edited(f: &Fixture, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&f.bytes).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn the_fixture_file_loads_and_unlocks() {
    let f = fixture();
    let card = load_bytes(&f, &f.bytes).unwrap();
    assert_eq!(card, f.card);
    assert!(f
        .store
        .unlock(&card, &Pin::new(PIN.into()))
        .unwrap()
        .is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_are_a_corrupt_file(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let f = fixture();
        let err = load_bytes(&f, &bytes).unwrap_err();
        prop_assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
    }

    #[test]
    fn mutated_files_load_or_are_corrupt(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let f = fixture();
        let mut bytes = f.bytes.clone();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(bytes.len() / 2));
        if let Err(err) = load_bytes(&f, &bytes) {
            prop_assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
        }
    }

    #[test]
    fn hostile_field_values_never_panic(
        field in prop::sample::select(vec![
            "version", "slot", "pin_failures", "card_id", "key_type", "certificate",
            "chain", "status", "ca_url", "lifecycle", "signing", "private_key",
            "wrapped_card_key",
        ]),
        value in prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            ".{0,16}".prop_map(serde_json::Value::from),
            "[A-Za-z0-9+/]{0,24}={0,2}".prop_map(serde_json::Value::from),
            Just(serde_json::json!([])),
            Just(serde_json::json!({})),
        ],
    ) {
        let f = fixture();
        let bytes = edited(&f, |v| v[field] = value);
        if let Err(err) = load_bytes(&f, &bytes) {
            prop_assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
        }
    }

    #[test]
    fn hostile_sealed_fields_never_panic(
        nonce in proptest::collection::vec(any::<u8>(), 0..20),
        ciphertext in proptest::collection::vec(any::<u8>(), 0..64),
        salt in proptest::collection::vec(any::<u8>(), 0..40),
        in_wrap in any::<bool>(),
    ) {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let f = fixture();
        let bytes = edited(&f, |v| {
            let sealed = if in_wrap {
                v["wrapped_card_key"]["salt"] = b64(&salt).into();
                &mut v["wrapped_card_key"]["card_key"]
            } else {
                &mut v["private_key"]
            };
            sealed["nonce"] = b64(&nonce).into();
            sealed["ciphertext"] = b64(&ciphertext).into();
        });
        let card = load_bytes(&f, &bytes).unwrap();
        // Changed key material never opens with the right PIN.
        let opened = f.store.unlock(&card, &Pin::new(PIN.into()));
        prop_assert!(!matches!(opened, Ok(Some(_))));
    }

    #[test]
    fn argon2_costs_beyond_the_limits_are_refused_before_running(
        memory_kib in (KdfParams::MAX_MEMORY_KIB + 1)..=u32::MAX,
        iterations in (KdfParams::MAX_ITERATIONS + 1)..=u32::MAX,
        parallelism in (KdfParams::MAX_PARALLELISM + 1)..=u32::MAX,
        which in 0usize..3,
    ) {
        let f = fixture();
        let bytes = edited(&f, |v| {
            let p = &mut v["wrapped_card_key"]["params"];
            match which {
                0 => p["memory_kib"] = memory_kib.into(),
                1 => p["iterations"] = iterations.into(),
                _ => p["parallelism"] = parallelism.into(),
            }
        });
        let err = load_bytes(&f, &bytes).unwrap_err();
        prop_assert!(err.to_string().contains("Argon2id"), "{err}");
    }

    #[test]
    fn a_valid_card_round_trips(
        holder_name in ".{0,40}",
        pin_failures in 0u32..100,
        last_check_in in any::<i64>(),
        last_renewal_error in ".{0,60}",
        suspended in any::<bool>(),
        chain in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
    ) {
        let f = fixture();
        let mut card = f.card.clone();
        card.holder_name = holder_name;
        card.pin_failures = pin_failures;
        card.lifecycle.last_check_in = last_check_in;
        card.lifecycle.last_renewal_error = last_renewal_error;
        card.chain = chain;
        if suspended {
            card.status = CardState::Suspended;
        }
        f.store.save(&card).unwrap();
        let back = f.store.load(&f.path).unwrap();
        prop_assert_eq!(back, card);
    }
}
