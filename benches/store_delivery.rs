//! Store-and-forward through a real node on loopback (issue 7, BENCHMARKS.md "Store and
//! forward"): how fast pager MESSAGEs for unavailable users are taken (each stored durably
//! before its 202), and how fast they are delivered once the users are reachable.
//!
//! Phase 1: a CPM UA sends N MESSAGEs to U SIMPLE users, 32 transactions at a time; the SIMPLE
//! network answers 480; the node stores each (redb, fsync per group commit) and answers 202.
//! Phase 2: a node is started again on the same store with the SIMPLE UA answering 200: it
//! resumes every user at start (as on a registration) and delivers each user's queue in
//! order, one message at a time per user (stop-and-wait), up to 256 users at once.
//!
//! `cargo bench --bench store_delivery` (N=4000, U=200; `CPM_IWF_BENCH_REDIS_URL=redis://...`
//! for the Redis backend); under `cargo test` (no `--bench`) a smoke run of 40 messages checks
//! that the harness still works. Figures are printed, not asserted.

#[path = "../tests/peers/gateway.rs"]
mod gateway;
#[path = "../tests/peers/sip_ua.rs"]
mod sip_ua;

use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::Bed;
use rsip::Method;
use sip_ua::Transport;

const WINDOW: usize = 32;

fn cpim(from: &str, to: &str, id: &str) -> Bytes {
    Bytes::from(format!(
        "From: <{from}>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\n\
DateTime: 2026-11-25T10:00:00.000Z\r\nimdn.Disposition-Notification: positive-delivery\r\n\
\r\nContent-Type: text/plain\r\n\r\nstored message {id}"
    ))
}

async fn store_phase(bed: &mut Bed, n: usize, users: usize) -> Duration {
    let node_cpm = bed.node_cpm();
    let alice = bed.cpm.aor();
    let started = Instant::now();
    let (cpm, simple) = (&mut bed.cpm, &mut bed.simple);
    let sender = async {
        let mut sent = 0;
        while sent < n {
            let mut txs = Vec::new();
            for _ in 0..WINDOW.min(n - sent) {
                let user = format!("sip:u{}@simple.example.net", sent % users);
                let id = format!("B-{sent}");
                let msg = cpm
                    .new_message(&user, "message/cpim", cpim(&alice, &user, &id))
                    .expect("MESSAGE");
                txs.push(cpm.send_request(node_cpm, msg).await.expect("sent"));
                sent += 1;
            }
            for mut tx in txs {
                let r = cpm
                    .final_response(&mut tx, Some(Duration::from_secs(30)))
                    .await
                    .expect("answer");
                assert_eq!(r.status_code(), Some(202), "stored");
            }
        }
    };
    let refuser = async {
        for _ in 0..n {
            let tx = simple
                .recv_method(Method::Message, Some(Duration::from_secs(30)))
                .await
                .expect("MESSAGE");
            simple
                .respond(&tx, 480, "Temporarily Unavailable", &[], None)
                .await
                .expect("480");
        }
    };
    tokio::join!(sender, refuser);
    started.elapsed()
}

async fn deliver_phase(bed: &mut Bed, n: usize) -> Duration {
    let mut started = None;
    for _ in 0..n {
        let tx = bed
            .simple
            .recv_method(Method::Message, Some(Duration::from_secs(60)))
            .await
            .expect("delivered");
        started.get_or_insert_with(Instant::now);
        bed.simple
            .respond(&tx, 200, "OK", &[], None)
            .await
            .expect("200");
    }
    started.map(|s| s.elapsed()).unwrap_or_default()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, users) = if full { (4_000, 200) } else { (40, 4) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        // CPM_IWF_BENCH_REDIS_URL: a Redis/Valkey (AOF, fsync always) with an empty database.
        let location = std::env::var("CPM_IWF_BENCH_REDIS_URL")
            .unwrap_or_else(|_| dir.path().join("bench.redb").display().to_string());
        let backend = if location.starts_with("redis") {
            "Redis"
        } else {
            "redb"
        };
        let tweak = |retry_ms: u64| {
            let location = location.clone();
            move |c: &mut cpm_iwf::config::Config| {
                c.store.location = Some(location);
                c.availability.retry_initial_ms = retry_ms;
                c.availability.retry_max_ms = retry_ms;
                c.store.max_user_messages = 100_000;
            }
        };
        let mut bed = Bed::start_with(Transport::Udp, tweak(600_000)).await;
        let stored = store_phase(&mut bed, n, users).await;
        bed.stop().await;
        let mut bed = Bed::start_with(Transport::Udp, tweak(600_000)).await;
        let delivered = deliver_phase(&mut bed, n).await;
        bed.stop().await;
        let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        println!(
            "store_delivery: {n} messages to {users} users over UDP ({backend}, durable commits)\n\
             stored (480 -> put -> 202):      {:>8.0} messages/s ({:.2} s)\n\
             delivered on availability (200): {:>8.0} messages/s ({:.2} s)",
            rate(stored),
            stored.as_secs_f64(),
            rate(delivered),
            delivered.as_secs_f64()
        );
    });
}
