//! One TCP connection from a reader slot to a virtual card: power controls,
//! the ATR and command APDUs, each bounded by a timeout. Any error leaves the
//! stream out of step, so the slot drops the link (the card counts as removed).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{DriverError, Result};
use crate::frame::{self, Control, MAX_FRAME};

/// The longest ATR ISO 7816-3 (and pcsc-lite's MAX_ATR_SIZE) allows.
pub const MAX_ATR: usize = 33;
/// The shortest command APDU (CLA INS P1 P2); shorter would read as a control.
pub const MIN_APDU: usize = 4;

/// How long the driver waits on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting; short, so pcscd's polling thread is never held up for long.
    pub connect: Duration,
    /// Sending a control and reading the ATR.
    pub control: Duration,
    /// Reading a response APDU (a PIN check or a signature may take seconds).
    pub apdu: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_millis(300),
            control: Duration::from_secs(5),
            apdu: Duration::from_secs(120),
        }
    }
}

/// A card's Answer To Reset (1 to [`MAX_ATR`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atr(Vec<u8>);

impl Atr {
    /// Checks the length of an ATR the card sent.
    pub fn new(bytes: Vec<u8>) -> Result<Atr> {
        if bytes.is_empty() || bytes.len() > MAX_ATR {
            return Err(DriverError::Protocol(format!(
                "an ATR of {} bytes (1 to {MAX_ATR} allowed)",
                bytes.len()
            )));
        }
        Ok(Atr(bytes))
    }

    /// The ATR bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A connected virtual card.
#[derive(Debug)]
pub struct CardLink {
    stream: TcpStream,
    peer: SocketAddr,
    timeouts: Timeouts,
}

impl CardLink {
    /// Connects to the card listening at `addr`; refused or timed out = no card.
    pub fn connect(addr: SocketAddr, timeouts: Timeouts) -> Result<CardLink> {
        let stream = TcpStream::connect_timeout(&addr, timeouts.connect)
            .map_err(|_| DriverError::NoCard(addr.to_string()))?;
        // Small request/response frames: do not wait to coalesce them.
        stream
            .set_nodelay(true)
            .map_err(|e| DriverError::io(format!("configuring the link to {addr}"), e))?;
        stream
            .set_write_timeout(Some(timeouts.control))
            .map_err(|e| DriverError::io(format!("configuring the link to {addr}"), e))?;
        Ok(CardLink {
            stream,
            peer: addr,
            timeouts,
        })
    }

    /// The card's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends a control that has no reply (power off, power on, reset).
    pub fn control(&mut self, control: Control) -> Result<()> {
        frame::write_frame(&mut self.stream, &[control.byte()])
            .map_err(|e| self.io_error("sending a power control", e))
    }

    /// Asks the card for its ATR; an empty, closed or oversized answer is an error.
    pub fn atr(&mut self) -> Result<Atr> {
        frame::write_frame(&mut self.stream, &[Control::GetAtr.byte()])
            .map_err(|e| self.io_error("asking for the ATR", e))?;
        let reply = self.read_reply(self.timeouts.control, "reading the ATR")?;
        Atr::new(reply)
    }

    /// Sends a command APDU and returns the card's response APDU (at least SW1 SW2).
    /// An APDU vpcd cannot carry is refused before anything is sent.
    pub fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        if apdu.len() < MIN_APDU || apdu.len() > MAX_FRAME {
            return Err(DriverError::ApduLength(apdu.len()));
        }
        frame::write_frame(&mut self.stream, apdu)
            .map_err(|e| self.io_error("sending a command APDU", e))?;
        let reply = self.read_reply(self.timeouts.apdu, "reading the response APDU")?;
        if reply.len() < 2 {
            return Err(DriverError::Protocol(format!(
                "a response APDU of {} byte(s), without a status word",
                reply.len()
            )));
        }
        Ok(reply)
    }

    fn read_reply(&mut self, timeout: Duration, doing: &str) -> Result<Vec<u8>> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| self.io_error(doing, e))?;
        frame::read_frame(&mut self.stream).map_err(|e| self.io_error(doing, e))
    }

    fn io_error(&self, doing: &str, source: io::Error) -> DriverError {
        let context = match source.kind() {
            io::ErrorKind::UnexpectedEof => {
                format!("{doing} from {}: the card closed the connection", self.peer)
            }
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("{doing} from {}: no answer in time", self.peer)
            }
            _ => format!("{doing} ({})", self.peer),
        };
        DriverError::io(context, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            control: Duration::from_secs(5),
            apdu: Duration::from_secs(5),
        }
    }

    #[test]
    fn nothing_listening_is_no_card() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = CardLink::connect(port, quick()).unwrap_err();
        assert!(matches!(err, DriverError::NoCard(_)), "{err:?}");
    }

    #[test]
    fn controls_atr_and_apdus_go_over_frames() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let card = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            loop {
                let Ok(f) = frame::read_frame(&mut s) else {
                    return seen;
                };
                seen.push(f.clone());
                match f.as_slice() {
                    [4] => frame::write_frame(&mut s, &[0x3B, 0x80, 0x80, 0x01, 0x01]).unwrap(),
                    [_] => {}
                    apdu => {
                        let mut r = apdu[1..2].to_vec();
                        r.extend([0x90, 0x00]);
                        frame::write_frame(&mut s, &r).unwrap()
                    }
                }
            }
        });
        let mut link = CardLink::connect(addr, quick()).unwrap();
        link.control(Control::PowerOn).unwrap();
        assert_eq!(
            link.atr().unwrap().as_bytes(),
            [0x3B, 0x80, 0x80, 0x01, 0x01]
        );
        assert_eq!(link.transmit(&[0, 0xA4, 4, 0]).unwrap(), [0xA4, 0x90, 0x00]);
        link.control(Control::PowerOff).unwrap();
        drop(link);
        let seen = card.join().unwrap();
        assert_eq!(seen, vec![vec![1], vec![4], vec![0, 0xA4, 4, 0], vec![0]]);
    }

    #[test]
    fn apdus_vpcd_cannot_carry_are_refused_before_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let card = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The only frame that reaches the card is the valid one.
            let f = frame::read_frame(&mut s).unwrap();
            frame::write_frame(&mut s, &[0x90, 0x00]).unwrap();
            f
        });
        let mut link = CardLink::connect(addr, quick()).unwrap();
        for len in [0, 1, 3, MAX_FRAME + 1] {
            let err = link.transmit(&vec![0; len]).unwrap_err();
            assert!(
                matches!(err, DriverError::ApduLength(n) if n == len),
                "{err:?}"
            );
        }
        assert_eq!(link.transmit(&[0, 0xCA, 0, 0]).unwrap(), [0x90, 0x00]);
        assert_eq!(card.join().unwrap(), [0, 0xCA, 0, 0]);
    }

    #[test]
    fn bad_replies_are_protocol_or_io_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let card = thread::spawn(move || {
            for reply in [vec![], vec![0x3B; MAX_ATR + 1], vec![0x90]] {
                let (mut s, _) = listener.accept().unwrap();
                let _ = frame::read_frame(&mut s).unwrap();
                // An empty reply is the bare length 00 00.
                frame::write_frame(&mut s, &reply).unwrap();
            }
            let (s, _) = listener.accept().unwrap();
            drop(s); // closes at once: the card went away
        });
        let mut empty = CardLink::connect(addr, quick()).unwrap();
        assert!(matches!(empty.atr().unwrap_err(), DriverError::Protocol(_)));
        let mut long = CardLink::connect(addr, quick()).unwrap();
        let err = long.atr().unwrap_err();
        assert!(err.to_string().contains("34 bytes"), "{err}");
        let mut short = CardLink::connect(addr, quick()).unwrap();
        let err = short.transmit(&[0, 0xB0, 0, 0]).unwrap_err();
        assert!(matches!(err, DriverError::Protocol(_)), "{err:?}");
        let mut gone = CardLink::connect(addr, quick()).unwrap();
        let err = gone.atr().unwrap_err();
        assert!(matches!(err, DriverError::Io { .. }), "{err:?}");
        card.join().unwrap();
    }

    #[test]
    fn a_silent_card_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let card = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = frame::read_frame(&mut s);
            // Never answers; waits for the driver to give up and close.
            let _ = frame::read_frame(&mut s);
        });
        let mut link = CardLink::connect(
            addr,
            Timeouts {
                control: Duration::from_millis(200),
                ..quick()
            },
        )
        .unwrap();
        let err = link.atr().unwrap_err();
        assert!(err.to_string().contains("no answer in time"), "{err}");
        drop(link);
        card.join().unwrap();
    }
}
