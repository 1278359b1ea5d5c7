//! Property tests: serialize -> parse is the identity on the model, and the streaming decoder
//! gives the same frames wherever the byte stream is split.

use bytes::{Bytes, BytesMut};
use cpm_iwf::wire::msrp::{
    self, ByteRange, Continuation, Frame, Header, Limits, Message, Method, MsrpCodec, MsrpUri,
    StartLine, Status, write_uri_list,
};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn b(s: String) -> Bytes {
    Bytes::from(s)
}

fn tid() -> impl Strategy<Value = Bytes> {
    "[A-Za-z0-9][A-Za-z0-9.+%=-]{3,31}".prop_map(b)
}

fn uri() -> impl Strategy<Value = MsrpUri> {
    (
        any::<bool>(),
        proptest::option::of("[a-z0-9]{1,5}"),
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,5}){0,2}",
            "\\[2001:db8::[0-9a-f]{1,4}\\]",
            "10\\.[0-9]{1,3}\\.0\\.1"
        ],
        proptest::option::of(any::<u16>()),
        proptest::option::of("[A-Za-z0-9+=/._~-]{1,20}"),
        prop_oneof!["tcp", "ws", "TCP"],
        proptest::option::of("[a-z]{1,4}(=[a-z0-9]{1,4})?(;[a-z]{1,3})?"),
    )
        .prop_map(
            |(secure, userinfo, host, port, session_id, transport, params)| MsrpUri {
                secure,
                userinfo: userinfo.map(b),
                host: b(host),
                port,
                session_id: session_id.map(b),
                transport: b(transport.to_string()),
                params: params.map(b).unwrap_or_default(),
            },
        )
}

fn path() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(uri(), 1..4).prop_map(|uris| {
        let mut v = BytesMut::new();
        write_uri_list(&mut v, &uris);
        v.freeze()
    })
}

fn byte_range() -> impl Strategy<Value = ByteRange> {
    (
        1u64..1_000_000,
        proptest::option::of(0u64..5000),
        proptest::option::of(0u64..5000),
    )
        .prop_map(|(start, len, extra)| {
            let end = len.map(|l| start - 1 + l);
            let total = extra.map(|x| end.unwrap_or(start) + x);
            ByteRange { start, end, total }
        })
}

/// Printable value without surrounding white space (values are trimmed by the parser).
fn text() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(String::new()),
        "[!-~]([ -~\t]{0,30}[!-~])?",
        "caf\u{e9} [a-z]{1,5}"
    ]
    .prop_map(b)
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Send),
        Just(Method::Report),
        Just(Method::Auth),
        "[A-Z]{1,10}"
            .prop_filter("not a known method", |m| !matches!(
                m.as_str(),
                "SEND" | "REPORT" | "AUTH"
            ))
            .prop_map(|m| Method::Other(b(m))),
    ]
}

fn continuation() -> impl Strategy<Value = Continuation> {
    prop_oneof![
        Just(Continuation::Complete),
        Just(Continuation::More),
        Just(Continuation::Aborted)
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let request = (
        method(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
    )
        .prop_map(|(method, body)| (StartLine::Request { method }, body));
    let response = (0u16..1000, proptest::option::of("[ -~]{0,20}")).prop_map(|(code, comment)| {
        (
            StartLine::Response {
                code,
                comment: comment.map(b),
            },
            None,
        )
    });
    (
        tid(),
        prop_oneof![3 => request, 1 => response],
        path(),
        path(),
        proptest::option::of("[A-Za-z0-9][A-Za-z0-9.+%=-]{3,31}"),
        proptest::option::of(byte_range()),
        proptest::option::of(prop_oneof!["yes", "no"]),
        proptest::option::of(prop_oneof!["yes", "no", "partial"]),
        proptest::option::of((0u16..1000, 0u16..1000, proptest::option::of("[!-~]{1,10}"))),
        proptest::collection::vec(("X-[A-Za-z0-9-]{1,12}", text()), 0..4),
        prop_oneof![
            "text/plain",
            "message/cpim",
            "application/octet-stream; x=y"
        ],
        continuation(),
    )
        .prop_map(
            |(tid, (start, body), to, from, id, range, sr, fr, status, ext, ct, cont)| {
                let mut headers = vec![
                    Header {
                        name: Bytes::from_static(b"To-Path"),
                        value: to,
                    },
                    Header {
                        name: Bytes::from_static(b"From-Path"),
                        value: from,
                    },
                ];
                let mut push = |n: Bytes, v: Bytes| headers.push(Header { name: n, value: v });
                if let Some(id) = id {
                    push(Bytes::from_static(b"Message-ID"), b(id));
                }
                if let Some(r) = range {
                    push(Bytes::from_static(b"Byte-Range"), r.to_bytes());
                }
                if let Some(v) = sr {
                    push(Bytes::from_static(b"Success-Report"), b(v.to_string()));
                }
                if let Some(v) = fr {
                    push(Bytes::from_static(b"Failure-Report"), b(v.to_string()));
                }
                if let Some((namespace, code, comment)) = status {
                    push(
                        Bytes::from_static(b"Status"),
                        Status {
                            namespace,
                            code,
                            comment: comment.map(b),
                        }
                        .to_bytes(),
                    );
                }
                for (n, v) in ext {
                    push(b(n), v);
                }
                let body = body.map(Bytes::from);
                if body.is_some() {
                    push(Bytes::from_static(b"Content-Type"), b(ct.to_string()));
                }
                Message {
                    transaction_id: tid,
                    start,
                    headers,
                    body,
                    continuation: cont,
                }
            },
        )
}

/// The serialized form has exactly one end-line for its transaction-id (a random body could
/// contain one, which RFC 4975 §9 forbids the sender to emit).
fn single_end_line(m: &Message, wire: &[u8]) -> bool {
    let mut pat = b"\r\n-------".to_vec();
    pat.extend_from_slice(&m.transaction_id);
    let mut n = 0;
    let mut i = 0;
    while let Some(p) = memchr::memmem::find(&wire[i..], &pat) {
        let at = i + p + pat.len();
        if matches!(wire.get(at), Some(b'$' | b'+' | b'#'))
            && wire.get(at + 1..at + 3) == Some(b"\r\n")
        {
            n += 1;
        }
        i += p + 1;
    }
    n == 1
}

fn decode_parts(input: &Bytes, cuts: &[usize]) -> Vec<Frame> {
    let mut codec = MsrpCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        let c = c.clamp(prev, input.len());
        buf.extend_from_slice(&input[prev..c]);
        prev = c;
        while let Some(f) = codec.decode(&mut buf).expect("no framing error") {
            out.push(f);
        }
    }
    assert!(codec.decode_eof(&mut buf).expect("clean end").is_none());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_serialize_round_trip(m in message()) {
        let wire = m.to_bytes();
        prop_assume!(single_end_line(&m, &wire));
        prop_assert_eq!(wire.len(), m.encoded_len());
        let back = msrp::parse(wire.clone(), &Limits::default());
        prop_assert_eq!(back.as_ref(), Ok(&m), "{}", String::from_utf8_lossy(&wire));
        prop_assert_eq!(back.unwrap().to_bytes(), wire);
    }

    #[test]
    fn stream_split_anywhere(msgs in proptest::collection::vec(message(), 1..4),
                             cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut all = BytesMut::new();
        for m in &msgs {
            let w = m.to_bytes();
            prop_assume!(single_end_line(m, &w));
            all.extend_from_slice(&w);
        }
        let all = all.freeze();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(all.len() + 1)).collect();
        cuts.sort_unstable();
        let expected: Vec<Frame> = msgs.iter().cloned().map(Frame::Message).collect();
        prop_assert_eq!(&decode_parts(&all, &[]), &expected);
        prop_assert_eq!(&decode_parts(&all, &cuts), &expected);
    }

    #[test]
    fn uri_round_trip(u in uri()) {
        let s = u.to_string();
        prop_assert_eq!(MsrpUri::parse_str(&s), Ok(u.clone()));
        prop_assert!(MsrpUri::parse_str(&s).unwrap().equivalent(&u));
    }

    /// A SEND's 200 (RFC 4975 §7.2) goes to the first From-Path URI, from the first To-Path
    /// URI, whatever the paths hold; the fast path copies them as written.
    #[test]
    fn send_response_goes_to_the_previous_hop(t in tid(), to in path(), from in path()) {
        let mut req = Message::request(t, Method::Send);
        req.set_header("To-Path", to.clone());
        req.set_header("From-Path", from.clone());
        let req = msrp::parse(req.to_bytes(), &Limits::default()).unwrap();
        let resp = Message::response_to(&req, 200, None).unwrap();
        let first = |v: Bytes| msrp::UriList::new(v, 0).next().unwrap().unwrap();
        prop_assert_eq!(resp.to_path().unwrap(), vec![first(from)]);
        prop_assert_eq!(resp.from_path().unwrap(), vec![first(to)]);
        prop_assert_eq!(msrp::parse(resp.to_bytes(), &Limits::default()), Ok(resp));
    }

    /// A From-Path with any text in it: `response_to` refuses it exactly when reading it as a
    /// URI list fails somewhere, with the same error.
    #[test]
    fn send_response_checks_every_uri(junk in "[ -~]{0,60}", to in path()) {
        let mut req = Message::request(Bytes::from_static(b"abcd1"), Method::Send);
        req.set_header("To-Path", to);
        req.set_header("From-Path", Bytes::from(junk.clone()));
        let list: Result<Vec<MsrpUri>, _> =
            msrp::UriList::new(Bytes::from(junk), 0).collect();
        match (Message::response_to(&req, 200, None), list) {
            (Err(e), Err(l)) => prop_assert_eq!(e, l),
            (Ok(r), Ok(l)) => prop_assert_eq!(r.to_path().unwrap(), l.into_iter().take(1).collect::<Vec<_>>()),
            (r, l) => prop_assert!(false, "response {:?} but list {:?}", r, l),
        }
    }

    #[test]
    fn byte_range_round_trip(r in byte_range()) {
        prop_assert_eq!(ByteRange::parse(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = msrp::parse(Bytes::from(data), &Limits::default());
    }
}

#[test]
fn every_split_of_a_two_chunk_stream() {
    let mut m = Message::request(Bytes::from_static(b"abcd1"), Method::Send);
    m.set_to_path(&[MsrpUri::parse_str("msrp://a.example:1/s;tcp").unwrap()]);
    m.set_from_path(&[MsrpUri::parse_str("msrp://b.example:2/t;tcp").unwrap()]);
    m.set_header("Message-ID", "m0001");
    m.set_body(
        "text/plain",
        Bytes::from_static(b"body with \r\n-------abcd1x and \r\n-------abcd2$\r\n"),
    );
    m.continuation = Continuation::More;
    let mut all = BytesMut::new();
    m.encode(&mut all);
    let mut m2 = m.clone();
    m2.transaction_id = Bytes::from_static(b"abcd2");
    m2.body = Some(Bytes::from_static(b"-------abcd1$"));
    m2.continuation = Continuation::Complete;
    m2.encode(&mut all);
    let all = all.freeze();
    let expected = vec![Frame::Message(m), Frame::Message(m2)];
    for i in 0..=all.len() {
        for j in (i..=all.len()).step_by(13) {
            assert_eq!(decode_parts(&all, &[i, j]), expected, "cuts {i} {j}");
        }
    }
}
