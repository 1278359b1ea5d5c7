//! criterion benchmarks of the CPIM codec: parse (both layouts), namespace look-ups, serialise.

use std::hint::black_box;

use bytes::Bytes;
use cpm_iwf::wire::cpim::{Cpim, NS_IMDN};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CHAT: &[u8] = include_bytes!("../tests/vectors/cpim/ours-cpm-chat.txt");
const ERRATA: &[u8] = include_bytes!("../tests/vectors/cpim/rfc5438-7.2-delivery-notification.txt");
const RFC3862: &[u8] = include_bytes!("../tests/vectors/cpim/rfc3862-5.1.txt");

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpim");
    for (name, input) in [
        ("cpm_chat", CHAT),
        ("imdn_errata", ERRATA),
        ("rfc3862", RFC3862),
    ] {
        let input = Bytes::from_static(input);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| Cpim::parse(black_box(input.clone())).unwrap())
        });
        let msg = Cpim::parse(input.clone()).unwrap();
        g.bench_function(format!("serialize/{name}"), |b| {
            b.iter(|| black_box(&msg).to_bytes())
        });
        g.bench_function(format!("imdn_lookup/{name}"), |b| {
            b.iter(|| {
                let m = black_box(&msg);
                (
                    m.imdn_message_id().cloned(),
                    m.imdn_disposition_notification(),
                )
            })
        });
    }
    // A 4 KiB chat message body: parse cost should not depend on the body size.
    let mut big = CHAT.to_vec();
    big.extend(std::iter::repeat_n(b'x', 4096));
    let big = Bytes::from(big);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("parse/cpm_chat_4k_body", |b| {
        b.iter(|| Cpim::parse(black_box(big.clone())).unwrap())
    });
    let mut msg = Cpim::parse(Bytes::from_static(CHAT)).unwrap();
    g.bench_function("set_ns/message_id", |b| {
        b.iter(|| {
            msg.set_ns(
                NS_IMDN,
                "imdn",
                "Message-ID",
                black_box(b"abcdef0123456789"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
