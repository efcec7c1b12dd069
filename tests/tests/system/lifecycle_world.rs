//! Shared fixtures of the card lifecycle tests: a lifecycle CA (30-day
//! certificates, CRL over HTTP, one IT-desk operator), a renewal CA (60-second
//! certificates), and helpers to read certificates, CRLs, status and audit.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lanyard_test_support::process::remove_at_exit;
use lanyard_test_support::{Ca, CmdOutput, Daemon, Operator, Pkcs11Tool};

use crate::world::{export_certificate, openssl, public_key_of, status_cards, verify_sha256, Card};

/// Lifetime of the renewal CA's card certificates: renewal happens in seconds.
pub const RENEWAL_CA_LIFETIME_SECS: &str = "60";

/// Daemon settings for the renewal tests: renew after 15% of the lifetime (9 s
/// of 60), no jitter, retry soon after a failure.
pub const RENEWAL_DAEMON_CONFIG: &str = "renewal_fraction = 0.15\n\
    renewal_jitter_fraction = 0.0\n\
    renewal_retry_min_secs = 1\n\
    renewal_retry_max_secs = 5\n";

/// Daemon settings for the revocation tests: check in with the CA every 2 s.
pub const CHECK_IN_DAEMON_CONFIG: &str = "check_in_interval_secs = 2\n";

/// How long the tests wait for something asynchronous (a renewal, a check-in,
/// a CRL) before failing; generous, as the machine may be loaded.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The CA of the revocation, suspension, PIN reset, re-issue and audit tests.
pub struct LifecycleCa {
    /// The running CA (`--crl-listen 127.0.0.1:0`).
    pub ca: Ca,
    /// An IT-desk operator bootstrapped with `admin add-operator --dir`.
    pub operator: Operator,
}

impl LifecycleCa {
    /// `lanyard-ca admin SUB … --json` as the operator; panics unless it succeeded.
    pub fn admin_json(&self, sub: &str, args: &[&str]) -> serde_json::Value {
        self.operator.admin_json(&self.ca, sub, args)
    }

    /// `lanyard-ca admin SUB …` as the operator, whatever happened.
    pub fn admin(&self, sub: &str, args: &[&str]) -> CmdOutput {
        self.operator.admin(&self.ca, sub, args)
    }

    /// `admin show-card --card ID --json`.
    pub fn show_card(&self, card_id: &str) -> serde_json::Value {
        self.admin_json("show-card", &["--card", card_id])
    }

    /// The URL `serve --crl-listen` announced.
    pub fn crl_url(&self) -> &str {
        self.ca
            .crl_url()
            .expect("the lifecycle CA serves its CRL over HTTP")
    }
}

/// The lifecycle CA shared by the lifecycle tests: 30-day certificates (nothing
/// expires or renews by itself during a test), the CRL served over plain HTTP
/// and re-issued every 20 s, and operator "Grace Hopper".
pub fn lifecycle_ca() -> &'static LifecycleCa {
    static CA: OnceLock<LifecycleCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = Ca::start_with(
            &[("LANYARD_CA_CRL_INTERVAL_SECS", "20")],
            &["--crl-listen", "127.0.0.1:0"],
        );
        remove_at_exit(ca.base_dir());
        let dir = ca.base_dir().join("operators");
        std::fs::create_dir_all(&dir).expect("cannot create the operators' directory");
        let operator = Operator::bootstrap(&ca, "Grace Hopper", &dir);
        LifecycleCa { ca, operator }
    })
}

/// The renewal CA: card certificates live [`RENEWAL_CA_LIFETIME_SECS`].
pub fn renewal_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = Ca::start_with_env(&[("LANYARD_CA_CERT_LIFETIME_SECS", RENEWAL_CA_LIFETIME_SECS)]);
        remove_at_exit(ca.base_dir());
        ca
    })
}

/// Polls `probe` every 250 ms until it returns `Some`, for at most [`PATIENCE`];
/// panics naming `what` (and the last state `describe` gives) otherwise.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {PATIENCE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The card `card_id` in `lanyard status --json`; panics if it is not listed.
pub fn status_card(daemon: &Daemon, card_id: &str) -> serde_json::Value {
    status_cards(daemon)
        .into_iter()
        .find(|c| c["card_id"] == card_id)
        .unwrap_or_else(|| panic!("card {card_id} is not in lanyard status --json"))
}

/// Reads the card's CKA_ID again (it names the key, so a new key has a new one).
pub fn refresh_key_id(tool: &Pkcs11Tool, card: &mut Card) {
    let objects = tool.objects(card.slot, None);
    card.key_id = objects
        .iter()
        .find(|o| o.kind == "Public Key Object")
        .and_then(|o| o.id())
        .unwrap_or_else(|| panic!("no public key object on slot {}: {objects:?}", card.slot))
        .to_string();
}

/// Exports the card's certificate into `dir/SUB/` (made if needed); its path.
pub fn certificate_into(tool: &Pkcs11Tool, card: &Card, dir: &Path, sub: &str) -> PathBuf {
    let into = dir.join(sub);
    std::fs::create_dir_all(&into).expect("cannot create an export directory");
    export_certificate(tool, card, &into)
}

/// Runs `act` between two exports of the card's certificate and retries (up
/// to three times) if a renewal replaced the certificate meanwhile; returns
/// the certificate `act` ran under and what `act` returned.
pub fn under_stable_certificate<T>(
    tool: &Pkcs11Tool,
    card: &mut Card,
    dir: &Path,
    mut act: impl FnMut(&Card) -> T,
) -> (PathBuf, T) {
    // A renewal between reading the CKA_ID and exporting makes the export
    // miss (the id changed with the key): that attempt is retried too.
    let export = |card: &Card, sub: String| {
        let into = dir.join(sub);
        std::fs::create_dir_all(&into).expect("cannot create an export directory");
        crate::world::try_export_certificate(tool, card, &into).ok()
    };
    for attempt in 0..5 {
        refresh_key_id(tool, card);
        let Some(before) = export(card, format!("stable-{attempt}-a")) else {
            continue;
        };
        let result = act(card);
        let Some(after) = export(card, format!("stable-{attempt}-b")) else {
            continue;
        };
        let read = |p: &Path| std::fs::read(p).expect("read an exported certificate");
        if read(&before) == read(&after) {
            return (before, result);
        }
    }
    panic!("the card's certificate changed during each of five attempts")
}

/// The lower-case hex serial of a PEM certificate, without leading zeros.
pub fn cert_serial(pem: &Path) -> String {
    let out = openssl(&["x509", "-in", path_str(pem), "-noout", "-serial"]);
    out.assert_success("openssl x509 -serial");
    let hex = out
        .stdout
        .trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("unexpected openssl x509 -serial output: {out}"));
    normalise_serial(hex)
}

/// A serial as lower-case hex without colons or leading zeros.
pub fn normalise_serial(hex: &str) -> String {
    let clean: String = hex
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_lowercase();
    let trimmed = clean.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// The public key (PEM text) of a PEM certificate.
pub fn public_key_text(cert: &Path, dir: &Path, tag: &str) -> String {
    std::fs::read_to_string(public_key_of(cert, dir, tag)).expect("read a public key")
}

/// The URI in the certificate's CRL Distribution Points.
pub fn crl_distribution_point(pem: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        path_str(pem),
        "-noout",
        "-ext",
        "crlDistributionPoints",
    ]);
    out.assert_success("openssl x509 -ext crlDistributionPoints");
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no URI in the certificate's CRL Distribution Points\n{out}"))
        .to_string()
}

/// `GET url` over plain HTTP/1.1; the body of a 200 answer (panics otherwise).
pub fn http_get(url: &str) -> Vec<u8> {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let mut stream =
        TcpStream::connect(authority).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    let timeout = Some(Duration::from_secs(30));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("cannot send the request to {url}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("cannot read the answer from {url}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in the answer from {url}"));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw[split + 4..].to_vec();
    let status = head.lines().next().unwrap_or_default();
    assert!(
        status.split_whitespace().nth(1) == Some("200"),
        "GET {url}: {status}\n{head}"
    );
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return dechunk(&body);
    }
    body
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&body[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || body.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 4 + size).min(body.len())..];
    }
}

/// A CRL fetched over HTTP: its DER and PEM files and `openssl crl -text`.
pub struct Crl {
    /// `openssl crl -inform der -noout -text`.
    pub text: String,
    /// The CRL as PEM, for `openssl verify -CRLfile`.
    pub pem: PathBuf,
    /// Revoked serials (normalised) and their reason as openssl names it
    /// ("" when the entry has no reason code).
    pub revoked: HashMap<String, String>,
}

/// Fetches the CRL at `url` into `dir/NAME.crl` and reads it with openssl.
pub fn fetch_crl(url: &str, dir: &Path, name: &str) -> Crl {
    let der = dir.join(format!("{name}.crl"));
    let pem = dir.join(format!("{name}.crl.pem"));
    std::fs::write(&der, http_get(url)).expect("write the CRL");
    let text = openssl(&[
        "crl",
        "-inform",
        "der",
        "-in",
        path_str(&der),
        "-noout",
        "-text",
    ]);
    text.assert_success("openssl crl -inform der -noout -text");
    openssl(&[
        "crl",
        "-inform",
        "der",
        "-in",
        path_str(&der),
        "-out",
        path_str(&pem),
    ])
    .assert_success("openssl crl -inform der -out crl.pem");
    Crl {
        revoked: revoked_entries(&text.stdout),
        text: text.stdout,
        pem,
    }
}

/// The `Serial Number:` entries of `openssl crl -text` with their reason.
fn revoked_entries(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut current: Option<String> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(serial) = t.strip_prefix("Serial Number:") {
            let serial = normalise_serial(serial);
            out.insert(serial.clone(), String::new());
            current = Some(serial);
        } else if t.starts_with("X509v3 CRL Reason Code") {
            if let (Some(serial), Some(reason)) = (&current, lines.peek()) {
                out.insert(serial.clone(), reason.trim().to_string());
            }
        }
    }
    out
}

/// Polls the CRL at `url` until it lists `serial`; returns it.
pub fn wait_for_crl_entry(url: &str, dir: &Path, serial: &str) -> Crl {
    let mut n = 0;
    wait_for(&format!("the CRL at {url} to list serial {serial}"), || {
        n += 1;
        let crl = fetch_crl(url, dir, &format!("crl-{n}"));
        crl.revoked.contains_key(serial).then_some(crl)
    })
}

/// `openssl verify -crl_check -CRLfile CRL -CAfile root -untrusted issuing CERT`.
pub fn verify_with_crl(ca: &Ca, crl: &Crl, cert: &Path) -> CmdOutput {
    openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        path_str(&crl.pem),
        "-CAfile",
        path_str(&ca.root_pem()),
        "-untrusted",
        path_str(&ca.issuing_pem()),
        path_str(cert),
    ])
}

/// DER `ECDSA-Sig-Value` from a raw PKCS#11 `r || s` signature.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        let mut v = bytes[start..].to_vec();
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = integer(r);
    body.extend(integer(s));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Verifies a signature of `data` made through PKCS#11 (raw r||s for EC) with
/// the public key of `cert`; the openssl output.
pub fn verify_with_certificate(
    cert: &Path,
    data: &Path,
    sig: &Path,
    ec: bool,
    dir: &Path,
    tag: &str,
) -> CmdOutput {
    let pub_pem = public_key_of(cert, dir, tag);
    let sig = if ec {
        let raw = std::fs::read(sig).expect("read a signature");
        let der = dir.join(format!("{tag}.sig.der"));
        std::fs::write(&der, ecdsa_raw_to_der(&raw)).expect("write a DER signature");
        der
    } else {
        sig.to_path_buf()
    };
    verify_sha256(&pub_pem, &sig, data)
}

/// Checks `admin audit --card ID --verify --json`: every action in `actions`
/// is recorded for the card, admin actions name the operator and a peer
/// address, and the hash chain is intact. Returns the records.
pub fn assert_audited(
    lca: &LifecycleCa,
    card_id: &str,
    actions: &[&str],
) -> Vec<serde_json::Value> {
    let audit = lca.admin_json("audit", &["--card", card_id, "--verify"]);
    let records = audit["records"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("audit --json has no records array: {audit}"));
    let seen: Vec<&str> = records
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in actions {
        assert!(
            seen.contains(action),
            "audit of card {card_id} lacks {action:?}; it has {seen:?}\n{audit}"
        );
    }
    let operator_actor = format!("operator:{}", lca.operator.name);
    for r in &records {
        let action = r["action"].as_str().unwrap_or_default();
        if [
            "card_revoked",
            "card_suspended",
            "card_resumed",
            "reset_code_released",
            "card_reissued",
        ]
        .contains(&action)
        {
            let actor = r["actor"].as_str().unwrap_or_default();
            assert!(
                actor.starts_with(&operator_actor),
                "{action} is not attributed to {operator_actor}: {r}"
            );
            assert!(
                r["peer"].as_str().is_some_and(|p| p.contains("127.0.0.1")),
                "{action} does not say where it came from: {r}"
            );
            assert!(r["at"].is_string(), "{action} has no time: {r}");
        }
    }
    assert_eq!(
        audit["verification"]["intact"], true,
        "audit --verify does not report an intact chain: {audit}"
    );
    records
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
