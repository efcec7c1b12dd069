//! The `[pcsc]` section of `lanyardd.toml` and the vpcd endpoint it (or a
//! `lanyardd` flag) names: listen on loopback for vpcd's reversed mode (the
//! default, and the only listening mode), or connect out to a listening vpcd.

use std::net::SocketAddr;

use serde::Deserialize;

/// The port vpcd uses by default (0x8C7B), as in vsmartcard's reader.conf.
pub const VPCD_DEFAULT_PORT: u16 = 35963;

/// `[pcsc]`: the card in a PC/SC reader through pcsc-lite's vpcd driver. Off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcscConfig {
    /// `IP:PORT` on loopback where lanyardd waits for vpcd (reversed mode),
    /// e.g. `"127.0.0.1:35963"`.
    pub vpcd_listen: Option<String>,
    /// `HOST:PORT` of a listening vpcd to connect to (only for setups that
    /// firewall that port; vpcd's own mode listens on all interfaces).
    pub vpcd_connect: Option<String>,
    /// The card shown in the reader; default the first present card by slot.
    pub card: Option<String>,
}

/// Where the vpcd link goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpcdEndpoint {
    /// Listen on this loopback address; vpcd connects (reversed mode).
    Listen(SocketAddr),
    /// Connect to a vpcd listening at `HOST:PORT`.
    Connect(String),
}

impl VpcdEndpoint {
    /// A listen address: an IP literal and port on loopback, nothing else
    /// (anyone who reaches the port could talk to the card).
    pub fn listen(text: &str) -> Result<Self, String> {
        let addr: SocketAddr = text.trim().parse().map_err(|_| {
            format!(
                "vpcd listen address {text:?} is not IP:PORT; use e.g. 127.0.0.1:{VPCD_DEFAULT_PORT}"
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "vpcd listen address {addr} is not on loopback: lanyardd listens for vpcd on 127.0.0.1 or ::1 only, \
                 so that no other host can reach the card; use e.g. 127.0.0.1:{}",
                addr.port()
            ));
        }
        if addr.port() == 0 {
            return Err(format!(
                "vpcd listen address {addr} needs a port (vpcd's reader configuration names it)"
            ));
        }
        Ok(VpcdEndpoint::Listen(addr))
    }

    /// A `HOST:PORT` to connect to.
    pub fn connect(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let port = text
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|p| *p != 0);
        match port {
            Some(_) => Ok(VpcdEndpoint::Connect(text.to_string())),
            None => Err(format!(
                "vpcd address {text:?} is not HOST:PORT; use e.g. 127.0.0.1:{VPCD_DEFAULT_PORT}"
            )),
        }
    }
}

impl PcscConfig {
    /// The endpoint configured, if any; both keys at once is an error.
    pub fn endpoint(&self) -> Result<Option<VpcdEndpoint>, String> {
        match (&self.vpcd_listen, &self.vpcd_connect) {
            (Some(_), Some(_)) => Err(
                "[pcsc] has both vpcd_listen and vpcd_connect; choose one (vpcd_listen is the safe default)"
                    .into(),
            ),
            (Some(listen), None) => VpcdEndpoint::listen(listen).map(Some),
            (None, Some(connect)) => VpcdEndpoint::connect(connect).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// Checks the section (called by `Config::validate`).
    pub fn validate(&self) -> Result<(), String> {
        self.endpoint()?;
        if self.card.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err("[pcsc] card must name a card id (see `lanyard status`)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_listened_on() {
        assert_eq!(
            VpcdEndpoint::listen("127.0.0.1:35963").unwrap(),
            VpcdEndpoint::Listen("127.0.0.1:35963".parse().unwrap())
        );
        assert!(VpcdEndpoint::listen("[::1]:35963").is_ok());
        for bad in [
            "0.0.0.0:35963",
            "[::]:35963",
            "192.168.1.4:35963",
            "localhost:35963",
            "127.0.0.1",
            "127.0.0.1:0",
            "",
        ] {
            assert!(VpcdEndpoint::listen(bad).is_err(), "{bad}");
        }
        let err = VpcdEndpoint::listen("0.0.0.0:4000").unwrap_err();
        assert!(err.contains("not on loopback"), "{err}");
    }

    #[test]
    fn connect_needs_host_and_port() {
        assert!(VpcdEndpoint::connect("vpcd.example:35963").is_ok());
        for bad in ["vpcd.example", ":35963", "h:0", "h:x"] {
            assert!(VpcdEndpoint::connect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_endpoint_at_most() {
        let both = PcscConfig {
            vpcd_listen: Some("127.0.0.1:1".into()),
            vpcd_connect: Some("h:1".into()),
            card: None,
        };
        assert!(both.validate().is_err());
        assert_eq!(PcscConfig::default().endpoint(), Ok(None));
        let empty_card = PcscConfig {
            card: Some(" ".into()),
            ..PcscConfig::default()
        };
        assert!(empty_card.validate().is_err());
    }
}
