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
            let again = match parse_datagram(out.clone(), &limits) {
                Ok(m) => m,
                Err(e) => panic!("canonical form does not parse: {e}\n{out:?}"),
            };
            assert_eq!(again, msg, "round trip changed the message");
            assert_eq!(again.serialize(), out, "canonical form is not a fixed point");
            // Accessors never panic.
            let _ = (msg.call_id(), msg.cseq(), msg.top_via_branch());
            let _ = (msg.from_tag(), msg.to_tag(), msg.content_type(), msg.uri());
        }
        Err(e) => {
            let _ = (e.answer(), e.offset(), e.to_string());
        }
    }
});
