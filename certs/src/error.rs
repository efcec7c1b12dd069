//! The one error type of lanyard-certs. Each variant names exactly what was
//! wrong so the CA can map it to a precise gRPC status and a message a person
//! can act on.

use thiserror::Error;

/// Everything that can go wrong when checking requests or building certificates.
#[derive(Debug, Error)]
pub enum CertsError {
    /// The bytes are not a DER PKCS#10 certificate request.
    #[error("the certificate request is not a valid DER PKCS#10 request: {0}")]
    CsrMalformed(String),

    /// The key in the request is of a type Lanyard does not accept.
    #[error("the certificate request's key type ({algorithm}) is not accepted; use RSA (2048 to 8192 bits) or EC P-256/P-384")]
    UnsupportedKey {
        /// The key algorithm as found in the request (name or OID).
        algorithm: String,
    },

    /// An EC key on a curve other than P-256 or P-384.
    #[error("the certificate request's EC curve ({curve}) is not accepted; use P-256 or P-384")]
    UnsupportedCurve {
        /// The curve as found in the request (name or OID).
        curve: String,
    },

    /// An RSA key below 2048 bits.
    #[error("the certificate request's RSA key has {bits} bits; at least 2048 are required")]
    RsaKeyTooSmall {
        /// Modulus size in bits.
        bits: usize,
    },

    /// An RSA key whose public exponent is even, at most 65537 - 1, or
    /// 2^256 or more (FIPS 186-5: odd, 2^16 < e < 2^256).
    #[error("the certificate request's RSA key has the public exponent {exponent}; an odd exponent of at least 65537 (and below 2^256) is required")]
    RsaExponentWeak {
        /// The exponent (decimal when it fits 64 bits, else its size).
        exponent: String,
    },

    /// An RSA key above 8192 bits.
    #[error("the certificate request's RSA key has {bits} bits; at most 8192 are accepted")]
    RsaKeyTooLarge {
        /// Modulus size in bits.
        bits: usize,
    },

    /// The request is signed with SHA-1 or another hash that is no longer accepted.
    #[error("the certificate request is signed with {algorithm}, which is no longer accepted; sign it with SHA-256 or stronger")]
    WeakSignatureAlgorithm {
        /// The signature algorithm (name or OID).
        algorithm: String,
    },

    /// The request's signature algorithm is unknown or does not fit its key.
    #[error(
        "the certificate request's signature algorithm ({algorithm}) is not supported for its key"
    )]
    UnsupportedSignatureAlgorithm {
        /// The signature algorithm (name or OID).
        algorithm: String,
    },

    /// The request's self-signature does not verify with the key it carries.
    #[error("the certificate request's signature does not verify with its own public key")]
    BadCsrSignature,

    /// A field of the card holder's identity cannot go into a certificate.
    #[error("the {field} cannot be used in a certificate: {reason}")]
    InvalidCardField {
        /// Which field: holder name, user id, role, card id or organisation.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// A subject alternative name that is neither an IP address nor a DNS name.
    #[error("{name:?} is not a valid DNS name or IP address for the server certificate")]
    InvalidSan {
        /// The name as given.
        name: String,
    },

    /// The requested lifetime is zero, negative or out of range.
    #[error("certificate lifetime must be positive and at most {max_days} days")]
    InvalidLifetime {
        /// The longest accepted lifetime in days.
        max_days: i64,
    },

    /// A certificate could not be parsed.
    #[error("not a valid DER X.509 certificate: {0}")]
    CertificateMalformed(String),

    /// A certificate's signature does not verify with its supposed issuer's key.
    #[error("the certificate's signature does not verify with the issuer's key")]
    BadCertificateSignature,

    /// A CRL Distribution Points URL that cannot go into a certificate.
    #[error("{url:?} cannot be used as a CRL URL: {reason}")]
    InvalidCrlUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A revocation reason that RFC 5280 does not define.
    #[error("{given:?} is not an RFC 5280 revocation reason; use one of: {}", crate::crl::RevocationReason::NAMES.join(", "))]
    UnknownRevocationReason {
        /// The code or name as given.
        given: String,
    },

    /// A CRL whose nextUpdate is not after its thisUpdate.
    #[error("the CRL's next update must be after its this update")]
    InvalidCrlPeriod,

    /// A serial number that is not one this CA writes (32 hex digits, positive).
    #[error("{given:?} is not a certificate serial number of this CA (32 hex digits, first byte 01 to 7f)")]
    InvalidSerial {
        /// The serial as given.
        given: String,
    },

    /// A certificate that is not what the caller expected (e.g. an operator
    /// certificate where a card certificate is needed).
    #[error("not a {expected} certificate: {reason}")]
    WrongCertificateKind {
        /// What was expected: "card" or "operator".
        expected: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// rcgen refused to build or sign a certificate.
    #[error("could not build the certificate: {0}")]
    Build(#[from] rcgen::Error),

    /// A derived enrolment's proof was not signed by the physical card's key
    /// over this challenge and these requests.
    #[error("the proof signature does not verify with the physical card's public key over this challenge and these certificate requests")]
    BadProofSignature,

    /// A derived enrolment's physical card has a key type the CA cannot check.
    #[error("{0}")]
    UnsupportedProofKey(String),
}
