//! Property tests of the IMDN codec: model -> canonical XML -> model is the identity, the
//! canonical form is a fixed point, and no input (random or a damaged valid body) panics.

use bytes::Bytes;
use cpm_iwf::wire::imdn::{
    self, DeliveryStatus, DisplayStatus, Imdn, Notification, ProcessingStatus,
};
use proptest::prelude::*;

/// A token-like value: no leading or trailing white space (the codec trims those), XML
/// specials and non-ASCII included.
fn token() -> impl Strategy<Value = Bytes> {
    "[!-~é€😀]([ !-~é€😀]{0,30}[!-~é€😀])?".prop_map(|s| Bytes::from(s.into_bytes()))
}

/// Free text (subject): kept exactly, white space and CR included.
fn free_text() -> impl Strategy<Value = Bytes> {
    "[ \t\r\n!-~é€]{0,40}".prop_map(|s| Bytes::from(s.into_bytes()))
}

fn notification() -> impl Strategy<Value = Notification> {
    prop_oneof![
        Just(Notification::Delivery(DeliveryStatus::Delivered)),
        Just(Notification::Delivery(DeliveryStatus::Failed)),
        Just(Notification::Delivery(DeliveryStatus::Forbidden)),
        Just(Notification::Delivery(DeliveryStatus::Error)),
        Just(Notification::Display(DisplayStatus::Displayed)),
        Just(Notification::Display(DisplayStatus::Forbidden)),
        Just(Notification::Display(DisplayStatus::Error)),
        Just(Notification::Processing(ProcessingStatus::Processed)),
        Just(Notification::Processing(ProcessingStatus::Stored)),
        Just(Notification::Processing(ProcessingStatus::Forbidden)),
        Just(Notification::Processing(ProcessingStatus::Error)),
    ]
}

/// A self-contained element of another namespace, as the parser hands them out.
fn extension() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        ("[a-z]{1,8}", 0u8..5, "[a-z0-9]{0,6}", "[a-zA-Z0-9 ]{0,12}").prop_map(
            |(name, n, attr, text)| {
                Bytes::from(format!(
                    "<x:{name} xmlns:x=\"urn:ext:{n}\" a=\"{attr}\">{text}</x:{name}>"
                ))
            }
        ),
        ("[a-z]{1,8}", 0u8..5)
            .prop_map(|(name, n)| Bytes::from(format!("<{name} xmlns=\"urn:e{n}\"/>"))),
        ("[a-z]{1,8}", "[a-z]{1,8}").prop_map(|(a, b)| Bytes::from(format!(
            "<g:{a} xmlns:g=\"urn:gsma\"><g:{b}>1</g:{b}><!-- c --></g:{a}>"
        ))),
    ]
}

prop_compose! {
    fn model()(
        message_id in token(),
        datetime in token(),
        recipient_uri in proptest::option::of(token()),
        original_recipient_uri in proptest::option::of(token()),
        subject in proptest::option::of(free_text()),
        notification in notification(),
        status_extensions in proptest::collection::vec(extension(), 0..3),
        notification_extensions in proptest::collection::vec(extension(), 0..2),
        extensions in proptest::collection::vec(extension(), 0..3),
    ) -> Imdn {
        Imdn {
            message_id, datetime, recipient_uri, original_recipient_uri, subject, notification,
            status_extensions, notification_extensions, extensions,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_of_serialize_is_identity(x in model()) {
        let bytes = x.to_bytes();
        let back = imdn::parse(bytes.clone());
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
        let _ = imdn::parse(Bytes::copy_from_slice(&bytes[..cut]));
        let mut flipped = bytes.clone();
        let i = flip.index(flipped.len());
        flipped[i] = byte;
        if let Ok(y) = imdn::parse(Bytes::from(flipped)) {
            // Whatever parses serializes to something that parses to the same model.
            prop_assert_eq!(imdn::parse(y.to_bytes()).unwrap(), y);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = imdn::parse(Bytes::from(data));
    }
}
