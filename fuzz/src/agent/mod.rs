//! The fuzzing agent: a Unix socket in this process that answers every
//! request of the agent protocol (lanyard-proto frames) with a well-formed
//! response the current script chooses: the matching reply, an error with
//! any code, now and then a wrong request id or another message. Not a
//! daemon: it exists so a fuzz target reaches the code behind a connection.

mod cards;
mod script;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use lanyard_proto::agent::{
    request, response, CardList, ChangePinReply, Error, HelloReply, LoginReply, LogoutReply,
    ProtocolVersion, Request, Response, Signature, StatusReply,
};
use lanyard_proto::frame::{read_frame, write_frame};

pub use cards::Material;
pub use script::Script;

/// A listening agent; its threads live as long as the process.
pub struct Agent {
    path: PathBuf,
    script: Arc<Mutex<Script>>,
}

impl Agent {
    /// Listens at a socket named after the parent process (the fork server,
    /// whose children follow one another) in the temporary directory.
    pub fn start(material: Arc<Material>) -> std::io::Result<Agent> {
        let path = std::env::temp_dir().join(format!(
            "lanyard-fuzz-agent-{}.sock",
            std::os::unix::process::parent_id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = Arc::clone(&script);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let script = Arc::clone(&shared);
                let material = Arc::clone(&material);
                std::thread::spawn(move || serve(stream, &script, &material));
            }
        });
        Ok(Agent { path, script })
    }

    /// The socket's path (for LANYARD_AGENT_SOCK).
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// The bytes that choose the next answers.
    pub fn set_script(&self, data: &[u8]) {
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = Script::new(data);
    }
}

fn serve(mut stream: UnixStream, script: &Mutex<Script>, material: &Material) {
    while let Ok(req) = read_frame::<Request, _>(&mut stream) {
        let resp = {
            let mut s = script.lock().unwrap_or_else(PoisonError::into_inner);
            answer(&req, &mut s, material)
        };
        if write_frame(&mut stream, &resp).is_err() {
            break;
        }
    }
}

/// The response to `req` as the script chooses.
pub fn answer(req: &Request, s: &mut Script, material: &Material) -> Response {
    let request_id = match s.byte() {
        0xff => req.request_id.wrapping_add(1),
        _ => req.request_id,
    };
    if s.byte() % 8 == 7 {
        return Response {
            request_id,
            error: Some(Error {
                code: i32::from(s.byte() % 26),
                message: s.string(),
                tries_left: s.u32(),
            }),
            body: None,
        };
    }
    let cards = |s: &mut Script| {
        let n = [2, 0, 1, 3][usize::from(s.byte() % 4)];
        (0..n).map(|i| material.card(s, i)).collect::<Vec<_>>()
    };
    let body = match (&req.body, s.byte()) {
        (_, 0xfe) => response::Body::Logout(LogoutReply {}),
        (Some(request::Body::Hello(_)), _) => response::Body::Hello(HelloReply {
            version: match s.byte() {
                0xfd => 2,
                _ => ProtocolVersion::ProtocolVersion1 as i32,
            },
            daemon_instance: vec![s.byte() % 2],
            slot_count: [4, 0, 1, 2][usize::from(s.byte() % 4)],
            daemon_version: "fuzz".into(),
            protected_path: s.byte() == 1,
        }),
        (Some(request::Body::ListCards(_)), _) => {
            response::Body::Cards(CardList { cards: cards(s) })
        }
        (Some(request::Body::Status(_)), _) => response::Body::Status(StatusReply {
            cards: cards(s),
            ..StatusReply::default()
        }),
        (Some(request::Body::Login(_)), _) => response::Body::Login(LoginReply {}),
        (Some(request::Body::Logout(_)), _) => response::Body::Logout(LogoutReply {}),
        (Some(request::Body::Sign(_)), _) => {
            let n = usize::from(s.byte()) * 2;
            let mut signature = s.bytes();
            signature.resize(n.max(signature.len()), 0x5a);
            response::Body::Signature(Signature { signature })
        }
        _ => response::Body::ChangePin(ChangePinReply {}),
    };
    Response {
        request_id,
        error: None,
        body: Some(body),
    }
}
