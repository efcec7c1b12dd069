//! What can go wrong opening, making or using a PKCS#11 key, each case with
//! the step a person takes to fix it; PINs never appear in a message.

use std::path::PathBuf;

use cryptoki::error::Error as CkError;
use thiserror::Error;

/// Why a PKCS#11 key could not be opened, made or used.
#[derive(Debug, Error)]
pub enum Pkcs11Error {
    /// The URI does not say which module to load.
    #[error("the PKCS#11 URI has no module-path; add ?module-path=/path/to/module.so (SoftHSM2 on Debian: /usr/lib/softhsm/libsofthsm2.so)")]
    NoModulePath,
    /// The module could not be loaded or initialised.
    #[error("cannot load the PKCS#11 module {}: {reason}", path.display())]
    Module {
        /// The module's path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No token matches the URI.
    #[error("no PKCS#11 token matches {uri}; tokens present: {}", list(found))]
    NoToken {
        /// The URI without its PIN.
        uri: String,
        /// The tokens that are there.
        found: Vec<String>,
    },
    /// Several tokens match the URI.
    #[error("{count} PKCS#11 tokens match {uri}; add serial= or slot-id= to choose one")]
    AmbiguousToken {
        /// The URI without its PIN.
        uri: String,
        /// How many match.
        count: usize,
    },
    /// The PIN file could not be read.
    #[error("cannot read the PIN file {}: {source}", path.display())]
    PinFile {
        /// The file named by pin-source.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The PIN file holds no PIN.
    #[error("the PIN file {} holds no PIN (its first line is empty or not text)", path.display())]
    EmptyPin {
        /// The file named by pin-source.
        path: PathBuf,
    },
    /// The token needs a PIN and the URI gives none.
    #[error(
        "token {token:?} needs a PIN; add ?pin-source=file:/path/to/pin-file to the PKCS#11 URI"
    )]
    NoPin {
        /// The token's label.
        token: String,
    },
    /// The token refused the PIN.
    #[error("wrong PIN for token {token:?}; check the file named by pin-source")]
    WrongPin {
        /// The token's label.
        token: String,
    },
    /// The token's user PIN is locked.
    #[error("the user PIN of token {token:?} is locked; its security officer must unlock it")]
    PinLocked {
        /// The token's label.
        token: String,
    },
    /// The URI names no object.
    #[error("the PKCS#11 URI names no key; add object=LABEL (or id=%XX…) to its path")]
    NoObjectNamed,
    /// The URI's type= is not a private key.
    #[error(
        "the PKCS#11 URI names a {kind}, not a private key; use type=private or leave type= out"
    )]
    NotAPrivateKey {
        /// What type= names.
        kind: &'static str,
    },
    /// No private key matches.
    #[error("no private key matches {uri} in token {token:?}")]
    NoKey {
        /// The URI without its PIN.
        uri: String,
        /// The token's label.
        token: String,
    },
    /// Several private keys match.
    #[error("{count} private keys match {uri} in token {token:?}; add id= to choose one")]
    AmbiguousKey {
        /// The URI without its PIN.
        uri: String,
        /// The token's label.
        token: String,
        /// How many match.
        count: usize,
    },
    /// A key of a kind Lanyard does not sign with.
    #[error("the key {uri} is {what}; Lanyard signs with EC P-256, EC P-384 or RSA of 2048 bits or more")]
    UnsupportedKey {
        /// The URI without its PIN.
        uri: String,
        /// What the key is.
        what: String,
    },
    /// The key's public half is nowhere to be found.
    #[error("cannot find the public key of {uri}: the token has no public key object or certificate with the same id")]
    NoPublicKey {
        /// The URI without its PIN.
        uri: String,
    },
    /// A test signature did not verify with the public key found.
    #[error("a test signature of {uri} does not verify with the public key found next to it; the token's objects do not belong together")]
    SelfTestFailed {
        /// The URI without its PIN.
        uri: String,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {action} failed: {source}")]
    Call {
        /// The call, e.g. "C_Sign".
        action: &'static str,
        /// The module's answer.
        source: CkError,
    },
}

fn list(found: &[String]) -> String {
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

/// Wraps a failed PKCS#11 call, naming it.
pub(crate) fn call(action: &'static str) -> impl FnOnce(CkError) -> Pkcs11Error {
    move |source| Pkcs11Error::Call { action, source }
}
