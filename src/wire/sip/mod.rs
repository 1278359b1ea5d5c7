//! SIP (RFC 3261) message codec: parsing with limits, a model built on rsip's header types, and a
//! serializer that always writes a correct `Content-Length`.
//!
//! What this adds to rsip 0.4, and why:
//! - **framing**: UDP datagrams ([`parse_datagram`], RFC 3261 §18.3) and a TCP stream decoder
//!   ([`SipStreamCodec`]) with CRLF keep-alives (RFC 5626 §4.4.1);
//! - **normalisation before rsip sees a header**: compact names (`v f t i l c m k s e o r u`, RFC
//!   3261 §7.3.3, plus those of the extensions) become long names, folded lines are unfolded into
//!   one SP (§7.3.1), white space around the colon is dropped;
//! - **limits** ([`Limits`]) on message size, header count and line length;
//! - **errors that say what to answer** ([`SipError`]: 400 with a reason naming the fault, 413,
//!   415, 501, 505 — or drop when no request line was readable or the message is a response);
//! - **no body copy**: rsip's `Request`/`Response` own their body as a `Vec<u8>`; here the body
//!   is a [`Bytes`] slice of the input, and the start line is kept as received (rsip drops the
//!   Request-URI's `?headers`, replaces known reason phrases with its own and cannot represent
//!   `tel:` URIs faithfully), so that a parsed message re-serializes to its canonical form
//!   without loss. Header fields are rsip's [`rsip::Header`] values, in received order, unknown
//!   ones as `Header::Other(name, value)`. rsip's method enum is used as is (other methods are
//!   answered 501). A `sip:`/`sips:` Request-URI is checked against RFC 3261 §25.1 by this
//!   module (rsip's URI parser refuses valid URIs such as RFC 4475 "semiuri"); rsip parses it
//!   on demand ([`SipMessage::uri`]).
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

/// A parsed SIP message: start line, rsip header fields in received order, body as a slice of
/// the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    start: StartLine,
    headers: rsip::Headers,
    body: Bytes,
}

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
    let Some(blank) = super::text::find_blank_line(data, 0) else {
        return Err(parse::classify_error(
            data,
            limits,
            Fault::NoBlankLine,
            Some(data.len()),
        ));
    };
    let head = parse::parse_head(data, blank, limits)?;
    Ok((head, blank.saturating_add(4)))
}

/// Parse one UDP datagram (RFC 3261 §18.3): the body is the rest of the datagram, cut to
/// Content-Length when that is smaller; a Content-Length larger than the rest is a 400.
/// Extra octets after Content-Length are discarded, as §18.3 says.
pub fn parse_datagram(data: Bytes, limits: &Limits) -> Result<SipMessage, SipError> {
    let (head, body_start) = read_head(&data, limits)?;
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
    let after = match memchr::memrchr(b'>', value) {
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
    };
}

// Most frequent first: the lookup is a chain of length-checked case-insensitive compares.
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

/// Does header `h` have name `name` (long or compact form, any case)?
fn name_matches(h: &Header, name: &str) -> bool {
    let wanted = expand_compact(name.as_bytes()).unwrap_or(name);
    header_name(h).eq_ignore_ascii_case(wanted)
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
        if uri.is_empty() || uri.bytes().any(|b| b <= b' ') {
            return Err(SipError::Request {
                fault: Fault::RequestUri("empty or contains white space"),
                offset: None,
            });
        }
        Ok(SipMessage {
            start: StartLine::Request {
                method,
                uri: Bytes::copy_from_slice(uri.as_bytes()),
            },
            headers: rsip::Headers::default(),
            body: Bytes::new(),
        })
    }

    /// A response to this request with its Via, From, To, Call-ID and CSeq copied in order
    /// (RFC 3261 §8.2.6.2), empty body. Adding a To tag is the caller's job.
    pub fn response_to(&self, code: u16, reason: &str) -> SipMessage {
        let mut headers = rsip::Headers::default();
        for h in self.headers.iter() {
            if matches!(
                h,
                Header::Via(_)
                    | Header::From(_)
                    | Header::To(_)
                    | Header::CallId(_)
                    | Header::CSeq(_)
            ) {
                headers.push(h.clone());
            }
        }
        SipMessage {
            start: StartLine::Response {
                code,
                reason: Bytes::copy_from_slice(sanitize_reason(reason).as_bytes()),
            },
            headers,
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

    /// Header fields in order, as rsip values.
    pub fn rsip_headers(&self) -> &rsip::Headers {
        &self.headers
    }

    /// Header fields in order, as rsip values, to change freely (Content-Length is rewritten
    /// on serialize whatever is here). Values must not contain CR or LF.
    pub fn rsip_headers_mut(&mut self) -> &mut rsip::Headers {
        &mut self.headers
    }

    /// Header fields in order as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|h| (header_name(h), header_value(h)))
    }

    /// The first value of header `name` (case-insensitive; compact forms accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| name_matches(h, name))
            .map(header_value)
    }

    /// Every value of header `name`, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| name_matches(h, name))
            .map(header_value)
    }

    /// Call-ID (RFC 3261 §20.8).
    pub fn call_id(&self) -> Option<&str> {
        self.headers.iter().find_map(|h| match h {
            Header::CallId(v) => Some(v.value()),
            _ => None,
        })
    }

    /// CSeq (RFC 3261 §20.16), `None` when absent or malformed.
    pub fn cseq(&self) -> Option<CSeq<'_>> {
        self.headers.iter().find_map(|h| match h {
            Header::CSeq(v) => parse::cseq(v.value().as_bytes()).ok().and_then(|(seq, m)| {
                Some(CSeq {
                    seq,
                    method: std::str::from_utf8(m).ok()?,
                })
            }),
            _ => None,
        })
    }

    /// The `branch` of the topmost Via (RFC 3261 §8.1.1.7): first value of the first Via.
    pub fn top_via_branch(&self) -> Option<&str> {
        let via = self.headers.iter().find_map(|h| match h {
            Header::Via(v) => Some(v.value()),
            _ => None,
        })?;
        let first = first_list_item(via);
        let params = first.split_once(';').map(|(_, p)| p)?;
        param(params, "branch")
    }

    /// The `tag` of From (RFC 3261 §19.3).
    pub fn from_tag(&self) -> Option<&str> {
        let v = self.headers.iter().find_map(|h| match h {
            Header::From(v) => Some(v.value()),
            _ => None,
        })?;
        param(header_params(v), "tag")
    }

    /// The `tag` of To (RFC 3261 §19.3).
    pub fn to_tag(&self) -> Option<&str> {
        let v = self.headers.iter().find_map(|h| match h {
            Header::To(v) => Some(v.value()),
            _ => None,
        })?;
        param(header_params(v), "tag")
    }

    /// Content-Type value, parameters included.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.iter().find_map(|h| match h {
            Header::ContentType(v) => Some(v.value()),
            _ => None,
        })
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

    /// Replace the first `name` header with `value` in place and remove the other ones; append
    /// it when absent.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), SipError> {
        let new = checked_header(name, value)?;
        let mut all: Vec<Header> = std::mem::take(&mut self.headers).into();
        let mut placed = false;
        all.retain_mut(|h| {
            if !name_matches(h, name) {
                return true;
            }
            if placed {
                return false;
            }
            *h = new.clone();
            placed = true;
            true
        });
        if !placed {
            all.push(new);
        }
        self.headers = all.into();
        Ok(())
    }

    /// Remove every `name` header; how many were removed.
    pub fn remove_header(&mut self, name: &str) -> usize {
        let mut removed = 0;
        self.headers.retain(|h| {
            let hit = name_matches(h, name);
            removed += usize::from(hit);
            !hit
        });
        removed
    }

    /// Insert a header at position `index` (clamped to the end).
    pub fn insert_header(&mut self, index: usize, name: &str, value: &str) -> Result<(), SipError> {
        let new = checked_header(name, value)?;
        let mut all: Vec<Header> = std::mem::take(&mut self.headers).into();
        all.insert(index.min(all.len()), new);
        self.headers = all.into();
        Ok(())
    }

    /// Append a header.
    pub fn push_header(&mut self, name: &str, value: &str) -> Result<(), SipError> {
        let new = checked_header(name, value)?;
        self.headers.push(new);
        Ok(())
    }

    /// Append the header fields of `from` that `name_for` keeps, in their order: it is given
    /// each field's name and returns the name to write it under, or `None` to leave it out. A
    /// field kept under its own name is copied as it is (it was checked when `from` was
    /// parsed or built); a renamed one is checked anew.
    pub fn copy_headers<'a>(
        &mut self,
        from: &'a SipMessage,
        mut name_for: impl FnMut(&'a str) -> Option<&'a str>,
    ) -> Result<(), SipError> {
        for h in from.headers.iter() {
            let name = header_name(h);
            match name_for(name) {
                None => {}
                Some(new) if std::ptr::eq(new, name) => self.headers.push(h.clone()),
                Some(new) => self.headers.push(checked_header(new, header_value(h))?),
            }
        }
        Ok(())
    }

    /// The same message as an rsip `SipMessage` (body copied into rsip's `Vec<u8>`; header
    /// fields cloned). `None` when rsip cannot model the Request-URI.
    pub fn to_rsip(&self) -> Option<rsip::SipMessage> {
        let mut headers = self.headers.clone();
        headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
            self.body.len().to_string(),
        )));
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
        let headers: usize = self
            .headers
            .iter()
            .map(|h| header_name(h).len() + header_value(h).len() + 4)
            .sum();
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
        for h in self.headers.iter() {
            if let Header::ContentLength(_) = h {
                // RFC 3261 §20.14: the real body length, once, where the first one was.
                if !length_written {
                    put_content_length(dst, self.body.len());
                    length_written = true;
                }
                continue;
            }
            dst.put_slice(header_name(h).as_bytes());
            dst.put_slice(b": ");
            dst.put_slice(header_value(h).as_bytes());
            dst.put_slice(b"\r\n");
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

/// First element of a comma-separated header value (commas inside quotes or `<>` ignored).
fn first_list_item(value: &str) -> &str {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => return value.get(..i).unwrap_or(value),
            _ => {}
        }
    }
    value
}

fn invalid(name: &str) -> SipError {
    SipError::Request {
        fault: Fault::InvalidHeader(name.to_owned()),
        offset: None,
    }
}

/// A header built from caller input: the name must be a token, the value must not contain
/// CR or LF (it would inject header fields).
fn checked_header(name: &str, value: &str) -> Result<Header, SipError> {
    if name.is_empty() || !name.bytes().all(parse::is_token_char) {
        return Err(invalid(name));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(invalid(name));
    }
    let long = expand_compact(name.as_bytes()).unwrap_or(name);
    Ok(make_header(
        long,
        value.trim_matches([' ', '\t']).to_owned(),
    ))
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
