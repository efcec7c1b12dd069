//! What protects the card store at rest on this machine, for `lanyard status`:
//! where the device secret is kept (sealed to a TPM when the store holds
//! `device.secret.tpm`, with lanyardd.toml's TCTI), whether a TPM is present and
//! whether the store's filesystem sits on dm-crypt (LUKS), and a warning when neither protects it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

/// The TPM resource manager device a TPM-sealed secret would use.
const TPM_DEVICE: &str = "/dev/tpmrm0";

/// `device_protection` in `status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceProtection {
    /// Where the device secret is kept: `tpm` (sealed) or `file`.
    pub device_secret: &'static str,
    /// With `tpm`: the TCTI from lanyardd.toml; otherwise "".
    pub tpm_tcti: String,
    /// Whether a TPM 2.0 device is present (`/dev/tpmrm0`).
    pub tpm: bool,
    /// Whether the store's filesystem is on dm-crypt (full-disk encryption).
    pub disk_encryption: bool,
    /// One line to act on, or "".
    pub warning: String,
}

impl DeviceProtection {
    /// Looks at this machine for the store at `store`.
    pub fn detect(store: &Path) -> Self {
        let tpm = Path::new(TPM_DEVICE).exists();
        let sealed = store
            .join(crate::tpm::sealed_file::FILE_NAME)
            .exists()
            .then(configured_tcti);
        // Before the first card the store may not exist yet: its parent is on the same disk.
        let probe = if store.exists() {
            store
        } else {
            store.parent().unwrap_or(store)
        };
        let disk_encryption = std::fs::metadata(probe)
            .map(|m| {
                let dev = m.dev();
                on_dm_crypt(
                    Path::new("/sys"),
                    nix::sys::stat::major(dev),
                    nix::sys::stat::minor(dev),
                )
            })
            .unwrap_or(false);
        Self::from_findings(sealed, tpm, disk_encryption)
    }

    /// The verdict for what was found; `sealed`: the secret is sealed to
    /// the TPM reached through this TCTI.
    pub fn from_findings(sealed: Option<String>, tpm: bool, disk_encryption: bool) -> Self {
        let tpm = tpm || sealed.is_some();
        let warning = match (&sealed, tpm, disk_encryption) {
            (Some(_), _, _) | (None, _, true) => String::new(),
            (None, true, false) => "the device secret is in a file and the disk is not \
                encrypted: anyone who takes this disk can guess the PIN offline; set \
                device_secret = \"tpm\" in lanyardd.toml (a TPM is present) or use full-disk \
                encryption (LUKS)"
                .to_string(),
            (None, false, false) => "neither a TPM nor full-disk encryption was found: anyone \
                who takes this disk can guess the PIN offline; use full-disk encryption (LUKS)"
                .to_string(),
        };
        DeviceProtection {
            device_secret: if sealed.is_some() { "tpm" } else { "file" },
            tpm_tcti: sealed.unwrap_or_default(),
            tpm,
            disk_encryption,
            warning,
        }
    }

    /// One line for the text output.
    pub fn summary(&self) -> String {
        let secret = if self.device_secret == "tpm" {
            format!(
                "device secret sealed to the TPM ({}), PIN retry counters in TPM NV counters",
                self.tpm_tcti
            )
        } else {
            "device secret in a file".to_string()
        };
        format!(
            "{secret}; TPM: {}; disk encryption: {}",
            if self.tpm { "present" } else { "none" },
            if self.disk_encryption {
                "dm-crypt"
            } else {
                "none detected"
            }
        )
    }
}

/// The TCTI lanyardd uses, from lanyardd.toml (the daemon reads the same file).
fn configured_tcti() -> String {
    match crate::paths::config_file().and_then(|p| crate::config::Config::load(&p)) {
        Ok(c) => c.tpm_tcti,
        Err(e) => format!("TCTI unknown: {e}"),
    }
}

/// Whether block device `major:minor` under `sys` is dm-crypt, or is built on
/// one (LVM on LUKS, a partition of an encrypted device…), following the
/// `slaves/` links a few levels down.
fn on_dm_crypt(sys: &Path, major: u64, minor: u64) -> bool {
    let dev = sys.join("dev/block").join(format!("{major}:{minor}"));
    let Ok(real) = std::fs::canonicalize(&dev) else {
        return false;
    };
    is_crypt(&real, 0) || real.parent().is_some_and(|whole| is_crypt(whole, 0))
}

fn is_crypt(block: &Path, depth: u32) -> bool {
    if depth > 8 {
        return false;
    }
    let uuid = std::fs::read_to_string(block.join("dm/uuid")).unwrap_or_default();
    if uuid.starts_with("CRYPT-") {
        return true;
    }
    let Ok(slaves) = std::fs::read_dir(block.join("slaves")) else {
        return false;
    };
    slaves
        .flatten()
        .any(|s| std::fs::canonicalize(s.path()).is_ok_and(|real| is_crypt(&real, depth + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: dm-0 (LVM) on dm-1 (CRYPT) on vda2; vda1 plain.
    fn fake_sys() -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        let block = sys.path().join("devices/virtual/block");
        let vda = sys.path().join("devices/pci/vda");
        for d in [
            block.join("dm-0/dm"),
            block.join("dm-0/slaves"),
            block.join("dm-1/dm"),
            block.join("dm-1/slaves"),
            vda.join("vda1"),
            vda.join("vda2"),
            sys.path().join("dev/block"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(block.join("dm-0/dm/uuid"), "LVM-abc\n").unwrap();
        std::fs::write(block.join("dm-1/dm/uuid"), "CRYPT-LUKS2-123-root\n").unwrap();
        let link = |to: &Path, at: &Path| std::os::unix::fs::symlink(to, at).unwrap();
        link(&block.join("dm-1"), &block.join("dm-0/slaves/dm-1"));
        link(&vda.join("vda2"), &block.join("dm-1/slaves/vda2"));
        link(&block.join("dm-0"), &sys.path().join("dev/block/253:0"));
        link(&block.join("dm-1"), &sys.path().join("dev/block/253:1"));
        link(&vda.join("vda1"), &sys.path().join("dev/block/254:1"));
        link(&vda.join("vda2"), &sys.path().join("dev/block/254:2"));
        sys
    }

    #[test]
    fn finds_dm_crypt_directly_and_under_lvm() {
        let sys = fake_sys();
        assert!(on_dm_crypt(sys.path(), 253, 1));
        assert!(on_dm_crypt(sys.path(), 253, 0));
    }

    #[test]
    fn a_plain_or_unknown_device_is_not_encrypted() {
        let sys = fake_sys();
        assert!(!on_dm_crypt(sys.path(), 254, 1));
        assert!(!on_dm_crypt(sys.path(), 254, 2));
        assert!(!on_dm_crypt(sys.path(), 0, 42));
    }

    #[test]
    fn warns_only_when_nothing_protects_the_disk() {
        let none = DeviceProtection::from_findings(None, false, false);
        assert!(none.warning.contains("neither a TPM"), "{}", none.warning);
        let unused = DeviceProtection::from_findings(None, true, false);
        assert!(
            unused.warning.contains("device_secret = \"tpm\""),
            "{}",
            unused.warning
        );
        assert!(DeviceProtection::from_findings(None, false, true)
            .warning
            .is_empty());
        let sealed = DeviceProtection::from_findings(Some("swtpm:port=9".into()), false, false);
        assert!(sealed.warning.is_empty(), "{}", sealed.warning);
        assert_eq!((sealed.device_secret, sealed.tpm), ("tpm", true));
        assert!(sealed
            .summary()
            .contains("sealed to the TPM (swtpm:port=9)"));
        let j = serde_json::to_value(&sealed).unwrap();
        assert_eq!(j["tpm_tcti"], "swtpm:port=9");
        let p = DeviceProtection::from_findings(None, false, true);
        assert_eq!(p.device_secret, "file");
        assert!(p.summary().contains("dm-crypt"), "{}", p.summary());
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(j["disk_encryption"], true);
        assert_eq!(j["tpm"], false);
    }
}
