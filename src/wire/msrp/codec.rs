//! The streaming MSRP decoder and encoder (tokio-util `Decoder`/`Encoder`; no runtime).

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    EndSearch, Limits, Message, MsrpError, StartScan, find_end_line, parse_frame, scan_start_line,
};

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole request or response (for SEND, one chunk: see its `continuation`).
    Message(Message),
    /// A message whose end-line was found but which is malformed or over a limit. The
    /// connection stays usable; answer `error.answer()` with `transaction_id` (RFC 4975 §7.3,
    /// unless it was a response or the peer asked for no reports).
    Rejected {
        /// The transaction-id from the start line.
        transaction_id: Bytes,
        /// What is wrong.
        error: MsrpError,
    },
}

#[derive(Debug)]
enum State {
    /// Waiting for a start line; `scan` bytes are known to hold no LF.
    Start { scan: usize },
    /// Start line read; the end-line is searched from `scan`.
    Frame { start: StartScan, scan: usize },
    /// Over the size limits: discarding bytes until the end-line of `tid`. `consumed` bytes
    /// of the message are gone from the buffer; `body_start` is where its body began (when
    /// the header section ended within the limits).
    Skip {
        tid: [u8; 32],
        tid_len: usize,
        body_start: Option<usize>,
        consumed: usize,
    },
}

/// Streaming MSRP framing over a TCP or TLS byte stream (RFC 4975 §5.1, §9).
///
/// - Yields one [`Frame`] per message or chunk, as soon as its end-line has arrived; input
///   may be split at any byte.
/// - The end-line is searched with a `memchr` finder for `CRLF "-------"` built once, from
///   where the previous call stopped, so trickled input costs linear time; look-alike
///   end-lines in a body (other transaction-ids, other text after the hyphens) are skipped.
/// - A message over [`Limits`] is discarded as it arrives (memory stays bounded) and reported
///   as [`Frame::Rejected`] with a 413 error once its end-line shows up.
/// - `Err` only when the stream cannot be framed any more (no `MSRP <transaction-id>` start
///   line, start line too long, connection closed mid-message): close the connection.
///
/// Lenient: empty lines (CRLF) between messages are skipped.
#[derive(Debug)]
pub struct MsrpCodec {
    limits: Limits,
    state: State,
}

impl Default for MsrpCodec {
    fn default() -> Self {
        MsrpCodec::new(Limits::default())
    }
}

impl MsrpCodec {
    /// A decoder/encoder with these limits.
    pub fn new(limits: Limits) -> MsrpCodec {
        MsrpCodec {
            limits,
            state: State::Start { scan: 0 },
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Most bytes a message may occupy in the buffer: start line and header fields, blank
    /// line, body, CRLF and end-line.
    fn max_frame(&self) -> usize {
        self.limits
            .max_header_bytes
            .saturating_add(self.limits.max_chunk_size)
            .saturating_add(4 + 2 + 7 + 32 + 3)
    }
}

impl Decoder for MsrpCodec {
    type Item = Frame;
    type Error = MsrpError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, MsrpError> {
        let max_frame = self.max_frame();
        loop {
            match &mut self.state {
                State::Start { scan } => {
                    // Lenient: skip CRLFs between messages.
                    let blank = buf.chunks(2).take_while(|c| *c == b"\r\n").count();
                    if blank > 0 {
                        buf.advance(blank * 2);
                        *scan = 0;
                    }
                    if buf.is_empty() || buf.first() == Some(&b'\r') && buf.len() == 1 {
                        return Ok(None);
                    }
                    let limit = self.limits.max_line_length.saturating_add(2);
                    let from = (*scan).min(buf.len());
                    let window_end = buf.len().min(limit);
                    let has_lf = from < window_end
                        && memchr::memchr(b'\n', buf.get(from..window_end).unwrap_or_default())
                            .is_some();
                    if !has_lf && *scan >= 40 && buf.len() <= limit {
                        // Start and transaction-id already checked; still no LF.
                        *scan = buf.len();
                        return Ok(None);
                    }
                    match scan_start_line(buf, &self.limits)? {
                        None => {
                            *scan = buf.len();
                            return Ok(None);
                        }
                        Some(start) => {
                            self.state = State::Frame {
                                start,
                                scan: start.line_end,
                            };
                        }
                    }
                }
                State::Frame { start, scan } => {
                    let start = *start;
                    let tid = buf.get(5..start.tid_end).unwrap_or_default();
                    match find_end_line(buf, *scan, tid) {
                        EndSearch::Found { pos, end, flag } => {
                            if end > max_frame {
                                // Whole but too large: the same verdict as when it arrives in
                                // pieces and is skipped.
                                let body_start = body_start_within(buf, &self.limits);
                                let tid = Bytes::copy_from_slice(tid);
                                buf.advance(end);
                                self.state = State::Start { scan: 0 };
                                return Ok(Some(Frame::Rejected {
                                    transaction_id: tid,
                                    error: too_large(body_start, pos, &self.limits),
                                }));
                            }
                            let frame = buf.split_to(end).freeze();
                            self.state = State::Start { scan: 0 };
                            return Ok(Some(
                                match parse_frame(&frame, start, pos, flag, &self.limits) {
                                    Ok(m) => Frame::Message(m),
                                    Err(error) => Frame::Rejected {
                                        transaction_id: frame.slice(5..start.tid_end),
                                        error,
                                    },
                                },
                            ));
                        }
                        EndSearch::NotYet { resume } => {
                            if buf.len() <= max_frame {
                                *scan = resume;
                                return Ok(None);
                            }
                            let body_start = body_start_within(buf, &self.limits);
                            let mut t = [0u8; 32];
                            let tid_len = tid.len().min(32);
                            if let (Some(dst), Some(src)) =
                                (t.get_mut(..tid_len), tid.get(..tid_len))
                            {
                                dst.copy_from_slice(src);
                            }
                            let consumed = resume.min(buf.len());
                            buf.advance(consumed);
                            self.state = State::Skip {
                                tid: t,
                                tid_len,
                                body_start,
                                consumed,
                            };
                        }
                    }
                }
                State::Skip {
                    tid,
                    tid_len,
                    body_start,
                    consumed,
                } => {
                    let tid_bytes = tid.get(..*tid_len).unwrap_or_default();
                    match find_end_line(buf, 0, tid_bytes) {
                        EndSearch::Found { pos, end, .. } => {
                            let frame = Frame::Rejected {
                                transaction_id: Bytes::copy_from_slice(tid_bytes),
                                error: too_large(
                                    *body_start,
                                    consumed.saturating_add(pos),
                                    &self.limits,
                                ),
                            };
                            buf.advance(end);
                            self.state = State::Start { scan: 0 };
                            return Ok(Some(frame));
                        }
                        EndSearch::NotYet { resume } => {
                            let n = resume.min(buf.len());
                            buf.advance(n);
                            *consumed = consumed.saturating_add(n);
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, MsrpError> {
        if let Some(f) = self.decode(buf)? {
            return Ok(Some(f));
        }
        let idle = matches!(self.state, State::Start { .. })
            && buf.iter().all(|b| *b == b'\r' || *b == b'\n');
        if idle {
            buf.clear();
            Ok(None)
        } else {
            let buffered = buf.len();
            buf.clear();
            self.state = State::Start { scan: 0 };
            Err(MsrpError::Truncated { buffered })
        }
    }
}

/// Where the body of the message at the front of `buf` starts, when its header section ends
/// within [`Limits::max_header_bytes`].
fn body_start_within(buf: &[u8], limits: &Limits) -> Option<usize> {
    let head = buf
        .get(..buf.len().min(limits.max_header_bytes.saturating_add(4)))
        .unwrap_or_default();
    crate::wire::text::find_blank_line(head, 0).map(|blank| blank + 4)
}

/// The error for a message over the size limits whose end-line (its CRLF) is at `end_pos`:
/// a chunk too large when its header section ended within the limits, else a header section
/// too large.
fn too_large(body_start: Option<usize>, end_pos: usize, limits: &Limits) -> MsrpError {
    match body_start {
        Some(b) => MsrpError::ChunkTooLarge {
            size: end_pos.saturating_sub(b),
            limit: limits.max_chunk_size,
            offset: b,
        },
        None => MsrpError::HeadersTooLarge {
            limit: limits.max_header_bytes,
            offset: limits.max_header_bytes,
        },
    }
}

impl Encoder<&Message> for MsrpCodec {
    type Error = MsrpError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), MsrpError> {
        item.encode(dst);
        Ok(())
    }
}

impl Encoder<Message> for MsrpCodec {
    type Error = MsrpError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), MsrpError> {
        item.encode(dst);
        Ok(())
    }
}
