//! MSRP (RFC 4975, relay extensions of RFC 4976): one message parser, a serializer, and a
//! streaming [`MsrpCodec`] (tokio-util `Decoder`/`Encoder`, no runtime) over `BytesMut`.
//!
//! The model keeps the wire order of the header fields and slices every value and the body out
//! of the input (`Bytes`), so a parsed message costs one `Vec` and no copies. Typed views
//! ([`Message::to_path`], [`Message::byte_range`], [`Message::status`] ...) are computed on
//! demand; [`parse`] has already checked every header field it knows against the RFC 4975 §9
//! grammar, so on a parsed message they only fail for values set by hand.
//!
//! ```text
//! MSRP a786hjs2 SEND                                          <- start line (tid, method)
//! To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
//! From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
//! Message-ID: 87652491
//! Byte-Range: 1-25/25
//! Content-Type: text/plain
//!                                                             <- blank line, then the body
//! Hey Bob, are you there?
//! -------a786hjs2$                                            <- end-line: $ complete, + more, # aborted
//! ```
//!
//! Leniency, each documented where it happens: header fields in any order (To-Path and
//! From-Path must be present, not necessarily first), white space around `:` and values,
//! header names compared case-insensitively, `Byte-Range` not checked against the body at parse
//! time ([`Message::check_byte_range`] does that). Serializing writes the canonical form
//! (`Name: value`), which is byte-identical for a message that was canonical already.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use cpm_iwf::wire::msrp::{self, Frame, Limits, Method, MsrpCodec};
//! use tokio_util::codec::Decoder;
//!
//! let wire = Bytes::from_static(
//!     b"MSRP a786hjs2 SEND\r\n\
//!       To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
//!       From-Path: msrp://alice.example.com:7777/iau39soe2843z;tcp\r\n\
//!       Message-ID: 87652491\r\n\
//!       Byte-Range: 1-2/2\r\n\
//!       Content-Type: text/plain\r\n\r\n\
//!       hi\r\n-------a786hjs2$\r\n",
//! );
//! let send = msrp::parse(wire.clone(), &Limits::default()).unwrap();
//! assert_eq!(send.method(), Some(&Method::Send));
//! assert_eq!(send.body.as_deref(), Some(&b"hi"[..]));
//! assert_eq!(send.to_bytes(), wire);
//!
//! // The 200 goes back to the previous hop (RFC 4975 §7.2).
//! let ok = msrp::Message::response_to(&send, 200, Some(Bytes::from_static(b"OK"))).unwrap();
//! assert_eq!(ok.to_path().unwrap()[0].port, Some(7777));
//!
//! // The same bytes arriving on a connection, in two pieces.
//! let mut codec = MsrpCodec::default();
//! let mut buf = BytesMut::from(&wire[..40]);
//! assert_eq!(codec.decode(&mut buf).unwrap(), None);
//! buf.extend_from_slice(&wire[40..]);
//! assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Message(send)));
//! ```

mod codec;
mod error;
mod uri;

use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem::Finder;

pub use codec::{Frame, MsrpCodec};
pub use error::MsrpError;
pub use uri::{MsrpUri, UriList, write_uri_list};

use uri::push_decimal;

/// Bounds on what the parser and the decoder accept. Every field is a hard limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest body of one chunk, in bytes. Default 1 MiB: far above the chunk sizes MSRP
    /// peers use (RFC 4975 §5.1 only requires chunks over 2048 bytes to be interruptible;
    /// clients commonly send 2–64 KiB chunks), small enough that a relay can buffer a chunk.
    pub max_chunk_size: usize,
    /// Most header fields in one message. Default 64 (a SEND has 5–8; RFC 4976 adds a few).
    pub max_headers: usize,
    /// Longest start line or header line, without its CRLF. Default 8 KiB: a To-Path with
    /// several relay hops stays well under 1 KiB; Digest challenges under 2 KiB.
    pub max_line_length: usize,
    /// Longest start line plus header section (up to the blank line or end-line).
    /// Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most URIs in one To-Path, From-Path or Use-Path. Default 16 (RFC 4976 relays add one
    /// hop each; real paths have 1–4).
    pub max_path_uris: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chunk_size: 1024 * 1024,
            max_headers: 64,
            max_line_length: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_path_uris: 16,
        }
    }
}

/// A request method (RFC 4975 §9 `method = mSEND / mREPORT / other-method`; AUTH is RFC 4976).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `SEND`: carries a message or a chunk of one.
    Send,
    /// `REPORT`: delivery status (RFC 4975 §7.1.2).
    Report,
    /// `AUTH`: authentication to a relay (RFC 4976 §7.1).
    Auth,
    /// Any other `1*UPALPHA` method, kept as written (a receiver answers 501).
    Other(Bytes),
}

impl Method {
    /// The method as it appears on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Method::Send => b"SEND",
            Method::Report => b"REPORT",
            Method::Auth => b"AUTH",
            Method::Other(m) => m,
        }
    }

    fn from_wire(src: &Bytes, start: usize, end: usize) -> Method {
        match src.get(start..end).unwrap_or_default() {
            b"SEND" => Method::Send,
            b"REPORT" => Method::Report,
            b"AUTH" => Method::Auth,
            _ => Method::Other(src.slice(start..end)),
        }
    }
}

/// What follows the transaction-id on the start line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StartLine {
    /// `MSRP <tid> <method>`.
    Request {
        /// The method.
        method: Method,
    },
    /// `MSRP <tid> <status-code> [comment]`.
    Response {
        /// Three-digit status code (RFC 4975 §10).
        code: u16,
        /// The comment (reason phrase), if any.
        comment: Option<Bytes>,
    },
}

/// The end-line's continuation flag (RFC 4975 §9 `continuation-flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Continuation {
    /// `$`: this chunk ends the message.
    Complete,
    /// `+`: more chunks follow (also an interrupted chunk, RFC 4975 §7.1.1).
    More,
    /// `#`: the message is aborted.
    Aborted,
}

impl Continuation {
    /// The flag byte.
    pub fn as_byte(self) -> u8 {
        match self {
            Continuation::Complete => b'$',
            Continuation::More => b'+',
            Continuation::Aborted => b'#',
        }
    }

    fn from_byte(b: u8) -> Option<Continuation> {
        match b {
            b'$' => Some(Continuation::Complete),
            b'+' => Some(Continuation::More),
            b'#' => Some(Continuation::Aborted),
            _ => None,
        }
    }
}

/// One header field, name and value as written (value without surrounding white space).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The name (compare with `eq_ignore_ascii_case`).
    pub name: Bytes,
    /// The value.
    pub value: Bytes,
}

/// `Byte-Range: range-start "-" range-end "/" total` (RFC 4975 §9), 1-based, `*` = unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte of this chunk in the whole message (1-based).
    pub start: u64,
    /// Last byte of this chunk, `None` for `*`.
    pub end: Option<u64>,
    /// Size of the whole message, `None` for `*`.
    pub total: Option<u64>,
}

impl ByteRange {
    /// Parse a Byte-Range value; the error says what is wrong in operator words.
    pub fn parse(v: &[u8]) -> Result<ByteRange, String> {
        // A few bytes (`1-1024/1024`), read several times per relayed chunk: plain loops, not
        // `memchr` (its set-up per call costs more than these searches).
        let dash = v
            .iter()
            .position(|b| *b == b'-')
            .ok_or("expected start-end/total")?;
        let slash = v
            .iter()
            .position(|b| *b == b'/')
            .ok_or("expected start-end/total")?;
        if slash < dash {
            return Err("expected start-end/total".into());
        }
        let start =
            parse_u64(v.get(..dash).unwrap_or_default()).ok_or("range-start is not a number")?;
        let end = parse_u64_or_star(v.get(dash + 1..slash).unwrap_or_default())
            .ok_or("range-end is not a number or *")?;
        let total = parse_u64_or_star(v.get(slash + 1..).unwrap_or_default())
            .ok_or("total is not a number or *")?;
        if start == 0 {
            return Err("start 0, but byte positions start at 1".into());
        }
        if let Some(e) = end {
            // end = start - 1 describes an empty chunk.
            if e.saturating_add(1) < start {
                return Err(format!("end {e} before start {start}"));
            }
            if let Some(t) = total
                && e > t
            {
                return Err(format!("end {e} after total {t}"));
            }
        }
        Ok(ByteRange { start, end, total })
    }

    /// Append the value (`1-25/25`, `1-*/*`) to `dst`.
    pub fn write_to(&self, dst: &mut BytesMut) {
        push_decimal(dst, self.start);
        dst.put_u8(b'-');
        match self.end {
            Some(e) => push_decimal(dst, e),
            None => dst.put_u8(b'*'),
        }
        dst.put_u8(b'/');
        match self.total {
            Some(t) => push_decimal(dst, t),
            None => dst.put_u8(b'*'),
        }
    }

    /// The value as `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(24);
        self.write_to(&mut b);
        b.freeze()
    }
}

/// `Status: namespace SP status-code [SP text-reason]` (RFC 4975 §9), in REPORT requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Status {
    /// Namespace (`000` for the codes of RFC 4975 §10).
    pub namespace: u16,
    /// Status code.
    pub code: u16,
    /// Reason text, if any.
    pub comment: Option<Bytes>,
}

impl Status {
    /// Parse a Status value held in `v` (the comment is sliced from it).
    pub fn parse(v: &Bytes) -> Result<Status, String> {
        let ns = v
            .get(..3)
            .and_then(three_digits)
            .ok_or("namespace is not 3 digits")?;
        if v.get(3) != Some(&b' ') {
            return Err("expected \"namespace SP status-code\"".into());
        }
        let code = v
            .get(4..7)
            .and_then(three_digits)
            .ok_or("status-code is not 3 digits")?;
        let comment = match v.get(7) {
            None => None,
            Some(b' ') => Some(v.slice(8..)),
            Some(_) => return Err("status-code is not 3 digits".into()),
        };
        Ok(Status {
            namespace: ns,
            code,
            comment,
        })
    }

    /// The value as `Bytes` (`000 200 OK`).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(8 + self.comment.as_ref().map_or(0, Bytes::len));
        push_three_digits(&mut b, self.namespace);
        b.put_u8(b' ');
        push_three_digits(&mut b, self.code);
        if let Some(c) = &self.comment {
            b.put_u8(b' ');
            b.extend_from_slice(c);
        }
        b.freeze()
    }
}

/// Success-Report / Failure-Report values (RFC 4975 §9; `partial` only in Failure-Report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportRequest {
    /// `yes`
    Yes,
    /// `no`
    No,
    /// `partial`
    Partial,
}

/// One MSRP request or response, or one chunk of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The transaction-id (RFC 4975 §9 `transact-id`: 4–32 characters).
    pub transaction_id: Bytes,
    /// Method or status code.
    pub start: StartLine,
    /// Header fields in wire order.
    pub headers: Vec<Header>,
    /// The body; `None` when there was no blank line after the header fields.
    pub body: Option<Bytes>,
    /// The end-line flag.
    pub continuation: Continuation,
}

/// The end-line prefix: CRLF (ending the previous line or the body) and seven hyphens
/// (RFC 4975 §9 `end-line = "-------" transact-id continuation-flag CRLF`). Built once.
pub(crate) static END_LINE: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\r\n-------"));
/// Length of [`END_LINE`]'s needle.
pub(crate) const END_PREFIX: usize = 9;

/// Header fields the parser checks (and that may appear only once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    ToPath,
    FromPath,
    UsePath,
    MessageId,
    ByteRange,
    SuccessReport,
    FailureReport,
    Status,
    ContentType,
    Expires,
    MinExpires,
    MaxExpires,
}

impl Known {
    fn of(name: &[u8]) -> Option<Known> {
        const ALL: [(&[u8], Known); 12] = [
            (b"To-Path", Known::ToPath),
            (b"From-Path", Known::FromPath),
            (b"Message-ID", Known::MessageId),
            (b"Byte-Range", Known::ByteRange),
            (b"Content-Type", Known::ContentType),
            (b"Success-Report", Known::SuccessReport),
            (b"Failure-Report", Known::FailureReport),
            (b"Status", Known::Status),
            (b"Use-Path", Known::UsePath),
            (b"Expires", Known::Expires),
            (b"Min-Expires", Known::MinExpires),
            (b"Max-Expires", Known::MaxExpires),
        ];
        ALL.iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
            .map(|(_, k)| *k)
    }

    fn name(self) -> &'static str {
        match self {
            Known::ToPath => "To-Path",
            Known::FromPath => "From-Path",
            Known::UsePath => "Use-Path",
            Known::MessageId => "Message-ID",
            Known::ByteRange => "Byte-Range",
            Known::SuccessReport => "Success-Report",
            Known::FailureReport => "Failure-Report",
            Known::Status => "Status",
            Known::ContentType => "Content-Type",
            Known::Expires => "Expires",
            Known::MinExpires => "Min-Expires",
            Known::MaxExpires => "Max-Expires",
        }
    }
}

fn parse_u64(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0u64, |a, c| a * 10 + u64::from(c - b'0')))
}

fn parse_u64_or_star(d: &[u8]) -> Option<Option<u64>> {
    if d == b"*" {
        Some(None)
    } else {
        parse_u64(d).map(Some)
    }
}

fn three_digits(d: &[u8]) -> Option<u16> {
    match d {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

fn push_three_digits(dst: &mut BytesMut, n: u16) {
    let n = n.min(999);
    dst.put_u8(b'0' + (n / 100) as u8);
    dst.put_u8(b'0' + (n / 10 % 10) as u8);
    dst.put_u8(b'0' + (n % 10) as u8);
}

/// RFC 4975 §9 `ident = ALPHANUM 3*31ident-char`, `ident-char = ALPHANUM / "." / "-" / "+" /
/// "%" / "="`. Used for transaction-id and Message-ID.
pub fn is_ident(s: &[u8]) -> bool {
    (4..=32).contains(&s.len())
        && s.first().is_some_and(u8::is_ascii_alphanumeric)
        && s.iter().all(|b| uri::is_ident_char(*b))
}

/// RFC 4975 §9 `utf8text`: HTAB, printable ASCII and any non-ASCII byte (UTF-8 is not
/// validated here; values are kept as bytes).
#[inline]
fn is_text(s: &[u8]) -> bool {
    // Branch-free so that it vectorizes.
    !s.iter().fold(false, |bad, b| {
        bad | ((*b < 0x20) & (*b != b'\t')) | (*b == 0x7f)
    })
}

/// The start line of a message at the front of `buf`: `MSRP SP transact-id SP ...`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartScan {
    /// End of the transaction-id (it starts at 5).
    pub tid_end: usize,
    /// Index of the CRLF that ends the start line.
    pub line_end: usize,
}

/// Find and check the start line's framing part. `Ok(None)`: need more bytes. Errors here
/// are unrecoverable for a stream: without a transaction-id the end-line cannot be found.
pub(crate) fn scan_start_line(buf: &[u8], limits: &Limits) -> Result<Option<StartScan>, MsrpError> {
    let bad = |what, offset| Err(MsrpError::BadStartLine { what, offset });
    let head = buf.get(..buf.len().min(5)).unwrap_or_default();
    if !b"MSRP ".starts_with(head) {
        return bad("does not begin with \"MSRP \"", 0);
    }
    let window = buf
        .get(..buf.len().min(limits.max_line_length.saturating_add(2)))
        .unwrap_or_default();
    let Some(nl) = memchr::memchr(b'\n', window) else {
        if buf.len() > limits.max_line_length.saturating_add(1) {
            return Err(MsrpError::LineTooLong {
                limit: limits.max_line_length,
                offset: 0,
            });
        }
        // The transaction-id can be checked before the line is complete.
        if let Some(tid) = buf.get(5..) {
            let tid_len = tid
                .iter()
                .position(|b| *b == b' ' || *b == b'\r')
                .unwrap_or(tid.len());
            if tid_len > 32
                || !tid
                    .get(..tid_len)
                    .unwrap_or_default()
                    .iter()
                    .all(|b| uri::is_ident_char(*b))
            {
                return bad(
                    "transaction-id is not 4 to 32 characters of A-Z a-z 0-9 . - + % =",
                    5,
                );
            }
        }
        return Ok(None);
    };
    if nl == 0 || buf.get(nl - 1) != Some(&b'\r') {
        return bad("start line does not end with CRLF", nl);
    }
    let line_end = nl - 1;
    if buf.len() < 5 {
        return bad("does not begin with \"MSRP \"", 0);
    }
    let line = buf.get(5..line_end).unwrap_or_default();
    let tid_len = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
    if !is_ident(line.get(..tid_len).unwrap_or_default()) {
        return bad(
            "transaction-id is not 4 to 32 characters of A-Z a-z 0-9 . - + % =",
            5,
        );
    }
    Ok(Some(StartScan {
        tid_end: 5 + tid_len,
        line_end,
    }))
}

/// Result of looking for the end-line.
pub(crate) enum EndSearch {
    /// The CRLF before `-------` is at `pos`; the frame ends at `end`.
    Found {
        pos: usize,
        end: usize,
        flag: Continuation,
    },
    /// Not (yet) there; search again from `resume` when more bytes arrive.
    NotYet { resume: usize },
}

/// Look for `CRLF "-------" tid flag CRLF` in `buf` from `from`. Candidates whose
/// transaction-id or flag differ are skipped (a body may contain look-alikes).
pub(crate) fn find_end_line(buf: &[u8], from: usize, tid: &[u8]) -> EndSearch {
    let mut at = from;
    loop {
        let Some(hay) = buf.get(at..) else {
            return EndSearch::NotYet { resume: at };
        };
        let Some(i) = END_LINE.find(hay) else {
            return EndSearch::NotYet {
                resume: buf.len().saturating_sub(END_PREFIX - 1).max(at),
            };
        };
        let pos = at + i;
        let t = pos + END_PREFIX;
        let tail = buf.get(t..).unwrap_or_default();
        let need = tid.len() + 3;
        let have = tail.len().min(need);
        let expect_ok = |k: usize, b: u8| -> bool {
            match k {
                k if k < tid.len() => tid.get(k) == Some(&b),
                k if k == tid.len() => matches!(b, b'$' | b'+' | b'#'),
                k if k == tid.len() + 1 => b == b'\r',
                _ => b == b'\n',
            }
        };
        let prefix_ok = tail
            .get(..have)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .all(|(k, b)| expect_ok(k, *b));
        if !prefix_ok {
            at = pos + 2;
            continue;
        }
        if have < need {
            return EndSearch::NotYet { resume: pos };
        }
        let flag = tail
            .get(tid.len())
            .copied()
            .and_then(Continuation::from_byte)
            .unwrap_or(Continuation::Complete);
        return EndSearch::Found {
            pos,
            end: t + need,
            flag,
        };
    }
}

/// Parse one whole message: `input` must hold exactly one message, from `MSRP` to the CRLF
/// after its end-line.
pub fn parse(input: Bytes, limits: &Limits) -> Result<Message, MsrpError> {
    let scan = match scan_start_line(&input, limits)? {
        Some(s) => s,
        None => {
            return Err(MsrpError::BadStartLine {
                what: "no CRLF after the start line",
                offset: input.len(),
            });
        }
    };
    let tid = input.get(5..scan.tid_end).unwrap_or_default();
    match find_end_line(&input, scan.line_end, tid) {
        EndSearch::Found { pos, end, flag } => {
            if end < input.len() {
                let e = MsrpError::TrailingData {
                    count: input.len() - end,
                    offset: end,
                };
                return Err(e);
            }
            parse_frame(&input, scan, pos, flag, limits)
        }
        EndSearch::NotYet { .. } => Err(MsrpError::MissingEndLine {
            transaction_id: String::from_utf8_lossy(tid).into_owned(),
            offset: input.len(),
        }),
    }
}

/// Parse a framed message: start line scanned, end-line's CRLF at `end_pos`.
pub(crate) fn parse_frame(
    input: &Bytes,
    scan: StartScan,
    end_pos: usize,
    continuation: Continuation,
    limits: &Limits,
) -> Result<Message, MsrpError> {
    let transaction_id = input.slice(5..scan.tid_end);
    let start = parse_start_rest(input, scan, limits)?;
    let in_response = |e: MsrpError| match &start {
        StartLine::Response { code, .. } => MsrpError::InResponse {
            code: *code,
            source: Box::new(e),
        },
        StartLine::Request { .. } => e,
    };
    let mut headers = Vec::with_capacity(8);
    let mut body = None;
    let mut seen: u16 = 0;
    let mut has_content_type = false;
    if scan.line_end < end_pos {
        let mut pos = scan.line_end + 2;
        loop {
            // pos <= end_pos, and input[end_pos..end_pos + 2] is CRLF.
            let nl = memchr::memchr(b'\n', input.get(pos..end_pos + 2).unwrap_or_default())
                .map_or(end_pos + 1, |i| pos + i);
            if nl == pos || input.get(nl - 1) != Some(&b'\r') {
                return Err(in_response(MsrpError::BadHeader {
                    what: "line ends with a bare LF",
                    offset: pos,
                }));
            }
            let e = nl - 1;
            if e == pos {
                // Blank line: the body follows. A blank line directly before the end-line
                // (no data CRLF) is taken as "no body".
                if e < end_pos {
                    body = Some((e + 2, end_pos));
                }
                break;
            }
            if e - pos > limits.max_line_length {
                return Err(in_response(MsrpError::LineTooLong {
                    limit: limits.max_line_length,
                    offset: pos,
                }));
            }
            if e > limits.max_header_bytes {
                return Err(in_response(MsrpError::HeadersTooLarge {
                    limit: limits.max_header_bytes,
                    offset: pos,
                }));
            }
            if headers.len() >= limits.max_headers {
                return Err(in_response(MsrpError::TooManyHeaders {
                    limit: limits.max_headers,
                    offset: pos,
                }));
            }
            let h = parse_header_line(input, pos, e, limits, &mut seen).map_err(&in_response)?;
            if h.is_content_type {
                has_content_type = true;
            }
            headers.push(Header {
                name: h.name,
                value: h.value,
            });
            if e == end_pos {
                break;
            }
            pos = e + 2;
        }
    }
    for (bit, name) in [(Known::ToPath, "To-Path"), (Known::FromPath, "From-Path")] {
        if seen & (1 << bit as u16) == 0 {
            return Err(in_response(MsrpError::MissingHeader {
                name,
                offset: end_pos,
            }));
        }
    }
    let body = match body {
        None => None,
        Some((b0, b1)) => {
            if matches!(start, StartLine::Response { .. }) {
                return Err(in_response(MsrpError::BadBody {
                    what: "a response carries no body (RFC 4975 §9)",
                    offset: b0,
                }));
            }
            if b1 - b0 > limits.max_chunk_size {
                return Err(MsrpError::ChunkTooLarge {
                    size: b1 - b0,
                    limit: limits.max_chunk_size,
                    offset: b0,
                });
            }
            if !has_content_type {
                return Err(MsrpError::BadBody {
                    what: "a body needs a Content-Type header field (RFC 4975 §7.1.1)",
                    offset: b0,
                });
            }
            Some(input.slice(b0..b1))
        }
    };
    Ok(Message {
        transaction_id,
        start,
        headers,
        body,
        continuation,
    })
}

/// Method or status code after the transaction-id.
fn parse_start_rest(
    input: &Bytes,
    scan: StartScan,
    limits: &Limits,
) -> Result<StartLine, MsrpError> {
    if scan.line_end > limits.max_line_length {
        return Err(MsrpError::LineTooLong {
            limit: limits.max_line_length,
            offset: 0,
        });
    }
    let bad = |what, offset| Err(MsrpError::BadMethodOrStatus { what, offset });
    let rest_at = scan.tid_end + 1;
    if scan.tid_end >= scan.line_end {
        return bad("method or status code missing", scan.tid_end);
    }
    let rest = input.get(rest_at..scan.line_end).unwrap_or_default();
    let word_len = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    let word = rest.get(..word_len).unwrap_or_default();
    if let Some(code) = three_digits(word) {
        let comment = if word_len < rest.len() {
            let c = rest.get(word_len + 1..).unwrap_or_default();
            if !is_text(c) {
                return bad("control character in the comment", rest_at + word_len + 1);
            }
            Some(input.slice(rest_at + word_len + 1..scan.line_end))
        } else {
            None
        };
        return Ok(StartLine::Response { code, comment });
    }
    // RFC 4975 §9: other-method = 1*UPALPHA; requests have nothing after the method.
    if word.is_empty() || !word.iter().all(u8::is_ascii_uppercase) {
        return bad(
            "expected a method in capitals (SEND, REPORT, AUTH) or a 3-digit status code",
            rest_at,
        );
    }
    if word_len < rest.len() {
        return bad("unexpected text after the method", rest_at + word_len);
    }
    Ok(StartLine::Request {
        method: Method::from_wire(input, rest_at, scan.line_end),
    })
}

struct ParsedHeader {
    name: Bytes,
    value: Bytes,
    is_content_type: bool,
}

/// One `name: value` line in `input[start..end]`.
#[inline(always)]
fn parse_header_line(
    input: &Bytes,
    start: usize,
    end: usize,
    limits: &Limits,
    seen: &mut u16,
) -> Result<ParsedHeader, MsrpError> {
    let line = input.get(start..end).unwrap_or_default();
    let bad = |what| MsrpError::BadHeader {
        what,
        offset: start,
    };
    let colon = memchr::memchr(b':', line).ok_or_else(|| bad("no \":\" after the name"))?;
    let raw_name = line.get(..colon).unwrap_or_default();
    // Lenient: white space before the colon is dropped.
    let name_len = raw_name
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    let name = raw_name.get(..name_len).unwrap_or_default();
    // RFC 4975 §9: hname = ALPHA *token
    if !name.first().is_some_and(u8::is_ascii_alphabetic) || !name.iter().all(|b| uri::is_token(*b))
    {
        return Err(bad("name is not a letter followed by token characters"));
    }
    let raw_value = line.get(colon + 1..).unwrap_or_default();
    let lead = raw_value
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(raw_value.len());
    let trail = raw_value
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(lead, |i| i + 1);
    let v0 = start + colon + 1 + lead;
    let v1 = start + colon + 1 + trail;
    let value_bytes = input.get(v0..v1).unwrap_or_default();
    let known = Known::of(name);
    // The typed checks of the other known fields admit no control character already.
    if matches!(known, None | Some(Known::ContentType | Known::Status)) && !is_text(value_bytes) {
        return Err(bad("control character in the value"));
    }
    let value = input.slice(v0..v1);
    if let Some(k) = known {
        let bit = 1u16 << k as u16;
        if *seen & bit != 0 {
            return Err(MsrpError::DuplicateHeader {
                name: k.name(),
                offset: start,
            });
        }
        *seen |= bit;
        check_known(k, &value, v0, limits)?;
    }
    // A known name written canonically costs no reference count: a static slice.
    let name = match known {
        Some(k) if k.name().as_bytes() == name => Bytes::from_static(k.name().as_bytes()),
        _ => input.slice(start..start + name_len),
    };
    Ok(ParsedHeader {
        name,
        value,
        is_content_type: known == Some(Known::ContentType),
    })
}

/// Check a known header field's value against its RFC 4975 §9 / RFC 4976 §12 grammar.
fn check_known(k: Known, value: &Bytes, offset: usize, limits: &Limits) -> Result<(), MsrpError> {
    let bad = |reason: String| MsrpError::BadValue {
        name: k.name(),
        reason,
        offset,
    };
    match k {
        Known::ToPath | Known::FromPath | Known::UsePath => {
            let (n, _) = uri::check_list(value, offset, limits.max_path_uris)?;
            if n > limits.max_path_uris {
                return Err(bad(format!("more than {} URIs", limits.max_path_uris)));
            }
            if n == 0 {
                return Err(bad("no URI".into()));
            }
        }
        Known::MessageId => {
            if !is_ident(value) {
                return Err(bad(
                    "not 4 to 32 characters of A-Z a-z 0-9 . - + % = (RFC 4975 §9 ident)".into(),
                ));
            }
        }
        Known::ByteRange => {
            ByteRange::parse(value).map_err(bad)?;
        }
        Known::SuccessReport => {
            parse_report(value, false).ok_or_else(|| bad("expected yes or no".into()))?;
        }
        Known::FailureReport => {
            parse_report(value, true).ok_or_else(|| bad("expected yes, no or partial".into()))?;
        }
        Known::Status => {
            Status::parse(value).map_err(bad)?;
        }
        Known::ContentType => {
            if !is_media_type(value) {
                return Err(bad("expected type/subtype".into()));
            }
        }
        Known::Expires | Known::MinExpires | Known::MaxExpires => {
            parse_u32(value).ok_or_else(|| bad("not a number of seconds".into()))?;
        }
    }
    Ok(())
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    parse_u64(v).and_then(|n| u32::try_from(n).ok())
}

fn parse_report(v: &[u8], partial_allowed: bool) -> Option<ReportRequest> {
    if v.eq_ignore_ascii_case(b"yes") {
        Some(ReportRequest::Yes)
    } else if v.eq_ignore_ascii_case(b"no") {
        Some(ReportRequest::No)
    } else if partial_allowed && v.eq_ignore_ascii_case(b"partial") {
        Some(ReportRequest::Partial)
    } else {
        None
    }
}

/// `type "/" subtype *( ";" parameter )` with token type and subtype (RFC 2045 §5.1);
/// parameters are not checked further.
fn is_media_type(v: &[u8]) -> bool {
    let media = v.split(|b| *b == b';').next().unwrap_or_default();
    let media = crate::wire::text::trim_ws(media);
    let mut parts = media.splitn(2, |b| *b == b'/');
    let ty = parts.next().unwrap_or_default();
    let sub = parts.next().unwrap_or_default();
    !ty.is_empty()
        && !sub.is_empty()
        && ty.iter().all(|b| uri::is_token(*b))
        && sub.iter().all(|b| uri::is_token(*b))
}

impl Message {
    /// A request with no header fields and no body, flag `$`.
    pub fn request(transaction_id: Bytes, method: Method) -> Message {
        Message {
            transaction_id,
            start: StartLine::Request { method },
            headers: Vec::with_capacity(8),
            body: None,
            continuation: Continuation::Complete,
        }
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for a response.
    pub fn response_code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &h.value)
    }

    /// Every header field named `name` (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &h.value)
    }

    fn path(&self, name: &'static str) -> Result<Vec<MsrpUri>, MsrpError> {
        let v = self
            .header(name)
            .ok_or(MsrpError::MissingHeader { name, offset: 0 })?;
        UriList::new(v.clone(), 0).collect()
    }

    /// The To-Path URIs (RFC 4975 §9), first hop first.
    pub fn to_path(&self) -> Result<Vec<MsrpUri>, MsrpError> {
        self.path("To-Path")
    }

    /// The From-Path URIs, nearest hop first.
    pub fn from_path(&self) -> Result<Vec<MsrpUri>, MsrpError> {
        self.path("From-Path")
    }

    /// The To-Path URIs without allocating (empty when the header field is missing).
    pub fn to_path_uris(&self) -> UriList {
        UriList::new(self.header("To-Path").cloned().unwrap_or_default(), 0)
    }

    /// The From-Path URIs without allocating (empty when the header field is missing).
    pub fn from_path_uris(&self) -> UriList {
        UriList::new(self.header("From-Path").cloned().unwrap_or_default(), 0)
    }

    /// Use-Path (RFC 4976 §5.1, in a 200 response to AUTH), if present.
    pub fn use_path(&self) -> Result<Option<Vec<MsrpUri>>, MsrpError> {
        match self.header("Use-Path") {
            None => Ok(None),
            Some(v) => UriList::new(v.clone(), 0)
                .collect::<Result<_, _>>()
                .map(Some),
        }
    }

    /// Message-ID.
    pub fn message_id(&self) -> Option<&Bytes> {
        self.header("Message-ID")
    }

    /// Content-Type.
    pub fn content_type(&self) -> Option<&Bytes> {
        self.header("Content-Type")
    }

    /// Byte-Range, if present.
    pub fn byte_range(&self) -> Result<Option<ByteRange>, MsrpError> {
        self.header("Byte-Range")
            .map(|v| {
                ByteRange::parse(v).map_err(|reason| MsrpError::BadValue {
                    name: "Byte-Range",
                    reason,
                    offset: 0,
                })
            })
            .transpose()
    }

    /// Success-Report; `No` when absent (RFC 4975 §7.1.3).
    pub fn success_report(&self) -> Result<ReportRequest, MsrpError> {
        self.report("Success-Report", ReportRequest::No, false)
    }

    /// Failure-Report; `Yes` when absent (RFC 4975 §7.1.4).
    pub fn failure_report(&self) -> Result<ReportRequest, MsrpError> {
        self.report("Failure-Report", ReportRequest::Yes, true)
    }

    fn report(
        &self,
        name: &'static str,
        default: ReportRequest,
        partial: bool,
    ) -> Result<ReportRequest, MsrpError> {
        match self.header(name) {
            None => Ok(default),
            Some(v) => parse_report(v, partial).ok_or(MsrpError::BadValue {
                name,
                reason: "not yes, no or partial".into(),
                offset: 0,
            }),
        }
    }

    /// Status (REPORT requests), if present.
    pub fn status(&self) -> Result<Option<Status>, MsrpError> {
        self.header("Status")
            .map(|v| {
                Status::parse(v).map_err(|reason| MsrpError::BadValue {
                    name: "Status",
                    reason,
                    offset: 0,
                })
            })
            .transpose()
    }

    fn seconds(&self, name: &'static str) -> Result<Option<u32>, MsrpError> {
        self.header(name)
            .map(|v| {
                parse_u32(v).ok_or(MsrpError::BadValue {
                    name,
                    reason: "not a number of seconds".into(),
                    offset: 0,
                })
            })
            .transpose()
    }

    /// Expires (RFC 4976 §5.1), seconds.
    pub fn expires(&self) -> Result<Option<u32>, MsrpError> {
        self.seconds("Expires")
    }

    /// Min-Expires (RFC 4976 §5.1, in 423 responses), seconds.
    pub fn min_expires(&self) -> Result<Option<u32>, MsrpError> {
        self.seconds("Min-Expires")
    }

    /// Max-Expires (RFC 4976 §5.1, in 423 responses), seconds.
    pub fn max_expires(&self) -> Result<Option<u32>, MsrpError> {
        self.seconds("Max-Expires")
    }

    /// WWW-Authenticate (RFC 4976 §5.1, in 401 responses to AUTH), raw Digest challenge.
    pub fn www_authenticate(&self) -> Option<&Bytes> {
        self.header("WWW-Authenticate")
    }

    /// Authorization (RFC 4976 §5.1, in AUTH requests), raw Digest credentials.
    pub fn authorization(&self) -> Option<&Bytes> {
        self.header("Authorization")
    }

    /// Authentication-Info (RFC 4976 §5.1, in 200 responses to AUTH), raw.
    pub fn authentication_info(&self) -> Option<&Bytes> {
        self.header("Authentication-Info")
    }

    /// Compare Byte-Range with the body actually carried (RFC 4975 §7.3.1: the receiver
    /// trusts the body). A `$` chunk must end exactly where Byte-Range says and, when the
    /// total is known, at the total; a `+` chunk may be shorter than announced (an
    /// interrupted chunk) but never longer; a `#` chunk is not checked. Only SEND is checked:
    /// in a REPORT, Byte-Range names the reported range of the original message (§7.1.2).
    pub fn check_byte_range(&self) -> Result<(), MsrpError> {
        if self.method() != Some(&Method::Send) {
            return Ok(());
        }
        let Some(r) = self.byte_range()? else {
            return Ok(());
        };
        let len = self.body.as_ref().map_or(0, Bytes::len) as u64;
        let actual_end = (r.start - 1).saturating_add(len);
        let mismatch = |reason: String| Err(MsrpError::ByteRangeMismatch { reason });
        match self.continuation {
            Continuation::Aborted => Ok(()),
            Continuation::Complete => {
                if let Some(e) = r.end
                    && e != actual_end
                {
                    return mismatch(format!(
                        "range {}-{e} announces {} bytes, the body has {len}",
                        r.start,
                        (e + 1).saturating_sub(r.start)
                    ));
                }
                if let Some(t) = r.total
                    && t != actual_end
                {
                    return mismatch(format!(
                        "last chunk ends at byte {actual_end}, total is {t}"
                    ));
                }
                Ok(())
            }
            Continuation::More => match r.end {
                Some(e) if actual_end > e => mismatch(format!(
                    "range {}-{e} announces {} bytes, the body has {len}",
                    r.start,
                    (e + 1).saturating_sub(r.start)
                )),
                _ => Ok(()),
            },
        }
    }

    /// Set header field `name` to `value`: replaces the first field of that name
    /// (case-insensitive) in place and removes any others, or appends.
    pub fn set_header(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        let value = value.into();
        let mut found = false;
        self.headers.retain_mut(|h| {
            if h.name.eq_ignore_ascii_case(&name) {
                if found {
                    return false;
                }
                found = true;
                h.value = value.clone();
            }
            true
        });
        if !found {
            self.headers.push(Header { name, value });
        }
    }

    /// Remove every header field named `name`; returns how many were removed.
    pub fn remove_header(&mut self, name: &str) -> usize {
        let before = self.headers.len();
        self.headers
            .retain(|h| !h.name.eq_ignore_ascii_case(name.as_bytes()));
        before - self.headers.len()
    }

    fn set_path(&mut self, name: &'static str, at: usize, uris: &[MsrpUri]) {
        // Exactly the list's length (one space between URIs): frozen without reallocating.
        let len =
            uris.iter().map(MsrpUri::encoded_len).sum::<usize>() + uris.len().saturating_sub(1);
        let mut v = BytesMut::with_capacity(len);
        write_uri_list(&mut v, uris);
        let v = v.freeze();
        if self.header(name).is_some() {
            self.set_header(name, v);
        } else {
            let at = at.min(self.headers.len());
            self.headers.insert(
                at,
                Header {
                    name: Bytes::from_static(name.as_bytes()),
                    value: v,
                },
            );
        }
    }

    /// Set To-Path (inserted first when absent, RFC 4975 §9 order).
    pub fn set_to_path(&mut self, uris: &[MsrpUri]) {
        self.set_path("To-Path", 0, uris);
    }

    /// Set From-Path (inserted after To-Path when absent).
    pub fn set_from_path(&mut self, uris: &[MsrpUri]) {
        let at = self
            .headers
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(b"To-Path"))
            .map_or(0, |i| i + 1);
        self.set_path("From-Path", at, uris);
    }

    /// Set the body and its Content-Type (appended last among the header fields when absent,
    /// RFC 4975 §9 puts MIME header fields last).
    pub fn set_body(&mut self, content_type: impl Into<Bytes>, body: Bytes) {
        self.remove_header("Content-Type");
        self.headers.push(Header {
            name: Bytes::from_static(b"Content-Type"),
            value: content_type.into(),
        });
        self.body = Some(body);
    }

    /// The transaction response to `request` (RFC 4975 §7.2): same transaction-id; To-Path is
    /// the first From-Path URI for SEND (responses go to the previous hop only) and the whole
    /// From-Path for other methods; From-Path is the first To-Path URI of the request (the
    /// receiver's own URI). Flag `$`, no body.
    pub fn response_to(
        request: &Message,
        code: u16,
        comment: Option<Bytes>,
    ) -> Result<Message, MsrpError> {
        // `from_path()` and `to_path()` without their vectors (a SEND's 200 needs the first URI
        // of each): the same errors, in the same order.
        let send = matches!(request.method(), Some(Method::Send));
        if send {
            // The common case, once per relayed SEND: both URIs are checked and copied as
            // written (slices of the request's values), not parsed into parts and written again.
            let first = |name: &'static str| -> Result<Option<Bytes>, MsrpError> {
                let v = request
                    .header(name)
                    .ok_or(MsrpError::MissingHeader { name, offset: 0 })?;
                let (_, first) = uri::check_list(v, 0, usize::MAX)?;
                Ok(first.map(|r| v.slice(r)))
            };
            if let (Some(to), Some(from)) = (first("From-Path")?, first("To-Path")?) {
                return Ok(Message {
                    transaction_id: request.transaction_id.clone(),
                    start: StartLine::Response { code, comment },
                    headers: vec![
                        Header {
                            name: Bytes::from_static(b"To-Path"),
                            value: to,
                        },
                        Header {
                            name: Bytes::from_static(b"From-Path"),
                            value: from,
                        },
                    ],
                    body: None,
                    continuation: Continuation::Complete,
                });
            }
        }
        let path = |name: &'static str| {
            request
                .header(name)
                .map(|v| UriList::new(v.clone(), 0))
                .ok_or(MsrpError::MissingHeader { name, offset: 0 })
        };
        let mut from_first = None;
        let mut from_all = Vec::new();
        for u in path("From-Path")? {
            let u = u?;
            if !send {
                from_all.push(u);
            } else if from_first.is_none() {
                from_first = Some(u);
            }
        }
        let mut to_first = None;
        for u in path("To-Path")? {
            let u = u?;
            if to_first.is_none() {
                to_first = Some(u);
            }
        }
        let to_path = if send {
            from_first.as_slice()
        } else {
            from_all.as_slice()
        };
        let mut resp = Message {
            transaction_id: request.transaction_id.clone(),
            start: StartLine::Response { code, comment },
            headers: Vec::with_capacity(2),
            body: None,
            continuation: Continuation::Complete,
        };
        resp.set_to_path(to_path);
        resp.set_from_path(to_first.as_slice());
        Ok(resp)
    }

    /// A REPORT for `request` (RFC 4975 §7.1.3/§7.1.4): To-Path is the request's From-Path,
    /// From-Path the first URI of its To-Path, Message-ID copied, then Byte-Range (when given)
    /// and Status.
    pub fn report_for(
        request: &Message,
        transaction_id: Bytes,
        status: &Status,
        byte_range: Option<ByteRange>,
    ) -> Result<Message, MsrpError> {
        let from = request.from_path()?;
        let to = request.to_path()?;
        let mut rep = Message::request(transaction_id, Method::Report);
        rep.set_to_path(&from);
        rep.set_from_path(to.get(..1).unwrap_or_default());
        if let Some(id) = request.message_id() {
            rep.set_header("Message-ID", id.clone());
        }
        if let Some(r) = byte_range {
            rep.set_header("Byte-Range", r.to_bytes());
        }
        rep.set_header("Status", status.to_bytes());
        Ok(rep)
    }

    /// Bytes [`Message::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let start = match &self.start {
            StartLine::Request { method } => method.as_bytes().len(),
            StartLine::Response { comment, .. } => 3 + comment.as_ref().map_or(0, |c| c.len() + 1),
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum();
        let body = self.body.as_ref().map_or(0, |b| b.len() + 4);
        5 + self.transaction_id.len()
            + 1
            + start
            + 2
            + headers
            + body
            + 7
            + self.transaction_id.len()
            + 3
    }

    /// Append the canonical wire form to `dst`. The caller keeps the invariants the parser
    /// guarantees (a body never contains its own end-line, RFC 4975 §9 / errata 4177).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.extend_from_slice(b"MSRP ");
        dst.extend_from_slice(&self.transaction_id);
        dst.put_u8(b' ');
        match &self.start {
            StartLine::Request { method } => dst.extend_from_slice(method.as_bytes()),
            StartLine::Response { code, comment } => {
                push_three_digits(dst, *code);
                if let Some(c) = comment {
                    dst.put_u8(b' ');
                    dst.extend_from_slice(c);
                }
            }
        }
        dst.extend_from_slice(b"\r\n");
        for h in &self.headers {
            dst.extend_from_slice(&h.name);
            dst.extend_from_slice(b": ");
            dst.extend_from_slice(&h.value);
            dst.extend_from_slice(b"\r\n");
        }
        if let Some(b) = &self.body {
            dst.extend_from_slice(b"\r\n");
            dst.extend_from_slice(b);
            dst.extend_from_slice(b"\r\n");
        }
        dst.extend_from_slice(b"-------");
        dst.extend_from_slice(&self.transaction_id);
        dst.put_u8(self.continuation.as_byte());
        dst.extend_from_slice(b"\r\n");
    }

    /// The canonical wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b);
        b.freeze()
    }
}

#[cfg(test)]
mod tests;
