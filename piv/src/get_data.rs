//! GET DATA (SP 800-73-4 part 2 §3.1.2): P1P2 3FFF and a tag list 5C
//! naming one data object; this card holds the Discovery Object, the CHUID
//! and the certificates of keys 9A and 9C. Anything else is not found.

use crate::aid;
use crate::backend::{CardView, KeySlot};
use crate::certificate;
use crate::chuid;
use crate::status::Status;
use crate::tlv;

/// Tag of the Discovery Object.
pub const TAG_DISCOVERY: u32 = 0x7E;
/// Tag of the Card Holder Unique Identifier.
pub const TAG_CHUID: u32 = 0x5FC102;
/// Tag of the X.509 certificate for PIV Authentication (9A).
pub const TAG_CERT_9A: u32 = 0x5FC105;
/// Tag of the X.509 certificate for Digital Signature (9C).
pub const TAG_CERT_9C: u32 = 0x5FC10A;

/// The object tag GET DATA's data field names, or the status refusing it.
pub fn requested_tag(p1: u8, p2: u8, data: &[u8]) -> Result<u32, Status> {
    if (p1, p2) != (0x3F, 0xFF) {
        return Err(Status::WrongP1P2);
    }
    let list = tlv::read_one(data).ok_or(Status::WrongData)?;
    if list.tag != 0x5C || list.value.is_empty() || list.value.len() > 3 {
        return Err(Status::WrongData);
    }
    Ok(list
        .value
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// The object tagged `tag` on `card` (None: no card inserted), or 6A82.
pub fn object(tag: u32, card: Option<&CardView>) -> Result<Vec<u8>, Status> {
    if tag == TAG_DISCOVERY {
        return Ok(aid::discovery_object());
    }
    let card = card.ok_or(Status::NotFound)?;
    let cert_of = |slot: KeySlot| {
        card.slots
            .iter()
            .find(|s| s.slot == slot)
            .map(|s| s.certificate_der.as_slice())
    };
    match tag {
        TAG_CHUID => Ok(chuid::chuid(
            &card.card_id,
            cert_of(KeySlot::Authentication),
        )),
        TAG_CERT_9A => cert_of(KeySlot::Authentication)
            .map(certificate::container)
            .ok_or(Status::NotFound),
        TAG_CERT_9C => cert_of(KeySlot::Signature)
            .map(certificate::container)
            .ok_or(Status::NotFound),
        _ => Err(Status::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{KeyAlgorithm, SlotView};

    fn card(with_9c: bool) -> CardView {
        let mut slots = vec![SlotView {
            slot: KeySlot::Authentication,
            algorithm: KeyAlgorithm::EccP256,
            certificate_der: vec![0x30, 0x00],
        }];
        if with_9c {
            slots.push(SlotView {
                slot: KeySlot::Signature,
                algorithm: KeyAlgorithm::EccP256,
                certificate_der: vec![0x30, 0x01, 0x09],
            });
        }
        CardView {
            card_id: "c1".into(),
            slots,
        }
    }

    #[test]
    fn tag_lists() {
        assert_eq!(
            requested_tag(0x3F, 0xFF, &[0x5C, 0x03, 0x5F, 0xC1, 0x05]),
            Ok(TAG_CERT_9A)
        );
        assert_eq!(
            requested_tag(0x3F, 0xFF, &[0x5C, 0x01, 0x7E]),
            Ok(TAG_DISCOVERY)
        );
        assert_eq!(
            requested_tag(0x00, 0x00, &[0x5C, 0x01, 0x7E]),
            Err(Status::WrongP1P2)
        );
        for bad in [
            &[][..],
            &[0x5C, 0x00],
            &[0x5C, 0x04, 1, 2, 3, 4],
            &[0x5D, 0x01, 0x7E],
            &[0x5C, 0x01, 0x7E, 0x00],
            &[0x5C, 0x03, 0x5F],
        ] {
            assert_eq!(
                requested_tag(0x3F, 0xFF, bad),
                Err(Status::WrongData),
                "{bad:02X?}"
            );
        }
    }

    #[test]
    fn objects() {
        let c = card(false);
        assert_eq!(object(TAG_DISCOVERY, None), Ok(aid::discovery_object()));
        assert_eq!(object(TAG_CHUID, None), Err(Status::NotFound));
        assert_eq!(
            object(TAG_CERT_9A, Some(&c)),
            Ok(certificate::container(&[0x30, 0x00]))
        );
        assert_eq!(object(TAG_CERT_9C, Some(&c)), Err(Status::NotFound));
        assert_eq!(
            object(TAG_CERT_9C, Some(&card(true))),
            Ok(certificate::container(&[0x30, 0x01, 0x09]))
        );
        assert_eq!(object(0x5FC107, Some(&c)), Err(Status::NotFound));
        assert_eq!(object(0x5FC10C, Some(&c)), Err(Status::NotFound));
        assert!(object(TAG_CHUID, Some(&c)).is_ok());
    }
}
