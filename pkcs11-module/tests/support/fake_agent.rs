//! A fake lanyardd for the module's own tests: it speaks agent.proto on a
//! Unix socket and signs with real OpenSSL keys, so the module's protocol
//! handling (handshake, errors, restarts, round-trip counts) can be checked
//! without the real daemon. Tests can take a card away and put it back,
//! suspend, revoke, expire and resume it, or renew it with a new key, as the
//! CA's lifecycle does to the real one. Whole-system tests use the real lanyardd.

use std::collections::HashSet;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use lanyard_proto::agent::*;
use lanyard_proto::frame::{read_frame, write_frame};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::RsaPssSaltlen;
use openssl::x509::{X509NameBuilder, X509};

/// One card of the fake daemon.
pub struct FakeCard {
    pub info: CardInfo,
    pub key: PKey<Private>,
    pub pin: String,
    pub failures: u32,
    /// As the CA last told the daemon. Suspended and revoked cards are left
    /// out of ListCards; Login and Sign on them (and on expired ones) get the
    /// matching error, as lanyardd answers.
    pub status: CardStatus,
    /// The document-signing key (see [`FakeAgent::add_signing_key`]): Sign
    /// with KEY_ROLE_SIGNING uses it, and only with `context_pin` = the PIN.
    pub signing_key: Option<PKey<Private>>,
}

/// The fake daemon's state, visible to tests.
pub struct FakeState {
    pub instance: Vec<u8>,
    pub slot_count: u32,
    pub cards: Vec<FakeCard>,
    /// (app_id, card_id) pairs logged in.
    pub logins: HashSet<(Vec<u8>, String)>,
    /// Every request received, in order.
    pub requests: Vec<Received>,
    /// Every Sign request, for checking what the module sent.
    pub signs: Vec<Sign>,
    pub connections: Vec<UnixStream>,
    /// Connections accepted so far (numbers them).
    pub accepted: u64,
    /// ListCards answers ERROR_CODE_INTERNAL while set.
    pub fail_list: bool,
    /// While set, a Sign request is never answered: the daemon dies and a
    /// new instance takes its place on the same socket (as a crash under
    /// systemd socket activation), forgetting every login.
    pub crash_on_sign: bool,
    /// Hello says protected-authentication-path mode (protected_path = true).
    pub protected_path: bool,
    /// How a protected login (Login.protected) is answered: logged in when
    /// `None` (the card unlocked, or the right PIN at the prompt), else this error.
    pub protected_answer: Option<ErrorCode>,
    /// The card ids of the protected logins received.
    pub protected_logins: Vec<String>,
    /// Protected mode with the cards unlocked (`lanyard unlock`): every
    /// application sees them logged in and may sign without a login.
    pub unlocked: bool,
}

/// One request as the fake daemon received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// "Hello", "ListCards", "Sign", ...
    pub name: &'static str,
    pub app_id: Vec<u8>,
    /// The connection it came on (numbered from 1 as accepted).
    pub connection: u64,
    /// The encoded request's size in bytes.
    pub size: usize,
    /// The Hello's client string ("lanyard-pkcs11 VERSION pid PID").
    pub client: Option<String>,
}

/// A running fake agent. Dropping it stops it.
pub struct FakeAgent {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub state: Arc<Mutex<FakeState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    /// Starts an agent with an RSA card in slot 0 and an EC card in slot 1.
    pub fn start() -> FakeAgent {
        let dir = std::env::temp_dir().join(format!(
            "lanyard-p11-test-{}-{}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("agent.sock");
        let state = Arc::new(Mutex::new(FakeState {
            instance: rand_u64().to_be_bytes().to_vec(),
            slot_count: 2,
            cards: vec![
                make_card(
                    0,
                    "0123456789ABCDEF",
                    "Dr Ada Smith",
                    KeyType::Rsa2048,
                    "123456",
                ),
                make_card(
                    1,
                    "FEDCBA9876543210",
                    "Dr Bob Jones",
                    KeyType::EcP256,
                    "654321",
                ),
            ],
            logins: HashSet::new(),
            requests: Vec::new(),
            signs: Vec::new(),
            connections: Vec::new(),
            accepted: 0,
            fail_list: false,
            crash_on_sign: false,
            protected_path: false,
            protected_answer: None,
            protected_logins: Vec::new(),
            unlocked: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = Some(serve(&path, Arc::clone(&state), Arc::clone(&stop)));
        FakeAgent {
            dir,
            path,
            state,
            stop,
            thread,
        }
    }

    /// Simulates a daemon restart: new instance, logins forgotten, open
    /// connections closed.
    pub fn restart(&self) {
        self.state.lock().unwrap().restart();
    }

    /// Stops the daemon for good: the socket is gone, connections are
    /// closed. [`FakeAgent::come_back`] starts a new instance on the same path.
    pub fn go_down(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.state.lock().unwrap().restart();
        let _ = std::fs::remove_file(&self.path);
    }

    /// A new daemon instance on the same socket path, with the same cards
    /// and no logins (after [`FakeAgent::go_down`]).
    pub fn come_back(&mut self) {
        assert!(self.thread.is_none(), "the fake agent is still up");
        self.state.lock().unwrap().restart();
        self.stop = Arc::new(AtomicBool::new(false));
        self.thread = Some(serve(
            &self.path,
            Arc::clone(&self.state),
            Arc::clone(&self.stop),
        ));
    }

    /// Closes every open connection without restarting (as a daemon closing
    /// idle connections would): logins stay.
    pub fn drop_connections(&self) {
        for c in self.state.lock().unwrap().connections.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Removes the card in `slot` (as a revocation would).
    pub fn take_card(&self, slot: u32) -> FakeCard {
        let mut s = self.state.lock().unwrap();
        let i = s
            .cards
            .iter()
            .position(|c| c.info.slot == slot)
            .expect("card in slot");
        s.cards.remove(i)
    }

    /// Puts a card back (as an enrolment would).
    pub fn put_card(&self, card: FakeCard) {
        self.state.lock().unwrap().cards.push(card);
    }

    /// Sets the CA status of the card in `slot` (suspend, revoke, expire,
    /// resume). Logins are left as they are: whether a suspension ends them
    /// is the daemon's business, and the module must cope either way.
    pub fn set_status(&self, slot: u32, status: CardStatus) {
        self.state.lock().unwrap().card(slot).status = status;
    }

    /// Renews the card in `slot` with re-key: a new key pair of the same
    /// type and a new certificate, same card id and slot; logins stay.
    pub fn renew(&self, slot: u32) {
        let old = self.card_info(slot as usize);
        let key_type = KeyType::try_from(old.key_type).expect("key type");
        // Made outside the lock: RSA generation is slow.
        let key = new_key(key_type);
        let info = card_info(slot, &old.card_id, &old.holder_name, key_type, &key);
        let mut s = self.state.lock().unwrap();
        let card = s.card(slot);
        card.info = info;
        card.key = key;
    }

    /// Gives the card in `slot` a document-signing key of its key type and a
    /// certificate for it, listed in CardInfo.signing_key.
    pub fn add_signing_key(&self, slot: u32) {
        let info = self.card_info(slot as usize);
        let key_type = KeyType::try_from(info.key_type).expect("key type");
        let key = new_key(key_type);
        let signing = card_info(slot, &info.card_id, &info.holder_name, key_type, &key);
        let signing_info = SigningKeyInfo {
            certificate_der: signing.certificate_der,
            public_key_der: signing.public_key_der,
            rsa_modulus: signing.rsa_modulus,
            rsa_public_exponent: signing.rsa_public_exponent,
            ec_params: signing.ec_params,
            ec_point: signing.ec_point,
            key_bits: signing.key_bits,
            subject_der: signing.subject_der,
            issuer_der: signing.issuer_der,
            serial_der: signing.serial_der,
            key_id: signing.key_id,
            not_after: signing.not_after,
        };
        let mut s = self.state.lock().unwrap();
        let card = s.card(slot);
        card.info.signing_key = Some(signing_info);
        card.signing_key = Some(key);
    }

    /// Every Sign request received so far.
    pub fn signs(&self) -> Vec<Sign> {
        self.state.lock().unwrap().signs.clone()
    }

    /// What the module asked the daemon to sign last.
    pub fn last_signed(&self) -> Vec<u8> {
        let s = self.state.lock().unwrap();
        s.signs.last().expect("a Sign request").data.clone()
    }

    /// Number of requests named `name` received so far.
    pub fn count(&self, name: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.name == name)
            .count()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The SubjectPublicKeyInfo of the card in `slot`.
    pub fn public_key_der(&self, slot: usize) -> Vec<u8> {
        self.card_info(slot).public_key_der
    }

    /// The CardInfo of the card in `slot` (as listed when active).
    pub fn card_info(&self, slot: usize) -> CardInfo {
        let slot = u32::try_from(slot).expect("slot number");
        self.state.lock().unwrap().card(slot).info.clone()
    }
}

impl FakeState {
    /// A new daemon instance: logins forgotten, open connections closed.
    fn restart(&mut self) {
        self.instance = rand_u64().to_be_bytes().to_vec();
        self.logins.clear();
        for c in self.connections.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// The card in `slot`; the test is wrong if there is none.
    pub fn card(&mut self, slot: u32) -> &mut FakeCard {
        self.cards
            .iter_mut()
            .find(|c| c.info.slot == slot)
            .expect("card in slot")
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.state.lock().unwrap().connections.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_ne_bytes(b)
}

fn serve(path: &Path, state: Arc<Mutex<FakeState>>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("bind fake agent socket");
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let number = {
                        let mut s = state.lock().unwrap();
                        s.connections.push(stream.try_clone().unwrap());
                        s.accepted += 1;
                        s.accepted
                    };
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || connection(stream, number, state));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    })
}

fn connection(mut stream: UnixStream, number: u64, state: Arc<Mutex<FakeState>>) {
    while let Ok(req) = read_frame::<Request, _>(&mut stream) {
        let Some(resp) = handle(&state, number, req) else {
            // Crashed: no answer, and every connection is closed.
            return;
        };
        if write_frame(&mut stream, &resp).is_err() {
            return;
        }
    }
}

/// The name a request is logged under.
fn name(body: &request::Body) -> &'static str {
    match body {
        request::Body::Hello(_) => "Hello",
        request::Body::ListCards(_) => "ListCards",
        request::Body::Login(_) => "Login",
        request::Body::Logout(_) => "Logout",
        request::Body::Sign(_) => "Sign",
        request::Body::ChangePin(_) => "ChangePin",
        _ => "Other",
    }
}

fn error(request_id: u64, code: ErrorCode, tries_left: u32) -> Response {
    Response {
        request_id,
        error: Some(Error {
            code: code as i32,
            message: format!("{code:?}"),
            tries_left,
        }),
        body: None,
    }
}

/// The answer to one request; `None` when the daemon crashed on it.
fn handle(state: &Mutex<FakeState>, connection: u64, req: Request) -> Option<Response> {
    let mut s = state.lock().unwrap();
    let size = prost::Message::encoded_len(&req);
    let Some(body) = &req.body else {
        return Some(error(req.request_id, ErrorCode::BadRequest, 0));
    };
    s.requests.push(Received {
        name: name(body),
        app_id: req.app_id.clone(),
        connection,
        size,
        client: match body {
            request::Body::Hello(h) => Some(h.client.clone()),
            _ => None,
        },
    });
    if s.crash_on_sign && matches!(body, request::Body::Sign(_)) {
        s.restart();
        return None;
    }
    Some(answer(&mut s, req))
}

fn answer(s: &mut FakeState, req: Request) -> Response {
    let id = req.request_id;
    let ok = |body| Response {
        request_id: id,
        error: None,
        body: Some(body),
    };
    let Some(body) = req.body else {
        return error(id, ErrorCode::BadRequest, 0);
    };
    match body {
        request::Body::Hello(_) => ok(response::Body::Hello(HelloReply {
            version: ProtocolVersion::ProtocolVersion1 as i32,
            daemon_instance: s.instance.clone(),
            slot_count: s.slot_count,
            daemon_version: "fake".into(),
            protected_path: s.protected_path,
        })),
        request::Body::ListCards(_) => {
            if s.fail_list {
                return error(id, ErrorCode::Internal, 0);
            }
            let cards = s
                .cards
                .iter()
                .filter(|c| !matches!(c.status, CardStatus::Suspended | CardStatus::Revoked))
                .map(|c| {
                    let mut info = c.info.clone();
                    info.lifecycle = Some(Lifecycle {
                        status: c.status as i32,
                        ..Lifecycle::default()
                    });
                    info.logged_in = s.unlocked
                        || s.logins
                            .contains(&(req.app_id.clone(), info.card_id.clone()));
                    info.pin = Some(PinState {
                        failures: c.failures,
                        max_failures: 3,
                        locked: c.failures >= 3,
                    });
                    info
                })
                .collect();
            ok(response::Body::Cards(CardList { cards }))
        }
        request::Body::Login(l) => {
            let Some(i) = s.cards.iter().position(|c| c.info.card_id == l.card_id) else {
                return error(id, ErrorCode::NoSuchCard, 0);
            };
            if let Some(code) = refusal(s.cards[i].status) {
                return error(id, code, 0);
            }
            if l.protected {
                // As lanyardd: only in protected mode, the PIN never from the app.
                if !s.protected_path || !l.pin.is_empty() {
                    return error(id, ErrorCode::BadRequest, 0);
                }
                s.protected_logins.push(l.card_id.clone());
                return match s.protected_answer {
                    Some(ErrorCode::PinIncorrect) => error(id, ErrorCode::PinIncorrect, 2),
                    Some(code) => error(id, code, 0),
                    None => {
                        s.logins.insert((req.app_id.clone(), l.card_id));
                        ok(response::Body::Login(LoginReply {}))
                    }
                };
            }
            if !(6..=8).contains(&l.pin.len()) {
                return error(id, ErrorCode::PinLenRange, 0);
            }
            let card = &mut s.cards[i];
            if card.failures >= 3 {
                return error(id, ErrorCode::PinLocked, 0);
            }
            if card.pin != l.pin {
                card.failures += 1;
                if card.failures >= 3 {
                    return error(id, ErrorCode::PinLocked, 0);
                }
                return error(id, ErrorCode::PinIncorrect, 3 - card.failures);
            }
            card.failures = 0;
            s.logins.insert((req.app_id.clone(), l.card_id));
            ok(response::Body::Login(LoginReply {}))
        }
        request::Body::Logout(l) => {
            s.logins.remove(&(req.app_id.clone(), l.card_id));
            ok(response::Body::Logout(LogoutReply {}))
        }
        request::Body::Sign(sign) => {
            s.signs.push(sign.clone());
            let status = s
                .cards
                .iter()
                .find(|c| c.info.card_id == sign.card_id)
                .map(|c| c.status);
            if let Some(code) = status.and_then(refusal) {
                return error(id, code, 0);
            }
            if !s.unlocked
                && !s
                    .logins
                    .contains(&(req.app_id.clone(), sign.card_id.clone()))
            {
                return error(id, ErrorCode::NotLoggedIn, 0);
            }
            let Some(card) = s.cards.iter_mut().find(|c| c.info.card_id == sign.card_id) else {
                return error(id, ErrorCode::NoSuchCard, 0);
            };
            let key = if sign.key == KeyRole::Signing as i32 {
                // PIN-always: the context PIN is checked and counted every time.
                let Some(key) = card.signing_key.clone() else {
                    return error(id, ErrorCode::BadRequest, 0);
                };
                if sign.context_pin.is_empty() {
                    return error(id, ErrorCode::NotLoggedIn, 0);
                }
                if sign.context_pin != card.pin {
                    card.failures += 1;
                    return error(id, ErrorCode::PinIncorrect, 3 - card.failures.min(3));
                }
                card.failures = 0;
                key
            } else {
                card.key.clone()
            };
            match sign_with(&key, &sign) {
                Some(signature) => ok(response::Body::Signature(Signature { signature })),
                None => error(id, ErrorCode::DataLenRange, 0),
            }
        }
        request::Body::ChangePin(c) => {
            let Some(card) = s.cards.iter_mut().find(|x| x.info.card_id == c.card_id) else {
                return error(id, ErrorCode::NoSuchCard, 0);
            };
            if card.pin != c.old_pin {
                return error(id, ErrorCode::PinIncorrect, 2);
            }
            card.pin = c.new_pin;
            ok(response::Body::ChangePin(ChangePinReply {}))
        }
        _ => error(id, ErrorCode::BadRequest, 0),
    }
}

/// The error lanyardd answers Login and Sign with for a card in `status`.
fn refusal(status: CardStatus) -> Option<ErrorCode> {
    match status {
        CardStatus::Suspended => Some(ErrorCode::CardSuspended),
        CardStatus::Revoked => Some(ErrorCode::CardRevoked),
        CardStatus::Expired => Some(ErrorCode::CardExpired),
        CardStatus::Active | CardStatus::Unspecified => None,
    }
}

fn md(h: i32) -> Option<&'static openssl::md::MdRef> {
    Some(match HashAlgorithm::try_from(h).ok()? {
        HashAlgorithm::Sha1 => Md::sha1(),
        HashAlgorithm::Sha224 => Md::sha224(),
        HashAlgorithm::Sha256 => Md::sha256(),
        HashAlgorithm::Sha384 => Md::sha384(),
        HashAlgorithm::Sha512 => Md::sha512(),
        HashAlgorithm::Unspecified => return None,
    })
}

fn sign_with(key: &PKey<Private>, req: &Sign) -> Option<Vec<u8>> {
    match SignAlgorithm::try_from(req.algorithm).ok()? {
        SignAlgorithm::RsaPkcs1 => {
            let rsa = key.rsa().ok()?;
            let mut out = vec![0u8; rsa.size() as usize];
            let n = rsa
                .private_encrypt(&req.data, &mut out, Padding::PKCS1)
                .ok()?;
            out.truncate(n);
            Some(out)
        }
        SignAlgorithm::RsaPss => {
            let mut ctx = PkeyCtx::new(key).ok()?;
            ctx.sign_init().ok()?;
            ctx.set_rsa_padding(Padding::PKCS1_PSS).ok()?;
            ctx.set_signature_md(md(req.hash)?).ok()?;
            ctx.set_rsa_mgf1_md(md(req.mgf_hash)?).ok()?;
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(req.salt_len as i32))
                .ok()?;
            let mut out = Vec::new();
            ctx.sign_to_vec(&req.data, &mut out).ok()?;
            Some(out)
        }
        SignAlgorithm::Ecdsa => {
            let ec = key.ec_key().ok()?;
            let sig = EcdsaSig::sign(&req.data, &ec).ok()?;
            let mut out = sig.r().to_vec_padded(32).ok()?;
            out.extend(sig.s().to_vec_padded(32).ok()?);
            Some(out)
        }
        SignAlgorithm::Unspecified => None,
    }
}

fn self_signed(key: &PKey<Private>, cn: &str) -> (Vec<u8>, Vec<u8>) {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    let serial = BigNum::from_u32(rand_u64() as u32 | 1).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    (cert.to_der().unwrap(), name.to_der().unwrap())
}

/// Keys made once per test process (RSA generation is slow): RSA card, EC
/// card, CA.
fn keys() -> &'static (PKey<Private>, PKey<Private>, PKey<Private>) {
    static KEYS: std::sync::OnceLock<(PKey<Private>, PKey<Private>, PKey<Private>)> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        (
            PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap(),
            PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        )
    })
}

/// A fresh key pair of `key_type`.
fn new_key(key_type: KeyType) -> PKey<Private> {
    match key_type {
        KeyType::EcP256 => {
            let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap()
        }
        _ => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
    }
}

fn make_card(slot: u32, card_id: &str, holder: &str, key_type: KeyType, pin: &str) -> FakeCard {
    let (rsa, ec, _) = keys();
    let key = match key_type {
        KeyType::EcP256 => ec.clone(),
        _ => rsa.clone(),
    };
    let info = card_info(slot, card_id, holder, key_type, &key);
    FakeCard {
        info,
        key,
        pin: pin.into(),
        failures: 0,
        status: CardStatus::Active,
        signing_key: None,
    }
}

/// What the daemon lists for a card with `key` (a new self-signed
/// certificate each time, so a renewal changes it).
fn card_info(
    slot: u32,
    card_id: &str,
    holder: &str,
    key_type: KeyType,
    key: &PKey<Private>,
) -> CardInfo {
    let (_, _, ca_key) = keys();
    let (cert, subject) = self_signed(key, holder);
    let (issuing, _) = self_signed(ca_key, "Fake Issuing CA");
    let (root, _) = self_signed(ca_key, "Fake Root CA");
    let spki = key.public_key_to_der().unwrap();
    let mut info = CardInfo {
        card_id: card_id.into(),
        slot,
        holder_name: holder.into(),
        key_type: key_type as i32,
        certificate_der: cert,
        chain_der: vec![issuing, root],
        public_key_der: spki.clone(),
        key_id: openssl::sha::sha1(&spki).to_vec(),
        subject_der: subject.clone(),
        issuer_der: subject,
        serial_der: vec![2, 1, 1],
        pin_min_len: 6,
        pin_max_len: 8,
        subject: format!("CN={holder}"),
        ..Default::default()
    };
    match key_type {
        KeyType::EcP256 => {
            let ec = key.ec_key().unwrap();
            let mut ctx = openssl::bn::BigNumContext::new().unwrap();
            let point = ec
                .public_key()
                .to_bytes(
                    ec.group(),
                    openssl::ec::PointConversionForm::UNCOMPRESSED,
                    &mut ctx,
                )
                .unwrap();
            let mut octet = vec![0x04, point.len() as u8];
            octet.extend(point);
            info.ec_point = octet;
            info.ec_params = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
            info.key_bits = 256;
        }
        _ => {
            let rsa = key.rsa().unwrap();
            info.rsa_modulus = rsa.n().to_vec();
            info.rsa_public_exponent = rsa.e().to_vec();
            info.key_bits = 2048;
        }
    }
    info
}
