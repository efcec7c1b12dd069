//! A PKCS#11 module under test, called through its own function list (one
//! C_GetFunctionList per load: p11-kit-client makes a new instance per call,
//! so everything must go through the same table). A signature is exactly one
//! C_SignInit and one C_Sign into a buffer of the right size, as libp11 and
//! NSS do, never a length query first. All `unsafe` of the bench is here.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use cryptoki_sys::*;
use openssl::pkey::{PKey, Public};

use super::alg::Alg;

/// A loaded, initialised module; C_Finalize when dropped.
pub struct Module {
    /// The module file.
    pub path: PathBuf,
    f: CK_FUNCTION_LIST,
    // Keeps the code the table points into loaded.
    _lib: libloading::Library,
}

/// An open session; closed when dropped.
pub struct Session<'m> {
    module: &'m Module,
    handle: CK_SESSION_HANDLE,
}

/// A private key found on a token, with what is needed to sign and verify.
pub struct KeyRef {
    /// The slot holding the token.
    pub slot: CK_SLOT_ID,
    /// The token's label.
    pub token: String,
    /// The private key object.
    pub private: CK_OBJECT_HANDLE,
    /// Its public key, read from the token, for verifying one signature.
    pub public: PKey<Public>,
}

/// A PKCS#11 return code as text.
fn rv_text(rv: CK_RV) -> String {
    format!("{:?} (0x{rv:x})", cryptoki::error::Rv::from(rv))
}

/// A PKCS#11 call that returned an error code.
#[derive(Debug)]
pub struct CallFailed {
    /// The function.
    pub what: &'static str,
    /// Its return value.
    pub rv: CK_RV,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.what, rv_text(self.rv))
    }
}

impl std::error::Error for CallFailed {}

impl CallFailed {
    /// Whether the module does not offer the mechanism (e.g. p11-kit's RPC
    /// cannot carry CKM_SHA256_RSA_PKCS_PSS parameters).
    pub fn is_mechanism_invalid(e: &anyhow::Error) -> bool {
        e.downcast_ref::<CallFailed>()
            .is_some_and(|c| c.rv == CKR_MECHANISM_INVALID)
    }
}

fn check(what: &'static str, rv: CK_RV) -> anyhow::Result<()> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(CallFailed { what, rv }.into())
    }
}

macro_rules! func {
    ($m:expr, $name:ident) => {
        $m.f.$name
            .ok_or_else(|| anyhow!("the module has no {}", stringify!($name)))?
    };
}

impl Module {
    /// Loads `path`, takes its function list once and calls C_Initialize
    /// (OS locking).
    pub fn load(path: &Path) -> anyhow::Result<Module> {
        // SAFETY: loading a PKCS#11 module runs its initialisers, which is
        // what loading one for use means; the path is the operator's choice.
        let lib = unsafe { libloading::Library::new(path) }
            .with_context(|| format!("cannot load the PKCS#11 module {}", path.display()))?;
        type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 version.
        let get: libloading::Symbol<GetFunctionList> =
            unsafe { lib.get(b"C_GetFunctionList\0") }
                .with_context(|| format!("{} has no C_GetFunctionList", path.display()))?;
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: `list` is a valid out-pointer.
        let rv = unsafe { get(&mut list) };
        if rv != CKR_OK || list.is_null() {
            bail!(
                "C_GetFunctionList of {} failed: {}",
                path.display(),
                rv_text(rv)
            );
        }
        // SAFETY: non-null; the module's table (2.x layout at the start of
        // every version) stays valid while the library is loaded; copied.
        let f = unsafe { *list };
        let module = Module {
            path: path.to_path_buf(),
            f,
            _lib: lib,
        };
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: std::ptr::null_mut(),
        };
        let init = func!(module, C_Initialize);
        // SAFETY: `args` is a valid CK_C_INITIALIZE_ARGS for the call.
        let rv = unsafe { init((&mut args as *mut CK_C_INITIALIZE_ARGS).cast()) };
        if rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED {
            bail!("C_Initialize of {} failed: {}", path.display(), rv_text(rv));
        }
        Ok(module)
    }

    /// Every initialised token's slot and label.
    pub fn tokens(&self) -> anyhow::Result<Vec<(CK_SLOT_ID, String)>> {
        let get_slots = func!(self, C_GetSlotList);
        let get_info = func!(self, C_GetTokenInfo);
        let mut count: CK_ULONG = 0;
        // SAFETY: a length query: NULL list, valid count pointer.
        check("C_GetSlotList", unsafe {
            get_slots(CK_TRUE, std::ptr::null_mut(), &mut count)
        })?;
        let mut slots = vec![0 as CK_SLOT_ID; count as usize];
        // SAFETY: `slots` holds `count` entries.
        check("C_GetSlotList", unsafe {
            get_slots(CK_TRUE, slots.as_mut_ptr(), &mut count)
        })?;
        slots.truncate(count as usize);
        let mut out = Vec::new();
        for slot in slots {
            let mut info = CK_TOKEN_INFO::default();
            // SAFETY: `info` is a valid out-structure.
            check("C_GetTokenInfo", unsafe { get_info(slot, &mut info) })?;
            if info.flags & CKF_TOKEN_INITIALIZED != 0 {
                let label = String::from_utf8_lossy(&info.label).trim_end().to_string();
                out.push((slot, label));
            }
        }
        Ok(out)
    }

    /// The slot whose token has `label`.
    pub fn slot_by_label(&self, label: &str) -> anyhow::Result<CK_SLOT_ID> {
        self.tokens()?
            .into_iter()
            .find(|(_, l)| l == label)
            .map(|(s, _)| s)
            .ok_or_else(|| anyhow!("no token labelled {label:?} in {}", self.path.display()))
    }

    /// A read-only session on `slot`.
    pub fn session(&self, slot: CK_SLOT_ID) -> anyhow::Result<Session<'_>> {
        let open = func!(self, C_OpenSession);
        let mut handle: CK_SESSION_HANDLE = 0;
        // SAFETY: no callback; `handle` is a valid out-pointer.
        check("C_OpenSession", unsafe {
            open(
                slot,
                CKF_SERIAL_SESSION,
                std::ptr::null_mut(),
                None,
                &mut handle,
            )
        })?;
        Ok(Session {
            module: self,
            handle,
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if let Some(fin) = self.f.C_Finalize {
            // SAFETY: every session borrowed the module and is gone.
            unsafe { fin(std::ptr::null_mut()) };
        }
    }
}

impl Session<'_> {
    /// Leaves the session open until C_Finalize (so a login lasts: closing
    /// an application's last session logs it out).
    pub fn keep_open(self) {
        std::mem::forget(self);
    }

    /// Logs the application in as the user; already logged in is fine.
    pub fn login(&self, pin: &str) -> anyhow::Result<()> {
        let login = func!(self.module, C_Login);
        // SAFETY: the PIN is only read, `pin.len()` bytes.
        let rv = unsafe {
            login(
                self.handle,
                CKU_USER,
                pin.as_ptr().cast_mut(),
                pin.len() as CK_ULONG,
            )
        };
        if rv == CKR_USER_ALREADY_LOGGED_IN {
            return Ok(());
        }
        check("C_Login", rv)
    }

    /// One signature: C_SignInit then a single C_Sign into `out` (sized for
    /// the key). Returns the signature's length.
    pub fn sign(
        &self,
        alg: Alg,
        key: CK_OBJECT_HANDLE,
        data: &[u8],
        out: &mut [u8],
    ) -> anyhow::Result<usize> {
        let mut pss = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: 32,
        };
        let (mechanism, params, params_len) = match alg {
            Alg::Ecdsa => (CKM_ECDSA, std::ptr::null_mut(), 0),
            Alg::RsaPkcs => (CKM_RSA_PKCS, std::ptr::null_mut(), 0),
            Alg::RsaPss => (
                CKM_SHA256_RSA_PKCS_PSS,
                (&mut pss as *mut CK_RSA_PKCS_PSS_PARAMS).cast(),
                std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() as CK_ULONG,
            ),
        };
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: params,
            ulParameterLen: params_len,
        };
        let (init, sign) = (func!(self.module, C_SignInit), func!(self.module, C_Sign));
        // SAFETY: `mech` and the PSS parameters it may point to outlive the call.
        check("C_SignInit", unsafe { init(self.handle, &mut mech, key) })?;
        let mut len = out.len() as CK_ULONG;
        // SAFETY: `data` is only read (PKCS#11 declares it non-const); `out`
        // holds `len` writable bytes.
        check("C_Sign", unsafe {
            sign(
                self.handle,
                data.as_ptr().cast_mut(),
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut len,
            )
        })?;
        usize::try_from(len)
            .ok()
            .filter(|l| *l <= out.len())
            .ok_or_else(|| {
                anyhow!(
                    "C_Sign reported {len} bytes for a {}-byte buffer",
                    out.len()
                )
            })
    }

    /// Objects matching a template of (attribute, value bytes).
    fn find(
        &self,
        template: &[(CK_ATTRIBUTE_TYPE, &[u8])],
    ) -> anyhow::Result<Vec<CK_OBJECT_HANDLE>> {
        let (init, find, fin) = (
            func!(self.module, C_FindObjectsInit),
            func!(self.module, C_FindObjects),
            func!(self.module, C_FindObjectsFinal),
        );
        let mut attrs: Vec<CK_ATTRIBUTE> = template
            .iter()
            .map(|(t, v)| CK_ATTRIBUTE {
                type_: *t,
                pValue: v.as_ptr().cast_mut().cast(),
                ulValueLen: v.len() as CK_ULONG,
            })
            .collect();
        // SAFETY: the attributes point into `template`, alive for the call.
        check("C_FindObjectsInit", unsafe {
            init(self.handle, attrs.as_mut_ptr(), attrs.len() as CK_ULONG)
        })?;
        let mut found = Vec::new();
        let mut batch = [0 as CK_OBJECT_HANDLE; 16];
        loop {
            let mut n: CK_ULONG = 0;
            // SAFETY: `batch` holds 16 handles.
            let rv = unsafe { find(self.handle, batch.as_mut_ptr(), 16, &mut n) };
            if rv != CKR_OK {
                // SAFETY: ends the search begun above.
                unsafe { fin(self.handle) };
                return Err(anyhow!("C_FindObjects failed: {}", rv_text(rv)));
            }
            found.extend_from_slice(&batch[..(n as usize).min(16)]);
            if n == 0 {
                break;
            }
        }
        // SAFETY: ends the search begun above.
        check("C_FindObjectsFinal", unsafe { fin(self.handle) })?;
        Ok(found)
    }

    /// One attribute's value; `None` if the object has none (or hides it).
    fn attribute(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: CK_ATTRIBUTE_TYPE,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let get = func!(self.module, C_GetAttributeValue);
        let mut a = CK_ATTRIBUTE {
            type_: t,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        };
        // SAFETY: a length query (NULL value).
        let rv = unsafe { get(self.handle, obj, &mut a, 1) };
        if rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION {
            return Ok(None);
        }
        let mut value = vec![0u8; a.ulValueLen as usize];
        a.pValue = value.as_mut_ptr().cast();
        // SAFETY: `value` holds `ulValueLen` bytes.
        check("C_GetAttributeValue", unsafe {
            get(self.handle, obj, &mut a, 1)
        })?;
        value.truncate(a.ulValueLen as usize);
        Ok(Some(value))
    }

    /// The authentication key of `alg`'s key type on this session's token
    /// (one that needs no per-signature PIN), with its public key.
    pub fn find_key(
        &self,
        slot: CK_SLOT_ID,
        token: &str,
        alg: Alg,
    ) -> anyhow::Result<Option<KeyRef>> {
        let Some((private, id)) = self.find_private(alg)? else {
            return Ok(None);
        };
        let public = self.public_key(&id, key_type(alg))?;
        Ok(Some(KeyRef {
            slot,
            token: token.to_string(),
            private,
            public,
        }))
    }

    /// The handle and CKA_ID of the authentication key of `alg`'s key type
    /// (what an application looks up before its first signature).
    pub fn find_private(&self, alg: Alg) -> anyhow::Result<Option<(CK_OBJECT_HANDLE, Vec<u8>)>> {
        let class = CKO_PRIVATE_KEY.to_ne_bytes();
        let kt = key_type(alg).to_ne_bytes();
        for private in self.find(&[(CKA_CLASS, &class), (CKA_KEY_TYPE, &kt)])? {
            let always = self.attribute(private, CKA_ALWAYS_AUTHENTICATE)?;
            if always.is_some_and(|v| v.first().is_some_and(|b| *b != 0)) {
                continue;
            }
            let id = self.attribute(private, CKA_ID)?.unwrap_or_default();
            return Ok(Some((private, id)));
        }
        Ok(None)
    }

    /// The public key object with CKA_ID `id`, as an OpenSSL key.
    fn public_key(&self, id: &[u8], key_type: CK_KEY_TYPE) -> anyhow::Result<PKey<Public>> {
        let class = CKO_PUBLIC_KEY.to_ne_bytes();
        let found = self.find(&[(CKA_CLASS, &class), (CKA_ID, id)])?;
        let handle = *found
            .first()
            .ok_or_else(|| anyhow!("no public key object beside the private key"))?;
        let get = |t, name: &str| {
            self.attribute(handle, t)?
                .ok_or_else(|| anyhow!("the public key has no {name}"))
        };
        if key_type == CKK_EC {
            super::verify::p256_public_key(&get(CKA_EC_POINT, "CKA_EC_POINT")?)
        } else {
            super::verify::rsa_public_key(
                &get(CKA_MODULUS, "CKA_MODULUS")?,
                &get(CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT")?,
            )
        }
    }
}

fn key_type(alg: Alg) -> CK_KEY_TYPE {
    match alg {
        Alg::Ecdsa => CKK_EC,
        Alg::RsaPkcs | Alg::RsaPss => CKK_RSA,
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(close) = self.module.f.C_CloseSession {
            // SAFETY: the handle came from C_OpenSession of this module.
            unsafe { close(self.handle) };
        }
    }
}
