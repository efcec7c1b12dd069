//! The PIV card application: one instance per reader, fed one command APDU
//! at a time by the reader link, answering with one response APDU. Holds
//! only the card-session state (selected, chains, pending GET RESPONSE).

use crate::apdu::{self, Command};
use crate::backend::CardBackend;
use crate::status::Status;

/// The PIV application in front of a [`CardBackend`].
pub struct Applet<B: CardBackend> {
    backend: B,
    powered: bool,
}

impl<B: CardBackend> Applet<B> {
    /// A powered-off application over `backend`.
    pub fn new(backend: B) -> Self {
        Applet {
            backend,
            powered: false,
        }
    }

    /// The backend, for the reader link (e.g. to see whether a card is in).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (e.g. to change which card is shown).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Power on (or warm reset): a fresh card session, nothing verified.
    pub fn power_on(&mut self) {
        self.end_session();
        self.powered = true;
    }

    /// Power off: the card session and its security status end.
    pub fn power_off(&mut self) {
        self.end_session();
        self.powered = false;
    }

    /// Answers one command APDU with its response APDU (data + SW1SW2).
    /// Never panics, whatever `apdu` holds.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        match apdu::parse(apdu) {
            Ok(command) => self.dispatch(&command),
            Err(status) => apdu::response(&[], status),
        }
    }

    fn dispatch(&mut self, _command: &Command<'_>) -> Vec<u8> {
        apdu::response(&[], Status::InsUnsupported)
    }

    fn end_session(&mut self) {
        self.backend.reset();
    }
}
