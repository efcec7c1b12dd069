//! The only place with `unsafe`: the exported `extern "C"` entry points, the
//! function lists and interfaces, and the conversions between C pointers and
//! Rust values. Every entry point catches panics; nothing unwinds into C.

#![deny(unsafe_op_in_unsafe_fn)]
// # Safety (of every exported C_* function)
// Each is called by a PKCS#11 application with the pointer arguments the
// PKCS#11 3.0 specification defines for that function: NULL or valid for the
// stated lengths, for the duration of the call. That one contract is stated
// here instead of on ninety functions.
#![allow(clippy::missing_safety_doc)]

mod entry;
mod fork;
mod interface;
mod unsupported;

use std::panic::{catch_unwind, AssertUnwindSafe};

use cryptoki_sys::*;

use crate::error::{Pkcs11Error, Result};
use crate::fns::Out;
use crate::mechanism::Mechanism;

pub use entry::*;
pub use interface::*;
pub use unsupported::*;

/// Runs one entry point's body: its error becomes the CK_RV, a panic becomes
/// CKR_GENERAL_ERROR.
fn guard(body: impl FnOnce() -> Result<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => e.rv(),
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// [`guard`] for the functions that need C_Initialize: before it (or in a
/// forked child that has not called it) they answer CRYPTOKI_NOT_INITIALIZED
/// whatever their arguments, as PKCS#11 applications expect.
fn guard_init(body: impl FnOnce() -> Result<()>) -> CK_RV {
    guard(|| {
        crate::fns::general::check_initialized()?;
        body()
    })
}

/// CK_ULONG → usize.
fn to_usize(v: CK_ULONG) -> Result<usize> {
    usize::try_from(v).map_err(|_| Pkcs11Error::ArgumentsBad)
}

/// The caller's input bytes. NULL is accepted only with length 0.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes that stay valid and
/// unchanged for the returned lifetime (the duration of the call).
unsafe fn bytes_in<'a>(ptr: *const u8, len: CK_ULONG) -> Result<&'a [u8]> {
    let len = to_usize(len)?;
    if len > isize::MAX as usize {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Pkcs11Error::ArgumentsBad)
        };
    }
    // SAFETY: non-NULL, and the caller guarantees `len` readable bytes for
    // the duration of the call (PKCS#11 buffer contract).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The capacity of an output buffer: `None` when `ptr` is NULL (a length
/// query). A NULL length pointer is ARGUMENTS_BAD.
///
/// # Safety
/// `len_ptr` must be NULL or point to a readable CK_ULONG.
unsafe fn capacity(ptr: *const u8, len_ptr: *const CK_ULONG) -> Result<Option<usize>> {
    if len_ptr.is_null() {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: checked non-NULL; the caller passes a valid CK_ULONG_PTR.
    let cap = unsafe { len_ptr.read_unaligned() };
    Ok(Some(to_usize(cap)?))
}

/// Writes a function's output per the size-query protocol: the bytes and
/// their length, the length alone, or on BUFFER_TOO_SMALL the needed length.
///
/// # Safety
/// `len_ptr` must be a writable CK_ULONG; `ptr`, when `out` is `Bytes`, must
/// have room for them (checked against the capacity by the safe layer).
unsafe fn write_out(out: Result<Out>, ptr: *mut u8, len_ptr: *mut CK_ULONG) -> Result<()> {
    if len_ptr.is_null() {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    match out {
        Ok(Out::Length(n)) => {
            // SAFETY: len_ptr checked non-NULL, points to the caller's CK_ULONG.
            unsafe { len_ptr.write_unaligned(n as CK_ULONG) };
            Ok(())
        }
        Ok(Out::Bytes(bytes)) => {
            if ptr.is_null() {
                return Err(Pkcs11Error::ArgumentsBad);
            }
            // SAFETY: len_ptr checked non-NULL, the caller's CK_ULONG.
            let capacity = unsafe { len_ptr.read_unaligned() };
            if to_usize(capacity)? < bytes.len() {
                // The safe layer checks this first; never write past the buffer.
                return Err(Pkcs11Error::General("output larger than the buffer".into()));
            }
            // SAFETY: the caller's buffer holds `capacity` >= bytes.len()
            // bytes (checked just above); ours is a fresh Vec, no overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len());
                len_ptr.write_unaligned(bytes.len() as CK_ULONG);
            }
            Ok(())
        }
        Err(Pkcs11Error::BufferTooSmall { needed }) => {
            // SAFETY: as above; PKCS#11 5.2 asks for the needed length here.
            unsafe { len_ptr.write_unaligned(needed as CK_ULONG) };
            Err(Pkcs11Error::BufferTooSmall { needed })
        }
        Err(e) => Err(e),
    }
}

/// A call that reads the caller's input and fills an output buffer per the
/// size-query protocol (C_Sign, C_Digest).
///
/// # Safety
/// As [`bytes_in`] for `data`, as [`write_out`] for `out` and `out_len`.
unsafe fn input_output(
    data: *const u8,
    data_len: CK_ULONG,
    out: *mut u8,
    out_len: *mut CK_ULONG,
    f: impl FnOnce(&[u8], Option<usize>) -> Result<Out>,
) -> Result<()> {
    // SAFETY: forwarded contract of the caller's input buffer and length pointer.
    let (data, cap) = unsafe { (bytes_in(data, data_len)?, capacity(out, out_len)?) };
    let result = f(data, cap);
    // SAFETY: forwarded contract; write_out checks the capacity again.
    unsafe { write_out(result, out, out_len) }
}

/// A call that only fills an output buffer (C_SignFinal, C_DigestFinal).
///
/// # Safety
/// As [`write_out`].
unsafe fn output(
    out: *mut u8,
    out_len: *mut CK_ULONG,
    f: impl FnOnce(Option<usize>) -> Result<Out>,
) -> Result<()> {
    // SAFETY: forwarded contract of the caller's length pointer.
    let cap = unsafe { capacity(out, out_len)? };
    let result = f(cap);
    // SAFETY: forwarded contract; write_out checks the capacity again.
    unsafe { write_out(result, out, out_len) }
}

/// Writes a list (slot ids, mechanisms, interfaces) per the size-query
/// protocol: NULL list → count only; too small → BUFFER_TOO_SMALL + count.
///
/// # Safety
/// `count_ptr` must be NULL or a writable CK_ULONG holding the capacity of
/// `list`; `list` must be NULL or have room for that many `T`.
unsafe fn write_list<T: Copy>(items: &[T], list: *mut T, count_ptr: *mut CK_ULONG) -> Result<()> {
    if count_ptr.is_null() {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    // SAFETY: count_ptr checked non-NULL, the caller's CK_ULONG.
    let capacity = unsafe { count_ptr.read_unaligned() };
    // SAFETY: same pointer, written once with the number of items.
    unsafe { count_ptr.write_unaligned(items.len() as CK_ULONG) };
    if list.is_null() {
        return Ok(());
    }
    if to_usize(capacity)? < items.len() {
        return Err(Pkcs11Error::BufferTooSmall {
            needed: items.len(),
        });
    }
    // SAFETY: the caller's array holds `capacity` >= items.len() elements of T.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), list, items.len()) };
    Ok(())
}

/// Checks the output pointer (NULL is ARGUMENTS_BAD, before any work), then
/// writes the struct `make` produces.
///
/// # Safety
/// `ptr` must be NULL or point to writable memory for a `T`.
unsafe fn write_struct<T>(ptr: *mut T, make: impl FnOnce() -> Result<T>) -> Result<()> {
    if ptr.is_null() {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    let value = make()?;
    // SAFETY: checked non-NULL; the caller provides room for one T.
    unsafe { ptr.write_unaligned(value) };
    Ok(())
}

/// Copies a CK_MECHANISM (and its parameter bytes); `None` for NULL.
///
/// # Safety
/// `ptr` must be NULL or point to a CK_MECHANISM whose pParameter is NULL or
/// points to ulParameterLen readable bytes.
unsafe fn mechanism_in(ptr: *const CK_MECHANISM) -> Result<Option<Mechanism>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: checked non-NULL; the caller passes a valid CK_MECHANISM.
    let m = unsafe { ptr.read_unaligned() };
    // SAFETY: pParameter/ulParameterLen describe the caller's parameter buffer.
    let param = unsafe { bytes_in(m.pParameter as *const u8, m.ulParameterLen)? };
    Ok(Some(Mechanism {
        mechanism: m.mechanism,
        param: param.to_vec(),
    }))
}

/// The caller's CK_ATTRIBUTE array as raw structs.
///
/// # Safety
/// `ptr` must be NULL (then `count` must be 0) or point to `count` CK_ATTRIBUTEs.
unsafe fn attributes_in<'a>(
    ptr: *const CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<&'a [CK_ATTRIBUTE]> {
    let count = to_usize(count)?;
    if count > isize::MAX as usize / std::mem::size_of::<CK_ATTRIBUTE>() {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    if ptr.is_null() {
        return if count == 0 {
            Ok(&[])
        } else {
            Err(Pkcs11Error::ArgumentsBad)
        };
    }
    // SAFETY: non-NULL and the caller guarantees `count` elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// A search template: (type, value bytes) pairs copied from the caller.
///
/// # Safety
/// As [`attributes_in`], and each pValue must be NULL or hold ulValueLen bytes.
unsafe fn template_in(
    ptr: *const CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>> {
    // SAFETY: forwarded contract.
    let attrs = unsafe { attributes_in(ptr, count)? };
    attrs
        .iter()
        .map(|a| {
            // SAFETY: pValue/ulValueLen describe the caller's value buffer.
            let value = unsafe { bytes_in(a.pValue as *const u8, a.ulValueLen)? };
            Ok((a.type_, value.to_vec()))
        })
        .collect()
}

/// The real uid of this process, for the socket path fallback.
pub fn real_uid() -> u32 {
    // SAFETY: getuid() has no preconditions and cannot fail (POSIX).
    unsafe { libc::getuid() }
}

/// Whether a connected socket is still open with nothing to read: one
/// non-blocking peek that would block (EOF or data means it is not idle).
pub fn socket_idle(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket borrowed for the call; the buffer is one
    // writable byte; MSG_PEEK leaves any data in place, MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}
