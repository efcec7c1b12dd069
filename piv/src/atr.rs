//! The Answer To Reset of a Lanyard card: T=1 only, historical bytes that
//! advertise command chaining and extended Lc/Le (ISO 7816-4 §8.1.1.2.7) and
//! name the card as Lanyard's (card issuer's data), so readers can tell it.

/// Card issuer's data carried in the historical bytes (compact-TLV tag 5).
const ISSUER_DATA: &[u8] = b"Lanyard";

/// The ATR: TS 3B, T0 8D (TD1 present, 13 historical bytes), TD1 01 (T=1),
/// historical bytes `80 | 73 80 21 C0 | 57 "Lanyard"`, TCK.
const ATR: [u8; 17] = [
    0x3B, 0x8D, 0x01, // TS, T0, TD1 (T=1)
    0x80, // category indicator: compact-TLV objects follow
    0x73, 0x80, 0x21, 0xC0, // card capabilities: select by DF name; chaining + extended Lc/Le
    0x57, b'L', b'a', b'n', b'y', b'a', b'r', b'd', // card issuer's data
    0x00, // TCK, fixed by `atr_checksum` at compile time below
];

/// The ATR with its check byte (XOR of T0..TCK is zero).
static ATR_WITH_TCK: [u8; 17] = atr_checksum(ATR);

const fn atr_checksum(mut atr: [u8; 17]) -> [u8; 17] {
    let mut tck = 0u8;
    let mut i = 1;
    while i < atr.len() - 1 {
        tck ^= atr[i];
        i += 1;
    }
    atr[atr.len() - 1] = tck;
    atr
}

/// The ATR the card answers with at power on (and vpcd's "get ATR").
pub fn atr() -> &'static [u8] {
    &ATR_WITH_TCK
}

/// True when `atr` is a Lanyard card's: a well-formed ATR whose historical
/// bytes carry Lanyard's card issuer's data.
pub fn is_lanyard_atr(atr: &[u8]) -> bool {
    historical_bytes(atr)
        .and_then(compact_tlv_issuer_data)
        .is_some_and(|data| data.starts_with(ISSUER_DATA))
}

/// The historical bytes of a well-formed ATR (ISO 7816-3 §8.2), or `None`.
fn historical_bytes(atr: &[u8]) -> Option<&[u8]> {
    if !matches!(atr.first(), Some(0x3B) | Some(0x3F)) {
        return None;
    }
    let t0 = *atr.get(1)?;
    let k = usize::from(t0 & 0x0F);
    let mut pos = 2;
    let mut y = t0 >> 4;
    let mut needs_tck = false;
    loop {
        let interface_bytes = (y & 0x0F).count_ones() as usize;
        let td = if y & 0x08 != 0 {
            Some(*atr.get(pos + interface_bytes - 1)?)
        } else {
            None
        };
        pos += interface_bytes;
        match td {
            Some(td) => {
                if td & 0x0F != 0 {
                    needs_tck = true;
                }
                y = td >> 4;
            }
            None => break,
        }
    }
    let historical = atr.get(pos..pos + k)?;
    let rest = atr.len() - (pos + k);
    let tck_ok = if needs_tck {
        rest == 1 && atr[1..].iter().fold(0u8, |acc, b| acc ^ b) == 0
    } else {
        rest == 0
    };
    tck_ok.then_some(historical)
}

/// The card issuer's data (compact-TLV tag 5) of historical bytes that
/// start with category indicator 80, or `None`.
fn compact_tlv_issuer_data(historical: &[u8]) -> Option<&[u8]> {
    let (&category, mut rest) = historical.split_first()?;
    if category != 0x80 {
        return None;
    }
    while let Some((&header, tail)) = rest.split_first() {
        let len = usize::from(header & 0x0F);
        let value = tail.get(..len)?;
        if header >> 4 == 0x5 {
            return Some(value);
        }
        rest = &tail[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_is_well_formed_and_lanyard() {
        let a = atr();
        assert_eq!(a[0], 0x3B);
        assert_eq!(a[1..].iter().fold(0u8, |acc, b| acc ^ b), 0, "TCK");
        assert!(a.len() <= 33);
        assert!(is_lanyard_atr(a));
    }

    #[test]
    fn atr_advertises_chaining_and_extended_length() {
        let hist = historical_bytes(atr()).expect("historical bytes");
        let caps = hist
            .windows(4)
            .find(|w| w[0] == 0x73)
            .expect("card capabilities");
        assert_eq!(caps[3] & 0xC0, 0xC0);
    }

    #[test]
    fn other_atrs_are_not_lanyard() {
        // A YubiKey 5 and a PC/SC contactless pseudo-ATR.
        let yubikey = [
            0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0,
            0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
        ];
        assert!(!is_lanyard_atr(&yubikey));
        assert!(!is_lanyard_atr(&[0x3B, 0x80, 0x80, 0x01, 0x01]));
        assert!(!is_lanyard_atr(&[]));
        let mut bad_tck = atr().to_vec();
        let last = bad_tck.len() - 1;
        bad_tck[last] ^= 1;
        assert!(!is_lanyard_atr(&bad_tck));
        assert!(!is_lanyard_atr(&atr()[..atr().len() - 1]));
    }
}
