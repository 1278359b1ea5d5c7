//! Reassembly of a chunked MSRP message into one whole body before it is recorded (RFC 4975
//! §7.1: a sender may split a message into chunks sharing its Message-ID, each placed by its
//! Byte-Range; the `$` end-line flag ends it, `#` aborts it).
//!
//! Bounded: at most `max_messages` messages in progress per session and `max_bytes` per
//! message; a message beyond either is dropped (its relaying is not affected, only its
//! record). Chunks are expected in order, as one TCP connection delivers them; a chunk that
//! repeats bytes already held is ignored, one that leaves a gap drops the message (the record
//! would be wrong).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::wire::msrp::{ByteRange, Continuation};

/// Why a message will not be recorded whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReassemblyError {
    /// The message is larger than the bound.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// Too many messages in progress at once.
    #[error("more than {0} messages in progress")]
    TooMany(usize),
    /// A chunk does not continue what was received.
    #[error("chunk at byte {start} leaves a gap after byte {held}")]
    Gap {
        /// The chunk's first byte (1-based).
        start: u64,
        /// Bytes held so far.
        held: usize,
    },
    /// The sender aborted the message (`#`).
    #[error("message aborted by its sender")]
    Aborted,
}

struct Partial {
    content_type: Option<Bytes>,
    body: BytesMut,
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whole {
    /// The MSRP Message-ID.
    pub message_id: Bytes,
    /// The Content-Type of its first chunk.
    pub content_type: Option<Bytes>,
    /// The whole body.
    pub body: Bytes,
}

/// The messages of one session being reassembled.
pub struct Reassembly {
    max_bytes: usize,
    max_messages: usize,
    partial: HashMap<Bytes, Partial>,
}

impl Reassembly {
    /// A reassembly with these bounds.
    pub fn new(max_bytes: usize, max_messages: usize) -> Self {
        Reassembly {
            max_bytes,
            max_messages,
            partial: HashMap::new(),
        }
    }

    /// Messages in progress.
    pub fn in_progress(&self) -> usize {
        self.partial.len()
    }

    /// One chunk of message `message_id`; `Ok(Some)` when it completes the message.
    pub fn chunk(
        &mut self,
        message_id: &Bytes,
        range: Option<ByteRange>,
        content_type: Option<&Bytes>,
        body: &Bytes,
        flag: Continuation,
    ) -> Result<Option<Whole>, ReassemblyError> {
        if flag == Continuation::Aborted {
            self.partial.remove(message_id);
            return Err(ReassemblyError::Aborted);
        }
        let start = range.map_or(1, |r| r.start);
        let whole_in_one = start == 1 && flag == Continuation::Complete;
        if whole_in_one && !self.partial.contains_key(message_id) {
            // The usual case: one chunk, nothing to copy.
            if body.len() > self.max_bytes {
                return Err(ReassemblyError::TooLarge(self.max_bytes));
            }
            return Ok(Some(Whole {
                message_id: message_id.clone(),
                content_type: content_type.cloned(),
                body: body.clone(),
            }));
        }
        if !self.partial.contains_key(message_id) && self.partial.len() >= self.max_messages {
            return Err(ReassemblyError::TooMany(self.max_messages));
        }
        let p = self
            .partial
            .entry(message_id.clone())
            .or_insert_with(|| Partial {
                content_type: content_type.cloned(),
                body: BytesMut::new(),
            });
        let offset = usize::try_from(start.saturating_sub(1)).unwrap_or(usize::MAX);
        let held = p.body.len();
        let result = if offset > held {
            Err(ReassemblyError::Gap { start, held })
        } else {
            // What of this chunk is new (a resent chunk overlaps what is held).
            let new = body.get(held - offset..).unwrap_or_default();
            if held.saturating_add(new.len()) > self.max_bytes {
                Err(ReassemblyError::TooLarge(self.max_bytes))
            } else {
                p.body.extend_from_slice(new);
                Ok(())
            }
        };
        if let Err(e) = result {
            self.partial.remove(message_id);
            return Err(e);
        }
        if flag != Continuation::Complete {
            return Ok(None);
        }
        Ok(self.partial.remove(message_id).map(|p| Whole {
            message_id: message_id.clone(),
            content_type: p.content_type,
            body: p.body.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, len: usize, total: u64) -> Option<ByteRange> {
        Some(ByteRange {
            start,
            end: Some(start + len as u64 - 1),
            total: Some(total),
        })
    }

    #[test]
    fn chunks_in_order_make_the_message() {
        let mut r = Reassembly::new(1 << 20, 4);
        let id = Bytes::from_static(b"m1");
        let ct = Bytes::from_static(b"message/cpim");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = None;
        for (i, c) in data.chunks(2048).enumerate() {
            let flag = if (i + 1) * 2048 >= data.len() {
                Continuation::Complete
            } else {
                Continuation::More
            };
            let got = r
                .chunk(
                    &id,
                    range(1 + (i * 2048) as u64, c.len(), 10_000),
                    Some(&ct),
                    &Bytes::copy_from_slice(c),
                    flag,
                )
                .expect("fits");
            if got.is_some() {
                out = got;
            }
        }
        let w = out.expect("complete");
        assert_eq!(w.body.as_ref(), data.as_slice());
        assert_eq!(w.content_type, Some(ct));
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn a_repeated_chunk_is_ignored_and_a_gap_drops_the_message() {
        let mut r = Reassembly::new(100, 4);
        let id = Bytes::from_static(b"m");
        let b = Bytes::from_static(b"abcd");
        assert_eq!(
            r.chunk(&id, range(1, 4, 8), None, &b, Continuation::More),
            Ok(None)
        );
        assert_eq!(
            r.chunk(&id, range(1, 4, 8), None, &b, Continuation::More),
            Ok(None)
        );
        let w = r
            .chunk(
                &id,
                range(3, 4, 8),
                None,
                &Bytes::from_static(b"cdef"),
                Continuation::More,
            )
            .expect("overlap");
        assert_eq!(w, None);
        let w = r
            .chunk(
                &id,
                range(7, 2, 8),
                None,
                &Bytes::from_static(b"gh"),
                Continuation::Complete,
            )
            .expect("end")
            .expect("whole");
        assert_eq!(w.body.as_ref(), b"abcdefgh");
        assert_eq!(
            r.chunk(&id, range(1, 4, 9), None, &b, Continuation::More),
            Ok(None)
        );
        assert_eq!(
            r.chunk(&id, range(6, 4, 9), None, &b, Continuation::Complete),
            Err(ReassemblyError::Gap { start: 6, held: 4 })
        );
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn bounds_and_aborts() {
        let mut r = Reassembly::new(6, 1);
        let b = Bytes::from_static(b"abcd");
        let (m1, m2) = (Bytes::from_static(b"1"), Bytes::from_static(b"2"));
        assert_eq!(
            r.chunk(&m1, range(1, 4, 8), None, &b, Continuation::More),
            Ok(None)
        );
        assert_eq!(
            r.chunk(&m2, range(1, 4, 8), None, &b, Continuation::More),
            Err(ReassemblyError::TooMany(1))
        );
        assert_eq!(
            r.chunk(&m1, range(5, 4, 8), None, &b, Continuation::Complete),
            Err(ReassemblyError::TooLarge(6))
        );
        assert_eq!(
            r.chunk(&m2, range(1, 4, 8), None, &b, Continuation::More),
            Ok(None)
        );
        assert_eq!(
            r.chunk(&m2, range(5, 1, 8), None, &b, Continuation::Aborted),
            Err(ReassemblyError::Aborted)
        );
        assert_eq!(r.in_progress(), 0);
        assert_eq!(
            r.chunk(
                &m1,
                None,
                None,
                &Bytes::from_static(b"toolong"),
                Continuation::Complete
            ),
            Err(ReassemblyError::TooLarge(6))
        );
    }
}
