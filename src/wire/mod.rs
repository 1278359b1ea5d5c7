//! Codecs for the six formats the gateway reads and writes.
//!
//! Rules every codec here follows (ARCHITECTURE.md, layer 1):
//! - no I/O and no tokio runtime: input is `bytes::Bytes` (or `BytesMut` for the streaming
//!   decoders built on tokio-util's `Decoder`/`Encoder` traits, which need no runtime);
//! - bodies and long values are `Bytes` slices of the input, never copies;
//! - every parser is bounded (sizes, counts, line lengths) and never panics on any input;
//! - every parse error is a typed `thiserror` enum that implements [`WireError`], which says
//!   what protocol answer the fault deserves and where in the input it was found.

pub mod cpim;
pub mod frozen;
pub mod imdn;
pub mod iscomposing;
pub mod msrp;
pub mod reginfo;
pub mod sdp;
pub mod sip;
pub mod text;
mod xml;

/// The protocol answer a malformed or unacceptable input deserves.
///
/// SIP (RFC 3261 §21.4): 400 Bad Request, 413 Request Entity Too Large, 415 Unsupported Media
/// Type, 488 Not Acceptable Here. MSRP (RFC 4975 §7.3): 400, 413, 415, 481.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Answer with this status code; the error's `Display` is the reason phrase.
    Status(u16),
    /// Nothing answerable was read (no request line, a response, garbage): drop and count it.
    Drop,
}

/// What every codec error tells its caller.
pub trait WireError: std::error::Error {
    /// The answer the peer should get.
    fn answer(&self) -> Answer;
    /// Byte offset into the input where the fault was found, when known.
    fn offset(&self) -> Option<usize>;
}
