//! `lanyard nss-register`: registers the PKCS#11 module with NSS, for the
//! user's database (`~/.pki/nssdb`, which Chromium uses; created if missing) and
//! every Firefox profile, or for the databases given with `--db`. Idempotent.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::nss_db::{is_database, NssTools, MODULE_NAME};
use super::{print_out, CliError};

/// The module's file name.
const MODULE_FILE: &str = "liblanyard_pkcs11.so";

/// What `nss-register` was asked to do.
#[derive(Debug)]
pub struct NssRegisterArgs<'a> {
    /// `--db DIR`, repeatable; empty means the user's databases.
    pub dbs: &'a [PathBuf],
    /// `--module PATH`, else found next to `lanyard` or in the system's pkcs11 directory.
    pub module: Option<&'a Path>,
    /// Print JSON.
    pub json: bool,
}

/// Why a database is on the list.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum DbKind {
    /// Given with `--db`.
    Given,
    /// `~/.pki/nssdb`, NSS's per-user database (Chromium, many NSS tools).
    UserNssdb,
    /// A Firefox profile directory holding cert9.db.
    FirefoxProfile,
}

impl DbKind {
    fn describe(self) -> &'static str {
        match self {
            DbKind::Given => "NSS database",
            DbKind::UserNssdb => "NSS user database (Chromium)",
            DbKind::FirefoxProfile => "Firefox profile",
        }
    }
}

/// What was done to one database.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Action {
    /// The module was added.
    Registered,
    /// The module was already registered with this library: nothing changed.
    AlreadyRegistered,
    /// A registration pointing at another library was replaced.
    Replaced,
    /// Something failed; see `error`.
    Failed,
}

/// One database in the report.
#[derive(Debug, Serialize)]
struct DbReport {
    path: PathBuf,
    kind: DbKind,
    /// The database did not exist and was created.
    created: bool,
    action: Action,
    /// The library registered before, when it was replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_library: Option<PathBuf>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

/// The whole report (`--json`).
#[derive(Debug, Serialize)]
struct Report {
    module_name: &'static str,
    module: PathBuf,
    databases: Vec<DbReport>,
}

/// Runs `lanyard nss-register`.
pub fn run(args: NssRegisterArgs<'_>) -> Result<(), CliError> {
    let tools = NssTools::find()?;
    let module = match args.module {
        Some(m) => checked_module(m)?,
        None => find_module()?,
    };
    let targets = targets(args.dbs)?;
    let databases: Vec<DbReport> = targets
        .into_iter()
        .map(|(path, kind)| register(&tools, &module, path, kind))
        .collect();
    let failed = databases
        .iter()
        .filter(|d| d.action == Action::Failed)
        .count();
    let report = Report {
        module_name: MODULE_NAME,
        module,
        databases,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Other(format!("JSON output: {e}")))?;
        print_out(&format!("{text}\n"))?;
    } else {
        print_out(&describe(&report))?;
    }
    match failed {
        0 => Ok(()),
        n => Err(CliError::Other(format!(
            "{n} of {} NSS databases could not be registered (see above)",
            report.databases.len()
        ))),
    }
}

fn register(tools: &NssTools, module: &Path, path: PathBuf, kind: DbKind) -> DbReport {
    let mut report = DbReport {
        path,
        kind,
        created: false,
        action: Action::Failed,
        previous_library: None,
        error: String::new(),
    };
    match register_one(tools, module, &mut report) {
        Ok(action) => report.action = action,
        Err(e) => report.error = e.to_string(),
    }
    report
}

fn register_one(
    tools: &NssTools,
    module: &Path,
    report: &mut DbReport,
) -> Result<Action, CliError> {
    let dir = report.path.clone();
    if !is_database(&dir) {
        // Only the user's own database is made; a Firefox profile always has one.
        tools.create(&dir)?;
        report.created = true;
    }
    match tools.registered_library(&dir)? {
        Some(lib) if same_file(&lib, module) => Ok(Action::AlreadyRegistered),
        Some(lib) => {
            tools.delete(&dir)?;
            tools.add(&dir, module)?;
            report.previous_library = Some(lib);
            Ok(Action::Replaced)
        }
        None => {
            tools.add(&dir, module)?;
            Ok(Action::Registered)
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The databases to register: those given, or the user's.
fn targets(given: &[PathBuf]) -> Result<Vec<(PathBuf, DbKind)>, CliError> {
    if !given.is_empty() {
        return given
            .iter()
            .map(|d| absolute(d).map(|d| (d, DbKind::Given)))
            .collect();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .ok_or_else(|| {
            CliError::Usage(
                "HOME is not set to an absolute path; name the database with --db DIR".into(),
            )
        })?;
    let mut list = vec![(home.join(".pki").join("nssdb"), DbKind::UserNssdb)];
    list.extend(
        firefox_profiles(&home.join(".mozilla").join("firefox"))
            .into_iter()
            .map(|p| (p, DbKind::FirefoxProfile)),
    );
    Ok(list)
}

/// Profile directories under `root` that hold an NSS database, sorted.
fn firefox_profiles(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut profiles: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && is_database(p))
        .collect();
    profiles.sort();
    profiles
}

fn absolute(dir: &Path) -> Result<PathBuf, CliError> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(dir))
        .map_err(|e| CliError::Other(format!("cannot resolve {}: {e}", dir.display())))
}

fn checked_module(path: &Path) -> Result<PathBuf, CliError> {
    let path = absolute(path)?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(CliError::Usage(format!(
            "no PKCS#11 module at {} (--module)",
            path.display()
        )))
    }
}

/// Where the module may be: next to this `lanyard` (a build tree or a tarball),
/// then the system's PKCS#11 directories (the Debian package's place first).
fn module_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    dirs.push(Path::new("/usr/lib").join(multiarch).join("pkcs11"));
    dirs.push(PathBuf::from("/usr/lib/pkcs11"));
    dirs.into_iter().map(|d| d.join(MODULE_FILE)).collect()
}

fn find_module() -> Result<PathBuf, CliError> {
    let candidates = module_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            CliError::Other(format!(
                "cannot find {MODULE_FILE} (looked at {}); give its path with --module PATH",
                list.join(", ")
            ))
        })
}

fn describe(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "PKCS#11 module \"{}\": {}",
        report.module_name,
        report.module.display()
    );
    if report.databases.is_empty() {
        out.push_str("No NSS database found.\n");
    }
    for db in &report.databases {
        let created = if db.created { "created, " } else { "" };
        let what = match db.action {
            Action::Registered => "registered".to_string(),
            Action::AlreadyRegistered => "already registered, nothing changed".to_string(),
            Action::Replaced => format!(
                "registered (replacing {})",
                db.previous_library
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            Action::Failed => format!("FAILED: {}", db.error),
        };
        let _ = writeln!(
            out,
            "  {} ({}): {created}{what}",
            db.path.display(),
            db.kind.describe()
        );
    }
    if report
        .databases
        .iter()
        .any(|d| matches!(d.action, Action::Registered | Action::Replaced))
    {
        out.push_str("Restart the browser for it to see the card.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firefox_profiles_are_the_directories_with_a_database() {
        let root = tempfile::tempdir().unwrap();
        let with_db = root.path().join("b.default-release");
        let without = root.path().join("a.empty");
        std::fs::create_dir_all(&with_db).unwrap();
        std::fs::create_dir_all(&without).unwrap();
        std::fs::write(with_db.join("cert9.db"), b"").unwrap();
        std::fs::write(root.path().join("profiles.ini"), b"").unwrap();
        assert_eq!(firefox_profiles(root.path()), vec![with_db]);
        assert!(firefox_profiles(&root.path().join("absent")).is_empty());
    }

    #[test]
    fn given_databases_replace_the_users_and_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let list = targets(&[PathBuf::from("rel/db"), PathBuf::from("/abs/db")]).unwrap();
        assert_eq!(
            list,
            vec![
                (cwd.join("rel/db"), DbKind::Given),
                (PathBuf::from("/abs/db"), DbKind::Given)
            ]
        );
    }

    #[test]
    fn a_missing_module_is_a_usage_error_naming_it() {
        let err = checked_module(Path::new("/nonexistent/liblanyard_pkcs11.so")).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)));
        assert!(err
            .to_string()
            .contains("/nonexistent/liblanyard_pkcs11.so"));
    }

    #[test]
    fn the_text_report_says_what_happened_to_each_database() {
        let report = Report {
            module_name: MODULE_NAME,
            module: PathBuf::from("/m/liblanyard_pkcs11.so"),
            databases: vec![
                DbReport {
                    path: PathBuf::from("/h/.pki/nssdb"),
                    kind: DbKind::UserNssdb,
                    created: true,
                    action: Action::Registered,
                    previous_library: None,
                    error: String::new(),
                },
                DbReport {
                    path: PathBuf::from("/h/ff"),
                    kind: DbKind::FirefoxProfile,
                    created: false,
                    action: Action::Failed,
                    previous_library: None,
                    error: "modutil -add failed".into(),
                },
            ],
        };
        let text = describe(&report);
        assert!(text.contains("/h/.pki/nssdb (NSS user database (Chromium)): created, registered"));
        assert!(text.contains("/h/ff (Firefox profile): FAILED: modutil -add failed"));
        assert!(text.contains("Restart the browser"));
    }
}
