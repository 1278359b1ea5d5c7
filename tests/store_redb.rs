//! The redb store: the common contract, reopening, and a SIGKILL crash test.

mod store_common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cpm_iwf::store::redb::{RedbOptions, RedbStore};
use cpm_iwf::store::{Limits, Store, unix_ms_now};
use store_common::*;

async fn open(path: &Path, limits: Limits) -> RedbStore {
    step(RedbStore::open(
        path.to_path_buf(),
        limits,
        RedbOptions::default(),
    ))
    .await
    .unwrap()
}

async fn fresh(limits: Limits) -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"), limits).await;
    (dir, store)
}

#[tokio::test]
async fn order_and_ack() {
    let (_d, s) = fresh(Limits::default()).await;
    check_order_and_ack(&s).await;
}

#[tokio::test]
async fn dedup_by_message_id() {
    let (_d, s) = fresh(Limits::default()).await;
    check_dedup(&s).await;
}

#[tokio::test]
async fn expiry() {
    let (_d, s) = fresh(Limits::default()).await;
    check_expiry(&s).await;
}

#[tokio::test]
async fn quotas_and_sizes() {
    let (_d, s) = fresh(small_limits()).await;
    check_quota(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_quota() {
    let (_d, s) = fresh(small_limits()).await;
    check_concurrent_quota(Arc::new(s)).await;
}

#[tokio::test]
async fn store_full() {
    let (_d, s) = fresh(Limits {
        max_total_bytes: 300,
        ..Limits::default()
    })
    .await;
    check_store_full(&s).await;
}

#[tokio::test]
async fn stats_and_users() {
    let (_d, s) = fresh(Limits::default()).await;
    check_stats(&s).await;
}

#[tokio::test]
async fn origin_mapping() {
    let (_d, s) = fresh(Limits::default()).await;
    check_origin(&s, unix_ms_now()).await;
    // Expired origins are not answered, and take_expired forgets them.
    let id = Bytes::from_static(b"short");
    step(s.put_origin(id.clone(), origin(), 1_000))
        .await
        .unwrap();
    assert_eq!(
        step(s.origin(id.clone(), 999)).await.unwrap(),
        Some(origin())
    );
    assert_eq!(step(s.origin(id.clone(), 1_001)).await.unwrap(), None);
    step(s.take_expired(1_001, 100)).await.unwrap();
    assert_eq!(step(s.origin(id.clone(), 0)).await.unwrap(), None);
}

#[tokio::test]
async fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/store.redb");
    let now = unix_ms_now();
    let last_seq = {
        let s = open(&path, Limits::default()).await;
        for i in 0..5 {
            step(s.put(msg(
                "sip:bob@x",
                Some(&format!("r{i}")),
                "x",
                10 + i,
                10_000,
            )))
            .await
            .unwrap();
        }
        step(s.put_origin(Bytes::from_static(b"r0"), origin(), now + 60_000))
            .await
            .unwrap();
        let p = step(s.pending(Bytes::from_static(b"sip:bob@x"), 0, 10))
            .await
            .unwrap();
        step(s.ack_delivered(p[0].key.clone())).await.unwrap();
        p[4].key.seq
    };
    let s = open(&path, Limits::default()).await;
    let p = step(s.pending(Bytes::from_static(b"sip:bob@x"), 0, 10))
        .await
        .unwrap();
    let ids: Vec<_> = p
        .iter()
        .map(|p| p.message.message_id.clone().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["r1", "r2", "r3", "r4"]
            .map(|s| Bytes::from_static(s.as_bytes()))
            .to_vec()
    );
    assert_eq!(
        step(s.origin(Bytes::from_static(b"r0"), now))
            .await
            .unwrap(),
        Some(origin())
    );
    let stats = step(s.stats(10)).await.unwrap();
    assert_eq!((stats.messages, stats.users), (4, 1));
    assert_eq!(stats.oldest_received_unix_ms, Some(11));
    // Sequence numbers go on growing after a reopen; dedup state survived.
    let r = step(s.put(msg("sip:bob@x", Some("r5"), "x", 1, 10_000)))
        .await
        .unwrap();
    assert!(r.key.seq > last_seq);
    assert!(
        step(s.put(msg("sip:bob@x", Some("r2"), "x", 1, 10_000)))
            .await
            .unwrap()
            .duplicate
    );
}

#[tokio::test]
async fn concurrent_puts_are_all_durable_and_ordered() {
    // Group commit: 8 writers at once; each one's messages stay in its order.
    let (dir, s) = fresh(Limits::default()).await;
    let s: Arc<dyn Store> = Arc::new(s);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                let r = step(s.put(msg(
                    &format!("sip:u{w}@x"),
                    Some(&format!("{i}")),
                    "x",
                    1,
                    10_000,
                )))
                .await
                .unwrap();
                seqs.push(r.key.seq);
            }
            seqs
        }));
    }
    for t in tasks {
        let seqs = step(t).await.unwrap();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]));
    }
    assert_eq!(step(s.stats(0)).await.unwrap().messages, 200);
    drop(s);
    let s = open(&dir.path().join("store.redb"), Limits::default()).await;
    assert_eq!(step(s.stats(0)).await.unwrap().messages, 200);
}

/// The crash test's child half: only runs when re-executed by `sigkill_loses_no_receipt`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = RedbStore::open(
            path.into(),
            Limits {
                max_user_messages: 100_000,
                ..Limits::default()
            },
            RedbOptions::default(),
        )
        .await
        .unwrap();
        child_puts(Arc::new(store)).await;
    });
}

#[tokio::test]
async fn sigkill_loses_no_receipt() {
    // Four rounds on the same file: each kills the writer at a random point, then checks.
    // Rounds 1 and 3 run the writer in the mode shared with readers.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut seen = Vec::new();
    for round in 0..4 {
        let env: &[(&str, &str)] = if round % 2 == 1 {
            &[("CPM_IWF_STORE_CRASH_SHARED", "1")]
        } else {
            &[]
        };
        let child = spawn_child("crash_child", path.to_str().unwrap(), false, env);
        let kill_after = random_ms(20, 400);
        let receipts = tokio::task::spawn_blocking(move || {
            run_and_kill(child, kill_after, |c| c.kill().unwrap())
        })
        .await
        .unwrap();
        seen.extend(receipts.iter().cloned());
        let store = open(
            &path,
            Limits {
                max_user_messages: 100_000,
                ..Limits::default()
            },
        )
        .await;
        let (printed, stored) = check_after_crash(&store, &seen, &receipts).await;
        eprintln!(
            "crash round {round}: killed after {kill_after} ms; {printed} receipts printed, {stored} messages stored"
        );
        drop(store);
    }
}

#[tokio::test]
async fn read_only_view_while_the_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.redb");
    let options = RedbOptions {
        share_with_readers: true,
        ..RedbOptions::default()
    };
    let s = step(RedbStore::open(path.clone(), Limits::default(), options))
        .await
        .unwrap();
    step(s.put(msg("sip:bob@x", Some("a"), "x", 5, 10_000)))
        .await
        .unwrap();
    let p2 = path.clone();
    let reader = tokio::task::spawn_blocking(move || cpm_iwf::store::redb::RedbReader::open(&p2))
        .await
        .unwrap()
        .unwrap();
    let stats = reader.stats(10).unwrap();
    assert_eq!((stats.messages, stats.users), (1, 1));
    // It follows the writer's later commits.
    step(s.put(msg("sip:bob@x", Some("b"), "x", 6, 10_000)))
        .await
        .unwrap();
    assert_eq!(
        reader
            .pending(Bytes::from_static(b"sip:bob@x"), 0, 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        reader.users_with_pending(None, 10).unwrap(),
        vec![Bytes::from_static(b"sip:bob@x")]
    );
}

#[tokio::test]
async fn read_only_view_refused_when_not_shared() {
    let (dir, _s) = fresh(Limits::default()).await;
    let path = dir.path().join("store.redb");
    let r = tokio::task::spawn_blocking(move || {
        cpm_iwf::store::redb::RedbReader::open(&path).map(|_| ())
    })
    .await
    .unwrap();
    assert!(r.is_err());
}
