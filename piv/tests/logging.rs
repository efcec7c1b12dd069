//! The application's log shows commands by header and status word, never
//! their data: a PIN sent with VERIFY does not reach the log, in any form.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use lanyard_piv::Applet;
use support::FakeCard;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn pins_never_reach_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut applet = Applet::new(FakeCard::ec_only());
        applet.power_on();
        let verify = b"\x00\x20\x00\x80\x08987654\xFF\xFF";
        let extended = b"\x00\x20\x00\x80\x00\x00\x08555123\xFF\xFF";
        let chained = b"\x10\x20\x00\x80\x08424242\xFF\xFF";
        for apdu in [&verify[..], &extended[..], &chained[..]] {
            applet.process(apdu);
        }
    });
    let log = String::from_utf8_lossy(&captured.0.lock().expect("log").clone()).to_string();
    assert!(log.contains("PIV command"), "commands are logged: {log}");
    assert!(log.contains("00200080"), "by header: {log}");
    for secret in [
        "987654",
        "555123",
        "424242",
        "393837363534",
        "353535313233",
        "343234323432",
    ] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}
