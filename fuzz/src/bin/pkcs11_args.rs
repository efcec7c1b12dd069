//! Fuzz target: the PKCS#11 argument layer. The module is initialised in
//! this process against the fuzzing agent (`lanyard_fuzz::agent`), whose
//! answers (cards, logins, signatures, errors) come from the first part of
//! the input; the rest drives a sequence of C_* calls with arbitrary
//! handles, templates (types, lengths, NULL values), mechanisms and
//! parameters, data and output lengths, and the mechanism parsers behind
//! them. Panics abort (afl's hook), so one caught by the module's guard is
//! still a crash here.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::{Arc, OnceLock};

use cryptoki_sys::*;
use lanyard_fuzz::agent::{Agent, Material};
use lanyard_pkcs11::ffi::*;
use lanyard_pkcs11::mechanism::{KeyKind, Mechanism, PssParams, SignScheme};

/// Reads the fuzz input as fields; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn ulong(&mut self) -> CK_ULONG {
        // Small values most of the time, so handles and types hit real ones.
        match self.byte() {
            0xff => (0..8).fold(0, |v, _| (v << 8) | CK_ULONG::from(self.byte())),
            b => CK_ULONG::from(b),
        }
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte()).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }

    fn more(&self) -> bool {
        !self.0.is_empty()
    }
}

/// A template and the buffers it points into (kept alive with it).
struct Template {
    attrs: Vec<CK_ATTRIBUTE>,
    _values: Vec<Vec<u8>>,
}

fn template(input: &mut Input<'_>) -> Template {
    let n = usize::from(input.byte() % 8);
    let mut values: Vec<Vec<u8>> = (0..n).map(|_| input.bytes()).collect();
    let attrs = values
        .iter_mut()
        .map(|v| {
            let attr_type = input.ulong();
            if input.byte().is_multiple_of(4) {
                // NULL value with an announced length: a length query.
                CK_ATTRIBUTE {
                    type_: attr_type,
                    pValue: null_mut(),
                    ulValueLen: input.ulong(),
                }
            } else {
                CK_ATTRIBUTE {
                    type_: attr_type,
                    pValue: v.as_mut_ptr() as *mut c_void,
                    ulValueLen: v.len() as CK_ULONG,
                }
            }
        })
        .collect();
    Template {
        attrs,
        _values: values,
    }
}

fn mechanism(input: &mut Input<'_>, param: &mut Vec<u8>) -> CK_MECHANISM {
    let mechanism = input.ulong();
    *param = input.bytes();
    if input.byte().is_multiple_of(4) {
        CK_MECHANISM {
            mechanism,
            pParameter: null_mut(),
            ulParameterLen: input.ulong(),
        }
    } else {
        CK_MECHANISM {
            mechanism,
            pParameter: param.as_mut_ptr() as *mut c_void,
            ulParameterLen: param.len() as CK_ULONG,
        }
    }
}

/// One call; its CK_RV is whatever it is, a panic aborts.
fn step(input: &mut Input<'_>) {
    let session = input.ulong();
    let object = input.ulong();
    let mut param = Vec::new();
    // SAFETY (fuzz harness): every pointer passed is NULL or points at a
    // live buffer at least as long as the length given with it.
    unsafe {
        match input.byte() % 16 {
            0 => {
                let mut t = template(input);
                C_GetAttributeValue(
                    session,
                    object,
                    t.attrs.as_mut_ptr(),
                    t.attrs.len() as CK_ULONG,
                );
            }
            1 => {
                let mut t = template(input);
                C_FindObjectsInit(session, t.attrs.as_mut_ptr(), t.attrs.len() as CK_ULONG);
            }
            2 => {
                let mut m = mechanism(input, &mut param);
                C_SignInit(session, &mut m, object);
            }
            3 => {
                let mut m = mechanism(input, &mut param);
                C_VerifyInit(session, &mut m, object);
            }
            4 => {
                let mut m = mechanism(input, &mut param);
                C_DigestInit(session, &mut m);
            }
            5 => {
                let data = input.bytes();
                let mut out = vec![0u8; usize::from(input.byte())];
                let mut len = out.len() as CK_ULONG;
                C_Sign(
                    session,
                    data.as_ptr() as *mut u8,
                    data.len() as CK_ULONG,
                    out.as_mut_ptr(),
                    &mut len,
                );
            }
            6 => {
                let mut info = CK_MECHANISM_INFO {
                    ulMinKeySize: 0,
                    ulMaxKeySize: 0,
                    flags: 0,
                };
                C_GetMechanismInfo(object, session, &mut info);
            }
            7 => {
                let mut h = 0;
                C_OpenSession(object, session, null_mut(), None, &mut h);
            }
            8 => {
                let pin = input.bytes();
                C_Login(
                    session,
                    object,
                    pin.as_ptr() as *mut u8,
                    pin.len() as CK_ULONG,
                );
            }
            9 => {
                let mut out = vec![0u8; usize::from(input.byte())];
                C_GenerateRandom(session, out.as_mut_ptr(), out.len() as CK_ULONG);
            }
            12 => {
                // A buffer of `count` entries, or NULL with any count (a
                // size query); a count above the buffer would be the
                // caller's overflow, not the module's.
                let mut slots = vec![0; usize::from(input.byte() % 8)];
                let (list, mut count) = if slots.is_empty() {
                    (null_mut(), input.ulong())
                } else {
                    let n = (slots.len() as CK_ULONG).min(input.ulong());
                    (slots.as_mut_ptr(), n)
                };
                C_GetSlotList(CK_BBOOL::from(input.byte() % 2), list, &mut count);
            }
            13 => {
                let mut info: CK_TOKEN_INFO = std::mem::zeroed();
                C_GetTokenInfo(object, &mut info);
                let mut session_info: CK_SESSION_INFO = std::mem::zeroed();
                C_GetSessionInfo(session, &mut session_info);
            }
            14 => {
                let mut found = vec![0; usize::from(input.byte() % 8)];
                let mut count = 0;
                C_FindObjects(
                    session,
                    found.as_mut_ptr(),
                    found.len() as CK_ULONG,
                    &mut count,
                );
                C_FindObjectsFinal(session);
            }
            15 => match input.byte() % 3 {
                0 => {
                    C_Logout(session);
                }
                1 => {
                    C_CloseSession(session);
                }
                _ => {
                    C_CloseAllSessions(object);
                }
            },
            10 => {
                let bits = usize::try_from(input.ulong()).unwrap_or(usize::MAX);
                let _ = PssParams::parse(&input.bytes(), bits);
            }
            _ => {
                let mut mech = Mechanism::new(input.ulong());
                mech.param = input.bytes();
                let kind = if input.byte().is_multiple_of(2) {
                    KeyKind::Rsa
                } else {
                    KeyKind::Ec
                };
                let bits = usize::try_from(input.ulong()).unwrap_or(usize::MAX);
                if let Ok(scheme) = SignScheme::parse(&mech, kind, bits) {
                    let sig_len = usize::from(input.byte()) * 4;
                    let _ = scheme.raw_input_limit(sig_len);
                    let _ = scheme.signing_input(input.bytes(), sig_len);
                }
            }
        }
    }
}

/// The card material, made before the fork server starts (children share it).
static MATERIAL: OnceLock<Arc<Material>> = OnceLock::new();
/// The agent, started in each forked child on its first input (threads do
/// not survive a fork).
static AGENT: OnceLock<Agent> = OnceLock::new();

fn main() {
    let material = match Material::new() {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("cannot make the fuzzing agent's cards: {e}"),
    };
    let _ = MATERIAL.set(material);
    afl::fuzz!(|data: &[u8]| {
        let agent = AGENT.get_or_init(|| {
            let material = MATERIAL.get().map(Arc::clone);
            let agent = material
                .ok_or_else(|| std::io::Error::other("no card material"))
                .and_then(Agent::start);
            match agent {
                Ok(agent) => {
                    std::env::set_var("LANYARD_AGENT_SOCK", agent.path());
                    agent
                }
                Err(e) => panic!("cannot start the fuzzing agent: {e}"),
            }
        });
        // First byte: how much of the rest (4 bytes a unit) scripts the agent.
        let (head, rest) = data.split_first().map_or((0, data), |(h, r)| (*h, r));
        let (script, calls) = rest.split_at((usize::from(head) * 4).min(rest.len()));
        agent.set_script(script);
        // SAFETY (fuzz harness): NULL arguments are valid for C_Initialize
        // and C_Finalize; each input starts from a fresh module state.
        if unsafe { C_Initialize(null_mut()) } != CKR_OK {
            return;
        }
        let mut input = Input(calls);
        while input.more() {
            step(&mut input);
        }
        // SAFETY: as above.
        unsafe { C_Finalize(null_mut()) };
    });
}
