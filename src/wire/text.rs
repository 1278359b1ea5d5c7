//! Small byte-level helpers shared by the text-based codecs (SIP framing, MSRP, CPIM, SDP).
//! Nothing here allocates.

use memchr::memmem;

/// Position of the next CRLF at or after `from`, as an index into `buf`.
#[inline]
pub fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    memmem::find(tail, b"\r\n").map(|i| i + from)
}

/// Position of the first empty line (`CRLF CRLF`) at or after `from`: the index of its first
/// CR, so that the header block is `buf[..pos]` and the body starts at `pos + 4`.
#[inline]
pub fn find_blank_line(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    memmem::find(tail, b"\r\n\r\n").map(|i| i + from)
}

/// Split a header line `Name: value` at its first colon. The name is returned without
/// surrounding white space, the value with leading and trailing white space (SP / HTAB)
/// removed. `None` when there is no colon or the name is empty.
#[inline]
pub fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let name = trim_ws(line.get(..colon)?);
    if name.is_empty() {
        return None;
    }
    Some((name, trim_ws(line.get(colon + 1..)?)))
}

/// `s` without leading and trailing SP / HTAB.
#[inline]
pub fn trim_ws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_ws(*b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ws(*b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

#[inline]
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether a Content-Type value names the media type `media` (`type/subtype`), parameters
/// (`;charset=...`) and case ignored (RFC 2045 §5.1).
#[inline]
pub fn media_type_is(content_type: &[u8], media: &str) -> bool {
    content_type
        .split(|b| *b == b';')
        .next()
        .map(trim_ws)
        .is_some_and(|m| m.eq_ignore_ascii_case(media.as_bytes()))
}

/// 1-based line and column of byte `offset` in `input`, for error messages that say where.
/// An offset past the end reports the position just after the last byte.
pub fn line_col(input: &[u8], offset: usize) -> (usize, usize) {
    let upto = input.get(..offset).unwrap_or(input);
    let line = memchr::memchr_iter(b'\n', upto).count() + 1;
    let col = match memchr::memrchr(b'\n', upto) {
        Some(nl) => upto.len() - nl,
        None => upto.len() + 1,
    };
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_split_trims_both_sides() {
        assert_eq!(
            split_header(b"To-Path : msrp://a ").map(|(n, v)| (n.to_vec(), v.to_vec())),
            Some((b"To-Path".to_vec(), b"msrp://a".to_vec()))
        );
        assert_eq!(split_header(b"no colon"), None);
        assert_eq!(split_header(b": value"), None);
        assert_eq!(split_header(b"Empty:").map(|(_, v)| v.len()), Some(0));
    }

    #[test]
    fn crlf_and_blank_line() {
        let b = b"a\r\nb\r\n\r\nbody";
        assert_eq!(find_crlf(b, 0), Some(1));
        assert_eq!(find_crlf(b, 2), Some(4));
        assert_eq!(find_blank_line(b, 0), Some(4));
        assert_eq!(find_crlf(b, 100), None);
    }

    #[test]
    fn positions_are_one_based() {
        let b = b"ab\ncd\nef";
        assert_eq!(line_col(b, 0), (1, 1));
        assert_eq!(line_col(b, 4), (2, 2));
        assert_eq!(line_col(b, 99), (3, 3));
        assert_eq!(trim_ws(b" \t "), b"");
    }

    #[test]
    fn media_types_compare_without_parameters_or_case() {
        assert!(media_type_is(b"Message/CPIM", "message/cpim"));
        assert!(media_type_is(b" text/plain ;charset=UTF-8", "text/plain"));
        assert!(!media_type_is(b"text/plainer", "text/plain"));
        assert!(!media_type_is(b"", "text/plain"));
    }
}
