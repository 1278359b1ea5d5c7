//! Start line and header block parsing: limits, unfolding, compact forms, mandatory headers.

use bytes::Bytes;

use super::{
    Fault, Field, Limits, Name, SipError, SipMessage, StartLine, Text, expand_compact, known,
    known_index,
};
use crate::wire::text::{
    alnum_dash_run, find_byte, find_byte2, find_byte4, find_crlf, rfind_byte, trim_ws,
};

/// RFC 3261 §25.1 `token` characters, as a table (this runs for every header-name byte).
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// Is `b` a token character (RFC 3261 §25.1)?
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN.get(usize::from(b)).copied().unwrap_or(false)
}

pub(super) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The syntactic shape of a first line, before any semantic check.
enum Shape<'a> {
    Request {
        method: &'a [u8],
        uri: &'a [u8],
        version: &'a [u8],
        uri_at: usize,
    },
    Response {
        version: &'a [u8],
        code: &'a [u8],
        reason: &'a [u8],
    },
}

/// Read the shape of the first line: `token SP ... SP SIP/x.y` is a request line (even when the
/// middle is not a valid URI: the request can then be answered with a 400), `SIP/...` a status
/// line. Anything else is unreadable.
fn shape(line: &[u8]) -> Option<Shape<'_>> {
    if line.len() >= 4 && line.get(..4)?.eq_ignore_ascii_case(b"SIP/") {
        let sp = memchr::memchr(b' ', line)?;
        let (version, rest) = line.split_at_checked(sp)?;
        let rest = rest.get(1..)?;
        let (code, reason) = match memchr::memchr(b' ', rest) {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)?),
            None => (rest, &b""[..]),
        };
        return Some(Shape::Response {
            version,
            code,
            reason,
        });
    }
    let first_sp = memchr::memchr(b' ', line)?;
    let last_sp = memchr::memrchr(b' ', line)?;
    if last_sp <= first_sp {
        return None;
    }
    let method = line.get(..first_sp)?;
    let version = line.get(last_sp + 1..)?;
    if method.is_empty() || !method.iter().all(|b| is_token_char(*b)) {
        return None;
    }
    if version.len() < 4 || !version.get(..4)?.eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    Some(Shape::Request {
        method,
        uri: line.get(first_sp + 1..last_sp)?,
        version,
        uri_at: first_sp + 1,
    })
}

/// `SIP/2.0`, any case for the letters (RFC 3261 §7.1, ABNF strings are case-insensitive).
fn is_sip2(version: &[u8]) -> bool {
    version.eq_ignore_ascii_case(b"SIP/2.0")
}

/// Wrap `fault` according to what the first line of `data` says the message is.
pub(super) fn classify_error(
    data: &[u8],
    limits: &Limits,
    fault: Fault,
    offset: Option<usize>,
) -> SipError {
    let end = find_crlf(data, 0).unwrap_or(data.len());
    let line = data.get(..end.min(limits.max_line)).unwrap_or_default();
    match (end <= limits.max_line).then(|| shape(line)).flatten() {
        Some(Shape::Request { version, .. }) if is_sip2(version) => {
            SipError::Request { fault, offset }
        }
        Some(Shape::Response { .. }) => SipError::Response { fault, offset },
        _ => SipError::Unreadable { fault, offset },
    }
}

/// `CSeq = 1*DIGIT LWS Method` (RFC 3261 §20.16); the number is below 2**31 (§8.1.1.5).
pub(super) fn cseq(value: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err("sequence number missing");
    }
    let (num, rest) = value
        .split_at_checked(digits)
        .ok_or("sequence number missing")?;
    let seq = decimal(num)
        .filter(|n| *n < (1 << 31))
        .ok_or("sequence number over 2**31-1")?;
    let method = trim_ws(rest);
    if method.len() == rest.len() {
        return Err("no space between number and method");
    }
    if method.is_empty() || !method.iter().all(|b| is_token_char(*b)) {
        return Err("method missing or not a token");
    }
    Ok((seq as u32, method))
}

/// A run of ASCII digits as a number; `None` when empty, not digits, or over u64.
pub(super) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A header block parsed up to (not including) the body.
#[derive(Debug)]
pub(super) struct Head {
    pub start: StartLine,
    pub headers: Vec<Field>,
    pub content_length: Option<usize>,
    pub content_length_offset: Option<usize>,
    pub is_request: bool,
}

impl Head {
    pub fn error(&self, fault: Fault, offset: Option<usize>) -> SipError {
        if self.is_request {
            SipError::Request { fault, offset }
        } else {
            SipError::Response { fault, offset }
        }
    }

    pub fn into_message(self, body: Bytes) -> SipMessage {
        SipMessage {
            start: self.start,
            headers: self.headers,
            written: String::new(),
            rsip: None,
            body,
        }
    }
}

/// Counts and first positions of the header fields §8.1.1 makes mandatory or single.
#[derive(Default)]
struct Seen {
    call_id: Slot,
    cseq: Slot,
    from: Slot,
    to: Slot,
    max_forwards: Slot,
    content_length: Slot,
    content_type: Slot,
    via: Slot,
}

/// (how many, index of the first, byte offset of the first).
type Slot = (u8, usize, usize);

fn bump(slot: &mut Slot, index: usize, at: usize) {
    if slot.0 == 0 {
        slot.1 = index;
        slot.2 = at;
    }
    slot.0 = slot.0.saturating_add(1);
}

/// Why [`scan_head`] stopped short of a head.
pub(super) enum ScanError {
    /// No empty line ends the header block (RFC 3261 §7) in the bytes given.
    NoBlank,
    /// The head is malformed.
    Sip(SipError),
}

impl From<SipError> for ScanError {
    fn from(e: SipError) -> Self {
        ScanError::Sip(e)
    }
}

/// Parse the start line and header block of `data`; `blank` is the index of the CRLFCRLF that
/// ends the header block (the first one in `data`: the stream decoder looked for it).
pub(super) fn parse_head(data: &Bytes, blank: usize, limits: &Limits) -> Result<Head, SipError> {
    match scan_head(data, limits) {
        Ok((head, found)) => {
            debug_assert_eq!(found, blank);
            Ok(head)
        }
        Err(ScanError::Sip(e)) => Err(e),
        Err(ScanError::NoBlank) => Err(classify_error(
            data,
            limits,
            Fault::NoBlankLine,
            Some(data.len()),
        )),
    }
}

/// The start line `data[..line_end]`: what it is, and whether it is a request.
pub(super) fn start_line(
    data: &Bytes,
    line_end: usize,
    limits: &Limits,
) -> Result<(StartLine, bool), SipError> {
    let unreadable = |fault: Fault, offset: usize| SipError::Unreadable {
        fault,
        offset: Some(offset),
    };
    if line_end > limits.max_line {
        return Err(unreadable(
            Fault::LineTooLong {
                limit: limits.max_line,
            },
            0,
        ));
    }
    let line = data.get(..line_end).unwrap_or_default();
    let trimmed = line
        .iter()
        .rposition(|b| !is_ws(*b))
        .map_or(&b""[..], |last| line.get(..=last).unwrap_or_default());
    if trimmed.len() < line.len() {
        // RFC 4475 §3.1.2.10 "trws": SP after the SIP-Version. The line is otherwise
        // readable, so the request can be answered.
        if let Some(Shape::Request { version, .. }) = shape(trimmed)
            && is_sip2(version)
        {
            return Err(SipError::Request {
                fault: Fault::StartLine("white space at the end of the request line"),
                offset: Some(trimmed.len()),
            });
        }
    }
    let Some(shape) = shape(line) else {
        return Err(unreadable(
            Fault::StartLine("first line is not a SIP request line or status line"),
            0,
        ));
    };
    let (start, is_request) = match shape {
        Shape::Response {
            version,
            code,
            reason,
        } => {
            let fail = |fault, offset| SipError::Response {
                fault,
                offset: Some(offset),
            };
            if !is_sip2(version) {
                return Err(fail(
                    Fault::Version(String::from_utf8_lossy(version).into_owned()),
                    0,
                ));
            }
            // RFC 3261 §7.2: Status-Code is 3DIGIT (RFC 4475 §3.1.2.19 "bigcode").
            let code = match (code.len(), decimal(code)) {
                (3, Some(c)) if (100..=699).contains(&c) => c as u16,
                _ => {
                    return Err(fail(
                        Fault::StartLine("status code is not three digits 100-699"),
                        version.len() + 1,
                    ));
                }
            };
            if reason.iter().any(|b| *b == b'\r' || *b == b'\n') {
                return Err(fail(Fault::StartLine("bare CR or LF in status line"), 0));
            }
            (
                StartLine::Response {
                    code,
                    reason: data.slice_ref(reason),
                },
                false,
            )
        }
        Shape::Request {
            method,
            uri,
            version,
            uri_at,
        } => {
            let fail = |fault, offset| SipError::Request {
                fault,
                offset: Some(offset),
            };
            if !is_sip2(version) {
                return Err(fail(
                    Fault::Version(String::from_utf8_lossy(version).into_owned()),
                    line_end.saturating_sub(version.len()),
                ));
            }
            check_request_uri(uri).map_err(|why| fail(Fault::RequestUri(why), uri_at))?;
            let Some(m) = super::method_from_name(method) else {
                return Err(fail(
                    Fault::UnknownMethod(String::from_utf8_lossy(method).into_owned()),
                    0,
                ));
            };
            (
                StartLine::Request {
                    method: m,
                    uri: data.slice_ref(uri),
                },
                true,
            )
        }
    };
    Ok((start, is_request))
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// One physical line found by [`scan_line`].
#[derive(Clone, Copy)]
struct Line {
    /// Index of the CR of the CRLF that ends the line.
    end: usize,
    /// No CR or LF in the line but its CRLF (RFC 3261 §7.3.1: none inside a value).
    clean: bool,
    /// Every byte of the line is ASCII, so that any part of it is UTF-8.
    ascii: bool,
}

/// High bit of each byte of `x` below 14: its low seven bits plus 0x72 stay below 0x80 and its
/// own high bit is clear (exact per byte: no carry leaves a byte).
#[inline]
fn below_14(x: u64) -> u64 {
    !(((x & SEVEN) + LO * (0x80 - 14)) | x) & HI
}

/// The first byte of `hay` below 14 (CR 0x0d and LF 0x0a among them), with the bytes before it
/// or-ed together (their high bits say whether they are ASCII). Sixteen bytes a step, as two
/// words and one branch.
#[inline]
fn first_control(hay: &[u8]) -> Option<(usize, u64)> {
    let mut high = 0u64;
    let mut at = 0usize;
    let mut chunks = hay.chunks_exact(16);
    for c in &mut chunks {
        let (Some(lo), Some(hi)) = (c.first_chunk::<8>(), c.last_chunk::<8>()) else {
            break;
        };
        let (x, y) = (u64::from_le_bytes(*lo), u64::from_le_bytes(*hi));
        let (bx, by) = (below_14(x), below_14(y));
        if bx | by != 0 {
            let (w, b, off) = if bx != 0 { (x, bx, 0) } else { (y, by, 8) };
            if off == 8 {
                high |= x;
            }
            let i = (b.trailing_zeros() / 8) as usize;
            // Only the bytes before the hit are known to be in the line.
            high |= w & ((1u64 << (8 * i)) - 1);
            return Some((at + off + i, high));
        }
        high |= x | y;
        at += 16;
    }
    for (i, b) in chunks.remainder().iter().enumerate() {
        if *b < 14 {
            return Some((at + i, high));
        }
        high |= u64::from(*b);
    }
    None
}

/// The line that starts at `from`: up to the first CRLF (a bare CR or LF stays inside it, for
/// the caller to refuse), `None` when no CRLF follows. A word at a time, looking for a byte
/// below 14 (a tab or a NUL found so is passed over), and or-ing the words to tell whether
/// the line is ASCII: one pass over the line instead of a search for its end, another for a
/// bare CR/LF and a UTF-8 check.
#[inline]
fn scan_line(data: &[u8], from: usize) -> Option<Line> {
    let mut at = from;
    let mut high = 0u64;
    let mut clean = true;
    loop {
        let rest = data.get(at..)?;
        let (i, h) = first_control(rest)?;
        high |= h;
        match rest.get(i..) {
            Some([b'\r', b'\n', ..]) => {
                return Some(Line {
                    end: at + i,
                    clean,
                    ascii: high & HI == 0,
                });
            }
            Some([b'\r' | b'\n', ..]) => clean = false,
            _ => {}
        }
        at = at.saturating_add(i).saturating_add(1);
    }
}

/// `s` without leading SP / HTAB.
#[inline]
fn trim_start_ws(s: &[u8]) -> &[u8] {
    let mut s = s;
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

/// `data[start..end]` without SP / HTAB at either end, as a range.
#[inline]
fn trim_range(data: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && data.get(start).is_some_and(|b| is_ws(*b)) {
        start += 1;
    }
    while end > start && data.get(end - 1).is_some_and(|b| is_ws(*b)) {
        end -= 1;
    }
    (start, end)
}

/// The name a header field is kept under (RFC 3261 §7.3.3: a compact form becomes the long
/// one; a known name gets its canonical spelling; others stay as received) and, for a known
/// name, its index in [`super::KNOWN_NAMES`]. `name` is a token at `data[at..]`.
#[inline]
fn field_name(data: &Bytes, at: usize, name: &[u8]) -> (Name, Option<u8>) {
    if let Some(long) = expand_compact(name) {
        let i = known_index(long.as_bytes());
        return (
            i.map_or(Name::Other(Text::from_static(long)), Name::Known),
            i,
        );
    }
    match known_index(name) {
        Some(i) => (Name::Known(i), Some(i)),
        // A token is ASCII: UTF-8.
        None => (
            Name::Other(Text::from_parsed(data, at, at.saturating_add(name.len()))),
            None,
        ),
    }
}

/// Parse the start line and header block at the start of `data`, up to the first empty line;
/// returns the head and the index of the CRLFCRLF that ends it.
pub(super) fn scan_head(data: &Bytes, limits: &Limits) -> Result<(Head, usize), ScanError> {
    // Start line: up to the first CRLF (there is none before the end of the header block
    // without one).
    let Some(first) = scan_line(data, 0) else {
        return Err(ScanError::NoBlank);
    };
    let line_end = first.end;
    let (start, is_request) = start_line(data, line_end, limits)?;
    let fail = |fault: Fault, offset: usize| {
        ScanError::Sip(if is_request {
            SipError::Request {
                fault,
                offset: Some(offset),
            }
        } else {
            SipError::Response {
                fault,
                offset: Some(offset),
            }
        })
    };
    let too_long = |at: usize| {
        fail(
            Fault::LineTooLong {
                limit: limits.max_line,
            },
            at,
        )
    };

    let mut headers: Vec<Field> = Vec::with_capacity(16);
    let mut seen = Seen::default();
    // The first Via / Content-Encoding fault, in header order: `validate` reports it after
    // the checks that come before it there.
    let mut deferred: Option<Invalid> = None;
    let mut folded = String::new();
    // Offset of the current line.
    let mut at = line_end.saturating_add(2);
    let blank = loop {
        // RFC 3261 §7: an empty line ends the header block.
        if data.get(at..at.saturating_add(2)) == Some(&b"\r\n"[..]) {
            break at.saturating_sub(2);
        }
        let Some(l) = scan_line(data, at) else {
            return Err(ScanError::NoBlank);
        };
        let line = data.get(at..l.end).unwrap_or_default();
        if line.len() > limits.max_line {
            return Err(too_long(at));
        }
        if line.first().is_some_and(|b| is_ws(*b)) {
            return Err(fail(Fault::StrayContinuation, at));
        }
        // RFC 3261 §7.3.1: `field-name HCOLON value`: a token, white space, the colon (the
        // line's first: a token holds none).
        // Names are mostly letters, digits and `-`: a word at a time, then the other token
        // characters one by one.
        let run = alnum_dash_run(line);
        let name_len = run
            + line
                .get(run..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| is_token_char(**b))
                .count();
        let (name, after) = line.split_at_checked(name_len).unwrap_or((line, b""));
        let value_from = match trim_start_ws(after).split_first() {
            Some((b':', rest)) if !name.is_empty() => l.end.saturating_sub(rest.len()),
            _ => return Err(fail(Fault::HeaderSyntax, at)),
        };
        let (name, index) = field_name(data, at, name);
        let long = name.as_str();
        if headers.len() >= limits.max_headers {
            return Err(fail(
                Fault::TooManyHeaders {
                    limit: limits.max_headers,
                },
                at,
            ));
        }
        let bad_break = |v: &[u8]| memchr::memchr2(b'\r', b'\n', v).is_some();
        let (vs, ve) = trim_range(data, value_from, l.end);
        let first = data.get(vs..ve).unwrap_or_default();
        let mut next = l.end.saturating_add(2);
        // RFC 3261 §7.3.1: a line starting with SP/HTAB continues the previous one; the
        // folding is equivalent to one SP.
        let value: Text = if data.get(next).is_some_and(|b| is_ws(*b)) {
            folded.clear();
            let mut push = |piece: &[u8], at: usize| -> Result<(), ScanError> {
                if bad_break(piece) {
                    return Err(fail(Fault::BareLineBreak(long.to_owned()), at));
                }
                let piece = std::str::from_utf8(piece)
                    .map_err(|_| fail(Fault::NotUtf8(long.to_owned()), at))?;
                if !piece.is_empty() {
                    if !folded.is_empty() {
                        folded.push(' ');
                    }
                    folded.push_str(piece);
                }
                Ok(())
            };
            push(first, at)?;
            while data.get(next).is_some_and(|b| is_ws(*b)) {
                let Some(c) = scan_line(data, next) else {
                    return Err(ScanError::NoBlank);
                };
                let cont = data.get(next..c.end).unwrap_or_default();
                if cont.len() > limits.max_line {
                    return Err(too_long(next));
                }
                push(trim_ws(cont), next)?;
                next = c.end.saturating_add(2);
            }
            Text::from(folded.clone())
        } else {
            // A clean line has no CR or LF but its CRLF; otherwise look where they are.
            if !l.clean && bad_break(first) {
                return Err(fail(Fault::BareLineBreak(long.to_owned()), at));
            }
            if !l.ascii && std::str::from_utf8(first).is_err() {
                return Err(fail(Fault::NotUtf8(long.to_owned()), at));
            }
            Text::from_parsed(data, vs, ve)
        };
        // The unfolded line is what gets written: it must fit the line limit too.
        if long.len().saturating_add(2).saturating_add(value.len()) > limits.max_line {
            return Err(too_long(at));
        }
        let i = headers.len();
        match index {
            Some(known::CALL_ID) => bump(&mut seen.call_id, i, at),
            Some(known::CSEQ) => bump(&mut seen.cseq, i, at),
            Some(known::FROM) => bump(&mut seen.from, i, at),
            Some(known::TO) => bump(&mut seen.to, i, at),
            Some(known::MAX_FORWARDS) => bump(&mut seen.max_forwards, i, at),
            Some(known::CONTENT_LENGTH) => bump(&mut seen.content_length, i, at),
            Some(known::CONTENT_TYPE) => bump(&mut seen.content_type, i, at),
            Some(known::VIA) => {
                bump(&mut seen.via, i, at);
                if deferred.is_none()
                    && let Err(why) = check_via(value.as_bytes())
                {
                    deferred = Some((Fault::Malformed { header: "Via", why }, Some(seen.via.2)));
                }
            }
            Some(known::CONTENT_ENCODING) if deferred.is_none() => {
                deferred = check_encoding(&value).err();
            }
            _ => {}
        }
        headers.push(Field { name, value });
        at = next;
    };
    let content_length =
        validate(&headers, &seen, &start, blank, deferred).map_err(|(fault, offset)| {
            if is_request {
                SipError::Request { fault, offset }
            } else {
                SipError::Response { fault, offset }
            }
        })?;
    let content_length_offset = (seen.content_length.0 > 0).then_some(seen.content_length.2);
    Ok((
        Head {
            start,
            headers,
            content_length,
            content_length_offset,
            is_request,
        },
        blank,
    ))
}

/// A byte class as a table: ASCII letters and digits when `alnum`, and the bytes of `extra`.
const fn class(alnum: bool, extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alnum && (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

/// RFC 3261 §25.1 `user` / `password` characters: unreserved, escaped, user-unreserved, ":".
static URI_USER: [bool; 256] = class(true, b"-_.!~*'()%&=+$,;?/:");
/// RFC 3261 §25.1 `paramchar`: param-unreserved, unreserved, escaped (and `=` between name
/// and value).
static URI_PARAM: [bool; 256] = class(true, b"-_.!~*'()%[]/:&+$=");
/// What this check lets through in a host name or IPv4 address.
static URI_HOST: [bool; 256] = class(true, b"-.");
/// RFC 3261 §25.1 `scheme` after its first letter.
static URI_SCHEME: [bool; 256] = class(true, b"+-.");
/// Inside `[...]`: an IPv6 reference.
static URI_V6: [bool; 256] = class(false, b"0123456789abcdefABCDEF:.");

/// Are all bytes of `s` in `table`? (One lookup a byte, no search of a character list.)
#[inline]
fn all_in(table: &[bool; 256], s: &[u8]) -> bool {
    s.iter()
        .all(|b| table.get(usize::from(*b)).copied().unwrap_or(false))
}

/// RFC 3261 §25.1 Request-URI checks that do not need a full URI parser, then rsip's parser
/// for `sip:`/`sips:`. Other schemes (`tel:`, `im:`, `urn:`) are kept as received.
pub(super) fn check_request_uri(uri: &[u8]) -> Result<(), &'static str> {
    if uri.is_empty() {
        return Err("empty");
    }
    // One pass for white space and control characters together; which one it was only
    // matters (for the reason phrase) when there is one.
    if uri.iter().any(|b| *b < 0x21 || *b == 0x7f) {
        if uri.iter().any(|b| is_ws(*b)) {
            // RFC 4475 §3.1.2.8 / §3.1.2.9: no LWS inside or around the Request-URI.
            return Err("contains white space");
        }
        if uri.first() == Some(&b'<') {
            return Err("enclosed in <>");
        }
        return Err("contains a control character");
    }
    if uri.first() == Some(&b'<') {
        // RFC 4475 §3.1.2.7.
        return Err("enclosed in <>");
    }
    let Some(colon) = find_byte(b':', uri) else {
        return Err("no scheme");
    };
    let scheme = uri.get(..colon).unwrap_or_default();
    let scheme_ok =
        scheme.first().is_some_and(|b| b.is_ascii_alphabetic()) && all_in(&URI_SCHEME, scheme);
    if !scheme_ok || colon + 1 == uri.len() {
        return Err("no scheme");
    }
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        check_sip_uri(uri.get(colon + 1..).unwrap_or_default())
    } else {
        Ok(())
    }
}

/// RFC 3261 §25.1 `SIP-URI` after the scheme: `[userinfo "@"] hostport *(";" uri-parameter)`.
/// Our own check rather than rsip's URI parser, which refuses valid URIs such as RFC 4475
/// §3.1.1.9 "semiuri" (`sip:user;par=u%40example.net@example.com`).
fn check_sip_uri(rest: &[u8]) -> Result<(), &'static str> {
    const BAD: &str = "not a valid SIP URI";
    let (userinfo, after) = match rfind_byte(b'@', rest) {
        Some(at) => (rest.get(..at), rest.get(at + 1..).unwrap_or_default()),
        None => (None, rest),
    };
    if let Some(user) = userinfo {
        let ok = !user.is_empty() && all_in(&URI_USER, user) && escapes_ok(user);
        if !ok {
            return Err(BAD);
        }
    }
    if find_byte(b'?', after).is_some() {
        // RFC 3261 §19.1.1 (table 1): headers are not allowed in a Request-URI;
        // RFC 4475 §3.1.2.11.
        return Err("contains URI headers");
    }
    let (hostport, mut params) = match find_byte(b';', after) {
        Some(i) => (after.get(..i).unwrap_or_default(), after.get(i..)),
        None => (after, None),
    };
    let (host_ok, port) = if hostport.first() == Some(&b'[') {
        let close = find_byte(b']', hostport).ok_or(BAD)?;
        let v6 = hostport.get(1..close).unwrap_or_default();
        (
            !v6.is_empty() && all_in(&URI_V6, v6),
            hostport.get(close + 1..).unwrap_or_default(),
        )
    } else {
        let (host, port) = match find_byte(b':', hostport) {
            Some(c) => (
                hostport.get(..c).unwrap_or_default(),
                hostport.get(c..).unwrap_or_default(),
            ),
            None => (hostport, &b""[..]),
        };
        (!host.is_empty() && all_in(&URI_HOST, host), port)
    };
    if !host_ok {
        return Err(BAD);
    }
    if let Some(digits) = port.strip_prefix(b":") {
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(BAD);
        }
    } else if !port.is_empty() {
        return Err(BAD);
    }
    // uri-parameter: pname ["=" pvalue], paramchar = param-unreserved / unreserved / escaped.
    // `params` is `;a;b=c...`: each parameter starts after a `;`.
    while let Some([b';', rest @ ..]) = params {
        let (param, next) = match find_byte(b';', rest) {
            Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i..)),
            None => (rest, None),
        };
        let ok = !param.is_empty() && all_in(&URI_PARAM, param) && escapes_ok(param);
        if !ok {
            return Err(BAD);
        }
        params = next;
    }
    Ok(())
}

/// Every `%` is followed by two hex digits (RFC 3261 §25.1 `escaped`).
fn escapes_ok(s: &[u8]) -> bool {
    let mut rest = s;
    while let Some(i) = find_byte(b'%', rest) {
        let Some(after) = rest.get(i + 1..) else {
            return true;
        };
        if !after
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            return false;
        }
        rest = after;
    }
    true
}

/// A name-addr / addr-spec value (From, To): balanced quotes and angle brackets. Jumps from one
/// of `\ " < >` to the next (a word at a time) instead of looking at every byte.
pub(super) fn check_name_addr(value: &[u8]) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    let mut in_quotes = false;
    let mut angle = 0u8;
    let mut at = 0usize;
    while let Some(i) = value
        .get(at..)
        .and_then(|rest| find_byte4(b'\\', b'"', b'<', b'>', rest))
    {
        let i = at + i;
        at = i + 1;
        match value.get(i) {
            // A quoted-pair: the next byte, whatever it is, is taken as it is.
            Some(b'\\') if in_quotes => at = i + 2,
            Some(b'"') => in_quotes = !in_quotes,
            Some(b'<') if !in_quotes => angle = angle.saturating_add(1),
            Some(b'>') if !in_quotes => {
                angle = angle.checked_sub(1).ok_or("unbalanced < >")?;
            }
            _ => {}
        }
    }
    if in_quotes {
        // RFC 4475 §3.1.2.6.
        return Err("unterminated quoted string");
    }
    if angle != 0 {
        return Err("unbalanced < >");
    }
    Ok(())
}

/// Via (RFC 3261 §20.42): every comma-separated via-parm starts with the SIP sent-protocol and
/// has no empty parameter (RFC 4475 §3.1.2.1 "badinv01": `;;,;,,`). Jumps from one `,` or `;`
/// to the next (a word at a time).
pub(super) fn check_via(value: &[u8]) -> Result<(), &'static str> {
    const PROTO: &str = "via-parm is not SIP/2.0/<transport> <host>";
    // Start of the current via-parm.
    let mut item = 0usize;
    let mut at = 0usize;
    loop {
        let rest = value.get(at..).unwrap_or_default();
        let hit = find_byte2(b',', b';', rest).map(|i| at + i);
        match hit.and_then(|i| value.get(i)) {
            Some(b';') => {
                let i = hit.unwrap_or_default();
                // A parameter is empty when only white space lies between its `;` and the
                // next `;`, `,` (the end of the via-parm) or the end.
                let after = value.get(i + 1..).unwrap_or_default();
                if matches!(after.iter().find(|b| !is_ws(**b)), None | Some(b';' | b',')) {
                    // The via-parm must still be checked first: its fault is reported first.
                    let end = i + 1 + find_byte(b',', after).unwrap_or(after.len());
                    via_proto(value.get(item..end).unwrap_or_default()).ok_or(PROTO)?;
                    return Err("empty parameter");
                }
                at = i + 1;
            }
            _ => {
                // The end of a via-parm: a `,` or the end of the value.
                let end = hit.unwrap_or(value.len());
                via_proto(value.get(item..end).unwrap_or_default()).ok_or(PROTO)?;
                match hit {
                    Some(i) => {
                        item = i + 1;
                        at = i + 1;
                    }
                    None => return Ok(()),
                }
            }
        }
    }
}

/// Does the via-parm `item` (white space around it allowed) start with `SIP` and hold a `/`?
fn via_proto(item: &[u8]) -> Option<()> {
    let item = trim_ws(item);
    let ok = item
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP"))
        && (item.get(3) == Some(&b'/') || find_byte(b'/', item).is_some());
    ok.then_some(())
}

pub(super) type Invalid = (Fault, Option<usize>);

/// Content-Encoding (RFC 3261 §20.12, §21.4.13): what we can decode or pass on.
pub(super) fn check_encoding(value: &str) -> Result<(), Invalid> {
    for coding in value.split(',') {
        let coding = coding.trim_matches([' ', '\t']);
        let known = ["identity", "deflate", "gzip"]
            .iter()
            .any(|k| coding.eq_ignore_ascii_case(k));
        if !known {
            return Err((Fault::UnsupportedEncoding(coding.to_owned()), None));
        }
    }
    Ok(())
}

/// RFC 3261 §8.1.1 mandatory header fields, §7.3.1 single ones, and the grammar of those the
/// gateway reads. Returns Content-Length.
/// `block_end` (the offset of the empty line) is where a missing header is reported.
/// `deferred` is the first Via or Content-Encoding fault, in header order (found while the
/// header block was read).
fn validate(
    headers: &[Field],
    seen: &Seen,
    start: &StartLine,
    block_end: usize,
    deferred: Option<Invalid>,
) -> Result<Option<usize>, Invalid> {
    let is_request = matches!(start, StartLine::Request { .. });
    let singles: [(&Slot, &'static str); 7] = [
        (&seen.call_id, "Call-ID"),
        (&seen.cseq, "CSeq"),
        (&seen.from, "From"),
        (&seen.to, "To"),
        (&seen.max_forwards, "Max-Forwards"),
        (&seen.content_length, "Content-Length"),
        (&seen.content_type, "Content-Type"),
    ];
    for (slot, name) in singles {
        if slot.0 > 1 {
            return Err((Fault::Duplicate(name), Some(slot.2)));
        }
    }
    let mut mandatory: [(&Slot, &'static str); 6] = [
        (&seen.via, "Via"),
        (&seen.from, "From"),
        (&seen.to, "To"),
        (&seen.call_id, "Call-ID"),
        (&seen.cseq, "CSeq"),
        (&seen.max_forwards, "Max-Forwards"),
    ];
    if !is_request {
        // Responses carry no Max-Forwards (RFC 3261 §8.2.6.2).
        mandatory[5].1 = "";
    }
    for (slot, name) in mandatory {
        if slot.0 == 0 && !name.is_empty() {
            return Err((Fault::Missing(name), Some(block_end)));
        }
    }
    let value = |slot: &Slot| {
        headers
            .get(slot.1)
            .map(|h| h.value.as_bytes().as_ref())
            .unwrap_or_default()
    };
    let malformed = |header: &'static str, why: &'static str, slot: &Slot| {
        (Fault::Malformed { header, why }, Some(slot.2))
    };

    let call_id = value(&seen.call_id);
    if call_id.is_empty() || call_id.iter().any(|b| is_ws(*b)) {
        return Err(malformed(
            "Call-ID",
            "empty or contains white space",
            &seen.call_id,
        ));
    }
    let (_, cseq_method) =
        cseq(value(&seen.cseq)).map_err(|why| malformed("CSeq", why, &seen.cseq))?;
    if let StartLine::Request { method, .. } = start {
        let name = super::method_name(method);
        if cseq_method != name.as_bytes() {
            return Err((
                Fault::CSeqMismatch {
                    cseq: String::from_utf8_lossy(cseq_method).into_owned(),
                    method: name.to_owned(),
                },
                Some(seen.cseq.2),
            ));
        }
        // RFC 3261 §20.22: 0-255.
        if decimal(value(&seen.max_forwards)).is_none_or(|n| n > 255) {
            return Err(malformed(
                "Max-Forwards",
                "not a number 0-255",
                &seen.max_forwards,
            ));
        }
    }
    check_name_addr(value(&seen.from)).map_err(|why| malformed("From", why, &seen.from))?;
    check_name_addr(value(&seen.to)).map_err(|why| malformed("To", why, &seen.to))?;
    if let Some(fault) = deferred {
        return Err(fault);
    }
    if seen.content_length.0 == 0 {
        return Ok(None);
    }
    match decimal(value(&seen.content_length)).and_then(|n| usize::try_from(n).ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(malformed(
            "Content-Length",
            "not a decimal number",
            &seen.content_length,
        )),
    }
}
