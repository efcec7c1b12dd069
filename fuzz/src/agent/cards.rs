//! Real card material for the fuzzing agent: an RSA-2048 and an EC P-256
//! self-signed certificate turned into CardInfo by lanyardd's own code, made
//! once before the fork server starts; the script picks between them and
//! arbitrary field values.

use lanyard_daemon::card_info::{cert_facts, signing_key_info};
use lanyard_daemon::keys::KeyType;
use lanyard_proto::agent::{CardInfo, CardStatus, Lifecycle, PinState, SigningKeyInfo};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder};

use super::script::Script;

/// The card faces the agent can show: real RSA and EC cards.
pub struct Material {
    cards: [(CardInfo, SigningKeyInfo); 2],
}

fn self_signed(key: &PKey<Private>, cn: &str) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(0x1234_5678)?.to_asn1_integer()?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(30)?);
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.sign(key, MessageDigest::sha256())?;
    b.build().to_der()
}

fn card(
    key_type: KeyType,
    key: &PKey<Private>,
    cn: &str,
) -> Result<(CardInfo, SigningKeyInfo), String> {
    let der = self_signed(key, cn).map_err(|e| e.to_string())?;
    let what = std::path::Path::new("fuzz");
    let info = cert_facts(
        "0123456789AB",
        0,
        cn,
        key_type,
        &der,
        std::slice::from_ref(&der),
        what,
    )
    .map_err(|e| e.to_string())?
    .info;
    let signing =
        signing_key_info("0123456789AB", key_type, &der, what).map_err(|e| e.to_string())?;
    Ok((info, signing))
}

impl Material {
    /// Makes both cards (an RSA key generation: call it once, before forking).
    pub fn new() -> Result<Material, String> {
        let rsa = Rsa::generate(2048)
            .and_then(PKey::from_rsa)
            .map_err(|e| e.to_string())?;
        let ec = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
            .and_then(|g| EcKey::generate(&g))
            .and_then(PKey::from_ec_key)
            .map_err(|e| e.to_string())?;
        Ok(Material {
            cards: [
                card(KeyType::Rsa2048, &rsa, "Dr Fuzz RSA")?,
                card(KeyType::EcP256, &ec, "Dr Fuzz EC")?,
            ],
        })
    }

    /// The `index`-th card of a list as the script chooses: a real face
    /// (RSA, EC, RSA… when the script says nothing) with chosen state, some
    /// fields replaced by arbitrary bytes now and then.
    pub fn card(&self, s: &mut Script, index: usize) -> CardInfo {
        let (info, signing) = &self.cards[(index + usize::from(s.byte())) % 2];
        let mut c = info.clone();
        c.card_id = format!("{:012X}", (index + usize::from(s.byte())) % 4);
        c.slot = ((index + usize::from(s.byte())) % 4) as u32;
        c.logged_in = s.flag();
        c.pin = Some(PinState {
            failures: s.u32(),
            max_failures: 6,
            locked: s.byte() == 1,
        });
        c.pin_min_len = 6;
        c.pin_max_len = 8;
        if s.byte() == 1 {
            c.lifecycle = Some(Lifecycle {
                status: match s.byte() % 5 {
                    0 => CardStatus::Active,
                    1 => CardStatus::Suspended,
                    2 => CardStatus::Revoked,
                    3 => CardStatus::Expired,
                    _ => CardStatus::Unspecified,
                } as i32,
                unlocked_until: s.i64(),
                ..Lifecycle::default()
            });
        }
        if s.byte() == 1 {
            c.signing_key = Some(signing.clone());
        }
        // Rarely, one field arbitrary (the module must not trust any of them).
        match s.byte() {
            1 => c.certificate_der = s.bytes(),
            2 => c.rsa_modulus = s.bytes(),
            3 => c.ec_point = s.bytes(),
            4 => c.ec_params = s.bytes(),
            5 => c.key_bits = s.u32(),
            6 => c.key_type = s.u32() as i32,
            7 => c.subject_der = s.bytes(),
            8 => c.serial_der = s.bytes(),
            9 => c.key_id = s.bytes(),
            10 => c.pin_min_len = s.u32(),
            11 => c.pin_max_len = s.u32(),
            12 => c.public_key_der = s.bytes(),
            13 => c.not_after = s.i64(),
            14 => c.holder_name = s.string(),
            _ => {}
        }
        c
    }
}
