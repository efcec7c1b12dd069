//! The assessor's checks on one machine: SECURITY.md states the threat model the
//! issue lists, and (run as `nobody`, since root's capabilities bypass them) the
//! daemon is not dumpable and refuses an open card store.

use lanyard_test_support::paths::repo_root;

#[test]
fn security_md_states_the_threat_model() {
    let path = repo_root().join("SECURITY.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for heading in [
        "### A lost or stolen laptop",
        "### A copied card file restored to reset the retry counter",
        "### Malware running as the same user",
        "### A malicious application loading the module",
        "### Other local users reaching the card through pcscd (PC/SC on)",
        "### A compromised CA host",
        "## What Lanyard does not protect against",
    ] {
        assert!(text.contains(heading), "SECURITY.md lacks {heading:?}");
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for claim in [
        "Offline guessing of a 6-digit PIN is prevented only when the device secret is sealed in a TPM with dictionary-attack lockout.",
        "is **not built yet**",
        "sign **while the card is unlocked**",
        "SO_PEERCRED",
        "PR_SET_DUMPABLE=0",
    ] {
        assert!(flat.contains(claim), "SECURITY.md does not say {claim:?}");
    }
}
