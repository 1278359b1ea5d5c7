//! criterion benchmarks of the isComposing codec: parse and serialize of realistic bodies.

use std::hint::black_box;

use bytes::Bytes;
use cpm_iwf::wire::iscomposing::{self, IsComposing};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RFC_ACTIVE: &[u8] = include_bytes!("../tests/vectors/iscomposing/rfc3994-5-active.txt");
const RCS_CRLF: &[u8] =
    include_bytes!("../tests/vectors/iscomposing/wild-rcs-crlf-schema-location.txt");
const BARE: &[u8] = include_bytes!("../tests/vectors/iscomposing/wild-bare-minimum.txt");

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("iscomposing/parse");
    for (name, body) in [
        ("rfc-active", RFC_ACTIVE),
        ("rcs-crlf", RCS_CRLF),
        ("bare", BARE),
    ] {
        let input = Bytes::from_static(body);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| iscomposing::parse(black_box(input.clone())).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("iscomposing/serialize");
    let active = IsComposing::active(Some(60)).with_contenttype("text/plain");
    let idle = IsComposing::idle(Some(Bytes::from_static(b"2026-11-25T09:12:44Z")));
    for (name, x) in [("active", active), ("idle", idle)] {
        g.throughput(Throughput::Bytes(x.to_bytes().len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(&x).to_bytes()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
