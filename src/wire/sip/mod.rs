//! SIP (RFC 3261) message codec: parsing with limits, a model of header fields that share the
//! received bytes, and a serializer that always writes a correct `Content-Length`.
//!
//! What this adds to rsip 0.4, and why:
//! - **framing**: UDP datagrams ([`parse_datagram`], RFC 3261 §18.3) and a TCP stream decoder
//!   ([`SipStreamCodec`]) with CRLF keep-alives (RFC 5626 §4.4.1);
//! - **normalisation of header fields**: compact names (`v f t i l c m k s e o r u`, RFC
//!   3261 §7.3.3, plus those of the extensions) become long names, folded lines are unfolded into
//!   one SP (§7.3.1), white space around the colon is dropped;
//! - **limits** ([`Limits`]) on message size, header count and line length;
//! - **errors that say what to answer** ([`SipError`]: 400 with a reason naming the fault, 413,
//!   415, 501, 505 — or drop when no request line was readable or the message is a response);
//! - **no body copy**: rsip's `Request`/`Response` own their body as a `Vec<u8>`; here the body
//!   is a [`Bytes`] slice of the input, and the start line is kept as received (rsip drops the
//!   Request-URI's `?headers`, replaces known reason phrases with its own and cannot represent
//!   `tel:` URIs faithfully), so that a parsed message re-serializes to its canonical form
//!   without loss. Header fields are kept in received order as (name, value): the name in its
//!   canonical spelling for the names rsip knows (rsip's spelling) and the long form of a
//!   compact one, else as received; the value a [`Text`], a slice of the input checked as
//!   UTF-8 once (a folded value is the one copy). No `String` per header, no rsip enum chosen
//!   by name. rsip's method enum is used as is (other methods are
//!   answered 501). A `sip:`/`sips:` Request-URI is checked against RFC 3261 §25.1 by this
//!   module (rsip's URI parser refuses valid URIs such as RFC 4475 "semiuri"); rsip parses it
//!   on demand ([`SipMessage::uri`]); [`SipMessage::to_rsip`] and
//!   [`SipMessage::rsip_headers_mut`] give rsip's model when a caller wants it.
//!
//! A request the gateway writes whole (the translator's new leg) is built as text instead
//! ([`RequestDraft`]): its fields are `Name: value` lines in canonical form in one buffer, read
//! as fields by every accessor and turned into fields by a change other than an insertion at
//! the top (the node's Via).
//!
//! The canonical form written by [`SipMessage::encode`]: the start line as received, then one
//! `Name: value` line per header field (long names; rsip's spelling for the known ones, the
//! received spelling for the others; folded values joined with one SP), `Content-Length` with the
//! body's real length in place of the first received one (appended when there was none), an empty
//! line and the body. A message already in that form serializes to the same bytes.
//!
//! [`Limits`] bound what is read. The canonical form of an accepted message can be a little
//! larger than its input (long names for compact ones, one SP after each colon, a Content-Length
//! appended when the datagram had none: one more header); unfolded header lines are held to
//! `max_line` already on input.

mod parse;
mod stream;

use bytes::{BufMut, Bytes, BytesMut};
use rsip::Header;
use rsip::headers::UntypedHeader;

use super::{Answer, WireError};

pub(crate) use parse::is_token_char;
pub use stream::{KeepAlive, SipFrame, SipStreamCodec, StreamError};

/// Bounds on what one message may use. Every parse entry point takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, start line + headers + body, in bytes. Default 65 536 (64 KiB: the
    /// largest UDP payload, and far above any pager MESSAGE or INVITE with SDP).
    pub max_message: usize,
    /// Most header fields (after unfolding; one `Via: a, b` line counts once). Default 128.
    pub max_headers: usize,
    /// Longest physical line (start line or header line, CRLF excluded) in bytes. Default 8192.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 64 * 1024,
            max_headers: 128,
            max_line: 8 * 1024,
        }
    }
}

/// What is wrong with a message. The [`SipError`] around it says whether it can be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The first line is neither a request line nor a status line.
    #[error("{0}")]
    StartLine(&'static str),
    /// Over [`Limits::max_message`] (RFC 3261 §21.4.11: 413).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    /// A line over [`Limits::max_line`].
    #[error("line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// More than [`Limits::max_headers`] header fields.
    #[error("more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    /// The header block does not end with an empty line (RFC 3261 §7).
    #[error("no empty line after the header fields")]
    NoBlankLine,
    /// A header line without `name:` (RFC 3261 §7.3.1).
    #[error("header line is not `Name: value`")]
    HeaderSyntax,
    /// A continuation line (leading SP/HTAB) before any header field.
    #[error("continuation line before any header field")]
    StrayContinuation,
    /// A bare CR or LF inside a header line.
    #[error("bare CR or LF in header {0}")]
    BareLineBreak(String),
    /// A header value that is not UTF-8 (rsip keeps values as `String`).
    #[error("{0} is not valid UTF-8")]
    NotUtf8(String),
    /// A mandatory header field is missing (RFC 3261 §8.1.1).
    #[error("missing {0}")]
    Missing(&'static str),
    /// A header field that must appear once appears more than once (RFC 3261 §7.3.1).
    #[error("more than one {0}")]
    Duplicate(&'static str),
    /// A header field whose value does not follow its grammar (RFC 3261 §25.1).
    #[error("malformed {header}: {why}")]
    Malformed {
        header: &'static str,
        why: &'static str,
    },
    /// CSeq method differs from the request method (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.17).
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch { cseq: String, method: String },
    /// The Request-URI cannot be read (RFC 3261 §25.1; RFC 4475 §3.1.2.7, §3.1.2.8).
    #[error("malformed Request-URI: {0}")]
    RequestUri(&'static str),
    /// A method this gateway does not implement (RFC 3261 §8.2.1: 501).
    #[error("method {0} not implemented")]
    UnknownMethod(String),
    /// A SIP version other than 2.0 (RFC 3261 §21.5.7: 505; RFC 4475 §3.1.2.16).
    #[error("SIP version {0} not supported")]
    Version(String),
    /// UDP: Content-Length larger than what the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length {length} exceeds datagram ({available} body bytes)")]
    ContentLengthExceedsDatagram { length: usize, available: usize },
    /// Stream transports need Content-Length (RFC 3261 §18.3, §20.14).
    #[error("missing Content-Length (required on stream transports)")]
    ContentLengthRequired,
    /// A Content-Encoding other than identity, deflate, gzip (RFC 3261 §21.4.13: 415).
    #[error("Content-Encoding {0} not supported")]
    UnsupportedEncoding(String),
    /// A value given to a mutator that would break the message (CR/LF, bad name).
    #[error("invalid header field {0}")]
    InvalidHeader(String),
}

impl Fault {
    /// The SIP status code this fault deserves when the message is a request.
    pub fn status(&self) -> u16 {
        match self {
            Fault::MessageTooLarge { .. } => 413,
            Fault::UnsupportedEncoding(_) => 415,
            Fault::UnknownMethod(_) => 501,
            Fault::Version(_) => 505,
            _ => 400,
        }
    }
}

/// The standard reason phrase of the status codes [`Fault::status`] returns.
fn status_text(code: u16) -> &'static str {
    match code {
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        501 => "Not Implemented",
        505 => "Version Not Supported",
        _ => "Bad Request",
    }
}

/// A message that cannot be used. `Display` is the reason phrase to answer with when
/// [`WireError::answer`] is a status (`"Bad Request: missing Call-ID"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// A request whose request line was readable: answer with `fault.status()`.
    #[error("{}: {fault}", status_text(.fault.status()))]
    Request { fault: Fault, offset: Option<usize> },
    /// A malformed response: never answered (RFC 3261 §18.1.2), dropped.
    #[error("malformed response dropped: {fault}")]
    Response { fault: Fault, offset: Option<usize> },
    /// No request or status line could be read: dropped.
    #[error("unreadable message dropped: {fault}")]
    Unreadable { fault: Fault, offset: Option<usize> },
}

impl SipError {
    /// What is wrong.
    pub fn fault(&self) -> &Fault {
        match self {
            SipError::Request { fault, .. }
            | SipError::Response { fault, .. }
            | SipError::Unreadable { fault, .. } => fault,
        }
    }

    /// The status code to answer with, when the message is an answerable request.
    pub fn status(&self) -> Option<u16> {
        match self {
            SipError::Request { fault, .. } => Some(fault.status()),
            _ => None,
        }
    }
}

impl WireError for SipError {
    fn answer(&self) -> Answer {
        match self.status() {
            Some(code) => Answer::Status(code),
            None => Answer::Drop,
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            SipError::Request { offset, .. }
            | SipError::Response { offset, .. }
            | SipError::Unreadable { offset, .. } => *offset,
        }
    }
}

/// The first line of a message, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`. The URI is kept as received (a slice of the input).
    Request { method: rsip::Method, uri: Bytes },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`. The reason is kept as received.
    Response { code: u16, reason: Bytes },
}

/// `CSeq: <seq> <method>` (RFC 3261 §20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: &'a str,
}

/// UTF-8 text held in a [`Bytes`]: a header value shared with the buffer it was read from (a
/// reference count, not a copy), or text the gateway wrote. Checked once when made, so that
/// reading it back as `&str` costs nothing.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(Bytes);

impl Text {
    /// Text of a string that lives for the whole program (no copy).
    pub const fn from_static(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// A copy of `s`.
    pub fn copy_from_str(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// A copy of `s` in one allocation that clones and slices without another
    /// ([`super::frozen::shared_copy`]): for text written to be handed out in parts.
    pub fn shared_copy(s: &str) -> Text {
        Text(super::frozen::shared_copy(s.as_bytes()))
    }

    /// `bytes` when they are UTF-8 (no copy); given back otherwise.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, Bytes> {
        // ASCII (ids, URIs: the usual text) is UTF-8: one word-at-a-time test, cheaper than
        // the full check on short text.
        match bytes.is_ascii() || std::str::from_utf8(&bytes).is_ok() {
            true => Ok(Text(bytes)),
            false => Err(bytes),
        }
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        debug_assert!(std::str::from_utf8(&self.0).is_ok());
        // SAFETY: every constructor of `Text` either checks the bytes with
        // `std::str::from_utf8` or takes them from a `&str` / `String` (`from_static`,
        // `copy_from_str`, `From<String>`, `slice_ref` of a `&str` inside this text, and the
        // parser, which hands over sub-slices of a block it validated as UTF-8); the bytes are
        // never changed afterwards (`Bytes` is immutable and the field is private).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The bytes (shared).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The part `sub` of this text (a `&str` taken from [`as_str`](Self::as_str)) sharing
    /// the buffer; a copy when `sub` lies elsewhere.
    pub fn slice_ref(&self, sub: &str) -> Text {
        let base = self.0.as_ptr() as usize;
        let at = (sub.as_ptr() as usize).wrapping_sub(base);
        match at.checked_add(sub.len()) {
            Some(end) if end <= self.0.len() && !sub.is_empty() => Text(self.0.slice(at..end)),
            _ => Text::copy_from_str(sub),
        }
    }

    /// Text of `data[start..end]`, which the parser has checked to be UTF-8 (ASCII bytes, or
    /// validated); empty when the range is not inside `data`.
    #[inline]
    fn from_parsed(data: &Bytes, start: usize, end: usize) -> Text {
        match data.get(start..end) {
            Some(sub) if !sub.is_empty() => {
                debug_assert!(std::str::from_utf8(sub).is_ok());
                Text(data.slice(start..end))
            }
            _ => Text::default(),
        }
    }

    /// Text from a sub-slice of `data` that the caller has checked to be UTF-8 (the reference
    /// parser of the tests).
    #[cfg(test)]
    fn from_checked(data: &Bytes, sub: &str) -> Text {
        let base = data.as_ptr() as usize;
        let at = (sub.as_ptr() as usize).wrapping_sub(base);
        match at.checked_add(sub.len()) {
            Some(end) if end <= data.len() && !sub.is_empty() => Text(data.slice(at..end)),
            _ => Text::copy_from_str(sub),
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::from_static(s)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a header field as it is written: the canonical spelling of a name the codec
/// knows (and the long form of a compact one), or the name as received.
#[derive(Clone, Debug)]
enum Name {
    /// One of [`KNOWN_NAMES`], by its index: readers that sort fields by name (the
    /// translator) look the index up instead of comparing the name.
    Known(u8),
    /// Any other name (shared, or static text of the program). Two variants: telling them
    /// apart is one test of the text's vtable (its niche).
    Other(Text),
}

impl Name {
    #[inline]
    fn as_str(&self) -> &str {
        match self {
            Name::Known(i) => known_name(*i),
            Name::Other(t) => t.as_str(),
        }
    }

    /// The name for `long` (compact forms already expanded): the canonical spelling when it
    /// is a known name, else `make` of it.
    fn of(long: &str, make: impl FnOnce() -> Text) -> Name {
        match known_index(long.as_bytes()) {
            Some(i) => Name::Known(i),
            None => Name::Other(make()),
        }
    }
}

/// The known name of index `i` ([`KNOWN_NAMES`]; empty past the end, which no [`Name`] holds).
#[inline]
fn known_name(i: u8) -> &'static str {
    match KNOWN_NAMES.get(usize::from(i)) {
        Some(s) => s,
        None => "",
    }
}

/// The names whose fields carry their index ([`Field::known`]), in index order.
pub(crate) const fn known_names() -> &'static [&'static str] {
    KNOWN_NAMES
}

// Equal when written the same: a compact name expanded here and the same long name received
// are one name.
impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Name {}

/// One header field: its name and its value (unfolded, trimmed), in received order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    name: Name,
    value: Text,
}

impl Field {
    /// The name as written (long form; canonical spelling for the known names).
    #[inline]
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The value (shared).
    #[inline]
    pub(crate) fn value(&self) -> &Text {
        &self.value
    }

    /// The index of the name in [`known_names`], when it is one of them (a field parsed or
    /// built under such a name, whatever the case it came in).
    #[inline]
    pub(crate) fn known(&self) -> Option<u8> {
        match self.name {
            Name::Known(i) => Some(i),
            _ => None,
        }
    }
}

/// A field copied from strings.
fn field_of(name: &str, value: &str) -> Field {
    Field {
        name: Name::of(name, || Text::copy_from_str(name)),
        value: Text::copy_from_str(value),
    }
}

/// Iterator over (name, value) of the header fields.
enum Pairs<'a> {
    /// The field list, then the written lines ([`SipMessage::written`]).
    Own(std::slice::Iter<'a, Field>, WrittenLines<'a>),
    Rsip(Box<dyn Iterator<Item = &'a Header> + 'a>),
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Pairs::Own(it, lines) => match it.next() {
                Some(f) => Some((f.name.as_str(), f.value.as_str())),
                None => lines.next(),
            },
            Pairs::Rsip(it) => it.next().map(|h| (header_name(h), header_value(h))),
        }
    }
}

/// The (name, value) of header lines the gateway wrote in canonical form (`Name: value` and
/// CRLF each, [`RequestDraft`]), in order.
#[derive(Clone)]
struct WrittenLines<'a>(&'a str);

impl<'a> Iterator for WrittenLines<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let (line, rest) = self.0.split_once("\r\n").unwrap_or((self.0, ""));
        self.0 = rest;
        // A name is a token (no `:`), so the first `": "` ends it; a value holds no CR or LF.
        Some(line.split_once(": ").unwrap_or((line, "")))
    }
}

/// A parsed SIP message: start line, header fields in received order (values are slices of
/// the input), body as a slice of the input.
#[derive(Debug, Clone)]
pub struct SipMessage {
    start: StartLine,
    headers: Vec<Field>,
    /// Header fields the gateway wrote as text, after `headers` in order: `Name: value` lines
    /// in canonical form, each ended by CRLF, never a Content-Length ([`RequestDraft`]). A new
    /// leg is written so, in one buffer (no field list, no shared value per field); a change
    /// other than an insertion among `headers` first turns the lines into fields. A `String`
    /// of its own: the draft's buffer, moved in (no copy, no second allocation for a shared
    /// count).
    written: String,
    /// rsip's model of the header fields while a caller of
    /// [`rsip_headers_mut`](SipMessage::rsip_headers_mut) changes them: when present it is the
    /// truth, and the next other change converts it back into `headers`.
    rsip: Option<rsip::Headers>,
    body: Bytes,
}

impl PartialEq for SipMessage {
    fn eq(&self, other: &SipMessage) -> bool {
        self.start == other.start
            && self.body == other.body
            && match (&self.rsip, &other.rsip) {
                (None, None) if self.written.is_empty() && other.written.is_empty() => {
                    self.headers == other.headers
                }
                _ => self.pairs().eq(other.pairs()),
            }
    }
}
impl Eq for SipMessage {}

/// The size check and the header block common to both framings: the parsed head and where the
/// body starts.
fn read_head(data: &Bytes, limits: &Limits) -> Result<(parse::Head, usize), SipError> {
    if data.len() > limits.max_message {
        let fault = Fault::MessageTooLarge {
            size: data.len(),
            limit: limits.max_message,
        };
        return Err(parse::classify_error(data, limits, fault, None));
    }
    let no_blank = || parse::classify_error(data, limits, Fault::NoBlankLine, Some(data.len()));
    // One pass finds the empty line that ends the header block (RFC 3261 §7) while it reads
    // the lines. A message without one is refused as such whatever else is wrong with it:
    // when a line fails before the end was seen, look for the end before saying which.
    match parse::scan_head(data, limits) {
        Ok((head, blank)) => Ok((head, blank.saturating_add(4))),
        Err(parse::ScanError::NoBlank) => Err(no_blank()),
        Err(parse::ScanError::Sip(e)) => match super::text::find_blank_line(data, 0) {
            Some(_) => Err(e),
            None => Err(no_blank()),
        },
    }
}

/// Parse one UDP datagram (RFC 3261 §18.3): the body is the rest of the datagram, cut to
/// Content-Length when that is smaller; a Content-Length larger than the rest is a 400.
/// Extra octets after Content-Length are discarded, as §18.3 says.
pub fn parse_datagram(data: Bytes, limits: &Limits) -> Result<SipMessage, SipError> {
    let (head, body_start) = read_head(&data, limits)?;
    datagram_message(&data, head, body_start)
}

/// The message of a datagram whose head is read: the body cut to Content-Length (§18.3).
fn datagram_message(
    data: &Bytes,
    head: parse::Head,
    body_start: usize,
) -> Result<SipMessage, SipError> {
    let available = data.len().saturating_sub(body_start);
    let body_len = match head.content_length {
        Some(length) if length > available => {
            return Err(head.error(
                Fault::ContentLengthExceedsDatagram { length, available },
                head.content_length_offset,
            ));
        }
        Some(length) => length,
        None => available,
    };
    let body = data.slice(body_start..body_start.saturating_add(body_len).min(data.len()));
    Ok(head.into_message(body))
}

/// Parse one complete message held in `data` as if it came on a stream: Content-Length is
/// required (RFC 3261 §18.3) and must match the bytes after the header block exactly.
pub fn parse_message(data: Bytes, limits: &Limits) -> Result<SipMessage, SipError> {
    let (head, body_start) = read_head(&data, limits)?;
    let available = data.len().saturating_sub(body_start);
    match head.content_length {
        None if available == 0 && !head.is_request => Ok(head.into_message(Bytes::new())),
        None => Err(head.error(Fault::ContentLengthRequired, None)),
        Some(length) if length != available => Err(head.error(
            Fault::Malformed {
                header: "Content-Length",
                why: "does not match the body length",
            },
            head.content_length_offset,
        )),
        Some(_) => Ok(head.into_message(data.slice(body_start..))),
    }
}

/// A best-effort answer to a request that failed to parse, built from its raw bytes: status
/// line from `error` (its `Display` is the reason phrase), the Via, From, To, Call-ID and CSeq
/// lines copied in order (RFC 3261 §8.2.6.2; compact names expanded, folding joined), `tag`
/// added to To when it has none, `Content-Length: 0`. `None` when the error is not answerable
/// (a response, or no request line).
pub fn error_response(raw: &[u8], error: &SipError, to_tag: Option<&str>) -> Option<Bytes> {
    let code = error.status()?;
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"SIP/2.0 ");
    put_decimal(&mut out, u64::from(code));
    out.put_u8(b' ');
    // Fault texts quote received tokens: keep control characters out of the status line.
    let reason = error.to_string();
    out.extend(
        reason
            .bytes()
            .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
    let end = super::text::find_blank_line(raw, 0).map_or(raw.len(), |b| b.saturating_add(2));
    let head = raw.get(..end).unwrap_or(raw);
    let mut pos = super::text::find_crlf(head, 0).map_or(head.len(), |e| e.saturating_add(2));
    let mut current: Option<&'static str> = None;
    let mut to_has_tag = false;
    let mut in_to = false;
    let finish_to = |out: &mut BytesMut, in_to: bool, has_tag: bool| {
        if let (true, false, Some(tag)) = (in_to, has_tag, to_tag) {
            out.put_slice(b";tag=");
            out.put_slice(tag.as_bytes());
        }
    };
    while let Some(line_end) = super::text::find_crlf(head, pos) {
        let line = head.get(pos..line_end).unwrap_or_default();
        pos = line_end.saturating_add(2);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if current.is_some() {
                let piece = super::text::trim_ws(line);
                out.put_u8(b' ');
                out.put_slice(piece);
                to_has_tag |= in_to && contains_tag(piece);
            }
            continue;
        }
        if current.is_some() {
            finish_to(&mut out, in_to, to_has_tag);
            out.put_slice(b"\r\n");
        }
        current = None;
        in_to = false;
        let Some((name, value)) = super::text::split_header(line) else {
            continue;
        };
        let long = expand_compact(name).unwrap_or_default();
        let wanted = ["Via", "From", "To", "Call-ID", "CSeq"]
            .into_iter()
            .find(|w| name.eq_ignore_ascii_case(w.as_bytes()) || long == *w);
        if let Some(w) = wanted {
            current = Some(w);
            in_to = w == "To";
            to_has_tag = in_to && contains_tag(value);
            out.put_slice(w.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value);
        }
    }
    if current.is_some() {
        finish_to(&mut out, in_to, to_has_tag);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Some(out.freeze())
}

/// Does a To value carry a `tag` parameter (outside its `<URI>`)?
fn contains_tag(value: &[u8]) -> bool {
    let after = match super::text::rfind_byte(b'>', value) {
        Some(i) => value.get(i..).unwrap_or_default(),
        None => value,
    };
    after.windows(4).any(|w| w.eq_ignore_ascii_case(b"tag="))
}

/// Header names RFC 3261 §7.3.3 and later extensions give a one-letter compact form.
pub fn expand_compact(name: &[u8]) -> Option<&'static str> {
    let [c] = name else { return None };
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",      // RFC 3841
        b'b' => "Referred-By",         // RFC 3892
        b'c' => "Content-Type",        // RFC 3261
        b'd' => "Request-Disposition", // RFC 3841
        b'e' => "Content-Encoding",    // RFC 3261
        b'f' => "From",                // RFC 3261
        b'i' => "Call-ID",             // RFC 3261
        b'j' => "Reject-Contact",      // RFC 3841
        b'k' => "Supported",           // RFC 3261
        b'l' => "Content-Length",      // RFC 3261
        b'm' => "Contact",             // RFC 3261
        b'n' => "Identity-Info",       // RFC 4474
        b'o' => "Event",               // RFC 6665
        b'r' => "Refer-To",            // RFC 3515
        b's' => "Subject",             // RFC 3261
        b't' => "To",                  // RFC 3261
        b'u' => "Allow-Events",        // RFC 6665
        b'v' => "Via",                 // RFC 3261
        b'x' => "Session-Expires",     // RFC 4028
        b'y' => "Identity",            // RFC 8224
        _ => return None,
    })
}

macro_rules! known_headers {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The rsip header for `name` (already expanded from a compact form): a typed variant
        /// for the names rsip knows (matched case-insensitively), `Other` for the rest.
        fn make_header(name: &str, value: String) -> Header {
            $(
                if name.eq_ignore_ascii_case($name) {
                    return Header::$variant(rsip::headers::$variant::new(value));
                }
            )*
            Header::Other(name.to_owned(), value)
        }

        /// The name a header is written with.
        pub fn header_name(h: &Header) -> &str {
            match h {
                $(Header::$variant(_) => $name,)*
                Header::Other(name, _) => name,
            }
        }

        /// The value of a header, as held (unfolded, trimmed).
        pub fn header_value(h: &Header) -> &str {
            match h {
                $(Header::$variant(v) => v.value(),)*
                Header::Other(_, value) => value,
            }
        }

        /// The names written in their canonical spelling whatever the case received: rsip's
        /// (its spelling), most frequent first, then those of [`EXTRA_NAMES`].
        const KNOWN_NAMES: &[&str] = &{
            const RSIP: [&str; [$($name),*].len()] = [$($name),*];
            let mut all = [""; RSIP.len() + EXTRA_NAMES.len()];
            let mut i = 0;
            while i < all.len() {
                all[i] = if i < RSIP.len() { RSIP[i] } else { EXTRA_NAMES[i - RSIP.len()] };
                i += 1;
            }
            all
        };
    };
}

/// Names rsip does not model that the gateway reads on every request (its translator sorts the
/// fields by them): known too, in the spelling of the specifications that define them.
const EXTRA_NAMES: [&str; 12] = [
    "Accept-Contact",                // RFC 3841
    "Conversation-ID",               // CPM 2.0 SD 5.2.1.1
    "Contribution-ID",               // CPM 2.0 SD 5.2.1.1
    "InReplyTo-Contribution-ID",     // CPM 2.0 SD 5.2.1.1
    "P-Asserted-Service",            // RFC 6050
    "P-Preferred-Service",           // RFC 6050
    "P-Asserted-Identity",           // RFC 3325
    "Path",                          // RFC 3327
    "Service-Route",                 // RFC 3608
    "P-Charging-Vector",             // RFC 7315
    "P-Charging-Function-Addresses", // RFC 7315
    "P-Visited-Network-ID",          // RFC 7315
];

/// Slot of a known name in [`KNOWN_HASH`]: a hash of its length and its first, middle and
/// last bytes (ASCII letters, lower-cased by `| 0x20`), chosen so that the 58 names of
/// [`KNOWN_NAMES`] fall in 58 different slots (the table build below fails to compile
/// otherwise). A lookup is then one hash and one case-insensitive compare, not a compare per
/// name of that length.
#[inline]
const fn known_slot(len: usize, first: u8, middle: u8, last: u8) -> usize {
    len.wrapping_add((first | 0x20) as usize * 9)
        .wrapping_add((last | 0x20) as usize * 6)
        .wrapping_add((middle | 0x20) as usize * 18)
        & 0xff
}

/// Index into [`KNOWN_NAMES`] of the name in each [`known_slot`] (`u8::MAX`: none).
static KNOWN_HASH: [u8; 256] = {
    let mut t = [u8::MAX; 256];
    let mut i = 0;
    while i < KNOWN_NAMES.len() {
        let k = KNOWN_NAMES[i].as_bytes();
        let slot = known_slot(k.len(), k[0], k[k.len() / 2], k[k.len() - 1]);
        assert!(
            t[slot] == u8::MAX,
            "two known header names share a hash slot"
        );
        t[slot] = i as u8;
        i += 1;
    }
    t
};

/// Index into [`KNOWN_NAMES`] of `name` (ASCII case ignored), when it is a known name.
#[inline]
fn known_index(name: &[u8]) -> Option<u8> {
    let (first, last) = (*name.first()?, *name.last()?);
    let middle = *name.get(name.len() / 2)?;
    let i = *KNOWN_HASH.get(known_slot(name.len(), first, middle, last))?;
    let k = KNOWN_NAMES.get(usize::from(i))?.as_bytes();
    // Names mostly come in the canonical spelling: the exact compare is the usual answer.
    (k == name || k.eq_ignore_ascii_case(name)).then_some(i)
}

/// The canonical spelling of `name` when it is one of [`KNOWN_NAMES`] (ASCII case ignored).
#[inline]
fn canonical_name(name: &[u8]) -> Option<&'static str> {
    known_index(name).and_then(|i| KNOWN_NAMES.get(usize::from(i)).copied())
}

/// Indices into [`KNOWN_NAMES`] of the names the parser counts or checks (RFC 3261 §8.1.1,
/// §7.3.1, §20.12); checked against the table at compile time.
mod known {
    pub(super) const VIA: u8 = 0;
    pub(super) const FROM: u8 = 1;
    pub(super) const TO: u8 = 2;
    pub(super) const CALL_ID: u8 = 3;
    pub(super) const CSEQ: u8 = 4;
    pub(super) const MAX_FORWARDS: u8 = 6;
    pub(super) const CONTENT_TYPE: u8 = 7;
    pub(super) const CONTENT_LENGTH: u8 = 8;
    pub(super) const CONTENT_ENCODING: u8 = 17;
}

const _: () = {
    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    assert!(same(KNOWN_NAMES[known::VIA as usize], "Via"));
    assert!(same(KNOWN_NAMES[known::FROM as usize], "From"));
    assert!(same(KNOWN_NAMES[known::TO as usize], "To"));
    assert!(same(KNOWN_NAMES[known::CALL_ID as usize], "Call-ID"));
    assert!(same(KNOWN_NAMES[known::CSEQ as usize], "CSeq"));
    assert!(same(
        KNOWN_NAMES[known::MAX_FORWARDS as usize],
        "Max-Forwards"
    ));
    assert!(same(
        KNOWN_NAMES[known::CONTENT_TYPE as usize],
        "Content-Type"
    ));
    assert!(same(
        KNOWN_NAMES[known::CONTENT_LENGTH as usize],
        "Content-Length"
    ));
    assert!(same(
        KNOWN_NAMES[known::CONTENT_ENCODING as usize],
        "Content-Encoding"
    ));
};

// The order fixes the indices of `mod known`; the lookup is a hash ([`known_slot`]).
known_headers! {
    Via => "Via",
    From => "From",
    To => "To",
    CallId => "Call-ID",
    CSeq => "CSeq",
    Contact => "Contact",
    MaxForwards => "Max-Forwards",
    ContentType => "Content-Type",
    ContentLength => "Content-Length",
    Route => "Route",
    RecordRoute => "Record-Route",
    Expires => "Expires",
    Supported => "Supported",
    Require => "Require",
    Allow => "Allow",
    UserAgent => "User-Agent",
    Server => "Server",
    ContentEncoding => "Content-Encoding",
    ContentDisposition => "Content-Disposition",
    Accept => "Accept",
    AcceptEncoding => "Accept-Encoding",
    AcceptLanguage => "Accept-Language",
    AlertInfo => "Alert-Info",
    AuthenticationInfo => "Authentication-Info",
    Authorization => "Authorization",
    CallInfo => "Call-Info",
    ContentLanguage => "Content-Language",
    Date => "Date",
    ErrorInfo => "Error-Info",
    Event => "Event",
    InReplyTo => "In-Reply-To",
    MimeVersion => "MIME-Version",
    MinExpires => "Min-Expires",
    Organization => "Organization",
    Priority => "Priority",
    ProxyAuthenticate => "Proxy-Authenticate",
    ProxyAuthorization => "Proxy-Authorization",
    ProxyRequire => "Proxy-Require",
    ReplyTo => "Reply-To",
    RetryAfter => "Retry-After",
    Subject => "Subject",
    SubscriptionState => "Subscription-State",
    Timestamp => "Timestamp",
    Unsupported => "Unsupported",
    Warning => "Warning",
    WwwAuthenticate => "WWW-Authenticate",
}

/// The request methods rsip models, as written on the wire (RFC 3261 §7.1 and extensions).
pub fn method_name(m: &rsip::Method) -> &'static str {
    use rsip::Method as M;
    match m {
        M::Ack => "ACK",
        M::Bye => "BYE",
        M::Cancel => "CANCEL",
        M::Info => "INFO",
        M::Invite => "INVITE",
        M::Message => "MESSAGE",
        M::Notify => "NOTIFY",
        M::Options => "OPTIONS",
        M::PRack => "PRACK",
        M::Publish => "PUBLISH",
        M::Refer => "REFER",
        M::Register => "REGISTER",
        M::Subscribe => "SUBSCRIBE",
        M::Update => "UPDATE",
    }
}

/// The rsip method for a request-line method token (methods are case-sensitive, RFC 3261 §7.1).
pub fn method_from_name(name: &[u8]) -> Option<rsip::Method> {
    use rsip::Method as M;
    Some(match name {
        b"ACK" => M::Ack,
        b"BYE" => M::Bye,
        b"CANCEL" => M::Cancel,
        b"INFO" => M::Info,
        b"INVITE" => M::Invite,
        b"MESSAGE" => M::Message,
        b"NOTIFY" => M::Notify,
        b"OPTIONS" => M::Options,
        b"PRACK" => M::PRack,
        b"PUBLISH" => M::Publish,
        b"REFER" => M::Refer,
        b"REGISTER" => M::Register,
        b"SUBSCRIBE" => M::Subscribe,
        b"UPDATE" => M::Update,
        _ => return None,
    })
}

/// Byte offset just after the header parameters' start: the part of a From/To/Contact value
/// after the URI (after `>` for name-addr, after the first `;` for addr-spec). Quoted display
/// names are skipped so that a `<` inside quotes is not taken for the URI.
fn header_params(value: &str) -> &str {
    let b = value.as_bytes();
    let mut i = 0;
    let mut in_quotes = false;
    while let Some(&c) = b.get(i) {
        if in_quotes {
            match c {
                b'\\' => i += 1,
                b'"' => in_quotes = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_quotes = true,
                b'<' => {
                    return match value.get(i..).and_then(|rest| rest.find('>')) {
                        Some(gt) => value.get(i + gt + 1..).unwrap_or(""),
                        None => "",
                    };
                }
                b';' => return value.get(i..).unwrap_or(""),
                _ => {}
            }
        }
        i += 1;
    }
    ""
}

/// The value of parameter `name` in `;a=b;c=d` (names case-insensitive, RFC 3261 §7.3.1;
/// white space around `;` and `=` tolerated).
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim_matches([' ', '\t']))
    })
}

impl SipMessage {
    /// A new request with no header fields and an empty body.
    pub fn request(method: rsip::Method, uri: &str) -> Result<Self, SipError> {
        Self::request_shared(method, Bytes::copy_from_slice(uri.as_bytes()))
    }

    /// [`request`](Self::request) with a Request-URI shared, not copied (a slice of a received
    /// message, say).
    pub fn request_shared(method: rsip::Method, uri: Bytes) -> Result<Self, SipError> {
        Self::request_with_room(method, uri, 16)
    }

    /// [`request_shared`](Self::request_shared) with room for `headers` header fields.
    pub(crate) fn request_with_room(
        method: rsip::Method,
        uri: Bytes,
        headers: usize,
    ) -> Result<Self, SipError> {
        if uri.is_empty() || super::text::has_space_or_control(&uri) {
            return Err(SipError::Request {
                fault: Fault::RequestUri("empty or contains white space"),
                offset: None,
            });
        }
        Ok(SipMessage {
            start: StartLine::Request { method, uri },
            headers: Vec::with_capacity(headers),
            written: String::new(),
            rsip: None,
            body: Bytes::new(),
        })
    }

    /// The header fields in order, when they are the codec's own list: always after parsing
    /// and the other mutators, `None` while [`rsip_headers_mut`](Self::rsip_headers_mut)'s
    /// model is the truth or while some fields are written lines (a new leg of the
    /// translator, not yet changed). For readers that look at every field once (the
    /// translator), which read [`headers`](Self::headers) otherwise.
    #[inline]
    pub(crate) fn fields(&self) -> Option<&[Field]> {
        match &self.rsip {
            None if self.written.is_empty() => Some(&self.headers),
            _ => None,
        }
    }

    /// (name, value) of every header field, in order.
    #[inline]
    fn pairs(&self) -> Pairs<'_> {
        match &self.rsip {
            Some(h) => Pairs::Rsip(Box::new(h.iter())),
            None => Pairs::Own(self.headers.iter(), WrittenLines(&self.written)),
        }
    }

    /// Run `f` on every header field in order (shared values; copies after a change through
    /// rsip's model).
    fn try_each_field<E>(&self, mut f: impl FnMut(&Field) -> Result<(), E>) -> Result<(), E> {
        match &self.rsip {
            None => {
                self.headers.iter().try_for_each(&mut f)?;
                self.written_fields().try_for_each(|w| f(&w))
            }
            Some(h) => h
                .iter()
                .try_for_each(|h| f(&field_of(header_name(h), header_value(h)))),
        }
    }

    /// The header fields to change (converted back from rsip's model when needed). Inlined
    /// with the conversion out of line: every push of a message being built comes here, and
    /// the usual message has no rsip model (a test and a branch).
    #[inline]
    fn fields_mut(&mut self) -> &mut Vec<Field> {
        if self.rsip.is_some() {
            self.fields_from_rsip();
        }
        if !self.written.is_empty() {
            self.fields_from_written();
        }
        &mut self.headers
    }

    /// The written lines as fields: copies, in one buffer the names and values share.
    fn written_fields(&self) -> impl Iterator<Item = Field> + '_ {
        let shared = Text::shared_copy(&self.written);
        let base = self.written.as_ptr() as usize;
        // The same text at the same offsets in the copy.
        let part = move |s: &str| -> Text {
            let at = (s.as_ptr() as usize).wrapping_sub(base);
            match shared.as_str().get(at..at.saturating_add(s.len())) {
                Some(sub) if !sub.is_empty() => shared.slice_ref(sub),
                _ => Text::default(),
            }
        };
        WrittenLines(&self.written).map(move |(name, value)| Field {
            name: Name::of(name, || part(name)),
            value: part(value),
        })
    }

    /// The written lines turned into fields, appended to the list.
    #[cold]
    #[inline(never)]
    fn fields_from_written(&mut self) {
        let fields: Vec<Field> = self.written_fields().collect();
        self.headers.extend(fields);
        self.written = String::new();
    }

    #[cold]
    #[inline(never)]
    fn fields_from_rsip(&mut self) {
        if let Some(h) = self.rsip.take() {
            self.headers = h
                .iter()
                .map(|h| field_of(header_name(h), header_value(h)))
                .collect();
        }
    }

    /// The first value of the field written `canonical` (one of the known names).
    #[inline]
    fn known(&self, canonical: &str) -> Option<&str> {
        self.pairs().find(|(n, _)| *n == canonical).map(|(_, v)| v)
    }

    /// A response to this request with its Via, From, To, Call-ID and CSeq copied in order
    /// (RFC 3261 §8.2.6.2), empty body. Adding a To tag is the caller's job.
    pub fn response_to(&self, code: u16, reason: &str) -> SipMessage {
        let mut headers = Vec::with_capacity(8);
        let _ = self.try_each_field(|f| {
            if matches!(f.name.as_str(), "Via" | "From" | "To" | "Call-ID" | "CSeq") {
                headers.push(f.clone());
            }
            Ok::<(), ()>(())
        });
        SipMessage {
            start: StartLine::Response {
                code,
                reason: Bytes::copy_from_slice(sanitize_reason(reason).as_bytes()),
            },
            headers,
            written: String::new(),
            rsip: None,
            body: Bytes::new(),
        }
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// Is this a request?
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, for a request.
    pub fn method(&self) -> Option<&rsip::Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI as received, for a request.
    pub fn request_uri(&self) -> Option<&[u8]> {
        self.request_uri_bytes().map(|u| &u[..])
    }

    /// The Request-URI as received (shared), for a request.
    pub fn request_uri_bytes(&self) -> Option<&Bytes> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI as an rsip URI (parsed on demand; `None` for a response or a URI rsip
    /// cannot model, such as `tel:`).
    pub fn uri(&self) -> Option<rsip::Uri> {
        let raw = std::str::from_utf8(self.request_uri()?).ok()?;
        rsip::Uri::try_from(raw).ok()
    }

    /// The status code, for a response.
    pub fn status_code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase as received, for a response.
    pub fn reason(&self) -> Option<&[u8]> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// Replace the Request-URI (requests only; ignored for responses).
    pub fn set_request_uri(&mut self, new: &str) -> Result<(), SipError> {
        if new.is_empty() || new.bytes().any(|b| b <= b' ') {
            return Err(invalid("Request-URI"));
        }
        if let StartLine::Request { uri, .. } = &mut self.start {
            *uri = Bytes::copy_from_slice(new.as_bytes());
        }
        Ok(())
    }

    /// Replace the status line (responses only; ignored for requests).
    pub fn set_status(&mut self, new_code: u16, new_reason: &str) {
        if let StartLine::Response { code, reason } = &mut self.start {
            *code = new_code;
            *reason = Bytes::copy_from_slice(sanitize_reason(new_reason).as_bytes());
        }
    }

    /// Header fields in order, as rsip values, to change freely (Content-Length is rewritten
    /// on serialize whatever is here). Values must not contain CR or LF. A compatibility
    /// path (it converts every field to rsip's model and back); prefer the other mutators.
    pub fn rsip_headers_mut(&mut self) -> &mut rsip::Headers {
        if self.rsip.is_none() && !self.written.is_empty() {
            self.fields_from_written();
        }
        let headers = &self.headers;
        self.rsip.get_or_insert_with(|| {
            headers
                .iter()
                .map(|f| make_header(f.name.as_str(), f.value.as_str().to_owned()))
                .collect::<Vec<_>>()
                .into()
        })
    }

    /// Header fields in order as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs()
    }

    /// The first value of header `name` (case-insensitive; compact forms accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        let wanted = expand_compact(name.as_bytes()).unwrap_or(name);
        self.pairs()
            .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v)
    }

    /// [`header`](Self::header) as shared [`Text`] (no copy; a copy after a change through
    /// rsip's model).
    pub fn header_text(&self, name: &str) -> Option<Text> {
        let wanted = expand_compact(name.as_bytes()).unwrap_or(name);
        match &self.rsip {
            None => match self
                .headers
                .iter()
                .find(|f| f.name.as_str().eq_ignore_ascii_case(wanted))
            {
                Some(f) => Some(f.value.clone()),
                None => self
                    .written_fields()
                    .find(|f| f.name.as_str().eq_ignore_ascii_case(wanted))
                    .map(|f| f.value),
            },
            Some(_) => self.header(name).map(Text::copy_from_str),
        }
    }

    /// Every value of header `name`, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let wanted = expand_compact(name.as_bytes()).unwrap_or(name);
        self.pairs()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v)
    }

    /// Call-ID (RFC 3261 §20.8).
    pub fn call_id(&self) -> Option<&str> {
        self.known("Call-ID")
    }

    /// CSeq (RFC 3261 §20.16), `None` when absent or malformed.
    pub fn cseq(&self) -> Option<CSeq<'_>> {
        let (seq, m) = parse::cseq(self.known("CSeq")?.as_bytes()).ok()?;
        Some(CSeq {
            seq,
            method: std::str::from_utf8(m).ok()?,
        })
    }

    /// The `branch` of the topmost Via (RFC 3261 §8.1.1.7): first value of the first Via.
    pub fn top_via_branch(&self) -> Option<&str> {
        first_item_param(self.known("Via")?, "branch")
    }

    /// The `tag` of From (RFC 3261 §19.3).
    pub fn from_tag(&self) -> Option<&str> {
        param(header_params(self.known("From")?), "tag")
    }

    /// The `tag` of To (RFC 3261 §19.3).
    pub fn to_tag(&self) -> Option<&str> {
        param(header_params(self.known("To")?), "tag")
    }

    /// Content-Type value, parameters included.
    pub fn content_type(&self) -> Option<&str> {
        self.known("Content-Type")
    }

    /// The body (a slice of the parsed input, or what [`set_body`](Self::set_body) put there).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replace the body. Content-Length follows on serialize.
    pub fn set_body(&mut self, body: Bytes) {
        self.body = body;
    }

    /// Replace the body and its Content-Type (removed when `None`).
    pub fn set_body_with_type(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(), SipError> {
        match content_type {
            Some(ct) => self.set_header("Content-Type", ct)?,
            None => {
                self.remove_header("Content-Type");
            }
        }
        self.body = body;
        Ok(())
    }

    /// [`set_body_with_type`](Self::set_body_with_type) with a Content-Type shared, not
    /// copied.
    pub fn set_body_with_type_text(
        &mut self,
        content_type: Text,
        body: Bytes,
    ) -> Result<(), SipError> {
        let new = checked_field("Content-Type", content_type)?;
        self.set_field(new);
        self.body = body;
        Ok(())
    }

    /// Replace the first field of `new`'s name in place and remove the other ones; append it
    /// when absent.
    fn set_field(&mut self, new: Field) {
        let all = self.fields_mut();
        let same = |h: &Field, n: &Name| h.name.as_str().eq_ignore_ascii_case(n.as_str());
        match all.iter().position(|h| same(h, &new.name)) {
            Some(first) => {
                let name = new.name.clone();
                if let Some(slot) = all.get_mut(first) {
                    *slot = new;
                }
                let mut i = 0usize;
                all.retain(|h| {
                    let keep = i <= first || !same(h, &name);
                    i += 1;
                    keep
                });
            }
            None => all.push(new),
        }
    }

    /// [`set_header`](Self::set_header) with a `'static` name and a shared value.
    pub fn set_header_text(&mut self, name: &'static str, value: Text) -> Result<(), SipError> {
        let new = checked_field(name, value)?;
        self.set_field(new);
        Ok(())
    }

    /// Replace the value of the header field at `index` (in [`headers`](Self::headers)
    /// order; nothing happens past the end), checked as [`push_header`](Self::push_header)
    /// checks a value.
    pub(crate) fn set_value_at(&mut self, index: usize, value: Text) -> Result<(), SipError> {
        let all = self.fields_mut();
        if let Some(f) = all.get_mut(index) {
            check_value(f.name.as_str(), &value)?;
            f.value = trimmed(value);
        }
        Ok(())
    }

    /// Every value of header `name` as shared [`Text`], in order.
    pub fn header_texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Text> + 'a {
        let wanted = expand_compact(name.as_bytes()).unwrap_or(name);
        let own = match &self.rsip {
            None => self.headers.as_slice(),
            Some(_) => &[],
        };
        let copies = self
            .rsip
            .as_ref()
            .map(|_| self.header_all(name).map(Text::copy_from_str));
        let written = self
            .written_fields()
            .filter(move |f| f.name.as_str().eq_ignore_ascii_case(wanted))
            .map(|f| f.value);
        own.iter()
            .filter(move |f| f.name.as_str().eq_ignore_ascii_case(wanted))
            .map(|f| f.value.clone())
            .chain(written)
            .chain(copies.into_iter().flatten())
    }

    /// Replace the first `name` header with `value` in place and remove the other ones; append
    /// it when absent.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), SipError> {
        let new = checked_header(name, value)?;
        self.set_field(new);
        Ok(())
    }

    /// Remove every `name` header; how many were removed.
    pub fn remove_header(&mut self, name: &str) -> usize {
        let wanted = expand_compact(name.as_bytes()).unwrap_or(name);
        let all = self.fields_mut();
        let before = all.len();
        all.retain(|h| !h.name.as_str().eq_ignore_ascii_case(wanted));
        before - all.len()
    }

    /// Insert a header at position `index` (clamped to the end).
    pub fn insert_header(&mut self, index: usize, name: &str, value: &str) -> Result<(), SipError> {
        let new = checked_header(name, value)?;
        // Among the listed fields (the node's Via at the top of a new leg): the written lines
        // after them stay as they are.
        if self.rsip.is_none() && index <= self.headers.len() {
            self.headers.insert(index, new);
            return Ok(());
        }
        let all = self.fields_mut();
        all.insert(index.min(all.len()), new);
        Ok(())
    }

    /// Append a header.
    pub fn push_header(&mut self, name: &str, value: &str) -> Result<(), SipError> {
        let new = checked_header(name, value)?;
        self.fields_mut().push(new);
        Ok(())
    }

    /// Append a header whose name is a `'static` string and whose value is shared (no copy of
    /// either): the same checks as [`push_header`](Self::push_header).
    pub fn push_header_text(&mut self, name: &'static str, value: Text) -> Result<(), SipError> {
        let new = checked_field(name, value)?;
        self.fields_mut().push(new);
        Ok(())
    }

    /// Move every `name` field (`'static`; compact form accepted) to the end, in order, its
    /// value replaced by what `rewrite` makes of it (checked as
    /// [`push_header`](Self::push_header) would).
    pub fn rewrite_to_end<E: From<SipError>>(
        &mut self,
        name: &'static str,
        mut rewrite: impl FnMut(&Text) -> Result<Text, E>,
    ) -> Result<(), E> {
        let long = expand_compact(name.as_bytes()).unwrap_or(name);
        let all = self.fields_mut();
        let before = all.len();
        for i in 0..before {
            let Some(f) = all.get(i) else { break };
            if !f.name.as_str().eq_ignore_ascii_case(long) {
                continue;
            }
            let new = rewrite(&f.value)?;
            all.push(checked_field(long, new)?);
        }
        if all.len() > before {
            let mut i = 0usize;
            all.retain(|f| {
                let keep = i >= before || !f.name.as_str().eq_ignore_ascii_case(long);
                i += 1;
                keep
            });
        }
        Ok(())
    }

    /// Append the header fields of `from` that `name_for` keeps, in their order: it is given
    /// each field's name and returns the name to write it under, or `None` to leave it out. A
    /// field kept under its own name is copied as it is (it was checked when `from` was
    /// parsed or built; its value is shared, not copied); a renamed one is checked anew.
    pub fn copy_headers<'a>(
        &mut self,
        from: &'a SipMessage,
        mut name_for: impl FnMut(&'a str) -> Option<&'a str>,
    ) -> Result<(), SipError> {
        let out = self.fields_mut();
        match &from.rsip {
            None => {
                for f in &from.headers {
                    let name = f.name.as_str();
                    match name_for(name) {
                        None => {}
                        Some(new) if std::ptr::eq(new, name) => out.push(f.clone()),
                        Some(new) => out.push(checked_field_named(new, f.value.clone())?),
                    }
                }
                for (name, value) in WrittenLines(from.written.as_str()) {
                    match name_for(name) {
                        None => {}
                        Some(new) => out.push(checked_header(new, value)?),
                    }
                }
            }
            Some(h) => {
                for h in h.iter() {
                    let name = header_name(h);
                    match name_for(name) {
                        None => {}
                        Some(new) => out.push(checked_header(new, header_value(h))?),
                    }
                }
            }
        }
        Ok(())
    }

    /// The same message as an rsip `SipMessage` (body copied into rsip's `Vec<u8>`; header
    /// fields copied). `None` when rsip cannot model the Request-URI.
    pub fn to_rsip(&self) -> Option<rsip::SipMessage> {
        let mut headers: Vec<Header> = self
            .pairs()
            .filter(|(n, _)| *n != "Content-Length")
            .map(|(n, v)| make_header(n, v.to_owned()))
            .collect();
        headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
            self.body.len().to_string(),
        )));
        let headers: rsip::Headers = headers.into();
        Some(match &self.start {
            StartLine::Request { method, .. } => rsip::SipMessage::Request(rsip::Request {
                method: *method,
                uri: self.uri()?,
                version: rsip::Version::V2,
                headers,
                body: self.body.to_vec(),
            }),
            StartLine::Response { code, .. } => rsip::SipMessage::Response(rsip::Response {
                status_code: rsip::StatusCode::from(*code),
                version: rsip::Version::V2,
                headers,
                body: self.body.to_vec(),
            }),
        })
    }

    /// Bytes [`encode`](Self::encode) will write.
    pub fn encoded_len(&self) -> usize {
        let start = match &self.start {
            StartLine::Request { method, uri } => method_name(method).len() + uri.len() + 11,
            StartLine::Response { reason, .. } => reason.len() + 14,
        };
        let headers: usize = match &self.rsip {
            None => self
                .headers
                .iter()
                .map(|f| f.name.as_str().len() + f.value.len() + 4)
                .sum::<usize>()
                .saturating_add(self.written.len()),
            Some(_) => self.pairs().map(|(n, v)| n.len() + v.len() + 4).sum(),
        };
        start + headers + 40 + self.body.len()
    }

    /// Write the message in canonical form (see the module doc) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        match &self.start {
            StartLine::Request { method, uri } => {
                dst.put_slice(method_name(method).as_bytes());
                dst.put_u8(b' ');
                dst.put_slice(uri);
                dst.put_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                dst.put_slice(b"SIP/2.0 ");
                put_decimal(dst, u64::from(*code));
                dst.put_u8(b' ');
                dst.put_slice(reason);
                dst.put_slice(b"\r\n");
            }
        }
        let mut length_written = false;
        let listed: Pairs<'_> = match &self.rsip {
            // The written lines are in canonical form already, with no Content-Length.
            None => Pairs::Own(self.headers.iter(), WrittenLines("")),
            Some(_) => self.pairs(),
        };
        for (name, value) in listed {
            if name == "Content-Length" {
                // RFC 3261 §20.14: the real body length, once, where the first one was.
                if !length_written {
                    put_content_length(dst, self.body.len());
                    length_written = true;
                }
                continue;
            }
            dst.put_slice(name.as_bytes());
            dst.put_slice(b": ");
            dst.put_slice(value.as_bytes());
            dst.put_slice(b"\r\n");
        }
        if self.rsip.is_none() {
            dst.put_slice(self.written.as_bytes());
        }
        if !length_written {
            put_content_length(dst, self.body.len());
        }
        dst.put_slice(b"\r\n");
        dst.put_slice(&self.body);
    }

    /// The message in canonical form.
    pub fn serialize(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }
}

/// A request the gateway writes whole (a new leg of the translator): its start line, and its
/// header fields as `Name: value` lines in canonical form, written into one buffer that
/// [`finish`](Self::finish) moves into the message's [`written`](SipMessage::written) lines:
/// one allocation for all the fields, none made or dropped one by one, nothing copied again.
/// Every line holds a checked value (no CR or LF), trimmed; never a Content-Length (the
/// serializer writes the body's).
pub(crate) struct RequestDraft {
    method: rsip::Method,
    uri: Bytes,
    lines: String,
    body: Bytes,
}

impl RequestDraft {
    /// A request to `uri` with room for `capacity` bytes of lines; the Request-URI is checked
    /// as [`SipMessage::request_shared`] checks it.
    pub(crate) fn new(method: rsip::Method, uri: Bytes, capacity: usize) -> Result<Self, SipError> {
        if uri.is_empty() || super::text::has_space_or_control(&uri) {
            return Err(SipError::Request {
                fault: Fault::RequestUri("empty or contains white space"),
                offset: None,
            });
        }
        Ok(RequestDraft {
            method,
            uri,
            lines: String::with_capacity(capacity),
            body: Bytes::new(),
        })
    }

    /// The draft of a message built field by field: its fields written as lines.
    pub(crate) fn of_message(msg: &SipMessage) -> Result<Self, SipError> {
        let (method, uri) = match &msg.start {
            StartLine::Request { method, uri } => (*method, uri.clone()),
            StartLine::Response { .. } => return Err(invalid("Request-URI")),
        };
        let mut draft = RequestDraft::new(method, uri, msg.encoded_len())?;
        for (name, value) in msg.pairs() {
            draft.push_pair(name, value);
        }
        draft.body = msg.body.clone();
        Ok(draft)
    }

    /// The Request-URI.
    pub(crate) fn uri(&self) -> &Bytes {
        &self.uri
    }

    /// Append `name: value`, both checked already (a field of a parsed or built message); a
    /// Content-Length is left out.
    #[inline]
    fn push_pair(&mut self, name: &str, value: &str) {
        if name.eq_ignore_ascii_case("Content-Length") {
            return;
        }
        let l = &mut self.lines;
        l.push_str(name);
        l.push_str(": ");
        l.push_str(value);
        l.push_str("\r\n");
    }

    /// Append a field of another message as it is (it was checked when that message was
    /// parsed or built).
    #[inline]
    pub(crate) fn push_field(&mut self, field: &Field) {
        self.push_pair(field.name.as_str(), field.value.as_str());
    }

    /// Append a whole line of the program's (`Name: value` and CRLF; checked in debug builds).
    #[inline]
    pub(crate) fn push_line(&mut self, line: &'static str) {
        debug_assert!(line.ends_with("\r\n") && line.matches("\r\n").count() == 1);
        debug_assert!(line.split_once(": ").is_some_and(|(n, v)| {
            canonical_name(n.as_bytes()).is_none_or(|c| c == n)
                && !n.eq_ignore_ascii_case("Content-Length")
                && v.trim_matches([' ', '\t', '\r', '\n']) == v.trim_end_matches("\r\n")
        }));
        self.lines.push_str(line);
    }

    /// Append a field whose `name` is written in its canonical spelling and whose value holds
    /// no CR or LF and is trimmed (checked in debug builds): a value the caller made of checked
    /// pieces, or text of the program.
    #[inline]
    pub(crate) fn push_clean(&mut self, name: &'static str, value: &str) {
        debug_assert!(canonical_name(name.as_bytes()).is_none_or(|c| c == name));
        debug_assert!(!name.eq_ignore_ascii_case("Content-Length"));
        debug_assert!(check_value(name, value).is_ok() && value.trim_matches([' ', '\t']) == value);
        let l = &mut self.lines;
        l.push_str(name);
        l.push_str(": ");
        l.push_str(value);
        l.push_str("\r\n");
    }

    /// Append a field whose `name` is a `'static` token, its value checked as
    /// [`SipMessage::push_header`] checks one and trimmed.
    pub(crate) fn push_checked(&mut self, name: &'static str, value: &str) -> Result<(), SipError> {
        debug_assert!(!name.eq_ignore_ascii_case("Content-Length"));
        let long = expand_compact(name.as_bytes()).unwrap_or(name);
        // A known name is a token: only the value needs checking.
        let name = match canonical_name(long.as_bytes()) {
            Some(canonical) => {
                check_value(name, value)?;
                canonical
            }
            None => {
                check_name_value(name, value)?;
                long
            }
        };
        let l = &mut self.lines;
        l.push_str(name);
        l.push_str(": ");
        l.push_str(value.trim_matches([' ', '\t']));
        l.push_str("\r\n");
        Ok(())
    }

    /// Start a field named `name` (canonical spelling) whose value the caller writes in
    /// place into [`value_text`](Self::value_text); where the value starts, for
    /// [`end_value`](Self::end_value).
    #[inline]
    pub(crate) fn begin_value(&mut self, name: &'static str) -> usize {
        debug_assert!(canonical_name(name.as_bytes()).is_none_or(|c| c == name));
        debug_assert!(!name.eq_ignore_ascii_case("Content-Length"));
        self.lines.push_str(name);
        self.lines.push_str(": ");
        self.lines.len()
    }

    /// The buffer to write the value begun by [`begin_value`](Self::begin_value) in: the
    /// caller writes only text with no CR or LF (pieces of checked values, or checked).
    #[inline]
    pub(crate) fn value_text(&mut self) -> &mut String {
        &mut self.lines
    }

    /// The value begun at `at`, as written so far.
    #[inline]
    pub(crate) fn value_at(&self, at: usize) -> &str {
        self.lines.get(at..).unwrap_or_default()
    }

    /// Drop what was written from `at` on.
    fn truncate(&mut self, at: usize) {
        if at <= self.lines.len() && self.lines.is_char_boundary(at) {
            self.lines.truncate(at);
        }
    }

    /// End the value begun at `at`: trimmed of SP / HTAB as a pushed value is, then the line's
    /// end.
    #[inline]
    pub(crate) fn end_value(&mut self, at: usize) {
        debug_assert!(check_value("", self.value_at(at)).is_ok());
        let b = self.value_at(at).as_bytes();
        let ws = |c: &u8| *c == b' ' || *c == b'\t';
        if b.first().is_some_and(ws) || b.last().is_some_and(ws) {
            self.trim_value(at);
        }
        self.lines.push_str("\r\n");
    }

    #[cold]
    #[inline(never)]
    fn trim_value(&mut self, at: usize) {
        let trimmed = self.value_at(at).trim_matches([' ', '\t']).to_owned();
        self.truncate(at);
        self.lines.push_str(&trimmed);
    }

    /// Remove every field named `name` (case ignored); how many were removed.
    pub(crate) fn remove_header(&mut self, name: &str) -> usize {
        let wanted = expand_compact(name.as_bytes()).unwrap_or(name);
        let mut kept = String::with_capacity(self.lines.len());
        let mut removed = 0;
        for (n, v) in WrittenLines(self.lines.as_str()) {
            if n.eq_ignore_ascii_case(wanted) {
                removed += 1;
                continue;
            }
            kept.push_str(n);
            kept.push_str(": ");
            kept.push_str(v);
            kept.push_str("\r\n");
        }
        self.lines = kept;
        removed
    }

    /// Set the body; Content-Length follows on serialize.
    pub(crate) fn set_body(&mut self, body: Bytes) {
        self.body = body;
    }

    /// The message, its lines moved in.
    pub(crate) fn finish(self) -> SipMessage {
        SipMessage {
            start: StartLine::Request {
                method: self.method,
                uri: self.uri,
            },
            headers: Vec::new(),
            written: self.lines,
            rsip: None,
            body: self.body,
        }
    }
}

/// Where a translator writes the header fields of a message it builds: a [`SipMessage`] or a
/// [`RequestDraft`].
pub(crate) trait PushHeader {
    /// Append a field whose `name` is a `'static` token, its value checked (no CR or LF) and
    /// shared when the message keeps values so.
    fn push_text(&mut self, name: &'static str, value: Text) -> Result<(), SipError>;
}

impl PushHeader for SipMessage {
    fn push_text(&mut self, name: &'static str, value: Text) -> Result<(), SipError> {
        self.push_header_text(name, value)
    }
}

impl PushHeader for RequestDraft {
    fn push_text(&mut self, name: &'static str, value: Text) -> Result<(), SipError> {
        self.push_checked(name, &value)
    }
}

/// The value of parameter `name` in the first element of a comma-separated header value
/// (`SIP/2.0/UDP host;branch=z9hG4bK..;rport, ...`), in one pass: the element ends at a comma
/// outside quotes and angle brackets, its parameters start at its first `;`. The same answer
/// as cutting the first element, then splitting its parameters (the test keeps that as the
/// reference); the node asks this of every message it receives (the top Via's branch).
fn first_item_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let b = value.as_bytes();
    let named = |p: &'a str| -> Option<&'a str> {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim_matches([' ', '\t']))
    };
    // The usual value (a Via; a Contact without a display name) has no quoted string and no
    // `<...>`: its first element ends at the first comma, and `;` separates its parameters.
    // Two vector searches instead of a state machine per byte (the node reads two branches a
    // pager MESSAGE).
    if memchr::memchr2(b'"', b'<', b).is_none() {
        let first = value.get(..memchr::memchr(b',', b).unwrap_or(b.len()))?;
        return first.split(';').skip(1).find_map(named);
    }
    let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
    // Start of the current parameter (after its `;`), once the first `;` is seen.
    let mut start: Option<usize> = None;
    let mut i = 0;
    let check = |from: usize, to: usize| -> Option<&'a str> { named(value.get(from..to)?) };
    while let Some(&c) = b.get(i) {
        if escaped {
            escaped = false;
        } else {
            match c {
                b'\\' if in_quotes => escaped = true,
                b'"' => in_quotes = !in_quotes,
                b'<' if !in_quotes => in_angle = true,
                b'>' if !in_quotes => in_angle = false,
                b',' if !in_quotes && !in_angle => break,
                b';' => {
                    if let Some(from) = start
                        && let Some(v) = check(from, i)
                    {
                        return Some(v);
                    }
                    start = Some(i + 1);
                }
                _ => {}
            }
        }
        i += 1;
    }
    check(start?, i)
}

fn invalid(name: &str) -> SipError {
    SipError::Request {
        fault: Fault::InvalidHeader(name.to_owned()),
        offset: None,
    }
}

/// A header built from caller input: the name must be a token, the value must not contain
/// CR or LF (it would inject header fields).
fn checked_header(name: &str, value: &str) -> Result<Field, SipError> {
    check_name_value(name, value)?;
    let long = expand_compact(name.as_bytes()).unwrap_or(name);
    Ok(Field {
        name: Name::of(long, || Text::copy_from_str(long)),
        value: Text::copy_from_str(value.trim_matches([' ', '\t'])),
    })
}

/// [`checked_header`] with a `'static` name and a shared value: nothing copied.
fn checked_field(name: &'static str, value: Text) -> Result<Field, SipError> {
    let long = expand_compact(name.as_bytes()).unwrap_or(name);
    let name = match known_index(long.as_bytes()) {
        // A known name is a token: only the value needs checking.
        Some(i) => {
            check_value(name, &value)?;
            Name::Known(i)
        }
        None => {
            check_name_value(name, &value)?;
            Name::Other(Text::from_static(long))
        }
    };
    Ok(Field {
        name,
        value: trimmed(value),
    })
}

/// [`checked_header`] with a shared value.
fn checked_field_named(name: &str, value: Text) -> Result<Field, SipError> {
    check_name_value(name, &value)?;
    let long = expand_compact(name.as_bytes()).unwrap_or(name);
    Ok(Field {
        name: Name::of(long, || Text::copy_from_str(long)),
        value: trimmed(value),
    })
}

fn check_name_value(name: &str, value: &str) -> Result<(), SipError> {
    if name.is_empty() || !name.bytes().all(parse::is_token_char) {
        return Err(invalid(name));
    }
    check_value(name, value)
}

/// The check of a value a header field `name` is given (no CR or LF: RFC 3261 §7.3.1, it would
/// start another field), with the error [`SipMessage::push_header`] gives.
pub(crate) fn check_value(name: &str, value: &str) -> Result<(), SipError> {
    if super::text::find_byte2(b'\r', b'\n', value.as_bytes()).is_some() {
        return Err(invalid(name));
    }
    Ok(())
}

/// `value` without surrounding SP / HTAB (shared). The two end tests inlined (every value
/// pushed comes here, and is usually trimmed already), the trim out of line.
#[inline]
fn trimmed(value: Text) -> Text {
    let b = value.as_bytes();
    let ws = |c: &u8| *c == b' ' || *c == b'\t';
    if !b.first().is_some_and(ws) && !b.last().is_some_and(ws) {
        return value;
    }
    trim_shared(value)
}

#[cold]
#[inline(never)]
fn trim_shared(value: Text) -> Text {
    let t = value.trim_matches([' ', '\t']);
    value.slice_ref(t)
}

/// A reason phrase without CR/LF (RFC 3261 §25.1: Reason-Phrase has no line breaks).
fn sanitize_reason(reason: &str) -> std::borrow::Cow<'_, str> {
    if reason.bytes().any(|b| b == b'\r' || b == b'\n') {
        std::borrow::Cow::Owned(reason.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(reason)
    }
}

fn put_content_length(dst: &mut BytesMut, len: usize) {
    dst.put_slice(b"Content-Length: ");
    put_decimal(dst, len as u64);
    dst.put_slice(b"\r\n");
}

/// Decimal digits of `n` without going through `fmt`.
fn put_decimal(dst: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    dst.put_slice(buf.get(i..).unwrap_or_default());
}

#[cfg(test)]
mod tests;
