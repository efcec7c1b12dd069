//! The one error type of the module and its mapping to `CK_RV`.
//! Every failure below the FFI layer is a `Pkcs11Error`; `rv()` is the only
//! place that decides which `CKR_*` a caller sees.

use cryptoki_sys::*;
use lanyard_proto::agent::ErrorCode;

use crate::client::ClientError;

/// Result type of the safe layer.
pub type Result<T> = std::result::Result<T, Pkcs11Error>;

/// Everything that can make a PKCS#11 call fail, each variant one `CKR_*`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Pkcs11Error {
    #[error("C_Initialize has not been called in this process")]
    NotInitialized,
    #[error("C_Initialize was already called")]
    AlreadyInitialized,
    #[error("invalid arguments (NULL pointer or inconsistent values)")]
    ArgumentsBad,
    #[error("application mutex callbacks without CKF_OS_LOCKING_OK are not supported")]
    CantLock,
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall { needed: usize },
    #[error("no slot with this id")]
    SlotIdInvalid,
    #[error("no card in this slot")]
    TokenNotPresent,
    #[error("the card was removed or the daemon is gone")]
    DeviceRemoved,
    #[error("the daemon failed: {0}")]
    DeviceError(String),
    #[error("no session with this handle")]
    SessionHandleInvalid,
    #[error("sessions must be serial (CKF_SERIAL_SESSION)")]
    SessionParallelNotSupported,
    #[error("this needs a read/write session")]
    SessionReadOnly,
    #[error("no object with this handle")]
    ObjectHandleInvalid,
    #[error("no key with this handle")]
    KeyHandleInvalid,
    #[error("the key may not be used for this operation")]
    KeyFunctionNotPermitted,
    #[error("the key type does not fit the mechanism")]
    KeyTypeInconsistent,
    #[error("mechanism not supported by this token")]
    MechanismInvalid,
    #[error("bad mechanism parameters")]
    MechanismParamInvalid,
    #[error("another operation of this kind is active in the session")]
    OperationActive,
    #[error("no operation of this kind is active in the session")]
    OperationNotInitialized,
    #[error("input data has the wrong length")]
    DataLenRange,
    #[error("the signature does not verify")]
    SignatureInvalid,
    #[error("the signature has the wrong length")]
    SignatureLenRange,
    #[error("already logged in")]
    UserAlreadyLoggedIn,
    #[error("not logged in")]
    UserNotLoggedIn,
    #[error("only CKU_USER exists on a virtual card")]
    UserTypeInvalid,
    #[error("incorrect PIN")]
    PinIncorrect,
    #[error("the card is locked after too many wrong PINs")]
    PinLocked,
    #[error("the PIN has the wrong length")]
    PinLenRange,
    #[error("the PIN has invalid characters")]
    PinInvalid,
    #[error("the token is write protected")]
    TokenWriteProtected,
    #[error("function not supported")]
    FunctionNotSupported,
    #[error("seeding the RNG is not supported")]
    RandomSeedNotSupported,
    #[error("attribute type not valid for this object")]
    AttributeTypeInvalid,
    #[error("attribute is sensitive")]
    AttributeSensitive,
    #[error("attribute value invalid")]
    AttributeValueInvalid,
    #[error("no slot event")]
    NoEvent,
    #[error("legacy parallel function")]
    FunctionNotParallel,
    #[error("the function failed: {0}")]
    FunctionFailed(String),
    /// The user cancelled the daemon's PIN prompt, or none could be shown.
    #[error("the PIN prompt was cancelled")]
    FunctionCanceled,
    #[error("internal error: {0}")]
    General(String),
}

impl Pkcs11Error {
    /// The `CK_RV` a PKCS#11 caller sees for this error.
    pub fn rv(&self) -> CK_RV {
        use Pkcs11Error::*;
        match self {
            NotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
            AlreadyInitialized => CKR_CRYPTOKI_ALREADY_INITIALIZED,
            ArgumentsBad => CKR_ARGUMENTS_BAD,
            CantLock => CKR_CANT_LOCK,
            BufferTooSmall { .. } => CKR_BUFFER_TOO_SMALL,
            SlotIdInvalid => CKR_SLOT_ID_INVALID,
            TokenNotPresent => CKR_TOKEN_NOT_PRESENT,
            DeviceRemoved => CKR_DEVICE_REMOVED,
            DeviceError(_) => CKR_DEVICE_ERROR,
            SessionHandleInvalid => CKR_SESSION_HANDLE_INVALID,
            SessionParallelNotSupported => CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            SessionReadOnly => CKR_SESSION_READ_ONLY,
            ObjectHandleInvalid => CKR_OBJECT_HANDLE_INVALID,
            KeyHandleInvalid => CKR_KEY_HANDLE_INVALID,
            KeyFunctionNotPermitted => CKR_KEY_FUNCTION_NOT_PERMITTED,
            KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT,
            MechanismInvalid => CKR_MECHANISM_INVALID,
            MechanismParamInvalid => CKR_MECHANISM_PARAM_INVALID,
            OperationActive => CKR_OPERATION_ACTIVE,
            OperationNotInitialized => CKR_OPERATION_NOT_INITIALIZED,
            DataLenRange => CKR_DATA_LEN_RANGE,
            SignatureInvalid => CKR_SIGNATURE_INVALID,
            SignatureLenRange => CKR_SIGNATURE_LEN_RANGE,
            UserAlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN,
            UserNotLoggedIn => CKR_USER_NOT_LOGGED_IN,
            UserTypeInvalid => CKR_USER_TYPE_INVALID,
            PinIncorrect => CKR_PIN_INCORRECT,
            PinLocked => CKR_PIN_LOCKED,
            PinLenRange => CKR_PIN_LEN_RANGE,
            PinInvalid => CKR_PIN_INVALID,
            TokenWriteProtected => CKR_TOKEN_WRITE_PROTECTED,
            FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
            RandomSeedNotSupported => CKR_RANDOM_SEED_NOT_SUPPORTED,
            AttributeTypeInvalid => CKR_ATTRIBUTE_TYPE_INVALID,
            AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE,
            AttributeValueInvalid => CKR_ATTRIBUTE_VALUE_INVALID,
            NoEvent => CKR_NO_EVENT,
            FunctionNotParallel => CKR_FUNCTION_NOT_PARALLEL,
            FunctionFailed(_) => CKR_FUNCTION_FAILED,
            FunctionCanceled => CKR_FUNCTION_CANCELED,
            General(_) => CKR_GENERAL_ERROR,
        }
    }
}

impl From<ClientError> for Pkcs11Error {
    fn from(e: ClientError) -> Self {
        match e {
            // No daemon, or the daemon went away during the request (its
            // connection closed under it: stopped, crashed, restarted): the
            // token went with it. `Library::call` then looks at the slots
            // again, which ends the sessions as the daemon's state says.
            ClientError::Unreachable { .. } => Pkcs11Error::DeviceRemoved,
            e if e.is_broken_connection() => Pkcs11Error::DeviceRemoved,
            ClientError::Agent { code, message, .. } => from_agent(code, message),
            other => Pkcs11Error::DeviceError(other.to_string()),
        }
    }
}

/// The daemon's error codes, each mapped on purpose (no catch-all, so a new
/// code does not compile until it is given its `CKR_*`).
fn from_agent(code: ErrorCode, message: String) -> Pkcs11Error {
    match code {
        ErrorCode::PinIncorrect => Pkcs11Error::PinIncorrect,
        ErrorCode::PinLocked => Pkcs11Error::PinLocked,
        ErrorCode::PinLenRange => Pkcs11Error::PinLenRange,
        ErrorCode::PinInvalid => Pkcs11Error::PinInvalid,
        ErrorCode::NotLoggedIn => Pkcs11Error::UserNotLoggedIn,
        ErrorCode::MechanismInvalid => Pkcs11Error::MechanismInvalid,
        ErrorCode::DataLenRange => Pkcs11Error::DataLenRange,
        ErrorCode::MechanismParamInvalid => Pkcs11Error::MechanismParamInvalid,
        ErrorCode::BadRequest => Pkcs11Error::ArgumentsBad,
        // The card is gone from the device, for now (suspended) or for good
        // (revoked, deleted): PKCS#11's removed token. The caller's session
        // ends with it (Library::call refreshes the slots).
        ErrorCode::NoSuchCard | ErrorCode::CardRevoked | ErrorCode::CardSuspended => {
            Pkcs11Error::DeviceRemoved
        }
        // The certificate expired: the card is still there (it stays listed
        // until the IT desk re-issues it under the same id), the key works,
        // but the daemon refuses to use it. Not a PIN matter (PIN_EXPIRED
        // would send the user to change a PIN that is fine), not a broken
        // device (DEVICE_ERROR): the function was refused, the token and the
        // session stay valid.
        ErrorCode::CardExpired => Pkcs11Error::FunctionFailed(message),
        // Protected authentication path: the user said no to the prompt.
        ErrorCode::Canceled => Pkcs11Error::FunctionCanceled,
        // Requests the module never sends (enrolment, PIN reset, renewal):
        // if one ever comes back, the function failed; the token is fine.
        ErrorCode::EnrollFailed
        | ErrorCode::CaUnavailable
        | ErrorCode::CaBusy
        | ErrorCode::CaRefused
        | ErrorCode::ResetCodeRejected
        | ErrorCode::SlotsFull => Pkcs11Error::FunctionFailed(message),
        // The daemon cannot serve us (its store, its protocol, our uid).
        ErrorCode::Unspecified
        | ErrorCode::Internal
        | ErrorCode::UnsupportedVersion
        | ErrorCode::StoreCorrupt
        | ErrorCode::PermissionDenied => Pkcs11Error::DeviceError(message),
    }
}

impl From<openssl::error::ErrorStack> for Pkcs11Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Pkcs11Error::FunctionFailed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_errors_map_to_their_ckr() {
        let agent = |code| ClientError::Agent {
            code,
            message: String::new(),
            tries_left: 0,
        };
        assert_eq!(
            Pkcs11Error::from(agent(ErrorCode::PinIncorrect)).rv(),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            Pkcs11Error::from(agent(ErrorCode::PinLocked)).rv(),
            CKR_PIN_LOCKED
        );
        assert_eq!(
            Pkcs11Error::from(agent(ErrorCode::PinLenRange)).rv(),
            CKR_PIN_LEN_RANGE
        );
        assert_eq!(
            Pkcs11Error::from(agent(ErrorCode::PinInvalid)).rv(),
            CKR_PIN_INVALID
        );
        assert_eq!(
            Pkcs11Error::from(agent(ErrorCode::Internal)).rv(),
            CKR_DEVICE_ERROR
        );
    }

    #[test]
    fn a_daemon_gone_is_a_removed_device_a_slow_or_confused_one_a_device_error() {
        use std::io::{Error, ErrorKind};
        let rv = |e: ClientError| Pkcs11Error::from(e).rv();
        let unreachable = ClientError::Unreachable {
            path: "/run/user/1000/lanyard/agent.sock".into(),
            source: Error::from(ErrorKind::NotFound),
        };
        assert_eq!(rv(unreachable), CKR_DEVICE_REMOVED);
        for kind in [
            ErrorKind::UnexpectedEof,
            ErrorKind::ConnectionReset,
            ErrorKind::BrokenPipe,
        ] {
            assert_eq!(rv(ClientError::Io(Error::from(kind))), CKR_DEVICE_REMOVED);
        }
        assert_eq!(
            rv(ClientError::Io(Error::from(ErrorKind::TimedOut))),
            CKR_DEVICE_ERROR
        );
        assert_eq!(
            rv(ClientError::Protocol("bad frame".into())),
            CKR_DEVICE_ERROR
        );
    }

    #[test]
    fn every_daemon_code_has_its_ckr() {
        let expected = [
            (ErrorCode::Unspecified, CKR_DEVICE_ERROR),
            (ErrorCode::Internal, CKR_DEVICE_ERROR),
            (ErrorCode::BadRequest, CKR_ARGUMENTS_BAD),
            (ErrorCode::UnsupportedVersion, CKR_DEVICE_ERROR),
            (ErrorCode::NoSuchCard, CKR_DEVICE_REMOVED),
            (ErrorCode::PinIncorrect, CKR_PIN_INCORRECT),
            (ErrorCode::PinLocked, CKR_PIN_LOCKED),
            (ErrorCode::PinLenRange, CKR_PIN_LEN_RANGE),
            (ErrorCode::PinInvalid, CKR_PIN_INVALID),
            (ErrorCode::NotLoggedIn, CKR_USER_NOT_LOGGED_IN),
            (ErrorCode::MechanismInvalid, CKR_MECHANISM_INVALID),
            (ErrorCode::DataLenRange, CKR_DATA_LEN_RANGE),
            (
                ErrorCode::MechanismParamInvalid,
                CKR_MECHANISM_PARAM_INVALID,
            ),
            (ErrorCode::EnrollFailed, CKR_FUNCTION_FAILED),
            (ErrorCode::CaUnavailable, CKR_FUNCTION_FAILED),
            (ErrorCode::StoreCorrupt, CKR_DEVICE_ERROR),
            (ErrorCode::PermissionDenied, CKR_DEVICE_ERROR),
            (ErrorCode::SlotsFull, CKR_FUNCTION_FAILED),
            (ErrorCode::CardRevoked, CKR_DEVICE_REMOVED),
            (ErrorCode::CardSuspended, CKR_DEVICE_REMOVED),
            (ErrorCode::CardExpired, CKR_FUNCTION_FAILED),
            (ErrorCode::ResetCodeRejected, CKR_FUNCTION_FAILED),
            (ErrorCode::CaBusy, CKR_FUNCTION_FAILED),
            (ErrorCode::CaRefused, CKR_FUNCTION_FAILED),
            (ErrorCode::Canceled, CKR_FUNCTION_CANCELED),
        ];
        for (code, rv) in expected {
            let got = Pkcs11Error::from(ClientError::Agent {
                code,
                message: "m".into(),
                tries_left: 0,
            });
            assert_eq!(got.rv(), rv, "{code:?}");
        }
        // Every code the protocol defines is in the table above.
        let defined = (0..64).filter(|n| ErrorCode::try_from(*n).is_ok()).count();
        assert_eq!(defined, expected.len());
    }
}
