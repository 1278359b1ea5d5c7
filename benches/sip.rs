//! criterion benchmarks of the sip codec: parse and serialize of a CPM pager MESSAGE (~1.2 KB,
//! 14 headers, CPIM body) and a CPM chat INVITE with SDP, the stream decoder, and rsip alone on
//! the same bytes for comparison.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group};
use std::hint::black_box;
use tokio_util::codec::Decoder;

use cpm_iwf::wire::sip::{Limits, SipStreamCodec, parse_datagram};

const PAGER: &[u8] = include_bytes!("../tests/vectors/sip/cpm-pager-message.txt");
const INVITE: &[u8] = include_bytes!("../tests/vectors/sip/cpm-chat-invite.txt");
const WSINV: &[u8] = include_bytes!("../tests/vectors/sip/rfc4475-wsinv.txt");

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, raw) in [("pager", PAGER), ("invite", INVITE), ("wsinv", WSINV)] {
        let input = Bytes::from_static(raw);
        let mut g = c.benchmark_group(format!("sip/{name}"));
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function("parse", |b| {
            b.iter(|| parse_datagram(black_box(input.clone()), &limits).unwrap())
        });
        let msg = parse_datagram(input.clone(), &limits).unwrap();
        g.bench_function("serialize", |b| b.iter(|| black_box(&msg).serialize()));
        g.bench_function("parse+serialize", |b| {
            b.iter(|| {
                parse_datagram(black_box(input.clone()), &limits)
                    .unwrap()
                    .serialize()
            })
        });
        // rsip alone on the same bytes (its tokenizer and Display), for comparison.
        if name != "wsinv" {
            g.bench_function("rsip-parse+to_string", |b| {
                b.iter(|| {
                    let m = rsip::SipMessage::try_from(black_box(raw)).unwrap();
                    m.to_string()
                })
            });
        }
        g.finish();
    }

    // Stream: 100 pager MESSAGEs back to back, decoded from one buffer.
    let mut stream = BytesMut::new();
    for _ in 0..100 {
        stream.extend_from_slice(PAGER);
    }
    let stream = stream.freeze();
    let mut g = c.benchmark_group("sip/stream");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode-100-pager", |b| {
        b.iter(|| {
            let mut codec = SipStreamCodec::new(limits);
            let mut buf = BytesMut::from(&stream[..]);
            let mut n = 0;
            while let Some(_f) = codec.decode(&mut buf).unwrap() {
                n += 1;
            }
            assert_eq!(n, 100);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
/// `CPM_IWF_SIP_ITERS=N`: parse and serialize the pager MESSAGE N times and exit, for an
/// instruction count with callgrind (a figure the other loads of a shared machine do not
/// change; run with 0 too and subtract the setup).
/// `CPM_IWF_SIP_VECTOR=invite|wsinv` picks another vector.
fn pager_iterations(n: u64) {
    let limits = Limits::default();
    let raw = match std::env::var("CPM_IWF_SIP_VECTOR").as_deref() {
        Ok("invite") => INVITE,
        Ok("wsinv") => WSINV,
        _ => PAGER,
    };
    let input = Bytes::from_static(raw);
    for _ in 0..n {
        black_box(
            parse_datagram(black_box(input.clone()), &limits)
                .expect("vector")
                .serialize(),
        );
    }
}

fn main() {
    if let Some(n) = std::env::var("CPM_IWF_SIP_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        pager_iterations(n);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
