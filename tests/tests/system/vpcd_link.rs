//! The daemon's vpcd link, driven over TCP exactly as pcscd's vpcd driver
//! would in reversed mode (no pcscd here: `pcsc*.rs` do that): the card's
//! ATR, PIV SELECT / GET DATA / VERIFY / GENERAL AUTHENTICATE with one PIN
//! counter shared with the PKCS#11 token, a signature openssl verifies with
//! the card's certificate, bad frames, removal on suspension, loopback only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::{bin_path, run, Daemon, KeyType};

use crate::lifecycle_world::{
    certificate_into, lifecycle_ca, status_card, wait_for, CHECK_IN_DAEMON_CONFIG,
};
use crate::world::{enroll_card_at, public_key_of, scratch, tools_present, verify_sha256};

/// The PIV application identifier (SP 800-73-4).
const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

/// A free loopback port (bound, then released for the daemon).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn vpcd_config(port: u16) -> String {
    format!("{CHECK_IN_DAEMON_CONFIG}[pcsc]\nvpcd_listen = \"127.0.0.1:{port}\"\n")
}

/// A response APDU: data and status word.
#[derive(Debug)]
struct Response {
    data: Vec<u8>,
    sw: u16,
}

/// The vpcd end of the link: frames with a 2-byte big-endian length.
struct Vpcd {
    stream: TcpStream,
}

impl Vpcd {
    /// Connects and asks for the ATR: `None` when the daemon closes the
    /// connection instead (no card in the reader).
    fn try_connect(port: u16) -> Option<(Vpcd, Vec<u8>)> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let mut v = Vpcd { stream };
        let atr = v.atr()?;
        Some((v, atr))
    }

    /// Waits until a card is in the reader; the link and the ATR.
    fn connect(port: u16) -> (Vpcd, Vec<u8>) {
        wait_for("lanyardd to show a card to vpcd", || {
            Vpcd::try_connect(port)
        })
    }

    fn send(&mut self, body: &[u8]) -> bool {
        let mut frame = (body.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).is_ok()
    }

    /// The next frame, or `None` once the daemon closed the link (a read
    /// that times out is a failure, not a closed link).
    fn recv(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 2];
        self.read(&mut len)?;
        let mut body = vec![0; u16::from_be_bytes(len) as usize];
        self.read(&mut body)?;
        Some(body)
    }

    fn read(&mut self, buf: &mut [u8]) -> Option<()> {
        match self.stream.read_exact(buf) {
            Ok(()) => Some(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("lanyardd neither answered nor closed the link within 60 s")
            }
            Err(_) => None,
        }
    }

    fn atr(&mut self) -> Option<Vec<u8>> {
        if !self.send(&[4]) {
            return None;
        }
        self.recv().filter(|a| !a.is_empty())
    }

    fn control(&mut self, byte: u8) {
        assert!(self.send(&[byte]), "control {byte} not sent");
    }

    /// Sends a command APDU; collects 61xx continuations with GET RESPONSE.
    fn transmit(&mut self, apdu: &[u8]) -> Response {
        let mut data = Vec::new();
        let mut next = apdu.to_vec();
        loop {
            assert!(self.send(&next), "APDU not sent");
            let mut r = self
                .recv()
                .expect("the link closed instead of answering an APDU");
            assert!(r.len() >= 2, "a response without a status word: {r:02X?}");
            let sw2 = r.pop().unwrap_or(0);
            let sw1 = r.pop().unwrap_or(0);
            data.extend_from_slice(&r);
            if sw1 == 0x61 {
                next = vec![0x00, 0xC0, 0x00, 0x00, sw2];
                continue;
            }
            return Response {
                data,
                sw: u16::from_be_bytes([sw1, sw2]),
            };
        }
    }

    fn select_piv(&mut self) -> Response {
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, PIV_AID.len() as u8];
        apdu.extend_from_slice(&PIV_AID);
        apdu.push(0x00);
        self.transmit(&apdu)
    }

    fn verify(&mut self, pin: Option<&str>) -> u16 {
        let mut apdu = vec![0x00, 0x20, 0x00, 0x80];
        if let Some(pin) = pin {
            let mut padded = pin.as_bytes().to_vec();
            padded.resize(8, 0xFF);
            apdu.push(8);
            apdu.extend_from_slice(&padded);
        }
        self.transmit(&apdu).sw
    }

    /// GENERAL AUTHENTICATE with key 9A, RSA 2048, as an extended-length APDU.
    fn sign_rsa(&mut self, block: &[u8]) -> Response {
        self.sign_rsa_with(0x9A, block)
    }

    /// GENERAL AUTHENTICATE with key `key` (9A or 9C), RSA 2048.
    fn sign_rsa_with(&mut self, key: u8, block: &[u8]) -> Response {
        let mut template = vec![0x7C, 0x82];
        let inner_len = 2 + 4 + block.len();
        template.extend_from_slice(&(inner_len as u16).to_be_bytes());
        template.extend_from_slice(&[0x82, 0x00, 0x81, 0x82]);
        template.extend_from_slice(&(block.len() as u16).to_be_bytes());
        template.extend_from_slice(block);
        let mut apdu = vec![0x00, 0x87, 0x07, key, 0x00];
        apdu.extend_from_slice(&(template.len() as u16).to_be_bytes());
        apdu.extend_from_slice(&template);
        apdu.extend_from_slice(&[0x00, 0x00]);
        self.transmit(&apdu)
    }
}

/// The PKCS#1 v1.5 type-1 block of a SHA-256 DigestInfo, 256 bytes.
fn pkcs1_block(digest: &[u8]) -> Vec<u8> {
    let mut di = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    di.extend_from_slice(digest);
    let mut block = vec![0x00, 0x01];
    block.resize(256 - di.len() - 1, 0xFF);
    block.push(0x00);
    block.extend_from_slice(&di);
    block
}

fn sha256_of(path: &Path) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", "-sha256", "-r"]).arg(path);
    let out = run(cmd, None, Duration::from_secs(30));
    out.assert_success("openssl dgst -sha256 -r");
    let hex = out.stdout.split_whitespace().next().unwrap_or_default();
    let digest: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    assert_eq!(digest.len(), 32, "openssl dgst -r printed {:?}", out.stdout);
    digest
}

/// The value of the first BER-TLV `tag` (one or two bytes) in `data`, top level.
fn tlv<'a>(data: &'a [u8], tag: &[u8]) -> Option<&'a [u8]> {
    let mut rest = data;
    while !rest.is_empty() {
        let tag_len = if rest[0] & 0x1F == 0x1F { 2 } else { 1 };
        let this = rest.get(..tag_len)?;
        let (len, header) = match *rest.get(tag_len)? {
            n @ 0..=0x7F => (n as usize, tag_len + 1),
            0x81 => (*rest.get(tag_len + 1)? as usize, tag_len + 2),
            0x82 => (
                u16::from_be_bytes([*rest.get(tag_len + 1)?, *rest.get(tag_len + 2)?]) as usize,
                tag_len + 3,
            ),
            _ => return None,
        };
        let value = rest.get(header..header + len)?;
        if this == tag {
            return Some(value);
        }
        rest = &rest[header + len..];
    }
    None
}

#[test]
fn a_vpcd_peer_reads_the_card_verifies_signs_and_sees_it_removed() {
    if !tools_present() {
        return;
    }
    let lca = lifecycle_ca();
    let port = free_port();
    let daemon = Daemon::builder().config(&vpcd_config(port)).start();
    let pin = "482915";
    let card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Vic Reader",
        "555600000001",
        KeyType::Rsa2048,
        pin,
    );
    let card_id = card.issued.card_id.clone();
    let dir = scratch();
    let cert_pem = certificate_into(&daemon.pkcs11_tool(), &card, dir.path(), "card");
    let cert_der = std::fs::read(cert_pem.with_extension("der")).expect("exported DER");

    let (mut vpcd, atr) = Vpcd::connect(port);
    assert_eq!(atr[0], 0x3B, "{atr:02X?}");
    assert!(
        atr.windows(7).any(|w| w == b"Lanyard"),
        "the ATR names a Lanyard card: {atr:02X?}"
    );
    vpcd.control(1);
    let select = vpcd.select_piv();
    assert_eq!(select.sw, 0x9000, "SELECT PIV");
    assert_eq!(select.data.first(), Some(&0x61), "{:02X?}", select.data);

    // GET DATA of the PIV Authentication certificate: the token's certificate.
    let get = vpcd.transmit(&[
        0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x05, 0x00,
    ]);
    assert_eq!(get.sw, 0x9000, "GET DATA 5FC105");
    let container = tlv(&get.data, &[0x53]).expect("53 container");
    let piv_cert = tlv(container, &[0x70]).expect("70 certificate");
    assert_eq!(
        piv_cert,
        cert_der.as_slice(),
        "the same certificate as PKCS#11's"
    );

    let document = dir.path().join("document.txt");
    std::fs::write(&document, b"Rx: amoxicillin 500 mg, PC/SC\n").expect("write document");
    let block = pkcs1_block(&sha256_of(&document));
    assert_eq!(
        vpcd.sign_rsa(&block).sw,
        0x6982,
        "no signature before VERIFY"
    );

    // A wrong PIN through the reader is the token's counter.
    assert_eq!(vpcd.verify(Some("000000")), 0x63C2);
    assert_eq!(status_card(&daemon, &card_id)["pin_failures"], 1);
    assert_eq!(vpcd.verify(None), 0x63C2, "empty VERIFY: 2 tries left");
    assert_eq!(vpcd.verify(Some(pin)), 0x9000);
    assert_eq!(status_card(&daemon, &card_id)["pin_failures"], 0);
    assert_eq!(vpcd.verify(None), 0x9000, "empty VERIFY: verified");

    let signed = vpcd.sign_rsa(&block);
    assert_eq!(signed.sw, 0x9000, "GENERAL AUTHENTICATE 9A");
    let template = tlv(&signed.data, &[0x7C]).expect("7C template");
    let signature = tlv(template, &[0x82]).expect("82 signature");
    let sig_path = dir.path().join("sig.bin");
    std::fs::write(&sig_path, signature).expect("write signature");
    let public = public_key_of(&cert_pem, dir.path(), "card");
    verify_sha256(&public, &sig_path, &document)
        .assert_success("openssl verifies the PIV signature");

    // Key 9C, the document-signing key: the PIN right before every signature.
    let get = vpcd.transmit(&[
        0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x0A, 0x00,
    ]);
    assert_eq!(
        get.sw, 0x9000,
        "GET DATA 5FC10A (the card has a signing key)"
    );
    let container = tlv(&get.data, &[0x53]).expect("53 container");
    let signing_der = dir.path().join("signing.der");
    std::fs::write(
        &signing_der,
        tlv(container, &[0x70]).expect("70 certificate"),
    )
    .expect("write signing certificate");
    let signing_pem = dir.path().join("signing.pem");
    let mut cmd = Command::new("openssl");
    cmd.args(["x509", "-inform", "DER", "-in"])
        .arg(&signing_der)
        .arg("-out")
        .arg(&signing_pem);
    run(cmd, None, Duration::from_secs(30)).assert_success("openssl x509 -inform DER");
    assert_eq!(
        vpcd.sign_rsa_with(0x9C, &block).sw,
        0x6982,
        "9C without a fresh VERIFY"
    );
    assert_eq!(vpcd.verify(Some(pin)), 0x9000);
    let signed = vpcd.sign_rsa_with(0x9C, &block);
    assert_eq!(signed.sw, 0x9000, "GENERAL AUTHENTICATE 9C");
    let template = tlv(&signed.data, &[0x7C]).expect("7C template");
    std::fs::write(&sig_path, tlv(template, &[0x82]).expect("82 signature")).expect("write");
    let signing_public = public_key_of(&signing_pem, dir.path(), "signing");
    verify_sha256(&signing_public, &sig_path, &document)
        .assert_success("openssl verifies the 9C signature with the signing certificate");
    verify_sha256(&public, &sig_path, &document)
        .assert_failure("a 9C signature is not the authentication key's");
    assert_eq!(
        vpcd.sign_rsa_with(0x9C, &block).sw,
        0x6982,
        "one signature per VERIFY"
    );

    // Power off ends the card session (and the daemon login).
    vpcd.control(0);
    vpcd.control(1);
    assert_eq!(vpcd.select_piv().sw, 0x9000);
    assert_eq!(
        vpcd.sign_rsa(&block).sw,
        0x6982,
        "verified state gone after power off"
    );

    // A bad frame resets the link; the daemon keeps serving.
    assert!(vpcd.send(&[]));
    assert_eq!(vpcd.recv(), None, "the link closes after an empty frame");
    let (mut vpcd, _) = Vpcd::connect(port);
    vpcd.control(1);
    assert_eq!(vpcd.select_piv().sw, 0x9000);
    assert!(daemon.log().contains("bad vpcd frame"), "{}", daemon.log());

    // Suspended by the IT desk: the card leaves the reader, and comes back.
    lca.admin_json("suspend", &["--card", &card_id]);
    assert_eq!(
        vpcd.recv(),
        None,
        "the link closes when the card is suspended"
    );
    wait_for("vpcd to find the reader empty", || {
        Vpcd::try_connect(port).is_none().then_some(())
    });
    lca.admin_json("resume", &["--card", &card_id]);
    let (mut vpcd, _) = Vpcd::connect(port);

    // Three wrong PINs through the reader lock the card for PKCS#11 too.
    vpcd.control(1);
    assert_eq!(vpcd.select_piv().sw, 0x9000);
    for sw in [0x63C2, 0x63C1, 0x63C0] {
        assert_eq!(vpcd.verify(Some("000000")), sw);
    }
    assert_eq!(vpcd.verify(Some(pin)), 0x6983, "blocked");
    let login = daemon.pkcs11_tool().run(&[
        "--slot",
        &card.slot.to_string(),
        "--login",
        "--pin",
        pin,
        "-O",
    ]);
    assert!(
        !login.success() && login.combined().contains("CKR_PIN_LOCKED"),
        "the PKCS#11 token is locked too\n{login}"
    );
    let log = daemon.log();
    assert!(!log.contains(pin), "the PIN is in the daemon's log");
}

/// A `lanyardd` command with its own directories under `dir` and `config`.
fn lanyardd_in(dir: &Path, args: &[&str], config: Option<&str>, owned: bool) -> Command {
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).expect("mkdir run");
    std::fs::set_permissions(
        &run_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod run");
    let config_dir = dir.join("config").join("lanyard");
    std::fs::create_dir_all(&config_dir).expect("mkdir config");
    let config_file = config_dir.join("lanyardd.toml");
    match config {
        Some(text) => std::fs::write(&config_file, text).expect("write config"),
        None => {
            let _ = std::fs::remove_file(&config_file);
        }
    }
    let mut cmd = if owned {
        owned_command(bin_path("lanyardd"))
    } else {
        Command::new(bin_path("lanyardd"))
    };
    cmd.args(args)
        .env("LANYARD_AGENT_SOCK", run_dir.join("agent.sock"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    cmd
}

/// Runs `lanyardd` with `args` and `config` in `dir`; it must stop by itself.
fn lanyardd_refusing(dir: &Path, args: &[&str], config: Option<&str>) -> String {
    let cmd = lanyardd_in(dir, args, config, false);
    let out = run(cmd, None, Duration::from_secs(30));
    assert!(!out.success(), "lanyardd {args:?} started\n{out}");
    out.combined()
}

/// LISTEN sockets (local address, port) of `pid` from /proc/net/tcp{,6};
/// `None` when its descriptors cannot be read (then all LISTEN sockets on `port`).
fn listening(pid: u32, port: u16) -> (bool, Vec<(String, u16)>) {
    let inodes: Option<Vec<String>> =
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|fds| {
                fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter_map(|l| {
                        let l = l.to_string_lossy().into_owned();
                        Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                    })
                    .collect()
            });
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            let p = u16::from_str_radix(p, 16).unwrap_or(0);
            let ours = match &inodes {
                Some(set) => set.iter().any(|i| i == inode),
                None => p == port,
            };
            if *state == "0A" && ours {
                found.push((addr.to_string(), p));
            }
        }
    }
    (inodes.is_some(), found)
}

/// Whether a /proc/net/tcp{,6} hex address is loopback (127.0.0.0/8 or ::1).
fn is_loopback_hex(addr: &str) -> bool {
    match addr.len() {
        // IPv4, little-endian on x86/arm: the last byte pair is the first octet.
        8 => addr.ends_with("7F"),
        32 => {
            addr == "00000000000000000000000001000000"
                || (addr.starts_with("0000000000000000FFFF0000") && addr.ends_with("7F"))
        }
        _ => false,
    }
}

#[test]
fn the_daemon_listens_for_vpcd_on_loopback_only() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let port = free_port();
    for addr in [
        format!("0.0.0.0:{port}"),
        format!("[::]:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        let out = lanyardd_refusing(dir.path(), &["--vpcd-listen", &addr], None);
        assert!(
            out.contains("not on loopback"),
            "--vpcd-listen {addr}\n{out}"
        );
    }
    let out = lanyardd_refusing(
        dir.path(),
        &[],
        Some(&format!("[pcsc]\nvpcd_listen = \"0.0.0.0:{port}\"\n")),
    );
    assert!(
        out.contains("not on loopback"),
        "[pcsc] vpcd_listen = 0.0.0.0\n{out}"
    );
    // A port already taken: a clear start-up error, not a daemon without its reader.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = format!("127.0.0.1:{}", taken.local_addr().expect("addr").port());
    let out = lanyardd_refusing(dir.path(), &["--vpcd-listen", &busy], None);
    assert!(out.contains("cannot listen for vpcd"), "{out}");
    drop(taken);
    let out = lanyardd_refusing(dir.path(), &["--vpcd", "nohostport"], None);
    assert!(out.contains("HOST:PORT"), "{out}");

    // A running daemon with the reader on: every socket it listens on is loopback.
    let daemon = Daemon::builder().config(&vpcd_config(port)).start();
    let pid = daemon.pid().expect("daemon pid");
    let (per_process, sockets) = listening(pid, port);
    assert!(
        sockets.iter().any(|(_, p)| *p == port),
        "lanyardd listens on {port} (by descriptors: {per_process}): {sockets:?}"
    );
    for (addr, p) in &sockets {
        assert!(
            is_loopback_hex(addr),
            "lanyardd listens on {addr}:{p}, not loopback"
        );
    }

    // The flags: --vpcd-listen serves an empty reader (no card enrolled:
    // each connection closed at once); --vpcd warns that vpcd then listens openly.
    let flags = scratch();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log_path = flags.path().join("listen.log");
    let mut cmd = lanyardd_in(
        &flags.path().join("a"),
        &["--vpcd-listen", &listen],
        None,
        true,
    );
    cmd.stderr(std::fs::File::create(&log_path).expect("log file"));
    let mut child = spawn_owned(cmd).expect("start lanyardd --vpcd-listen");
    wait_for(
        "lanyardd --vpcd-listen to accept and close (no card)",
        || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = s.write_all(&[0, 1, 4]);
            let mut b = [0u8; 2];
            matches!(s.read(&mut b), Ok(0) | Err(_)).then_some(())
        },
    );
    stop_child(&mut child, Duration::from_secs(10));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log.contains("reversed mode"), "{log}");

    let log_path = flags.path().join("connect.log");
    let mut cmd = lanyardd_in(&flags.path().join("b"), &["--vpcd", &listen], None, true);
    cmd.stderr(std::fs::File::create(&log_path).expect("log file"));
    let mut child = spawn_owned(cmd).expect("start lanyardd --vpcd");
    wait_for("lanyardd --vpcd to warn", || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        (log.contains("WARN") && log.contains("firewall that port")).then_some(())
    });
    stop_child(&mut child, Duration::from_secs(10));
}
