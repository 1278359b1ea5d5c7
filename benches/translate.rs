//! criterion benchmarks of the translator: a CPM pager MESSAGE (already parsed, and parse +
//! translate + serialize), and an MSRP chat SEND (CPIM + text) relayed to the other leg.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};

use cpm_iwf::correlate::{Millis, Table, TableLimits};
use cpm_iwf::mapping::Mappings;
use cpm_iwf::translate::chat::{ChatLeg, ChatParties, chat_send};
use cpm_iwf::translate::conversation::IdSource;
use cpm_iwf::translate::state::{Device, Side};
use cpm_iwf::translate::{Env, pager};
use cpm_iwf::wire::msrp::{self, MsrpUri};
use cpm_iwf::wire::sip::{Limits, parse_datagram};

/// Counts allocations, so that the bench can say how many one translation makes.
struct CountingAlloc;
static ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The allocator the node runs on (src/main.rs): jemalloc with the `jemalloc` feature (the
/// default), else the system's. The translation's allocations and frees are measured on it.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
const UNDER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(not(all(feature = "jemalloc", target_os = "linux")))]
const UNDER: std::alloc::System = std::alloc::System;

// SAFETY: forwards to the node's allocator unchanged; only counts calls.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { UNDER.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { UNDER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { UNDER.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations (and reallocations) `f` makes.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
    let out = f();
    let after = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
    (after - before, out)
}

/// A counter rendered as 32 hex digits: ids cost one small allocation each (written by hand:
/// `format!("{:032x}")` pads one `char` at a time and grows its `String` twice, 3 allocations
/// and ~75 ns an id, which would measure `fmt` rather than the translator).
struct Counter(u64);
impl Counter {
    fn next_hex(&mut self) -> [u8; 32] {
        self.0 += 1;
        let mut hex = [b'0'; 32];
        let mut n = self.0;
        for slot in hex.iter_mut().rev() {
            *slot = b"0123456789abcdef"[(n & 15) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        hex
    }
}

impl IdSource for Counter {
    fn fresh_id(&mut self) -> Bytes {
        Bytes::copy_from_slice(&self.next_hex())
    }

    /// In place, as the node's `RandomIds` writes them.
    fn fresh_id_into(&mut self, out: &mut String) {
        if let Some(hex) = cpm_iwf::wire::text::ascii_str(&self.next_hex()) {
            out.push_str(hex);
        }
    }
}

const PAGER: &[u8] = include_bytes!("../tests/vectors/sip/cpm-pager-message.txt");

/// A SIMPLE IM pager MESSAGE with bare text (conformance case p014), for the other direction
/// (`CPM_IWF_PAGER_VECTOR=simple`).
const SIMPLE_PAGER: &str = "MESSAGE sip:alice@cpm.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-s2\r\n\
Max-Forwards: 70\r\n\
From: \"Bob\" <sip:bob@simple.example.net>;tag=b2\r\n\
To: <sip:alice@cpm.example.net>\r\n\
Call-ID: simple-text-1\r\n\
CSeq: 1 MESSAGE\r\n\
Contact: <sip:bob@203.0.113.5:5060>;+g.oma.sip-im\r\n\
Accept-Contact: *;+g.oma.sip-im\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\
Content-Length: 24\r\n\
\r\n\
Hi Alice, from SIMPLE IM";

const CHAT_SEND: &str = "MSRP tx000002 SEND\r\n\
To-Path: msrp://127.0.0.1:2855/gw-in;tcp\r\n\
From-Path: msrp://192.0.2.10:9/s111271x;tcp\r\n\
Message-ID: chat-0001\r\n\
Byte-Range: 1-*/*\r\n\
Content-Type: message/cpim\r\n\
\r\n\
From: <sip:+15557654321@ims.example.net>\r\n\
To: <sip:+15551234567@ims.example.net>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: Chat-Msg-1\r\n\
DateTime: 2026-11-25T10:02:00Z\r\n\
imdn.Disposition-Notification: positive-delivery, display\r\n\
\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\
\r\n\
Hello Bob, this is a chat message of ordinary length from the CPM side.\r\n\
-------tx000002$\r\n";

fn bench(c: &mut Criterion) {
    let mappings = Mappings::embedded().expect("mappings");
    let table = Table::new(TableLimits::default());
    let limits = Limits::default();
    let mut ids = Counter(0);
    let parsed = parse_datagram(Bytes::from_static(PAGER), &limits).expect("vector");

    {
        let mut env = Env {
            now: Millis(0),
            ids: &mut ids,
            datetime: "2026-11-25T10:00:05.000Z",
        };
        // One translation first: the thread's scratch buffer (`wire::frozen::Scratch`) is
        // allocated once, on its first use; what is counted is a translation after it.
        drop(pager::message_request(
            &parsed,
            Side::Cpm,
            &table.view(Millis(0)),
            &mappings,
            &mut env,
        ));
        let (n, out) = allocations(|| {
            pager::message_request(
                &parsed,
                Side::Cpm,
                &table.view(Millis(0)),
                &mappings,
                &mut env,
            )
        });
        drop(out);
        // The From tag and the Call-ID are written in place (`IdSource::fresh_id_into`).
        eprintln!("translate/pager_cpm_to_simple/parsed: {n} allocations per translation");
    }

    let mut group = c.benchmark_group("translate");
    group.bench_function("pager_cpm_to_simple/parsed", |b| {
        b.iter(|| {
            let mut env = Env {
                now: Millis(0),
                ids: &mut ids,
                datetime: "2026-11-25T10:00:05.000Z",
            };
            let out = pager::message_request(
                black_box(&parsed),
                Side::Cpm,
                &table.view(Millis(0)),
                &mappings,
                &mut env,
            );
            black_box(out)
        })
    });
    group.bench_function("pager_cpm_to_simple/parse_translate_serialize", |b| {
        b.iter(|| {
            let msg =
                parse_datagram(Bytes::from_static(black_box(PAGER)), &limits).expect("vector");
            let mut env = Env {
                now: Millis(0),
                ids: &mut ids,
                datetime: "2026-11-25T10:00:05.000Z",
            };
            let out = pager::message_request(
                &msg,
                Side::Cpm,
                &table.view(Millis(0)),
                &mappings,
                &mut env,
            )
            .expect("translates");
            black_box(out.send.first().map(|(_, m)| m.serialize()))
        })
    });

    let (send, leg, parties) = chat_vector();
    group.bench_function("chat_send_cpim_text/parsed", |b| {
        b.iter(|| {
            let mut env = Env {
                now: Millis(0),
                ids: &mut ids,
                datetime: "2026-11-25T10:00:05.000Z",
            };
            black_box(chat_send(
                black_box(&send),
                Side::Cpm,
                &leg,
                &parties,
                &mappings,
                &mut env,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);

/// `CPM_IWF_PAGER_ITERS=N`: translate the parsed pager MESSAGE N times and exit, for
/// `perf stat -e instructions:u` or callgrind (a count the other loads of a shared machine do
/// not change; run with 0 too and subtract the setup). `CPM_IWF_PAGER_VECTOR=simple`: the
/// SIMPLE IM MESSAGE of [`SIMPLE_PAGER`] instead, translated for the CPM side;
/// `CPM_IWF_PAGER_VECTOR=chat`: the MSRP SEND of [`CHAT_SEND`] relayed by `chat_send` (the
/// `chat_send_cpim_text/parsed` bench).
fn pager_iterations(n: u64) {
    let mappings = Mappings::embedded().expect("mappings");
    let table = Table::new(TableLimits::default());
    let vector = std::env::var("CPM_IWF_PAGER_VECTOR").unwrap_or_default();
    if vector == "chat" {
        chat_iterations(n, &mappings);
        return;
    }
    let simple = vector == "simple";
    let (vector, from) = match simple {
        true => (SIMPLE_PAGER.as_bytes(), Side::Simple),
        false => (PAGER, Side::Cpm),
    };
    let parsed = parse_datagram(Bytes::from_static(vector), &Limits::default()).expect("vector");
    let mut ids = Counter(0);
    for _ in 0..n {
        let mut env = Env {
            now: Millis(0),
            ids: &mut ids,
            datetime: "2026-11-25T10:00:05.000Z",
        };
        let out = pager::message_request(
            black_box(&parsed),
            from,
            &table.view(Millis(0)),
            &mappings,
            &mut env,
        );
        black_box(out).expect("translates");
    }
}

/// [`CHAT_SEND`] parsed, and the leg and parties its session gives it.
fn chat_vector() -> (msrp::Message, ChatLeg, ChatParties) {
    let send = msrp::parse(
        Bytes::from_static(CHAT_SEND.as_bytes()),
        &msrp::Limits::default(),
    )
    .expect("chat SEND");
    let leg = ChatLeg {
        local: MsrpUri::parse_str("msrp://127.0.0.1:2856/gw-out;tcp").expect("uri"),
        remote_path: vec![MsrpUri::parse_str("msrp://203.0.113.5:7394/bobsess;tcp").expect("uri")],
    };
    let parties = ChatParties {
        sender: Device {
            aor: Bytes::from_static(b"sip:+15557654321@ims.example.net"),
            gruu: None,
            instance: None,
        },
        recipient: Bytes::from_static(b"sip:+15551234567@ims.example.net"),
        conversation: None,
    };
    (send, leg, parties)
}

/// `chat_send` of [`CHAT_SEND`] `n` times (see [`pager_iterations`]).
fn chat_iterations(n: u64, mappings: &Mappings) {
    let (send, leg, parties) = chat_vector();
    let mut ids = Counter(0);
    for _ in 0..n {
        let mut env = Env {
            now: Millis(0),
            ids: &mut ids,
            datetime: "2026-11-25T10:00:05.000Z",
        };
        let out = chat_send(
            black_box(&send),
            Side::Cpm,
            &leg,
            &parties,
            mappings,
            &mut env,
        );
        black_box(out).expect("relays");
    }
}

fn main() {
    if let Some(n) = std::env::var("CPM_IWF_PAGER_ITERS")
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
