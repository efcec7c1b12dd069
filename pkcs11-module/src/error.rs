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
            General(_) => CKR_GENERAL_ERROR,
        }
    }
}

impl From<ClientError> for Pkcs11Error {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { .. } => Pkcs11Error::DeviceRemoved,
            ClientError::Agent { code, message, .. } => match code {
                ErrorCode::PinIncorrect => Pkcs11Error::PinIncorrect,
                ErrorCode::PinLocked => Pkcs11Error::PinLocked,
                ErrorCode::PinLenRange => Pkcs11Error::PinLenRange,
                ErrorCode::PinInvalid => Pkcs11Error::PinInvalid,
                ErrorCode::NotLoggedIn => Pkcs11Error::UserNotLoggedIn,
                ErrorCode::MechanismInvalid => Pkcs11Error::MechanismInvalid,
                ErrorCode::DataLenRange => Pkcs11Error::DataLenRange,
                ErrorCode::MechanismParamInvalid => Pkcs11Error::MechanismParamInvalid,
                ErrorCode::NoSuchCard => Pkcs11Error::DeviceRemoved,
                ErrorCode::BadRequest => Pkcs11Error::ArgumentsBad,
                _ => Pkcs11Error::DeviceError(message),
            },
            other => Pkcs11Error::DeviceError(other.to_string()),
        }
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
}
