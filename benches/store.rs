//! criterion benchmarks of the store: durable puts per second (each put answered only after its
//! commit), from one writer and from 16 at once (group commit: one fsync serves every put that
//! waited for it). redb always; Redis when `CPM_IWF_BENCH_REDIS_URL` names a server that runs
//! with `appendonly yes`, `appendfsync always`.
//!
//! `cargo bench --bench store -- --quick`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cpm_iwf::store::redb::{RedbOptions, RedbStore};
use cpm_iwf::store::redis::{RedisOptions, RedisStore};
use cpm_iwf::store::{Kind, Limits, Store, StoredMessage};
use cpm_iwf::translate::state::{Device, Side};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn message() -> StoredMessage {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    StoredMessage {
        recipient: Bytes::from(format!("sip:user{}@simple.example", n % 1000)),
        to_side: Side::Simple,
        kind: Kind::Pager,
        // About the size of a translated pager MESSAGE with a short CPIM body.
        payload: Bytes::from(vec![b'x'; 600]),
        message_id: Some(Bytes::from(format!("bench-{n}"))),
        conversation_id: Some(Bytes::from_static(b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6")),
        contribution_id: Some(Bytes::from_static(b"abcdef-1234")),
        date_time: Some(Bytes::from_static(b"2026-11-25T13:00:00Z")),
        received_at_unix_ms: 1,
        expires_at_unix_ms: u64::MAX / 2,
        sender: Device {
            aor: Bytes::from_static(b"sip:alice@cpm.example"),
            gruu: None,
            instance: Some(Bytes::from_static(b"urn:uuid:a")),
        },
    }
}

fn limits() -> Limits {
    Limits {
        max_user_messages: u64::MAX,
        max_user_bytes: u64::MAX,
        max_total_bytes: u64::MAX,
        ..Limits::default()
    }
}

fn puts(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, store: Arc<dyn Store>) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(10);
    group.bench_function("put_durable/1_writer", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    store.put(message()).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("put_durable/16_writers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let per = iters.div_ceil(16);
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move {
                            for _ in 0..per {
                                store.put(message()).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redb = rt
        .block_on(RedbStore::open(
            dir.path().join("bench.redb"),
            limits(),
            RedbOptions::default(),
        ))
        .unwrap();
    puts(c, "store_redb", &rt, Arc::new(redb));
    // The mode that lets `cpm-iwf store stats` read while the node runs.
    let shared = rt
        .block_on(RedbStore::open(
            dir.path().join("bench-shared.redb"),
            limits(),
            RedbOptions {
                share_with_readers: true,
                ..RedbOptions::default()
            },
        ))
        .unwrap();
    puts(c, "store_redb_shared", &rt, Arc::new(shared));
    if let Ok(url) = std::env::var("CPM_IWF_BENCH_REDIS_URL") {
        let options = RedisOptions {
            prefix: format!("bench{}:", std::process::id()),
            ..RedisOptions::default()
        };
        let redis = rt
            .block_on(RedisStore::open(&url, limits(), options))
            .unwrap();
        puts(c, "store_redis", &rt, Arc::new(redis));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
