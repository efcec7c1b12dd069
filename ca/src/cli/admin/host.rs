//! Working on the CA directory itself (`--dir`, on the CA host, no server):
//! the configuration and database of an initialised CA, and the caller
//! `admin:$USER` every such action is audited as.

use std::path::Path;

use base64::Engine;

use crate::ca_dir::{write_atomic, CaDir, PUBLIC_MODE};
use crate::config::CaConfig;
use crate::error::CaError;
use crate::store::Store;

/// An initialised CA directory with its configuration and open database.
pub struct Host {
    /// The directory.
    pub dir: CaDir,
    /// ca.toml.
    pub config: CaConfig,
    /// The database.
    pub store: Store,
}

impl Host {
    /// Opens the CA in `dir` (refusing a directory `init` did not make), on
    /// `database` if given (`--database`), else the one ca.toml names.
    pub async fn open(dir: &Path, database: Option<&str>) -> Result<Self, CaError> {
        let dir = CaDir::new(dir);
        dir.require_initialised()?;
        dir.remove_leftover_temp_files();
        let mut config = CaConfig::load(&dir.config())?;
        if let Some(url) = database {
            config.database = Some(url.to_string());
        }
        let store = Store::open_configured(&dir, &config).await?;
        Ok(Host { dir, config, store })
    }

    /// Closes the database (checkpoints a SQLite WAL).
    pub async fn close(self) {
        self.store.close().await;
    }
}

/// PEM text of DER certificates, in order.
pub fn certificates_pem(ders: &[&[u8]]) -> String {
    let mut out = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// An operator certificate followed by the chain above it except the root
/// (which the CA already trusts), as PEM usable with --cert.
pub fn operator_pem(cert: &[u8], chain: &[Vec<u8>]) -> String {
    let mut ders: Vec<&[u8]> = vec![cert];
    if let Some(issuing) = chain.first() {
        ders.push(issuing);
    }
    certificates_pem(&ders)
}

/// Writes [`operator_pem`] to `path`.
pub fn write_operator_pem(path: &Path, cert: &[u8], chain: &[Vec<u8>]) -> Result<(), CaError> {
    write_atomic(path, operator_pem(cert, chain).as_bytes(), PUBLIC_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_reads_back() {
        let a = vec![0x30u8; 100];
        let b = vec![0x31u8; 3];
        let text = certificates_pem(&[&a, &b]);
        let back: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
            .map(|p| p.unwrap().contents)
            .collect();
        assert_eq!(back, vec![a, b]);
        assert!(text.lines().all(|l| l.len() <= 64));
    }
}
