//! The per-card TPM share against a real swtpm: with `device_secret = "tpm"`
//! each PIN tried goes through the TPM (a wrong one raises its
//! dictionary-attack counter, and its lockout stops every guess), so the
//! unsealed device secret and the card file together still do not let anyone
//! guess the PIN offline.

use lanyard_daemon::card_crypto::{unwrap_card_key, KdfParams};
use lanyard_daemon::card_store::{testing, CardStore};
use lanyard_daemon::keys::{KeyType, SigningKey};
use lanyard_daemon::pin::Pin;
use lanyard_daemon::tpm::{sealed_file, Tpm};
use lanyard_test_support::{require_tool, Swtpm};
use tss_esapi::constants::PropertyTag;

const PIN: &str = "123456";

fn pin(s: &str) -> Pin {
    Pin::new(s.into())
}

/// A TPM property read directly (a separate ESAPI context).
fn property(tpm: &Swtpm, tag: PropertyTag) -> u32 {
    let conf = tpm.tcti().parse().unwrap();
    let mut ctx = tss_esapi::Context::new(conf).unwrap();
    ctx.get_tpm_property(tag).unwrap().unwrap_or(0)
}

fn store_with_card(tpm: &Swtpm) -> (tempfile::TempDir, CardStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = CardStore::open_with(
        dir.path(),
        KdfParams::FOR_TESTS,
        Some(Tpm::connect(&tpm.tcti()).unwrap()),
    )
    .unwrap();
    let key = SigningKey::generate(KeyType::EcP256).unwrap();
    let new = testing::self_signed_card("C1", 0, "Dr Ada Smith", key).unwrap();
    store.create(&new, &pin(PIN)).unwrap();
    (dir, store)
}

#[test]
fn every_pin_goes_through_the_tpm_and_the_secret_alone_opens_nothing() {
    if !require_tool("swtpm") {
        return;
    }
    let tpm = Swtpm::start();
    let (dir, store) = store_with_card(&tpm);
    let card = store.load(&store.card_path("C1")).unwrap();
    let wrapped = card.wrapped_card_key.clone().unwrap();
    assert!(wrapped.tpm_share.is_some(), "the card has a TPM share");

    assert!(store.unlock(&card, &pin(PIN)).unwrap().is_some());
    let before = property(&tpm, PropertyTag::LockoutCounter);
    assert!(store.unlock(&card, &pin("654321")).unwrap().is_none());
    assert_eq!(
        property(&tpm, PropertyTag::LockoutCounter),
        before + 1,
        "a wrong PIN counts in the TPM's dictionary-attack counter"
    );

    // The attacker's best case: the device secret unsealed on this machine,
    // the card file and even the right PIN, but no TPM check of the PIN.
    let tcti_tpm = Tpm::connect(&tpm.tcti()).unwrap();
    let secret =
        sealed_file::load_or_create(&tcti_tpm, &dir.path().join(sealed_file::FILE_NAME)).unwrap();
    let path = store.card_path("C1");
    assert!(
        unwrap_card_key(&wrapped, "C1", &pin(PIN), &secret, &path)
            .unwrap()
            .is_none(),
        "the device secret without the TPM share opens nothing"
    );
}

#[test]
fn a_new_pin_gets_a_new_share_and_the_tpm_lockout_stops_guessing() {
    if !require_tool("swtpm") {
        return;
    }
    let tpm = Swtpm::start();
    let (_dir, store) = store_with_card(&tpm);
    let card = store.load(&store.card_path("C1")).unwrap();
    let changed = store
        .rewrap(&card, &pin(PIN), &pin("24681357"))
        .unwrap()
        .expect("right old PIN");
    store.save(&changed).unwrap();
    let card = store.load(&store.card_path("C1")).unwrap();
    assert!(store.unlock(&card, &pin(PIN)).unwrap().is_none());
    assert!(store.unlock(&card, &pin("24681357")).unwrap().is_some());

    // Guess until the TPM locks out: then even the right PIN cannot be checked.
    let max = property(&tpm, PropertyTag::MaxAuthFail);
    assert!(max > 0 && max <= 1000, "TPM_PT_MAX_AUTH_FAIL = {max}");
    let mut locked = None;
    for n in 0..=max {
        match store.unlock(&card, &pin(&format!("{:06}", 100000 + n))) {
            Ok(None) => continue,
            Ok(Some(_)) => panic!("a guess opened the card"),
            Err(e) => {
                locked = Some(e.to_string());
                break;
            }
        }
    }
    let msg = locked.expect("the TPM locked out");
    assert!(msg.contains("dictionary-attack lockout"), "{msg}");
    let err = store
        .unlock(&card, &pin("24681357"))
        .err()
        .expect("locked out");
    assert!(
        err.to_string().contains("dictionary-attack lockout"),
        "{err}"
    );
}
