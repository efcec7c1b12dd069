//! Property tests for the daemon's request decoding (`connection::frame_len`
//! and `decode_and_wipe`, shared by the async and the blocking connection):
//! arbitrary bytes never panic and give a request or `BadRequest`, the body
//! is always wiped, and what the module encodes decodes to the same request.

use lanyard_proto::agent::{request, Login, Request, Sign};
use lanyard_proto::MAX_FRAME_LEN;
use proptest::prelude::*;

use crate::connection::{decode_and_wipe, frame_len};
use crate::error::Error;

proptest! {
    #[test]
    fn any_header_gives_its_length_or_bad_request(header in any::<[u8; 4]>()) {
        let announced = u32::from_be_bytes(header) as usize;
        match frame_len(header) {
            Ok(len) => prop_assert_eq!(len, announced),
            Err(e) => {
                prop_assert!(announced > MAX_FRAME_LEN);
                prop_assert!(matches!(e, Error::BadRequest(_)), "{e}");
            }
        }
    }

    #[test]
    fn arbitrary_bodies_decode_or_are_bad_requests_and_are_wiped(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let mut body = bytes.clone();
        if let Err(e) = decode_and_wipe(&mut body) {
            prop_assert!(matches!(e, Error::BadRequest(_)), "{e}");
        }
        prop_assert!(body.iter().all(|&b| b == 0), "the body is wiped");
    }

    #[test]
    fn encoded_requests_decode_to_themselves(
        request_id in any::<u64>(),
        app_id in proptest::collection::vec(any::<u8>(), 0..32),
        card_id in ".{0,24}",
        pin in "[0-9]{0,12}",
        data in proptest::collection::vec(any::<u8>(), 0..256),
        login in any::<bool>(),
    ) {
        let body = if login {
            request::Body::Login(Login { card_id, pin, ..Login::default() })
        } else {
            request::Body::Sign(Sign { card_id, data, ..Sign::default() })
        };
        let req = Request { request_id, app_id, body: Some(body) };
        let frame = lanyard_proto::frame::encode(&req);
        let header: [u8; 4] = frame[..4].try_into().unwrap();
        prop_assert_eq!(frame_len(header).unwrap(), frame.len() - 4);
        let mut body = frame[4..].to_vec();
        prop_assert_eq!(decode_and_wipe(&mut body).unwrap(), req);
    }

    #[test]
    fn mutated_requests_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..128),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let req = Request {
            request_id: 1,
            app_id: vec![7; 16],
            body: Some(request::Body::Sign(Sign { card_id: "CARD1".into(), data, ..Sign::default() })),
        };
        let mut body = lanyard_proto::frame::encode(&req)[4..].to_vec();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] ^= byte;
        }
        body.truncate(cut.index(body.len() + 1));
        if let Err(e) = decode_and_wipe(&mut body) {
            prop_assert!(matches!(e, Error::BadRequest(_)), "{e}");
        }
    }
}
