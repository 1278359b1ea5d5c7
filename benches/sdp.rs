//! criterion benchmarks of the SDP codec: parse, typed MSRP view, B2BUA rewrite, serialise.

use std::hint::black_box;

use bytes::Bytes;
use cpm_iwf::wire::sdp::{Sdp, Setup};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CHAT_OFFER: &[u8] = include_bytes!("../tests/vectors/sdp/ours-cpm-chat-offer.txt");
const FILE_OFFER: &[u8] = include_bytes!("../tests/vectors/sdp/rfc5547-9.1-file-offer.txt");

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sdp");
    for (name, input) in [("chat_offer", CHAT_OFFER), ("file_offer", FILE_OFFER)] {
        let input = Bytes::from_static(input);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| Sdp::parse(black_box(input.clone())).unwrap())
        });
        let sdp = Sdp::parse(input.clone()).unwrap();
        g.bench_function(format!("msrp_media/{name}"), |b| {
            b.iter(|| black_box(&sdp).require_msrp().unwrap())
        });
        g.bench_function(format!("serialize/{name}"), |b| {
            b.iter(|| black_box(&sdp).to_bytes())
        });
        let path = [Bytes::from_static(b"msrp://192.0.2.10:2855/iwf-1;tcp")];
        g.bench_function(format!("b2bua_rewrite/{name}"), |b| {
            b.iter(|| {
                let mut s = Sdp::parse(black_box(input.clone())).unwrap();
                s.set_connection(b"IP4", b"192.0.2.10").unwrap();
                s.set_port(2855).unwrap();
                s.set_path(&path).unwrap();
                s.set_setup(Setup::Passive).unwrap();
                s.bump_session_version();
                s.to_bytes()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
