//! The vectors in tests/vectors/sip/ (see README.md there) and what the codec does with each.

use bytes::{Bytes, BytesMut};
use cpm_iwf::wire::sip::{Limits, SipFrame, SipStreamCodec, parse_datagram};
use cpm_iwf::wire::{Answer, WireError};
use tokio_util::codec::Decoder;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sip");

fn load(name: &str) -> Bytes {
    Bytes::from(std::fs::read(format!("{DIR}/{name}.txt")).unwrap())
}

enum Expect {
    /// Accepted; the canonical serialization equals the input byte for byte.
    Same,
    /// Accepted with a documented normalisation (compact names, folding, white space).
    Normalised,
    /// Rejected with this answer and this reason phrase.
    Rejected(Answer, &'static str),
}

use Expect::*;

const CASES: &[(&str, Expect)] = &[
    ("cpm-pager-message", Same),
    ("cpm-chat-invite", Same),
    ("rfc3428-f1-message", Same),
    ("rfc3428-f2-message", Normalised),
    (
        "rfc3261-24.2-f1-invite",
        Rejected(
            Answer::Status(400),
            "Bad Request: Content-Length 142 exceeds datagram (23 body bytes)",
        ),
    ),
    ("rfc3261-24.2-f2-trying", Normalised),
    ("rfc3261-24.2-f13-bye", Same),
    ("rfc4475-wsinv", Normalised),
    ("rfc4475-lwsdisp", Normalised),
    ("rfc4475-esc01", Normalised),
    ("rfc4475-dblreq", Normalised),
    ("rfc4475-baddn", Normalised),
    ("rfc4475-noreason", Same),
    ("rfc4475-novelsc", Same),
    ("rfc4475-unkscm", Same),
    ("rfc4475-zeromf", Same),
    ("rfc4475-semiuri", Normalised),
    ("rfc4475-transports", Normalised),
    ("rfc4475-regescrt", Normalised),
    (
        "rfc4475-insuf",
        Rejected(Answer::Status(400), "Bad Request: missing From"),
    ),
    (
        "rfc4475-multi01",
        Rejected(Answer::Status(400), "Bad Request: more than one Call-ID"),
    ),
    (
        "rfc4475-ncl",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed Content-Length: not a decimal number",
        ),
    ),
    (
        "rfc4475-quotbal",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed To: unterminated quoted string",
        ),
    ),
    (
        "rfc4475-scalar02",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed CSeq: sequence number over 2**31-1",
        ),
    ),
    (
        "rfc4475-scalarlg",
        Rejected(
            Answer::Drop,
            "malformed response dropped: malformed CSeq: sequence number over 2**31-1",
        ),
    ),
    (
        "rfc4475-trws",
        Rejected(
            Answer::Status(400),
            "Bad Request: white space at the end of the request line",
        ),
    ),
    (
        "rfc4475-badinv01",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed Via: empty parameter",
        ),
    ),
    (
        "rfc4475-badvers",
        Rejected(
            Answer::Status(505),
            "Version Not Supported: SIP version SIP/7.0 not supported",
        ),
    ),
    (
        "rfc4475-bigcode",
        Rejected(
            Answer::Drop,
            "malformed response dropped: status code is not three digits 100-699",
        ),
    ),
    (
        "rfc4475-clerr",
        Rejected(
            Answer::Status(400),
            "Bad Request: Content-Length 9999 exceeds datagram (154 body bytes)",
        ),
    ),
    (
        "rfc4475-escruri",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed Request-URI: contains URI headers",
        ),
    ),
    (
        "rfc4475-ltgtruri",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed Request-URI: enclosed in <>",
        ),
    ),
    (
        "rfc4475-lwsruri",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed Request-URI: contains white space",
        ),
    ),
    (
        "rfc4475-lwsstart",
        Rejected(
            Answer::Status(400),
            "Bad Request: malformed Request-URI: contains white space",
        ),
    ),
    (
        "rfc4475-mcl01",
        Rejected(
            Answer::Status(400),
            "Bad Request: more than one Content-Length",
        ),
    ),
    (
        "rfc4475-mismatch01",
        Rejected(
            Answer::Status(400),
            "Bad Request: CSeq method INVITE does not match request method OPTIONS",
        ),
    ),
];

#[test]
fn every_vector_file_has_a_case() {
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".txt").map(str::to_owned)
        })
        .collect();
    files.sort();
    let mut cases: Vec<String> = CASES.iter().map(|(n, _)| n.to_string()).collect();
    cases.sort();
    assert_eq!(files, cases);
}

#[test]
fn vectors_parse_as_documented() {
    let limits = Limits::default();
    for (name, expect) in CASES {
        let input = load(name);
        let result = parse_datagram(input.clone(), &limits);
        match (expect, result) {
            (Same, Ok(m)) => assert_eq!(m.serialize(), input, "{name}"),
            (Normalised, Ok(m)) => {
                let out = m.serialize();
                assert_ne!(out, input, "{name}: expected a normalisation");
                let again = parse_datagram(out.clone(), &limits).unwrap();
                assert_eq!(again, m, "{name}");
                assert_eq!(again.serialize(), out, "{name}: canonical form is stable");
            }
            (Rejected(answer, reason), Err(e)) => {
                assert_eq!(e.answer(), *answer, "{name}");
                assert_eq!(e.to_string(), *reason, "{name}");
                assert!(
                    e.offset().is_some() || matches!(answer, Answer::Drop),
                    "{name}"
                );
            }
            (_, Ok(_)) => panic!("{name}: accepted, expected a rejection"),
            (_, Err(e)) => panic!("{name}: rejected: {e}"),
        }
    }
}

#[test]
fn folded_and_compact_vectors_read_right() {
    let limits = Limits::default();
    let f2 = parse_datagram(load("rfc3428-f2-message"), &limits).unwrap();
    assert_eq!(
        f2.header_all("Via").nth(1),
        Some("SIP/2.0/TCP user1pc.domain.com;branch=z9hG4bK776sgdkse; received=1.2.3.4")
    );
    assert_eq!(f2.top_via_branch(), Some("z9hG4bK123dsghds"));
    assert_eq!(f2.body().as_ref(), b"Watson, come here.");

    let esc = parse_datagram(load("rfc4475-esc01"), &limits).unwrap();
    assert_eq!(esc.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(esc.content_type(), Some("application/sdp"));

    // RFC 3261 §18.3: octets after Content-Length in a datagram are discarded.
    let dbl = parse_datagram(load("rfc4475-dblreq"), &limits).unwrap();
    assert!(dbl.body().is_empty());
    assert_eq!(
        dbl.call_id(),
        Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412")
    );
}

#[test]
fn dblreq_on_a_stream_is_two_messages() {
    // On a stream the "trailing octets" are the next message. Its Content-Length (150) is
    // 3 bytes short of the SDP the RFC shows, so 3 bytes are left when the peer closes.
    let mut codec = SipStreamCodec::default();
    let mut buf = BytesMut::from(&load("rfc4475-dblreq")[..]);
    let mut methods = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        match frame {
            SipFrame::Message(m) => methods.push(m.method().cloned()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        methods,
        [Some(rsip::Method::Register), Some(rsip::Method::Invite)]
    );
    assert_eq!(&buf[..], b"C\r\n");
    assert!(codec.decode_eof(&mut buf).is_err());
}
