//! The PC/SC worlds: the run's one pcscd (test-support `Pcscd`, vpcd readers in
//! reversed mode) and a `lanyardd --vpcd-listen` holding an RSA card (and, in
//! another reader, one holding a P-256 card), each shared by the read-and-sign
//! PC/SC tests one at a time (they share the card's PIV security state);
//! helpers to wait for a card and to run OpenSC.

use std::ffi::CString;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use lanyard_test_support::process::remove_at_exit;
use lanyard_test_support::{require_tool, run, CmdOutput, Daemon, KeyType, Pcscd, VirtualReader};

use crate::lifecycle_world::wait_for;
use crate::world::{enroll_card, openssl, tools_present, Card};

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

/// SELECT of the PIV application by its full AID (Le = 256).
pub const PIV_SELECT: [u8; 17] = [
    0x00, 0xA4, 0x04, 0x00, 0x0B, 0xA0, 0, 0, 0x03, 0x08, 0, 0, 0x10, 0, 0x01, 0, 0x00,
];
/// GET DATA of the X.509 certificate for PIV Authentication (5FC105).
pub const GET_AUTH_CERTIFICATE: [u8; 11] = [
    0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x05, 0x00,
];

/// Sends `apdu`, following 61xx with GET RESPONSE; returns (data, SW).
pub fn send(card: &pcsc::Card, apdu: &[u8]) -> (Vec<u8>, u16) {
    try_send(card, apdu).unwrap_or_else(|e| panic!("{e}"))
}

/// [`send`], or why the card did not answer (e.g. it was just removed).
pub fn try_send(card: &pcsc::Card, apdu: &[u8]) -> Result<(Vec<u8>, u16), String> {
    let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    let mut command = apdu.to_vec();
    let mut data = Vec::new();
    for _ in 0..64 {
        let answer = card
            .transmit(&command, &mut buf)
            .map_err(|e| format!("transmit {command:02X?}: {e}"))?;
        let Some(split) = answer.len().checked_sub(2) else {
            return Err(format!("answer without a status word: {answer:02X?}"));
        };
        let (body, sw) = answer.split_at(split);
        data.extend_from_slice(body);
        let sw = u16::from_be_bytes([sw[0], sw[1]]);
        if sw >> 8 != 0x61 {
            return Ok((data, sw));
        }
        command = vec![0x00, 0xC0, 0x00, 0x00, (sw & 0xFF) as u8];
    }
    Err(format!("endless GET RESPONSE for {apdu:02X?}"))
}

/// One BER-TLV with a one-byte tag: (tag, value, rest).
pub fn tlv(buf: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = buf[0];
    let (len, start) = match buf[1] {
        0x81 => (usize::from(buf[2]), 3),
        0x82 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        n => (usize::from(n), 2),
    };
    (tag, &buf[start..start + len], &buf[start + len..])
}

/// VERIFY of the card PIN (key reference 80), padded with FF to 8 bytes.
pub fn verify_apdu(pin: &[u8]) -> Vec<u8> {
    let mut padded = pin.to_vec();
    padded.resize(8, 0xFF);
    let mut apdu = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    apdu.extend_from_slice(&padded);
    apdu
}

/// A shared connection to the card in `reader`.
pub fn connect(reader: &VirtualReader) -> pcsc::Card {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("pcscd answers");
    let name = CString::new(reader.name.clone()).expect("reader name");
    ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .unwrap_or_else(|e| panic!("connect to the card in {:?}: {e}", reader.name))
}

/// The PIV Authentication certificate (DER) as the card in `reader` gives it
/// over PC/SC: SELECT, GET DATA 5FC105, out of its container; why not, if not.
pub fn certificate_over_pcsc(reader: &VirtualReader) -> Result<Vec<u8>, String> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(|e| e.to_string())?;
    let name = CString::new(reader.name.clone()).map_err(|e| e.to_string())?;
    let mut card = ctx
        .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .map_err(|e| format!("connect: {e}"))?;
    // One transaction: no other client's APDU between GET DATA and GET RESPONSE.
    let cert = card
        .transaction()
        .map_err(|e| format!("transaction: {e}"))
        .and_then(|tx| read_certificate(&tx));
    let _ = card.disconnect(pcsc::Disposition::LeaveCard);
    cert
}

fn read_certificate(card: &pcsc::Card) -> Result<Vec<u8>, String> {
    let (_, sw) = try_send(card, &PIV_SELECT)?;
    if sw != 0x9000 {
        return Err(format!("SELECT PIV answered {sw:04X}"));
    }
    let (object, sw) = try_send(card, &GET_AUTH_CERTIFICATE)?;
    if sw != 0x9000 {
        return Err(format!("GET DATA 5FC105 answered {sw:04X}"));
    }
    let (tag, container, _) = tlv(&object);
    let (inner, cert, _) = tlv(container);
    if (tag, inner) != (0x53, 0x70) {
        return Err(format!("not a certificate container: {object:02X?}"));
    }
    Ok(cert.to_vec())
}

/// The DER form of a PEM certificate (through `openssl x509`).
pub fn der_of_pem(pem: &Path, dir: &Path, tag: &str) -> Vec<u8> {
    let der = dir.join(format!("{tag}.der"));
    openssl(&[
        "x509",
        "-in",
        pem.to_str().expect("UTF-8 path"),
        "-outform",
        "DER",
        "-out",
        der.to_str().expect("UTF-8 path"),
    ])
    .assert_success("openssl x509 -outform DER");
    std::fs::read(&der).expect("read DER certificate")
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
