//! `pkcs11-tool --test --login`: OpenSC's own battery of checks (digests, signatures,
//! verification, random numbers…) must pass on the RSA and the EC card, and its fork
//! test (C_Initialize again in a child) too.

use crate::world::{tools_present, world, Card};

fn self_test(card: &Card) {
    let w = world();
    let slot = card.slot.to_string();
    let out = w
        .daemon
        .pkcs11_tool()
        .run(&["--slot", &slot, "--test", "--login", "--pin", card.pin]);
    out.assert_success("pkcs11-tool --test --login");
    assert!(
        out.stdout.contains("No errors"),
        "pkcs11-tool --test did not report `No errors`\n{out}"
    );
}

#[test]
fn pkcs11_tool_self_test_passes_on_the_rsa_card() {
    if !tools_present() {
        return;
    }
    self_test(&world().rsa);
}

#[test]
fn pkcs11_tool_self_test_passes_on_the_ec_card() {
    if !tools_present() {
        return;
    }
    self_test(&world().ec);
}

#[test]
fn pkcs11_tool_fork_test_passes() {
    if !tools_present() {
        return;
    }
    // C_Initialize in a forked child must work (the child re-initialises its pool).
    let out = world().daemon.pkcs11_tool().run(&["--test-fork"]);
    out.assert_success("pkcs11-tool --test-fork");
    assert!(out.stdout.contains("forked child"), "{out}");
    assert!(
        !out.combined().contains("CKR_"),
        "an error in the forked child\n{out}"
    );
}
