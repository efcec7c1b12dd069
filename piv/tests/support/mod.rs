//! A card behind the applet for tests: real RSA-2048 and P-256 keys
//! (OpenSSL), a PIN with a retry counter and a verified flag, like the
//! daemon's backend but in memory; it records what it was asked to sign.

#![allow(dead_code)]

pub mod apdus;

use lanyard_piv::{
    CardBackend, CardView, KeyAlgorithm, KeySlot, PinError, PinStatus, SignError, SignInput,
    SlotView,
};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::x509::{X509Builder, X509NameBuilder};
use zeroize::Zeroizing;

/// The right PIN.
pub const PIN: &[u8] = b"123456";
/// Tries a fresh card has.
pub const MAX_TRIES: u8 = 3;

/// One key of the fake card.
#[derive(Clone)]
pub struct Key {
    pub slot: KeySlot,
    pub pkey: PKey<Private>,
    pub cert_der: Vec<u8>,
}

impl Key {
    /// A new key of `algorithm` for `slot` with a self-signed certificate.
    pub fn new(slot: KeySlot, algorithm: KeyAlgorithm) -> Key {
        let pkey = match algorithm {
            KeyAlgorithm::Rsa2048 => {
                PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey")
            }
            KeyAlgorithm::EccP256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
                PKey::from_ec_key(EcKey::generate(&group).expect("ec")).expect("pkey")
            }
        };
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "Dr Ada Test").expect("cn");
        let name = name.build();
        let mut b = X509Builder::new().expect("x509");
        b.set_version(2).expect("v3");
        let serial = BigNum::from_u32(7)
            .expect("bn")
            .to_asn1_integer()
            .expect("serial");
        b.set_serial_number(&serial).expect("serial");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&pkey).expect("pubkey");
        b.set_not_before(&Asn1Time::from_str("20250101000000Z").expect("t"))
            .expect("nb");
        b.set_not_after(&Asn1Time::from_str("20270630000000Z").expect("t"))
            .expect("na");
        b.sign(&pkey, MessageDigest::sha256()).expect("sign");
        let cert_der = b.build().to_der().expect("der");
        Key {
            slot,
            pkey,
            cert_der,
        }
    }

    fn algorithm(&self) -> KeyAlgorithm {
        if self.pkey.rsa().is_ok() {
            KeyAlgorithm::Rsa2048
        } else {
            KeyAlgorithm::EccP256
        }
    }
}

/// The fake card.
pub struct FakeCard {
    pub inserted: bool,
    pub keys: Vec<Key>,
    pub tries_left: u8,
    pub verified: bool,
    /// Every sign call: slot, input, the PIN passed with it.
    pub signed: Vec<(KeySlot, SignInput, Option<Vec<u8>>)>,
    pub verify_calls: usize,
    pub resets: usize,
}

impl FakeCard {
    /// A card with these keys, PIN not verified.
    pub fn new(keys: Vec<Key>) -> FakeCard {
        FakeCard {
            inserted: true,
            keys,
            tries_left: MAX_TRIES,
            verified: false,
            signed: Vec::new(),
            verify_calls: 0,
            resets: 0,
        }
    }

    /// RSA 9A and EC 9C, as a Lanyard RSA card with a signing key.
    pub fn rsa_with_signing() -> FakeCard {
        FakeCard::new(vec![
            Key::new(KeySlot::Authentication, KeyAlgorithm::Rsa2048),
            Key::new(KeySlot::Signature, KeyAlgorithm::EccP256),
        ])
    }

    /// An EC card with no signing key.
    pub fn ec_only() -> FakeCard {
        FakeCard::new(vec![Key::new(
            KeySlot::Authentication,
            KeyAlgorithm::EccP256,
        )])
    }

    pub fn key(&self, slot: KeySlot) -> &Key {
        self.keys
            .iter()
            .find(|k| k.slot == slot)
            .expect("key in slot")
    }
}

impl CardBackend for FakeCard {
    fn card(&self) -> Option<CardView> {
        self.inserted.then(|| CardView {
            card_id: "card-7f3a".into(),
            slots: self
                .keys
                .iter()
                .map(|k| SlotView {
                    slot: k.slot,
                    algorithm: k.algorithm(),
                    certificate_der: k.cert_der.clone(),
                })
                .collect(),
        })
    }

    fn verify_pin(&mut self, pin: Zeroizing<Vec<u8>>) -> Result<(), PinError> {
        self.verify_calls += 1;
        if self.tries_left == 0 {
            return Err(PinError::Blocked);
        }
        if pin.len() < 6 {
            return Err(PinError::Malformed);
        }
        if pin.as_slice() == PIN {
            self.tries_left = MAX_TRIES;
            self.verified = true;
            Ok(())
        } else {
            self.tries_left -= 1;
            self.verified = false;
            if self.tries_left == 0 {
                Err(PinError::Blocked)
            } else {
                Err(PinError::Incorrect {
                    tries_left: self.tries_left,
                })
            }
        }
    }

    fn pin_status(&self) -> PinStatus {
        match (self.verified, self.tries_left) {
            (_, 0) => PinStatus::Blocked,
            (true, _) => PinStatus::Verified,
            (false, n) => PinStatus::NotVerified { tries_left: n },
        }
    }

    fn sign(
        &mut self,
        slot: KeySlot,
        input: SignInput,
        pin: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Vec<u8>, SignError> {
        self.signed
            .push((slot, input.clone(), pin.as_ref().map(|p| p.to_vec())));
        if !self.verified {
            return Err(SignError::NotVerified);
        }
        if slot == KeySlot::Signature && pin.as_deref().map(Vec::as_slice) != Some(PIN) {
            return Err(SignError::NotVerified);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.slot == slot)
            .ok_or(SignError::NoKey)?;
        let raw = |data: &[u8], padding: Padding| {
            let rsa = key
                .pkey
                .rsa()
                .map_err(|e| SignError::BadInput(e.to_string()))?;
            let mut out = vec![0u8; 256];
            let n = rsa
                .private_encrypt(data, &mut out, padding)
                .map_err(|e| SignError::BadInput(e.to_string()))?;
            out.truncate(n);
            Ok(out)
        };
        match input {
            SignInput::RsaPkcs1 { data } => raw(&data, Padding::PKCS1),
            SignInput::RsaPssEncoded { encoded } => raw(&encoded, Padding::NONE),
            SignInput::EcdsaDigest { digest } => {
                let ec = key
                    .pkey
                    .ec_key()
                    .map_err(|e| SignError::BadInput(e.to_string()))?;
                let sig =
                    EcdsaSig::sign(&digest, &ec).map_err(|e| SignError::BadInput(e.to_string()))?;
                sig.to_der().map_err(|e| SignError::BadInput(e.to_string()))
            }
        }
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.verified = false;
    }
}
