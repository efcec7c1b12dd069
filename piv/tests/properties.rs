//! Properties of the APDU layer over arbitrary input: no byte sequence, and
//! no sequence of commands, makes the application panic or answer without a
//! status word; commands round-trip through the parser in every case.

mod support;

use std::sync::OnceLock;

use lanyard_piv::apdu;
use lanyard_piv::{Applet, KeyAlgorithm, KeySlot};
use proptest::prelude::*;
use support::apdus::encode;
use support::{FakeCard, Key};

/// Keys made once: RSA key generation per case would be slow.
fn keys() -> Vec<Key> {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vec![
            Key::new(KeySlot::Authentication, KeyAlgorithm::Rsa2048),
            Key::new(KeySlot::Signature, KeyAlgorithm::EccP256),
        ]
    })
    .clone()
}

/// True when `resp` ends in a status word this application uses, and
/// carries data only with 9000 or 61xx.
fn well_formed(resp: &[u8]) -> bool {
    let Some((data, sw)) = resp.split_last_chunk::<2>() else {
        return false;
    };
    let known = matches!(
        sw[0],
        0x61 | 0x63 | 0x67 | 0x68 | 0x69 | 0x6A | 0x6D | 0x6E | 0x6F | 0x90
    );
    let data_ok = data.is_empty() || *sw == [0x90, 0x00] || sw[0] == 0x61;
    known && data_ok
}

/// Commands near what PIV clients send, with arbitrary fields mixed in.
fn command() -> impl Strategy<Value = Vec<u8>> {
    let cla = prop_oneof![Just(0x00u8), Just(0x10u8), any::<u8>()];
    let ins = prop_oneof![
        Just(0xA4u8),
        Just(0xCB),
        Just(0x20),
        Just(0x87),
        Just(0xC0),
        Just(0xFD),
        any::<u8>()
    ];
    let p1 = prop_oneof![
        Just(0x00u8),
        Just(0x04),
        Just(0x07),
        Just(0x11),
        Just(0x3F),
        Just(0xFF),
        any::<u8>()
    ];
    let p2 = prop_oneof![
        Just(0x00u8),
        Just(0x80),
        Just(0x9A),
        Just(0x9C),
        Just(0xFF),
        any::<u8>()
    ];
    let data = prop_oneof![
        Just(b"123456\xFF\xFF".to_vec()),
        Just(vec![0x5C, 0x03, 0x5F, 0xC1, 0x05]),
        Just(vec![0x5C, 0x01, 0x7E]),
        Just(lanyard_piv::PIV_AID.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ];
    (
        cla,
        ins,
        p1,
        p2,
        data,
        proptest::option::of(1usize..=65536),
        any::<bool>(),
    )
        .prop_map(|(cla, ins, p1, p2, data, ne, extended)| {
            let short_ok = data.len() <= 255 && ne.is_none_or(|n| n <= 256);
            encode([cla, ins, p1, p2], &data, ne, extended || !short_ok)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_status_word(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut applet = Applet::new(FakeCard::new(keys()));
        applet.power_on();
        let resp = applet.process(&bytes);
        prop_assert!(well_formed(&resp), "{:02X?}", resp);
    }

    #[test]
    fn command_sequences_never_panic(commands in proptest::collection::vec(command(), 1..24)) {
        let mut applet = Applet::new(FakeCard::new(keys()));
        applet.power_on();
        for c in &commands {
            let resp = applet.process(c);
            prop_assert!(well_formed(&resp), "{:02X?} -> {:02X?}", c, resp);
        }
        // Nothing reached a key without the right PIN first.
        let card = applet.backend();
        prop_assert!(card.signed.is_empty() || card.verify_calls > 0);
    }

    #[test]
    fn only_well_formed_pins_reach_the_counter(
        pins in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..12),
                (1usize..=8, proptest::collection::vec(b'0'..=b'9', 8)).prop_map(|(n, mut d)| {
                    d[n..].fill(0xFF);
                    d
                }),
            ],
            1..12,
        )
    ) {
        let mut applet = Applet::new(FakeCard::new(keys()));
        applet.power_on();
        let mut expected_calls = 0;
        for pin in &pins {
            let well_formed = pin.len() == 8 && {
                let digits = pin.iter().take_while(|b| b.is_ascii_digit()).count();
                digits > 0 && pin[digits..].iter().all(|&b| b == 0xFF)
            };
            let resp = applet.process(&encode([0x00, 0x20, 0x00, 0x80], pin, None, false));
            if pin.is_empty() {
                continue;
            }
            if well_formed {
                expected_calls += 1;
            } else {
                prop_assert_eq!(resp, vec![0x6A, 0x80], "{:02X?}", pin);
            }
        }
        prop_assert_eq!(applet.backend().verify_calls, expected_calls);
    }

    #[test]
    fn commands_round_trip_through_the_parser(
        header in any::<[u8; 4]>().prop_map(|mut h| { h[0] &= 0x10; h }),
        data in proptest::collection::vec(any::<u8>(), 0..400),
        ne in proptest::option::of(1usize..=65536),
        extended in any::<bool>(),
    ) {
        let extended = extended || data.len() > 255 || ne.is_some_and(|n| n > 256);
        let bytes = encode(header, &data, ne, extended);
        let c = apdu::parse(&bytes).expect("a well-formed command parses");
        prop_assert_eq!([c.cla, c.ins, c.p1, c.p2], header);
        prop_assert_eq!(c.data, &data[..]);
        prop_assert_eq!(c.ne, ne);
        prop_assert_eq!(c.extended, extended && (!data.is_empty() || ne.is_some()));
    }
}
