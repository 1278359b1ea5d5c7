//! Property tests of the reginfo codec: model -> canonical XML -> model is the identity, the
//! canonical form is a fixed point, and no input (random or a damaged valid body) panics.

use bytes::Bytes;
use cpm_iwf::wire::reginfo::{
    self, Contact, ContactEvent, ContactState, DocState, Reginfo, Registration, RegistrationState,
    UnknownParam,
};
use proptest::prelude::*;

/// A URI-like or token value: no leading or trailing white space (the codec trims `<uri>` and
/// `aor`), XML specials and non-ASCII included.
fn token() -> impl Strategy<Value = Bytes> {
    "[!-~é€😀]([ !-~é€😀]{0,30}[!-~é€😀])?".prop_map(|s| Bytes::from(s.into_bytes()))
}

/// Attribute text kept as written (ids, q, callid), tabs and line breaks included: the writer
/// puts them as character references so attribute normalization keeps them.
fn attr_text() -> impl Strategy<Value = Bytes> {
    "[ \t\r\n!-~é]{0,20}".prop_map(|s| Bytes::from(s.into_bytes()))
}

/// Element text kept as written (display-name, unknown-param values).
fn free_text() -> impl Strategy<Value = Bytes> {
    "[ \t\n!-~é€]{0,30}".prop_map(|s| Bytes::from(s.into_bytes()))
}

fn event() -> impl Strategy<Value = ContactEvent> {
    prop_oneof![
        Just(ContactEvent::Registered),
        Just(ContactEvent::Created),
        Just(ContactEvent::Refreshed),
        Just(ContactEvent::Shortened),
        Just(ContactEvent::Expired),
        Just(ContactEvent::Deactivated),
        Just(ContactEvent::Probation),
        Just(ContactEvent::Unregistered),
        Just(ContactEvent::Rejected),
    ]
}

prop_compose! {
    fn contact()(
        id in attr_text(),
        active in any::<bool>(),
        event in event(),
        uri in token(),
        display_name in proptest::option::of(free_text()),
        numbers in (proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>()),
                    proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>())),
        q in proptest::option::of(attr_text()),
        callid in proptest::option::of(attr_text()),
        params in proptest::collection::vec((attr_text(), free_text()), 0..4),
        pub_gruu in proptest::option::of(attr_text()),
    ) -> Contact {
        let state = if active { ContactState::Active } else { ContactState::Terminated };
        let mut c = Contact::new(id, state, event, uri);
        c.display_name = display_name;
        (c.expires, c.duration_registered, c.retry_after, c.cseq) = numbers;
        c.q = q;
        c.callid = callid;
        c.unknown_params = params
            .into_iter()
            .map(|(name, value)| UnknownParam { name, value })
            .collect();
        c.pub_gruu = pub_gruu;
        c
    }
}

prop_compose! {
    fn registration()(
        aor in token(),
        id in attr_text(),
        state in prop_oneof![
            Just(RegistrationState::Init),
            Just(RegistrationState::Active),
            Just(RegistrationState::Terminated)
        ],
        contacts in proptest::collection::vec(contact(), 0..4),
    ) -> Registration {
        Registration { aor, id, state, contacts }
    }
}

prop_compose! {
    fn model()(
        version in any::<u64>(),
        full in any::<bool>(),
        registrations in proptest::collection::vec(registration(), 0..4),
    ) -> Reginfo {
        let state = if full { DocState::Full } else { DocState::Partial };
        Reginfo { version, state, registrations }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_of_serialize_is_identity(x in model()) {
        let bytes = x.to_bytes();
        let back = reginfo::parse(bytes.clone());
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
        let _ = reginfo::parse(Bytes::copy_from_slice(&bytes[..cut]));
        let mut flipped = bytes.clone();
        let i = flip.index(flipped.len());
        flipped[i] = byte;
        if let Ok(y) = reginfo::parse(Bytes::from(flipped)) {
            // Whatever parses serializes to something that parses to the same model.
            prop_assert_eq!(reginfo::parse(y.to_bytes()).unwrap(), y);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = reginfo::parse(Bytes::from(data));
    }
}
