//! Property tests of the isComposing codec: model -> canonical XML -> model is the identity,
//! the canonical form is a fixed point, and no input panics.

use bytes::Bytes;
use cpm_iwf::wire::iscomposing::{self, IsComposing, State};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = Bytes> {
    "[!-~é€]([ !-~é€]{0,30}[!-~é€])?".prop_map(|s| Bytes::from(s.into_bytes()))
}

fn extension() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        ("[a-z]{1,8}", 0u8..5, "[a-zA-Z0-9 ]{0,12}").prop_map(|(name, n, text)| {
            Bytes::from(format!(
                "<x:{name} xmlns:x=\"urn:ext:{n}\">{text}</x:{name}>"
            ))
        }),
        ("[a-z]{1,8}", 0u8..5)
            .prop_map(|(name, n)| Bytes::from(format!("<{name} xmlns=\"urn:e{n}\"/>"))),
    ]
}

prop_compose! {
    fn model()(
        active in any::<bool>(),
        lastactive in proptest::option::of(token()),
        contenttype in proptest::option::of(token()),
        refresh in proptest::option::of(1u32..),
        extensions in proptest::collection::vec(extension(), 0..3),
    ) -> IsComposing {
        IsComposing {
            state: if active { State::Active } else { State::Idle },
            lastactive, contenttype, refresh, extensions,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_of_serialize_is_identity(x in model()) {
        let bytes = x.to_bytes();
        let back = iscomposing::parse(bytes.clone());
        prop_assert!(back.is_ok(), "{}: {:?}", String::from_utf8_lossy(&bytes), back);
        let back = back.unwrap();
        prop_assert_eq!(&back, &x);
        prop_assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn damaged_bodies_never_panic(x in model(), cut in any::<prop::sample::Index>(),
                                  flip in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let bytes = x.to_bytes().to_vec();
        let cut = cut.index(bytes.len() + 1);
        let _ = iscomposing::parse(Bytes::copy_from_slice(&bytes[..cut]));
        let mut flipped = bytes.clone();
        let i = flip.index(flipped.len());
        flipped[i] = byte;
        if let Ok(y) = iscomposing::parse(Bytes::from(flipped)) {
            prop_assert_eq!(iscomposing::parse(y.to_bytes()).unwrap(), y);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = iscomposing::parse(Bytes::from(data));
    }
}
