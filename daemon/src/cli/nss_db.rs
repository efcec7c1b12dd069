//! One NSS database (`cert9.db`, the `sql:` format) driven through NSS's own
//! tools: `certutil -N` creates it, `modutil -list/-add/-delete` read and change
//! its PKCS#11 module list. Used by `lanyard nss-register`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::CliError;

/// The name the module is registered under in NSS.
pub const MODULE_NAME: &str = "Lanyard";

/// What to install when an NSS tool is missing.
const INSTALL_HINT: &str = "install NSS's tools (Debian: `apt-get install libnss3-tools`)";

/// NSS's command-line tools, found on `PATH`.
#[derive(Debug, Clone)]
pub struct NssTools {
    modutil: PathBuf,
    certutil: PathBuf,
}

impl NssTools {
    /// Finds `modutil` and `certutil` on `PATH`, or says what to install.
    pub fn find() -> Result<NssTools, CliError> {
        let find = |name: &str| {
            find_on_path(name).ok_or_else(|| {
                CliError::Other(format!(
                    "`{name}` is not installed (not found on PATH); {INSTALL_HINT}"
                ))
            })
        };
        Ok(NssTools {
            modutil: find("modutil")?,
            certutil: find("certutil")?,
        })
    }

    /// Creates an empty database with no password in `dir` (made 0700 if absent).
    pub fn create(&self, dir: &Path) -> Result<(), CliError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CliError::Other(format!("cannot create {}: {e}", dir.display())))?;
        let mut cmd = Command::new(&self.certutil);
        cmd.arg("-N")
            .arg("-d")
            .arg(sql_dir(dir))
            .arg("--empty-password");
        run(cmd, "certutil -N", dir).map(drop)
    }

    /// The library registered as [`MODULE_NAME`] in the database at `dir`, if any.
    pub fn registered_library(&self, dir: &Path) -> Result<Option<PathBuf>, CliError> {
        let mut cmd = Command::new(&self.modutil);
        cmd.arg("-list").arg("-dbdir").arg(sql_dir(dir));
        let out = run(cmd, "modutil -list", dir)?;
        Ok(library_of(
            &String::from_utf8_lossy(&out.stdout),
            MODULE_NAME,
        ))
    }

    /// Registers `module` as [`MODULE_NAME`] in the database at `dir`.
    pub fn add(&self, dir: &Path, module: &Path) -> Result<(), CliError> {
        let mut cmd = Command::new(&self.modutil);
        // -force: no "close your browser" question on the terminal.
        cmd.args(["-add", MODULE_NAME, "-libfile"])
            .arg(module)
            .arg("-dbdir")
            .arg(sql_dir(dir))
            .arg("-force");
        run(cmd, "modutil -add", dir).map(drop)
    }

    /// Removes [`MODULE_NAME`] from the database at `dir`.
    pub fn delete(&self, dir: &Path) -> Result<(), CliError> {
        let mut cmd = Command::new(&self.modutil);
        cmd.args(["-delete", MODULE_NAME, "-dbdir"])
            .arg(sql_dir(dir))
            .arg("-force");
        run(cmd, "modutil -delete", dir).map(drop)
    }
}

/// Whether `dir` holds an NSS database in the `sql:` format.
pub fn is_database(dir: &Path) -> bool {
    dir.join("cert9.db").is_file()
}

fn sql_dir(dir: &Path) -> OsString {
    let mut arg = OsString::from("sql:");
    arg.push(dir);
    arg
}

fn run(mut cmd: Command, what: &str, dir: &Path) -> Result<Output, CliError> {
    // Never a question on the user's terminal: NSS tools read answers from stdin.
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CliError::Other(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        return Ok(out);
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim();
    let said = if said.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        said.to_string()
    };
    Err(CliError::Other(format!(
        "{what} failed for the NSS database {} ({}): {said}",
        dir.display(),
        out.status
    )))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The `library name:` of module `name` in `modutil -list` output:
///
/// ```text
///   2. Lanyard
///         library name: /usr/lib/x86_64-linux-gnu/pkcs11/liblanyard_pkcs11.so
/// ```
fn library_of(listing: &str, name: &str) -> Option<PathBuf> {
    let mut in_module = false;
    for line in listing.lines() {
        let trimmed = line.trim();
        if let Some((number, title)) = trimmed.split_once(". ") {
            if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
                in_module = title.trim() == name;
                continue;
            }
        }
        if in_module {
            if let Some(path) = trimmed.strip_prefix("library name:") {
                return Some(PathBuf::from(path.trim()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\nListing of PKCS #11 Modules\n-----\n  1. NSS Internal PKCS #11 Module\n\t   uri: pkcs11:library-manufacturer=Mozilla%20Foundation\n\t slots: 2 slots attached\n\n  2. Lanyard\n\tlibrary name: /opt/lanyard/liblanyard_pkcs11.so\n\t   uri: pkcs11:library-manufacturer=Lanyard\n\n  3. Lanyard old\n\tlibrary name: /old/liblanyard_pkcs11.so\n";

    #[test]
    fn finds_the_library_of_the_named_module_only() {
        assert_eq!(
            library_of(LISTING, "Lanyard"),
            Some(PathBuf::from("/opt/lanyard/liblanyard_pkcs11.so"))
        );
        assert_eq!(
            library_of(LISTING, "Lanyard old"),
            Some(PathBuf::from("/old/liblanyard_pkcs11.so"))
        );
        assert_eq!(library_of(LISTING, "NSS Internal PKCS #11 Module"), None);
        assert_eq!(library_of(LISTING, "Other"), None);
        assert_eq!(library_of("", "Lanyard"), None);
    }

    #[test]
    fn database_arguments_use_the_sql_format() {
        assert_eq!(sql_dir(Path::new("/h/.pki/nssdb")), "sql:/h/.pki/nssdb");
    }
}
