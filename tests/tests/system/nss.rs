//! NSS, the library of Firefox and Chromium: `modutil -add` registers the module in
//! an NSS database, `certutil -L -h all` lists each card's certificate, NSS's
//! `tstclnt -n TOKEN:NICK -w PIN` completes mutual TLS 1.3 with the card, and
//! `lanyard nss-register` does the registration (given databases, the user's
//! ~/.pki/nssdb and Firefox profiles), idempotently, or says what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{bin_path, module_path, require_tool, run, CmdOutput};

use crate::tls_server::{assert_authenticated, TlsServer, REQUEST};
use crate::world::{scratch, tools_present, world, Card};

fn nss_tools() -> bool {
    tools_present()
        && ["modutil", "certutil", "tstclnt"]
            .iter()
            .all(|t| require_tool(t))
}

fn sql(db: &Path) -> String {
    format!("sql:{}", db.display())
}

/// Runs an NSS tool with the daemon's environment.
fn nss(tool: &str, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(tool);
    cmd.args(args).envs(world().daemon.env());
    run(cmd, None, Duration::from_secs(60))
}

/// A new, empty NSS database with no password in `dir/name`.
fn new_db(dir: &Path, name: &str) -> PathBuf {
    let db = dir.join(name);
    std::fs::create_dir_all(&db).expect("create the NSS database directory");
    nss("certutil", &["-N", "-d", &sql(&db), "--empty-password"]).assert_success("certutil -N");
    db
}

/// `modutil -list`'s entry for the module called "Lanyard": its library path.
fn registered_library(db: &Path) -> Option<String> {
    let out = nss("modutil", &["-list", "-dbdir", &sql(db)]);
    out.assert_success("modutil -list");
    let mut lines = out
        .stdout
        .lines()
        .skip_while(|l| !l.trim().ends_with(". Lanyard"));
    lines.next()?;
    lines
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| l.trim().strip_prefix("library name:"))
        .map(|p| p.trim().to_string())
}

/// How many module entries called Lanyard the database holds (pkcs11.txt).
fn lanyard_entries(db: &Path) -> usize {
    std::fs::read_to_string(db.join("pkcs11.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim() == "name=Lanyard")
        .count()
}

/// The card's certificate nickname as NSS names it, `TOKEN:LABEL`, from
/// `certutil -L -h all`, which must show it as a user certificate (`u,u,u`:
/// its private key is on the token).
fn card_nickname(db: &Path, card: &Card) -> String {
    let out = nss("certutil", &["-L", "-h", "all", "-d", &sql(db)]);
    out.assert_success("certutil -L -h all");
    let nick = format!("{}:{}", card.token_label, card.holder);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{nick} ")))
        .unwrap_or_else(|| panic!("certutil -L does not list {nick:?}\n{out}"));
    assert!(
        line.trim_end().ends_with("u,u,u"),
        "{nick} is not a user certificate (no key on the token?)\n{out}"
    );
    nick
}

#[test]
fn modutil_certutil_and_tstclnt_mutual_tls_with_both_cards() {
    if !nss_tools() {
        return;
    }
    let dir = scratch();
    let db = new_db(dir.path(), "nssdb");
    let module = module_path();
    let added = nss(
        "modutil",
        &[
            "-add",
            "Lanyard",
            "-libfile",
            module.to_str().expect("utf-8"),
            "-dbdir",
            &sql(&db),
            "-force",
        ],
    );
    added.assert_success("modutil -add");
    assert_eq!(
        registered_library(&db).as_deref(),
        module.to_str(),
        "modutil -list does not show the module"
    );
    for (card, sig) in [(&world().rsa, "RSA-PSS"), (&world().ec, "ECDSA")] {
        let nick = card_nickname(&db, card);
        let server = TlsServer::start(dir.path(), &[]);
        // The client trusts the test server's self-signed certificate.
        let trust = nss(
            "certutil",
            &[
                "-A",
                "-d",
                &sql(&db),
                "-n",
                &format!("test server {}", server.port()),
                "-t",
                "P,,",
                "-i",
                server.cert().to_str().expect("utf-8"),
            ],
        );
        trust.assert_success("certutil -A (trust the test server)");
        // The request from a file (-A): with it on a pipe, tstclnt spins after EOF.
        let request = dir.path().join("request.txt");
        std::fs::write(&request, REQUEST).expect("write the request");
        let mut cmd = Command::new("tstclnt");
        cmd.args(["-h", "127.0.0.1", "-p"])
            .arg(server.port().to_string())
            .args(["-d", &sql(&db), "-n", &nick, "-w", card.pin])
            .args(["-V", "tls1.3:tls1.3", "-A"])
            .arg(&request)
            .envs(world().daemon.env());
        let out = run(cmd, None, Duration::from_secs(60));
        let log = server.finish();
        assert_authenticated(&out, &log, card, "TLSv1.3", sig);
    }
}

/// `lanyard nss-register ARGS… --json` with `HOME` (and `PATH`) as given.
fn nss_register(args: &[&str], home: &Path, path: Option<&str>) -> CmdOutput {
    let mut cmd = Command::new(bin_path("lanyard"));
    cmd.arg("nss-register")
        .args(args)
        .env("HOME", home)
        .envs(world().daemon.env());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    run(cmd, None, Duration::from_secs(120))
}

fn report(out: &CmdOutput) -> serde_json::Value {
    out.assert_success("lanyard nss-register --json");
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("nss-register --json printed invalid JSON ({e})\n{out}"))
}

/// The report's entry for `db`.
fn entry<'a>(report: &'a serde_json::Value, db: &Path) -> &'a serde_json::Value {
    report["databases"]
        .as_array()
        .and_then(|list| list.iter().find(|d| d["path"].as_str() == db.to_str()))
        .unwrap_or_else(|| panic!("{} is not in the report: {report:#}", db.display()))
}

#[test]
fn nss_register_with_db_creates_registers_once_and_the_card_is_seen() {
    if !nss_tools() {
        return;
    }
    let dir = scratch();
    let db = dir.path().join("given-db");
    let db_arg = db.to_str().expect("utf-8");
    let first = report(&nss_register(&["--db", db_arg, "--json"], dir.path(), None));
    assert_eq!(
        first["module"].as_str(),
        module_path().to_str(),
        "{first:#}"
    );
    assert_eq!(
        first["databases"].as_array().map(Vec::len),
        Some(1),
        "{first:#}"
    );
    let e = entry(&first, &db);
    assert_eq!(e["created"], true, "{first:#}");
    assert_eq!(e["action"], "registered", "{first:#}");
    assert_eq!(registered_library(&db).as_deref(), module_path().to_str());
    card_nickname(&db, &world().rsa);
    card_nickname(&db, &world().ec);

    let again = report(&nss_register(&["--db", db_arg, "--json"], dir.path(), None));
    let e = entry(&again, &db);
    assert_eq!(e["created"], false, "{again:#}");
    assert_eq!(e["action"], "already-registered", "{again:#}");
    assert_eq!(lanyard_entries(&db), 1, "registered twice");
    // Not the user's databases when --db is given.
    assert!(!dir.path().join(".pki").exists());
}

#[test]
fn nss_register_covers_the_users_nssdb_and_firefox_profiles() {
    if !nss_tools() {
        return;
    }
    let home = scratch();
    let firefox = home.path().join(".mozilla/firefox");
    let profile = new_db(&firefox, "k3x9.default-esr");
    let stale = new_db(&firefox, "p2q8.work");
    std::fs::create_dir_all(firefox.join("no-db.old")).expect("mkdir");
    // A profile still pointing "Lanyard" at a library that moved.
    let moved = home.path().join("old-install/liblanyard_pkcs11.so");
    std::fs::create_dir_all(moved.parent().expect("parent")).expect("mkdir");
    std::fs::copy(module_path(), &moved).expect("copy the module");
    nss(
        "modutil",
        &[
            "-add",
            "Lanyard",
            "-libfile",
            moved.to_str().expect("utf-8"),
            "-dbdir",
            &sql(&stale),
            "-force",
        ],
    )
    .assert_success("modutil -add (the old library)");

    let out = nss_register(&["--json"], home.path(), None);
    let first = report(&out);
    let nssdb = home.path().join(".pki/nssdb");
    assert_eq!(
        first["databases"].as_array().map(Vec::len),
        Some(3),
        "{first:#}"
    );
    let e = entry(&first, &nssdb);
    assert_eq!(
        (&e["kind"], &e["created"], &e["action"]),
        (&"user-nssdb".into(), &true.into(), &"registered".into()),
        "{first:#}"
    );
    let e = entry(&first, &profile);
    assert_eq!(
        (&e["kind"], &e["created"], &e["action"]),
        (
            &"firefox-profile".into(),
            &false.into(),
            &"registered".into()
        ),
        "{first:#}"
    );
    let e = entry(&first, &stale);
    assert_eq!(e["action"], "replaced", "{first:#}");
    assert_eq!(e["previous_library"].as_str(), moved.to_str(), "{first:#}");
    for db in [&nssdb, &profile, &stale] {
        assert_eq!(
            registered_library(db).as_deref(),
            module_path().to_str(),
            "{}",
            db.display()
        );
        assert_eq!(lanyard_entries(db), 1, "{}", db.display());
    }
    card_nickname(&nssdb, &world().rsa);

    // Run again, as text: every database already registered, nothing changed.
    let text = nss_register(&[], home.path(), None);
    text.assert_success("lanyard nss-register (again)");
    assert_eq!(
        text.stdout
            .matches("already registered, nothing changed")
            .count(),
        3,
        "{text}"
    );
    assert!(!text.stdout.contains("Restart"), "{text}");
}

#[test]
fn nss_register_without_modutil_says_what_to_install_and_changes_nothing() {
    if !nss_tools() {
        return;
    }
    let home = scratch();
    let empty_path = home.path().join("bin");
    std::fs::create_dir(&empty_path).expect("mkdir");
    let out = nss_register(&[], home.path(), empty_path.to_str());
    out.assert_failure("lanyard nss-register without modutil");
    assert!(
        out.stderr.contains("modutil") && out.stderr.contains("libnss3-tools"),
        "the error does not say what to install\n{out}"
    );
    assert!(
        !home.path().join(".pki").exists(),
        "a database was created anyway"
    );
}
