//! The reader.conf `DEVICENAME` of a reversed-mode vpcd reader: where the
//! virtual card listens. Only loopback is accepted: the card may receive the
//! clinician's PIN, so it must never be a host on the network.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{DriverError, Result};

/// pcsc-lite's limit on readers (PCSCLITE_MAX_READERS_CONTEXTS), so on slots.
pub const MAX_SLOTS: u8 = 16;

/// vpcd's "server mode" device name: this driver does not listen.
const SERVER_MODE_HOST: &str = "/dev/null";

/// The loopback address (and ports) of one reader.conf entry's virtual cards:
/// slot `n` connects to `first_port + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderAddress {
    ip: IpAddr,
    first_port: u16,
    slots: u8,
}

impl ReaderAddress {
    /// Parses `HOST:PORT` (one slot) or `HOST:FIRST-LAST` (one slot per
    /// port); HOST is a loopback IP literal, `[::1]` or `localhost`; ports are
    /// decimal or `0x` hexadecimal as in vpcd's own reader.conf (`0x8C7B`).
    pub fn parse(device_name: &str) -> Result<ReaderAddress> {
        let text = device_name.trim();
        let Some((host, ports)) = text.rsplit_once(':') else {
            return Err(bad(format!(
                "DEVICENAME {text:?} has no port: write the card's loopback address \
                 as HOST:PORT, e.g. 127.0.0.1:35963 (vpcd's reversed mode)"
            )));
        };
        if host == SERVER_MODE_HOST {
            return Err(bad(format!(
                "DEVICENAME {text:?} asks for vpcd's server mode (listening for a card); \
                 this driver only connects to a card listening on loopback: write \
                 127.0.0.1:PORT and start the card with --vpcd-listen 127.0.0.1:PORT"
            )));
        }
        let ip = parse_host(host)?;
        let (first_port, last_port) = match ports.split_once('-') {
            Some((first, last)) => (parse_port(first)?, parse_port(last)?),
            None => {
                let port = parse_port(ports)?;
                (port, port)
            }
        };
        if last_port < first_port {
            return Err(bad(format!(
                "port range {ports:?} ends before it starts: write FIRST-LAST with FIRST <= LAST"
            )));
        }
        let count = u32::from(last_port) - u32::from(first_port) + 1;
        let slots = u8::try_from(count)
            .ok()
            .filter(|n| *n <= MAX_SLOTS)
            .ok_or_else(|| {
                bad(format!(
                    "port range {ports:?} asks for {count} slots; pcscd allows at most {MAX_SLOTS}"
                ))
            })?;
        Ok(ReaderAddress {
            ip,
            first_port,
            slots,
        })
    }

    /// The entry pcscd opens by `CHANNELID` alone (no DEVICENAME): one slot
    /// on 127.0.0.1 at that port.
    pub fn from_channel(channel: u64) -> Result<ReaderAddress> {
        let port = u16::try_from(channel)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                bad(format!(
                    "CHANNELID {channel} is not a TCP port (1-65535); better, set \
                     DEVICENAME 127.0.0.1:PORT"
                ))
            })?;
        Ok(ReaderAddress {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            first_port: port,
            slots: 1,
        })
    }

    /// How many slots (readers) this entry offers.
    pub fn slots(&self) -> u8 {
        self.slots
    }

    /// The card's address for `slot`, or an error for a slot beyond the range.
    pub fn slot_addr(&self, slot: u16) -> Result<SocketAddr> {
        if slot >= u16::from(self.slots) {
            return Err(bad(format!(
                "slot {slot} asked for, but {self} has {} slot(s)",
                self.slots
            )));
        }
        // first_port + slot <= last_port <= 65535: checked by parse.
        let port = self
            .first_port
            .checked_add(slot)
            .ok_or_else(|| bad(format!("slot {slot} of {self} is beyond port 65535")))?;
        Ok(SocketAddr::new(self.ip, port))
    }
}

impl fmt::Display for ReaderAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = SocketAddr::new(self.ip, self.first_port);
        if self.slots > 1 {
            let last = u32::from(self.first_port) + u32::from(self.slots) - 1;
            write!(f, "{first}-{last}")
        } else {
            write!(f, "{first}")
        }
    }
}

fn bad(message: String) -> DriverError {
    DriverError::DeviceName(message)
}

fn parse_host(host: &str) -> Result<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        // Not resolved: /etc/hosts could map the name anywhere.
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = literal.parse().map_err(|_| {
        bad(format!(
            "host {host:?} is not an IP address: write a loopback address such as \
             127.0.0.1, [::1] or localhost (host names are not resolved)"
        ))
    })?;
    if !ip.is_loopback() {
        return Err(bad(format!(
            "host {ip} is not a loopback address: the virtual card receives the \
             clinician's PIN, so this driver only connects to 127.0.0.0/8 or ::1"
        )));
    }
    Ok(ip)
}

fn parse_port(text: &str) -> Result<u16> {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse::<u16>(),
    };
    match parsed {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(bad(format!(
            "port {text:?} is not a TCP port: write 1-65535 in decimal or 0x hexadecimal"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_mode_names_parse_like_vpcds_reader_conf() {
        let one = ReaderAddress::parse("127.0.0.1:35963").unwrap();
        assert_eq!(one.slots(), 1);
        assert_eq!(
            one.slot_addr(0).unwrap(),
            "127.0.0.1:35963".parse().unwrap()
        );
        assert!(one.slot_addr(1).is_err());

        let hex = ReaderAddress::parse("127.0.0.1:0x8C7B").unwrap();
        assert_eq!(hex.slot_addr(0).unwrap().port(), 35963);

        let v6 = ReaderAddress::parse("[::1]:4000").unwrap();
        assert_eq!(v6.slot_addr(0).unwrap(), "[::1]:4000".parse().unwrap());

        let name = ReaderAddress::parse(" localhost:4000 ").unwrap();
        assert_eq!(
            name.slot_addr(0).unwrap(),
            "127.0.0.1:4000".parse().unwrap()
        );

        let other_loopback = ReaderAddress::parse("127.0.0.2:4000").unwrap();
        assert_eq!(
            other_loopback.slot_addr(0).unwrap().ip().to_string(),
            "127.0.0.2"
        );
    }

    #[test]
    fn a_port_range_gives_one_slot_per_port() {
        let range = ReaderAddress::parse("127.0.0.1:21000-21005").unwrap();
        assert_eq!(range.slots(), 6);
        assert_eq!(range.slot_addr(5).unwrap().port(), 21005);
        assert!(range.slot_addr(6).is_err());
        assert_eq!(range.to_string(), "127.0.0.1:21000-21005");
        let top = ReaderAddress::parse("127.0.0.1:65534-65535").unwrap();
        assert_eq!(top.slot_addr(1).unwrap().port(), 65535);
    }

    #[test]
    fn network_hosts_and_server_mode_are_refused_with_the_reason() {
        for (name, hint) in [
            ("192.168.0.4:35963", "not a loopback"),
            ("0.0.0.0:35963", "not a loopback"),
            ("[::]:35963", "not a loopback"),
            ("card.example.org:35963", "not an IP address"),
            ("/dev/null:35963", "server mode"),
            ("127.0.0.1", "has no port"),
            ("", "has no port"),
            ("127.0.0.1:0", "not a TCP port"),
            ("127.0.0.1:65536", "not a TCP port"),
            ("127.0.0.1:0x", "not a TCP port"),
            ("127.0.0.1:-5", "not a TCP port"),
            ("127.0.0.1:5-4", "ends before it starts"),
            ("127.0.0.1:1000-1016", "at most 16"),
        ] {
            let err = ReaderAddress::parse(name).unwrap_err();
            assert!(matches!(err, DriverError::DeviceName(_)), "{name}: {err:?}");
            assert!(err.to_string().contains(hint), "{name}: {err}");
        }
    }

    #[test]
    fn a_channel_id_alone_means_one_slot_on_127_0_0_1() {
        let addr = ReaderAddress::from_channel(0x8C7B).unwrap();
        assert_eq!(
            addr.slot_addr(0).unwrap(),
            "127.0.0.1:35963".parse().unwrap()
        );
        assert!(ReaderAddress::from_channel(0).is_err());
        assert!(ReaderAddress::from_channel(70000).is_err());
    }
}
