//! The shared fixtures: one CA for every test, and one daemon holding an RSA card
//! (enrolled first, so slot 0) and an EC card (slot 1) for the tests that only read
//! and sign. Tests that change state start their own daemon against the shared CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use lanyard_test_support::pkcs11_tool::ObjectInfo;
use lanyard_test_support::process::remove_at_exit;
use lanyard_test_support::{run, Ca, CmdOutput, Daemon, IssuedCard, KeyType, Pkcs11Tool};

/// The role every test card gets.
pub const ROLE: &str = "R8000 Clinical Practitioner";

/// The tools the whole-system tests drive; `true` when all are present (see
/// `require_tool`: under CI=true a missing one fails the test).
pub fn tools_present() -> bool {
    ["pkcs11-tool", "openssl", "setpriv"]
        .iter()
        .all(|t| lanyard_test_support::require_tool(t))
}

/// The CA shared by every test.
pub fn shared_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = Ca::start();
        // A static is never dropped: remove its directory when the test binary exits.
        remove_at_exit(ca.base_dir());
        ca
    })
}

/// A card enrolled in a daemon, with what the tests need to use it.
pub struct Card {
    pub holder: &'static str,
    pub pin: &'static str,
    pub issued: IssuedCard,
    pub slot: u64,
    /// The token label as `pkcs11-tool -L` shows it.
    pub token_label: String,
    /// CKA_ID shared by the certificate and the keys, hex as pkcs11-tool prints it.
    pub key_id: String,
    pub key: KeyType,
}

/// The shared daemon and its two cards.
pub struct World {
    pub daemon: Daemon,
    pub rsa: Card,
    pub ec: Card,
}

/// The shared world, started on first use.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let daemon = Daemon::start();
        remove_at_exit(daemon.base_dir());
        let rsa = enroll_card(
            &daemon,
            "Dr Ada Smith",
            "555123456789",
            KeyType::Rsa2048,
            "246810",
        );
        let ec = enroll_card(
            &daemon,
            "Dr Ben Jones",
            "555987654321",
            KeyType::EcP256,
            "13579753",
        );
        World { daemon, rsa, ec }
    })
}

/// Whether this test process runs as root (uid 0).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The shared daemon's agent socket (what LANYARD_AGENT_SOCK names).
pub fn agent_socket() -> PathBuf {
    world()
        .daemon
        .env()
        .into_iter()
        .find(|(k, _)| k == "LANYARD_AGENT_SOCK")
        .map(|(_, v)| PathBuf::from(v))
        .expect("Daemon::env names LANYARD_AGENT_SOCK")
}

/// Issues a card at the shared CA, enrols it in `daemon`, finds its slot and key id.
pub fn enroll_card(
    daemon: &Daemon,
    holder: &'static str,
    user_id: &str,
    key: KeyType,
    pin: &'static str,
) -> Card {
    enroll_card_at(shared_ca(), daemon, holder, user_id, key, pin)
}

/// Issues a card at `ca`, enrols it in `daemon`, finds its slot and key id.
pub fn enroll_card_at(
    ca: &Ca,
    daemon: &Daemon,
    holder: &'static str,
    user_id: &str,
    key: KeyType,
    pin: &'static str,
) -> Card {
    let issued = daemon.enroll(ca, holder, user_id, key, pin);
    let tool = daemon.pkcs11_tool();
    let slots = tool.slots();
    let found = slots
        .iter()
        .find(|s| s.token_label.as_deref().is_some_and(|l| l.contains(holder)))
        .unwrap_or_else(|| panic!("no token labelled with {holder:?} after enrolment: {slots:?}"));
    let slot = found.id;
    let token_label = found.token_label.clone().unwrap_or_default();
    let objects = tool.objects(slot, None);
    let key_id = objects
        .iter()
        .find(|o| o.kind == "Public Key Object")
        .and_then(ObjectInfo::id)
        .unwrap_or_else(|| panic!("no public key object with an ID on slot {slot}: {objects:?}"))
        .to_string();
    Card {
        holder,
        pin,
        issued,
        slot,
        token_label,
        key_id,
        key,
    }
}

impl Card {
    /// RFC 7512 URI of this card's objects of `kind` ("private", "cert", "public").
    pub fn pkcs11_uri(&self, kind: &str) -> String {
        let mut id = String::new();
        for pair in self.key_id.as_bytes().chunks(2) {
            id.push('%');
            id.push_str(std::str::from_utf8(pair).unwrap_or("00"));
        }
        format!(
            "pkcs11:token={};id={id};type={kind}",
            percent_encode(&self.token_label)
        )
    }
}

/// Percent-encodes everything but ASCII letters and digits.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `openssl ARGS…`.
pub fn openssl(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    run(cmd, None, Duration::from_secs(60))
}

/// Runs `openssl verify -CAfile ROOT [-untrusted INTERMEDIATE] CERT`.
pub fn openssl_verify(root: &Path, untrusted: Option<&Path>, cert: &Path) -> CmdOutput {
    let mut args = vec!["verify", "-CAfile", path_str(root)];
    if let Some(i) = untrusted {
        args.extend(["-untrusted", path_str(i)]);
    }
    args.push(path_str(cert));
    openssl(&args)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Reads the card's certificate through the module (`--read-object --type cert
/// --id …`) and writes it as `dir/NAME.pem`; returns that path.
pub fn export_certificate(tool: &Pkcs11Tool, card: &Card, dir: &Path) -> PathBuf {
    try_export_certificate(tool, card, dir)
        .unwrap_or_else(|out| panic!("pkcs11-tool --read-object --type cert failed\n{out}"))
}

/// [`export_certificate`], or pkcs11-tool's output when it could not read the
/// object (e.g. a renewal just replaced the certificate and its CKA_ID).
pub fn try_export_certificate(
    tool: &Pkcs11Tool,
    card: &Card,
    dir: &Path,
) -> Result<PathBuf, String> {
    let der = dir.join(format!("{}.der", card.key_id));
    let pem = dir.join(format!("{}.pem", card.key_id));
    let slot = card.slot.to_string();
    let out = tool.run(&[
        "--slot",
        &slot,
        "--read-object",
        "--type",
        "cert",
        "--id",
        &card.key_id,
        "-o",
        path_str(&der),
    ]);
    if !out.success() {
        return Err(out.to_string());
    }
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        path_str(&der),
        "-out",
        path_str(&pem),
    ])
    .assert_success("openssl x509 -inform DER");
    Ok(pem)
}

/// The public key of a PEM certificate, written to `dir/pub-ID.pem`.
pub fn public_key_of(cert_pem: &Path, dir: &Path, tag: &str) -> PathBuf {
    let out = openssl(&["x509", "-in", path_str(cert_pem), "-pubkey", "-noout"]);
    out.assert_success("openssl x509 -pubkey");
    let pub_pem = dir.join(format!("pub-{tag}.pem"));
    std::fs::write(&pub_pem, &out.stdout).expect("cannot write the public key");
    pub_pem
}

/// `pkcs11-tool --slot S --login --pin PIN --sign -m MECH [EXTRA…] -i data -o sig`.
pub fn sign(
    tool: &Pkcs11Tool,
    card: &Card,
    mechanism: &str,
    extra: &[&str],
    data: &Path,
    sig: &Path,
) -> CmdOutput {
    let slot = card.slot.to_string();
    let mut args = vec![
        "--slot",
        slot.as_str(),
        "--login",
        "--pin",
        card.pin,
        "--sign",
        "-m",
        mechanism,
        "--id",
        card.key_id.as_str(),
    ];
    args.extend_from_slice(extra);
    args.extend(["-i", path_str(data), "-o", path_str(sig)]);
    tool.run(&args)
}

/// `openssl dgst -sha256 -verify pub.pem -signature sig data`.
pub fn verify_sha256(pub_pem: &Path, sig: &Path, data: &Path) -> CmdOutput {
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        path_str(pub_pem),
        "-signature",
        path_str(sig),
        path_str(data),
    ])
}

/// A scratch directory for one test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lanyard-system-test.")
        .tempdir()
        .expect("cannot create a scratch directory")
}

/// The `cards` array of `lanyard status --json`, or an empty list when there is none.
pub fn status_cards(daemon: &Daemon) -> Vec<serde_json::Value> {
    let status = daemon.status_json();
    match &status["cards"] {
        serde_json::Value::Array(cards) => cards.clone(),
        serde_json::Value::Null => Vec::new(),
        other => panic!("`cards` in lanyard status --json is not an array: {other}"),
    }
}
