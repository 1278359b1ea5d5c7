//! MSRP URIs (RFC 4975 §6 and §9) and the space-separated URI lists of To-Path, From-Path and
//! Use-Path.

use std::fmt;

use bytes::Bytes;

use super::MsrpError;
use crate::wire::text::{find_byte, find_byte2};

/// An `msrp:` or `msrps:` URI (RFC 4975 §9):
///
/// ```text
/// MSRP-URI = msrp-scheme "://" authority ["/" session-id] ";" transport *( ";" URI-parameter)
/// authority = [ userinfo "@" ] host [ ":" port ]
/// ```
///
/// All parts are slices of the parsed header value. `PartialEq` is structural (the parts as
/// written); [`MsrpUri::equivalent`] applies the comparison rules of RFC 4975 §6.1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsrpUri {
    /// `msrps` (TLS, RFC 4975 §6) rather than `msrp`.
    pub secure: bool,
    /// The userinfo before `@`, without the `@` (rare; never compared, RFC 4975 §6.1 rule 2).
    pub userinfo: Option<Bytes>,
    /// Host name, IPv4 address, or IPv6 reference with its brackets (`[2001:db8::1]`).
    pub host: Bytes,
    /// The port; RFC 4975 §6 URIs in SDP always carry one, relay URIs (RFC 4976 §5) may not.
    pub port: Option<u16>,
    /// The session-id after `/`; absent in a URI that names a device or relay, not a session.
    pub session_id: Option<Bytes>,
    /// The transport parameter (`tcp`; RFC 4975 §6 makes it mandatory).
    pub transport: Bytes,
    /// Further `;name[=value]` parameters after the transport, without the first `;`
    /// (empty when there are none).
    pub params: Bytes,
}

/// Most URIs a path may hold, when the caller has no [`super::Limits`] at hand.
const URI_PART_LIMIT: usize = 4096;

impl MsrpUri {
    /// Parse one URI. `input` must hold exactly the URI (no surrounding white space).
    pub fn parse(input: Bytes) -> Result<MsrpUri, MsrpError> {
        parse_at(&input, 0, input.len(), 0)
    }

    /// Parse one URI from a string (a convenience for configuration and tests).
    pub fn parse_str(input: &str) -> Result<MsrpUri, MsrpError> {
        MsrpUri::parse(Bytes::copy_from_slice(input.as_bytes()))
    }

    /// The URI comparison of RFC 4975 §6.1: scheme, host (case-insensitive), port and
    /// transport (case-insensitive) and session-id (case-sensitive) must match; userinfo and
    /// other parameters are ignored. Percent-encoded host characters are compared as written
    /// (hosts that MSRP peers generate never contain them).
    pub fn equivalent(&self, other: &MsrpUri) -> bool {
        self.secure == other.secure
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && self.session_id == other.session_id
            && self.transport.eq_ignore_ascii_case(&other.transport)
    }

    /// The length of the serialized URI, for buffer reservations.
    pub fn encoded_len(&self) -> usize {
        let mut n = if self.secure { 8 } else { 7 } + self.host.len() + 1 + self.transport.len();
        if let Some(u) = &self.userinfo {
            n += u.len() + 1;
        }
        if let Some(p) = self.port {
            // Exact, so that a buffer of this size is filled and frozen without a second
            // allocation (`Bytes` from a `Vec` whose length is not its capacity allocates).
            n += 1 + match p {
                0..=9 => 1,
                10..=99 => 2,
                100..=999 => 3,
                1_000..=9_999 => 4,
                _ => 5,
            };
        }
        if let Some(s) = &self.session_id {
            n += s.len() + 1;
        }
        if !self.params.is_empty() {
            n += self.params.len() + 1;
        }
        n
    }

    /// Append the URI to `dst`.
    pub fn write_to(&self, dst: &mut bytes::BytesMut) {
        dst.extend_from_slice(if self.secure { b"msrps://" } else { b"msrp://" });
        if let Some(u) = &self.userinfo {
            dst.extend_from_slice(u);
            dst.extend_from_slice(b"@");
        }
        dst.extend_from_slice(&self.host);
        if let Some(p) = self.port {
            dst.extend_from_slice(b":");
            push_decimal(dst, u64::from(p));
        }
        if let Some(s) = &self.session_id {
            dst.extend_from_slice(b"/");
            dst.extend_from_slice(s);
        }
        dst.extend_from_slice(b";");
        dst.extend_from_slice(&self.transport);
        if !self.params.is_empty() {
            dst.extend_from_slice(b";");
            dst.extend_from_slice(&self.params);
        }
    }
}

impl fmt::Display for MsrpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = bytes::BytesMut::with_capacity(self.encoded_len());
        self.write_to(&mut b);
        f.write_str(&String::from_utf8_lossy(&b))
    }
}

/// Append `n` in decimal without going through `fmt`.
pub(crate) fn push_decimal(dst: &mut bytes::BytesMut, mut n: u64) {
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
    dst.extend_from_slice(buf.get(i..).unwrap_or_default());
}

fn uri_err(reason: &'static str, offset: usize) -> MsrpError {
    MsrpError::BadUri { reason, offset }
}

const UNRESERVED: u8 = 1;
const TOKEN: u8 = 2;
const REG_NAME: u8 = 4;
const USERINFO: u8 = 8;
const SESSION_ID: u8 = 16;
const IDENT: u8 = 32;

/// Character classes of RFC 3986 and RFC 4975 §9, one table lookup per byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let unreserved = alnum || matches!(b, b'-' | b'.' | b'_' | b'~');
        let mut c = 0;
        if unreserved {
            c |= UNRESERVED;
        }
        if alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            c |= TOKEN;
        }
        let sub_delim = matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
        );
        if unreserved || sub_delim || b == b'%' {
            c |= REG_NAME;
        }
        if unreserved || sub_delim || matches!(b, b'%' | b';' | b':') {
            c |= USERINFO;
        }
        // RFC 4975 §9: session-id = 1*( unreserved / "+" / "=" / "/" ); "%" accepted too
        // because some peers percent-encode.
        if unreserved || matches!(b, b'+' | b'=' | b'/' | b'%') {
            c |= SESSION_ID;
        }
        // RFC 4975 §9: ident-char = ALPHANUM / "." / "-" / "+" / "%" / "="
        if alnum || matches!(b, b'.' | b'-' | b'+' | b'%' | b'=') {
            c |= IDENT;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline]
fn class(b: u8, c: u8) -> bool {
    CLASS.get(usize::from(b)).is_some_and(|x| x & c != 0)
}

/// RFC 3261 / RFC 4975 token characters (URI-parameter = token ["=" token]).
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    class(b, TOKEN)
}

/// RFC 4975 §9 ident-char.
#[inline]
pub(crate) fn is_ident_char(b: u8) -> bool {
    class(b, IDENT)
}

#[inline]
fn is_userinfo(b: u8) -> bool {
    class(b, USERINFO)
}

#[inline]
fn is_reg_name(b: u8) -> bool {
    class(b, REG_NAME)
}

/// Where the parts of a URI are, as ranges into the scanned slice.
struct Ranges {
    secure: bool,
    userinfo: Option<(usize, usize)>,
    host: (usize, usize),
    port: Option<u16>,
    session_id: Option<(usize, usize)>,
    transport: (usize, usize),
    params: Option<(usize, usize)>,
}

/// Parse the URI in `src[start..end]`; `base` is the offset of `src` in the message, for
/// error positions.
pub(crate) fn parse_at(
    src: &Bytes,
    start: usize,
    end: usize,
    base: usize,
) -> Result<MsrpUri, MsrpError> {
    let r = scan(src.get(start..end).unwrap_or_default(), base + start)?;
    let sl = |(a, b): (usize, usize)| src.slice(start + a..start + b);
    Ok(MsrpUri {
        secure: r.secure,
        userinfo: r.userinfo.map(sl),
        host: sl(r.host),
        port: r.port,
        session_id: r.session_id.map(sl),
        transport: sl(r.transport),
        params: r.params.map(sl).unwrap_or_default(),
    })
}

/// Check a space-separated URI list without building `Bytes`; returns how many URIs it holds
/// (stops counting past `max`) and where the first one is in `value`. The errors are those
/// of [`UriList`] over the same value.
pub(crate) fn check_list(
    value: &[u8],
    base: usize,
    max: usize,
) -> Result<(usize, Option<std::ops::Range<usize>>), MsrpError> {
    let mut n = 0;
    let mut first = None;
    let mut pos = 0;
    while pos < value.len() {
        let rest = value.get(pos..).unwrap_or_default();
        let len = find_byte2(b' ', b'\t', rest).unwrap_or(rest.len());
        if len > 0 {
            scan(rest.get(..len).unwrap_or_default(), base + pos)?;
            if first.is_none() {
                first = Some(pos..pos + len);
            }
            n += 1;
            if n > max {
                break;
            }
        }
        pos += len + 1;
    }
    Ok((n, first))
}

/// The grammar check of one URI (RFC 4975 §9 MSRP-URI).
fn scan(s: &[u8], base: usize) -> Result<Ranges, MsrpError> {
    let at = |i: usize| base + i;
    if s.len() > URI_PART_LIMIT {
        return Err(uri_err("URI longer than 4096 bytes", at(0)));
    }
    // RFC 4975 §9: msrp-scheme = "msrp" / "msrps", case-insensitive (RFC 3986 §3.1).
    let (secure, mut i) = match s {
        [m, s_, r, p, b':', ..] if [*m, *s_, *r, *p].eq_ignore_ascii_case(b"msrp") => (false, 4),
        [m, s_, r, p, s2, b':', ..] if [*m, *s_, *r, *p, *s2].eq_ignore_ascii_case(b"msrps") => {
            (true, 5)
        }
        _ => return Err(uri_err("scheme is not msrp: or msrps:", at(0))),
    };
    if s.get(i..i + 3) != Some(b"://".as_slice()) {
        return Err(uri_err("\"//\" missing after the scheme", at(i)));
    }
    i += 3;
    // authority ends at "/" (session-id) or ";" (transport). The spans of a URI are short
    // (tens of bytes): the short-span searches of `wire::text`, where `memchr`'s set-up per
    // call costs more than the search (issue 9, chat profile: URI checks were ~14 % of the
    // relay's instructions).
    let auth_len = find_byte2(b'/', b';', s.get(i..).unwrap_or_default())
        .ok_or_else(|| uri_err("no \";transport\" parameter", at(s.len())))?;
    let auth_end = i + auth_len;
    let authority = s.get(i..auth_end).unwrap_or_default();
    let (userinfo, host_start) = match authority.iter().rposition(|b| *b == b'@') {
        Some(a) => {
            let ui = authority.get(..a).unwrap_or_default();
            if ui.is_empty() || !ui.iter().all(|b| is_userinfo(*b)) {
                return Err(uri_err("invalid userinfo", at(i)));
            }
            (Some((i, i + a)), i + a + 1)
        }
        None => (None, i),
    };
    let hostport = s.get(host_start..auth_end).unwrap_or_default();
    let (host_len, port) = if hostport.first() == Some(&b'[') {
        let close = find_byte(b']', hostport)
            .ok_or_else(|| uri_err("IPv6 reference without \"]\"", at(host_start)))?;
        let inner = hostport.get(1..close).unwrap_or_default();
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            return Err(uri_err("invalid IPv6 reference", at(host_start)));
        }
        match hostport.get(close + 1..) {
            Some([]) | None => (close + 1, None),
            Some([b':', digits @ ..]) => (
                close + 1,
                Some(parse_port(digits, at(host_start + close + 2))?),
            ),
            Some(_) => {
                return Err(uri_err(
                    "unexpected characters after the IPv6 reference",
                    at(host_start + close + 1),
                ));
            }
        }
    } else {
        match find_byte(b':', hostport) {
            Some(c) => (
                c,
                Some(parse_port(
                    hostport.get(c + 1..).unwrap_or_default(),
                    at(host_start + c + 1),
                )?),
            ),
            None => (hostport.len(), None),
        }
    };
    let host = hostport.get(..host_len).unwrap_or_default();
    if host.is_empty() {
        return Err(uri_err("empty host", at(host_start)));
    }
    if host.first() != Some(&b'[') && !host.iter().all(|b| is_reg_name(*b)) {
        return Err(uri_err("invalid character in host", at(host_start)));
    }
    let host = (host_start, host_start + host_len);

    let mut j = auth_end;
    let session_id = if s.get(j) == Some(&b'/') {
        let sid_start = j + 1;
        // One pass: the first byte outside the session-id class must be the ";".
        let rest = s.get(sid_start..).unwrap_or_default();
        let sid_len = match rest.iter().position(|b| !class(*b, SESSION_ID)) {
            Some(n) if rest.get(n) == Some(&b';') => n,
            Some(n) if find_byte(b';', rest).is_some() => {
                return Err(uri_err(
                    "invalid character in session-id",
                    at(sid_start + n),
                ));
            }
            _ => return Err(uri_err("no \";transport\" parameter", at(s.len()))),
        };
        if sid_len == 0 {
            return Err(uri_err("empty session-id", at(sid_start)));
        }
        j = sid_start + sid_len;
        Some((sid_start, j))
    } else {
        None
    };
    // Now at ";" transport.
    let t_start = j + 1;
    let rest = s.get(t_start..).unwrap_or_default();
    let t_len = find_byte(b';', rest).unwrap_or(rest.len());
    let transport = rest.get(..t_len).unwrap_or_default();
    // RFC 4975 §9: transport = "tcp" / 1*ALPHANUM
    if transport.is_empty() || !transport.iter().all(u8::is_ascii_alphanumeric) {
        return Err(uri_err(
            "transport must be alphanumeric (\";tcp\")",
            at(t_start),
        ));
    }
    let transport = (t_start, t_start + t_len);
    let p_start = t_start + t_len + 1;
    let params = if p_start <= s.len() {
        let p = s.get(p_start..).unwrap_or_default();
        // URI-parameter = token ["=" token], separated by ";".
        for param in p.split(|b| *b == b';') {
            let mut parts = param.splitn(2, |b| *b == b'=');
            let name = parts.next().unwrap_or_default();
            let ok = !name.is_empty()
                && name.iter().all(|b| is_token(*b))
                && parts
                    .next()
                    .is_none_or(|v| !v.is_empty() && v.iter().all(|b| is_token(*b)));
            if !ok {
                return Err(uri_err("invalid URI parameter", at(p_start)));
            }
        }
        Some((p_start, s.len()))
    } else {
        None
    };
    Ok(Ranges {
        secure,
        userinfo,
        host,
        port,
        session_id,
        transport,
        params,
    })
}

fn parse_port(digits: &[u8], offset: usize) -> Result<u16, MsrpError> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(uri_err("port is not a number", offset));
    }
    let n = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| uri_err("port above 65535", offset))
}

/// The URIs of a To-Path, From-Path or Use-Path value, separated by one or more spaces
/// (RFC 4975 §9: `To-Path: MSRP-URI *( SP MSRP-URI )`). Iterates without allocating.
#[derive(Debug, Clone)]
pub struct UriList {
    value: Bytes,
    pos: usize,
    base: usize,
}

impl UriList {
    /// The URIs in `value`; `base` is the offset of `value` in its message (for errors; 0 if
    /// unknown).
    pub fn new(value: Bytes, base: usize) -> UriList {
        UriList {
            value,
            pos: 0,
            base,
        }
    }
}

impl Iterator for UriList {
    type Item = Result<MsrpUri, MsrpError>;

    fn next(&mut self) -> Option<Self::Item> {
        let v = self.value.get(self.pos..)?;
        let skip = v.iter().position(|b| *b != b' ' && *b != b'\t')?;
        let start = self.pos + skip;
        let len = self
            .value
            .get(start..)
            .unwrap_or_default()
            .iter()
            .position(|b| *b == b' ' || *b == b'\t')
            .unwrap_or(self.value.len() - start);
        self.pos = start + len;
        Some(parse_at(&self.value, start, start + len, self.base))
    }
}

/// Serialize a URI list with single spaces.
pub fn write_uri_list(dst: &mut bytes::BytesMut, uris: &[MsrpUri]) {
    for (i, u) in uris.iter().enumerate() {
        if i > 0 {
            dst.extend_from_slice(b" ");
        }
        u.write_to(dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_is_exact() {
        for text in [
            "msrp://a/s;tcp",
            "msrps://bob@host.example.com:2855/abc;tcp;x=1",
            "msrp://127.0.0.1:0/s;tcp",
            "msrp://127.0.0.1:9/s;tcp",
            "msrp://127.0.0.1:10/s;tcp",
            "msrp://127.0.0.1:99/s;tcp",
            "msrp://127.0.0.1:100/s;tcp",
            "msrp://127.0.0.1:9999/s;tcp",
            "msrp://127.0.0.1:10000/s;tcp",
            "msrp://[2001:db8::1]:65535;tcp",
        ] {
            let u = MsrpUri::parse(bytes::Bytes::from_static(text.as_bytes())).unwrap();
            let mut b = bytes::BytesMut::new();
            u.write_to(&mut b);
            assert_eq!(u.encoded_len(), b.len(), "{text}");
        }
    }

    fn p(s: &str) -> Result<MsrpUri, MsrpError> {
        MsrpUri::parse_str(s)
    }

    #[test]
    fn typical_uri() {
        let u = p("msrp://atlanta.example.com:7654/jshA7weztas;tcp").unwrap();
        assert!(!u.secure);
        assert_eq!(&u.host[..], b"atlanta.example.com");
        assert_eq!(u.port, Some(7654));
        assert_eq!(u.session_id.as_deref(), Some(&b"jshA7weztas"[..]));
        assert_eq!(&u.transport[..], b"tcp");
        assert!(u.params.is_empty());
        assert_eq!(
            u.to_string(),
            "msrp://atlanta.example.com:7654/jshA7weztas;tcp"
        );
    }

    #[test]
    fn relay_uri_without_session_and_port() {
        let u = p("msrps://relay.example.com;tcp").unwrap();
        assert!(u.secure);
        assert_eq!(u.port, None);
        assert_eq!(u.session_id, None);
        assert_eq!(u.to_string(), "msrps://relay.example.com;tcp");
    }

    #[test]
    fn userinfo_ipv6_and_params() {
        let u = p("msrps://bob@[2001:db8::1]:2855/s1/x=;tcp;foo=bar;baz").unwrap();
        assert_eq!(u.userinfo.as_deref(), Some(&b"bob"[..]));
        assert_eq!(&u.host[..], b"[2001:db8::1]");
        assert_eq!(u.port, Some(2855));
        assert_eq!(u.session_id.as_deref(), Some(&b"s1/x="[..]));
        assert_eq!(&u.params[..], b"foo=bar;baz");
        assert_eq!(
            u.to_string(),
            "msrps://bob@[2001:db8::1]:2855/s1/x=;tcp;foo=bar;baz"
        );
    }

    #[test]
    fn bad_uris() {
        for s in [
            "sip://a;tcp",
            "msrp:/a;tcp",
            "msrp://a:99999/s;tcp",
            "msrp://a:/s;tcp",
            "msrp://a/s",
            "msrp:///s;tcp",
            "msrp://a/;tcp",
            "msrp://a/s;",
            "msrp://a/s;t-p",
            "msrp://a/s;tcp;",
            "msrp://a/s;tcp;=x",
            "msrp://[::1/s;tcp",
            "msrp://a b/s;tcp",
            "msrp://@a/s;tcp",
        ] {
            assert!(p(s).is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn comparison_rules_of_6_1() {
        let a = p("msrp://Atlanta.Example.com:7654/jshA7weztas;TCP").unwrap();
        let b = p("MSRP://u@atlanta.example.com:7654/jshA7weztas;tcp;x=y").unwrap();
        assert!(a.equivalent(&b));
        let c = p("msrp://atlanta.example.com:7654/JSHA7WEZTAS;tcp").unwrap();
        assert!(!a.equivalent(&c), "session-id is case-sensitive");
        let d = p("msrp://atlanta.example.com/jshA7weztas;tcp").unwrap();
        assert!(!a.equivalent(&d), "explicit port never equals no port");
        let e = p("msrps://atlanta.example.com:7654/jshA7weztas;tcp").unwrap();
        assert!(!a.equivalent(&e));
    }

    #[test]
    fn lists() {
        let v = Bytes::from_static(b"msrp://a:1/x;tcp  msrps://b:2/y;tcp");
        let l: Vec<_> = UriList::new(v, 0).collect::<Result<_, _>>().unwrap();
        assert_eq!(l.len(), 2);
        let mut out = bytes::BytesMut::new();
        write_uri_list(&mut out, &l);
        assert_eq!(&out[..], b"msrp://a:1/x;tcp msrps://b:2/y;tcp");
        assert_eq!(UriList::new(Bytes::from_static(b"  "), 0).count(), 0);
    }
}
