//! C_WaitForSlotEvent: a card's removal and arrival are each reported once,
//! with CKF_DONT_BLOCK and by a blocking wait (which really waits until
//! then), and a blocking wait ends with CKR_CRYPTOKI_NOT_INITIALIZED when
//! another thread calls C_Finalize, even if C_Initialize follows at once.

mod support;

use std::ptr::null_mut;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use support::fake_agent::FakeAgent;
use support::*;

/// How long a blocking wait may take to see a change it polls for (every
/// 500 ms); generous, the wait usually returns within one poll.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

fn wait(m: &Module, flags: CK_FLAGS) -> (CK_RV, CK_SLOT_ID) {
    let mut slot: CK_SLOT_ID = 99;
    let rv = p11!(m, C_WaitForSlotEvent(flags, &mut slot, null_mut()));
    (rv, slot)
}

/// Polls until the daemon has answered `more` further ListCards, i.e. a
/// blocking wait started after `before` has looked (and found nothing).
fn until_polled(agent: &FakeAgent, before: usize, more: usize) {
    let start = Instant::now();
    while agent.count("ListCards") < before + more {
        assert!(start.elapsed() < EVENT_DEADLINE, "the wait never polled");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a blocking C_WaitForSlotEvent on another thread; its answer
/// arrives on the returned channel.
fn blocking_wait(m: &'static Module) -> mpsc::Receiver<(CK_RV, CK_SLOT_ID)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait(m, 0));
    });
    rx
}

/// The blocking wait's answer; a wait still blocked at the deadline fails
/// the test (after C_Finalize, which releases it).
fn answer(m: &Module, rx: &mpsc::Receiver<(CK_RV, CK_SLOT_ID)>) -> (CK_RV, CK_SLOT_ID) {
    rx.recv_timeout(EVENT_DEADLINE).unwrap_or_else(|_| {
        let _ = p11!(m, C_Finalize(null_mut()));
        panic!("C_WaitForSlotEvent did not return")
    })
}

#[test]
fn removal_and_arrival_are_reported_without_blocking() {
    let (_g, m, agent) = setup();
    // The cards present at C_Initialize are the starting state, not events.
    assert_eq!(wait(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    let card = agent.take_card(1);
    assert_eq!(wait(m, CKF_DONT_BLOCK), (CKR_OK, 1));
    assert_eq!(wait(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    agent.put_card(card);
    assert_eq!(wait(m, CKF_DONT_BLOCK), (CKR_OK, 1));
    assert_eq!(wait(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    // Both slots at once: one event each, in slot order.
    let (a, b) = (agent.take_card(0), agent.take_card(1));
    assert_eq!(wait(m, CKF_DONT_BLOCK), (CKR_OK, 0));
    assert_eq!(wait(m, CKF_DONT_BLOCK), (CKR_OK, 1));
    assert_eq!(wait(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    agent.put_card(b);
    agent.put_card(a);
    assert_eq!(wait(m, CKF_DONT_BLOCK), (CKR_OK, 0));
    assert_eq!(wait(m, CKF_DONT_BLOCK), (CKR_OK, 1));
    assert_eq!(wait(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    finalize(m);
}

#[test]
fn a_blocking_wait_returns_at_a_removal_and_at_an_arrival() {
    let (_g, m, agent) = setup();
    let polled = agent.count("ListCards");
    let rx = blocking_wait(m);
    // It looks, finds nothing and keeps waiting.
    until_polled(&agent, polled, 2);
    assert!(rx.try_recv().is_err(), "returned without an event");
    let card = agent.take_card(0);
    assert_eq!(answer(m, &rx), (CKR_OK, 0));
    assert_eq!(slot_list(m, true), vec![1]);

    let polled = agent.count("ListCards");
    let rx = blocking_wait(m);
    until_polled(&agent, polled, 2);
    assert!(rx.try_recv().is_err(), "returned without an event");
    agent.put_card(card);
    assert_eq!(answer(m, &rx), (CKR_OK, 0));
    assert_eq!(slot_list(m, true), vec![0, 1]);
    assert_eq!(wait(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    finalize(m);
}

#[test]
fn c_finalize_ends_a_blocking_wait_even_if_c_initialize_follows_at_once() {
    let (_g, m, agent) = setup();
    let polled = agent.count("ListCards");
    let rx = blocking_wait(m);
    until_polled(&agent, polled, 1);
    finalize(m);
    // A new initialisation is not the one the wait was made in.
    assert_eq!(initialize(m, &agent.path), CKR_OK);
    assert_eq!(answer(m, &rx).0, CKR_CRYPTOKI_NOT_INITIALIZED);
    // Waits in the new initialisation work, from its own starting state.
    assert_eq!(wait(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    let _card = agent.take_card(1);
    assert_eq!(wait(m, CKF_DONT_BLOCK), (CKR_OK, 1));
    finalize(m);

    // And C_Finalize alone ends it too.
    assert_eq!(initialize(m, &agent.path), CKR_OK);
    let polled = agent.count("ListCards");
    let rx = blocking_wait(m);
    until_polled(&agent, polled, 1);
    finalize(m);
    assert_eq!(answer(m, &rx).0, CKR_CRYPTOKI_NOT_INITIALIZED);
}
