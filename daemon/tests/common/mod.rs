//! Helpers for the daemon's integration tests: a lanyardd binary on a temp
//! socket and store, a card put straight into the store (with or without a
//! CA on record), a blocking agent client speaking frames, and a mock CA.
#![allow(dead_code)]

pub mod mock_ca;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lanyard_daemon::card_crypto::KdfParams;
use lanyard_daemon::card_store::{testing, CardStore, NewCard};
use lanyard_daemon::keys::{KeyType, SigningKey};
use lanyard_daemon::pin::Pin;
use lanyard_proto::agent::{
    request, response, CardInfo, Hello, HelloReply, ListCards, Login, ProtocolVersion, Request,
    Response, Sign,
};
use lanyard_proto::frame::{read_frame, write_frame};

pub const LANYARDD: &str = env!("CARGO_BIN_EXE_lanyardd");
pub const LANYARD: &str = env!("CARGO_BIN_EXE_lanyard");
pub const PIN: &str = "123456";

/// Small Argon2id cost so tests stay quick on shared machines.
pub const FAST_KDF: KdfParams = KdfParams::FOR_TESTS;

/// A temp home for one daemon: data, config and socket directories.
pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    pub socket: PathBuf,
    pub daemon: Option<Child>,
    /// Extra environment for lanyardd and the CLI (e.g. GPG_TTY).
    pub env: Vec<(String, String)>,
}

impl TestEnv {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("run").join("agent.sock");
        let cfg = tmp.path().join("config").join("lanyard");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(
            cfg.join("lanyardd.toml"),
            "argon2_memory_kib = 64\nargon2_iterations = 1\nlog_level = \"debug\"\n",
        )
        .unwrap();
        TestEnv {
            tmp,
            socket,
            daemon: None,
            env: Vec::new(),
        }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.tmp.path().join("data").join("lanyard")
    }

    pub fn log_path(&self) -> PathBuf {
        self.tmp.path().join("lanyardd.log")
    }

    /// Puts a card in the store directly (as tests may, without a CA).
    pub fn add_card(&self, card_id: &str, slot: u32, key_type: KeyType) -> Vec<u8> {
        let store = CardStore::open(&self.store_dir(), FAST_KDF).unwrap();
        let key = SigningKey::generate(key_type).unwrap();
        let public = key.public_key_der().unwrap();
        let new = testing::self_signed_card(card_id, slot, "Dr Ada Smith", key).unwrap();
        store.create(&new, &Pin::new(PIN.into())).unwrap();
        public
    }

    /// Appends lines to lanyardd.toml (before the daemon starts).
    pub fn config_extra(&self, text: &str) {
        use std::io::Write;
        let path = self.tmp.path().join("config/lanyard/lanyardd.toml");
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Puts a card issued by `ca` in the store, its certificate valid from
    /// `not_before` (Unix seconds) for `lifetime` seconds, with `url` and the
    /// CA's root on record. Returns the card's public key (SPKI DER).
    #[allow(clippy::too_many_arguments)]
    pub fn add_ca_card(
        &self,
        card_id: &str,
        slot: u32,
        key_type: KeyType,
        ca: &mock_ca::MockCa,
        url: &str,
        not_before: i64,
        lifetime: i64,
    ) -> Vec<u8> {
        let store = CardStore::open(&self.store_dir(), FAST_KDF).unwrap();
        let key = SigningKey::generate(key_type).unwrap();
        let public = key.public_key_der().unwrap();
        let pkey = openssl::pkey::PKey::public_key_from_der(&public).unwrap();
        let new = NewCard {
            card_id: card_id.into(),
            slot,
            holder_name: "Dr Ada Smith".into(),
            user_id: "555123456789".into(),
            role: "R8000 Clinical Practitioner".into(),
            key,
            certificate_der: ca.pki.issue_card(&pkey, not_before, lifetime),
            chain_der: ca.pki.chain(),
            ca_url: url.into(),
            ca_cert_pem: ca.root_pem_text(),
            signing: None,
        };
        let mut file = store.create(&new, &Pin::new(PIN.into())).unwrap();
        // As if the card had been stored when its certificate was issued.
        file.lifecycle.installed = not_before;
        store.save(&file).unwrap();
        public
    }

    /// The card file as JSON.
    pub fn card_file(&self, card_id: &str) -> serde_json::Value {
        let path = self
            .store_dir()
            .join("cards")
            .join(format!("{card_id}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// `lanyard status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.lanyard(&["status", "--json"], "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.env("XDG_DATA_HOME", self.tmp.path().join("data"))
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
            .env("LANYARD_AGENT_SOCK", &self.socket)
            .env_remove("RUST_LOG")
            .env_remove("GPG_TTY")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Starts lanyardd and waits until it answers.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = self
            .command(LANYARDD)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "lanyardd exited with {status}: {}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("lanyardd did not come up");
    }

    /// Stops lanyardd with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            assert!(status.success(), "lanyardd exit status {status}");
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs the `lanyard` CLI with `stdin` piped in.
    pub fn lanyard(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(LANYARD)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A CLI that refuses its arguments exits before reading stdin: a
        // broken pipe here is not the test's failure (its exit status is).
        let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        child.wait_with_output().unwrap()
    }

    pub fn client(&self, app: u8) -> Client {
        Client::connect(&self.socket, app)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking agent connection with a fixed app id.
pub struct Client {
    pub stream: UnixStream,
    pub app_id: Vec<u8>,
    next: u64,
}

impl Client {
    /// Connects without Hello.
    pub fn raw(path: &Path, app: u8) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            stream,
            app_id: vec![app; 16],
            next: 1,
        }
    }

    /// Connects and says Hello.
    pub fn connect(path: &Path, app: u8) -> Self {
        let mut c = Self::raw(path, app);
        c.hello();
        c
    }

    /// Says Hello (protocol version 1) and returns the daemon's reply.
    pub fn hello(&mut self) -> HelloReply {
        match self.call(request::Body::Hello(Hello {
            version: ProtocolVersion::ProtocolVersion1 as i32,
            client: "daemon integration test".into(),
        })) {
            Response {
                body: Some(response::Body::Hello(h)),
                ..
            } => h,
            other => panic!("not a Hello reply: {other:?}"),
        }
    }

    pub fn call(&mut self, body: request::Body) -> Response {
        let id = self.next;
        self.next += 1;
        let req = Request {
            request_id: id,
            app_id: self.app_id.clone(),
            body: Some(body),
        };
        write_frame(&mut self.stream, &req).unwrap();
        let resp: Response = read_frame(&mut self.stream).unwrap();
        assert_eq!(resp.request_id, id);
        resp
    }

    pub fn login(&mut self, card: &str, pin: &str) -> Response {
        self.call(request::Body::Login(Login {
            card_id: card.into(),
            pin: pin.into(),
            protected: false,
        }))
    }

    /// C_Login with a NULL PIN in protected-authentication-path mode.
    pub fn protected_login(&mut self, card: &str) -> Response {
        self.call(request::Body::Login(Login {
            card_id: card.into(),
            pin: String::new(),
            protected: true,
        }))
    }

    pub fn list_cards(&mut self) -> Vec<CardInfo> {
        match self.call(request::Body::ListCards(ListCards {})) {
            Response {
                body: Some(response::Body::Cards(list)),
                ..
            } => list.cards,
            other => panic!("not a card list: {other:?}"),
        }
    }

    pub fn sign(&mut self, card: &str, algorithm: i32, data: &[u8]) -> Response {
        self.call(request::Body::Sign(Sign {
            card_id: card.into(),
            algorithm,
            data: data.to_vec(),
            ..Sign::default()
        }))
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `check` every 100 ms until it is true or `secs` pass (a generous
/// deadline, not a timing assertion).
pub fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// The error code of a response (0 if none).
pub fn code(r: &Response) -> i32 {
    r.error.as_ref().map(|e| e.code).unwrap_or(0)
}

pub fn tries_left(r: &Response) -> u32 {
    r.error.as_ref().map(|e| e.tries_left).unwrap_or(99)
}

pub fn signature(r: &Response) -> Vec<u8> {
    match &r.body {
        Some(response::Body::Signature(s)) => s.signature.clone(),
        other => panic!("not a signature: {other:?} {:?}", r.error),
    }
}

/// Whether `client`'s login to `card` signs a fresh document so that
/// `public_der` (SPKI) verifies it (RSA PKCS#1 v1.5 / ECDSA, SHA-256).
pub fn signs_with(client: &mut Client, card: &str, public_der: &[u8]) -> bool {
    use lanyard_proto::agent::SignAlgorithm;
    use openssl::hash::{hash, MessageDigest};
    let msg = b"a clinical document";
    let digest = hash(MessageDigest::sha256(), msg).unwrap();
    let key = openssl::pkey::PKey::public_key_from_der(public_der).unwrap();
    if key.id() == openssl::pkey::Id::EC {
        let resp = client.sign(card, SignAlgorithm::Ecdsa as i32, &digest);
        let sig = signature(&resp);
        let es = openssl::ecdsa::EcdsaSig::from_private_components(
            openssl::bn::BigNum::from_slice(&sig[..32]).unwrap(),
            openssl::bn::BigNum::from_slice(&sig[32..]).unwrap(),
        )
        .unwrap();
        es.verify(&digest, &key.ec_key().unwrap()).unwrap()
    } else {
        let mut di = hex::decode("3031300d060960864801650304020105000420").unwrap();
        di.extend_from_slice(&digest);
        let sig = signature(&client.sign(card, SignAlgorithm::RsaPkcs1 as i32, &di));
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &key).unwrap();
        v.update(msg).unwrap();
        v.verify(&sig).unwrap_or(false)
    }
}
