//! The node (ARCHITECTURE.md layer 5): the shell that owns sockets and timers.
//!
//! Built so far: [`transaction`], the RFC 3261 §17 transaction state machines, sans-IO (the
//! tokio shell that drives them comes with the node issue).

pub mod admin;
pub mod ids;
pub mod msrp;
pub mod transaction;
pub mod transport;
