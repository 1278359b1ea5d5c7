//! The transactions' wake-ups, taken in the order they fall due.
//!
//! RFC 3261's transaction timers are a handful of fixed durations from the moment they are
//! armed: T1 doubling up to T2 (Timers A, E, G), T4 (I, K), 64·T1 (B, F, H, J), and RFC 6026's
//! L and M. Deadlines armed with the same duration fall due in the order they were armed, so a
//! FIFO per duration ("lane") keeps them sorted for free: arming and firing are O(1). A binary
//! heap of every live wake-up (~150,000 at 4,000 pager MESSAGEs a second with Timer J's 32 s)
//! paid a sift through ~17 levels of a multi-megabyte array per firing. The few deadlines
//! whose duration has no lane (more distinct durations than `MAX_LANES`) go to a heap.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use crate::time::Millis;

/// Distinct durations kept as lanes; the timers of RFC 3261 and RFC 6026 need about eight.
const MAX_LANES: usize = 16;

/// Wake-ups with what each is for (`T`), taken earliest first.
pub struct Deadlines<T> {
    lanes: Vec<Lane<T>>,
    overflow: BinaryHeap<Reverse<Overflow<T>>>,
    /// Orders the overflow heap's equal deadlines without comparing `T`.
    seq: u64,
    len: usize,
}

/// Deadlines armed with one duration, oldest first (so earliest first).
struct Lane<T> {
    after: u64,
    queue: VecDeque<(Millis, T)>,
}

struct Overflow<T> {
    at: Millis,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Overflow<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Overflow<T> {}

impl<T> PartialOrd for Overflow<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Overflow<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines {
            lanes: Vec::new(),
            overflow: BinaryHeap::new(),
            seq: 0,
            len: 0,
        }
    }
}

/// Where the earliest deadline is.
#[derive(Clone, Copy)]
enum Source {
    Lane(usize),
    Overflow,
}

impl<T> Deadlines<T> {
    /// No wake-ups.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wake-ups waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated (for the memory trimmer and its tests).
    pub fn capacity(&self) -> usize {
        self.lanes.iter().map(|l| l.queue.capacity()).sum::<usize>() + self.overflow.capacity()
    }

    /// Arms a wake-up at `at`, armed at `now` (`now` only picks the lane: any `now` is correct).
    pub fn push(&mut self, now: Millis, at: Millis, item: T) {
        self.len += 1;
        let after = at.0.saturating_sub(now.0);
        let lane = match self.lanes.iter().position(|l| l.after == after) {
            Some(i) => Some(i),
            // A lane left empty is taken over by a new duration before a new one is made.
            None => match self.lanes.iter().position(|l| l.queue.is_empty()) {
                Some(i) => {
                    self.lanes[i].after = after;
                    Some(i)
                }
                None if self.lanes.len() < MAX_LANES => {
                    self.lanes.push(Lane {
                        after,
                        queue: VecDeque::new(),
                    });
                    Some(self.lanes.len() - 1)
                }
                None => None,
            },
        };
        if let Some(lane) = lane.and_then(|i| self.lanes.get_mut(i)) {
            // `now` never goes back, so a lane's deadlines only grow; a caller's `now` that
            // did would break the order, and that deadline goes to the heap instead.
            if lane.queue.back().is_none_or(|(last, _)| *last <= at) {
                lane.queue.push_back((at, item));
                return;
            }
        }
        self.seq += 1;
        self.overflow.push(Reverse(Overflow {
            at,
            seq: self.seq,
            item,
        }));
    }

    fn earliest(&self) -> Option<(Millis, Source)> {
        let mut best = self
            .overflow
            .peek()
            .map(|Reverse(o)| (o.at, Source::Overflow));
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some((at, _)) = lane.queue.front()
                && best.is_none_or(|(b, _)| *at < b)
            {
                best = Some((*at, Source::Lane(i)));
            }
        }
        best
    }

    /// The earliest deadline.
    pub fn peek(&self) -> Option<Millis> {
        self.earliest().map(|(at, _)| at)
    }

    /// Takes the earliest wake-up if it is due at `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<T> {
        let (at, source) = self.earliest()?;
        if at > now {
            return None;
        }
        let item = match source {
            Source::Lane(i) => self.lanes.get_mut(i)?.queue.pop_front().map(|(_, t)| t),
            Source::Overflow => self.overflow.pop().map(|Reverse(o)| o.item),
        };
        if item.is_some() {
            self.len -= 1;
        }
        item
    }

    /// Gives back room a burst left (`node::memory`): a lane or the heap using fewer than a
    /// quarter of its slots keeps twice what it holds.
    pub fn shrink_if_sparse(&mut self, min_capacity: usize) {
        for lane in &mut self.lanes {
            let (len, cap) = (lane.queue.len(), lane.queue.capacity());
            if cap > min_capacity && len.saturating_mul(4) < cap {
                lane.queue.shrink_to(len.saturating_mul(2));
            }
        }
        let (len, cap) = (self.overflow.len(), self.overflow.capacity());
        if cap > min_capacity && len.saturating_mul(4) < cap {
            self.overflow.shrink_to(len.saturating_mul(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(d: &mut Deadlines<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        while let Some(at) = d.peek() {
            if at.0 > now {
                break;
            }
            let item = d.pop_due(Millis(now)).expect("due");
            out.push((at.0, item));
        }
        out
    }

    #[test]
    fn takes_wake_ups_earliest_first_across_durations() {
        let mut d = Deadlines::new();
        // Timer E (500 ms), J (32 s) and K (5 s) armed interleaved, as a pager run does.
        d.push(Millis(0), Millis(32_000), 1);
        d.push(Millis(0), Millis(500), 2);
        d.push(Millis(10), Millis(5_010), 3);
        d.push(Millis(20), Millis(520), 4);
        assert_eq!(d.len(), 4);
        assert_eq!(d.peek(), Some(Millis(500)));
        assert_eq!(d.pop_due(Millis(499)), None);
        assert_eq!(drain(&mut d, 6_000), vec![(500, 2), (520, 4), (5_010, 3)]);
        assert_eq!(drain(&mut d, 40_000), vec![(32_000, 1)]);
        assert!(d.is_empty());
        assert_eq!(d.peek(), None);
    }

    #[test]
    fn more_durations_than_lanes_overflow_to_the_heap_in_order() {
        let mut d = Deadlines::new();
        for i in 0..100u32 {
            // Every deadline with its own duration: all past the sixteenth go to the heap.
            d.push(Millis(0), Millis(1_000 - u64::from(i)), i);
        }
        let got = drain(&mut d, 1_000);
        let ats: Vec<u64> = got.iter().map(|(at, _)| *at).collect();
        let mut sorted = ats.clone();
        sorted.sort_unstable();
        assert_eq!(ats, sorted);
        assert_eq!(got.len(), 100);
    }

    #[test]
    fn a_now_going_back_still_keeps_the_order() {
        let mut d = Deadlines::new();
        d.push(Millis(100), Millis(600), 1);
        // Same duration armed "earlier": out of the lane's order, so it goes to the heap.
        d.push(Millis(50), Millis(550), 2);
        assert_eq!(drain(&mut d, 1_000), vec![(550, 2), (600, 1)]);
    }

    #[test]
    fn an_empty_lane_is_reused_and_shrinks() {
        let mut d = Deadlines::new();
        for i in 0..10_000u32 {
            d.push(Millis(u64::from(i)), Millis(u64::from(i) + 500), i);
        }
        assert_eq!(drain(&mut d, 20_000).len(), 10_000);
        assert!(d.capacity() >= 10_000);
        d.shrink_if_sparse(1_024);
        assert!(d.capacity() < 1_024, "{}", d.capacity());
        for i in 0..(MAX_LANES as u64 * 2) {
            d.push(Millis(0), Millis(i + 1), 0);
        }
        // Sixteen lanes at most, and everything still comes out.
        assert!(d.lanes.len() <= MAX_LANES);
        assert_eq!(drain(&mut d, 1_000).len(), MAX_LANES * 2);
    }

    proptest! {
        /// Against a binary heap: the same deadlines come out, earliest first, each once.
        #[test]
        fn matches_a_binary_heap(ops in proptest::collection::vec(
            (0u64..50, prop_oneof![
                Just(500u64), Just(1_000), Just(4_000), Just(5_000), Just(32_000),
                0u64..40_000,
            ], any::<bool>()),
            0..400,
        )) {
            let mut d = Deadlines::new();
            let mut reference = BinaryHeap::new();
            let mut now = 0u64;
            let mut item = 0u32;
            let mut got = Vec::new();
            let mut want = Vec::new();
            for (step, after, fire) in ops {
                now += step;
                if fire {
                    got.extend(drain(&mut d, now));
                    while let Some(Reverse((at, i))) = reference.peek().copied() {
                        if at > now { break; }
                        reference.pop();
                        want.push((at, i));
                    }
                } else {
                    item += 1;
                    d.push(Millis(now), Millis(now + after), item);
                    reference.push(Reverse((now + after, item)));
                }
                prop_assert_eq!(d.len(), reference.len());
                prop_assert_eq!(d.peek().map(|m| m.0), reference.peek().map(|Reverse((at, _))| *at));
            }
            got.extend(drain(&mut d, u64::MAX));
            while let Some(Reverse((at, i))) = reference.pop() {
                want.push((at, i));
            }
            // Equal deadlines may come out in either order; the sequence of deadlines may not.
            let ats = |v: &[(u64, u32)]| v.iter().map(|(a, _)| *a).collect::<Vec<_>>();
            prop_assert_eq!(ats(&got), ats(&want));
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
