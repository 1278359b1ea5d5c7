//! The Redis store against a `redis-server` each test starts for itself on a free loopback port
//! with its own directory (AOF on, `appendfsync always`). `#[ignore]`d: run with
//! `cargo test --test store_redis -- --ignored`. They fail, not skip, when redis-server is
//! missing.

#[path = "peers/redis_server.rs"]
mod redis_server;
mod store_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cpm_iwf::store::redis::{RedisOptions, RedisStore};
use cpm_iwf::store::{Limits, Store, StoreError, unix_ms_now};
use redis_server::RedisServer;
use store_common::*;

static PREFIX: AtomicUsize = AtomicUsize::new(0);

/// A store on `server` with a prefix of its own (tests share nothing).
async fn store(server: &RedisServer, limits: Limits) -> RedisStore {
    let n = PREFIX.fetch_add(1, Ordering::Relaxed);
    let options = RedisOptions {
        prefix: format!("t{n}:"),
        ..RedisOptions::default()
    };
    step(RedisStore::open(&server.url(), limits, options))
        .await
        .unwrap()
}

fn server() -> (tempfile::TempDir, RedisServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), "always");
    (dir, server)
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn contract() {
    let (_d, server) = server();
    check_order_and_ack(&store(&server, Limits::default()).await).await;
    check_dedup(&store(&server, Limits::default()).await).await;
    check_expiry(&store(&server, Limits::default()).await).await;
    check_quota(&store(&server, small_limits()).await).await;
    check_store_full(
        &store(
            &server,
            Limits {
                max_total_bytes: 300,
                ..Limits::default()
            },
        )
        .await,
    )
    .await;
    check_stats(&store(&server, Limits::default()).await).await;
    check_concurrent_quota(Arc::new(store(&server, small_limits()).await)).await;
    check_origin(&store(&server, Limits::default()).await, unix_ms_now()).await;
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn origin_expires_by_redis_clock() {
    let (_d, server) = server();
    let s = store(&server, Limits::default()).await;
    let id = bytes::Bytes::from_static(b"soon");
    step(s.put_origin(id.clone(), origin(), unix_ms_now() + 200))
        .await
        .unwrap();
    assert_eq!(step(s.origin(id.clone(), 0)).await.unwrap(), Some(origin()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(step(s.origin(id, 0)).await.unwrap(), None);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn refuses_a_server_that_is_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), "everysec");
    let err = step(RedisStore::open(
        &server.url(),
        Limits::default(),
        RedisOptions::default(),
    ))
    .await
    .err()
    .unwrap();
    assert!(matches!(err, StoreError::NotDurable(_)), "{err:?}");
    // An operator may accept it knowingly.
    let options = RedisOptions {
        require_durable: false,
        ..RedisOptions::default()
    };
    assert!(
        step(RedisStore::open(&server.url(), Limits::default(), options))
            .await
            .is_ok()
    );
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn server_down_is_unavailable_not_a_hang() {
    let (_d, server) = server();
    let s = store(&server, Limits::default()).await;
    drop(server);
    let err = step(s.put(msg("sip:bob@x", Some("m"), "x", 1, 10_000)))
        .await
        .unwrap_err();
    assert_eq!(err.sip_status(), 503, "{err:?}");
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn everything_survives_a_server_crash() {
    let (_d, server) = server();
    let options = RedisOptions {
        prefix: "crash:".into(),
        ..RedisOptions::default()
    };
    let s = step(RedisStore::open(
        &server.url(),
        Limits::default(),
        options.clone(),
    ))
    .await
    .unwrap();
    for i in 0..20 {
        step(s.put(msg("sip:bob@x", Some(&format!("m{i}")), "x", i, 10_000)))
            .await
            .unwrap();
    }
    step(s.put_origin(
        bytes::Bytes::from_static(b"m0"),
        origin(),
        unix_ms_now() + 600_000,
    ))
    .await
    .unwrap();
    let p = step(s.pending(bytes::Bytes::from_static(b"sip:bob@x"), 0, 1))
        .await
        .unwrap();
    assert!(step(s.ack_delivered(p[0].key.clone())).await.unwrap());
    drop(s);
    let server = server.crash_and_restart();
    let s = step(RedisStore::open(&server.url(), Limits::default(), options))
        .await
        .unwrap();
    let p = step(s.pending(bytes::Bytes::from_static(b"sip:bob@x"), 0, 100))
        .await
        .unwrap();
    assert_eq!(p.len(), 19);
    assert_eq!(p[0].message.message_id.as_deref(), Some(&b"m1"[..]));
    assert_eq!(
        step(s.origin(bytes::Bytes::from_static(b"m0"), 0))
            .await
            .unwrap(),
        Some(origin())
    );
    let stats = step(s.stats(10)).await.unwrap();
    assert_eq!((stats.messages, stats.users), (19, 1));
}

/// The crash test's child half: only runs when re-executed by `sigkill_loses_no_receipt`.
#[test]
#[ignore = "child of sigkill_loses_no_receipt"]
fn crash_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let options = RedisOptions {
            prefix: "crash:".into(),
            ..RedisOptions::default()
        };
        let limits = Limits {
            max_user_messages: 100_000,
            ..Limits::default()
        };
        let store = RedisStore::open(&url, limits, options).await.unwrap();
        child_puts(Arc::new(store)).await;
    });
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn sigkill_loses_no_receipt() {
    // Each round: the child puts with 4 writers; at a random point redis-server is SIGKILLed
    // (then the child), redis-server restarts from its AOF: every printed receipt is there.
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start(dir.path(), "always");
    let mut seen = Vec::new();
    for round in 0..3 {
        let child = spawn_child("crash_child", &server.url(), true, &[]);
        let kill_after = random_ms(20, 400);
        let receipts = tokio::task::spawn_blocking(move || {
            let mut server = server;
            let receipts = run_and_kill(child, kill_after, |c| {
                let _ = server.child.kill();
                let _ = server.child.wait();
                c.kill().unwrap();
            });
            (receipts, server.crash_and_restart())
        })
        .await
        .unwrap();
        let (receipts, restarted) = receipts;
        server = restarted;
        seen.extend(receipts.iter().cloned());
        let options = RedisOptions {
            prefix: "crash:".into(),
            ..RedisOptions::default()
        };
        let limits = Limits {
            max_user_messages: 100_000,
            ..Limits::default()
        };
        let store = step(RedisStore::open(&server.url(), limits, options))
            .await
            .unwrap();
        let (printed, stored) = check_after_crash(&store, &seen, &receipts).await;
        eprintln!(
            "redis crash round {round}: killed after {kill_after} ms; {printed} receipts printed, {stored} messages stored"
        );
    }
}
