//! criterion benchmarks of the correlation table: insert + lookup from one and two threads, and
//! the memory one entry costs (measured with a counting allocator, printed once).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cpm_iwf::correlate::{Millis, Table, TableLimits};
use cpm_iwf::translate::state::{
    Change, ConversationIds, Device, Entry, MessageOrigin, Side, View,
};

/// The system allocator, counting live bytes, so that bytes per entry are measured, not guessed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A message origin as the translator would remember it: ids are slices of one received
/// message, so each entry owns copies only where the bench makes them (a realistic upper bound:
/// every id copied out of its message).
fn origin(i: u64) -> (Bytes, MessageOrigin) {
    let id = Bytes::from(format!("{i:016x}-8e4f-4c3a-a1b2-{i:012x}"));
    let origin = MessageOrigin {
        side: Side::Cpm,
        device: Device {
            aor: Bytes::from(format!("sip:+4917{i:08}@cpm.example.net")),
            gruu: None,
            instance: Some(Bytes::from(format!("urn:gsma:imei:35{i:012}"))),
        },
        recipient: Bytes::from(format!("sip:user{i}@simple.example.net")),
        conversation: Some(ConversationIds {
            conversation_id: Bytes::from(format!("conv-{i:032x}")),
            contribution_id: Bytes::from(format!("contrib-{i:032x}")),
            in_reply_to: None,
        }),
    };
    (id, origin)
}

fn bytes_per_entry() {
    const N: u64 = 100_000;
    let base = LIVE.load(Ordering::Relaxed);
    let entries: Vec<_> = (0..N).map(origin).collect();
    let vec_buffer = (N as usize * std::mem::size_of::<(Bytes, MessageOrigin)>()) as isize;
    // The ids' own bytes: kept alive by the table when they are slices of received messages.
    let payload = LIVE.load(Ordering::Relaxed) - base - vec_buffer;
    let table = Table::new(TableLimits::default());
    let before = LIVE.load(Ordering::Relaxed);
    for (id, o) in &entries {
        let change = Change::Insert(Entry::Message(id.clone(), Box::new(o.clone())));
        let _ = table.apply(std::slice::from_ref(&change), Millis(0));
    }
    let structure = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "correlate/bytes_per_entry (imdn Message-ID -> origin, {N} entries): table {} B/entry \
         + the ids' own bytes {} B/entry = {} B/entry",
        structure / N as isize,
        payload / N as isize,
        (structure + payload) / N as isize,
    );
    black_box((&table, &entries));
}

fn bench(c: &mut Criterion) {
    bytes_per_entry();

    let mut group = c.benchmark_group("correlate");
    let table = Table::new(TableLimits::default());
    let entries: Vec<_> = (0..10_000).map(origin).collect();
    group.throughput(Throughput::Elements(1));
    group.bench_function("insert_then_lookup/1_thread", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (id, o) = &entries[i % entries.len()];
            i += 1;
            let change = Change::Insert(Entry::Message(id.clone(), Box::new(o.clone())));
            let _ = table.apply(std::slice::from_ref(&change), Millis(1));
            black_box(table.view(Millis(2)).message(id));
        })
    });
    // Two threads on the same table (the node's two cores): each iteration is one insert and one
    // lookup on each thread, so the per-iteration time is for two operations pairs.
    group.throughput(Throughput::Elements(2));
    group.bench_function("insert_then_lookup/2_threads", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..2usize {
                    let (table, entries) = (&table, &entries);
                    s.spawn(move || {
                        for n in 0..iters as usize {
                            let (id, o) = &entries[(n * 2 + t) % entries.len()];
                            let change =
                                Change::Insert(Entry::Message(id.clone(), Box::new(o.clone())));
                            let _ = table.apply(std::slice::from_ref(&change), Millis(1));
                            black_box(table.view(Millis(2)).message(id));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
