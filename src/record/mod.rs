//! Recording conversations to the user's Message Storage Server (issue 8; OMA CPM 2.0 SD
//! 5.2.1.2): per-user preferences ([`prefs`]), the RFC 5322 objects ([`object`]), reassembly
//! of chunked MSRP messages ([`reassembly`]), the durable upload queue ([`queue`]) and the IMAP
//! client ([`mss`]). The node's uploader and hooks are in `node::record`.

pub mod mss;
pub mod object;
pub mod prefs;
pub mod queue;
pub mod reassembly;
