//! The configurations compared, each set up by the bench: (a) Lanyard's
//! module with a real `lanyardd` and `lanyard-ca` and an RSA and an EC card
//! enrolled; (b) SoftHSM2 in-process with a token it initialises; (c) the same
//! SoftHSM2 token behind `p11-kit server` through p11-kit-client.so; plus any
//! module given with `--module` (its tokens must already hold keys).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use lanyard_test_support::{process, Ca, Daemon, KeyType};
use serde::Serialize;

use super::alg::Alg;
use super::module::{KeyRef, Module};

/// SoftHSM2 as Debian installs it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// p11-kit's forwarding client module as Debian installs it (p11-kit-modules).
pub const P11KIT_CLIENT: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";
/// The PIN of every token the bench makes.
pub const PIN: &str = "246810";
const SO_PIN: &str = "13572468";
const SOFTHSM_LABEL: &str = "lanyard-bench";
/// How long `p11-kit server` may take to announce its socket.
const P11KIT_START: Duration = Duration::from_secs(20);

/// Which configuration a measurement belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Lanyard's module and daemon.
    Lanyard,
    /// SoftHSM2 loaded in the bench process.
    Softhsm,
    /// SoftHSM2 behind p11-kit remoting.
    P11kit,
    /// A module given with `--module`.
    Other(String),
}

impl Kind {
    /// The name in the table and JSON.
    pub fn name(&self) -> String {
        match self {
            Kind::Lanyard => "lanyard".into(),
            Kind::Softhsm => "softhsm".into(),
            Kind::P11kit => "p11kit".into(),
            Kind::Other(p) => format!("module:{p}"),
        }
    }
}

/// The first C_Login of a token, which for Lanyard unlocks the card (Argon2id).
#[derive(Debug, Clone, Serialize)]
pub struct FirstLogin {
    /// The token's label.
    pub token: String,
    /// How long C_Login took, milliseconds.
    pub ms: f64,
}

/// A configuration ready to measure: module loaded, tokens logged in, keys found.
pub struct Config {
    /// Which one.
    pub kind: Kind,
    /// The loaded module.
    pub module: Module,
    /// The user PIN of its tokens.
    pub pin: String,
    /// The key used for each mechanism (absent: the tokens hold none).
    pub keys: Vec<(Alg, KeyRef)>,
    /// The first login of each token.
    pub first_logins: Vec<FirstLogin>,
}

/// What must outlive the measurements: servers and their directories.
#[derive(Default)]
pub struct Fixtures {
    daemon: Option<Daemon>,
    ca: Option<Ca>,
    p11kit: Option<Child>,
    dirs: Vec<tempfile::TempDir>,
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        if let Some(child) = self.p11kit.as_mut() {
            process::stop_child(child, Duration::from_secs(5));
        }
        self.daemon.take();
        self.ca.take();
    }
}

/// Starts a CA and a daemon, enrols an RSA and an EC card, and points the
/// module at the daemon (LANYARD_AGENT_SOCK in this process's environment).
pub fn lanyard(fx: &mut Fixtures, module_path: &Path) -> anyhow::Result<Config> {
    status("starting lanyard-ca and lanyardd, enrolling an RSA-2048 and a P-256 card");
    let ca = fixture(Ca::start)?;
    let daemon = fixture(Daemon::start)?;
    fixture(|| daemon.enroll(&ca, "Bench Rsa", "bench-rsa", KeyType::Rsa2048, PIN))?;
    fixture(|| daemon.enroll(&ca, "Bench Ec", "bench-ec", KeyType::EcP256, PIN))?;
    set_env("LANYARD_AGENT_SOCK", daemon.socket().as_os_str());
    fx.daemon = Some(daemon);
    fx.ca = Some(ca);
    prepare(Kind::Lanyard, module_path, PIN)
}

/// Makes a SoftHSM2 token in a new directory (SOFTHSM2_CONF set in this
/// process) with an RSA-2048 and a P-256 key pair, through SoftHSM2 loaded here.
pub fn softhsm(fx: &mut Fixtures) -> anyhow::Result<Config> {
    status("initialising a SoftHSM2 token and generating its keys");
    let dir = tempfile::Builder::new()
        .prefix("lanyard-bench-softhsm.")
        .tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    set_env("SOFTHSM2_CONF", conf.as_os_str());
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", SOFTHSM_LABEL])
        .args(["--so-pin", SO_PIN, "--pin", PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .context("cannot run softhsm2-util (package softhsm2)")?;
    if !out.status.success() {
        bail!(
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fx.dirs.push(dir);
    generate_keys().context("generating SoftHSM2 keys")?;
    prepare(Kind::Softhsm, Path::new(SOFTHSM_MODULE), PIN)
}

/// Serves the SoftHSM2 token (made by [`softhsm`] first) with `p11-kit
/// server` and loads p11-kit-client.so pointed at it.
pub fn p11kit(fx: &mut Fixtures) -> anyhow::Result<Config> {
    status("starting p11-kit server in front of the SoftHSM2 token");
    let dir = tempfile::Builder::new()
        .prefix("lanyard-bench-p11kit.")
        .tempdir()?;
    let socket = dir.path().join("p11kit.sock");
    let mut cmd = process::owned_command("p11-kit");
    cmd.args(["server", "--foreground", "--sh", "--name"])
        .arg(&socket)
        .args(["--provider", SOFTHSM_MODULE])
        .arg(format!("pkcs11:token={SOFTHSM_LABEL}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = process::spawn_owned(cmd).context("cannot start p11-kit server")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("p11-kit server has no stdout"))?;
    fx.p11kit = Some(child);
    fx.dirs.push(dir);
    let address = server_address(stdout)?;
    set_env("P11_KIT_SERVER_ADDRESS", address.as_ref());
    prepare(Kind::P11kit, Path::new(P11KIT_CLIENT), PIN)
}

/// A module given on the command line, with keys already on its tokens.
pub fn other(path: &Path, pin: &str) -> anyhow::Result<Config> {
    status(&format!("loading {}", path.display()));
    prepare(Kind::Other(path.display().to_string()), path, pin)
}

fn prepare(kind: Kind, path: &Path, pin: &str) -> anyhow::Result<Config> {
    let module = Module::load(path)?;
    finish(kind, module, pin)
}

/// Logs in to every token (timing it) and picks one key per mechanism.
fn finish(kind: Kind, module: Module, pin: &str) -> anyhow::Result<Config> {
    let mut keys: Vec<(Alg, KeyRef)> = Vec::new();
    let mut first_logins = Vec::new();
    for (slot, label) in module.tokens()? {
        let session = module.session(slot)?;
        let t = Instant::now();
        session
            .login(pin)
            .with_context(|| format!("{}: token {label:?}", kind.name()))?;
        first_logins.push(FirstLogin {
            token: label.clone(),
            ms: t.elapsed().as_secs_f64() * 1000.0,
        });
        for alg in Alg::ALL {
            if keys.iter().any(|(a, _)| *a == alg) {
                continue;
            }
            if let Some(key) = session.find_key(slot, &label, alg)? {
                keys.push((alg, key));
            }
        }
        session.keep_open();
    }
    if keys.is_empty() {
        bail!(
            "{}: no RSA or EC private key on any token of {}",
            kind.name(),
            module.path.display()
        );
    }
    keys.sort_by_key(|(a, _)| *a);
    Ok(Config {
        kind,
        module,
        pin: pin.to_string(),
        keys,
        first_logins,
    })
}

/// Generates the key pairs with cryptoki's own load of SoftHSM2, finalised
/// again before the bench loads the module for measuring.
fn generate_keys() -> anyhow::Result<()> {
    let ctx = Pkcs11::new(SOFTHSM_MODULE)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let mut slot = None;
    for s in ctx.get_slots_with_token()? {
        if ctx.get_token_info(s)?.label() == SOFTHSM_LABEL {
            slot = Some(s);
        }
    }
    let slot = slot.ok_or_else(|| anyhow!("the SoftHSM2 token {SOFTHSM_LABEL:?} is missing"))?;
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::from(PIN)))?;
    generate_in(&session)?;
    drop(session);
    ctx.finalize()?;
    Ok(())
}

fn generate_in(session: &Session) -> anyhow::Result<()> {
    let private = |id: u8| {
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
            Attribute::Id(vec![id]),
        ]
    };
    session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Id(vec![1]),
            ],
            &private(1),
        )
        .context("SoftHSM2 RSA-2048 key generation")?;
    // DER of the prime256v1 OID.
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(p256),
                Attribute::Id(vec![2]),
            ],
            &private(2),
        )
        .context("SoftHSM2 P-256 key generation")?;
    let found = session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])?;
    if found.len() != 2 {
        bail!(
            "SoftHSM2 holds {} private keys after generation, 2 expected",
            found.len()
        );
    }
    Ok(())
}

/// Reads `P11_KIT_SERVER_ADDRESS=…;` from the server's shell snippet.
fn server_address(stdout: std::process::ChildStdout) -> anyhow::Result<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("P11_KIT_SERVER_ADDRESS=") {
                let _ = tx.send(rest.split(';').next().unwrap_or_default().to_string());
                break;
            }
        }
    });
    rx.recv_timeout(P11KIT_START)
        .ok()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            anyhow!("p11-kit server did not print P11_KIT_SERVER_ADDRESS within {P11KIT_START:?}")
        })
}

/// Runs a test-support fixture, turning its panic into an error.
fn fixture<T>(f: impl FnOnce() -> T) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "fixture failed".into());
        anyhow!("{msg}")
    })
}

/// Sets a variable the modules read at C_Initialize. Called while the bench
/// is single-threaded apart from test-support's idle reaper.
fn set_env(key: &str, value: &std::ffi::OsStr) {
    std::env::set_var(key, value);
}

/// A status line on stderr for a slow step.
pub fn status(what: &str) {
    eprintln!("lanyard-bench: {what} …");
}

/// Where the Lanyard module is: the release directory beside lanyardd.
pub fn lanyard_module() -> anyhow::Result<PathBuf> {
    fixture(lanyard_test_support::module_path)
}
