#![no_main]
//! Fuzz target: `wire::msrp::parse` on arbitrary bytes. Never panics; every accepted message
//! serializes to a canonical form that parses back to the same model and serializes to the
//! same bytes; the inspect renderer and the typed accessors never panic either.

use bytes::Bytes;
use cpm_iwf::wire::WireError;
use cpm_iwf::wire::msrp::{self, Limits, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let input = Bytes::copy_from_slice(data);
    match msrp::parse(input.clone(), &limits) {
        Ok(m) => {
            let wire = m.to_bytes();
            assert_eq!(wire.len(), m.encoded_len());
            let again = msrp::parse(wire.clone(), &limits).expect("canonical form parses");
            assert_eq!(again, m);
            assert_eq!(again.to_bytes(), wire);
            // Typed views of a parsed message never fail.
            assert!(m.to_path().is_ok() && m.from_path().is_ok());
            assert!(m.byte_range().is_ok() && m.status().is_ok());
            assert!(m.success_report().is_ok() && m.failure_report().is_ok());
            assert!(m.expires().is_ok() && m.use_path().is_ok());
            let _ = m.check_byte_range();
            if m.method().is_some() {
                if let Ok(r) = Message::response_to(&m, 200, None) {
                    let w = r.to_bytes();
                    assert_eq!(msrp::parse(w, &limits).as_ref(), Ok(&r));
                }
            }
        }
        Err(e) => {
            let _ = (e.answer(), e.offset(), e.to_string());
            if let Some(off) = e.offset() {
                assert!(off <= data.len(), "offset {off} past input {}", data.len());
            }
        }
    }
    let _ = cpm_iwf::inspect::inspect(cpm_iwf::inspect::Format::Msrp, input);
});
