//! Property tests: generated messages (random header sets, compact names, folded input forms,
//! random bodies) round-trip through parse/serialize; a stream of them decodes to the same
//! frames however it is split.

use bytes::{Bytes, BytesMut};
use cpm_iwf::wire::sip::{Limits, SipFrame, SipMessage, SipStreamCodec, parse_datagram};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Header names safe to give random values (the parser checks the grammar of the others).
/// (input spelling, canonical name)
const EXTRA: &[(&str, &str)] = &[
    ("Subject", "Subject"),
    ("s", "Subject"),
    ("Supported", "Supported"),
    ("k", "Supported"),
    ("Contact", "Contact"),
    ("m", "Contact"),
    ("a", "Accept-Contact"),
    ("Accept-Contact", "Accept-Contact"),
    ("o", "Event"),
    ("u", "Allow-Events"),
    ("Route", "Route"),
    ("P-Preferred-Service", "P-Preferred-Service"),
    ("Conversation-ID", "Conversation-ID"),
    ("Contribution-ID", "Contribution-ID"),
    ("X-Unknown", "X-Unknown"),
    ("user-agent", "User-Agent"),
];

const METHODS: &[&str] = &[
    "INVITE", "MESSAGE", "OPTIONS", "BYE", "NOTIFY", "UPDATE", "INFO",
];

#[derive(Debug, Clone)]
struct Case {
    method: usize,
    user: String,
    branch: String,
    tag: String,
    call_id: String,
    seq: u32,
    /// (index into EXTRA, words of the value, folding style per gap)
    extras: Vec<(usize, Vec<String>, Vec<u8>)>,
    body: Vec<u8>,
    compact_core: bool,
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9;=<>:@.%+_-]{1,12}"
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..METHODS.len(),
        "[a-z0-9]{1,10}",
        "[a-zA-Z0-9]{1,16}",
        "[a-zA-Z0-9]{1,10}",
        "[a-zA-Z0-9.@-]{1,24}",
        0u32..(1 << 31),
        prop::collection::vec(
            (
                0..EXTRA.len(),
                prop::collection::vec(word(), 0..5),
                prop::collection::vec(0u8..3, 5),
            ),
            0..10,
        ),
        prop::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(
            |(method, user, branch, tag, call_id, seq, extras, body, compact_core)| Case {
                method,
                user,
                branch,
                tag,
                call_id,
                seq,
                extras,
                body,
                compact_core,
            },
        )
}

impl Case {
    /// The input bytes, with compact names and folded values where the case says so.
    fn input(&self) -> Vec<u8> {
        let m = METHODS[self.method];
        let c = self.compact_core;
        let mut s = format!("{m} sip:{}@example.com SIP/2.0\r\n", self.user);
        s += &format!(
            "{}: SIP/2.0/TCP h.example.com;branch=z9hG4bK{}\r\n",
            if c { "v" } else { "Via" },
            self.branch
        );
        s += "Max-Forwards: 70\r\n";
        s += &format!(
            "{}: <sip:a@example.com>;tag={}\r\n",
            if c { "f" } else { "From" },
            self.tag
        );
        s += &format!(
            "{}: <sip:{}@example.com>\r\n",
            if c { "t" } else { "To" },
            self.user
        );
        s += &format!("{}: {}\r\n", if c { "i" } else { "Call-ID" }, self.call_id);
        s += &format!("CSeq: {} {m}\r\n", self.seq);
        for (i, words, folds) in &self.extras {
            s += EXTRA[*i].0;
            s += ":";
            for (k, w) in words.iter().enumerate() {
                s += match folds.get(k).copied().unwrap_or(0) {
                    0 => " ",
                    1 => "\r\n ",
                    _ => "\r\n\t  ",
                };
                s += w;
            }
            s += "\r\n";
        }
        s += &format!(
            "{}: {}\r\n\r\n",
            if c { "l" } else { "Content-Length" },
            self.body.len()
        );
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn limits() -> Limits {
    Limits::default()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_messages_parse_to_what_was_meant(c in case()) {
        let msg = parse_datagram(Bytes::from(c.input()), &limits()).unwrap();
        prop_assert_eq!(msg.method().map(cpm_iwf::wire::sip::method_name), Some(METHODS[c.method]));
        prop_assert_eq!(msg.call_id(), Some(c.call_id.as_str()));
        prop_assert_eq!(msg.from_tag(), Some(c.tag.as_str()));
        let branch = format!("z9hG4bK{}", c.branch);
        prop_assert_eq!(msg.top_via_branch(), Some(branch.as_str()));
        prop_assert_eq!(msg.cseq().map(|x| x.seq), Some(c.seq));
        prop_assert_eq!(msg.body().as_ref(), &c.body[..]);
        let extras: Vec<(String, String)> = msg
            .headers()
            .skip(6)
            .take(c.extras.len())
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let expected: Vec<(String, String)> = c
            .extras
            .iter()
            .map(|(i, words, _)| (EXTRA[*i].1.to_owned(), words.join(" ")))
            .collect();
        prop_assert_eq!(extras, expected);
    }

    #[test]
    fn parse_serialize_parse_is_stable(c in case()) {
        let x = parse_datagram(Bytes::from(c.input()), &limits()).unwrap();
        let out = x.serialize();
        let y = parse_datagram(out.clone(), &limits()).unwrap();
        prop_assert_eq!(&y, &x);
        prop_assert_eq!(y.serialize(), out);
    }

    #[test]
    fn built_messages_round_trip(c in case()) {
        // A model built through the API (no Content-Length given) serializes with the right one.
        let method = cpm_iwf::wire::sip::method_from_name(METHODS[c.method].as_bytes()).unwrap();
        let mut m = SipMessage::request(method, &format!("sip:{}@example.com", c.user)).unwrap();
        m.push_header("Via", &format!("SIP/2.0/UDP h;branch=z9hG4bK{}", c.branch)).unwrap();
        m.push_header("Max-Forwards", "70").unwrap();
        m.push_header("From", &format!("<sip:a@example.com>;tag={}", c.tag)).unwrap();
        m.push_header("To", "<sip:b@example.com>").unwrap();
        m.push_header("Call-ID", &c.call_id).unwrap();
        m.push_header("CSeq", &format!("{} {}", c.seq, METHODS[c.method])).unwrap();
        for (i, words, _) in &c.extras {
            m.push_header(EXTRA[*i].0, &words.join(" ")).unwrap();
        }
        m.set_body(Bytes::from(c.body.clone()));
        let parsed = parse_datagram(m.serialize(), &limits()).unwrap();
        prop_assert_eq!(parsed.body(), m.body());
        prop_assert_eq!(parsed.headers().count(), m.headers().count() + 1);
        let mut m2 = m.clone();
        m2.push_header("Content-Length", &c.body.len().to_string()).unwrap();
        prop_assert_eq!(parsed, m2);
    }
}

fn decode(input: &[u8], cuts: &[usize]) -> Vec<SipFrame> {
    let mut codec = SipStreamCodec::new(limits());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(last, input.len());
        buf.extend_from_slice(&input[last..cut]);
        last = cut;
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
        frames.push(f);
    }
    frames
}

fn stream_of(cases: &[(Case, bool)]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut pings = 0;
    for (c, ping) in cases {
        if *ping {
            out.extend_from_slice(b"\r\n\r\n");
            pings += 1;
        }
        out.extend_from_slice(&c.input());
    }
    (out, pings)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn stream_random_splits_give_the_same_frames(
        cases in prop::collection::vec((case(), any::<bool>()), 1..5),
        mut cuts in prop::collection::vec(0usize..4000, 0..40),
    ) {
        let (stream, pings) = stream_of(&cases);
        let whole = decode(&stream, &[]);
        prop_assert_eq!(whole.len(), cases.len() + pings);
        cuts.sort_unstable();
        prop_assert_eq!(decode(&stream, &cuts), whole);
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn stream_split_at_every_byte_gives_the_same_frames(
        cases in prop::collection::vec((case(), any::<bool>()), 1..3),
    ) {
        let (stream, _) = stream_of(&cases);
        let whole = decode(&stream, &[]);
        for cut in 0..=stream.len() {
            prop_assert_eq!(&decode(&stream, &[cut]), &whole, "split at {}", cut);
        }
        let every: Vec<usize> = (0..=stream.len()).collect();
        prop_assert_eq!(decode(&stream, &every), whole);
    }
}
