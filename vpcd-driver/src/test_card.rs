//! Test only: a virtual card on a loopback TcpListener, speaking vpcd's
//! protocol like `lanyardd --vpcd-listen` does, that can be taken away
//! (connection and listener closed) and put back on the same port.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::frame;

/// The test card's ATR (T=1, like the Lanyard PIV ATR's start).
pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// A listening test card; every frame it received is kept.
pub struct TestCard {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<JoinHandle<()>>,
}

impl TestCard {
    /// Listens on a free loopback port.
    pub fn start() -> TestCard {
        TestCard::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// Listens on `addr` (a port a previous card used: "inserted again").
    pub fn start_on(addr: SocketAddr) -> TestCard {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            thread::spawn(move || accept_loop(listener, &stop, &seen))
        };
        TestCard {
            addr,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Where the card listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes the card away and returns every frame it received.
    pub fn remove_and_seen(self) -> Vec<Vec<u8>> {
        let seen = self.seen.clone();
        self.remove();
        let frames = seen.lock().unwrap().clone();
        frames
    }

    /// Takes the card away: closes its connection and its listener.
    pub fn remove(mut self) -> SocketAddr {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.addr
    }
}

impl Drop for TestCard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, stop: &AtomicBool, seen: &Mutex<Vec<Vec<u8>>>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => serve(stream, stop, seen),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return,
        }
    }
}

/// Answers frames until the reader closes or the card is removed. APDU
/// `00 EE 00 00` makes the card hang up without answering (a crash).
fn serve(mut stream: TcpStream, stop: &AtomicBool, seen: &Mutex<Vec<Vec<u8>>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    loop {
        let mut length = [0u8; 2];
        match stream.peek(&mut length) {
            Ok(0) => return,
            Ok(_) => {}
            // Removed only between frames, so every frame sent before is seen.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        }
        stream.set_read_timeout(None).unwrap();
        let Ok(payload) = frame::read_frame(&mut stream) else {
            return;
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        seen.lock().unwrap().push(payload.clone());
        let reply = match payload.as_slice() {
            [4] => ATR.to_vec(),
            [_] => continue,
            [_, 0xEE, ..] => return,
            // Echo all after the header (Lc and data) with 90 00: tests see it went through.
            apdu => apdu.iter().skip(4).copied().chain([0x90, 0x00]).collect(),
        };
        if frame::write_frame(&mut stream, &reply).is_err() {
            return;
        }
    }
}
