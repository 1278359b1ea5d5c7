//! What every `Store` backend must do, checked the same way for redb and Redis, and the crash
//! test's child and parent halves.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cpm_iwf::store::{Kind, Limits, MessageKey, Store, StoreError, StoredMessage};
use cpm_iwf::translate::state::{Device, MessageOrigin, Side};

/// Every await on a store in these tests is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

pub async fn step<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .expect("store step timed out")
}

pub fn msg(
    recipient: &str,
    id: Option<&str>,
    payload: &str,
    received: u64,
    expires: u64,
) -> StoredMessage {
    StoredMessage {
        recipient: Bytes::copy_from_slice(recipient.as_bytes()),
        to_side: Side::Simple,
        kind: Kind::Pager,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        message_id: id.map(|s| Bytes::copy_from_slice(s.as_bytes())),
        conversation_id: Some(Bytes::from_static(b"conv-1")),
        contribution_id: Some(Bytes::from_static(b"contrib-1")),
        date_time: Some(Bytes::from_static(b"2026-11-25T13:00:00Z")),
        received_at_unix_ms: received,
        expires_at_unix_ms: expires,
        sender: Device {
            aor: Bytes::from_static(b"sip:alice@cpm.example"),
            gruu: Some(Bytes::from_static(b"sip:alice@cpm.example;gr=urn:uuid:a")),
            instance: Some(Bytes::from_static(b"urn:uuid:a")),
        },
    }
}

pub fn small_limits() -> Limits {
    Limits {
        max_payload_bytes: 100,
        max_field_bytes: 64,
        max_user_messages: 3,
        max_user_bytes: 100_000,
        max_total_bytes: 1_000_000,
    }
}

/// Order, paging, ack (idempotent), and the fields kept.
pub async fn check_order_and_ack(store: &dyn Store) {
    let bob = Bytes::from_static(b"sip:bob@simple.example");
    let mut keys = Vec::new();
    for i in 0..10 {
        let m = msg(
            "sip:bob@simple.example",
            Some(&format!("m{i}")),
            &format!("body {i}"),
            100 + i,
            10_000,
        );
        let r = step(store.put(m)).await.unwrap();
        assert!(!r.duplicate);
        keys.push(r.key);
    }
    // Another recipient in between does not disturb bob's order.
    step(store.put(msg("sip:carol@simple.example", Some("c0"), "c", 1, 10_000)))
        .await
        .unwrap();
    let all = step(store.pending(bob.clone(), 0, 100)).await.unwrap();
    assert_eq!(all.len(), 10);
    for (i, p) in all.iter().enumerate() {
        assert_eq!(p.key, keys[i]);
        assert_eq!(
            p.message,
            msg(
                "sip:bob@simple.example",
                Some(&format!("m{i}")),
                &format!("body {i}"),
                100 + i as u64,
                10_000
            )
        );
    }
    assert!(all.windows(2).all(|w| w[0].key.seq < w[1].key.seq));
    // Paging by `after`.
    let page = step(store.pending(bob.clone(), keys[3].seq, 2))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|p| p.key.clone()).collect::<Vec<_>>(),
        vec![keys[4].clone(), keys[5].clone()]
    );
    // Ack removes, twice is fine, unknown is fine.
    assert!(step(store.ack_delivered(keys[0].clone())).await.unwrap());
    assert!(!step(store.ack_delivered(keys[0].clone())).await.unwrap());
    assert!(
        !step(store.ack_delivered(MessageKey {
            recipient: bob.clone(),
            seq: 999_999
        }))
        .await
        .unwrap()
    );
    let left = step(store.pending(bob.clone(), 0, 100)).await.unwrap();
    assert_eq!(left.len(), 9);
    assert_eq!(left[0].key, keys[1]);
    assert!(
        step(store.pending(Bytes::from_static(b"sip:nobody@x"), 0, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A second put with the same recipient and Message-ID is the first; after its ack it is new.
pub async fn check_dedup(store: &dyn Store) {
    let a = step(store.put(msg("sip:bob@x", Some("same"), "one", 1, 10_000)))
        .await
        .unwrap();
    let b = step(store.put(msg("sip:bob@x", Some("same"), "one again", 2, 10_000)))
        .await
        .unwrap();
    assert!(!a.duplicate);
    assert!(b.duplicate);
    assert_eq!(a.key, b.key);
    // The same Message-ID to another recipient is another message.
    let c = step(store.put(msg("sip:carol@x", Some("same"), "one", 1, 10_000)))
        .await
        .unwrap();
    assert!(!c.duplicate);
    // Messages without Message-ID are never merged.
    let d = step(store.put(msg("sip:bob@x", None, "n", 1, 10_000)))
        .await
        .unwrap();
    let e = step(store.put(msg("sip:bob@x", None, "n", 1, 10_000)))
        .await
        .unwrap();
    assert_ne!(d.key, e.key);
    let bob = step(store.pending(Bytes::from_static(b"sip:bob@x"), 0, 10))
        .await
        .unwrap();
    assert_eq!(bob.len(), 3);
    assert_eq!(bob[0].message.payload, Bytes::from_static(b"one"));
    assert!(step(store.ack_delivered(a.key.clone())).await.unwrap());
    let f = step(store.put(msg("sip:bob@x", Some("same"), "one", 1, 10_000)))
        .await
        .unwrap();
    assert!(!f.duplicate);
    assert!(f.key.seq > e.key.seq);
}

/// take_expired returns what is due, once, and leaves the rest.
pub async fn check_expiry(store: &dyn Store) {
    for (i, exp) in [(0u64, 500u64), (1, 1000), (2, 1500), (3, 5000)] {
        step(store.put(msg("sip:bob@x", Some(&format!("e{i}")), "x", 1, exp)))
            .await
            .unwrap();
    }
    step(store.put(msg("sip:carol@x", Some("c"), "x", 1, 900)))
        .await
        .unwrap();
    assert!(step(store.take_expired(499, 100)).await.unwrap().is_empty());
    let due = step(store.take_expired(1000, 100)).await.unwrap();
    let mut ids: Vec<_> = due
        .iter()
        .map(|p| p.message.message_id.clone().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            Bytes::from_static(b"c"),
            Bytes::from_static(b"e0"),
            Bytes::from_static(b"e1")
        ]
    );
    assert!(
        step(store.take_expired(1000, 100))
            .await
            .unwrap()
            .is_empty()
    );
    // Bounded by limit.
    let one = step(store.take_expired(10_000, 1)).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].message.message_id, Some(Bytes::from_static(b"e2")));
    let left = step(store.pending(Bytes::from_static(b"sip:bob@x"), 0, 10))
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message.message_id, Some(Bytes::from_static(b"e3")));
    // An expired message can be acked late without harm.
    assert!(!step(store.ack_delivered(one[0].key.clone())).await.unwrap());
    let stats = step(store.stats(10)).await.unwrap();
    assert_eq!((stats.messages, stats.users), (1, 1));
}

/// Quotas and sizes refuse with typed errors and store nothing (opened with small_limits()).
pub async fn check_quota(store: &dyn Store) {
    for i in 0..3 {
        step(store.put(msg("sip:bob@x", Some(&format!("q{i}")), "x", 1, 10_000)))
            .await
            .unwrap();
    }
    let err = step(store.put(msg("sip:bob@x", Some("q3"), "x", 1, 10_000)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UserQuota { messages: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.sip_status(), 480);
    // A duplicate of a stored one is still answered (not a quota error).
    assert!(
        step(store.put(msg("sip:bob@x", Some("q0"), "x", 1, 10_000)))
            .await
            .unwrap()
            .duplicate
    );
    // Other users are not affected.
    step(store.put(msg("sip:carol@x", Some("q3"), "x", 1, 10_000)))
        .await
        .unwrap();
    let big = "y".repeat(101);
    let err = step(store.put(msg("sip:dave@x", Some("big"), &big, 1, 10_000)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::PayloadTooLarge { len: 101, max: 100 }),
        "{err:?}"
    );
    assert_eq!(err.sip_status(), 513);
    let long = "z".repeat(65);
    let err = step(store.put(msg("sip:dave@x", Some(&long), "x", 1, 10_000)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadField { .. }), "{err:?}");
    assert!(
        step(store.pending(Bytes::from_static(b"sip:dave@x"), 0, 10))
            .await
            .unwrap()
            .is_empty()
    );
    // After an ack there is room again.
    let first = step(store.pending(Bytes::from_static(b"sip:bob@x"), 0, 1))
        .await
        .unwrap();
    assert!(
        step(store.ack_delivered(first[0].key.clone()))
            .await
            .unwrap()
    );
    step(store.put(msg("sip:bob@x", Some("q3"), "x", 1, 10_000)))
        .await
        .unwrap();
}

/// The total-bytes cap is 503 (opened with a tiny max_total_bytes).
pub async fn check_store_full(store: &dyn Store) {
    step(store.put(msg("sip:bob@x", Some("f0"), "x", 1, 10_000)))
        .await
        .unwrap();
    let err = step(store.put(msg("sip:carol@x", Some("f1"), "x", 1, 10_000)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StoreFull { .. }), "{err:?}");
    assert_eq!(err.sip_status(), 503);
}

/// Depth per user, oldest age, totals, and the users cursor.
pub async fn check_stats(store: &dyn Store) {
    let empty = step(store.stats(10)).await.unwrap();
    assert_eq!((empty.messages, empty.bytes, empty.users), (0, 0, 0));
    assert_eq!(empty.oldest_received_unix_ms, None);
    for (user, n, first) in [
        ("sip:a@x", 2u64, 500u64),
        ("sip:b@x", 1, 300),
        ("sip:c@x", 3, 700),
    ] {
        for i in 0..n {
            step(store.put(msg(
                user,
                Some(&format!("{user}-{i}")),
                "payload",
                first + i,
                10_000,
            )))
            .await
            .unwrap();
        }
    }
    let s = step(store.stats(2)).await.unwrap();
    assert_eq!((s.messages, s.users), (6, 3));
    assert!(s.bytes > 6 * 7);
    assert_eq!(s.per_user.len(), 2);
    assert_eq!(s.per_user[0].recipient, Bytes::from_static(b"sip:a@x"));
    assert_eq!(s.per_user[0].messages, 2);
    assert_eq!(s.per_user[0].oldest_received_unix_ms, Some(500));
    assert_eq!(s.per_user[1].oldest_received_unix_ms, Some(300));
    assert_eq!(s.oldest_received_unix_ms, Some(300));
    let full = step(store.stats(10)).await.unwrap();
    assert_eq!(
        full.per_user.iter().map(|u| u.bytes).sum::<u64>(),
        full.bytes
    );
    let page1 = step(store.users_with_pending(None, 2)).await.unwrap();
    assert_eq!(
        page1,
        vec![
            Bytes::from_static(b"sip:a@x"),
            Bytes::from_static(b"sip:b@x")
        ]
    );
    let page2 = step(store.users_with_pending(page1.last().cloned(), 2))
        .await
        .unwrap();
    assert_eq!(page2, vec![Bytes::from_static(b"sip:c@x")]);
    // A user whose queue empties is no longer listed.
    let b = step(store.pending(Bytes::from_static(b"sip:b@x"), 0, 10))
        .await
        .unwrap();
    step(store.ack_delivered(b[0].key.clone())).await.unwrap();
    let users = step(store.users_with_pending(None, 10)).await.unwrap();
    assert_eq!(
        users,
        vec![
            Bytes::from_static(b"sip:a@x"),
            Bytes::from_static(b"sip:c@x")
        ]
    );
    let s = step(store.stats(10)).await.unwrap();
    assert_eq!((s.messages, s.users), (5, 2));
    assert_eq!(s.oldest_received_unix_ms, Some(500));
}

pub fn origin() -> MessageOrigin {
    MessageOrigin {
        side: Side::Cpm,
        device: msg("sip:b@x", None, "", 0, 0).sender,
        recipient: Bytes::from_static(b"sip:bob@simple.example"),
        conversation: None,
    }
}

/// Message-ID -> origin device, with expiry (times in unix ms near now, because Redis expires
/// by its own clock).
pub async fn check_origin(store: &dyn Store, now: u64) {
    let id = Bytes::from_static(b"imdn-id-1");
    assert_eq!(step(store.origin(id.clone(), now)).await.unwrap(), None);
    step(store.put_origin(id.clone(), origin(), now + 60_000))
        .await
        .unwrap();
    assert_eq!(
        step(store.origin(id.clone(), now)).await.unwrap(),
        Some(origin())
    );
    // Refreshed with a new origin: the new one answers.
    let mut other = origin();
    other.side = Side::Simple;
    step(store.put_origin(id.clone(), other.clone(), now + 120_000))
        .await
        .unwrap();
    assert_eq!(
        step(store.origin(id.clone(), now)).await.unwrap(),
        Some(other)
    );
    assert!(
        step(store.put_origin(Bytes::new(), origin(), now + 1))
            .await
            .is_err()
    );
}

// ---- crash test -------------------------------------------------------------------------

pub const CHILD_ENV: &str = "CPM_IWF_STORE_CRASH_CHILD";
pub const WORKERS: usize = 4;
pub const CHILD_MAX_PUTS: usize = 5000;

pub fn worker_recipient(w: usize) -> String {
    format!("sip:crash-{w}@simple.example")
}

/// The child: WORKERS concurrent writers put messages and print one line per receipt
/// (`RECEIPT worker seq message-id END`) only after `put` returned, until killed or done.
pub async fn child_puts(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..CHILD_MAX_PUTS / WORKERS {
                let id = format!("w{w}-{i}");
                let m = msg(
                    &worker_recipient(w),
                    Some(&id),
                    &format!("payload {id}"),
                    1,
                    u64::MAX / 2,
                );
                let Ok(r) = store.put(m).await else { return };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "RECEIPT {w} {} {id} END", r.key.seq);
                let _ = out.flush();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A pseudo-random delay in `lo..hi` ms (the clock and pid through a 64-bit mix: no rand
/// crate). Printed by the tests, so a failing point can be told.
pub fn random_ms(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    lo + x % (hi - lo).max(1)
}

/// Starts this test binary again as the child (`test_name`, env `CHILD_ENV=location`).
pub fn spawn_child(test_name: &str, location: &str, ignored: bool, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"]);
    if ignored {
        cmd.arg("--include-ignored");
    }
    cmd.envs(env.iter().copied());
    cmd.env(CHILD_ENV, location)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

/// Reads the child's receipts until `kill_after` ms after the first one (or its end), then
/// calls `kill`; returns every receipt line read, including those in the pipe at the kill.
pub fn run_and_kill(
    mut child: Child,
    kill_after: u64,
    kill: impl FnOnce(&mut Child),
) -> Vec<(usize, u64, String)> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std_mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "child never got going"
        );
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                if line.starts_with("RECEIPT ") {
                    first.get_or_insert_with(Instant::now);
                    lines.push(line);
                }
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
        }
        if first.is_some_and(|f| f.elapsed() >= Duration::from_millis(kill_after)) {
            break;
        }
    }
    kill(&mut child);
    let _ = child.wait();
    // What was written before the kill is still in the pipe: drain it (bounded: EOF now).
    reader.join().unwrap();
    while let Ok(line) = rx.try_recv() {
        if line.starts_with("RECEIPT ") {
            lines.push(line);
        }
    }
    lines
        .iter()
        .filter_map(|l| {
            let mut it = l.split(' ').skip(1);
            // A line cut by the kill lacks its END: it is not a receipt.
            let w = it.next()?.parse().ok()?;
            let seq = it.next()?.parse().ok()?;
            let id = it.next()?.to_string();
            (it.next()? == "END").then_some((w, seq, id))
        })
        .collect()
}

/// After the crash: every printed receipt is in the store, in order, nothing twice; and a
/// retransmission of an acknowledged message is recognised as a duplicate.
///
/// `round` is what the last child printed (each child puts the same Message-IDs again, from
/// the first: those already stored come back as duplicates with their first sequence number);
/// `receipts` is everything printed by every child so far.
pub async fn check_after_crash(
    store: &dyn Store,
    receipts: &[(usize, u64, String)],
    round: &[(usize, u64, String)],
) -> (usize, usize) {
    assert!(
        !round.is_empty(),
        "the child printed no receipt before the kill"
    );
    let mut stored_total = 0;
    for w in 0..WORKERS {
        let rec = Bytes::from(worker_recipient(w));
        let stored = step(store.pending(rec.clone(), 0, CHILD_MAX_PUTS + 10))
            .await
            .unwrap();
        stored_total += stored.len();
        // In order, nothing twice.
        assert!(stored.windows(2).all(|p| p[0].key.seq < p[1].key.seq));
        let mut ids: Vec<_> = stored
            .iter()
            .map(|p| p.message.message_id.clone().unwrap())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a message stored twice");
        // Every printed receipt is there with its sequence number, and they were printed in
        // the order of their sequence numbers.
        let in_round: Vec<_> = round.iter().filter(|r| r.0 == w).collect();
        assert!(in_round.windows(2).all(|p| p[0].1 < p[1].1));
        let mine: Vec<_> = receipts.iter().filter(|r| r.0 == w).collect();
        for (_, seq, id) in &mine {
            let found = stored
                .iter()
                .find(|p| p.key.seq == *seq)
                .unwrap_or_else(|| panic!("receipt {seq} {id} lost"));
            assert_eq!(found.message.message_id.as_deref(), Some(id.as_bytes()));
            assert_eq!(found.message.payload, Bytes::from(format!("payload {id}")));
        }
        // The worker's messages were put in order i = 0, 1, ...: stored ones form a prefix.
        for (i, p) in stored.iter().enumerate() {
            assert_eq!(
                p.message.message_id.as_deref(),
                Some(format!("w{w}-{i}").as_bytes())
            );
        }
        if let Some((_, seq, id)) = mine.last() {
            let again = step(store.put(msg(
                &worker_recipient(w),
                Some(id),
                "again",
                1,
                u64::MAX / 2,
            )))
            .await
            .unwrap();
            assert!(again.duplicate);
            assert_eq!(again.key.seq, *seq);
        }
    }
    (round.len(), stored_total)
}

/// Concurrent puts against one quota (small_limits: 3 per user): exactly 3 are stored, the
/// others refused, and a refusal in a commit group spoils none of the others.
pub async fn check_concurrent_quota(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // Every other one to a user with room, so each group mixes both.
                let user = if i % 2 == 0 {
                    "sip:full@x"
                } else {
                    "sip:roomy@x"
                };
                let user = if i % 2 == 1 && i > 5 {
                    "sip:roomy2@x"
                } else {
                    user
                };
                step(store.put(msg(user, Some(&format!("cq{i}")), "x", 1, 10_000))).await
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match step(t).await.unwrap() {
            Ok(r) => {
                assert!(!r.duplicate);
                ok += 1;
            }
            Err(StoreError::UserQuota { .. }) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    // full@x: 6 tries, 3 stored; roomy@x: i = 1, 3, 5; roomy2@x: i = 7, 9, 11.
    assert_eq!((ok, refused), (9, 3));
    for (user, n) in [("sip:full@x", 3), ("sip:roomy@x", 3), ("sip:roomy2@x", 3)] {
        let p = step(store.pending(Bytes::from(user), 0, 10)).await.unwrap();
        assert_eq!(p.len(), n, "{user}");
    }
    let s = step(store.stats(10)).await.unwrap();
    assert_eq!((s.messages, s.users), (9, 3));
}
