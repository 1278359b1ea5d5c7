//! Property tests of `wire::cpim`: generated messages survive write -> parse unchanged, in both
//! input layouts, and arbitrary input never panics.

use bytes::Bytes;
use cpm_iwf::wire::cpim::{Cpim, CpimHeader, Layout, NS_IMDN};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = String> {
    // Printable, no surrounding white space (values are trimmed); some UTF-8 too.
    "([!-~]|é|ü|中)([ -~]|é){0,30}".prop_map(|s| s.trim_end().to_string())
}

fn header() -> impl Strategy<Value = CpimHeader> {
    (
        prop::option::of(prop::sample::select(&["imdn", "cpm", "My-Feat"][..])),
        "[A-Za-z][A-Za-z0-9-]{0,12}",
        prop::option::of(";lang=[a-z]{2}(;[a-z]{1,4}=[a-z0-9]{1,4})?"),
        value(),
    )
        .prop_filter(
            "NS and Content-* are not free-form CPIM headers",
            |(p, n, _, _)| {
                p.is_some()
                    || !(n.eq_ignore_ascii_case("NS")
                        || n.to_ascii_lowercase().starts_with("content-"))
            },
        )
        .prop_map(|(p, n, params, v)| CpimHeader {
            prefix: p.map(|p| Bytes::from_static(p.as_bytes())),
            name: Bytes::from(n),
            params: params.map(Bytes::from).unwrap_or_default(),
            value: Bytes::from(v),
        })
}

prop_compose! {
    fn message()(
        headers in prop::collection::vec(header(), 0..10),
        ctype in "(text/plain|message/imdn\\+xml|application/im-iscomposing\\+xml)(; charset=utf-8)?",
        more in prop::collection::vec(("X-[A-Za-z]{1,8}|Content-ID|Content-Disposition", value()), 0..3),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) -> Cpim {
        let mut all = vec![CpimHeader {
            prefix: None,
            name: Bytes::from_static(b"From"),
            params: Bytes::new(),
            value: Bytes::from_static(b"<sip:alice@example.com>"),
        }];
        // Declare the prefixes used.
        for (p, uri) in [("imdn", NS_IMDN), ("cpm", "http://www.openmobilealliance.org/cpm/"), ("My-Feat", "mid:x@y")] {
            all.push(CpimHeader {
                prefix: None,
                name: Bytes::from_static(b"NS"),
                params: Bytes::new(),
                value: Bytes::from(format!("{p} <{uri}>")),
            });
        }
        all.extend(headers);
        let mut content_headers = vec![(Bytes::from_static(b"Content-Type"), Bytes::from(ctype))];
        content_headers.extend(more.into_iter().map(|(n, v)| (Bytes::from(n), Bytes::from(v))));
        Cpim { headers: all, content_headers, body: Bytes::from(body), layout: Layout::Rfc3862 }
    }
}

/// The same message in the errata 3013 layout (no blank line before the content headers).
fn errata_bytes(c: &Cpim) -> Bytes {
    let rfc = c.to_bytes();
    let mut out = Vec::with_capacity(rfc.len());
    let split = rfc.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    out.extend_from_slice(&rfc[..split + 2]);
    out.extend_from_slice(&rfc[split + 4..]);
    Bytes::from(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_then_parse_is_identity(c in message()) {
        let parsed = Cpim::parse(c.to_bytes()).unwrap();
        prop_assert_eq!(&parsed, &c);
        prop_assert_eq!(parsed.to_bytes(), c.to_bytes());
    }

    #[test]
    fn errata_layout_reads_the_same(c in message()) {
        let parsed = Cpim::parse(errata_bytes(&c)).unwrap();
        prop_assert_eq!(parsed.layout, Layout::Errata3013);
        prop_assert_eq!(Cpim { layout: Layout::Rfc3862, ..parsed }, c);
    }

    #[test]
    fn set_ns_then_parse_finds_it(c in message(), id in "[A-Za-z0-9]{4,20}") {
        let mut c = c;
        c.set_ns(NS_IMDN, "imdn", "Message-ID", id.as_bytes());
        let parsed = Cpim::parse(c.to_bytes()).unwrap();
        prop_assert_eq!(parsed.imdn_message_id().map(|b| b.to_vec()), Some(id.into_bytes()));
        prop_assert_eq!(parsed, c);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(c) = Cpim::parse(Bytes::from(data)) {
            let again = Cpim::parse(c.to_bytes()).unwrap();
            prop_assert_eq!(Cpim { layout: c.layout, ..again }, c);
        }
    }

    #[test]
    fn header_like_lines_never_panic(lines in prop::collection::vec("[A-Za-z.;:= <>-]{0,30}", 1..12), body in "[ -~\r\n]{0,40}") {
        let text = format!("{}\r\n\r\n{}", lines.join("\r\n"), body);
        if let Ok(c) = Cpim::parse(Bytes::from(text)) {
            let again = Cpim::parse(c.to_bytes()).unwrap();
            prop_assert_eq!(Cpim { layout: c.layout, ..again }, c);
        }
    }
}
