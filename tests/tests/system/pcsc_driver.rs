//! The run's pcscd and its vpcd reader driver (reversed mode) around card
//! removal: a stand-in card on the reader's loopback port goes away and comes
//! back several times (as a lanyardd restart does); the reader follows and
//! pcscd survives (Debian's vpcd 0.8 aborted pcscd at the first removal).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use lanyard_test_support::{require_tool, run, Pcscd, VirtualReader};

use crate::lifecycle_world::wait_for;

/// The stand-in card's ATR (T=1; not a Lanyard ATR).
const ATR: [u8; 6] = [0x3B, 0x80, 0x80, 0x01, 0x01, 0x01];

/// What the stand-in does with a reader's connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Answers the ATR; SELECT with 90 00, anything else with 6D 00.
    Card,
    /// Closes it at once, as lanyardd does while it has no card to show.
    HangUp,
}

/// A card listening on the reader's port, until dropped (removed).
struct StandIn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    fn listen(reader: &VirtualReader, behaviour: Behaviour) -> StandIn {
        let listener = TcpListener::bind(("127.0.0.1", reader.port))
            .unwrap_or_else(|e| panic!("the reader's port {} is taken: {e}", reader.port));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) if behaviour == Behaviour::Card => serve(stream, &flag),
                    Ok(_) => {} // dropped: closed at once
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("stand-in card: accept failed: {e}"),
                }
            }
        });
        StandIn {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves vpcd frames on one connection until the reader closes it or the
/// stand-in is removed (checked between frames).
fn serve(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    loop {
        // Peek first: a timeout then never loses part of a frame.
        let mut length = [0u8; 2];
        match stream.peek(&mut length) {
            Ok(0) => return,
            Ok(_) => {}
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
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let mut frame = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
        let reply: Vec<u8> = match frame.as_slice() {
            [4] => ATR.to_vec(),
            [_] => continue, // power off / on / reset: no reply
            [_, 0xA4, ..] => vec![0x90, 0x00],
            _ => vec![0x6D, 0x00],
        };
        let mut out = (reply.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// `opensc-tool ARGS` with a private HOME (no OpenSC file cache); its stdout.
fn opensc_tool(args: &[&str], home: &Path) -> String {
    let mut cmd = Command::new("opensc-tool");
    cmd.args(args).env("HOME", home);
    let out = run(cmd, None, Duration::from_secs(60));
    out.assert_success("opensc-tool");
    out.stdout
}

/// Whether `opensc-tool --list-readers` shows a card in `reader` ("Yes").
fn card_shown(reader: &VirtualReader, home: &Path) -> bool {
    let list = opensc_tool(&["--list-readers"], home);
    let line = list
        .lines()
        .find(|l| l.trim_end().ends_with(&reader.name))
        .unwrap_or_else(|| panic!("reader {:?} not listed:\n{list}", reader.name));
    line.split_whitespace().nth(1) == Some("Yes")
}

/// Waits (generously) until `reader` shows a card (`present`) or none.
fn wait_for_card(reader: &VirtualReader, present: bool, home: &Path) {
    let what = format!("card present = {present} in {:?}", reader.name);
    wait_for(&what, || {
        (card_shown(reader, home) == present).then_some(())
    });
}

#[test]
fn the_reader_follows_a_card_removed_and_inserted_again_and_pcscd_survives() {
    if !(require_tool("pcscd") && require_tool("opensc-tool")) {
        return;
    }
    let home = tempfile::tempdir().expect("a HOME for OpenSC");
    let home = home.path();
    let pcscd = Pcscd::shared();
    let reader = pcscd.claim_reader();
    assert!(!card_shown(&reader, home), "nothing listens yet");

    // A listener that hangs up (lanyardd with no card) is an empty reader.
    let hang_up = StandIn::listen(&reader, Behaviour::HangUp);
    thread::sleep(Duration::from_secs(2)); // several of pcscd's 400 ms polls
    assert!(!card_shown(&reader, home), "a hang-up is no card");
    pcscd.assert_alive();
    drop(hang_up);

    for round in 1..=3 {
        let card = StandIn::listen(&reader, Behaviour::Card);
        wait_for_card(&reader, true, home);
        let atr = opensc_tool(&["--reader", &reader.name, "--atr"], home);
        assert_eq!(atr.trim(), "3b:80:80:01:01:01", "round {round}: the ATR");
        let apdus = opensc_tool(
            &[
                "--reader",
                &reader.name,
                "--send-apdu",
                "00:A4:04:00:05:A0:00:00:03:08",
                "--send-apdu",
                "00:EE:00:00",
            ],
            home,
        );
        assert!(
            apdus.contains("SW1=0x90, SW2=0x00") && apdus.contains("SW1=0x6D, SW2=0x00"),
            "round {round}: APDUs reach the card and back:\n{apdus}"
        );
        drop(card);
        wait_for_card(&reader, false, home);
        pcscd.assert_alive();
    }
}
