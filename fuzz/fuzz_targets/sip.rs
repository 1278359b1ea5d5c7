#![no_main]
//! Fuzz target: sip (placeholder until the codec lands).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
