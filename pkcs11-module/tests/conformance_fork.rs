//! fork(): the child is not initialised until it calls C_Initialize, then
//! works as an application of its own (session, login, signature), may
//! finalise and initialise again, and never touches the parent's sockets or
//! logins; a child forked while other threads are inside the module (even
//! inside C_Initialize) does not hang; the parent carries on unchanged.

mod support;

use std::ptr::null_mut;
use std::time::Duration;

use cryptoki_sys::*;
use support::fake_agent::FakeAgent;
use support::process::{fork_child, wait_child, ChildEnd};
use support::signature::openssl_verifies;
use support::*;

const RSA_PIN: &str = "123456";
/// A child that re-initialises takes well under a second; far longer is a hang.
const FORK_DEADLINE: Duration = Duration::from_secs(30);

/// Fails with the call and CK_RV unless `rv` is `want` (for forked children,
/// which report instead of panicking).
fn expect(what: &str, rv: CK_RV, want: CK_RV) -> Result<(), String> {
    if rv == want {
        Ok(())
    } else {
        Err(format!("{what}: {rv:#x}, expected {want:#x}"))
    }
}

/// In a child: opens a session on slot 0, logs in, signs and checks the
/// signature against `spki`.
fn sign_in_child(m: &Module, spki: &[u8], what: &str) -> Result<(), String> {
    let mut h = 0;
    expect(
        &format!("{what}: C_OpenSession"),
        p11!(
            m,
            C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h)
        ),
        CKR_OK,
    )?;
    expect(&format!("{what}: C_Login"), login(m, h, RSA_PIN), CKR_OK)?;
    let key = private_key(m, h);
    let data = format!("{what} in pid {}", std::process::id());
    let sig = sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, data.as_bytes())
        .map_err(|rv| format!("{what}: signing failed with {rv:#x}"))?;
    if !openssl_verifies(spki, CKM_SHA256_RSA_PKCS, data.as_bytes(), &sig) {
        return Err(format!("{what}: the signature does not verify"));
    }
    Ok(())
}

/// The application id the agent saw logging in (exactly one login now).
fn only_login(agent: &FakeAgent) -> Vec<u8> {
    let logins = &agent.state.lock().unwrap().logins;
    assert_eq!(logins.len(), 1, "logins: {logins:?}");
    logins.iter().next().unwrap().0.clone()
}

#[test]
fn a_forked_child_reinitialises_and_signs_while_the_parent_keeps_its_session() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, RSA_PIN), CKR_OK);
    let key = private_key(m, h);
    assert!(sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"before the fork").is_ok());
    let parent_app = only_login(&agent);
    let spki = agent.public_key_der(0);
    let (seen_before, connections_before) = {
        let s = agent.state.lock().unwrap();
        (s.requests.len(), s.accepted)
    };

    let pid = fork_child(|| {
        // The parent's state is not the child's: nothing is initialised,
        // and finalising what it never initialised touches nothing.
        let mut n: CK_ULONG = 0;
        expect(
            "C_GetSlotList before C_Initialize",
            p11!(m, C_GetSlotList(CK_TRUE, null_mut(), &mut n)),
            CKR_CRYPTOKI_NOT_INITIALIZED,
        )?;
        let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
        expect(
            "the parent's session in the child",
            p11!(m, C_GetSessionInfo(h, &mut info)),
            CKR_CRYPTOKI_NOT_INITIALIZED,
        )?;
        expect(
            "C_Finalize before C_Initialize",
            p11!(m, C_Finalize(null_mut())),
            CKR_CRYPTOKI_NOT_INITIALIZED,
        )?;
        expect("C_Initialize", p11!(m, C_Initialize(null_mut())), CKR_OK)?;
        sign_in_child(m, &spki, "first initialisation")?;
        expect("C_Finalize", p11!(m, C_Finalize(null_mut())), CKR_OK)?;
        expect(
            "C_Initialize again",
            p11!(m, C_Initialize(null_mut())),
            CKR_OK,
        )?;
        sign_in_child(m, &spki, "second initialisation")?;
        expect("last C_Finalize", p11!(m, C_Finalize(null_mut())), CKR_OK)
    });
    assert_eq!(wait_child(pid, FORK_DEADLINE), ChildEnd::Exited(0));

    // The child was two applications of its own, each ending its login.
    let during: Vec<_> = agent.requests()[seen_before..].to_vec();
    assert!(during.iter().all(|r| r.app_id != parent_app));
    let child_apps: std::collections::HashSet<_> = during
        .iter()
        .filter(|r| r.name == "Sign")
        .map(|r| r.app_id.clone())
        .collect();
    assert_eq!(child_apps.len(), 2);
    assert_eq!(only_login(&agent), parent_app, "the parent's login is gone");

    // The parent carries on: same session, same login, and its pooled
    // connection from before the fork still works (no new connection).
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_USER_FUNCTIONS);
    let sig = sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"after the fork").unwrap();
    assert!(openssl_verifies(
        &spki,
        CKM_SHA256_RSA_PKCS,
        b"after the fork",
        &sig
    ));
    let last = agent.requests().last().cloned().unwrap();
    assert_eq!((last.name, last.app_id), ("Sign", parent_app));
    assert!(
        last.connection <= connections_before,
        "the parent had to reconnect: the child disturbed its connection"
    );
    finalize(m);
}

/// A socket that accepts connections and never answers: a C_Initialize
/// probing it waits for its connect timeout.
struct SilentDaemon {
    dir: std::path::PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl SilentDaemon {
    fn new() -> SilentDaemon {
        let dir = std::env::temp_dir().join(format!(
            "lanyard-p11-silent-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        SilentDaemon { dir, listener }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join("agent.sock")
    }
}

impl Drop for SilentDaemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_child_forked_during_another_threads_c_initialize_does_not_hang() {
    let _g = serial();
    let m = module();
    let _ = p11!(m, C_Finalize(null_mut()));
    let agent = FakeAgent::start();
    let silent = SilentDaemon::new();
    let spki = agent.public_key_der(0);
    std::thread::scope(|s| {
        let initializing = s.spawn(|| initialize(m, &silent.path()));
        // Once the silent daemon has the connection, that thread is inside
        // C_Initialize, waiting for the Hello answer.
        let (_conn, _) = silent.listener.accept().unwrap();
        let pid = fork_child(|| {
            use_socket(&agent.path);
            expect("C_Initialize", p11!(m, C_Initialize(null_mut())), CKR_OK)?;
            sign_in_child(m, &spki, "forked during C_Initialize")?;
            expect("C_Finalize", p11!(m, C_Finalize(null_mut())), CKR_OK)
        });
        assert_eq!(wait_child(pid, FORK_DEADLINE), ChildEnd::Exited(0));
        assert_eq!(initializing.join().unwrap(), CKR_OK);
    });
    // The parent, initialised against the silent daemon, shows no token.
    assert_eq!(slot_list(m, true), Vec::<CK_SLOT_ID>::new());
    finalize(m);
}

#[test]
fn children_forked_while_other_threads_use_the_module_do_not_hang() {
    let (_g, m, agent) = setup();
    let spki = agent.public_key_der(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4 {
            let done = &done;
            // Calls that take the module's locks and make daemon round
            // trips, but do no cryptography (OpenSSL's own locks are not
            // the module's to hand over a fork).
            s.spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let slot = (t % 2) as CK_SLOT_ID;
                    let h = open_session(m, slot, false);
                    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
                    assert_eq!(p11!(m, C_GetTokenInfo(slot, &mut info)), CKR_OK);
                    assert_eq!(find(m, h, CKO_CERTIFICATE).len(), 3);
                    assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK);
                }
            });
        }
        for round in 0..30 {
            let pid = fork_child(|| {
                expect("C_Initialize", p11!(m, C_Initialize(null_mut())), CKR_OK)?;
                sign_in_child(m, &spki, "forked among busy threads")?;
                expect("C_Finalize", p11!(m, C_Finalize(null_mut())), CKR_OK)
            });
            assert_eq!(
                wait_child(pid, FORK_DEADLINE),
                ChildEnd::Exited(0),
                "child {round}"
            );
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    finalize(m);
}
