//! `systemd-analyze verify` of the installed units (no systemd runs here): the CA's
//! system unit, and the user socket and service with the user search path.

use std::process::Command;
use std::time::Duration;

use lanyard_test_support::run;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every unit the packages install verifies cleanly, Documentation= man pages included.
pub fn verify() {
    let mut system = Command::new("systemd-analyze");
    system.args(["verify", "/usr/lib/systemd/system/lanyard-ca.service"]);
    let out = run(system, None, TIMEOUT);
    out.assert_success("systemd-analyze verify lanyard-ca.service");
    assert!(
        out.stderr.trim().is_empty(),
        "systemd-analyze complained\n{out}"
    );

    // The user manager needs a runtime directory for %t.
    let runtime = tempfile::Builder::new()
        .prefix("lanyard-units-test.")
        .tempdir()
        .expect("cannot create a runtime directory");
    let mut user = Command::new("systemd-analyze");
    user.args([
        "--user",
        "verify",
        "/usr/lib/systemd/user/lanyardd.socket",
        "/usr/lib/systemd/user/lanyardd.service",
    ])
    .env("XDG_RUNTIME_DIR", runtime.path());
    let out = run(user, None, TIMEOUT);
    out.assert_success("systemd-analyze --user verify lanyardd.socket lanyardd.service");
    assert!(
        out.stderr.trim().is_empty(),
        "systemd-analyze complained\n{out}"
    );
}
