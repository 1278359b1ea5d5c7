#![no_main]
//! Fuzz target: SIP datagram parsing. Never panics; whatever parses re-serializes to a
//! canonical form that parses back to the same message and is a fixed point.

use bytes::Bytes;
use cpm_iwf::wire::WireError;
use cpm_iwf::wire::sip::{Limits, parse_datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse_datagram(Bytes::copy_from_slice(data), &limits) {
        Ok(msg) => {
            let out = msg.serialize();
            // The canonical form may grow a little (long names, "Name: value", an appended
            // Content-Length): re-read it with room for that.
            let limits = Limits {
                max_message: limits.max_message * 2 + 64,
                max_headers: limits.max_headers + 1,
                max_line: limits.max_line + 32,
            };
            let again = match parse_datagram(out.clone(), &limits) {
                Ok(m) => m,
                Err(e) => panic!("canonical form does not parse: {e}\n{out:?}"),
            };
            // Equal, except that the canonical form always has a Content-Length (appended
            // when the datagram had none).
            let fields = |m: &cpm_iwf::wire::sip::SipMessage| {
                m.headers()
                    .filter(|(n, _)| *n != "Content-Length")
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(again.start_line(), msg.start_line());
            assert_eq!(fields(&again), fields(&msg), "round trip changed the headers");
            assert_eq!(again.body(), msg.body(), "round trip changed the body");
            assert_eq!(again.serialize(), out, "canonical form is not a fixed point");
            let third = parse_datagram(again.serialize(), &limits).expect("fixed point parses");
            assert_eq!(third, again);
            // Accessors never panic.
            let _ = (msg.call_id(), msg.cseq(), msg.top_via_branch());
            let _ = (msg.from_tag(), msg.to_tag(), msg.content_type(), msg.uri());
        }
        Err(e) => {
            let _ = (e.answer(), e.offset(), e.to_string());
        }
    }
});
