//! The sharded in-memory correlation table (ARCHITECTURE.md, layer 4).
//!
//! What must be remembered between messages (dialogs on both sides, MSRP sessions, the device
//! that sent each imdn Message-ID, conversation identities) is held here, each kind in its own
//! [`ExpiringMap`]: sharded (dashmap), an expiry per entry, a hard cap that refuses new entries
//! rather than grow, and counters for metrics. Nothing here reads a clock or a socket.

mod map;
mod packed;
mod table;

pub use map::{ExpiringMap, MapStats, Millis, SPARSE_MIN_CAPACITY, TableFull};
pub use table::{KindLimits, Table, TableLimits, TableStats, TableView};
