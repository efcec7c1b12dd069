//! Signing at once: threads of one application initialised with
//! CKF_OS_LOCKING_OK, each on its own session, and several processes (this
//! test binary started again) each with its own initialisation, login and
//! signatures. Every signature is checked with OpenSSL.

mod support;

use std::collections::{HashMap, HashSet};
use std::ptr::null_mut;

use cryptoki_sys::*;
use support::fake_agent::FakeAgent;
use support::process::{spawn_test, wait_process, CHILD_DEADLINE};
use support::signature::openssl_verifies;
use support::*;

const PINS: [&str; 2] = ["123456", "654321"];
const MECHS: [CK_MECHANISM_TYPE; 2] = [CKM_SHA256_RSA_PKCS, CKM_ECDSA_SHA256];

/// The token's public key (CKA_PUBLIC_KEY_INFO), as an application finds it.
fn token_spki(m: &Module, h: CK_SESSION_HANDLE) -> Vec<u8> {
    let public = find(m, h, CKO_PUBLIC_KEY);
    assert_eq!(public.len(), 1);
    attribute(m, h, public[0], CKA_PUBLIC_KEY_INFO)
}

/// Signs `count` documents named after `who` on the token in `slot` through
/// session `h` (whose application is logged in) and checks each with OpenSSL.
fn sign_and_check(m: &Module, h: CK_SESSION_HANDLE, slot: usize, who: &str, count: usize) {
    let key = private_key(m, h);
    let spki = token_spki(m, h);
    for i in 0..count {
        let data = format!("{who}: prescription {i}");
        let sig = sign(m, h, MECHS[slot], &mut [], key, data.as_bytes())
            .unwrap_or_else(|rv| panic!("{who}: signature {i} failed with {rv:#x}"));
        assert!(
            openssl_verifies(&spki, MECHS[slot], data.as_bytes(), &sig),
            "{who}: signature {i} does not verify"
        );
    }
}

#[test]
fn eight_threads_sign_fifty_times_each_on_their_own_sessions() {
    let _g = serial();
    let m = module();
    let _ = p11!(m, C_Finalize(null_mut()));
    let agent = FakeAgent::start();
    assert_eq!(
        initialize_with_flags(m, &agent.path, CKF_OS_LOCKING_OK),
        CKR_OK
    );
    // The application logs in once per token; its sessions share the login.
    let logged: Vec<CK_SESSION_HANDLE> = (0..2)
        .map(|slot| {
            let h = open_session(m, slot, false);
            assert_eq!(login(m, h, PINS[slot as usize]), CKR_OK);
            h
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..8usize {
            s.spawn(move || {
                let slot = t % 2;
                let h = open_session(m, slot as CK_SLOT_ID, false);
                sign_and_check(m, h, slot, &format!("thread {t}"), 50);
                assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK);
            });
        }
    });
    let requests = agent.requests();
    let signs: Vec<_> = requests.iter().filter(|r| r.name == "Sign").collect();
    assert_eq!(signs.len(), 400);
    // The signatures went out side by side over the pool, not one by one.
    let connections: HashSet<u64> = signs.iter().map(|r| r.connection).collect();
    assert!(
        connections.len() > 1,
        "400 signatures from 8 threads all used one connection"
    );
    // The login sessions are still logged in.
    for h in logged {
        let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
        assert_eq!(info.state, CKS_RO_USER_FUNCTIONS);
    }
    finalize(m);
}

const CHILD_TEST: &str = "child_process_signs_and_verifies";
const CHILD_SOCK: &str = "LANYARD_P11_TEST_CHILD_SOCK";
const CHILD_SLOT: &str = "LANYARD_P11_TEST_CHILD_SLOT";
const SIGNATURES_PER_PROCESS: usize = 25;

#[test]
fn several_processes_sign_at_once() {
    let (_g, m, agent) = setup();
    let mut children: Vec<_> = (0..4)
        .map(|i| {
            spawn_test(
                CHILD_TEST,
                &[
                    (CHILD_SOCK, agent.path.display().to_string()),
                    (CHILD_SLOT, (i % 2).to_string()),
                ],
            )
        })
        .collect();
    // This process signs while the children do.
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, PINS[0]), CKR_OK);
    sign_and_check(m, h, 0, "parent", SIGNATURES_PER_PROCESS);
    for child in &mut children {
        let status = wait_process(child, CHILD_DEADLINE).expect("a child process hung");
        assert!(status.success(), "a child process failed: {status}");
    }
    // Five applications, each with its own id, login and signatures.
    let mut per_app: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in agent.requests().iter().filter(|r| r.name == "Sign") {
        *per_app.entry(r.app_id.clone()).or_default() += 1;
    }
    assert_eq!(per_app.len(), 5);
    assert!(per_app.values().all(|n| *n == SIGNATURES_PER_PROCESS));
    let pids: HashSet<String> = agent
        .requests()
        .iter()
        .filter_map(|r| r.client.clone())
        .filter_map(|c| c.split(" pid ").nth(1).map(str::to_string))
        .collect();
    assert_eq!(pids.len(), 5, "Hello from {pids:?}");
    finalize(m);
}

/// One of the processes of [`several_processes_sign_at_once`]: initialises
/// the module in this process, logs in and signs.
#[test]
#[ignore = "started in child processes by several_processes_sign_at_once"]
fn child_process_signs_and_verifies() {
    let Some(sock) = std::env::var_os(CHILD_SOCK) else {
        eprintln!("only meaningful in a child of several_processes_sign_at_once");
        return;
    };
    let slot: usize = std::env::var(CHILD_SLOT)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("slot number");
    let m = module();
    assert_eq!(
        initialize_with_flags(m, std::path::Path::new(&sock), CKF_OS_LOCKING_OK),
        CKR_OK
    );
    let h = open_session(m, slot as CK_SLOT_ID, false);
    assert_eq!(login(m, h, PINS[slot]), CKR_OK);
    let who = format!("process {}", std::process::id());
    sign_and_check(m, h, slot, &who, SIGNATURES_PER_PROCESS);
    finalize(m);
}
