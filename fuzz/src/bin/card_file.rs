//! Fuzz target: the card-store file parser. Bytes become `cards/CARD1.json`
//! of a real store and go through `CardStore::load`; a card that loads is
//! then unlocked with a wrong PIN (only when its Argon2id cost is small, so
//! executions stay fast: the limits themselves are a property test).

use std::sync::OnceLock;

use lanyard_daemon::card_crypto::KdfParams;
use lanyard_daemon::card_store::CardStore;
use lanyard_daemon::pin::Pin;

struct Store {
    _dir: tempfile::TempDir,
    store: CardStore,
}

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("no temp dir: {e}"),
        };
        let store = match CardStore::open(dir.path(), KdfParams::FOR_TESTS) {
            Ok(s) => s,
            Err(e) => panic!("no store: {e}"),
        };
        Store { _dir: dir, store }
    })
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let s = store();
        let path = s.store.card_path("CARD1");
        if std::fs::write(&path, data).is_err() {
            return;
        }
        if let Ok(card) = s.store.load(&path) {
            assert_eq!(card.inconsistency(), None);
            let cheap = card
                .wrapped_card_key
                .as_ref()
                .is_some_and(|w| w.params.memory_kib <= 1024 && w.params.iterations <= 2);
            if cheap {
                let _ = s.store.unlock(&card, &Pin::new("000000".into()));
            }
        }
    });
}
