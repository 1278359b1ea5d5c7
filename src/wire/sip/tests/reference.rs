//! The parser as it was before session 16 (memmem for the empty line, a line iterator, a
//! compare chain for known names, character lists searched per byte), kept as the reference
//! the fast parser is compared with: the same messages, the same errors.
#![allow(dead_code, clippy::all)]

use bytes::Bytes;

use super::super::{
    Fault, Field, KNOWN_NAMES, Limits, Name, SipError, SipMessage, StartLine, Text, expand_compact,
};
use crate::wire::text::{find_crlf, trim_ws};

// The start line and value readers the one-pass scan did not change are shared with it.
use super::super::parse::{
    Head, check_encoding, classify_error, cseq, decimal, is_token_char, is_ws, start_line,
};

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

/// Parse the start line and header block of `data`; `blank` is the index of the CRLFCRLF that
/// ends the header block.
pub(super) fn parse_head(data: &Bytes, blank: usize, limits: &Limits) -> Result<Head, SipError> {
    // Start line.
    let line_end = find_crlf(data, 0).unwrap_or(blank).min(blank);
    // The start line as the fast parser reads it: the one-pass scan did not change it (the
    // Request-URI check inside has its own comparison with the old one).
    let (start, is_request) = start_line(data, line_end, limits)?;
    let fail = |fault: Fault, offset: usize| {
        if is_request {
            SipError::Request {
                fault,
                offset: Some(offset),
            }
        } else {
            SipError::Response {
                fault,
                offset: Some(offset),
            }
        }
    };

    // Header block: data[block_start..blank], lines separated by CRLF.
    let block_start = line_end.saturating_add(2);
    let block = data.get(block_start..blank).unwrap_or_default();
    let mut lines = Lines {
        block,
        pos: 0,
        base: block_start,
        done: block_start > blank,
    }
    .peekable();
    let utf8 = Utf8Block::new(block);
    let mut headers: Vec<Field> = Vec::with_capacity(16);
    let mut seen = Seen::default();
    let mut folded = String::new();
    while let Some((at, line)) = lines.next() {
        if line.len() > limits.max_line {
            return Err(fail(
                Fault::LineTooLong {
                    limit: limits.max_line,
                },
                at,
            ));
        }
        if line.first().is_some_and(|b| is_ws(*b)) {
            return Err(fail(Fault::StrayContinuation, at));
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(fail(Fault::HeaderSyntax, at));
        };
        let (raw_name, rest) = line.split_at_checked(colon).unwrap_or((line, b""));
        let name = trim_ws(raw_name);
        if name.is_empty() || !name.iter().all(|b| is_token_char(*b)) {
            return Err(fail(Fault::HeaderSyntax, at));
        }
        let first = trim_ws(rest.get(1..).unwrap_or_default());
        // Known names in their canonical spelling, compact ones expanded, others as received
        // (token characters are ASCII: always UTF-8).
        let name = match expand_compact(name) {
            Some(long) => name_of(canonical_name(long.as_bytes()).unwrap_or(long)),
            None => match canonical_name(name) {
                Some(c) => name_of(c),
                None => Name::Other(Text::from_checked(data, utf8.str(name).unwrap_or_default())),
            },
        };
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
        // RFC 3261 §7.3.1: a line starting with SP/HTAB continues the previous one; the
        // folding is equivalent to one SP.
        let value: Text = if lines
            .peek()
            .is_some_and(|(_, l)| l.first().is_some_and(|b| is_ws(*b)))
        {
            folded.clear();
            let mut push = |piece: &[u8], at: usize| -> Result<(), SipError> {
                if bad_break(piece) {
                    return Err(fail(Fault::BareLineBreak(long.to_owned()), at));
                }
                let piece = utf8
                    .str(piece)
                    .ok_or_else(|| fail(Fault::NotUtf8(long.to_owned()), at))?;
                if !piece.is_empty() {
                    if !folded.is_empty() {
                        folded.push(' ');
                    }
                    folded.push_str(piece);
                }
                Ok(())
            };
            push(first, at)?;
            while let Some((cat, cont)) =
                lines.next_if(|(_, l)| l.first().is_some_and(|b| is_ws(*b)))
            {
                if cont.len() > limits.max_line {
                    return Err(fail(
                        Fault::LineTooLong {
                            limit: limits.max_line,
                        },
                        cat,
                    ));
                }
                push(trim_ws(cont), cat)?;
            }
            Text::from(folded.clone())
        } else {
            if bad_break(first) {
                return Err(fail(Fault::BareLineBreak(long.to_owned()), at));
            }
            let text = utf8
                .str(first)
                .ok_or_else(|| fail(Fault::NotUtf8(long.to_owned()), at))?;
            Text::from_checked(data, text)
        };
        // The unfolded line is what gets written: it must fit the line limit too.
        if long.len().saturating_add(2).saturating_add(value.len()) > limits.max_line {
            return Err(fail(
                Fault::LineTooLong {
                    limit: limits.max_line,
                },
                at,
            ));
        }
        let index = headers.len();
        {
            match name.as_str() {
                "Call-ID" => bump(&mut seen.call_id, index, at),
                "CSeq" => bump(&mut seen.cseq, index, at),
                "From" => bump(&mut seen.from, index, at),
                "To" => bump(&mut seen.to, index, at),
                "Max-Forwards" => bump(&mut seen.max_forwards, index, at),
                "Content-Length" => bump(&mut seen.content_length, index, at),
                "Content-Type" => bump(&mut seen.content_type, index, at),
                "Via" => bump(&mut seen.via, index, at),
                _ => {}
            }
        }
        headers.push(Field { name, value });
    }
    let content_length = validate(&headers, &seen, &start, blank).map_err(|(fault, offset)| {
        if is_request {
            SipError::Request { fault, offset }
        } else {
            SipError::Response { fault, offset }
        }
    })?;
    let content_length_offset = (seen.content_length.0 > 0).then_some(seen.content_length.2);
    Ok(Head {
        start,
        headers,
        content_length,
        content_length_offset,
        is_request,
    })
}

/// Lines of a header block, each with its byte offset in the message.
struct Lines<'a> {
    block: &'a [u8],
    pos: usize,
    base: usize,
    done: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.block.get(self.pos..)?;
        let at = self.base.saturating_add(self.pos);
        // memchr for LF, then check the CR: cheaper per line than a memmem search. A bare LF
        // stays inside the line (and is refused by the caller).
        let mut search = 0;
        loop {
            match rest.get(search..).and_then(|r| memchr::memchr(b'\n', r)) {
                Some(i) => {
                    let nl = search + i;
                    if nl > 0 && rest.get(nl - 1) == Some(&b'\r') {
                        self.pos = self.pos.saturating_add(nl + 1);
                        return Some((at, rest.get(..nl - 1)?));
                    }
                    search = nl + 1;
                }
                None => {
                    self.done = true;
                    return Some((at, rest));
                }
            }
        }
    }
}

/// UTF-8 view of sub-slices of a header block validated once as a whole.
struct Utf8Block<'a> {
    block: &'a [u8],
    text: Option<&'a str>,
}

impl<'a> Utf8Block<'a> {
    fn new(block: &'a [u8]) -> Self {
        Utf8Block {
            block,
            text: std::str::from_utf8(block).ok(),
        }
    }

    /// `sub` (a slice of the block) as text; validated on its own when the block as a whole
    /// was not UTF-8 (the error then names the header at fault).
    fn str(&self, sub: &'a [u8]) -> Option<&'a str> {
        if let Some(text) = self.text {
            let off = (sub.as_ptr() as usize).wrapping_sub(self.block.as_ptr() as usize);
            if let Some(s) = text.get(off..off.saturating_add(sub.len()))
                && s.as_ptr() == sub.as_ptr()
            {
                return Some(s);
            }
        }
        std::str::from_utf8(sub).ok()
    }
}

/// RFC 3261 §25.1 Request-URI checks that do not need a full URI parser, then rsip's parser
/// for `sip:`/`sips:`. Other schemes (`tel:`, `im:`, `urn:`) are kept as received.
pub(super) fn check_request_uri(uri: &[u8]) -> Result<(), &'static str> {
    if uri.is_empty() {
        return Err("empty");
    }
    if uri.iter().any(|b| is_ws(*b)) {
        // RFC 4475 §3.1.2.8 / §3.1.2.9: no LWS inside or around the Request-URI.
        return Err("contains white space");
    }
    if uri.first() == Some(&b'<') {
        // RFC 4475 §3.1.2.7.
        return Err("enclosed in <>");
    }
    if uri.iter().any(|b| *b < 0x21 || *b == 0x7f) {
        return Err("contains a control character");
    }
    let Some(colon) = memchr::memchr(b':', uri) else {
        return Err("no scheme");
    };
    let scheme = uri.get(..colon).unwrap_or_default();
    let scheme_ok = scheme.first().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b));
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
    let (userinfo, after) = match memchr::memrchr(b'@', rest) {
        Some(at) => (rest.get(..at), rest.get(at + 1..).unwrap_or_default()),
        None => (None, rest),
    };
    if let Some(user) = userinfo {
        // user / password characters: unreserved, escaped, user-unreserved, ":".
        let ok = !user.is_empty()
            && escapes_ok(user)
            && user
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/:".contains(b));
        if !ok {
            return Err(BAD);
        }
    }
    if memchr::memchr(b'?', after).is_some() {
        // RFC 3261 §19.1.1 (table 1): headers are not allowed in a Request-URI;
        // RFC 4475 §3.1.2.11.
        return Err("contains URI headers");
    }
    let mut parts = after.split(|b| *b == b';');
    let hostport = parts.next().unwrap_or_default();
    let (host, port) = if hostport.first() == Some(&b'[') {
        let close = memchr::memchr(b']', hostport).ok_or(BAD)?;
        let v6 = hostport.get(1..close).unwrap_or_default();
        if v6.is_empty()
            || !v6
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
        {
            return Err(BAD);
        }
        (&b"v6"[..], hostport.get(close + 1..).unwrap_or_default())
    } else {
        match memchr::memchr(b':', hostport) {
            Some(c) => (
                hostport.get(..c).unwrap_or_default(),
                hostport.get(c..).unwrap_or_default(),
            ),
            None => (hostport, &b""[..]),
        }
    };
    if host.is_empty()
        || !host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(b))
    {
        return Err(BAD);
    }
    if let Some(digits) = port.strip_prefix(b":") {
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(BAD);
        }
    } else if !port.is_empty() {
        return Err(BAD);
    }
    for param in parts {
        // uri-parameter: pname ["=" pvalue], paramchar = param-unreserved / unreserved / escaped.
        let ok = !param.is_empty()
            && escapes_ok(param)
            && param
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%[]/:&+$=".contains(b));
        if !ok {
            return Err(BAD);
        }
    }
    Ok(())
}

/// Every `%` is followed by two hex digits (RFC 3261 §25.1 `escaped`).
fn escapes_ok(s: &[u8]) -> bool {
    memchr::memchr_iter(b'%', s).all(|i| {
        s.get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

/// A name-addr / addr-spec value (From, To): balanced quotes and angle brackets.
pub(super) fn check_name_addr(value: &[u8]) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    let mut in_quotes = false;
    let mut escaped = false;
    let mut angle = 0u8;
    for b in value {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => angle = angle.saturating_add(1),
            b'>' if !in_quotes => {
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
/// has no empty parameter (RFC 4475 §3.1.2.1 "badinv01": `;;,;,,`).
pub(super) fn check_via(value: &[u8]) -> Result<(), &'static str> {
    let mut rest = value;
    loop {
        let (item, next) = match memchr::memchr(b',', rest) {
            Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..)),
            None => (rest, None),
        };
        let item = trim_ws(item);
        let proto_ok = item
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP"))
            && memchr::memchr(b'/', item).is_some();
        if !proto_ok {
            return Err("via-parm is not SIP/2.0/<transport> <host>");
        }
        let mut semis = memchr::memchr_iter(b';', item).peekable();
        while let Some(at) = semis.next() {
            let end = semis.peek().copied().unwrap_or(item.len());
            if trim_ws(item.get(at + 1..end).unwrap_or_default()).is_empty() {
                return Err("empty parameter");
            }
        }
        match next {
            Some(n) => rest = n,
            None => return Ok(()),
        }
    }
}

type Invalid = (Fault, Option<usize>);

/// RFC 3261 §8.1.1 mandatory header fields, §7.3.1 single ones, and the grammar of those the
/// gateway reads. Returns Content-Length.
/// `block_end` (the offset of the empty line) is where a missing header is reported.
fn validate(
    headers: &[Field],
    seen: &Seen,
    start: &StartLine,
    block_end: usize,
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
        let name = super::super::method_name(method);
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
    for h in headers {
        match h.name.as_str() {
            "Via" => {
                check_via(h.value.as_bytes()).map_err(|why| malformed("Via", why, &seen.via))?;
            }
            "Content-Encoding" => check_encoding(&h.value)?,
            _ => {}
        }
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

/// The name of a static spelling: its index when it is a known one.
fn name_of(s: &'static str) -> Name {
    match KNOWN_NAMES.iter().position(|k| *k == s) {
        Some(i) => Name::Known(i as u8),
        None => Name::Other(Text::from_static(s)),
    }
}

/// Indices into [`KNOWN_NAMES`] by name length, as the codec had them.
static KNOWN_BY_LEN: [[u8; 12]; 32] = {
    let mut t = [[u8::MAX; 12]; 32];
    let mut i = 0;
    while i < KNOWN_NAMES.len() {
        let len = KNOWN_NAMES[i].len();
        let mut j = 0;
        while t[len][j] != u8::MAX {
            j += 1;
        }
        t[len][j] = i as u8;
        i += 1;
    }
    t
};

/// The canonical name lookup as it was: a compare with each known name of the same length.
pub(crate) fn canonical_name(name: &[u8]) -> Option<&'static str> {
    let first = name.first()?.to_ascii_lowercase();
    KNOWN_BY_LEN
        .get(name.len())?
        .iter()
        .take_while(|i| **i != u8::MAX)
        .filter_map(|i| KNOWN_NAMES.get(usize::from(*i)))
        .find(|k| {
            let k = k.as_bytes();
            k == name
                || (k.first().map(u8::to_ascii_lowercase) == Some(first)
                    && k.eq_ignore_ascii_case(name))
        })
        .copied()
}

/// `read_head` as it was: the size check, memmem for the empty line, then the head.
fn read_head(data: &Bytes, limits: &Limits) -> Result<(Head, usize), SipError> {
    if data.len() > limits.max_message {
        let fault = Fault::MessageTooLarge {
            size: data.len(),
            limit: limits.max_message,
        };
        return Err(classify_error(data, limits, fault, None));
    }
    let Some(blank) = crate::wire::text::find_blank_line(data, 0) else {
        return Err(classify_error(
            data,
            limits,
            Fault::NoBlankLine,
            Some(data.len()),
        ));
    };
    let head = parse_head(data, blank, limits)?;
    Ok((head, blank.saturating_add(4)))
}

/// `parse_datagram` as it was.
pub(crate) fn parse_datagram(data: Bytes, limits: &Limits) -> Result<SipMessage, SipError> {
    let (head, body_start) = read_head(&data, limits)?;
    super::super::datagram_message(&data, head, body_start)
}
