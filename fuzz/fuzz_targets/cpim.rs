#![no_main]
//! Fuzz target: `wire::cpim`. Never panics; an accepted message written back (always in the
//! RFC 3862 layout) parses to the same model; namespace look-ups and `set_ns` never panic.

use bytes::Bytes;
use cpm_iwf::wire::cpim::{Cpim, Limits, NS_IMDN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Cpim::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let unlimited = Limits {
        max_size: usize::MAX,
        max_headers: usize::MAX,
        max_line_len: usize::MAX,
    };
    let again = Cpim::parse_with(c.to_bytes(), &unlimited).expect("written message parses");
    assert_eq!(Cpim { layout: c.layout, ..again }, c);
    let _ = (c.imdn_message_id(), c.imdn_disposition_notification(), c.cpm_payload_type());
    let _ = (c.from(), c.to(), c.subject(), c.require(), c.content_type());
    for i in 0..c.headers.len() {
        let _ = c.namespace_of(i);
    }
    let mut c = c;
    c.set_ns(NS_IMDN, "imdn", "Message-ID", b"fuzz0001");
    let again = Cpim::parse_with(c.to_bytes(), &unlimited).expect("after set_ns");
    assert_eq!(again.imdn_message_id().map(|b| &b[..]), Some(&b"fuzz0001"[..]));
});
