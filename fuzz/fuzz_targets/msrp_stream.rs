#![no_main]
//! Fuzz target: `MsrpCodec` on an arbitrary byte stream, fed whole and in pieces (the first
//! byte picks the piece size). Never panics, and the frames do not depend on where the
//! stream is split. Small limits so that the size paths (skip, 413) are reached.

use bytes::BytesMut;
use cpm_iwf::wire::msrp::{Frame, Limits, MsrpCodec, MsrpError};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fn limits() -> Limits {
    Limits {
        max_chunk_size: 512,
        max_headers: 8,
        max_line_length: 256,
        max_header_bytes: 512,
        max_path_uris: 4,
    }
}

fn run(data: &[u8], piece: usize) -> (Vec<Frame>, Option<MsrpError>) {
    let mut codec = MsrpCodec::new(limits());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in data.chunks(piece.max(1)) {
        buf.extend_from_slice(part);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    match codec.decode_eof(&mut buf) {
        Ok(Some(f)) => out.push(f),
        Ok(None) => {}
        Err(e) => return (out, Some(e)),
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = run(rest, rest.len());
    let (pieces, pieces_err) = run(rest, usize::from(first % 64) + 1);
    // Frames before a framing error are the same; an error is reported either way.
    assert_eq!(whole, pieces);
    assert_eq!(whole_err.is_some(), pieces_err.is_some());
    for f in &whole {
        if let Frame::Message(m) = f {
            let mut again = MsrpCodec::new(limits());
            let mut b = BytesMut::new();
            m.encode(&mut b);
            assert_eq!(again.decode(&mut b).ok().flatten().as_ref(), Some(f));
        }
    }
});
