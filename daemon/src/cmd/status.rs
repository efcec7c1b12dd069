//! Status: every card (suspended and revoked ones too) with its lifecycle,
//! plus where the daemon lives (socket, store), for `lanyard status`.

use lanyard_proto::agent::{response, StatusReply};

use crate::state::Daemon;

/// The daemon's status.
pub fn apply(daemon: &Daemon) -> response::Body {
    response::Body::Status(StatusReply {
        cards: daemon.all_cards(None),
        daemon_version: crate::DAEMON_VERSION.into(),
        socket_path: daemon.socket_path().display().to_string(),
        store_path: daemon.store_dir().display().to_string(),
        problems: daemon.problems().to_vec(),
    })
}
