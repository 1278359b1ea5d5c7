#![no_main]
//! Fuzz target: the reginfo codec (RFC 3680 bodies) never panics, and whatever it accepts serializes to a canonical
//! body that parses back to the same model and is a fixed point.

use bytes::Bytes;
use cpm_iwf::wire::WireError;
use cpm_iwf::wire::reginfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    match reginfo::parse(input) {
        Ok(x) => {
            let canonical = x.to_bytes();
            let back = reginfo::parse(canonical.clone()).expect("canonical reginfo must parse");
            assert_eq!(back, x);
            assert_eq!(back.to_bytes(), canonical);
        }
        Err(e) => {
            // Every error has an answer and, when it has an offset, it is inside the input.
            let _ = e.answer();
            if let Some(off) = e.offset() {
                assert!(
                    off <= data.len(),
                    "offset {off} past {} bytes: {e}",
                    data.len()
                );
            }
            let _ = e.to_string();
        }
    }
});
