//! `ExpiringMap`: one kind of correlation entry, sharded (dashmap), with a time to live per entry
//! and a hard cap on the number of entries.
//!
//! The map reads no clock: every call that needs the time is handed `now` as [`Millis`], so
//! expiry is tested without sleeping and the node decides what "now" is.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

pub use crate::time::Millis;

/// An insert refused because the map holds `cap` entries already: the caller answers 503
/// (RFC 3261 §21.5.4) instead of letting memory grow without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("correlation table full ({cap} entries)")]
pub struct TableFull {
    pub cap: usize,
}

#[derive(Debug, Clone)]
struct Slot<V> {
    value: V,
    expires_at: Millis,
}

/// Counters a map keeps for metrics. Monotonic except `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MapStats {
    pub len: usize,
    pub inserted: u64,
    pub refused: u64,
    pub expired: u64,
}

/// Below this many slots a map is not worth shrinking (the node's own maps use it too).
pub const SPARSE_MIN_CAPACITY: usize = 1_024;

/// A capped map whose entries expire `ttl_ms` after their last insert or refresh.
#[derive(Debug)]
pub struct ExpiringMap<K: Eq + Hash, V> {
    /// foldhash, randomly seeded per map, as the node's transaction maps (Cargo.toml says why
    /// not SipHash): a pager MESSAGE hashes ids here about six times.
    map: DashMap<K, Slot<V>, foldhash::fast::RandomState>,
    /// Live entry count, kept exact with the map's own entry API so the cap check costs an
    /// atomic load instead of locking every shard (`DashMap::len` does that).
    len: AtomicUsize,
    cap: usize,
    ttl_ms: u64,
    inserted: AtomicU64,
    refused: AtomicU64,
    expired: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> ExpiringMap<K, V> {
    /// A map holding at most `cap` entries, each living `ttl_ms` after its last write.
    pub fn new(cap: usize, ttl_ms: u64) -> Self {
        ExpiringMap {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            len: AtomicUsize::new(0),
            cap,
            ttl_ms,
            inserted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    /// Insert or replace `key`. A replacement is always allowed; a new key is refused with
    /// [`TableFull`] when the map is at its cap. Returns the value replaced, if any (an expired
    /// value is not returned: it was already gone as far as readers could tell).
    pub fn insert(&self, key: K, value: V, now: Millis) -> Result<Option<V>, TableFull> {
        let slot = Slot {
            value,
            expires_at: now.after(self.ttl_ms),
        };
        match self.map.entry(key) {
            MapEntry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), slot);
                self.inserted.fetch_add(1, Ordering::Relaxed);
                Ok((old.expires_at > now).then_some(old.value))
            }
            MapEntry::Vacant(e) => {
                // The shard lock is held here, so reserving the slot and inserting are one step
                // for this key; across shards the atomic keeps the total at or under the cap.
                let reserved = self
                    .len
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.cap).then_some(n + 1)
                    })
                    .is_ok();
                if !reserved {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(TableFull { cap: self.cap });
                }
                e.insert(slot);
                self.inserted.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// The value for `key`, unless absent or expired.
    pub fn get<Q>(&self, key: &Q, now: Millis) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.map.get(key)?;
        (slot.expires_at > now).then(|| slot.value.clone())
    }

    /// What `f` makes of the live value of `key` (read in place: a boxed value is not
    /// cloned box and all).
    pub fn get_with<Q, R>(&self, key: &Q, now: Millis, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.map.get(key)?;
        (slot.expires_at > now).then(|| f(&slot.value))
    }

    /// Push the expiry of a live entry to `now + ttl`. False when absent or expired.
    pub fn refresh<Q>(&self, key: &Q, now: Millis) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.map.get_mut(key) {
            Some(mut slot) if slot.expires_at > now => {
                slot.expires_at = now.after(self.ttl_ms);
                true
            }
            _ => false,
        }
    }

    /// Remove `key`, returning its value if it was live.
    pub fn remove<Q>(&self, key: &Q, now: Millis) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (_, slot) = self.map.remove(key)?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        if slot.expires_at > now {
            Some(slot.value)
        } else {
            self.expired.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Remove every entry that has expired by `now`; returns how many. Locks one shard at a
    /// time, so lookups on other shards go on while it runs.
    pub fn sweep(&self, now: Millis) -> usize {
        let mut removed = 0usize;
        self.map.retain(|_, slot| {
            let keep = slot.expires_at > now;
            if !keep {
                removed += 1;
            }
            keep
        });
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::AcqRel);
            self.expired.fetch_add(removed as u64, Ordering::Relaxed);
        }
        removed
    }

    /// Gives back the room a burst of entries left once most of them have gone (a hash table
    /// never shrinks by itself): when fewer than a quarter of the slots are used, each shard
    /// is shrunk to fit what it holds. Write-locks one shard at a time. Returns whether it
    /// shrank.
    pub fn shrink_if_sparse(&self) -> bool {
        let cap = self.map.capacity();
        let len = self.len();
        if cap <= SPARSE_MIN_CAPACITY || len.saturating_mul(4) >= cap {
            return false;
        }
        self.map.shrink_to_fit();
        true
    }

    /// Entries held, expired-but-not-swept ones included.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn stats(&self) -> MapStats {
        MapStats {
            len: self.len(),
            inserted: self.inserted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }

    /// Every live entry with its expiry, for saving state (`translate --state`) and for tests.
    pub fn snapshot(&self, now: Millis) -> Vec<(K, V, Millis)> {
        self.map
            .iter()
            .filter(|e| e.expires_at > now)
            .map(|e| (e.key().clone(), e.value.clone(), e.expires_at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_map_a_burst_left_mostly_empty_shrinks_once() {
        let m = ExpiringMap::new(100_000, 1_000);
        for i in 0..20_000u32 {
            m.insert(i, i, Millis(0)).unwrap();
        }
        for i in 100..20_000u32 {
            m.remove(&i, Millis(0));
        }
        let before = m.map.capacity();
        assert!(before >= 20_000);
        assert!(m.shrink_if_sparse());
        assert!(
            m.map.capacity() < before / 10,
            "{} -> {}",
            before,
            m.map.capacity()
        );
        assert!(!m.shrink_if_sparse(), "nothing more to give back");
        for i in 0..100u32 {
            assert_eq!(m.get(&i, Millis(0)), Some(i));
        }
    }

    #[test]
    fn entries_expire_after_ttl_and_refresh_extends() {
        let m = ExpiringMap::new(10, 1_000);
        m.insert("a", 1, Millis(0)).unwrap();
        assert_eq!(m.get("a", Millis(999)), Some(1));
        assert_eq!(m.get("a", Millis(1_000)), None);
        assert!(m.refresh("a", Millis(500)));
        assert_eq!(m.get("a", Millis(1_499)), Some(1));
        assert!(!m.refresh("a", Millis(1_500)));
        assert_eq!(m.sweep(Millis(1_500)), 1);
        assert_eq!(m.len(), 0);
        assert_eq!(m.stats().expired, 1);
    }

    #[test]
    fn cap_refuses_new_keys_but_allows_replacement() {
        let m = ExpiringMap::new(2, 1_000);
        assert_eq!(m.insert(1, "x", Millis(0)), Ok(None));
        assert_eq!(m.insert(2, "y", Millis(0)), Ok(None));
        assert_eq!(m.insert(3, "z", Millis(0)), Err(TableFull { cap: 2 }));
        assert_eq!(m.insert(2, "y2", Millis(0)), Ok(Some("y")));
        assert_eq!(m.stats().refused, 1);
        // Space comes back after a sweep or a remove.
        assert_eq!(m.remove(&1, Millis(0)), Some("x"));
        assert_eq!(m.insert(3, "z", Millis(0)), Ok(None));
        assert_eq!(m.sweep(Millis(1_000)), 2);
        assert_eq!(m.insert(4, "w", Millis(1_000)), Ok(None));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn expired_value_is_not_returned_by_replace_or_remove() {
        let m = ExpiringMap::new(4, 10);
        m.insert("k", 1, Millis(0)).unwrap();
        assert_eq!(m.insert("k", 2, Millis(10)), Ok(None));
        assert_eq!(m.remove("k", Millis(20)), None);
        assert!(m.is_empty());
    }

    #[test]
    fn concurrent_inserts_never_pass_the_cap() {
        let m = Arc::new(ExpiringMap::new(1_000, 60_000));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    (0..1_000u32)
                        .filter(|i| m.insert(t * 1_000 + i, *i, Millis(0)).is_ok())
                        .count()
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(accepted, 1_000);
        assert_eq!(m.len(), 1_000);
        assert_eq!(m.snapshot(Millis(0)).len(), 1_000);
        assert_eq!(m.stats().refused, 3_000);
    }
}
