//! The gRPC server's TLS settings: server.key with the chain server.pem +
//! issuing.pem, so clients need only root.pem to trust it; and an optional
//! client certificate, verified against this CA (root.pem, and issuing.pem
//! so a client may send its leaf alone). Renewal and Admin require one and
//! check it themselves (see `peer.rs`); Enrollment and Revocation need none.

use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::ca_dir::CaDir;
use crate::error::CaError;

fn with_newline(mut pem: Vec<u8>) -> Vec<u8> {
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem
}

/// Server TLS configuration from the CA directory.
pub fn server_tls_config(dir: &CaDir) -> Result<ServerTlsConfig, CaError> {
    let issuing = with_newline(dir.read(&dir.issuing_pem())?);
    let mut chain = with_newline(dir.read(&dir.server_pem())?);
    chain.extend_from_slice(&issuing);
    let key = Zeroizing::new(dir.read(&dir.server_key())?);

    let mut client_roots = with_newline(dir.read(&dir.root_pem())?);
    client_roots.extend_from_slice(&issuing);
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(chain, key.as_slice()))
        .client_ca_root(Certificate::from_pem(client_roots))
        .client_auth_optional(true))
}
