use super::*;
use crate::wire::{Answer, WireError};

fn crlf(s: &str) -> Bytes {
    Bytes::from(s.replace('\n', "\r\n"))
}

const SEND: &str = "MSRP a786hjs2 SEND
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
Message-ID: 87652491
Byte-Range: 1-25/25
Content-Type: text/plain

Hey Bob, are you there?
-------a786hjs2$
";

#[test]
fn parses_send() {
    let input = crlf(SEND);
    let m = parse(input.clone(), &Limits::default()).unwrap();
    assert_eq!(&m.transaction_id[..], b"a786hjs2");
    assert_eq!(m.method(), Some(&Method::Send));
    assert_eq!(m.headers.len(), 5);
    assert_eq!(m.body.as_deref(), Some(&b"Hey Bob, are you there?"[..]));
    assert_eq!(m.continuation, Continuation::Complete);
    assert_eq!(m.to_path().unwrap()[0].port, Some(12763));
    assert_eq!(m.message_id().map(|b| &b[..]), Some(&b"87652491"[..]));
    assert_eq!(
        m.byte_range().unwrap(),
        Some(ByteRange {
            start: 1,
            end: Some(25),
            total: Some(25)
        })
    );
    assert_eq!(m.success_report().unwrap(), ReportRequest::No);
    assert_eq!(m.failure_report().unwrap(), ReportRequest::Yes);
    assert!(matches!(
        m.check_byte_range(),
        Err(MsrpError::ByteRangeMismatch { .. })
    ));
    assert_eq!(m.to_bytes(), input);
}

#[test]
fn response_and_report() {
    let r = crlf(
        "MSRP a786hjs2 200 OK
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
-------a786hjs2$
",
    );
    let m = parse(r.clone(), &Limits::default()).unwrap();
    assert_eq!(
        m.start,
        StartLine::Response {
            code: 200,
            comment: Some(Bytes::from_static(b"OK"))
        }
    );
    assert_eq!(m.body, None);
    assert_eq!(m.to_bytes(), r);

    let rep = crlf(
        "MSRP dkei38sd REPORT
To-Path: msrp://alice.example.com:7777/iau39soe2843z;tcp
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp
Message-ID: 12339sdqwer
Byte-Range: 1-106/106
Status: 000 200 OK
-------dkei38sd$
",
    );
    let m = parse(rep.clone(), &Limits::default()).unwrap();
    assert_eq!(
        m.status().unwrap(),
        Some(Status {
            namespace: 0,
            code: 200,
            comment: Some(Bytes::from_static(b"OK"))
        })
    );
    assert_eq!(m.to_bytes(), rep);
}

#[test]
fn response_to_send_goes_to_previous_hop() {
    let req = crlf(
        "MSRP t1234 SEND
To-Path: msrp://relay.example.com:2855/r1;tcp msrp://bob.example.com:8888/b1;tcp
From-Path: msrp://relay0.example.com:2855/r0;tcp msrp://alice.example.com:7777/a1;tcp
Message-ID: m1234
-------t1234$
",
    );
    let req = parse(req, &Limits::default()).unwrap();
    let resp = Message::response_to(&req, 200, Some(Bytes::from_static(b"OK"))).unwrap();
    assert_eq!(
        resp.to_bytes(),
        crlf(
            "MSRP t1234 200 OK
To-Path: msrp://relay0.example.com:2855/r0;tcp
From-Path: msrp://relay.example.com:2855/r1;tcp
-------t1234$
"
        )
    );
    let st = Status {
        namespace: 0,
        code: 200,
        comment: Some(Bytes::from_static(b"OK")),
    };
    let rep = Message::report_for(&req, Bytes::from_static(b"r9999"), &st, None).unwrap();
    let again = parse(rep.to_bytes(), &Limits::default()).unwrap();
    assert_eq!(again, rep);
    assert_eq!(rep.to_path().unwrap().len(), 2);
}

#[test]
fn response_to_needs_both_paths_whole() {
    let mut req = Message::request(Bytes::from_static(b"t1234"), Method::Send);
    req.set_header(
        "From-Path",
        Bytes::from_static(b"msrp://a.example.com:7777/a1;tcp"),
    );
    // No To-Path: the error `to_path` gives.
    let err = Message::response_to(&req, 200, None).unwrap_err();
    assert!(
        matches!(
            err,
            MsrpError::MissingHeader {
                name: "To-Path",
                ..
            }
        ),
        "{err:?}"
    );
    // A URI that does not parse, after a good one: refused as `from_path` refuses it.
    req.set_header(
        "To-Path",
        Bytes::from_static(b"msrp://b.example.com:8888/b1;tcp"),
    );
    req.set_header(
        "From-Path",
        Bytes::from_static(b"msrp://a.example.com:7777/a1;tcp http://x"),
    );
    assert_eq!(
        Message::response_to(&req, 200, None).unwrap_err(),
        req.from_path().unwrap_err()
    );
    // No From-Path at all.
    req.remove_header("From-Path");
    let err = Message::response_to(&req, 200, None).unwrap_err();
    assert!(
        matches!(
            err,
            MsrpError::MissingHeader {
                name: "From-Path",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn empty_body_and_no_headers_forms() {
    let l = Limits::default();
    // Empty body: blank line, empty data, CRLF, end-line.
    let m = parse(
        crlf("MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nContent-Type: text/plain\n\n\n-------abcd$\n"),
        &l,
    )
    .unwrap();
    assert_eq!(m.body.as_deref(), Some(&b""[..]));
    assert_eq!(parse(m.to_bytes(), &l).unwrap(), m);
    // Blank line right before the end-line: taken as no body.
    let m = parse(
        crlf("MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\n\n-------abcd+\n"),
        &l,
    )
    .unwrap();
    assert_eq!(m.body, None);
    assert_eq!(m.continuation, Continuation::More);
    // No header at all: To-Path missing.
    let e = parse(crlf("MSRP abcd SEND\n-------abcd$\n"), &l).unwrap_err();
    assert!(
        matches!(
            e,
            MsrpError::MissingHeader {
                name: "To-Path",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.answer(), Answer::Status(400));
}

#[test]
fn body_with_end_line_look_alikes() {
    let body = "x\r\n-------abcd\r\n-------abce$\r\n-------abcdX\r\n-------abcd$ \r\n-------abc";
    let input = format!(
        "MSRP abcd SEND\r\nTo-Path: msrp://a:1/s;tcp\r\nFrom-Path: msrp://b:2/t;tcp\r\nContent-Type: text/plain\r\n\r\n{body}\r\n-------abcd#\r\n"
    );
    let m = parse(Bytes::from(input.clone()), &Limits::default()).unwrap();
    assert_eq!(m.body.as_deref(), Some(body.as_bytes()));
    assert_eq!(m.continuation, Continuation::Aborted);
    assert_eq!(&m.to_bytes()[..], input.as_bytes());
}

#[test]
fn errors_say_what_and_where() {
    let l = Limits::default();
    let cases: &[(&str, Answer, &str)] = &[
        ("GET / HTTP/1.1\n\n", Answer::Drop, "not an MSRP start line"),
        (
            "MSRP abc SEND\n-------abc$\n",
            Answer::Drop,
            "transaction-id",
        ),
        (
            "MSRP abcd send\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\n-------abcd$\n",
            Answer::Status(400),
            "method",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nByte-Range: 20-10/30\n-------abcd$\n",
            Answer::Status(400),
            "Byte-Range: end 10 before start 20",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nByte-Range: 1-40/30\n-------abcd$\n",
            Answer::Status(400),
            "end 40 after total 30",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nMessage-ID: x\n-------abcd$\n",
            Answer::Status(400),
            "Message-ID",
        ),
        (
            "MSRP abcd SEND\nTo-Path: http://a/s\nFrom-Path: msrp://b:2/t;tcp\n-------abcd$\n",
            Answer::Status(400),
            "scheme",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\n-------abcd$\n",
            Answer::Status(400),
            "twice",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\n\nbody\n-------abcd$\n",
            Answer::Status(400),
            "Content-Type",
        ),
        (
            "MSRP abcd 200 OK\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nContent-Type: text/plain\n\nbody\n-------abcd$\n",
            Answer::Drop,
            "no body",
        ),
        (
            "MSRP abcd 200 OK\nTo-Path: msrp://a:1/s;tcp\n-------abcd$\n",
            Answer::Drop,
            "From-Path header field missing",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nSuccess-Report: partial\n-------abcd$\n",
            Answer::Status(400),
            "Success-Report",
        ),
        (
            "MSRP abcd REPORT\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nStatus: 0 200\n-------abcd$\n",
            Answer::Status(400),
            "Status",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\n-------abcd$\nMSRP",
            Answer::Status(400),
            "after the end-line",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\n-------abce$\n",
            Answer::Status(400),
            "no end-line",
        ),
        (
            "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nBad Name: x\n-------abcd$\n",
            Answer::Status(400),
            "malformed header",
        ),
    ];
    for (input, answer, needle) in cases {
        let e = parse(crlf(input), &l).unwrap_err();
        assert_eq!(e.answer(), *answer, "{input}: {e}");
        assert!(e.to_string().contains(needle), "{input}: {e}");
        if !matches!(e, MsrpError::MissingEndLine { .. }) {
            assert!(e.offset().is_some());
        }
    }
}

#[test]
fn limits_are_enforced() {
    let l = Limits {
        max_chunk_size: 4,
        max_headers: 3,
        max_line_length: 64,
        max_header_bytes: 200,
        max_path_uris: 1,
    };
    let big = crlf(
        "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nContent-Type: text/plain\n\n12345\n-------abcd$\n",
    );
    let e = parse(big, &l).unwrap_err();
    assert_eq!(e.answer(), Answer::Status(413));
    let many = crlf(
        "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\nA: 1\nB: 2\n-------abcd$\n",
    );
    assert!(matches!(
        parse(many, &l),
        Err(MsrpError::TooManyHeaders { .. })
    ));
    let long = crlf(&format!(
        "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp\nX: {}\n-------abcd$\n",
        "y".repeat(70)
    ));
    assert!(matches!(
        parse(long, &l),
        Err(MsrpError::LineTooLong { .. })
    ));
    let path = crlf(
        "MSRP abcd SEND\nTo-Path: msrp://a:1/s;tcp msrp://c:1/s;tcp\nFrom-Path: msrp://b:2/t;tcp\n-------abcd$\n",
    );
    assert!(
        parse(path, &l)
            .unwrap_err()
            .to_string()
            .contains("more than 1 URIs")
    );
}

#[test]
fn set_header_and_paths() {
    let mut m = Message::request(
        Bytes::from_static(b"abcd"),
        Method::Other(Bytes::from_static(b"NICKNAME")),
    );
    m.set_from_path(&[MsrpUri::parse_str("msrp://b:2/t;tcp").unwrap()]);
    m.set_to_path(&[MsrpUri::parse_str("msrp://a:1/s;tcp").unwrap()]);
    m.set_header("Use-Nickname", "Alice");
    m.set_header("use-nickname", "Bob");
    assert_eq!(m.headers.len(), 3);
    assert_eq!(&m.headers[0].name[..], b"To-Path");
    assert_eq!(m.header("USE-NICKNAME").map(|v| &v[..]), Some(&b"Bob"[..]));
    m.set_body("text/plain", Bytes::from_static(b"hi"));
    let back = parse(m.to_bytes(), &Limits::default()).unwrap();
    assert_eq!(back, m);
    assert_eq!(m.remove_header("Use-Nickname"), 1);
}

#[test]
fn rfc4976_headers() {
    let m = parse(
        crlf(
            "MSRP 49fi AUTH
To-Path: msrps://alice@intra.example.com;tcp
From-Path: msrps://alice.example.com:9892/98cjs;tcp
Authorization: Digest username=\"Alice\", realm=\"intra.example.com\"
Expires: 900
-------49fi$
",
        ),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(m.method(), Some(&Method::Auth));
    assert_eq!(m.expires().unwrap(), Some(900));
    assert!(m.authorization().is_some());
    assert_eq!(m.to_path().unwrap()[0].session_id, None);
}

#[test]
fn never_panics_on_prefixes() {
    let input = crlf(SEND);
    for i in 0..input.len() {
        let _ = parse(input.slice(..i), &Limits::default());
    }
}

mod stream {
    use super::*;
    use tokio_util::codec::{Decoder, Encoder};

    fn decode_all(codec: &mut MsrpCodec, parts: &[&[u8]]) -> (Vec<Frame>, Option<MsrpError>) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for p in parts {
            buf.extend_from_slice(p);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        match codec.decode_eof(&mut buf) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => {}
            Err(e) => return (out, Some(e)),
        }
        (out, None)
    }

    fn two_messages() -> Bytes {
        let mut b = BytesMut::new();
        b.extend_from_slice(&crlf(SEND));
        b.extend_from_slice(&crlf(
            "MSRP a786hjs2 200 OK
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
-------a786hjs2$
",
        ));
        b.freeze()
    }

    #[test]
    fn every_split_point() {
        let all = two_messages();
        let (whole, err) = decode_all(&mut MsrpCodec::default(), &[&all]);
        assert!(err.is_none());
        assert_eq!(whole.len(), 2);
        for i in 0..=all.len() {
            let (frames, err) = decode_all(&mut MsrpCodec::default(), &[&all[..i], &all[i..]]);
            assert!(err.is_none(), "split at {i}: {err:?}");
            assert_eq!(frames, whole, "split at {i}");
        }
        // Byte by byte.
        let parts: Vec<&[u8]> = all.chunks(1).collect();
        let (frames, err) = decode_all(&mut MsrpCodec::default(), &parts);
        assert!(err.is_none());
        assert_eq!(frames, whole);
    }

    #[test]
    fn rejected_frame_keeps_the_connection() {
        let mut input = BytesMut::new();
        input.extend_from_slice(&crlf(
            "MSRP bad1 SEND\nTo-Path: nope\nFrom-Path: msrp://b:2/t;tcp\n-------bad1$\n",
        ));
        input.extend_from_slice(&crlf(SEND));
        let (frames, err) = decode_all(&mut MsrpCodec::default(), &[&input]);
        assert!(err.is_none());
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Frame::Rejected {
                transaction_id,
                error,
            } => {
                assert_eq!(&transaction_id[..], b"bad1");
                assert_eq!(error.answer(), Answer::Status(400));
            }
            f => panic!("{f:?}"),
        }
        assert!(matches!(frames[1], Frame::Message(_)));
    }

    #[test]
    fn oversized_chunk_is_skipped_then_rejected() {
        let limits = Limits {
            max_chunk_size: 64,
            max_header_bytes: 256,
            ..Limits::default()
        };
        let head = "MSRP big1 SEND\r\nTo-Path: msrp://a:1/s;tcp\r\nFrom-Path: msrp://b:2/t;tcp\r\nContent-Type: text/plain\r\n\r\n";
        let mut input = BytesMut::new();
        input.extend_from_slice(head.as_bytes());
        input.extend_from_slice(&b"z".repeat(10_000));
        input.extend_from_slice(b"\r\n-------big1+\r\n");
        input.extend_from_slice(&crlf(SEND));
        let mut codec = MsrpCodec::new(limits);
        let parts: Vec<&[u8]> = input.chunks(100).collect();
        let (frames, err) = decode_all(&mut codec, &parts);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Frame::Rejected {
                transaction_id,
                error,
            } => {
                assert_eq!(&transaction_id[..], b"big1");
                assert_eq!(error.answer(), Answer::Status(413));
            }
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn oversized_whole_or_split_same_verdict() {
        let limits = Limits {
            max_chunk_size: 64,
            max_header_bytes: 256,
            ..Limits::default()
        };
        // A bad header too: the size verdict wins whether the message arrives whole or not.
        let head = "MSRP big2 SEND\r\nTo-Path: nope\r\nFrom-Path: msrp://b:2/t;tcp\r\nContent-Type: text/plain\r\n\r\n";
        let mut input = BytesMut::new();
        input.extend_from_slice(head.as_bytes());
        input.extend_from_slice(&b"z".repeat(1000));
        input.extend_from_slice(b"\r\n-------big2$\r\n");
        let (whole, e1) = decode_all(&mut MsrpCodec::new(limits.clone()), &[&input]);
        let parts: Vec<&[u8]> = input.chunks(7).collect();
        let (split, e2) = decode_all(&mut MsrpCodec::new(limits), &parts);
        assert!(e1.is_none() && e2.is_none());
        assert_eq!(whole, split);
        match &whole[..] {
            [
                Frame::Rejected {
                    error: MsrpError::ChunkTooLarge { size, offset, .. },
                    ..
                },
            ] => {
                assert_eq!(*size, 1000);
                assert_eq!(*offset, head.len());
            }
            f => panic!("{f:?}"),
        }
        // No blank line within the header limit: header section too large.
        let mut input = BytesMut::new();
        input.extend_from_slice(b"MSRP big3 SEND\r\n");
        for _ in 0..40 {
            input.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        input.extend_from_slice(b"-------big3$\r\n");
        let limits = Limits {
            max_chunk_size: 8,
            max_header_bytes: 64,
            ..Limits::default()
        };
        let (frames, _) = decode_all(&mut MsrpCodec::new(limits), &[&input]);
        assert!(matches!(
            &frames[..],
            [Frame::Rejected {
                error: MsrpError::HeadersTooLarge { .. },
                ..
            }]
        ));
    }

    #[test]
    fn unrecoverable_framing() {
        let (_, err) = decode_all(&mut MsrpCodec::default(), &[b"HTTP/1.1 200 OK\r\n"]);
        assert!(matches!(err, Some(MsrpError::BadStartLine { .. })));
        let (_, err) = decode_all(
            &mut MsrpCodec::default(),
            &[b"MSRP abcdefghijklmnopqrstuvwxyz0123456789 SEND"],
        );
        assert!(matches!(err, Some(MsrpError::BadStartLine { .. })));
        let long = format!("MSRP abcd {}", "A".repeat(10_000));
        let (_, err) = decode_all(&mut MsrpCodec::default(), &[long.as_bytes()]);
        assert!(matches!(err, Some(MsrpError::LineTooLong { .. })));
        let (_, err) = decode_all(&mut MsrpCodec::default(), &[&crlf(SEND)[..50]]);
        assert!(matches!(err, Some(MsrpError::Truncated { .. })));
        let (frames, err) = decode_all(&mut MsrpCodec::default(), &[b"\r\n\r\n"]);
        assert!(frames.is_empty() && err.is_none());
    }

    #[test]
    fn encoder_writes_canonical_bytes() {
        let m = parse(crlf(SEND), &Limits::default()).unwrap();
        let mut codec = MsrpCodec::default();
        let mut out = BytesMut::new();
        codec.encode(&m, &mut out).unwrap();
        codec.encode(m.clone(), &mut out).unwrap();
        let (frames, err) = decode_all(&mut MsrpCodec::default(), &[&out]);
        assert!(err.is_none());
        assert_eq!(frames, vec![Frame::Message(m.clone()), Frame::Message(m)]);
    }

    #[test]
    fn trickled_large_body_is_linear() {
        // 256 KiB body fed in 64-byte pieces: must finish quickly (no rescans from 0).
        let head = "MSRP lin1 SEND\r\nTo-Path: msrp://a:1/s;tcp\r\nFrom-Path: msrp://b:2/t;tcp\r\nContent-Type: application/octet-stream\r\n\r\n";
        let mut input = BytesMut::new();
        input.extend_from_slice(head.as_bytes());
        for i in 0..(256 * 1024) {
            input.extend_from_slice(&[b"-\r\n"[i % 3]]);
        }
        input.extend_from_slice(b"\r\n-------lin1$\r\n");
        let parts: Vec<&[u8]> = input.chunks(64).collect();
        let t = std::time::Instant::now();
        let (frames, err) = decode_all(&mut MsrpCodec::default(), &parts);
        assert!(err.is_none());
        assert_eq!(frames.len(), 1);
        assert!(t.elapsed().as_secs() < 5);
    }
}
