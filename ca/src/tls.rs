//! The gRPC server's TLS settings: server.key with the chain server.pem +
//! issuing.pem, so clients need only root.pem to trust it.

use tonic::transport::{Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::ca_dir::CaDir;
use crate::error::CaError;

/// Server TLS configuration from the CA directory.
pub fn server_tls_config(dir: &CaDir) -> Result<ServerTlsConfig, CaError> {
    let mut chain = dir.read(&dir.server_pem())?;
    if !chain.ends_with(b"\n") {
        chain.push(b'\n');
    }
    chain.extend_from_slice(&dir.read(&dir.issuing_pem())?);
    let key = Zeroizing::new(dir.read(&dir.server_key())?);
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(chain, key.as_slice())))
}
