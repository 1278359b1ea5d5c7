//! [`Few`]: the lists of an [`Outcome`](super::Outcome) hold up to two items in place and
//! spill to the heap beyond: a translation usually sends one message and asks for one or two
//! table changes, and a `Vec` would cost an allocation (and its free) for each.
//!
//! `smallvec` (already in the dependency tree through dashmap's parking_lot) rather than a
//! list of our own: the in-place storage needs `unsafe`, which a widely used crate has had
//! reviewed and fuzzed; an enum of `[T; 1]` / `[T; 2]` arrays (safe) moved the whole list at
//! every push (a table change is ~270 bytes), which cost what the allocations saved.

/// Up to `N` items in place (two unless said), more on the heap; reads as a slice, iterates
/// like a `Vec`.
pub type Few<T, const N: usize = 2> = smallvec::SmallVec<[T; N]>;

#[cfg(test)]
mod tests {
    use super::Few;

    #[test]
    fn two_in_place_then_spills_in_order() {
        let mut few: Few<String> = Few::new();
        few.push("a".into());
        few.push("b".into());
        assert!(!few.spilled());
        few.push("c".into());
        assert!(few.spilled());
        assert_eq!(few.as_slice(), ["a", "b", "c"]);
        assert_eq!(few.into_vec(), vec!["a", "b", "c"]);
    }
}
