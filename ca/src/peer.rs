//! Who is calling: the client's address and the certificate chain it
//! presented in the TLS handshake. The TLS layer asks for a client
//! certificate but does not require one (Enrollment and Revocation need
//! none); services that do (Renewal, Admin) take it from here and check it.

use std::net::{IpAddr, Ipv4Addr};

use tonic::Request;

/// The caller of one gRPC request.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address (unspecified when the transport gives none).
    pub ip: IpAddr,
    /// The certificates the client presented, leaf first, DER; empty when none.
    /// The TLS layer has already verified them against the CA's root.
    pub chain: Vec<Vec<u8>>,
}

impl Peer {
    /// The caller of `request`.
    pub fn of<T>(request: &Request<T>) -> Self {
        let ip = request
            .remote_addr()
            .map(|a| a.ip().to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let chain = request
            .peer_certs()
            .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default();
        Peer { ip, chain }
    }

    /// The client certificate, if one was presented.
    pub fn leaf(&self) -> Option<&[u8]> {
        self.chain.first().map(Vec::as_slice)
    }
}
