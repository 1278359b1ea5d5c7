#![no_main]
//! Fuzz target: the SIP stream decoder. The first byte chooses how the rest is cut into
//! reads; the frames must not depend on the cutting, and the decoder never panics.

use bytes::BytesMut;
use cpm_iwf::wire::sip::{Limits, SipFrame, SipStreamCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Frames and whether the stream ended in an error.
fn run(data: &[u8], step: usize) -> (Vec<SipFrame>, bool) {
    let limits = Limits {
        max_message: 4096,
        max_headers: 32,
        max_line: 1024,
    };
    let mut codec = SipStreamCodec::new(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(step.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, false),
            Err(_) => return (frames, true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let whole = run(rest, rest.len());
    let cut = run(rest, usize::from(step % 64) + 1);
    // An error may come earlier or later with smaller reads (the size limit is checked on
    // what is buffered), but the frames before it must agree.
    if whole.1 == cut.1 {
        assert_eq!(whole.0, cut.0);
    } else {
        let n = whole.0.len().min(cut.0.len());
        assert_eq!(whole.0[..n], cut.0[..n]);
    }
    for f in &whole.0 {
        if let SipFrame::Message(m) = f {
            let _ = m.serialize();
        }
    }
});
