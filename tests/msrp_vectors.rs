//! The RFC 4975 example messages in tests/vectors/msrp (see its README.md): what the parser
//! does with each, byte-exact re-serialization, and the streaming decoder on all of them.

use bytes::{Bytes, BytesMut};
use cpm_iwf::wire::msrp::{self, Continuation, Frame, Limits, Method, MsrpCodec, MsrpError};
use cpm_iwf::wire::{Answer, WireError};
use tokio_util::codec::Decoder;

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/vectors/msrp/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// What each vector must do: `Ok(byte_range_matches_body)` or `Err(expected error text)`.
const EXPECT: &[(&str, Result<bool, &str>)] = &[
    ("rfc4975-4-send", Ok(false)),
    ("rfc4975-4-200-ok", Ok(true)),
    (
        "rfc4975-5.1-chunk1-fragment",
        Err("To-Path header field missing"),
    ),
    ("rfc4975-5.1-chunk1", Ok(true)),
    (
        "rfc4975-5.1-chunk2-fragment",
        Err("To-Path header field missing"),
    ),
    ("rfc4975-5.1-chunk2", Ok(true)),
    ("rfc4975-11.1-send-alice", Ok(false)),
    ("rfc4975-11.1-200-bob", Ok(true)),
    ("rfc4975-11.1-send-bob", Ok(false)),
    ("rfc4975-11.1-200-alice", Ok(true)),
    ("rfc4975-11.2-xhtml", Ok(false)),
    ("rfc4975-11.4-cpim-chunk1", Ok(true)),
    ("rfc4975-11.4-cpim-chunk2", Ok(false)),
    ("rfc4975-11.5-system-message", Ok(false)),
    ("rfc4975-11.6-send", Ok(false)),
    ("rfc4975-11.6-report", Ok(true)),
    ("rfc4976-3-send-alice", Ok(true)),
    ("rfc4976-3-200-relay-a", Ok(true)),
    ("rfc4976-3-send-relay-a", Ok(true)),
    ("rfc4976-3-200-relay-b", Ok(true)),
    ("rfc4976-3-send-relay-b", Ok(true)),
    (AS_PRINTED, Err("no end-line \"-------xght6\"")),
    ("rfc4976-3-200-bob", Ok(true)),
    ("rfc4976-3-report-bob", Ok(true)),
    ("rfc4976-3-report-relay-b", Ok(true)),
    ("rfc4976-3-report-relay-a", Ok(true)),
    ("rfc4976-5.1-auth-1", Ok(true)),
    ("rfc4976-5.1-401-intra", Ok(true)),
    (
        "rfc4976-5.1-auth-2-as-printed",
        Err("malformed header field: no \":\" after the name"),
    ),
    ("rfc4976-5.1-auth-2", Ok(true)),
    ("rfc4976-5.1-200-intra", Ok(true)),
    ("rfc4976-5.1-auth-extra", Ok(true)),
    ("rfc4976-5.1-auth-extra-forwarded", Ok(true)),
    ("rfc4976-5.1-401-extra", Ok(true)),
    ("rfc4976-5.1-401-extra-forwarded", Ok(true)),
    ("rfc4976-5.1-auth-extra-2", Ok(true)),
    ("rfc4976-5.1-auth-extra-2-forwarded", Ok(true)),
    ("rfc4976-5.1-200-extra", Ok(true)),
    ("rfc4976-5.1-200-extra-forwarded", Ok(true)),
];

/// RFC 4976 §3 prints Bob's 200 without its end-line, run into the REPORT that follows.
const AS_PRINTED: &str = "rfc4976-3-200-bob-and-report-as-printed";

#[test]
fn every_vector_does_what_the_readme_says() {
    let limits = Limits::default();
    for (name, expect) in EXPECT {
        let input = load(name);
        match (msrp::parse(input.clone(), &limits), expect) {
            (Ok(m), Ok(range_ok)) => {
                assert_eq!(m.to_bytes(), input, "{name}: canonical re-serialization");
                assert_eq!(
                    m.check_byte_range().is_ok(),
                    *range_ok,
                    "{name}: {:?}",
                    m.check_byte_range()
                );
                if let Err(e) = m.check_byte_range() {
                    assert!(matches!(e, MsrpError::ByteRangeMismatch { .. }));
                }
            }
            (Err(e), Err(text)) => {
                assert!(e.to_string().contains(text), "{name}: {e}");
                assert_eq!(e.answer(), Answer::Status(400), "{name}");
            }
            (got, _) => panic!("{name}: unexpected {got:?}"),
        }
    }
}

#[test]
fn typed_fields_of_the_examples() {
    let l = Limits::default();
    let m = msrp::parse(load("rfc4975-11.4-cpim-chunk1"), &l).unwrap();
    assert_eq!(m.continuation, Continuation::More);
    assert_eq!(m.content_type().map(|c| &c[..]), Some(&b"message/cpim"[..]));
    let r = m.byte_range().unwrap().unwrap();
    assert_eq!((r.start, r.end, r.total), (1, Some(137), Some(148)));
    assert_eq!(m.body.as_ref().map(Bytes::len), Some(137));

    let m = msrp::parse(load("rfc4975-5.1-chunk1"), &l).unwrap();
    let r = m.byte_range().unwrap().unwrap();
    assert_eq!((r.start, r.end, r.total), (1, None, Some(8)));

    let m = msrp::parse(load("rfc4975-11.5-system-message"), &l).unwrap();
    assert_eq!(m.failure_report().unwrap(), msrp::ReportRequest::No);
    assert_eq!(m.success_report().unwrap(), msrp::ReportRequest::No);

    let m = msrp::parse(load("rfc4975-11.6-report"), &l).unwrap();
    assert_eq!(m.method(), Some(&Method::Report));
    let s = m.status().unwrap().unwrap();
    assert_eq!((s.namespace, s.code), (0, 200));

    let m = msrp::parse(load("rfc4975-11.1-200-bob"), &l).unwrap();
    assert_eq!(m.response_code(), Some(200));
    let req = msrp::parse(load("rfc4975-11.1-send-alice"), &l).unwrap();
    // Bob's 200 in the RFC is exactly what response_to builds (RFC 4975 §7.2).
    let built = msrp::Message::response_to(&req, 200, Some(Bytes::from_static(b"OK"))).unwrap();
    assert_eq!(built, m);
}

#[test]
fn stream_of_all_vectors_split_anywhere() {
    let mut all = BytesMut::new();
    // The as-printed RFC 4976 figure would swallow what follows it (its end-line is missing).
    for (name, _) in EXPECT.iter().filter(|(n, _)| *n != AS_PRINTED) {
        all.extend_from_slice(&load(name));
    }
    let expected = EXPECT.len() - 1;
    let all = all.freeze();
    let decode = |parts: &[&[u8]]| -> Vec<Frame> {
        let mut codec = MsrpCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for p in parts {
            buf.extend_from_slice(p);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        out
    };
    let whole = decode(&[&all]);
    assert_eq!(whole.len(), expected);
    let rejected = whole
        .iter()
        .filter(|f| matches!(f, Frame::Rejected { .. }))
        .count();
    let errors = EXPECT
        .iter()
        .filter(|(n, e)| e.is_err() && *n != AS_PRINTED)
        .count();
    assert_eq!(
        rejected, errors,
        "every rejected vector comes out as Frame::Rejected"
    );
    for i in (0..=all.len()).step_by(29) {
        assert_eq!(decode(&[&all[..i], &all[i..]]), whole, "split at {i}");
    }
}

#[test]
fn relay_forwarding_of_rfc4976_section_3() {
    // RFC 4976 §6.4.1: a relay moves its URI from the front of To-Path to the front of
    // From-Path. Alice's SEND as forwarded by a.example.org has exactly the printed paths.
    let l = Limits::default();
    let sent = msrp::parse(load("rfc4976-3-send-alice"), &l).unwrap();
    let forwarded = msrp::parse(load("rfc4976-3-send-relay-a"), &l).unwrap();
    let mut to = sent.to_path().unwrap();
    let me = to.remove(0);
    let mut from = sent.from_path().unwrap();
    from.insert(0, me);
    let mut relayed = sent.clone();
    relayed.set_to_path(&to);
    relayed.set_from_path(&from);
    assert_eq!(relayed.to_path().unwrap(), forwarded.to_path().unwrap());
    assert_eq!(relayed.from_path().unwrap(), forwarded.from_path().unwrap());
    assert_eq!(relayed.header("To-Path"), forwarded.header("To-Path"));
    assert_eq!(relayed.header("From-Path"), forwarded.header("From-Path"));
    // The 200 that relay a.example.org returns is response_to(SEND) plus its Message-ID.
    let mut ok = msrp::Message::response_to(&sent, 200, Some(Bytes::from_static(b"OK"))).unwrap();
    ok.set_header("Message-ID", sent.message_id().unwrap().clone());
    assert_eq!(ok.to_bytes(), load("rfc4976-3-200-relay-a"));
    // msrps URIs without relay ports are read as secure with their ports.
    assert!(
        forwarded
            .to_path()
            .unwrap()
            .iter()
            .all(|u| u.secure && u.port.is_some())
    );
}

#[test]
fn rfc4976_auth_exchange() {
    let l = Limits::default();
    let auth = msrp::parse(load("rfc4976-5.1-auth-1"), &l).unwrap();
    assert_eq!(auth.method(), Some(&Method::Auth));
    let relay = &auth.to_path().unwrap()[0];
    assert_eq!(relay.userinfo.as_deref(), Some(&b"alice"[..]));
    assert_eq!((relay.port, relay.session_id.as_ref()), (None, None));
    let challenge = msrp::parse(load("rfc4976-5.1-401-intra"), &l).unwrap();
    assert_eq!(challenge.response_code(), Some(401));
    assert!(
        challenge
            .www_authenticate()
            .unwrap()
            .starts_with(b"Digest realm=\"intra.example.com\"")
    );
    // The 401 is exactly response_to(AUTH) plus the challenge (AUTH is not SEND: the whole
    // From-Path goes into To-Path, RFC 4975 §7.2).
    let mut built =
        msrp::Message::response_to(&auth, 401, Some(Bytes::from_static(b"Unauthorized"))).unwrap();
    built.set_header(
        "WWW-Authenticate",
        challenge.www_authenticate().unwrap().clone(),
    );
    assert_eq!(built, challenge);
    let creds = msrp::parse(load("rfc4976-5.1-auth-2"), &l).unwrap();
    assert!(
        creds
            .authorization()
            .unwrap()
            .ends_with(b"response=\"6629fae49393a05397450978507c4ef1\"")
    );
    let ok = msrp::parse(load("rfc4976-5.1-200-intra"), &l).unwrap();
    assert_eq!(ok.expires().unwrap(), Some(900));
    let use_path = ok.use_path().unwrap().unwrap();
    assert_eq!(use_path.len(), 1);
    assert_eq!(use_path[0].port, Some(9000));
    assert!(ok.authentication_info().is_some());
    let ok2 = msrp::parse(load("rfc4976-5.1-200-extra"), &l).unwrap();
    assert_eq!(ok2.use_path().unwrap().unwrap().len(), 2);
    assert_eq!(ok2.expires().unwrap(), Some(1800));
}
