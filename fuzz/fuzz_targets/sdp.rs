#![no_main]
//! Fuzz target: `wire::sdp`. Never panics; an accepted description serialises to the same bytes
//! and parses back to the same model; the MSRP view and the B2BUA setters never panic and keep
//! model and output in step.

use bytes::Bytes;
use cpm_iwf::wire::sdp::{Sdp, Setup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok(mut sdp) = Sdp::parse(input.clone()) else {
        return;
    };
    assert_eq!(sdp.to_bytes(), input);
    assert_eq!(Sdp::parse(sdp.to_bytes()).as_ref(), Ok(&sdp));
    let _ = sdp.require_msrp();
    if sdp.msrp_media().is_some() {
        sdp.set_port(2855).unwrap();
        sdp.set_connection(b"IP4", b"192.0.2.1").unwrap();
        sdp.set_path(&[Bytes::from_static(b"msrp://192.0.2.1:2855/f;tcp")])
            .unwrap();
        sdp.set_setup(Setup::Passive).unwrap();
        sdp.set_msrp_cema(data.len() % 2 == 0).unwrap();
        sdp.bump_session_version();
        let out = sdp.to_bytes();
        // Setters may push a line over the length limit; parse the result without limits.
        let lim = cpm_iwf::wire::sdp::Limits {
            max_size: usize::MAX,
            max_lines: usize::MAX,
            max_line_len: usize::MAX,
        };
        assert_eq!(Sdp::parse_with(out, &lim).as_ref(), Ok(&sdp));
    }
});
