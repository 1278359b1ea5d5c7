//! [`Few`]: a list that holds up to two items in place and spills to a `Vec` beyond, for the
//! lists of an [`Outcome`](super::Outcome): a translation usually sends one message and asks
//! for one or two table changes, and a `Vec` would cost an allocation (and its free) for each.
//!
//! The items are written where they stay (a `push` moves one item, as `Vec::push` does): an
//! enum of `[T; 1]` / `[T; 2]` arrays, tried first, moved the whole list at every push, which
//! cost as much as the allocations it saved (the items are table changes of ~270 bytes).

use std::mem::{ManuallyDrop, MaybeUninit};

/// Items held in place before the list spills.
const N: usize = 2;

/// Up to two items in place, more in a `Vec`. Reads as a slice (`Deref<Target = [T]>`),
/// iterates by value and by reference like a `Vec`.
pub struct Few<T> {
    /// How many of `inline` are initialised (the first `len`); 0 once spilled.
    len: usize,
    inline: [MaybeUninit<T>; N],
    /// Every item once the list has spilled (then not empty); empty (no allocation) before.
    heap: Vec<T>,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few::new()
    }
}

impl<T> Few<T> {
    /// An empty list (no allocation).
    pub const fn new() -> Self {
        Few {
            len: 0,
            inline: [const { MaybeUninit::uninit() }; N],
            heap: Vec::new(),
        }
    }

    /// Append `item`: in place up to two items, then in a `Vec`.
    #[inline]
    pub fn push(&mut self, item: T) {
        if !self.heap.is_empty() {
            self.heap.push(item);
            return;
        }
        if let Some(slot) = self.inline.get_mut(self.len) {
            slot.write(item);
            self.len += 1;
            return;
        }
        self.spill(item);
    }

    /// Move the items in place to a `Vec`, then `item`.
    #[cold]
    fn spill(&mut self, item: T) {
        let mut heap = Vec::with_capacity(2 * N);
        // Not counted in place any more before they move: a panic midway leaks, never drops
        // twice.
        let n = std::mem::take(&mut self.len);
        for slot in self.inline.iter().take(n) {
            // SAFETY: the first `n` slots are initialised (the invariant of `len`), each read
            // once, and `len` is already 0 so they are not read or dropped again.
            heap.push(unsafe { slot.assume_init_read() });
        }
        heap.push(item);
        self.heap = heap;
    }

    /// The items as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        if !self.heap.is_empty() {
            return &self.heap;
        }
        let init = self.inline.get(..self.len).unwrap_or_default();
        // SAFETY: the first `len` slots are initialised; `MaybeUninit<T>` has the layout of
        // `T`.
        unsafe { &*(init as *const [MaybeUninit<T>] as *const [T]) }
    }

    /// The items as a mutable slice.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        if !self.heap.is_empty() {
            return &mut self.heap;
        }
        let init = self.inline.get_mut(..self.len).unwrap_or_default();
        // SAFETY: as in `as_slice`.
        unsafe { &mut *(init as *mut [MaybeUninit<T>] as *mut [T]) }
    }

    /// The items in a `Vec` (an allocation unless empty or already one).
    pub fn into_vec(self) -> Vec<T> {
        let mut it = self.into_iter();
        if it.start == it.end {
            // Spilled (or empty): the `Vec` as it is.
            return std::mem::take(&mut it.heap).collect();
        }
        it.collect()
    }
}

impl<T> Drop for Few<T> {
    fn drop(&mut self) {
        let n = std::mem::take(&mut self.len);
        if let Some(init) = self.inline.get_mut(..n) {
            // SAFETY: the first `n` slots are initialised and dropped once (`len` is 0 now).
            unsafe { std::ptr::drop_in_place(init as *mut [MaybeUninit<T>] as *mut [T]) }
        }
    }
}

impl<T: Clone> Clone for Few<T> {
    fn clone(&self) -> Self {
        self.iter().cloned().collect()
    }
}

// Equal when the items are, however they are held.
impl<T: PartialEq> PartialEq for Few<T> {
    fn eq(&self, other: &Few<T>) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl<T: Eq> Eq for Few<T> {}

impl<T> std::ops::Deref for Few<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> std::ops::DerefMut for Few<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Few<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T> Extend<T> for Few<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.push(item);
        }
    }
}

impl<T> FromIterator<T> for Few<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut few = Few::new();
        few.extend(items);
        few
    }
}

impl<T> From<Vec<T>> for Few<T> {
    fn from(heap: Vec<T>) -> Self {
        Few {
            len: 0,
            inline: [const { MaybeUninit::uninit() }; N],
            heap,
        }
    }
}

impl<T> From<Few<T>> for Vec<T> {
    fn from(f: Few<T>) -> Self {
        f.into_vec()
    }
}

/// `<[T; K]>::try_from(list)` as for a `Vec`: the items when there are exactly `K`, else the
/// list back as a `Vec`.
impl<T, const K: usize> TryFrom<Few<T>> for [T; K] {
    type Error = Vec<T>;
    fn try_from(f: Few<T>) -> Result<Self, Vec<T>> {
        <[T; K]>::try_from(f.into_vec())
    }
}

/// The items of a [`Few`] by value: those in place (`start..end` of `inline`), then the spilled
/// ones.
pub struct IntoIter<T> {
    start: usize,
    end: usize,
    inline: [MaybeUninit<T>; N],
    heap: std::vec::IntoIter<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.start < self.end {
            let slot = self.inline.get(self.start)?;
            self.start += 1;
            // SAFETY: slots `start..end` are initialised and each is read once (`start` moved
            // past it first).
            return Some(unsafe { slot.assume_init_read() });
        }
        self.heap.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.start + self.heap.len();
        (n, Some(n))
    }
}

impl<T> DoubleEndedIterator for IntoIter<T> {
    fn next_back(&mut self) -> Option<T> {
        if let Some(x) = self.heap.next_back() {
            return Some(x);
        }
        if self.start < self.end {
            let slot = self.inline.get(self.end - 1)?;
            self.end -= 1;
            // SAFETY: as in `next`, from the other end.
            return Some(unsafe { slot.assume_init_read() });
        }
        None
    }
}

impl<T> ExactSizeIterator for IntoIter<T> {}

impl<T> Drop for IntoIter<T> {
    fn drop(&mut self) {
        let (start, end) = (self.start, self.end);
        self.start = end;
        if let Some(rest) = self.inline.get_mut(start..end) {
            // SAFETY: slots `start..end` are initialised and not yet read; dropped once.
            unsafe { std::ptr::drop_in_place(rest as *mut [MaybeUninit<T>] as *mut [T]) }
        }
    }
}

impl<T> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    #[inline]
    fn into_iter(self) -> IntoIter<T> {
        // The items move to the iterator; `Few`'s own drop must not run.
        let mut this = ManuallyDrop::new(self);
        let heap = std::mem::take(&mut this.heap);
        IntoIter {
            start: 0,
            end: this.len,
            // SAFETY: read once, from a value whose drop does not run; the iterator owns the
            // first `len` slots from here on.
            inline: unsafe { std::ptr::read(&this.inline) },
            heap: heap.into_iter(),
        }
    }
}

impl<'a, T> IntoIterator for &'a Few<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    #[inline]
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Few<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    #[inline]
    fn into_iter(self) -> Self::IntoIter {
        self.as_mut_slice().iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushing, reading, iterating and converting give what a `Vec` gives, at every length
    /// across the spill.
    #[test]
    fn few_is_a_vec() {
        for n in 0..7usize {
            let mut few = Few::new();
            let mut vec = Vec::new();
            for i in 0..n {
                few.push(i.to_string());
                vec.push(i.to_string());
                assert_eq!(few.as_slice(), vec.as_slice());
            }
            assert_eq!(few.len(), n);
            assert_eq!(
                few.iter().collect::<Vec<_>>(),
                vec.iter().collect::<Vec<_>>()
            );
            assert_eq!((&few).into_iter().count(), n);
            assert_eq!(few.clone().into_iter().collect::<Vec<_>>(), vec);
            assert_eq!(few.clone().into_iter().rev().collect::<Vec<_>>(), {
                let mut r = vec.clone();
                r.reverse();
                r
            });
            assert_eq!(few.clone().into_iter().len(), n);
            assert_eq!(Vec::from(few.clone()), vec);
            assert_eq!(Few::from(vec.clone()).as_slice(), vec.as_slice());
            assert_eq!(vec.iter().cloned().collect::<Few<_>>(), few);
            assert_eq!(<[String; 2]>::try_from(few.clone()).is_ok(), n == 2);
            for s in few.iter_mut() {
                s.push('x');
            }
            assert!(few.iter().all(|s| s.ends_with('x')));
            assert_eq!(format!("{few:?}"), format!("{:?}", few.as_slice()));
        }
    }

    /// Every item is dropped once, whether the list is dropped, iterated in part, or
    /// converted, in place or spilled.
    #[test]
    fn few_drops_each_item_once() {
        let item = std::rc::Rc::new(());
        for n in 0..6usize {
            for taken in 0..=n {
                let mut few = Few::new();
                for _ in 0..n {
                    few.push(item.clone());
                }
                assert_eq!(std::rc::Rc::strong_count(&item), n + 1);
                let mut it = few.into_iter();
                let got: Vec<_> = it.by_ref().take(taken).collect();
                assert_eq!(got.len(), taken);
                drop(it);
                drop(got);
                assert_eq!(std::rc::Rc::strong_count(&item), 1, "{n} {taken}");
            }
            let few: Few<_> = (0..n).map(|_| item.clone()).collect();
            let back = few.clone();
            drop(few);
            assert_eq!(back.into_vec().len(), n);
            assert_eq!(std::rc::Rc::strong_count(&item), 1);
            let mut from_back: Few<_> = (0..n).map(|_| item.clone()).collect();
            assert_eq!(from_back.as_mut_slice().len(), n);
            assert_eq!(from_back.into_iter().rev().count(), n);
            assert_eq!(std::rc::Rc::strong_count(&item), 1);
        }
    }
}
