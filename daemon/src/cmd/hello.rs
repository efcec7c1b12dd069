//! Hello: the versioned handshake that opens every connection; tells the
//! client this daemon run's random instance id, the slot count and whether
//! logins use the protected authentication path.

use lanyard_proto::agent::{response, Hello, HelloReply, ProtocolVersion};

use super::Session;
use crate::error::{Error, Result};
use crate::state::Daemon;

/// Checks the version and answers with the daemon's identity.
pub fn apply(daemon: &Daemon, session: &mut Session, m: Hello) -> Result<response::Body> {
    if m.version != ProtocolVersion::ProtocolVersion1 as i32 {
        return Err(Error::UnsupportedVersion(m.version));
    }
    session.greeted = true;
    tracing::debug!(client = %m.client.chars().take(80).collect::<String>(), "hello");
    Ok(response::Body::Hello(HelloReply {
        version: ProtocolVersion::ProtocolVersion1 as i32,
        daemon_instance: daemon.instance().to_vec(),
        slot_count: daemon.config().slots,
        daemon_version: crate::DAEMON_VERSION.into(),
        protected_path: daemon.config().protected_path,
    }))
}
