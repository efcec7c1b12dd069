//! The TPM 2.0 behind `device_secret = "tpm"`, through the `tss-esapi` crate
//! (ESAPI in process: no secret crosses a child process's argv or pipes).
//! One short-lived ESAPI context per operation, serialised by a lock.

pub mod counter;
pub mod retry;
pub mod seal;
pub mod sealed_file;
pub mod share;

use std::sync::Mutex;

use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::Context;

use crate::error::{Error, Result};

/// The default TCTI: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// A TPM reached through one TCTI (`device:/dev/tpmrm0`,
/// `swtpm:host=127.0.0.1,port=2321`, ...).
pub struct Tpm {
    tcti: String,
    conf: TctiNameConf,
    lock: Mutex<()>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm").field("tcti", &self.tcti).finish()
    }
}

impl Tpm {
    /// Checks `tcti` and that the TPM answers (a random-number request).
    pub fn connect(tcti: &str) -> Result<Tpm> {
        let conf: TctiNameConf = tcti
            .parse()
            .map_err(|e| Error::Tpm(format!("tpm_tcti {tcti:?} is not a valid TCTI: {e}")))?;
        let tpm = Tpm {
            tcti: tcti.to_string(),
            conf,
            lock: Mutex::new(()),
        };
        tpm.run("reach the TPM", |ctx| ctx.get_random(8).map(|_| ()))?;
        Ok(tpm)
    }

    /// The TCTI this TPM is reached through.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Runs `f` on a fresh ESAPI context; a TSS error becomes [`Error::Tpm`]
    /// naming `what` and the TCTI.
    pub(crate) fn run<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
    ) -> Result<T> {
        self.try_run(f)
            .map_err(|e| Error::Tpm(format!("cannot {what} through {}: {e}", self.tcti)))
    }

    /// Like [`Tpm::run`], giving the TSS error itself (to tell its kind).
    pub(crate) fn try_run<T>(
        &self,
        f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
    ) -> tss_esapi::Result<T> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut ctx = Context::new(self.conf.clone())?;
        f(&mut ctx)
    }
}

/// The TPM response code kind of `e`, if it came from the TPM.
pub(crate) fn rc_kind(e: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => rc.kind(),
        tss_esapi::Error::WrapperError(_) => None,
    }
}
