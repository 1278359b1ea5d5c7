//! Shared copies in one allocation, and a reusable buffer to write them in.
//!
//! `Bytes::from(Vec)` (or `String`) costs two allocations once the buffer is shared: the data,
//! then the reference count (`bytes`' shared header) at the first clone or slice. A value the
//! gateway writes and then hands out as slices (the new leg's From / Contact / Accept-Contact,
//! the table's ids) needs only one: [`shared_copy`] puts the bytes and the count in one block
//! (`Bytes::from_owner` of an inline array). The text is first written in a [`Scratch`]
//! buffer, reused by the thread, so that writing costs no allocation either.

use std::cell::Cell;

use bytes::Bytes;

/// The bytes of a [`shared_copy`], in place: `Bytes::from_owner` boxes this with its reference
/// count, one allocation.
struct Inline<const N: usize> {
    len: usize,
    data: [u8; N],
}

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.data.get(..self.len).unwrap_or_default()
    }
}

// Not inlined into `shared_copy`'s size switch: kept small, `Bytes::from_owner` is inlined
// into it and the array is built in place in its box (one copy of the array); inlined, the
// switch grew past the point where `from_owner` was inlined and the array was moved once more
// into its argument (~50 instructions a buffer, seen in a profile).
#[inline(never)]
fn inline<const N: usize>(s: &[u8]) -> Bytes {
    let mut data = [0u8; N];
    if let Some(d) = data.get_mut(..s.len()) {
        d.copy_from_slice(s);
    }
    Bytes::from_owner(Inline { len: s.len(), data })
}

/// Longest value [`shared_copy`] puts in one block; longer ones take two allocations.
pub const MAX_INLINE: usize = 1032;

/// A copy of `s` that clones and slices without allocating again: one allocation in all.
/// Sizes go in steps (the block is the bytes, their length and the reference count, 16 bytes,
/// and malloc's own 8 make a multiple of 32), so that at most about a quarter of a block is
/// left unused above 100 bytes: these copies may live as long as a table entry.
pub fn shared_copy(s: &[u8]) -> Bytes {
    macro_rules! classes {
        ($($n:literal)*) => {
            match s.len() {
                0 => Bytes::new(),
                $(n if n <= $n => inline::<$n>(s),)*
                _ => Bytes::from(s.to_vec()),
            }
        };
    }
    classes!(40 72 104 136 168 200 232 264 328 392 456 520 648 776 904 1032)
}

/// A scratch buffer larger than this is not kept for the thread's next use (one hostile value
/// should not pin its size).
const MAX_KEPT: usize = 4096;

thread_local! {
    static SCRATCH: Cell<String> = const { Cell::new(String::new()) };
}

/// A `String` to write text in before [`freeze`](Self::freeze)ing a shared copy of it: taken
/// from the thread (no allocation once the thread has used one) and given back when dropped.
/// A nested use gets a new one.
pub struct Scratch(String);

impl Scratch {
    /// An empty buffer with room for `capacity` bytes.
    #[inline]
    pub fn with_capacity(capacity: usize) -> Scratch {
        let mut s = SCRATCH.with(Cell::take);
        s.clear();
        s.reserve(capacity);
        Scratch(s)
    }

    /// A shared copy of what is written ([`shared_copy`]).
    #[inline]
    pub fn freeze(&self) -> Bytes {
        shared_copy(self.0.as_bytes())
    }
}

impl std::ops::Deref for Scratch {
    type Target = String;
    #[inline]
    fn deref(&self) -> &String {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    #[inline]
    fn deref_mut(&mut self) -> &mut String {
        &mut self.0
    }
}

impl Drop for Scratch {
    #[inline]
    fn drop(&mut self) {
        if self.0.capacity() <= MAX_KEPT {
            let s = std::mem::take(&mut self.0);
            // `try_with`: nothing to give back to during the thread's teardown.
            let _ = SCRATCH.try_with(|c| c.set(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy is the bytes given, at every length across the size classes and past them, and
    /// its slices and clones are too.
    #[test]
    fn shared_copy_is_the_bytes() {
        let src: Vec<u8> = (0..MAX_INLINE + 40).map(|i| (i % 251) as u8).collect();
        for n in 0..src.len() {
            let want = &src[..n];
            let b = shared_copy(want);
            assert_eq!(&b[..], want, "{n}");
            let c = b.clone();
            drop(b);
            assert_eq!(&c[..], want);
            if n > 2 {
                assert_eq!(&c.slice(1..n - 1)[..], &want[1..n - 1]);
            }
        }
    }

    /// The scratch buffer is empty when taken, whatever was written before, and nested uses
    /// are independent.
    #[test]
    fn scratch_is_empty_and_nests() {
        let mut a = Scratch::with_capacity(10);
        a.push_str("first");
        {
            let mut b = Scratch::with_capacity(3);
            assert!(b.is_empty());
            b.push_str("inner");
            assert_eq!(&b.freeze()[..], b"inner");
        }
        assert_eq!(&a.freeze()[..], b"first");
        drop(a);
        let c = Scratch::with_capacity(0);
        assert!(c.is_empty());
    }
}
