//! Time as the caller gives it. Nothing in the translator or the table reads a clock: the node
//! passes `now` in, so expiry and refresh rules are tested without sleeping.

/// Monotonic milliseconds since an origin the caller chooses (the node uses its start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating rather than wrapping.
    pub fn after(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}
