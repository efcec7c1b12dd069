//! The PIV card application: one instance per reader, fed one command APDU
//! at a time by the reader link, answering with one response APDU. It holds
//! only the card session's transient state (a command chain being received,
//! response data waiting for GET RESPONSE, the PIN of a VERIFY that may
//! authorise the next 9C signature); keys, PIN and counter live behind the
//! [`CardBackend`].

use zeroize::Zeroizing;

use crate::aid;
use crate::apdu::{self, Command};
use crate::backend::{CardBackend, KeySlot, PinError, PinStatus, SignError};
use crate::general_auth;
use crate::get_data;
use crate::response::{self, Pending};
use crate::status::Status;
use crate::verify::{self, VerifyRequest};

/// SELECT.
const INS_SELECT: u8 = 0xA4;
/// GET DATA.
const INS_GET_DATA: u8 = 0xCB;
/// VERIFY.
const INS_VERIFY: u8 = 0x20;
/// GENERAL AUTHENTICATE.
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
/// GET RESPONSE.
const INS_GET_RESPONSE: u8 = 0xC0;
/// PIV instructions this card does not offer (PIN change and unblock, key
/// generation, PUT DATA): "function not supported" rather than unknown.
const INS_UNSUPPORTED_PIV: [u8; 4] = [0x24, 0x2C, 0x47, 0xDB];

/// Most bytes a command chain may gather (an RSA-2048 GENERAL AUTHENTICATE
/// is 264).
const MAX_CHAIN_DATA: usize = 4096;

/// A command chain being received (ISO 7816-4 §5.1.1.1).
struct Chain {
    ins: u8,
    p1: u8,
    p2: u8,
    data: Zeroizing<Vec<u8>>,
}

/// The PIV application in front of a [`CardBackend`].
pub struct Applet<B: CardBackend> {
    backend: B,
    chain: Option<Chain>,
    pending: Option<Pending>,
    /// The PIN of the VERIFY just before, for one 9C signature (PIN always).
    fresh_pin: Option<Zeroizing<Vec<u8>>>,
}

impl<B: CardBackend> Applet<B> {
    /// The application over `backend`, as after power on.
    pub fn new(backend: B) -> Self {
        Applet {
            backend,
            chain: None,
            pending: None,
            fresh_pin: None,
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
    }

    /// Power off: the card session and its security status end.
    pub fn power_off(&mut self) {
        self.end_session();
    }

    /// Answers one command APDU with its response APDU (data + SW1SW2).
    /// Never panics, whatever `apdu` holds.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        let response = self.answer(apdu);
        // The header and the status word only: command data may hold a PIN.
        let sw = response
            .len()
            .checked_sub(2)
            .map_or(&[][..], |i| &response[i..]);
        tracing::debug!(
            header = %hex(apdu.get(..4).unwrap_or(apdu)),
            command_len = apdu.len(),
            response_len = response.len(),
            sw = %hex(sw),
            "PIV command"
        );
        response
    }

    fn answer(&mut self, apdu: &[u8]) -> Vec<u8> {
        // Whatever comes next, the transient state is for this command only.
        let fresh_pin = self.fresh_pin.take();
        let pending = self.pending.take();
        let chain = self.chain.take();
        let command = match apdu::parse(apdu) {
            Ok(command) => command,
            Err(status) => return apdu::response(&[], status),
        };
        if command.ins == INS_GET_RESPONSE {
            return self.get_response(&command, pending);
        }
        let data = match self.gather_chain(&command, chain) {
            Ok(Some(data)) => data,
            Ok(None) => {
                // A part of a chain: keep the PIN for a chained 9C signature.
                if command.ins == INS_GENERAL_AUTHENTICATE {
                    self.fresh_pin = fresh_pin;
                }
                return apdu::response(&[], Status::Ok);
            }
            Err(status) => return apdu::response(&[], status),
        };
        let result = match command.ins {
            INS_SELECT => self.select(&command, &data),
            INS_GET_DATA => self.get_data(&command, &data),
            INS_VERIFY => self.verify(&command, &data),
            INS_GENERAL_AUTHENTICATE => self.general_authenticate(&command, &data, fresh_pin),
            ins if INS_UNSUPPORTED_PIV.contains(&ins) => Err(Status::FunctionUnsupported),
            _ => Err(Status::InsUnsupported),
        };
        match result {
            Ok(out) => {
                let (apdu, rest) = response::send(out, command.ne);
                self.pending = rest;
                apdu
            }
            Err(status) => apdu::response(&[], status),
        }
    }

    /// Joins `command` to a chain in progress. `Ok(None)`: more parts to
    /// come; `Ok(Some(data))`: the whole command's data.
    fn gather_chain(
        &mut self,
        command: &Command<'_>,
        chain: Option<Chain>,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Status> {
        // A different command ends (drops) a chain in progress. The data is
        // zeroized when dropped: a VERIFY's carries the PIN.
        let mut data = match chain {
            Some(c) if (c.ins, c.p1, c.p2) == (command.ins, command.p1, command.p2) => c.data,
            _ => Zeroizing::new(Vec::new()),
        };
        if data.len() + command.data.len() > MAX_CHAIN_DATA {
            return Err(Status::WrongLength);
        }
        data.extend_from_slice(command.data);
        if !command.is_chained() {
            return Ok(Some(data));
        }
        if !matches!(command.ins, INS_GENERAL_AUTHENTICATE | INS_GET_DATA) {
            return Err(match command.ins {
                INS_SELECT | INS_VERIFY => Status::ChainingUnsupported,
                ins if INS_UNSUPPORTED_PIV.contains(&ins) => Status::FunctionUnsupported,
                _ => Status::InsUnsupported,
            });
        }
        self.chain = Some(Chain {
            ins: command.ins,
            p1: command.p1,
            p2: command.p2,
            data,
        });
        Ok(None)
    }

    fn get_response(&mut self, command: &Command<'_>, pending: Option<Pending>) -> Vec<u8> {
        if command.is_chained() {
            return apdu::response(&[], Status::ChainingUnsupported);
        }
        if (command.p1, command.p2) != (0, 0) {
            self.pending = pending;
            return apdu::response(&[], Status::WrongP1P2);
        }
        let Some(pending) = pending else {
            return apdu::response(&[], Status::ConditionsNotSatisfied);
        };
        if command.ne.is_none() || !command.data.is_empty() {
            self.pending = Some(pending);
            return apdu::response(&[], Status::WrongLength);
        }
        let (apdu, rest) = response::next_part(pending, command.ne);
        self.pending = rest;
        apdu
    }

    /// SELECT by DF name: the PIV AID (full or truncated) answers with the
    /// application property template and starts the application afresh (its
    /// security status reset, as the backend contract says: a new PC/SC
    /// client selects first, so it does not inherit an earlier client's
    /// VERIFY). A failed selection changes nothing: PIV stays selected.
    fn select(&mut self, command: &Command<'_>, name: &[u8]) -> Result<Vec<u8>, Status> {
        match command.p1 {
            0x04 => {}
            // Selection by file identifier or path: this card has no files.
            0x00..=0x03 | 0x08 | 0x09 => return Err(Status::NotFound),
            _ => return Err(Status::WrongP1P2),
        }
        // First occurrence only; FCI (00), FCP (04), FMD (08) or nothing (0C).
        if command.p2 & 0xF3 != 0 {
            return Err(Status::WrongP1P2);
        }
        if !aid::selects_piv(name) {
            return Err(Status::NotFound);
        }
        self.backend.reset();
        if command.p2 == 0x0C {
            return Ok(Vec::new());
        }
        Ok(aid::application_property_template())
    }

    fn get_data(&mut self, command: &Command<'_>, data: &[u8]) -> Result<Vec<u8>, Status> {
        let tag = get_data::requested_tag(command.p1, command.p2, data)?;
        let card = self.backend.card();
        get_data::object(tag, card.as_ref())
    }

    fn verify(&mut self, command: &Command<'_>, data: &[u8]) -> Result<Vec<u8>, Status> {
        match verify::parse(command.p1, command.p2, data)? {
            VerifyRequest::Status => match self.backend.pin_status() {
                PinStatus::Verified => Ok(Vec::new()),
                PinStatus::NotVerified { tries_left } => Err(Status::VerifyFailed(tries_left)),
                PinStatus::Blocked => Err(Status::AuthenticationBlocked),
            },
            VerifyRequest::Reset => {
                self.backend.reset();
                Ok(Vec::new())
            }
            VerifyRequest::Pin(pin) => match self.backend.verify_pin(pin.clone()) {
                Ok(()) => {
                    self.fresh_pin = Some(pin);
                    Ok(Vec::new())
                }
                Err(PinError::Incorrect { tries_left }) => Err(Status::VerifyFailed(tries_left)),
                Err(PinError::Blocked) => Err(Status::AuthenticationBlocked),
                Err(PinError::Malformed) => Err(Status::WrongData),
                Err(PinError::Unavailable(_)) => Err(Status::Unknown),
            },
        }
    }

    fn general_authenticate(
        &mut self,
        command: &Command<'_>,
        data: &[u8],
        fresh_pin: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Vec<u8>, Status> {
        let request = general_auth::key_request(command.p1, command.p2)?;
        let card = self.backend.card().ok_or(Status::ReferenceNotFound)?;
        let key = card
            .slots
            .iter()
            .find(|s| s.slot == request.slot)
            .ok_or(Status::ReferenceNotFound)?;
        if key.algorithm != request.algorithm {
            return Err(Status::WrongP1P2);
        }
        let challenge = general_auth::challenge(data)?;
        let input = general_auth::sign_input(request.algorithm, challenge)?;
        let pin = match request.slot {
            KeySlot::Authentication => {
                if self.backend.pin_status() != PinStatus::Verified {
                    return Err(Status::SecurityStatusNotSatisfied);
                }
                None
            }
            KeySlot::Signature => Some(fresh_pin.ok_or(Status::SecurityStatusNotSatisfied)?),
        };
        let signature = self
            .backend
            .sign(request.slot, input, pin)
            .map_err(|e| match e {
                SignError::NotVerified => Status::SecurityStatusNotSatisfied,
                SignError::NoKey => Status::ReferenceNotFound,
                SignError::BadInput(_) => Status::WrongData,
                SignError::Unavailable(_) => Status::Unknown,
            })?;
        Ok(general_auth::response(&signature))
    }

    fn end_session(&mut self) {
        self.chain = None;
        self.pending = None;
        self.fresh_pin = None;
        self.backend.reset();
    }
}

/// Bytes as uppercase hex, for the log.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
