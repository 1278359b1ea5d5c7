//! Giving freed heap pages back to the system.
//!
//! glibc's malloc returns memory to the kernel only from the top of a heap (`M_TRIM_THRESHOLD`)
//! or for chunks it `mmap`ed; pages freed in the middle of a heap stay resident. A node that
//! sets up chat sessions in bursts frees most of what a setup allocated (its SIP transactions
//! end after RFC 3261 Timer J/K and RFC 6026 Timer L/M, up to 32 s later) between the small
//! allocations the live sessions keep, so without help the process stays ~3x above what it
//! uses (BENCHMARKS.md, issue 9: ~21 KB per held session against ~6 KB in use).
//! `malloc_trim(0)` walks every arena and gives back the whole pages of free chunks with
//! `MADV_DONTNEED`; it is run now and then on a blocking thread, never on a runtime thread.
//! That is not enough while one live object sits on each page: 10,000 held sessions kept
//! 11.5 KB of RSS each for 3.7 KB of live heap. The `cpm-iwf` binary therefore allocates
//! through jemalloc (feature `jemalloc`), whose size classes live on pages of their own and
//! whose background thread returns emptied pages: 5.4 KB each (BENCHMARKS.md, session 20).
//! The trim then purges jemalloc's arenas as well ([`jemalloc_is_global`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::b2bua::CoreEvent;
use crate::correlate::Table;

pub use crate::correlate::SPARSE_MIN_CAPACITY;

/// Shrinks a map that uses fewer than a quarter of its slots to twice what it holds (room
/// for the next burst without starting from nothing).
pub fn shrink_if_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    let (len, cap) = (map.len(), map.capacity());
    if cap > SPARSE_MIN_CAPACITY && len.saturating_mul(4) < cap {
        map.shrink_to(len.saturating_mul(2));
    }
}

/// What one trim did.
#[derive(Debug, Clone, Copy)]
pub struct Trim {
    /// Whether the allocator gave any memory back.
    pub released: bool,
    /// How long the walk took (the arenas are locked one at a time meanwhile).
    pub took: Duration,
}

/// Gives the allocator's free pages back to the system, where the allocator can (glibc).
pub fn trim() -> Trim {
    let start = Instant::now();
    let released = release();
    Trim {
        released,
        took: start.elapsed(),
    }
}

/// Set by the binary whose `#[global_allocator]` is jemalloc: the trim purges its arenas too.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
static JEMALLOC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The process allocates through jemalloc (`cpm-iwf`'s `main`): [`trim`] purges its arenas.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
pub fn jemalloc_is_global() {
    JEMALLOC.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// jemalloc's unused dirty pages of every arena back to the system now (its background
/// thread does it on its own within `dirty_decay_ms`; this is the trim's explicit turn).
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
fn purge_jemalloc() -> bool {
    if !JEMALLOC.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    // MALLCTL_ARENAS_ALL (4096): every arena (jemalloc(3), "arena.<i>.purge").
    let name = c"arena.4096.purge";
    // SAFETY: a NUL-terminated name; "arena.<i>.purge" reads and writes nothing (null old
    // and new pointers, zero lengths), as jemalloc(3) documents for a void control.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    rc == 0
}

#[cfg(not(all(feature = "jemalloc", target_os = "linux")))]
fn purge_jemalloc() -> bool {
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release() -> bool {
    let purged = purge_jemalloc();
    // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks each arena in turn);
    // 0 keeps no padding at the top of the heap. With jemalloc global, glibc's heap holds
    // only what C code allocated; the walk is short.
    (unsafe { libc::malloc_trim(0) != 0 }) || purged
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() -> bool {
    purge_jemalloc()
}

/// One malloc arena for the whole process (glibc `M_ARENA_MAX` = 1); to be called before the
/// runtime starts its threads. Each thread's own arena grows its heap a few pages at a time
/// with `mprotect` (0.38 calls per pager MESSAGE at 4,000/s, all of it in the node's growth
/// phase: Timer J keeps every answered MESSAGE's transaction 32 s), where the main arena grows
/// by `M_TOP_PAD` steps; glibc's per-thread cache keeps most small allocations off the arena's
/// lock. Measured: no `mprotect` left, page faults 0.74 -> 0.56 per MESSAGE.
pub fn single_arena() -> bool {
    set_single_arena()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_single_arena() -> bool {
    // SAFETY: mallopt takes no pointer; called before other threads allocate.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_single_arena() -> bool {
    false
}

/// Every `every`, until the task is aborted (the node's shutdown aborts its tasks): shrinks
/// the correlation table's and the core's maps that a burst left mostly empty, then trims
/// the heap, so that the memory of a burst that has passed goes back to the system.
pub async fn run_trimmer(every: Duration, table: Arc<Table>, core: mpsc::Sender<CoreEvent>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: nothing to give back at start
    loop {
        tick.tick().await;
        table.shrink_if_sparse();
        let (done, shrunk) = oneshot::channel();
        let shrink = CoreEvent::Resume(Box::new(move |c| {
            c.shrink_if_sparse();
            let _ = done.send(());
        }));
        // A core that is gone or too busy to answer within a tick is not waited for.
        if core.send(shrink).await.is_ok() {
            let _ = tokio::time::timeout(every, shrunk).await;
        }
        match tokio::task::spawn_blocking(trim).await {
            Ok(t) => tracing::debug!(
                released = t.released,
                took_us = u64::try_from(t.took.as_micros()).unwrap_or(u64::MAX),
                "heap trimmed"
            ),
            Err(e) => tracing::warn!(error = %e, "heap trim task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_map_shrinks_and_a_full_one_does_not() {
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let full = m.capacity();
        shrink_if_sparse(&mut m);
        assert_eq!(m.capacity(), full, "a full map keeps its room");
        m.retain(|k, _| *k < 100);
        shrink_if_sparse(&mut m);
        assert!(m.capacity() < full / 10, "{full} -> {}", m.capacity());
        assert!(m.capacity() >= 200, "room for twice what it holds");
        assert_eq!(m.len(), 100);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_gives_back_pages_freed_inside_the_heap() {
        // Many small blocks, every other one freed: the freed ones sit between live ones, so
        // only malloc_trim (not the top-of-heap trim of free()) can give their pages back.
        let mut blocks: Vec<Option<Vec<u8>>> =
            (0..20_000).map(|i| Some(vec![i as u8; 2_000])).collect();
        for b in blocks.iter_mut().step_by(2) {
            b.take();
        }
        let t = trim();
        assert!(
            t.released,
            "malloc_trim released nothing with ~20 MB freed mid-heap"
        );
        drop(blocks);
    }
}
