//! Which mechanisms a token offers (per key type), their CK_MECHANISM_INFO,
//! and how a caller's CK_MECHANISM turns into a signature scheme: which hash
//! the module computes and what the daemon is asked to sign.

use cryptoki_sys::*;
use lanyard_proto::agent::KeyType;

use crate::error::{Pkcs11Error, Result};
use crate::hash::HashAlg;

/// A CK_MECHANISM with its parameter copied out of the caller's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mechanism {
    pub mechanism: CK_MECHANISM_TYPE,
    pub param: Vec<u8>,
}

impl Mechanism {
    /// A mechanism without parameters.
    pub fn new(mechanism: CK_MECHANISM_TYPE) -> Self {
        Mechanism {
            mechanism,
            param: Vec::new(),
        }
    }
}

/// The kind of key a card holds, which decides its mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ec,
}

impl KeyKind {
    /// From the daemon's key type; `None` for a type this module does not know.
    pub fn from_proto(key_type: i32) -> Option<KeyKind> {
        match KeyType::try_from(key_type).ok()? {
            KeyType::Rsa2048 => Some(KeyKind::Rsa),
            KeyType::EcP256 => Some(KeyKind::Ec),
            KeyType::Unspecified => None,
        }
    }

    /// CKA_KEY_TYPE.
    pub fn ck_key_type(self) -> CK_KEY_TYPE {
        match self {
            KeyKind::Rsa => CKK_RSA,
            KeyKind::Ec => CKK_EC,
        }
    }

    /// CKA_KEY_GEN_MECHANISM.
    pub fn key_gen_mechanism(self) -> CK_MECHANISM_TYPE {
        match self {
            KeyKind::Rsa => CKM_RSA_PKCS_KEY_PAIR_GEN,
            KeyKind::Ec => CKM_EC_KEY_PAIR_GEN,
        }
    }
}

// CKF_HW: the private-key operation runs in the card (the daemon), not in
// the application's process; pkcs11-tool picks only such mechanisms for
// --sign without -m and for its --test signature checks.
const RSA_SIGN: CK_FLAGS = CKF_HW | CKF_SIGN | CKF_VERIFY;
const EC_SIGN: CK_FLAGS =
    CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

/// One row of a token's mechanism table.
#[derive(Debug, Clone, Copy)]
struct MechRow {
    mech: CK_MECHANISM_TYPE,
    min: CK_ULONG,
    max: CK_ULONG,
    flags: CK_FLAGS,
}

const fn row(mech: CK_MECHANISM_TYPE, min: CK_ULONG, max: CK_ULONG, flags: CK_FLAGS) -> MechRow {
    MechRow {
        mech,
        min,
        max,
        flags,
    }
}

// CKM_RSA_PKCS first: pkcs11-tool --test starts its signature tests with the
// first listed mechanism it knows.
const RSA_MECHS: &[MechRow] = &[
    row(CKM_RSA_PKCS, 2048, 2048, RSA_SIGN),
    row(CKM_SHA1_RSA_PKCS, 2048, 2048, RSA_SIGN),
    row(CKM_SHA256_RSA_PKCS, 2048, 2048, RSA_SIGN),
    row(CKM_SHA384_RSA_PKCS, 2048, 2048, RSA_SIGN),
    row(CKM_SHA512_RSA_PKCS, 2048, 2048, RSA_SIGN),
    row(CKM_RSA_PKCS_PSS, 2048, 2048, RSA_SIGN),
    row(CKM_SHA256_RSA_PKCS_PSS, 2048, 2048, RSA_SIGN),
    row(CKM_SHA384_RSA_PKCS_PSS, 2048, 2048, RSA_SIGN),
    row(CKM_SHA512_RSA_PKCS_PSS, 2048, 2048, RSA_SIGN),
];

const EC_MECHS: &[MechRow] = &[
    row(CKM_ECDSA, 256, 256, EC_SIGN),
    row(CKM_ECDSA_SHA256, 256, 256, EC_SIGN),
    row(CKM_ECDSA_SHA384, 256, 256, EC_SIGN),
];

const DIGEST_MECHS: &[MechRow] = &[
    row(CKM_SHA_1, 0, 0, CKF_DIGEST),
    row(CKM_SHA256, 0, 0, CKF_DIGEST),
    row(CKM_SHA384, 0, 0, CKF_DIGEST),
    row(CKM_SHA512, 0, 0, CKF_DIGEST),
];

fn rows(kind: KeyKind) -> impl Iterator<Item = &'static MechRow> {
    let keyed = match kind {
        KeyKind::Rsa => RSA_MECHS,
        KeyKind::Ec => EC_MECHS,
    };
    keyed.iter().chain(DIGEST_MECHS.iter())
}

/// C_GetMechanismList for a token holding a `kind` key.
pub fn mechanism_list(kind: KeyKind) -> Vec<CK_MECHANISM_TYPE> {
    rows(kind).map(|r| r.mech).collect()
}

/// C_GetMechanismInfo; `None` when the token does not offer `mech`.
pub fn mechanism_info(kind: KeyKind, mech: CK_MECHANISM_TYPE) -> Option<CK_MECHANISM_INFO> {
    rows(kind)
        .find(|r| r.mech == mech)
        .map(|r| CK_MECHANISM_INFO {
            ulMinKeySize: r.min,
            ulMaxKeySize: r.max,
            flags: r.flags,
        })
}

/// Whether the token offers `mech` with all of `flags`.
pub fn offers(kind: KeyKind, mech: CK_MECHANISM_TYPE, flags: CK_FLAGS) -> bool {
    mechanism_info(kind, mech).is_some_and(|i| i.flags & flags == flags)
}

/// The signature mechanisms of a key, for CKA_ALLOWED_MECHANISMS.
pub fn signature_mechanisms(kind: KeyKind) -> Vec<CK_MECHANISM_TYPE> {
    rows(kind)
        .filter(|r| r.flags & CKF_SIGN != 0)
        .map(|r| r.mech)
        .collect()
}

/// CK_RSA_PKCS_PSS_PARAMS, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PssParams {
    pub hash: HashAlg,
    pub mgf_hash: HashAlg,
    pub salt_len: usize,
}

const ULONG: usize = std::mem::size_of::<CK_ULONG>();

impl PssParams {
    /// Reads CK_RSA_PKCS_PSS_PARAMS { hashAlg, mgf, sLen } (three native
    /// CK_ULONGs) and checks it against a key of `modulus_bits`.
    pub fn parse(param: &[u8], modulus_bits: usize) -> Result<PssParams> {
        if param.len() != std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() || param.len() != 3 * ULONG
        {
            return Err(Pkcs11Error::MechanismParamInvalid);
        }
        let field = |i: usize| -> Result<CK_ULONG> {
            let bytes: [u8; ULONG] = param[i * ULONG..(i + 1) * ULONG]
                .try_into()
                .map_err(|_| Pkcs11Error::MechanismParamInvalid)?;
            Ok(CK_ULONG::from_ne_bytes(bytes))
        };
        let hash =
            HashAlg::from_digest_mechanism(field(0)?).ok_or(Pkcs11Error::MechanismParamInvalid)?;
        let mgf_hash = HashAlg::from_mgf(field(1)?).ok_or(Pkcs11Error::MechanismParamInvalid)?;
        let salt_len =
            usize::try_from(field(2)?).map_err(|_| Pkcs11Error::MechanismParamInvalid)?;
        // RFC 8017 9.1.1: emLen >= hLen + sLen + 2, emLen = ceil((modBits - 1) / 8).
        let em_len = (modulus_bits.saturating_sub(1)).div_ceil(8);
        if salt_len
            .checked_add(hash.output_len() + 2)
            .is_none_or(|need| need > em_len)
        {
            return Err(Pkcs11Error::MechanismParamInvalid);
        }
        Ok(PssParams {
            hash,
            mgf_hash,
            salt_len,
        })
    }

    /// Encodes the struct the way a C caller lays it out (for tests and callers in Rust).
    pub fn encode(hash_mech: CK_MECHANISM_TYPE, mgf: CK_ULONG, salt_len: CK_ULONG) -> Vec<u8> {
        [hash_mech, mgf, salt_len]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }
}

/// What a signature (or verification) mechanism does, once parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignScheme {
    /// PKCS#1 v1.5. `prehash: None` is CKM_RSA_PKCS (the caller's bytes are
    /// padded as they are); `Some(h)` hashes and wraps in a DigestInfo.
    RsaPkcs1 { prehash: Option<HashAlg> },
    /// PSS. `prehash: None` is CKM_RSA_PKCS_PSS (the caller passes the digest).
    RsaPss {
        prehash: Option<HashAlg>,
        params: PssParams,
    },
    /// ECDSA with r||s output. `prehash: None` is CKM_ECDSA (caller's digest).
    Ecdsa { prehash: Option<HashAlg> },
}

/// Largest input CKM_ECDSA accepts: the longest digest we know.
pub const ECDSA_MAX_INPUT: usize = 64;

impl SignScheme {
    /// Parses `mech` for a key of `kind` with `key_bits` bits. Mechanisms the
    /// token does not offer are `MechanismInvalid`, bad parameters
    /// `MechanismParamInvalid`.
    pub fn parse(mech: &Mechanism, kind: KeyKind, key_bits: usize) -> Result<SignScheme> {
        if !offers(kind, mech.mechanism, CKF_SIGN) {
            return Err(Pkcs11Error::MechanismInvalid);
        }
        let takes_params = matches!(
            mech.mechanism,
            CKM_RSA_PKCS_PSS
                | CKM_SHA256_RSA_PKCS_PSS
                | CKM_SHA384_RSA_PKCS_PSS
                | CKM_SHA512_RSA_PKCS_PSS
        );
        if !takes_params && !mech.param.is_empty() {
            // PKCS#11: a parameter given to a mechanism that has none.
            return Err(Pkcs11Error::MechanismParamInvalid);
        }
        let pss = |prehash: Option<HashAlg>| -> Result<SignScheme> {
            let params = PssParams::parse(&mech.param, key_bits)?;
            if prehash.is_some_and(|h| h != params.hash) {
                return Err(Pkcs11Error::MechanismParamInvalid);
            }
            Ok(SignScheme::RsaPss { prehash, params })
        };
        match mech.mechanism {
            CKM_RSA_PKCS => Ok(SignScheme::RsaPkcs1 { prehash: None }),
            CKM_SHA1_RSA_PKCS => Ok(SignScheme::RsaPkcs1 {
                prehash: Some(HashAlg::Sha1),
            }),
            CKM_SHA256_RSA_PKCS => Ok(SignScheme::RsaPkcs1 {
                prehash: Some(HashAlg::Sha256),
            }),
            CKM_SHA384_RSA_PKCS => Ok(SignScheme::RsaPkcs1 {
                prehash: Some(HashAlg::Sha384),
            }),
            CKM_SHA512_RSA_PKCS => Ok(SignScheme::RsaPkcs1 {
                prehash: Some(HashAlg::Sha512),
            }),
            CKM_RSA_PKCS_PSS => pss(None),
            CKM_SHA256_RSA_PKCS_PSS => pss(Some(HashAlg::Sha256)),
            CKM_SHA384_RSA_PKCS_PSS => pss(Some(HashAlg::Sha384)),
            CKM_SHA512_RSA_PKCS_PSS => pss(Some(HashAlg::Sha512)),
            CKM_ECDSA => Ok(SignScheme::Ecdsa { prehash: None }),
            CKM_ECDSA_SHA256 => Ok(SignScheme::Ecdsa {
                prehash: Some(HashAlg::Sha256),
            }),
            CKM_ECDSA_SHA384 => Ok(SignScheme::Ecdsa {
                prehash: Some(HashAlg::Sha384),
            }),
            _ => Err(Pkcs11Error::MechanismInvalid),
        }
    }

    /// The hash the module computes over the caller's data, if any.
    pub fn prehash(&self) -> Option<HashAlg> {
        match *self {
            SignScheme::RsaPkcs1 { prehash }
            | SignScheme::RsaPss { prehash, .. }
            | SignScheme::Ecdsa { prehash } => prehash,
        }
    }

    /// For mechanisms that take the caller's bytes as they are: the most bytes
    /// accepted (RSA: k - 11; PSS: the digest length; ECDSA: a digest).
    pub fn raw_input_limit(&self, signature_len: usize) -> usize {
        match self {
            SignScheme::RsaPkcs1 { .. } => signature_len.saturating_sub(11),
            SignScheme::RsaPss { params, .. } => params.hash.output_len(),
            SignScheme::Ecdsa { .. } => ECDSA_MAX_INPUT,
        }
    }

    /// Checks raw input (already hashed by the module or given by the caller)
    /// and turns it into what the daemon signs.
    pub fn signing_input(&self, input: Vec<u8>, signature_len: usize) -> Result<Vec<u8>> {
        match self {
            SignScheme::RsaPkcs1 { prehash: Some(h) } => h.digest_info(&input),
            SignScheme::RsaPkcs1 { prehash: None } => {
                if input.len() > self.raw_input_limit(signature_len) {
                    return Err(Pkcs11Error::DataLenRange);
                }
                Ok(input)
            }
            SignScheme::RsaPss { params, .. } => {
                if input.len() != params.hash.output_len() {
                    return Err(Pkcs11Error::DataLenRange);
                }
                Ok(input)
            }
            SignScheme::Ecdsa { .. } => {
                if input.is_empty() || input.len() > ECDSA_MAX_INPUT {
                    return Err(Pkcs11Error::DataLenRange);
                }
                Ok(input)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_list_only_their_key_type() {
        let rsa = mechanism_list(KeyKind::Rsa);
        assert!(rsa.contains(&CKM_SHA256_RSA_PKCS));
        assert!(!rsa.contains(&CKM_ECDSA));
        let ec = mechanism_list(KeyKind::Ec);
        assert!(ec.contains(&CKM_ECDSA_SHA256));
        assert!(!ec.contains(&CKM_RSA_PKCS));
        assert!(ec.contains(&CKM_SHA512) && rsa.contains(&CKM_SHA512));
        assert_eq!(rsa[0], CKM_RSA_PKCS);
    }

    #[test]
    fn mechanism_info_flags() {
        let i = mechanism_info(KeyKind::Ec, CKM_ECDSA).unwrap();
        assert_eq!(i.ulMinKeySize, 256);
        assert_ne!(i.flags & CKF_EC_NAMEDCURVE, 0);
        let i = mechanism_info(KeyKind::Rsa, CKM_SHA256_RSA_PKCS_PSS).unwrap();
        assert_eq!((i.ulMinKeySize, i.ulMaxKeySize), (2048, 2048));
        assert_eq!(i.flags, CKF_HW | CKF_SIGN | CKF_VERIFY);
        assert_eq!(
            mechanism_info(KeyKind::Rsa, CKM_SHA256).unwrap().flags,
            CKF_DIGEST
        );
        assert!(mechanism_info(KeyKind::Rsa, CKM_RSA_X_509).is_none());
        assert!(mechanism_info(KeyKind::Rsa, CKM_ECDSA).is_none());
    }

    #[test]
    fn pss_params_checked() {
        let p = PssParams::encode(CKM_SHA256, CKG_MGF1_SHA256, 20);
        let m = Mechanism {
            mechanism: CKM_SHA256_RSA_PKCS_PSS,
            param: p.clone(),
        };
        assert_eq!(
            SignScheme::parse(&m, KeyKind::Rsa, 2048).unwrap(),
            SignScheme::RsaPss {
                prehash: Some(HashAlg::Sha256),
                params: PssParams {
                    hash: HashAlg::Sha256,
                    mgf_hash: HashAlg::Sha256,
                    salt_len: 20
                }
            }
        );
        // Hash mismatch with the mechanism.
        let m = Mechanism {
            mechanism: CKM_SHA384_RSA_PKCS_PSS,
            param: p,
        };
        assert_eq!(
            SignScheme::parse(&m, KeyKind::Rsa, 2048),
            Err(Pkcs11Error::MechanismParamInvalid)
        );
        // Missing params, salt too long, bad MGF.
        let m = Mechanism::new(CKM_RSA_PKCS_PSS);
        assert_eq!(
            SignScheme::parse(&m, KeyKind::Rsa, 2048),
            Err(Pkcs11Error::MechanismParamInvalid)
        );
        let m = Mechanism {
            mechanism: CKM_RSA_PKCS_PSS,
            param: PssParams::encode(CKM_SHA256, CKG_MGF1_SHA256, 256 - 32 - 1),
        };
        assert_eq!(
            SignScheme::parse(&m, KeyKind::Rsa, 2048),
            Err(Pkcs11Error::MechanismParamInvalid)
        );
        let m = Mechanism {
            mechanism: CKM_RSA_PKCS_PSS,
            param: PssParams::encode(CKM_SHA256, CKG_MGF1_SHA256, 256 - 32 - 2),
        };
        assert!(SignScheme::parse(&m, KeyKind::Rsa, 2048).is_ok());
        let m = Mechanism {
            mechanism: CKM_RSA_PKCS_PSS,
            param: PssParams::encode(CKM_SHA256, 0x99, 32),
        };
        assert_eq!(
            SignScheme::parse(&m, KeyKind::Rsa, 2048),
            Err(Pkcs11Error::MechanismParamInvalid)
        );
    }

    #[test]
    fn mechanism_of_other_key_type_is_invalid() {
        assert_eq!(
            SignScheme::parse(&Mechanism::new(CKM_ECDSA), KeyKind::Rsa, 2048),
            Err(Pkcs11Error::MechanismInvalid)
        );
        assert_eq!(
            SignScheme::parse(&Mechanism::new(CKM_SHA256), KeyKind::Rsa, 2048),
            Err(Pkcs11Error::MechanismInvalid)
        );
    }

    #[test]
    fn only_pss_mechanisms_take_a_parameter() {
        for (mechanism, kind) in [
            (CKM_RSA_PKCS, KeyKind::Rsa),
            (CKM_SHA256_RSA_PKCS, KeyKind::Rsa),
            (CKM_ECDSA, KeyKind::Ec),
            (CKM_ECDSA_SHA256, KeyKind::Ec),
        ] {
            let with = Mechanism {
                mechanism,
                param: vec![0; 8],
            };
            assert_eq!(
                SignScheme::parse(&with, kind, 2048),
                Err(Pkcs11Error::MechanismParamInvalid),
                "{mechanism:#x}"
            );
            assert!(SignScheme::parse(&Mechanism::new(mechanism), kind, 2048).is_ok());
        }
    }

    #[test]
    fn raw_rsa_pkcs_accepts_md5_sha1_and_limits_to_k_minus_11() {
        let s = SignScheme::RsaPkcs1 { prehash: None };
        assert_eq!(s.signing_input(vec![7; 36], 256).unwrap().len(), 36);
        assert!(s.signing_input(vec![7; 245], 256).is_ok());
        assert_eq!(
            s.signing_input(vec![7; 246], 256),
            Err(Pkcs11Error::DataLenRange)
        );
    }
}
