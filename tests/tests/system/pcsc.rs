//! The PC/SC worlds: the run's one pcscd (test-support `Pcscd`, vpcd readers in
//! reversed mode) and a `lanyardd --vpcd-listen` holding an RSA card (and, in
//! another reader, one holding a P-256 card), each shared by the read-and-sign
//! PC/SC tests one at a time (they share the card's PIV security state);
//! helpers to wait for a card and to run OpenSC.

use std::ffi::CString;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use lanyard_test_support::process::remove_at_exit;
use lanyard_test_support::{require_tool, run, CmdOutput, Daemon, KeyType, Pcscd, VirtualReader};

use crate::lifecycle_world::wait_for;
use crate::world::{enroll_card, tools_present, Card};

/// OpenSC's PKCS#11 module (Debian's opensc-pkcs11 package).
pub const OPENSC_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

/// The tools the PC/SC tests drive; `true` when all are present (see
/// `require_tool`: under CI=true a missing one fails the test).
pub fn pcsc_tools_present() -> bool {
    tools_present()
        && ["pcscd", "opensc-tool", "pkcs15-tool"]
            .iter()
            .all(|t| require_tool(t))
}

/// The shared PC/SC daemon and its card.
pub struct PcscWorld {
    /// The run's pcscd.
    pub pcscd: &'static Pcscd,
    /// The reader the card is in.
    pub reader: VirtualReader,
    /// `lanyardd --vpcd-listen` (through `[pcsc] vpcd_listen`).
    pub daemon: Daemon,
    /// Its RSA card.
    pub card: Card,
}

/// The shared PC/SC world with an RSA card, started on first use, and a
/// guard that keeps the other tests of this card out until the caller is done.
pub fn pcsc_world() -> (MutexGuard<'static, ()>, &'static PcscWorld) {
    static WORLD: OnceLock<PcscWorld> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let world = WORLD
        .get_or_init(|| start_world("Dr Pia Reader", "555700000001", KeyType::Rsa2048, "362436"));
    (take_turn(&TURN), world)
}

/// As [`pcsc_world`], with a P-256 card in another reader and daemon.
pub fn pcsc_ec_world() -> (MutexGuard<'static, ()>, &'static PcscWorld) {
    static WORLD: OnceLock<PcscWorld> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let world = WORLD
        .get_or_init(|| start_world("Dr Eve Curve", "555700000004", KeyType::EcP256, "640511"));
    (take_turn(&TURN), world)
}

fn take_turn(turn: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    // A test that failed while holding the card must not fail every later one.
    turn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start_world(holder: &'static str, user_id: &str, key: KeyType, pin: &'static str) -> PcscWorld {
    let pcscd = Pcscd::shared();
    let reader = pcscd.claim_reader();
    let daemon = start_reader_daemon(&reader, "");
    // A static is never dropped: remove its directory when the test binary exits.
    remove_at_exit(daemon.base_dir());
    let card = enroll_card(&daemon, holder, user_id, key, pin);
    wait_for_card(&reader, true);
    PcscWorld {
        pcscd,
        reader,
        daemon,
        card,
    }
}

/// A daemon that serves its card to `reader` (`[pcsc] vpcd_listen`), with
/// `top_level` lanyardd.toml keys before the `[pcsc]` table.
pub fn start_reader_daemon(reader: &VirtualReader, top_level: &str) -> Daemon {
    let config = format!(
        "{top_level}\n[pcsc]\nvpcd_listen = \"{}\"\n",
        reader.listen_addr()
    );
    Daemon::builder().config(&config).start()
}

/// Whether pcscd sees a card in `reader` now (and its ATR).
pub fn card_in_reader(reader: &VirtualReader) -> Option<Vec<u8>> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).ok()?;
    let name = CString::new(reader.name.clone()).ok()?;
    let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
    ctx.get_status_change(Duration::ZERO, &mut states).ok()?;
    states[0]
        .event_state()
        .contains(pcsc::State::PRESENT)
        .then(|| states[0].atr().to_vec())
}

/// Waits (generously) until `reader` has a card (`present`) or none.
pub fn wait_for_card(reader: &VirtualReader, present: bool) {
    let what = if present {
        format!("a card in the reader {:?}", reader.name)
    } else {
        format!("the reader {:?} to be empty", reader.name)
    };
    wait_for(&what, || {
        (card_in_reader(reader).is_some() == present).then_some(())
    });
}

/// Runs an OpenSC tool (`opensc-tool`, `pkcs15-tool`, `pkcs11-tool`) with a
/// private HOME, so no file cache of an earlier card is read.
pub fn opensc(tool: &str, args: &[&str], home: &std::path::Path) -> CmdOutput {
    let mut cmd = Command::new(tool);
    cmd.args(args).env("HOME", home);
    run(cmd, None, Duration::from_secs(120))
}

/// `opensc-tool --atr` style: bytes as lower-case hex pairs joined by ':'.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn the_shared_pcscd_is_what_a_second_fixture_would_refuse() {
    if !pcsc_tools_present() {
        return;
    }
    let pcscd = Pcscd::shared();
    pcscd.assert_alive();
    let pid = pcscd.pid().expect("pcscd has a pid");
    let found = lanyard_test_support::pcscd::other_pcscd()
        .expect("the running pcscd is found by the check that refuses a second one");
    assert!(found.starts_with(&format!("pid {pid}:")), "{found}");
    assert!(found.contains("--foreground"), "{found}");
}
