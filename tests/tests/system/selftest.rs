//! `pkcs11-tool --test --login`: OpenSC's own battery of checks (digests, signatures,
//! verification, random numbers…) must pass on the RSA and the EC card.

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
