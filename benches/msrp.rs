//! criterion benchmarks of the MSRP codec: parse and serialize of a chat SEND with a 1 KiB
//! body (target <= 300 ns to decode), the streaming decoder on 64 KiB chunks (target >= 2 GB/s
//! body scan), a 200 response, and URI parsing.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tokio_util::codec::Decoder;

use cpm_iwf::wire::msrp::{self, Limits, MsrpCodec, MsrpUri};

fn send(body_len: usize, tid: &str) -> Bytes {
    let mut m = format!(
        "MSRP {tid} SEND\r\n\
         To-Path: msrp://10.0.0.2:2855/kjhd37s2s20w2a;tcp\r\n\
         From-Path: msrp://10.0.0.1:2855/jshA7weztas;tcp\r\n\
         Message-ID: 87652491a9\r\n\
         Success-Report: yes\r\n\
         Byte-Range: 1-{body_len}/{body_len}\r\n\
         Content-Type: message/cpim\r\n\r\n"
    )
    .into_bytes();
    // A body made of text lines, with hyphens, as CPIM/XML bodies are.
    let line = b"NS: imdn <urn:ietf:params:imdn> -- some text ------ more\r\n";
    while m.len() < body_len + 260 {
        m.extend_from_slice(line);
    }
    let start = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    m.truncate(start + body_len);
    m.extend_from_slice(format!("\r\n-------{tid}$\r\n").as_bytes());
    Bytes::from(m)
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();

    let one_k = send(1024, "a786hjs2");
    let mut g = c.benchmark_group("msrp/send_1KiB");
    g.throughput(Throughput::Bytes(one_k.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| msrp::parse(black_box(one_k.clone()), &limits).unwrap())
    });
    let parsed = msrp::parse(one_k.clone(), &limits).unwrap();
    g.bench_function("serialize", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            black_box(&parsed).encode(&mut out);
        })
    });
    g.bench_function("decode_stream", |b| {
        let mut codec = MsrpCodec::new(limits.clone());
        b.iter(|| {
            let mut buf = BytesMut::from(&one_k[..]);
            black_box(codec.decode(&mut buf).unwrap().unwrap())
        })
    });
    g.bench_function("typed_fields", |b| {
        b.iter(|| {
            let m = black_box(&parsed);
            (
                m.to_path_uris().next().unwrap().unwrap(),
                m.byte_range().unwrap(),
                m.success_report().unwrap(),
            )
        })
    });
    g.finish();

    let big = send(64 * 1024, "b786hjs2");
    let mut g = c.benchmark_group("msrp/chunk_64KiB");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| msrp::parse(black_box(big.clone()), &limits).unwrap())
    });
    g.bench_function("decode_stream_16KiB_reads", |b| {
        let mut codec = MsrpCodec::new(limits.clone());
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(big.len());
            let mut got = None;
            for part in big.chunks(16 * 1024) {
                buf.extend_from_slice(part);
                if let Some(f) = codec.decode(&mut buf).unwrap() {
                    got = Some(f);
                }
            }
            black_box(got.unwrap())
        })
    });
    g.finish();

    let ok = Bytes::from_static(
        b"MSRP a786hjs2 200 OK\r\nTo-Path: msrp://10.0.0.1:2855/jshA7weztas;tcp\r\nFrom-Path: msrp://10.0.0.2:2855/kjhd37s2s20w2a;tcp\r\n-------a786hjs2$\r\n",
    );
    c.bench_function("msrp/response_200/parse", |b| {
        b.iter(|| msrp::parse(black_box(ok.clone()), &limits).unwrap())
    });
    c.bench_function("msrp/uri/parse", |b| {
        let u = Bytes::from_static(b"msrps://relay.example.com:2855/kjhd37s2s20w2a;tcp");
        b.iter(|| MsrpUri::parse(black_box(u.clone())).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
