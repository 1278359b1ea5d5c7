//! The MSRP codec's error type.

use crate::wire::{Answer, WireError};

/// Everything that can be wrong with MSRP input (RFC 4975 §9 grammar, our [`super::Limits`]).
///
/// `answer()` follows RFC 4975 §7.3 and §10: 400 for grammar faults, 413 for anything over
/// our [`super::Limits`] (chunk size, header count, line length, header section), and [`Answer::Drop`] when there is nothing to answer (no readable
/// start line, or a fault in a response, which never gets a response itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsrpError {
    /// The input does not start with `MSRP SP transaction-id SP ...`.
    #[error("not an MSRP start line: {what}")]
    BadStartLine {
        /// What is wrong.
        what: &'static str,
        /// Where.
        offset: usize,
    },
    /// The start line names a transaction but its method or status code is malformed.
    #[error("MSRP start line: {what}")]
    BadMethodOrStatus {
        /// What is wrong.
        what: &'static str,
        /// Where.
        offset: usize,
    },
    /// A start or header line is longer than [`super::Limits::max_line_length`].
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
        /// Start of the line.
        offset: usize,
    },
    /// More header fields than [`super::Limits::max_headers`].
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
        /// Start of the first header field over the limit.
        offset: usize,
    },
    /// Start line and header fields together exceed [`super::Limits::max_header_bytes`].
    #[error("header section longer than {limit} bytes")]
    HeadersTooLarge {
        /// The limit.
        limit: usize,
        /// Where the limit was crossed.
        offset: usize,
    },
    /// The body is larger than [`super::Limits::max_chunk_size`].
    #[error("chunk body of {size} bytes is larger than the limit of {limit}")]
    ChunkTooLarge {
        /// The body length (or the length seen so far when streaming).
        size: usize,
        /// The limit.
        limit: usize,
        /// Start of the body.
        offset: usize,
    },
    /// A header line that is not `name: value`, or has characters a header may not hold.
    #[error("malformed header field: {what}")]
    BadHeader {
        /// What is wrong.
        what: &'static str,
        /// Start of the line.
        offset: usize,
    },
    /// A required header field is missing.
    #[error("{name} header field missing")]
    MissingHeader {
        /// The header field's name.
        name: &'static str,
        /// Where it was expected (end of the header section).
        offset: usize,
    },
    /// A header field that may appear once appears twice.
    #[error("{name} header field appears twice")]
    DuplicateHeader {
        /// The header field's name.
        name: &'static str,
        /// Start of the second occurrence.
        offset: usize,
    },
    /// A typed header field's value does not match its grammar.
    #[error("{name}: {reason}")]
    BadValue {
        /// The header field's name.
        name: &'static str,
        /// What is wrong, with the offending values.
        reason: String,
        /// Start of the value.
        offset: usize,
    },
    /// An MSRP URI that does not match RFC 4975 §9.
    #[error("MSRP URI: {reason}")]
    BadUri {
        /// What is wrong.
        reason: &'static str,
        /// Where.
        offset: usize,
    },
    /// A body without a Content-Type (RFC 4975 §7.1.1), or a body in a response (§9).
    #[error("{what}")]
    BadBody {
        /// What is wrong.
        what: &'static str,
        /// Start of the body.
        offset: usize,
    },
    /// No end-line `-------<transaction-id>` + `$`/`+`/`#` + CRLF was found.
    #[error("no end-line \"-------{transaction_id}\" followed by $, + or # and CRLF")]
    MissingEndLine {
        /// The transaction-id the end-line must carry.
        transaction_id: String,
        /// End of the input.
        offset: usize,
    },
    /// Bytes after the end-line of a single message.
    #[error("{count} bytes after the end-line")]
    TrailingData {
        /// How many.
        count: usize,
        /// Where they start.
        offset: usize,
    },
    /// A fault in a response: the same faults, but a response is never answered.
    #[error("in a {code} response: {source}")]
    InResponse {
        /// The response's status code.
        code: u16,
        /// The fault.
        source: Box<MsrpError>,
    },
    /// `Byte-Range` disagrees with the body (reported by `Message::check_byte_range`).
    #[error("Byte-Range: {reason}")]
    ByteRangeMismatch {
        /// What disagrees, with the numbers.
        reason: String,
    },
    /// The stream ended in the middle of a message.
    #[error("connection closed in the middle of a message ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes left in the buffer.
        buffered: usize,
    },
    /// An I/O error from the transport under a `Framed` stream.
    #[error("transport: {0}")]
    Io(String),
}

impl From<std::io::Error> for MsrpError {
    fn from(e: std::io::Error) -> Self {
        MsrpError::Io(e.to_string())
    }
}

impl WireError for MsrpError {
    fn answer(&self) -> Answer {
        match self {
            MsrpError::BadStartLine { .. }
            | MsrpError::InResponse { .. }
            | MsrpError::Truncated { .. }
            | MsrpError::Io(_) => Answer::Drop,
            MsrpError::ChunkTooLarge { .. }
            | MsrpError::HeadersTooLarge { .. }
            | MsrpError::TooManyHeaders { .. }
            | MsrpError::LineTooLong { .. } => Answer::Status(413),
            _ => Answer::Status(400),
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            MsrpError::BadStartLine { offset, .. }
            | MsrpError::BadMethodOrStatus { offset, .. }
            | MsrpError::LineTooLong { offset, .. }
            | MsrpError::TooManyHeaders { offset, .. }
            | MsrpError::HeadersTooLarge { offset, .. }
            | MsrpError::ChunkTooLarge { offset, .. }
            | MsrpError::BadHeader { offset, .. }
            | MsrpError::MissingHeader { offset, .. }
            | MsrpError::DuplicateHeader { offset, .. }
            | MsrpError::BadValue { offset, .. }
            | MsrpError::BadUri { offset, .. }
            | MsrpError::BadBody { offset, .. }
            | MsrpError::MissingEndLine { offset, .. }
            | MsrpError::TrailingData { offset, .. } => Some(*offset),
            MsrpError::InResponse { source, .. } => source.offset(),
            MsrpError::ByteRangeMismatch { .. }
            | MsrpError::Truncated { .. }
            | MsrpError::Io(_) => None,
        }
    }
}
