//! The driver's one error type; each variant maps to exactly one pcsc-lite
//! `RESPONSECODE` in [`DriverError::response_code`], so pcscd sees the same
//! answer for the same failure everywhere.

use std::io;

/// Result of the driver's safe layer.
pub type Result<T> = std::result::Result<T, DriverError>;

/// What can go wrong between pcscd, this driver and the virtual card.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The reader.conf `DEVICENAME` (or `CHANNELID`) cannot be used.
    #[error("reader configuration: {0}")]
    DeviceName(String),
    /// pcscd asked for a reader (Lun) this driver never opened.
    #[error("no reader channel is open for Lun {0:#x}")]
    UnknownLun(u64),
    /// No card answers on the reader's address right now.
    #[error("no virtual card at {0}")]
    NoCard(String),
    /// The card broke vpcd's protocol (empty or impossible reply, bad ATR);
    /// the connection was closed, so the card counts as removed.
    #[error("the virtual card broke the vpcd protocol: {0}")]
    Protocol(String),
    /// Reading from or writing to the card failed; the connection was closed.
    #[error("{context}: {source}")]
    Io {
        /// What the driver was doing.
        context: String,
        /// The socket error.
        source: io::Error,
    },
    /// A command APDU that vpcd's frames cannot carry (too short or too long);
    /// nothing was sent and the card is untouched.
    #[error("command APDU of {0} bytes refused: vpcd carries 4 to 65535 bytes")]
    ApduLength(usize),
    /// pcscd's buffer is smaller than the data to return.
    #[error("pcscd's buffer holds {capacity} bytes, {needed} are needed")]
    BufferTooSmall {
        /// Bytes pcscd offered.
        capacity: usize,
        /// Bytes the answer needs.
        needed: usize,
    },
    /// A pointer pcscd passed was null where the interface requires one.
    #[error("pcscd passed a null {0}")]
    NullArgument(&'static str),
    /// A capability tag or power action this driver does not implement.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A capability tag this driver does not know.
    #[error("unknown capability tag {0:#x}")]
    UnknownTag(u64),
    /// A panic was caught at the FFI boundary (a bug; the call failed cleanly).
    #[error("internal error in the vpcd driver: {0}")]
    Internal(String),
}

impl DriverError {
    /// Wraps a socket error with what the driver was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        DriverError::Io {
            context: context.into(),
            source,
        }
    }

    /// The pcsc-lite `RESPONSECODE` pcscd receives for this error.
    pub fn response_code(&self) -> ResponseCode {
        match self {
            DriverError::NoCard(_) => ResponseCode::IccNotPresent,
            DriverError::BufferTooSmall { .. } => ResponseCode::InsufficientBuffer,
            DriverError::NotSupported(_) => ResponseCode::NotSupported,
            DriverError::UnknownTag(_) => ResponseCode::ErrorTag,
            DriverError::DeviceName(_)
            | DriverError::UnknownLun(_)
            | DriverError::Protocol(_)
            | DriverError::Io { .. }
            | DriverError::ApduLength(_)
            | DriverError::NullArgument(_)
            | DriverError::Internal(_) => ResponseCode::CommunicationError,
        }
    }
}

/// The pcsc-lite IFD handler return codes this driver uses (ifdhandler.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    /// IFD_SUCCESS
    Success,
    /// IFD_ERROR_TAG
    ErrorTag,
    /// IFD_COMMUNICATION_ERROR
    CommunicationError,
    /// IFD_NOT_SUPPORTED
    NotSupported,
    /// IFD_ICC_PRESENT
    IccPresent,
    /// IFD_ICC_NOT_PRESENT
    IccNotPresent,
    /// IFD_ERROR_INSUFFICIENT_BUFFER
    InsufficientBuffer,
}

impl ResponseCode {
    /// The numeric value from ifdhandler.h.
    pub fn value(self) -> i64 {
        match self {
            ResponseCode::Success => 0,
            ResponseCode::ErrorTag => 600,
            ResponseCode::CommunicationError => 612,
            ResponseCode::NotSupported => 614,
            ResponseCode::IccPresent => 615,
            ResponseCode::IccNotPresent => 616,
            ResponseCode::InsufficientBuffer => 618,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_ifdhandler_codes() {
        assert_eq!(
            DriverError::NoCard("127.0.0.1:1".into())
                .response_code()
                .value(),
            616
        );
        assert_eq!(DriverError::UnknownTag(1).response_code().value(), 600);
        assert_eq!(
            DriverError::DeviceName("x".into()).response_code().value(),
            612
        );
        assert_eq!(
            DriverError::BufferTooSmall {
                capacity: 1,
                needed: 2
            }
            .response_code()
            .value(),
            618
        );
        assert_eq!(ResponseCode::IccPresent.value(), 615);
        assert_eq!(ResponseCode::Success.value(), 0);
    }
}
