//! The `Pin` newtype: a PIN held in memory that is wiped on drop and never
//! printed, so it cannot leak through `Debug`, logs or error messages.

use zeroize::Zeroizing;

/// A user PIN. Wiped when dropped; `Debug` shows only that it is a PIN.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Takes ownership of the string (which is then wiped with the `Pin`).
    pub fn new(pin: String) -> Self {
        Pin(Zeroizing::new(pin))
    }

    /// The PIN's bytes, for the KDF and the verifier.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The PIN as text, for the policy check.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_show_the_pin() {
        let pin = Pin::new("123456".into());
        assert!(!format!("{pin:?}").contains("123456"));
    }
}

/// An in-memory check of the PIN of an unlocked card, so later logins need
/// no Argon2id: HMAC-SHA256 of the PIN under a random key made at unlock,
/// compared in constant time. Lives only while the card is unlocked.
pub struct PinVerifier {
    key: zeroize::Zeroizing<[u8; 32]>,
    tag: Vec<u8>,
}

impl PinVerifier {
    /// A verifier for `pin` under a fresh random key.
    pub fn new(pin: &Pin) -> crate::Result<Self> {
        let key = zeroize::Zeroizing::new(crate::card_crypto::random_bytes::<32>()?);
        let tag = hmac(key.as_slice(), pin.as_bytes())?;
        Ok(PinVerifier { key, tag })
    }

    /// Whether `pin` is the PIN this verifier was made for.
    pub fn matches(&self, pin: &Pin) -> crate::Result<bool> {
        let tag = hmac(self.key.as_slice(), pin.as_bytes())?;
        Ok(tag.len() == self.tag.len() && openssl::memcmp::eq(&tag, &self.tag))
    }
}

fn hmac(key: &[u8], data: &[u8]) -> crate::Result<Vec<u8>> {
    let pkey = openssl::pkey::PKey::hmac(key)?;
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey)?;
    Ok(signer.sign_oneshot_to_vec(data)?)
}

#[cfg(test)]
mod verifier_tests {
    use super::*;

    #[test]
    fn verifier_matches_only_its_pin() {
        let v = PinVerifier::new(&Pin::new("123456".into())).unwrap();
        assert!(v.matches(&Pin::new("123456".into())).unwrap());
        assert!(!v.matches(&Pin::new("123457".into())).unwrap());
        assert!(!v.matches(&Pin::new("1234567".into())).unwrap());
    }
}
