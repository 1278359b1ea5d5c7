//! SIP over a byte stream (TCP, TLS): Content-Length framing (RFC 3261 §18.3) and CRLF
//! keep-alives (RFC 5626 §4.4.1), as a tokio-util `Decoder`/`Encoder` (no runtime needed).

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::parse::{self, Head};
use super::{Fault, Limits, SipError, SipMessage};
use crate::wire::text::{find_blank_line, find_crlf, split_header, trim_ws};
use crate::wire::{Answer, WireError};

/// What the stream decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipFrame {
    /// A complete, valid message.
    Message(SipMessage),
    /// A keep-alive ping, `CRLF CRLF` between messages (RFC 5626 §4.4.1): answer with
    /// [`KeepAlive::Pong`].
    KeepAlivePing,
    /// A single `CRLF` between messages: the pong answering our ping, or a stray CRLF before
    /// a message (RFC 3261 §7.5 says to ignore those).
    KeepAlivePong,
    /// A message whose framing was still known (Content-Length readable) but that cannot be
    /// used. Its bytes have been consumed (a body over the size limit is skipped as it
    /// arrives); the connection stays usable. Answer with `error.answer()`; `head` is the
    /// raw start line and header block, for building that answer.
    Rejected { error: SipError, head: Bytes },
}

/// What the stream encoder writes besides messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// `CRLF CRLF`. The next single CRLF received is reported as [`SipFrame::KeepAlivePong`].
    Ping,
    /// `CRLF`, the answer to a ping.
    Pong,
}

/// A stream failure: the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Where the next message starts is no longer known.
    #[error("SIP framing lost: {0}")]
    Framing(SipError),
    /// The peer closed the connection inside a message.
    #[error("connection closed inside a message ({0} bytes pending)")]
    Truncated(usize),
    /// The underlying transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl WireError for StreamError {
    fn answer(&self) -> Answer {
        match self {
            StreamError::Framing(e) => e.answer(),
            _ => Answer::Drop,
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            StreamError::Framing(e) => e.offset(),
            _ => None,
        }
    }
}

/// How many bytes of an over-long body the decoder skips before giving up on the connection:
/// this many times [`Limits::max_message`].
const MAX_DISCARD_FACTOR: usize = 16;

/// Stream decoder/encoder state.
#[derive(Debug)]
pub struct SipStreamCodec {
    limits: Limits,
    /// Bytes at the front of the buffer already searched for the end of the header block.
    scanned: usize,
    /// The first line of the pending head has been seen complete.
    first_line_seen: bool,
    /// A parsed head waiting for its body of this many bytes.
    pending: Option<(Head, usize)>,
    /// Bytes of a rejected message's body still to skip.
    discard: usize,
    /// We sent a ping and wait for its pong.
    awaiting_pong: bool,
    /// Framing was lost: every later call fails with this.
    failed: Option<SipError>,
}

impl Default for SipStreamCodec {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl SipStreamCodec {
    /// A codec for one connection.
    pub fn new(limits: Limits) -> Self {
        SipStreamCodec {
            limits,
            scanned: 0,
            first_line_seen: false,
            pending: None,
            discard: 0,
            awaiting_pong: false,
            failed: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn fatal(&mut self, error: SipError) -> StreamError {
        self.failed = Some(error.clone());
        StreamError::Framing(error)
    }

    /// Skip `len` body bytes, or fail when that is beyond reason.
    fn skip_body(&mut self, len: usize, error: SipError) -> Result<(), StreamError> {
        if len > self.limits.max_message.saturating_mul(MAX_DISCARD_FACTOR) {
            return Err(self.fatal(error));
        }
        self.discard = len;
        Ok(())
    }

    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<Option<SipFrame>, StreamError> {
        let from = self.scanned.saturating_sub(3);
        let Some(blank) = find_blank_line(buf, from) else {
            self.scanned = buf.len();
            if !self.first_line_seen {
                if find_crlf(buf, 0).is_some() {
                    self.first_line_seen = true;
                } else if buf.len() > self.limits.max_line {
                    let fault = Fault::LineTooLong {
                        limit: self.limits.max_line,
                    };
                    return Err(self.fatal(SipError::Unreadable {
                        fault,
                        offset: Some(0),
                    }));
                }
            }
            if buf.len() > self.limits.max_message {
                let fault = Fault::MessageTooLarge {
                    size: buf.len(),
                    limit: self.limits.max_message,
                };
                let error = parse::classify_error(buf, &self.limits, fault, None);
                return Err(self.fatal(error));
            }
            return Ok(None);
        };
        self.scanned = 0;
        self.first_line_seen = false;
        // Same verdict as when the first line arrives alone: a start line over the limit
        // loses the framing, whatever follows it.
        if find_crlf(buf, 0).is_some_and(|end| end > self.limits.max_line) {
            let fault = Fault::LineTooLong {
                limit: self.limits.max_line,
            };
            return Err(self.fatal(SipError::Unreadable {
                fault,
                offset: Some(0),
            }));
        }
        let head_len = blank.saturating_add(4);
        if head_len > self.limits.max_message {
            // Same verdict as when the head arrives in pieces: a header block over the limit
            // cannot be buffered, so its end is not known.
            let fault = Fault::MessageTooLarge {
                size: head_len,
                limit: self.limits.max_message,
            };
            let error = parse::classify_error(buf, &self.limits, fault, None);
            return Err(self.fatal(error));
        }
        let raw = buf.split_to(head_len.min(buf.len())).freeze();
        let head = match parse::parse_head(&raw, blank, &self.limits) {
            Ok(head) => head,
            Err(error) => {
                // Is the framing still known? Only when one readable Content-Length says so.
                return match framing_length(&raw) {
                    Some(len) => {
                        self.skip_body(len, error.clone())?;
                        Ok(Some(SipFrame::Rejected { error, head: raw }))
                    }
                    None => Err(self.fatal(error)),
                };
            }
        };
        let Some(len) = head.content_length else {
            // RFC 3261 §18.3: required on streams. Without it, assume no body (ACKs and
            // responses from sloppy peers) and let the next start line tell.
            let error = head.error(Fault::ContentLengthRequired, None);
            return Ok(Some(SipFrame::Rejected { error, head: raw }));
        };
        let total = head_len.saturating_add(len);
        if total > self.limits.max_message {
            let fault = Fault::MessageTooLarge {
                size: total,
                limit: self.limits.max_message,
            };
            let error = head.error(fault, None);
            self.skip_body(len, error.clone())?;
            return Ok(Some(SipFrame::Rejected { error, head: raw }));
        }
        self.pending = Some((head, len));
        self.decode_body(buf)
    }

    fn decode_body(&mut self, buf: &mut BytesMut) -> Result<Option<SipFrame>, StreamError> {
        let Some((_, len)) = &self.pending else {
            return Ok(None);
        };
        let len = *len;
        if buf.len() < len {
            buf.reserve(len - buf.len());
            return Ok(None);
        }
        let Some((head, _)) = self.pending.take() else {
            return Ok(None);
        };
        let body = buf.split_to(len).freeze();
        Ok(Some(SipFrame::Message(head.into_message(body))))
    }
}

/// Content-Length read from a raw header block without the full parser, for skipping the body
/// of a message the parser rejected. `None` unless exactly one readable value is present.
fn framing_length(raw: &[u8]) -> Option<usize> {
    let mut found: Option<usize> = None;
    let mut pos = find_crlf(raw, 0)?.saturating_add(2);
    while let Some(end) = find_crlf(raw, pos) {
        let line = raw.get(pos..end)?;
        pos = end.saturating_add(2);
        let Some((name, value)) = split_header(line) else {
            continue;
        };
        if name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l") {
            let value = trim_ws(value);
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = value.iter().try_fold(0usize, |acc, b| {
                acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
            })?;
            if found.is_some_and(|f| f != n) {
                return None;
            }
            found = Some(n);
        }
    }
    found
}

impl Decoder for SipStreamCodec {
    type Item = SipFrame;
    type Error = StreamError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<SipFrame>, StreamError> {
        if let Some(error) = &self.failed {
            return Err(StreamError::Framing(error.clone()));
        }
        if self.discard > 0 {
            let n = self.discard.min(buf.len());
            buf.advance(n);
            self.discard -= n;
            if self.discard > 0 {
                return Ok(None);
            }
        }
        if self.pending.is_some() {
            return self.decode_body(buf);
        }
        if self.scanned == 0 {
            // Between messages: keep-alives (RFC 5626 §4.4.1).
            match buf.as_ref() {
                [b'\r', b'\n', ..] if self.awaiting_pong => {
                    buf.advance(2);
                    self.awaiting_pong = false;
                    return Ok(Some(SipFrame::KeepAlivePong));
                }
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    buf.advance(4);
                    return Ok(Some(SipFrame::KeepAlivePing));
                }
                // Not yet known whether this is a ping or a pong.
                [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => return Ok(None),
                [b'\r', b'\n', ..] => {
                    buf.advance(2);
                    return Ok(Some(SipFrame::KeepAlivePong));
                }
                [] => return Ok(None),
                _ => {}
            }
        }
        self.decode_head(buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<SipFrame>, StreamError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if self.pending.is_none() && self.discard == 0 {
            match buf.as_ref() {
                [] => return Ok(None),
                [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => {
                    buf.advance(2);
                    return Ok(Some(SipFrame::KeepAlivePong));
                }
                _ => {}
            }
        }
        let pending = buf.len();
        buf.clear();
        self.pending = None;
        self.scanned = 0;
        if self.discard > 0 || pending > 0 {
            self.discard = 0;
            return Err(StreamError::Truncated(pending));
        }
        Ok(None)
    }
}

impl Encoder<&SipMessage> for SipStreamCodec {
    type Error = StreamError;

    fn encode(&mut self, item: &SipMessage, dst: &mut BytesMut) -> Result<(), StreamError> {
        item.encode(dst);
        Ok(())
    }
}

impl Encoder<SipMessage> for SipStreamCodec {
    type Error = StreamError;

    fn encode(&mut self, item: SipMessage, dst: &mut BytesMut) -> Result<(), StreamError> {
        item.encode(dst);
        Ok(())
    }
}

impl Encoder<KeepAlive> for SipStreamCodec {
    type Error = StreamError;

    fn encode(&mut self, item: KeepAlive, dst: &mut BytesMut) -> Result<(), StreamError> {
        match item {
            KeepAlive::Ping => {
                self.awaiting_pong = true;
                dst.extend_from_slice(b"\r\n\r\n");
            }
            KeepAlive::Pong => dst.extend_from_slice(b"\r\n"),
        }
        Ok(())
    }
}
