//! p11-kit: with `packaging/p11-kit/lanyard.module` installed in a temporary user
//! config (`~/.config/pkcs11/modules/`), `p11-kit list-modules` shows Lanyard and
//! its tokens, and p11tool finds the cards with no `--provider`; the RFC 7512
//! `pkcs11:` URIs it prints for tokens and objects carry the module's token info
//! (label, manufacturer, model, serial) and object attributes (id, label, type).
//!
//! p11-kit ignores user configuration in programs running as root, so as root the
//! clients run in a user namespace as uid 1000 (still uid 0 to the daemon).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::paths::repo_root;
use lanyard_test_support::{module_path, require_tool, run, CmdOutput};

use crate::pkcs11_uri::{hex_bytes, p11tool_urls, Pkcs11Uri};
use crate::world::{agent_socket, running_as_root, scratch, tools_present, world, Card};

fn p11_kit_tools() -> bool {
    tools_present()
        && require_tool("p11-kit")
        && require_tool("p11tool")
        && (!running_as_root() || require_tool("unshare"))
}

/// A home directory whose p11-kit user config has `lanyard.module` (from
/// packaging/, the `module:` line pointed at the built module) when `install`.
fn home_with_module(install: bool) -> tempfile::TempDir {
    let home = scratch();
    let modules = home.path().join(".config/pkcs11/modules");
    std::fs::create_dir_all(&modules).expect("mkdir ~/.config/pkcs11/modules");
    if install {
        let packaged =
            std::fs::read_to_string(repo_root().join("packaging/p11-kit/lanyard.module"))
                .expect("read packaging/p11-kit/lanyard.module");
        assert!(
            packaged
                .lines()
                .any(|l| l == "module: liblanyard_pkcs11.so"),
            "the packaged file no longer names the module by file name:\n{packaged}"
        );
        let installed = packaged.replace(
            "module: liblanyard_pkcs11.so",
            &format!("module: {}", module_path().display()),
        );
        std::fs::write(modules.join("lanyard.module"), installed).expect("install lanyard.module");
    }
    home
}

/// Runs `program ARGS…` as a p11-kit user with `home` (see the module docs).
fn as_user(home: &Path, program: &str, args: &[&str], pin: Option<&str>) -> CmdOutput {
    let mut cmd = if running_as_root() {
        let mut c = Command::new("unshare");
        c.args(["--user", "--map-user=1000", "--map-group=1000", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("LANYARD_AGENT_SOCK", agent_socket());
    if let Some(pin) = pin {
        cmd.env("GNUTLS_PIN", pin);
    }
    run(cmd, None, Duration::from_secs(60))
}

/// The token lines `pkcs11-tool -L` prints for the card's slot, by name
/// ("token label", "token manufacturer", "token model", "serial num").
fn token_info(card: &Card) -> Vec<(String, String)> {
    let slot = card.slot.to_string();
    let out = world().daemon.pkcs11_tool().run(&["-L"]);
    out.assert_success("pkcs11-tool -L");
    out.stdout
        .split("\nSlot ")
        .find(|block| block.starts_with(&format!("{slot} (")))
        .unwrap_or_else(|| panic!("no slot {slot}\n{out}"))
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(" : "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(info: &'a [(String, String)], name: &str) -> &'a str {
    info.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("pkcs11-tool -L has no {name:?}: {info:?}"))
}

#[test]
fn p11_kit_lists_lanyard_once_its_module_file_is_installed() {
    if !p11_kit_tools() {
        return;
    }
    let w = world();
    let bare = home_with_module(false);
    let before = as_user(bare.path(), "p11-kit", &["list-modules"], None);
    before.assert_success("p11-kit list-modules (no lanyard.module)");
    assert!(
        !before.stdout.contains("Lanyard"),
        "Lanyard listed before its module file is installed\n{before}"
    );

    let home = home_with_module(true);
    let out = as_user(home.path(), "p11-kit", &["list-modules"], None);
    out.assert_success("p11-kit list-modules");
    let section: String = out
        .stdout
        .split_inclusive('\n')
        .skip_while(|l| !l.starts_with("lanyard: "))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with(' '))
        .map(|(_, l)| l)
        .collect();
    assert!(
        section.starts_with(&format!("lanyard: {}", module_path().display())),
        "no `lanyard:` module\n{out}"
    );
    assert!(section.contains("library-manufacturer: Lanyard"), "{out}");
    for card in [&w.rsa, &w.ec] {
        let info = token_info(card);
        let token = section
            .split("    token: ")
            .find(|t| t.starts_with(&format!("{}\n", card.token_label)))
            .unwrap_or_else(|| panic!("token {:?} not listed\n{out}", card.token_label));
        for (p11kit, tool) in [
            ("manufacturer", "token manufacturer"),
            ("model", "token model"),
            ("serial-number", "serial num"),
        ] {
            let want = format!("{p11kit}: {}\n", field(&info, tool));
            assert!(
                token.contains(&want),
                "{want:?} missing for {}\n{out}",
                card.holder
            );
        }
    }
}

/// The object URIs p11tool prints for `card`'s token after login, found through
/// p11-kit (no --provider).
fn object_uris(home: &Path, card: &Card) -> Vec<Pkcs11Uri> {
    let token = format!(
        "pkcs11:token={}",
        crate::world::percent_encode(&card.token_label)
    );
    let out = as_user(
        home,
        "p11tool",
        &["--login", "--list-all", &token],
        Some(card.pin),
    );
    out.assert_success("p11tool --login --list-all");
    p11tool_urls(&out.stdout)
}

#[test]
fn p11tool_finds_the_cards_through_p11_kit_with_uris_matching_the_token() {
    if !p11_kit_tools() {
        return;
    }
    let w = world();
    let home = home_with_module(true);
    let out = as_user(home.path(), "p11tool", &["--list-tokens"], None);
    out.assert_success("p11tool --list-tokens");
    let tokens = p11tool_urls(&out.stdout);
    for card in [&w.rsa, &w.ec] {
        let info = token_info(card);
        let uri = tokens
            .iter()
            .find(|u| u.text("token") == Some(card.token_label.as_str()))
            .unwrap_or_else(|| panic!("p11tool does not list {:?}\n{out}", card.token_label));
        for (attr, tool) in [
            ("token", "token label"),
            ("manufacturer", "token manufacturer"),
            ("model", "token model"),
            ("serial", "serial num"),
        ] {
            assert_eq!(uri.text(attr), Some(field(&info, tool)), "{attr}\n{out}");
        }

        // Every object pkcs11-tool sees after login, by (type, id, label), and no other.
        let objects = w.daemon.pkcs11_tool().objects(card.slot, Some(card.pin));
        let mut expected: Vec<(String, Vec<u8>, String)> = objects
            .iter()
            .map(|o| {
                let kind = match o.kind.as_str() {
                    "Certificate Object" => "cert",
                    "Public Key Object" => "public",
                    "Private Key Object" => "private",
                    other => panic!("unexpected object kind {other:?}"),
                };
                (
                    kind.to_string(),
                    hex_bytes(o.id().unwrap_or_default()),
                    o.field("label").unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut listed: Vec<(String, Vec<u8>, String)> = object_uris(home.path(), card)
            .iter()
            .map(|u| {
                assert_eq!(u.text("token"), Some(card.token_label.as_str()), "{u:?}");
                assert_eq!(u.text("serial"), Some(field(&info, "serial num")), "{u:?}");
                (
                    u.text("type").unwrap_or_default().to_string(),
                    u.get("id").unwrap_or_default().to_vec(),
                    u.text("object").unwrap_or_default().to_string(),
                )
            })
            .collect();
        expected.sort();
        listed.sort();
        assert_eq!(
            listed, expected,
            "p11tool's URIs and the token's objects differ"
        );
        assert!(
            listed.contains(&(
                "private".into(),
                hex_bytes(&card.key_id),
                card.holder.into()
            )),
            "{listed:?}"
        );
    }
}
