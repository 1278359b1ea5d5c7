//! SDP (RFC 4566) for MSRP sessions: the subset RFC 4975 §8 uses, read and rewritten by a B2BUA.
//!
//! The model is line-preserving: [`Sdp`] is the list of its [`Line`]s, each keeping its raw bytes
//! (a slice of the input, its own terminator included, CRLF or a bare LF) and a parsed
//! [`LineKind`] for the lines the gateway reads: `v=`, `o=`, `s=`, `c=`, `t=`, `m=` and the
//! attributes `a=path`, `a=accept-types`, `a=accept-wrapped-types`, `a=max-size` (RFC 4975 §8),
//! `a=setup` (RFC 6135, RFC 4145), `a=msrp-cema` (RFC 6714) and the direction attributes
//! (RFC 4566 §6). Every other line (`i=`, `b=`, `a=file-selector` of RFC 5547, ...) is kept as it
//! came. Serialising an unchanged description gives back the same bytes; a line changed by a
//! setter is rendered canonically with CRLF, the others keep their bytes.
//!
//! ```
//! use bytes::Bytes;
//! use cpm_iwf::wire::sdp::{Sdp, Setup};
//!
//! let input = Bytes::from_static(
//!     b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
//!       m=message 9 TCP/MSRP *\r\na=path:msrp://10.0.0.1:9/s1;tcp\r\na=setup:active\r\n\
//!       a=accept-types:message/cpim\r\n",
//! );
//! let mut sdp = Sdp::parse(input.clone()).unwrap();
//! assert_eq!(sdp.to_bytes(), input);
//! let media = sdp.require_msrp().unwrap();
//! assert_eq!(media.setup, Some(Setup::Active));
//! sdp.set_path(&[Bytes::from_static(b"msrp://192.0.2.1:2855/iwf1;tcp")]).unwrap();
//! assert!(sdp.to_bytes().windows(9).any(|w| w == b"192.0.2.1"));
//! ```

use std::fmt;

use bytes::{Bytes, BytesMut};

use super::{Answer, WireError};

/// Bounds on what [`Sdp::parse_with`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest description in bytes. Default 16 KiB: an MSRP offer is a few hundred bytes, a
    /// file-transfer offer with a long `a=file-selector` well under 2 KiB.
    pub max_size: usize,
    /// Most lines. Default 256.
    pub max_lines: usize,
    /// Longest line in bytes, terminator excluded. Default 2 KiB (an `a=path` through a few
    /// relays, a long `a=accept-wrapped-types`).
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 16 * 1024,
            max_lines: 256,
            max_line_len: 2 * 1024,
        }
    }
}

/// What is wrong with an SDP body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is larger than [`Limits::max_size`].
    #[error("SDP: {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// More lines than [`Limits::max_lines`].
    #[error("SDP: more than {limit} lines")]
    TooManyLines { limit: usize, offset: usize },
    /// One line longer than [`Limits::max_line_len`].
    #[error("SDP line {line}: {len} bytes long, over the limit of {limit}")]
    LineTooLong {
        line: usize,
        len: usize,
        limit: usize,
        offset: usize,
    },
    /// A line that does not follow RFC 4566 or the attribute's own grammar.
    #[error("SDP line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        reason: String,
        offset: usize,
    },
    /// The description is well formed but offers no MSRP stream the gateway can use: answered
    /// 488 Not Acceptable Here (RFC 3261 §21.4.26).
    #[error("SDP: no usable MSRP media: {reason}")]
    NoMsrpMedia { reason: &'static str },
    /// A setter was called on a description without an MSRP media section.
    #[error("SDP: no MSRP media section to change")]
    NoMsrpSection,
}

impl WireError for SdpError {
    fn answer(&self) -> Answer {
        match self {
            // RFC 3261 §21.4.11: the body is larger than we are willing to process.
            SdpError::TooLarge { .. }
            | SdpError::TooManyLines { .. }
            | SdpError::LineTooLong { .. } => Answer::Status(413),
            SdpError::Malformed { .. } => Answer::Status(400),
            SdpError::NoMsrpMedia { .. } => Answer::Status(488),
            // A caller's mistake, not the peer's; nothing to answer on the wire.
            SdpError::NoMsrpSection => Answer::Status(500),
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            SdpError::TooLarge { limit, .. } => Some(*limit),
            SdpError::TooManyLines { offset, .. }
            | SdpError::LineTooLong { offset, .. }
            | SdpError::Malformed { offset, .. } => Some(*offset),
            SdpError::NoMsrpMedia { .. } | SdpError::NoMsrpSection => None,
        }
    }
}

/// `a=setup` roles (RFC 4145 §4, used by MSRP per RFC 6135 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Setup {
    /// Opens the connection.
    Active,
    /// Accepts the connection.
    Passive,
    /// Either; the answerer decides.
    Actpass,
    /// No connection for now.
    Holdconn,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::Actpass => "actpass",
            Setup::Holdconn => "holdconn",
        }
    }

    fn parse(v: &[u8]) -> Option<Setup> {
        // RFC 4145 §4: the values are tokens; compared case-insensitively for interop.
        [
            Setup::Active,
            Setup::Passive,
            Setup::Actpass,
            Setup::Holdconn,
        ]
        .into_iter()
        .find(|s| v.eq_ignore_ascii_case(s.as_str().as_bytes()))
    }
}

/// Media direction attributes (RFC 4566 §6; default `sendrecv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    Sendrecv,
    Sendonly,
    Recvonly,
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Sendrecv => "sendrecv",
            Direction::Sendonly => "sendonly",
            Direction::Recvonly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(name: &[u8]) -> Option<Direction> {
        [
            Direction::Sendrecv,
            Direction::Sendonly,
            Direction::Recvonly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name == d.as_str().as_bytes())
    }
}

/// The MSRP transport of an `m=message` line (RFC 4975 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsrpProtocol {
    /// `TCP/MSRP`
    Tcp,
    /// `TCP/TLS/MSRP`
    Tls,
}

impl MsrpProtocol {
    /// The `<proto>` field.
    pub fn as_str(self) -> &'static str {
        match self {
            MsrpProtocol::Tcp => "TCP/MSRP",
            MsrpProtocol::Tls => "TCP/TLS/MSRP",
        }
    }

    fn parse(proto: &[u8]) -> Option<MsrpProtocol> {
        if proto.eq_ignore_ascii_case(b"TCP/MSRP") {
            Some(MsrpProtocol::Tcp)
        } else if proto.eq_ignore_ascii_case(b"TCP/TLS/MSRP") {
            Some(MsrpProtocol::Tls)
        } else {
            None
        }
    }
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`
/// (RFC 4566 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: Bytes,
    pub sess_id: Bytes,
    /// Must grow by one with each changed offer (RFC 3264 §8).
    pub sess_version: u64,
    pub nettype: Bytes,
    pub addrtype: Bytes,
    pub address: Bytes,
}

/// `c=<nettype> <addrtype> <connection-address>` (RFC 4566 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub nettype: Bytes,
    /// `IP4` or `IP6`.
    pub addrtype: Bytes,
    pub address: Bytes,
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` (RFC 4566 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `message` for MSRP.
    pub media: Bytes,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: Bytes,
    /// The format list as written (`*` for MSRP), space separated.
    pub fmts: Bytes,
}

/// The attributes we read; any other attribute is [`AttrKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrKind {
    /// `a=path:<MSRP URI> *(SP <MSRP URI>)` (RFC 4975 §8.2).
    Path,
    /// `a=accept-types:<type> *(SP <type>)` (RFC 4975 §8.6).
    AcceptTypes,
    /// `a=accept-wrapped-types:<type> *(SP <type>)` (RFC 4975 §8.6).
    AcceptWrappedTypes,
    /// `a=max-size:<octets>` (RFC 4975 §8.6).
    MaxSize(u64),
    /// `a=setup:<role>` (RFC 6135 §4, RFC 4145 §4).
    Setup(Setup),
    /// `a=msrp-cema` (RFC 6714 §4).
    MsrpCema,
    /// `a=sendrecv` / `sendonly` / `recvonly` / `inactive` (RFC 4566 §6).
    Direction(Direction),
    /// Anything else (`a=file-selector`, `a=connection`, `a=fingerprint`, ...), kept raw.
    Other,
}

/// One `a=` line: its name, its value (after the first `:`) and what we made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: Bytes,
    pub value: Option<Bytes>,
    pub kind: AttrKind,
}

impl Attribute {
    /// The space-separated tokens of the value (URIs of `a=path`, types of `a=accept-types`).
    pub fn tokens(&self) -> Vec<Bytes> {
        match &self.value {
            Some(v) => tokens(v),
            None => Vec::new(),
        }
    }
}

/// What a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// `v=0`
    Version,
    /// `o=`
    Origin(Origin),
    /// `s=`
    SessionName,
    /// `c=`
    Connection(Connection),
    /// `t=`
    Timing,
    /// `m=`: starts a media section.
    Media(Media),
    /// `a=`
    Attribute(Attribute),
    /// Any other `<type>=<value>` line (`i=`, `u=`, `e=`, `p=`, `b=`, `r=`, `z=`, `k=`, ...).
    Other,
    /// An empty line at the end of the body (some peers add one; kept for the round trip).
    Blank,
}

/// One line: raw bytes (terminator included) and its parsed kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    raw: Bytes,
    kind: LineKind,
}

impl Line {
    /// The line as it will be written, terminator included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// What the line is.
    pub fn kind(&self) -> &LineKind {
        &self.kind
    }

    /// The line without its terminator.
    pub fn content(&self) -> &[u8] {
        strip_eol(&self.raw)
    }

    /// The `<type>` character (`b'v'`, `b'm'`, `b'a'`...), `None` for a blank line.
    pub fn type_char(&self) -> Option<u8> {
        match self.kind {
            LineKind::Blank => None,
            _ => self.raw.first().copied(),
        }
    }

    /// The `<value>` after `<type>=`.
    pub fn value(&self) -> &[u8] {
        self.content().get(2..).unwrap_or_default()
    }

    /// The attribute, for an `a=` line.
    pub fn attribute(&self) -> Option<&Attribute> {
        match &self.kind {
            LineKind::Attribute(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is the attribute `name` (case-sensitive, RFC 4566 §5.13).
    fn is_attr(&self, name: &[u8]) -> bool {
        self.attribute().is_some_and(|a| a.name == name)
    }
}

/// The typed view of the MSRP media stream the gateway relays (RFC 4975 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpMedia {
    /// Index into [`Sdp::lines`] of the `m=` line.
    pub index: usize,
    pub port: u16,
    pub protocol: MsrpProtocol,
    /// Media-level `c=`, else the session-level one.
    pub connection: Option<Connection>,
    /// `a=path` URIs, leftmost first (RFC 4975 §8.2). Empty when absent.
    pub path: Vec<Bytes>,
    pub accept_types: Vec<Bytes>,
    pub accept_wrapped_types: Vec<Bytes>,
    pub max_size: Option<u64>,
    /// Media-level `a=setup`, else the session-level one; `None` when absent (RFC 6135 §4.1
    /// then means the offerer is active).
    pub setup: Option<Setup>,
    /// `a=msrp-cema` present (RFC 6714).
    pub msrp_cema: bool,
    /// Media-level direction, else session-level, else `sendrecv`.
    pub direction: Direction,
}

/// A parsed SDP body: its lines in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sdp {
    lines: Vec<Line>,
}

impl Sdp {
    /// Parse with the default [`Limits`].
    pub fn parse(input: Bytes) -> Result<Sdp, SdpError> {
        Self::parse_with(input, &Limits::default())
    }

    /// Parse `input` within `limits`. Lines end with CRLF (RFC 4566 §5); a bare LF is accepted
    /// too, and the last line may lack its terminator. The first line must be `v=0`.
    pub fn parse_with(input: Bytes, limits: &Limits) -> Result<Sdp, SdpError> {
        if input.len() > limits.max_size {
            return Err(SdpError::TooLarge {
                size: input.len(),
                limit: limits.max_size,
            });
        }
        let mut lines = Vec::with_capacity(
            memchr::memchr_iter(b'\n', &input)
                .count()
                .saturating_add(1)
                .min(limits.max_lines),
        );
        let mut pos = 0usize;
        let mut blank_at: Option<(usize, usize)> = None;
        while pos < input.len() {
            let end = memchr::memchr(b'\n', input.get(pos..).unwrap_or_default())
                .map_or(input.len(), |i| pos.saturating_add(i).saturating_add(1));
            let lineno = lines.len().saturating_add(1);
            if lines.len() >= limits.max_lines {
                return Err(SdpError::TooManyLines {
                    limit: limits.max_lines,
                    offset: pos,
                });
            }
            let raw = input.slice(pos..end);
            let content = strip_eol(&raw);
            if content.len() > limits.max_line_len {
                return Err(SdpError::LineTooLong {
                    line: lineno,
                    len: content.len(),
                    limit: limits.max_line_len,
                    offset: pos,
                });
            }
            let kind = if content.is_empty() {
                blank_at.get_or_insert((lineno, pos));
                LineKind::Blank
            } else {
                if let Some((line, offset)) = blank_at {
                    // RFC 4566 §5: no blank lines; we only tolerate them at the very end.
                    return Err(SdpError::Malformed {
                        line,
                        reason: "empty line inside the description".into(),
                        offset,
                    });
                }
                if lines.is_empty() && !content.starts_with(b"v=") {
                    return Err(SdpError::Malformed {
                        line: 1,
                        reason: "the first line must be v=0 (RFC 4566 §5)".into(),
                        offset: 0,
                    });
                }
                let value_start = pos.saturating_add(2);
                let value = raw.slice_ref(content).slice(2.min(content.len())..);
                parse_line(content, value, lineno, pos, value_start)?
            };
            if lines.is_empty() && kind != LineKind::Version {
                return Err(SdpError::Malformed {
                    line: 1,
                    reason: "the first line must be v=0 (RFC 4566 §5)".into(),
                    offset: 0,
                });
            }
            lines.push(Line { raw, kind });
            pos = end;
        }
        if lines.is_empty() {
            return Err(SdpError::Malformed {
                line: 1,
                reason: "empty description".into(),
                offset: 0,
            });
        }
        Ok(Sdp { lines })
    }

    /// Parse within `limits` and require a usable MSRP stream ([`Sdp::require_msrp`]): the
    /// one call for an INVITE's offer, where anything else is answered 400/413 or 488.
    pub fn parse_msrp(input: Bytes, limits: &Limits) -> Result<(Sdp, MsrpMedia), SdpError> {
        let sdp = Self::parse_with(input, limits)?;
        let media = sdp.require_msrp()?;
        Ok((sdp, media))
    }

    /// The lines in order.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The description as bytes: unchanged lines as they came, changed ones canonical.
    pub fn to_bytes(&self) -> Bytes {
        let len = self.lines.iter().map(|l| l.raw.len()).sum();
        let mut out = BytesMut::with_capacity(len);
        for l in &self.lines {
            out.extend_from_slice(&l.raw);
        }
        out.freeze()
    }

    /// Index of the first `m=` line (end of the session-level section).
    fn session_end(&self) -> usize {
        self.lines
            .iter()
            .position(|l| matches!(l.kind, LineKind::Media(_)))
            .unwrap_or(self.lines.len())
    }

    /// The media sections as ranges of line indices, each starting at its `m=` line.
    pub fn media_sections(&self) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start: Option<usize> = None;
        for (i, l) in self.lines.iter().enumerate() {
            if matches!(l.kind, LineKind::Media(_)) {
                if let Some(s) = start {
                    out.push(s..i);
                }
                start = Some(i);
            }
        }
        if let Some(s) = start {
            out.push(s..self.lines.len());
        }
        out
    }

    /// The session-level `o=`.
    pub fn origin(&self) -> Option<&Origin> {
        self.lines.iter().find_map(|l| match &l.kind {
            LineKind::Origin(o) => Some(o),
            _ => None,
        })
    }

    /// The section (range of line indices) of the first `m=message` line whose protocol is
    /// `TCP/MSRP` or `TCP/TLS/MSRP`.
    fn msrp_section(&self) -> Option<std::ops::Range<usize>> {
        self.media_sections().into_iter().find(|r| {
            self.lines.get(r.start).is_some_and(|l| match &l.kind {
                LineKind::Media(m) => {
                    m.media.eq_ignore_ascii_case(b"message")
                        && MsrpProtocol::parse(&m.proto).is_some()
                }
                _ => false,
            })
        })
    }

    /// The first `m=message` stream over `TCP/MSRP` or `TCP/TLS/MSRP`, with its attributes
    /// (media level first, then session level).
    pub fn msrp_media(&self) -> Option<MsrpMedia> {
        let range = self.msrp_section()?;
        let LineKind::Media(m) = &self.lines.get(range.start)?.kind else {
            return None;
        };
        let protocol = MsrpProtocol::parse(&m.proto)?;
        let media_lines = self.lines.get(range.clone()).unwrap_or_default();
        let session_lines = self.lines.get(..self.session_end()).unwrap_or_default();
        let find = |f: &dyn Fn(&Line) -> bool| -> Option<&Line> {
            media_lines
                .iter()
                .find(|l| f(l))
                .or_else(|| session_lines.iter().find(|l| f(l)))
        };
        let attr =
            |name: &'static [u8]| find(&|l: &Line| l.is_attr(name)).and_then(Line::attribute);
        let connection =
            find(&|l: &Line| matches!(l.kind, LineKind::Connection(_))).and_then(|l| {
                match &l.kind {
                    LineKind::Connection(c) => Some(c.clone()),
                    _ => None,
                }
            });
        let setup = find(&|l: &Line| {
            matches!(
                l.attribute(),
                Some(Attribute {
                    kind: AttrKind::Setup(_),
                    ..
                })
            )
        })
        .and_then(|l| match l.attribute()?.kind {
            AttrKind::Setup(s) => Some(s),
            _ => None,
        });
        let direction = find(&|l: &Line| {
            matches!(
                l.attribute(),
                Some(Attribute {
                    kind: AttrKind::Direction(_),
                    ..
                })
            )
        })
        .and_then(|l| match l.attribute()?.kind {
            AttrKind::Direction(d) => Some(d),
            _ => None,
        })
        .unwrap_or_default();
        let max_size = attr(b"max-size").and_then(|a| match a.kind {
            AttrKind::MaxSize(n) => Some(n),
            _ => None,
        });
        Some(MsrpMedia {
            index: range.start,
            port: m.port,
            protocol,
            connection,
            path: attr(b"path").map(Attribute::tokens).unwrap_or_default(),
            accept_types: attr(b"accept-types")
                .map(Attribute::tokens)
                .unwrap_or_default(),
            accept_wrapped_types: attr(b"accept-wrapped-types")
                .map(Attribute::tokens)
                .unwrap_or_default(),
            max_size,
            setup,
            msrp_cema: attr(b"msrp-cema").is_some(),
            direction,
        })
    }

    /// The MSRP stream, or the 488 error when there is none the gateway can use: no
    /// `m=message` over TCP/MSRP or TCP/TLS/MSRP, a rejected one (port 0, RFC 3264 §6), or one
    /// without `a=path` (mandatory, RFC 4975 §8.2) or without `a=accept-types` (mandatory,
    /// RFC 4975 §8.6).
    pub fn require_msrp(&self) -> Result<MsrpMedia, SdpError> {
        let m = self.msrp_media().ok_or(SdpError::NoMsrpMedia {
            reason: "no m=message line with TCP/MSRP or TCP/TLS/MSRP",
        })?;
        if m.port == 0 {
            return Err(SdpError::NoMsrpMedia {
                reason: "the m=message stream is rejected (port 0)",
            });
        }
        if m.path.is_empty() {
            return Err(SdpError::NoMsrpMedia {
                reason: "the m=message stream has no a=path (RFC 4975 §8.2)",
            });
        }
        if m.accept_types.is_empty() {
            return Err(SdpError::NoMsrpMedia {
                reason: "the m=message stream has no a=accept-types (RFC 4975 §8.6)",
            });
        }
        Ok(m)
    }

    // ---- setters ----

    fn section_or_err(&self) -> Result<std::ops::Range<usize>, SdpError> {
        self.msrp_section().ok_or(SdpError::NoMsrpSection)
    }

    /// Replace the first `a=<name>` of the MSRP section with `line`, or insert `line` at the end
    /// of the section when there is none.
    fn put_attr(&mut self, name: &[u8], line: Line) -> Result<(), SdpError> {
        let range = self.section_or_err()?;
        let found = range
            .clone()
            .find(|i| self.lines.get(*i).is_some_and(|l| l.is_attr(name)));
        match found.and_then(|i| self.lines.get_mut(i)) {
            Some(slot) => *slot = line,
            None => self.insert_in_section(range, line),
        }
        Ok(())
    }

    /// Insert at the end of a section, before any trailing blank lines.
    fn insert_in_section(&mut self, range: std::ops::Range<usize>, line: Line) {
        let mut at = range.end;
        while at > range.start
            && self
                .lines
                .get(at - 1)
                .is_some_and(|l| l.kind == LineKind::Blank)
        {
            at -= 1;
        }
        self.insert_line(at, line);
    }

    /// Insert `line` at `at`; a line before it that had no terminator (the input's last line
    /// may lack one) gets a CRLF so that the two do not run together.
    fn insert_line(&mut self, at: usize, line: Line) {
        if let Some(prev) = at.checked_sub(1).and_then(|i| self.lines.get_mut(i))
            && !prev.raw.ends_with(b"\n")
        {
            let mut raw = BytesMut::with_capacity(prev.raw.len() + 2);
            raw.extend_from_slice(&prev.raw);
            // A last line cut after its CR keeps the CR as half of its terminator.
            if prev.raw.ends_with(b"\r") {
                raw.extend_from_slice(b"\n");
            } else {
                raw.extend_from_slice(b"\r\n");
            }
            prev.raw = raw.freeze();
        }
        self.lines.insert(at.min(self.lines.len()), line);
    }

    /// Set `a=path` of the MSRP stream (RFC 4975 §8.2): the URIs, leftmost first.
    pub fn set_path(&mut self, uris: &[Bytes]) -> Result<(), SdpError> {
        let line = attr_line(b"path", Some(&join(uris)), AttrKind::Path);
        self.put_attr(b"path", line)
    }

    /// Set `a=accept-types` of the MSRP stream (RFC 4975 §8.6).
    pub fn set_accept_types(&mut self, types: &[Bytes]) -> Result<(), SdpError> {
        let line = attr_line(b"accept-types", Some(&join(types)), AttrKind::AcceptTypes);
        self.put_attr(b"accept-types", line)
    }

    /// Set `a=accept-wrapped-types` of the MSRP stream (RFC 4975 §8.6).
    pub fn set_accept_wrapped_types(&mut self, types: &[Bytes]) -> Result<(), SdpError> {
        let line = attr_line(
            b"accept-wrapped-types",
            Some(&join(types)),
            AttrKind::AcceptWrappedTypes,
        );
        self.put_attr(b"accept-wrapped-types", line)
    }

    /// Set `a=max-size` of the MSRP stream (RFC 4975 §8.6).
    pub fn set_max_size(&mut self, max: u64) -> Result<(), SdpError> {
        let line = attr_line(
            b"max-size",
            Some(max.to_string().as_bytes()),
            AttrKind::MaxSize(max),
        );
        self.put_attr(b"max-size", line)
    }

    /// Set `a=setup` of the MSRP stream (RFC 6135 §4). A session-level `a=setup` is left alone:
    /// the media-level one wins (RFC 4145 §4).
    pub fn set_setup(&mut self, setup: Setup) -> Result<(), SdpError> {
        let line = attr_line(
            b"setup",
            Some(setup.as_str().as_bytes()),
            AttrKind::Setup(setup),
        );
        self.put_attr(b"setup", line)
    }

    /// Add or remove `a=msrp-cema` in the MSRP stream (RFC 6714 §4).
    pub fn set_msrp_cema(&mut self, on: bool) -> Result<(), SdpError> {
        if on {
            let line = attr_line(b"msrp-cema", None, AttrKind::MsrpCema);
            self.put_attr(b"msrp-cema", line)
        } else {
            self.remove_attribute(b"msrp-cema").map(|_| ())
        }
    }

    /// Remove every `a=<name>` line of the MSRP stream's section; how many went.
    pub fn remove_attribute(&mut self, name: &[u8]) -> Result<usize, SdpError> {
        let range = self.section_or_err()?;
        let mut i = range.start;
        let mut end = range.end;
        let mut removed = 0;
        while i < end {
            if self.lines.get(i).is_some_and(|l| l.is_attr(name)) {
                self.lines.remove(i);
                end -= 1;
                removed += 1;
            } else {
                i += 1;
            }
        }
        Ok(removed)
    }

    /// Set the port of the MSRP `m=` line (the format list and protocol are kept).
    pub fn set_port(&mut self, port: u16) -> Result<(), SdpError> {
        let range = self.section_or_err()?;
        if let Some(line) = self.lines.get_mut(range.start)
            && let LineKind::Media(m) = &line.kind
        {
            let mut m = m.clone();
            m.port = port;
            *line = media_line(m);
        }
        Ok(())
    }

    /// Set the connection address of the MSRP stream (`addrtype` `IP4` or `IP6`). Rewrites the
    /// media-level `c=`; without one, the session-level `c=` when the MSRP stream is the only
    /// media, else adds a media-level `c=` after the `m=` (and `i=`) line (RFC 4566 §5 order).
    pub fn set_connection(&mut self, addrtype: &[u8], address: &[u8]) -> Result<(), SdpError> {
        let range = self.section_or_err()?;
        let conn = Connection {
            nettype: Bytes::from_static(b"IN"),
            addrtype: Bytes::copy_from_slice(addrtype),
            address: Bytes::copy_from_slice(address),
        };
        let media_c = range.clone().find(|i| {
            self.lines
                .get(*i)
                .is_some_and(|l| matches!(l.kind, LineKind::Connection(_)))
        });
        let target = match media_c {
            Some(i) => Some(i),
            None if self.media_sections().len() == 1 => (0..self.session_end()).find(|i| {
                self.lines
                    .get(*i)
                    .is_some_and(|l| matches!(l.kind, LineKind::Connection(_)))
            }),
            None => None,
        };
        match target.and_then(|i| self.lines.get_mut(i)) {
            Some(slot) => *slot = connection_line(conn),
            None => {
                let mut at = range.start.saturating_add(1);
                while self
                    .lines
                    .get(at)
                    .is_some_and(|l| l.type_char() == Some(b'i'))
                {
                    at += 1;
                }
                self.insert_line(at, connection_line(conn));
            }
        }
        Ok(())
    }

    /// Replace `o=` (adds one after `v=` if missing).
    pub fn set_origin(&mut self, origin: Origin) {
        let line = origin_line(origin);
        match self
            .lines
            .iter_mut()
            .find(|l| matches!(l.kind, LineKind::Origin(_)))
        {
            Some(slot) => *slot = line,
            None => self.insert_line(1.min(self.lines.len()), line),
        }
    }

    /// Add one to the `o=` session version, as a changed offer must (RFC 3264 §8). Returns the
    /// new version, `None` without an `o=` line.
    pub fn bump_session_version(&mut self) -> Option<u64> {
        let mut o = self.origin()?.clone();
        o.sess_version = o.sess_version.saturating_add(1);
        let v = o.sess_version;
        self.set_origin(o);
        Some(v)
    }
}

impl fmt::Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            f.write_str(&String::from_utf8_lossy(&l.raw))?;
        }
        Ok(())
    }
}

// ---- parsing helpers ----

fn strip_eol(raw: &[u8]) -> &[u8] {
    let s = raw.strip_suffix(b"\n").unwrap_or(raw);
    s.strip_suffix(b"\r").unwrap_or(s)
}

/// Space-separated tokens of `v` as slices of it (several SP / HTAB tolerated).
fn tokens(v: &Bytes) -> Vec<Bytes> {
    v.split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty())
        .map(|t| v.slice_ref(t))
        .collect()
}

fn digits_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

fn parse_line(
    content: &[u8],
    value: Bytes,
    line: usize,
    offset: usize,
    value_offset: usize,
) -> Result<LineKind, SdpError> {
    let bad = |reason: String, at: usize| SdpError::Malformed {
        line,
        reason,
        offset: at,
    };
    let (ty, eq) = match content {
        [t, b'=', ..] => (*t, true),
        [t, ..] => (*t, false),
        [] => (0, false),
    };
    // RFC 4566 §5: `<type>=<value>`, type one letter.
    if !eq || !ty.is_ascii_alphabetic() {
        return Err(bad(
            "not a <type>=<value> line (RFC 4566 §5)".into(),
            offset,
        ));
    }
    let name = char::from(ty);
    let toks = tokens(&value);
    let need = |n: usize, what: &str| -> Result<(), SdpError> {
        if toks.len() < n {
            Err(bad(
                format!("{name}= needs {n} fields ({what}), found {}", toks.len()),
                value_offset,
            ))
        } else {
            Ok(())
        }
    };
    Ok(match ty {
        b'v' => {
            if &value[..] != b"0" {
                return Err(bad("v= must be 0 (RFC 4566 §5.1)".into(), value_offset));
            }
            LineKind::Version
        }
        b'o' => {
            need(
                6,
                "username sess-id sess-version nettype addrtype address; RFC 4566 §5.2",
            )?;
            if toks.len() > 6 {
                return Err(bad(
                    format!("o= has {} fields, 6 expected (RFC 4566 §5.2)", toks.len()),
                    value_offset,
                ));
            }
            let [username, sess_id, version, nettype, addrtype, address] =
                <[Bytes; 6]>::try_from(toks).map_err(|_| bad("o= fields".into(), value_offset))?;
            let sess_version = digits_u64(&version).ok_or_else(|| {
                bad(
                    "o= sess-version is not a number (RFC 4566 §5.2)".into(),
                    value_offset,
                )
            })?;
            LineKind::Origin(Origin {
                username,
                sess_id,
                sess_version,
                nettype,
                addrtype,
                address,
            })
        }
        b's' => LineKind::SessionName,
        b't' => LineKind::Timing,
        b'c' => {
            need(3, "nettype addrtype address; RFC 4566 §5.7")?;
            if toks.len() > 3 {
                return Err(bad(
                    format!("c= has {} fields, 3 expected (RFC 4566 §5.7)", toks.len()),
                    value_offset,
                ));
            }
            let [nettype, addrtype, address] =
                <[Bytes; 3]>::try_from(toks).map_err(|_| bad("c= fields".into(), value_offset))?;
            LineKind::Connection(Connection {
                nettype,
                addrtype,
                address,
            })
        }
        b'm' => {
            need(4, "media port proto fmt; RFC 4566 §5.14")?;
            let mut it = toks.into_iter();
            let (Some(media), Some(port_tok), Some(proto), Some(first_fmt)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad("m= fields".into(), value_offset));
            };
            let (port_s, count_s) = match memchr::memchr(b'/', &port_tok) {
                Some(i) => (
                    port_tok.get(..i).unwrap_or_default(),
                    Some(port_tok.get(i + 1..).unwrap_or_default()),
                ),
                None => (&port_tok[..], None),
            };
            let port = digits_u64(port_s)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    bad(
                        format!(
                            "m= port {:?} is not a number from 0 to 65535",
                            String::from_utf8_lossy(port_s)
                        ),
                        value_offset,
                    )
                })?;
            let port_count = match count_s {
                Some(c) => Some(
                    digits_u64(c)
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or_else(|| {
                            bad("m= number of ports is not a number".into(), value_offset)
                        })?,
                ),
                None => None,
            };
            // The format list runs from the first fmt to the end of the line.
            let fmt_start = (first_fmt.as_ptr() as usize)
                .checked_sub(value.as_ptr() as usize)
                .unwrap_or(value.len());
            let fmts = value.slice_ref(trim_end_ws(value.get(fmt_start..).unwrap_or_default()));
            LineKind::Media(Media {
                media,
                port,
                port_count,
                proto,
                fmts,
            })
        }
        b'a' => LineKind::Attribute(parse_attribute(value, line, value_offset)?),
        _ => LineKind::Other,
    })
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    s.get(..end).unwrap_or_default()
}

fn parse_attribute(value: Bytes, line: usize, offset: usize) -> Result<Attribute, SdpError> {
    let bad = |reason: String| SdpError::Malformed {
        line,
        reason,
        offset,
    };
    // RFC 4566 §5.13: `a=<attribute>` or `a=<attribute>:<value>`.
    let (name, val) = match memchr::memchr(b':', &value) {
        Some(i) => (value.slice(..i), Some(value.slice(i + 1..))),
        None => (value.clone(), None),
    };
    if name.is_empty() {
        return Err(bad("a= with an empty attribute name".into()));
    }
    let need_tokens = |what: &str, rfc: &str| -> Result<(), SdpError> {
        let n = val.as_ref().map_or(0, |v| tokens(v).len());
        if n == 0 {
            Err(bad(format!("a={what} needs at least one value ({rfc})")))
        } else {
            Ok(())
        }
    };
    let kind = match &name[..] {
        b"path" => {
            need_tokens("path", "RFC 4975 §8.2")?;
            for uri in tokens(val.as_ref().unwrap_or(&Bytes::new())) {
                let lower = uri.get(..8).map(|p| p.to_ascii_lowercase());
                let ok = lower.as_deref().is_some_and(|p| p.starts_with(b"msrp://"))
                    || lower.as_deref() == Some(b"msrps://");
                if !ok {
                    return Err(bad(format!(
                        "a=path: {:?} is not an msrp:// or msrps:// URI (RFC 4975 §9)",
                        String::from_utf8_lossy(&uri)
                    )));
                }
            }
            AttrKind::Path
        }
        b"accept-types" => {
            need_tokens("accept-types", "RFC 4975 §8.6")?;
            AttrKind::AcceptTypes
        }
        b"accept-wrapped-types" => {
            need_tokens("accept-wrapped-types", "RFC 4975 §8.6")?;
            AttrKind::AcceptWrappedTypes
        }
        b"max-size" => {
            let v = val.as_deref().map(super::text::trim_ws).unwrap_or_default();
            AttrKind::MaxSize(digits_u64(v).ok_or_else(|| {
                bad(format!(
                    "a=max-size: {:?} is not a number of octets (RFC 4975 §8.6)",
                    String::from_utf8_lossy(v)
                ))
            })?)
        }
        b"setup" => {
            let v = val.as_deref().map(super::text::trim_ws).unwrap_or_default();
            AttrKind::Setup(Setup::parse(v).ok_or_else(|| {
                bad(format!(
                    "a=setup: {:?} is not active, passive, actpass or holdconn (RFC 4145 §4)",
                    String::from_utf8_lossy(v)
                ))
            })?)
        }
        b"msrp-cema" => AttrKind::MsrpCema,
        n => match Direction::parse(n) {
            Some(d) if val.is_none() => AttrKind::Direction(d),
            _ => AttrKind::Other,
        },
    };
    Ok(Attribute {
        name,
        value: val,
        kind,
    })
}

// ---- rendering of changed lines (canonical, CRLF) ----

fn join(items: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|b| b.len() + 1).sum());
    for (i, b) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(b);
    }
    out
}

/// Build a line from its text (without terminator) and re-slice the parsed parts out of it.
fn finish(text: Vec<u8>) -> Bytes {
    let mut text = text;
    text.extend_from_slice(b"\r\n");
    Bytes::from(text)
}

fn attr_line(name: &[u8], value: Option<&[u8]>, kind: AttrKind) -> Line {
    let mut text = Vec::with_capacity(name.len() + value.map_or(0, <[u8]>::len) + 5);
    text.extend_from_slice(b"a=");
    text.extend_from_slice(name);
    if let Some(v) = value {
        text.push(b':');
        text.extend_from_slice(v);
    }
    let raw = finish(text);
    let name_b = raw.slice(2..2 + name.len());
    let value_b = value.map(|v| raw.slice(3 + name.len()..3 + name.len() + v.len()));
    Line {
        raw,
        kind: LineKind::Attribute(Attribute {
            name: name_b,
            value: value_b,
            kind,
        }),
    }
}

/// Re-render a line of the given type from the fields' text and parse it back, so that the
/// model always equals what a fresh parse of the output gives.
fn reparse(text: Vec<u8>) -> Line {
    let raw = finish(text);
    let content = strip_eol(&raw);
    let value = raw.slice_ref(content).slice(2..);
    let kind = parse_line(content, value, 0, 0, 0).unwrap_or(LineKind::Other);
    Line { raw, kind }
}

fn media_line(m: Media) -> Line {
    let mut t = b"m=".to_vec();
    t.extend_from_slice(&m.media);
    t.push(b' ');
    t.extend_from_slice(m.port.to_string().as_bytes());
    if let Some(c) = m.port_count {
        t.push(b'/');
        t.extend_from_slice(c.to_string().as_bytes());
    }
    t.push(b' ');
    t.extend_from_slice(&m.proto);
    t.push(b' ');
    t.extend_from_slice(&m.fmts);
    reparse(t)
}

fn connection_line(c: Connection) -> Line {
    let mut t = b"c=".to_vec();
    t.extend_from_slice(&join(&[c.nettype, c.addrtype, c.address]));
    reparse(t)
}

fn origin_line(o: Origin) -> Line {
    let mut t = b"o=".to_vec();
    t.extend_from_slice(&join(&[
        o.username,
        o.sess_id,
        Bytes::from(o.sess_version.to_string()),
        o.nettype,
        o.addrtype,
        o.address,
    ]));
    reparse(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &[u8] = b"v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 alicepc.example.com\r\n\
s=-\r\n\
c=IN IP4 alicepc.example.com\r\n\
t=0 0\r\n\
m=message 7394 TCP/MSRP *\r\n\
a=accept-types:message/cpim text/plain text/html\r\n\
a=path:msrp://alicepc.example.com:7394/2s93i93idd;tcp\r\n";

    fn parse(b: &'static [u8]) -> Result<Sdp, SdpError> {
        Sdp::parse(Bytes::from_static(b))
    }

    #[test]
    fn round_trip_unchanged_is_identical() {
        let sdp = parse(OFFER).unwrap();
        assert_eq!(sdp.to_bytes(), OFFER);
        assert_eq!(sdp.lines().len(), 8);
        let m = sdp.require_msrp().unwrap();
        assert_eq!(m.port, 7394);
        assert_eq!(m.protocol, MsrpProtocol::Tcp);
        assert_eq!(
            m.path,
            vec![Bytes::from_static(
                b"msrp://alicepc.example.com:7394/2s93i93idd;tcp"
            )]
        );
        assert_eq!(m.accept_types.len(), 3);
        assert_eq!(m.connection.unwrap().address, "alicepc.example.com");
        assert_eq!(m.setup, None);
        assert!(!m.msrp_cema);
        assert_eq!(m.direction, Direction::Sendrecv);
    }

    #[test]
    fn lf_only_and_missing_final_terminator_round_trip() {
        let b: &[u8] = b"v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=message 9 TCP/TLS/MSRP *\na=path:msrps://h:9/x;tcp\na=accept-types:*";
        let sdp = Sdp::parse(Bytes::from_static(b)).unwrap();
        assert_eq!(sdp.to_bytes(), b);
        let m = sdp.require_msrp().unwrap();
        assert_eq!(m.protocol, MsrpProtocol::Tls);
        assert_eq!(m.connection, None);
    }

    #[test]
    fn trailing_blank_line_kept_inner_rejected() {
        let ok = parse(b"v=0\r\ns=-\r\n\r\n").unwrap();
        assert_eq!(ok.lines().last().unwrap().kind(), &LineKind::Blank);
        assert_eq!(ok.to_bytes(), &b"v=0\r\ns=-\r\n\r\n"[..]);
        let e = parse(b"v=0\r\n\r\ns=-\r\n").unwrap_err();
        assert_eq!(e.answer(), Answer::Status(400));
        assert_eq!(e.offset(), Some(5));
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn malformed_lines_say_which_and_why() {
        let e = parse(b"s=-\r\n").unwrap_err();
        assert!(e.to_string().contains("v=0"), "{e}");
        let e = parse(b"v=0\r\nm=message 99999 TCP/MSRP *\r\n").unwrap_err();
        assert_eq!(e.answer(), Answer::Status(400));
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("99999"),
            "{e}"
        );
        let e = parse(b"v=0\r\nc=IN IP4\r\n").unwrap_err();
        assert!(e.to_string().contains("c= needs 3 fields"), "{e}");
        let e = parse(b"v=0\r\nhello\r\n").unwrap_err();
        assert!(e.to_string().contains("<type>=<value>"), "{e}");
        let e = parse(b"v=0\r\na=setup:sideways\r\n").unwrap_err();
        assert!(e.to_string().contains("sideways"), "{e}");
        let e = parse(b"v=0\r\na=max-size:lots\r\n").unwrap_err();
        assert!(e.to_string().contains("max-size"), "{e}");
        let e = parse(b"v=0\r\na=path:http://x/\r\n").unwrap_err();
        assert!(e.to_string().contains("msrp://"), "{e}");
        let e = parse(b"v=0\r\na=path:\r\n").unwrap_err();
        assert!(e.to_string().contains("at least one"), "{e}");
        let e = parse(b"v=0\r\no=a b x IN IP4 h\r\n").unwrap_err();
        assert!(e.to_string().contains("sess-version"), "{e}");
        let e = parse(b"v=1\r\n").unwrap_err();
        assert!(e.to_string().contains("v= must be 0"), "{e}");
        assert!(parse(b"").is_err());
    }

    #[test]
    fn limits_are_enforced_with_413() {
        let lim = Limits {
            max_size: 20,
            ..Limits::default()
        };
        let e = Sdp::parse_with(Bytes::from_static(OFFER), &lim).unwrap_err();
        assert_eq!(e.answer(), Answer::Status(413));
        let lim = Limits {
            max_lines: 3,
            ..Limits::default()
        };
        let e = Sdp::parse_with(Bytes::from_static(OFFER), &lim).unwrap_err();
        assert!(matches!(e, SdpError::TooManyLines { .. }));
        let lim = Limits {
            max_line_len: 10,
            ..Limits::default()
        };
        let e = Sdp::parse_with(Bytes::from_static(OFFER), &lim).unwrap_err();
        assert!(matches!(e, SdpError::LineTooLong { line: 2, .. }), "{e:?}");
    }

    #[test]
    fn no_msrp_is_488() {
        let sdp = parse(b"v=0\r\ns=-\r\nm=audio 49170 RTP/AVP 0\r\n").unwrap();
        assert!(sdp.msrp_media().is_none());
        let e = sdp.require_msrp().unwrap_err();
        assert_eq!(e.answer(), Answer::Status(488));
        let sdp = parse(
            b"v=0\r\nm=message 0 TCP/MSRP *\r\na=path:msrp://h:1/a;tcp\r\na=accept-types:*\r\n",
        )
        .unwrap();
        assert!(
            sdp.require_msrp()
                .unwrap_err()
                .to_string()
                .contains("port 0")
        );
        let sdp = parse(b"v=0\r\nm=message 9 TCP/MSRP *\r\na=accept-types:*\r\n").unwrap();
        assert!(
            sdp.require_msrp()
                .unwrap_err()
                .to_string()
                .contains("a=path")
        );
        let mut sdp = parse(b"v=0\r\ns=-\r\n").unwrap();
        assert_eq!(sdp.set_port(1), Err(SdpError::NoMsrpSection));
        let e = Sdp::parse_msrp(Bytes::from_static(b"v=0\r\ns=-\r\n"), &Limits::default());
        assert_eq!(e.unwrap_err().answer(), Answer::Status(488));
        let (_, m) = Sdp::parse_msrp(Bytes::from_static(OFFER), &Limits::default()).unwrap();
        assert_eq!(m.port, 7394);
    }

    #[test]
    fn setters_rewrite_only_what_changes() {
        let mut sdp = parse(OFFER).unwrap();
        sdp.set_path(&[Bytes::from_static(b"msrp://192.0.2.1:2855/iwf;tcp")])
            .unwrap();
        sdp.set_port(2855).unwrap();
        sdp.set_connection(b"IP4", b"192.0.2.1").unwrap();
        sdp.set_setup(Setup::Passive).unwrap();
        sdp.set_msrp_cema(true).unwrap();
        sdp.set_accept_wrapped_types(&[Bytes::from_static(b"text/plain")])
            .unwrap();
        assert_eq!(sdp.bump_session_version(), Some(2890844528));
        let out = sdp.to_bytes();
        let expect: &[u8] = b"v=0\r\n\
o=alice 2890844526 2890844528 IN IP4 alicepc.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=message 2855 TCP/MSRP *\r\n\
a=accept-types:message/cpim text/plain text/html\r\n\
a=path:msrp://192.0.2.1:2855/iwf;tcp\r\n\
a=setup:passive\r\n\
a=msrp-cema\r\n\
a=accept-wrapped-types:text/plain\r\n";
        assert_eq!(out, expect, "{}", String::from_utf8_lossy(&out));
        // The model equals a fresh parse of what it writes.
        assert_eq!(Sdp::parse(out).unwrap(), sdp);
        assert_eq!(sdp.remove_attribute(b"msrp-cema").unwrap(), 1);
        assert!(!sdp.msrp_media().unwrap().msrp_cema);
        sdp.set_accept_types(&[Bytes::from_static(b"message/cpim")])
            .unwrap();
        sdp.set_max_size(1024).unwrap();
        let m = sdp.require_msrp().unwrap();
        assert_eq!(m.max_size, Some(1024));
        assert_eq!(m.accept_types, vec![Bytes::from_static(b"message/cpim")]);
        assert_eq!(Sdp::parse(sdp.to_bytes()).unwrap(), sdp);
    }

    #[test]
    fn insert_after_an_unterminated_last_line() {
        // Found by fuzzing: the new line ran into the last one.
        let b: &[u8] = b"v=0\r\nm=message 9 TCP/MSRP *\r\na=accept-types:message/cpim t";
        let mut sdp = Sdp::parse(Bytes::from_static(b)).unwrap();
        sdp.set_path(&[Bytes::from_static(b"msrp://192.0.2.1:2855/f;tcp")])
            .unwrap();
        let out = sdp.to_bytes();
        assert!(
            out.ends_with(
                b"a=accept-types:message/cpim t\r\na=path:msrp://192.0.2.1:2855/f;tcp\r\n"
            )
        );
        assert_eq!(Sdp::parse(out).unwrap(), sdp);
        // Found by fuzzing: the input ends after a CR.
        let mut sdp = Sdp::parse(Bytes::from_static(b"v=0\r\nm=message 9 TCP/MSRP *\r")).unwrap();
        sdp.set_setup(Setup::Active).unwrap();
        assert_eq!(
            sdp.to_bytes(),
            &b"v=0\r\nm=message 9 TCP/MSRP *\r\na=setup:active\r\n"[..]
        );
        assert_eq!(Sdp::parse(sdp.to_bytes()).unwrap(), sdp);
        let mut sdp = Sdp::parse(Bytes::from_static(b"v=0")).unwrap();
        sdp.set_origin(Origin {
            username: Bytes::from_static(b"-"),
            sess_id: Bytes::from_static(b"1"),
            sess_version: 1,
            nettype: Bytes::from_static(b"IN"),
            addrtype: Bytes::from_static(b"IP4"),
            address: Bytes::from_static(b"h"),
        });
        assert_eq!(sdp.to_bytes(), &b"v=0\r\no=- 1 1 IN IP4 h\r\n"[..]);
    }

    #[test]
    fn connection_added_at_media_level_when_several_media() {
        let mut sdp = parse(b"v=0\r\nc=IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\nm=message 9 TCP/MSRP *\r\ni=chat\r\na=path:msrp://a:9/x;tcp\r\n").unwrap();
        sdp.set_connection(b"IP6", b"2001:db8::1").unwrap();
        let out = sdp.to_bytes();
        assert_eq!(
            out,
            &b"v=0\r\nc=IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\nm=message 9 TCP/MSRP *\r\ni=chat\r\nc=IN IP6 2001:db8::1\r\na=path:msrp://a:9/x;tcp\r\n"[..]
        );
        assert_eq!(
            sdp.msrp_media().unwrap().connection.unwrap().address,
            "2001:db8::1"
        );
        assert_eq!(sdp.media_sections(), vec![2..3, 3..7]);
    }

    #[test]
    fn session_level_setup_and_direction_are_inherited() {
        let sdp = parse(b"v=0\r\na=setup:actpass\r\na=sendonly\r\nm=message 9 TCP/MSRP *\r\na=path:msrp://a:9/x;tcp\r\na=accept-types:*\r\n").unwrap();
        let m = sdp.require_msrp().unwrap();
        assert_eq!(m.setup, Some(Setup::Actpass));
        assert_eq!(m.direction, Direction::Sendonly);
    }

    #[test]
    fn unknown_lines_and_attributes_are_kept() {
        let b: &[u8] = b"v=0\r\nb=AS:64\r\nm=message 9 TCP/MSRP *\r\na=file-selector:name:\"a b.jpg\" type:image/jpeg size:1\r\na=x-weird\r\n";
        let sdp = Sdp::parse(Bytes::from_static(b)).unwrap();
        assert_eq!(sdp.to_bytes(), b);
        let fs = sdp.lines().get(3).unwrap().attribute().unwrap();
        assert_eq!(fs.name, "file-selector");
        assert_eq!(fs.kind, AttrKind::Other);
        assert_eq!(sdp.lines().get(1).unwrap().kind(), &LineKind::Other);
        assert_eq!(sdp.lines().get(1).unwrap().value(), b"AS:64");
    }

    #[test]
    fn garbage_never_panics() {
        for b in [
            &b"v=0\r\nm="[..],
            b"v=0\r\nm=message",
            b"v=0\r\nm=message 9/ TCP/MSRP *",
            b"v=0\r\na=",
            b"v=0\r\na=:",
            b"v=0\r\n=",
            b"v=0\r\n\xff=\x00",
            b"v=0\r\r\n",
            b"\n",
            b"v",
        ] {
            let _ = parse(b);
        }
    }
}
