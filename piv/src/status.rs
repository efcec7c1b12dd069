//! ISO 7816-4 status words the PIV application answers with, as one type so
//! that every refusal names its reason and ends a response the same way.

/// A status word SW1SW2 (ISO 7816-4 §5.1.3, SP 800-73-4 part 2 appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 9000: normal processing.
    Ok,
    /// 61xx: this many more bytes (0 = 256 or more) wait for GET RESPONSE.
    MoreData(u8),
    /// 63Cx: verification failed, x tries left.
    VerifyFailed(u8),
    /// 6700: wrong length.
    WrongLength,
    /// 6882: secure messaging not supported.
    SecureMessagingUnsupported,
    /// 6883: the last command of a chain was expected.
    LastCommandExpected,
    /// 6884: command chaining not supported for this command.
    ChainingUnsupported,
    /// 6982: security status not satisfied.
    SecurityStatusNotSatisfied,
    /// 6983: authentication method blocked.
    AuthenticationBlocked,
    /// 6985: conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// 6A80: incorrect parameters in the data field.
    WrongData,
    /// 6A81: function not supported.
    FunctionUnsupported,
    /// 6A82: file or application not found.
    NotFound,
    /// 6A86: incorrect parameters P1-P2.
    WrongP1P2,
    /// 6A88: referenced data or reference data not found.
    ReferenceNotFound,
    /// 6D00: instruction code not supported.
    InsUnsupported,
    /// 6E00: class not supported.
    ClaUnsupported,
    /// 6F00: no precise diagnosis (the card behind failed).
    Unknown,
}

impl Status {
    /// The two status bytes.
    pub fn bytes(self) -> [u8; 2] {
        match self {
            Status::Ok => [0x90, 0x00],
            Status::MoreData(n) => [0x61, n],
            Status::VerifyFailed(n) => [0x63, 0xC0 | n.min(0x0F)],
            Status::WrongLength => [0x67, 0x00],
            Status::SecureMessagingUnsupported => [0x68, 0x82],
            Status::LastCommandExpected => [0x68, 0x83],
            Status::ChainingUnsupported => [0x68, 0x84],
            Status::SecurityStatusNotSatisfied => [0x69, 0x82],
            Status::AuthenticationBlocked => [0x69, 0x83],
            Status::ConditionsNotSatisfied => [0x69, 0x85],
            Status::WrongData => [0x6A, 0x80],
            Status::FunctionUnsupported => [0x6A, 0x81],
            Status::NotFound => [0x6A, 0x82],
            Status::WrongP1P2 => [0x6A, 0x86],
            Status::ReferenceNotFound => [0x6A, 0x88],
            Status::InsUnsupported => [0x6D, 0x00],
            Status::ClaUnsupported => [0x6E, 0x00],
            Status::Unknown => [0x6F, 0x00],
        }
    }
}
