//! criterion benchmarks of the IMDN codec: parse and serialize of realistic bodies.

use std::hint::black_box;

use bytes::Bytes;
use cpm_iwf::wire::imdn::{self, Imdn};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RFC_DELIVERED: &[u8] = include_bytes!("../tests/vectors/imdn/rfc5438-7.2.1.1-delivered.txt");
const LINPHONE_ERROR: &[u8] = include_bytes!("../tests/vectors/imdn/wild-linphone-reason.txt");
const BARE: &[u8] = include_bytes!("../tests/vectors/imdn/wild-bare-minimum.txt");
const PREFIXED_EXTENSION: &[u8] =
    include_bytes!("../tests/vectors/imdn/wild-prefixed-vendor-extension.txt");

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("imdn/parse");
    for (name, body) in [
        ("rfc-delivered", RFC_DELIVERED),
        ("linphone-error-reason", LINPHONE_ERROR),
        ("prefixed-extension", PREFIXED_EXTENSION),
        ("bare-minimum", BARE),
    ] {
        let input = Bytes::from_static(body);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| imdn::parse(black_box(input.clone())).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("imdn/serialize");
    let delivered = imdn::parse(Bytes::from_static(RFC_DELIVERED)).unwrap();
    let built = Imdn::displayed(
        "Hr1BCcvDlKmJRpDryyKTDJ4OZpkR",
        "2026-11-25T09:12:44Z",
        Some(Bytes::from_static(b"sip:+15551234567@ims.example.net")),
    );
    for (name, imdn) in [("rfc-delivered", delivered), ("built-displayed", built)] {
        g.throughput(Throughput::Bytes(imdn.to_bytes().len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(&imdn).to_bytes()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
