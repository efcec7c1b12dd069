//! Property tests for the agent framing (`frame::read_frame` / `encode`):
//! arbitrary and mutated bytes never panic and give a request or an
//! `UnexpectedEof`/`InvalidData` error; every request round-trips.

use std::io::ErrorKind;

use lanyard_proto::agent::{request, Hello, Request, Sign};
use lanyard_proto::frame::{encode, read_frame};
use lanyard_proto::MAX_FRAME_LEN;
use proptest::prelude::*;

/// A request with one of two bodies (a short one and one with bytes and
/// strings), all fields arbitrary.
fn any_request() -> impl Strategy<Value = Request> {
    let hello = (any::<i32>(), ".{0,40}")
        .prop_map(|(version, client)| request::Body::Hello(Hello { version, client }));
    let sign = (
        ".{0,20}",
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<u32>(),
        ".{0,12}",
    )
        .prop_map(|(card_id, algorithm, data, salt_len, context_pin)| {
            request::Body::Sign(Sign {
                card_id,
                algorithm,
                data,
                salt_len,
                context_pin,
                ..Sign::default()
            })
        });
    (
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..32),
        proptest::option::of(prop_oneof![hello, sign]),
    )
        .prop_map(|(request_id, app_id, body)| Request {
            request_id,
            app_id,
            body,
        })
}

/// The only error kinds a frame reader may give for bad input.
fn is_clean_error(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::UnexpectedEof | ErrorKind::InvalidData)
}

proptest! {
    #[test]
    fn arbitrary_bytes_give_a_request_or_a_clean_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Err(e) = read_frame::<Request, _>(&mut bytes.as_slice()) {
            prop_assert!(is_clean_error(e.kind()), "{e}");
        }
    }

    #[test]
    fn a_header_announcing_the_body_decodes_or_is_invalid_data(
        body in proptest::collection::vec(any::<u8>(), 0..1024)
    ) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        match read_frame::<Request, _>(&mut frame.as_slice()) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidData, "{}", e),
        }
    }

    #[test]
    fn any_length_over_the_limit_is_refused(len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX) {
        let frame = len.to_be_bytes();
        let e = read_frame::<Request, _>(&mut &frame[..]).unwrap_err();
        prop_assert_eq!(e.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn requests_round_trip(req in any_request()) {
        let frame = encode(&req);
        let mut r = frame.as_slice();
        let back: Request = read_frame(&mut r).unwrap();
        prop_assert_eq!(back, req);
        prop_assert!(r.is_empty(), "the reader took exactly one frame");
    }

    #[test]
    fn mutated_frames_never_panic(
        req in any_request(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = encode(&req);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] ^= byte;
        }
        frame.truncate(cut.index(frame.len() + 1));
        if let Err(e) = read_frame::<Request, _>(&mut frame.as_slice()) {
            prop_assert!(is_clean_error(e.kind()), "{e}");
        }
    }
}
