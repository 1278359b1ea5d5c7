//! Addresses in `From`, `To` and `Contact` values (RFC 3261 §20.10, §25.1): the URI inside a
//! `name-addr` or `addr-spec`, the canonical address of record, and the `tag` parameter a
//! back-to-back user agent writes anew on each leg.

use super::params::{
    Contact, MAX_PARAMS, ParamError, before_ascii, param_name, split_top_iter, trim,
};
use crate::wire::sip::Text;
use crate::wire::text;

/// The URI of a `From` / `To` / `Contact` value: inside `<...>` when present; otherwise the
/// `addr-spec` up to its first `;` (header parameters then follow it, RFC 3261 §20.10).
pub fn uri_of(value: &str) -> &str {
    // The usual From / To: `<URI>` with no display name (what the loop below reads first),
    // its `>` found without the call to `before_ascii`.
    if let Some(rest) = value.strip_prefix('<') {
        return trim(match text::find_byte(b'>', rest.as_bytes()) {
            Some(i) => rest.get(..i).unwrap_or(rest),
            None => rest,
        });
    }
    // The display name may be a quoted string holding `<` (RFC 3261 §25.1 quoted-string).
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, b) in value.bytes().enumerate() {
        match (in_quotes, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => in_quotes = !in_quotes,
            (false, _, b'<') => {
                let rest = value.get(i + 1..).unwrap_or_default();
                return trim(before_ascii(rest, b'>'));
            }
            _ => {}
        }
    }
    trim(before_ascii(value, b';'))
}

/// The canonical address of record of a URI: scheme and host lower-cased, without port, URI
/// parameters or headers (`sip:Alice@Example.COM:5060;transport=tcp` ->
/// `sip:Alice@example.com`). The user part is case-sensitive (RFC 3261 §19.1.4) and kept.
pub fn aor(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    aor_into(uri, &mut out);
    out
}

/// [`aor`] appended to `out` (no allocation of its own).
pub fn aor_into(uri: &str, out: &mut String) {
    let lower = |s: &str, out: &mut String| {
        let from = out.len();
        out.push_str(s);
        if let Some(added) = out.get_mut(from..) {
            added.make_ascii_lowercase();
        }
    };
    if let Some(canonical) = canonical_aor(uri) {
        out.push_str(canonical);
        return;
    }
    // Parameters and headers start at the first `;` or `?` (RFC 3261 §19.1.1).
    let no_params = match text::find_byte2(b';', b'?', uri.as_bytes()) {
        Some(i) => uri.get(..i).unwrap_or(uri),
        None => uri,
    };
    let Some(colon) = text::find_byte(b':', no_params.as_bytes()) else {
        lower(no_params, out);
        return;
    };
    let scheme = no_params.get(..colon).unwrap_or_default();
    let rest = no_params.get(colon + 1..).unwrap_or_default();
    // The usual address is canonical already (RFC 3261 §19.1.4: `sip:user@host`, scheme and
    // host in lower case, no password, no port): written in one piece.
    if (scheme == "sip" || scheme == "sips") && text::find_byte(b':', rest.as_bytes()).is_none() {
        let host = match text::rfind_byte(b'@', rest.as_bytes()) {
            Some(at) => rest.get(at + 1..).unwrap_or_default(),
            None => rest,
        };
        if !host.starts_with('[') && !host.bytes().any(|b| b.is_ascii_uppercase()) {
            out.push_str(no_params);
            return;
        }
    }
    lower(scheme, out);
    out.push(':');
    if !is_sip_scheme(scheme.as_bytes()) {
        // tel:, im:, and others: no host part to normalise.
        out.push_str(rest);
        return;
    }
    let hostport = match text::rfind_byte(b'@', rest.as_bytes()) {
        Some(at) => {
            // The user part without a password (RFC 3261 §19.1.1 `userinfo`).
            out.push_str(before_ascii(rest.get(..at).unwrap_or_default(), b':'));
            out.push('@');
            rest.get(at + 1..).unwrap_or_default()
        }
        None => rest,
    };
    // An IPv6 reference keeps its brackets; the port follows the last `:` outside them.
    match hostport.strip_prefix('[') {
        Some(v6) => {
            out.push('[');
            lower(before_ascii(v6, b']'), out);
            out.push(']');
        }
        None => lower(before_ascii(hostport, b':'), out),
    }
}

/// Eight bytes of `b` from `at` as a little-endian word, or the last eight of `b` shifted so
/// that byte `at` is the lowest (the bytes before it, read already, shifted out; zeros above
/// the end), and how many of its bytes are `b`'s; `None` at the end or when `b` is shorter
/// than a word.
#[inline]
fn word_at(b: &[u8], at: usize) -> Option<(u64, usize)> {
    if let Some(w) = b.get(at..at.wrapping_add(8)) {
        return Some((u64::from_le_bytes(w.try_into().ok()?), 8));
    }
    let left = b.len().checked_sub(at).filter(|n| *n > 0)?;
    let w = b.get(b.len().checked_sub(8)?..)?;
    Some((
        u64::from_le_bytes(w.try_into().ok()?) >> (8 * (8 - left)),
        left,
    ))
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The address of record of `uri` when it is canonical already, found in one pass over the
/// bytes, eight at a time (each word tested at once for a byte that matters, no searches to
/// set up, no byte-by-byte tail): `sip:` or `sips:` in lower case, then no `:` (no password,
/// no port) up to the parameters or headers (the first `;` or `?`, RFC 3261 §19.1.1), a host
/// (after the last `@`) that is not an IPv6 reference and has no upper case. The usual From /
/// To URI; `None` for any other, which [`aor_into`] reads in parts.
#[inline]
fn canonical_aor(uri: &str) -> Option<&str> {
    canonical_aor_in(uri, false)
}

/// [`canonical_aor`] of `text`, or when `angle` of the URI of `text` read as a `<URI>` value
/// ([`uri_of`]): after its `<`, up to its first `>` as well, which then must follow a
/// printable byte (what [`uri_of`] trims is left to it).
#[inline(always)]
fn canonical_aor_in(text: &str, angle: bool) -> Option<&str> {
    canonical_aor_scan::<true>(text, angle)
}

/// [`canonical_aor_in`], 16 bytes at a time where the text has them when `BLOCKS` (x86_64:
/// a From / To value is ~35 bytes, two blocks where it was five words), else a word at a time
/// (the tests' reference, and the reading on other targets).
#[inline(always)]
fn canonical_aor_scan<const BLOCKS: bool>(text: &str, angle: bool) -> Option<&str> {
    let b = text.as_bytes();
    let from = usize::from(angle);
    if angle && b.first() != Some(&b'<') {
        return None;
    }
    let uri = b.get(from..)?;
    let skip = from
        + match uri.get(..5) {
            Some(b"sips:") => 5,
            _ if uri.starts_with(b"sip:") => 4,
            _ => return None,
        };
    if b.len() < 8 {
        // Shorter than a word (`sip:a@b`): read in parts.
        return None;
    }
    let (mut host_at, mut upper) = (skip, false);
    // Without `angle`, the URI ends with the text; with it, at a `>` (or the parameters).
    let mut end = if angle { None } else { Some(b.len()) };
    // Every byte that matters is in `:`..=`Z` (`: ; < = > ? @` and the upper-case letters):
    // marked a block or a word at a time (the rest: digits, lower case, `.`, `+`, `-`,
    // skipped). What the byte marked at `i` does: `Err(())` the URI is not canonical,
    // `Ok(true)` it ends there.
    let mut visit = |i: usize| -> Result<bool, ()> {
        match b.get(i) {
            Some(b';' | b'?') => {
                end = Some(i);
                Ok(true)
            }
            Some(b'>') if angle => {
                // `uri_of` trims the URI: a printable byte before `>` is kept.
                if !b.get(i.wrapping_sub(1)).is_some_and(u8::is_ascii_graphic) {
                    return Err(());
                }
                end = Some(i);
                Ok(true)
            }
            Some(b':') => Err(()),
            Some(b'@') => {
                host_at = i + 1;
                upper = false;
                Ok(false)
            }
            Some(b'A'..=b'Z') => {
                upper = true;
                Ok(false)
            }
            _ => Ok(false),
        }
    };
    let mut at = skip;
    'scan: {
        if BLOCKS {
            // Whole blocks, then the rest as the last 16 bytes with those read shifted out.
            while at < b.len() {
                let (mut marked, len) = match text::range_block(b, at, b':', b'Z') {
                    Some(m) => (m, 16),
                    None => {
                        let Some(last) = b.len().checked_sub(16) else {
                            break;
                        };
                        match text::range_block(b, last, b':', b'Z') {
                            Some(m) => (m >> (at - last), b.len() - at),
                            None => break,
                        }
                    }
                };
                while marked != 0 {
                    if visit(at + marked.trailing_zeros() as usize).ok()? {
                        break 'scan;
                    }
                    marked &= marked - 1;
                }
                at += len;
            }
        }
        while let Some((w, len)) = word_at(b, at) {
            let v = w & SEVEN;
            let ge = |n: u8| (v + LO * u64::from(0x80 - n)) & HI;
            let mut marked = ge(b':') & !ge(b'Z' + 1) & !w & HI;
            while marked != 0 {
                if visit(at + (marked.trailing_zeros() / 8) as usize).ok()? {
                    break 'scan;
                }
                marked &= marked - 1;
            }
            at += len;
        }
    }
    let end = end?;
    if upper || (host_at < end && b.get(host_at) == Some(&b'[')) {
        return None;
    }
    text.get(from..end)
}

/// The address of record of the URI of a From or To `value` ([`aor`] of [`uri_of`]) when it
/// is the usual `<sip:user@host>` (no display name) and canonical already, read in one pass
/// ([`canonical_aor_in`]: no search for the `>` first); `None` for any other.
pub(crate) fn angle_aor(value: &str) -> Option<&str> {
    canonical_aor_in(value, true)
}

/// `sip` or `sips`, ASCII case ignored (RFC 3261 §19.1.1).
#[inline]
fn is_sip_scheme(s: &[u8]) -> bool {
    match s {
        [a, b, c] | [a, b, c, b's' | b'S'] => [a, b, c].map(u8::to_ascii_lowercase) == *b"sip",
        _ => false,
    }
}

/// Whether a parameter is the `tag`.
fn is_tag(p: &str) -> bool {
    param_name(p).eq_ignore_ascii_case("tag")
}

/// `value` split after its `<URI>` when it starts with one (RFC 3261 §20.10 `name-addr` with no
/// display name): the head up to the first `>` (the splitters' reading of `<...>`), and the
/// rest. Always inlined: out of line (as LLVM chose when its callers changed) it cost ~45
/// instructions a translation in calls and spills.
#[inline(always)]
fn angle_head(value: &str) -> Option<(&str, &str)> {
    if value.as_bytes().first() != Some(&b'<') {
        return None;
    }
    let gt = text::find_byte(b'>', value.as_bytes())?;
    Some((value.get(..=gt)?, value.get(gt + 1..)?))
}

/// Whether `s` is a non-empty RFC 3261 §25.1 `token` (no separator, quote or white space).
#[inline]
fn is_token(s: &str) -> bool {
    // The parser's table: one load a byte (a tag is read on every new leg's From).
    !s.is_empty() && s.bytes().all(crate::wire::sip::is_token_char)
}

/// `contact` written back without its `tag` parameter.
pub(crate) fn write_without_tag(contact: &Contact<'_>, out: &mut String) {
    out.push_str(contact.head.trim_end());
    for p in contact.params().filter(|p| !is_tag(p)) {
        out.push(';');
        out.push_str(p);
    }
}

/// [`Contact::parse`] then [`write_without_tag`] in one pass over `value` (the same output and
/// errors; on an error `out` may hold part of the value).
pub(crate) fn write_without_tag_of(value: &str, out: &mut String) -> Result<(), ParamError> {
    // The usual From: `<URI>` with at most a `tag` of token characters after it.
    if let Some((head, rest)) = angle_head(value)
        && (rest.is_empty() || rest.strip_prefix(";tag=").is_some_and(is_token))
    {
        out.push_str(head);
        return Ok(());
    }
    let mut parts = split_top_iter(value, b';');
    let head = parts.next().unwrap_or(Ok(""))?;
    out.push_str(head.trim_end());
    let mut count = 0usize;
    for p in parts {
        let p = trim(p?);
        if p.is_empty() {
            continue;
        }
        count += 1;
        if !is_tag(p) {
            out.push(';');
            out.push_str(p);
        }
    }
    if count > MAX_PARAMS {
        return Err(ParamError::TooManyParams);
    }
    Ok(())
}

/// `value` with its `tag` parameter replaced by `tag`, or removed when `tag` is `None` (a new
/// leg's To has no tag until the far end answers, RFC 3261 §8.1.1.2).
pub fn with_tag(value: &str, tag: Option<&str>) -> Result<String, ParamError> {
    let contact = Contact::parse(value)?;
    let mut out = String::with_capacity(value.len() + tag.map_or(0, |t| t.len() + 5));
    write_without_tag(&contact, &mut out);
    if let Some(t) = tag {
        out.push_str(";tag=");
        out.push_str(t);
    }
    Ok(out)
}

/// [`with_tag`] with a tag: one allocation, exactly the size of the result.
pub fn with_new_tag(value: &str, tag: &str) -> Result<Text, ParamError> {
    let contact = Contact::parse(value)?;
    let mut out = String::with_capacity(value.len() + tag.len() + 5);
    write_without_tag(&contact, &mut out);
    out.push_str(";tag=");
    out.push_str(tag);
    Ok(Text::from(out.into_boxed_str().into_string()))
}

/// [`with_tag`] without a tag, sharing `value` when it has no tag and is already written so.
pub fn without_tag(value: &Text) -> Result<Text, ParamError> {
    // The usual To of a new request: `<URI>` and nothing else.
    if angle_head(value).is_some_and(|(_, rest)| rest.is_empty()) {
        return Ok(value.clone());
    }
    // One pass for the usual case: no tag, written as it would be written (the To of a new
    // request), shared as it is.
    let mut parts = split_top_iter(value, b';');
    if let Some(Ok(head)) = parts.next() {
        let mut as_written = head.len() == head.trim_end().len();
        let mut count = 0usize;
        for p in parts.by_ref() {
            match p {
                Ok(p) if !p.is_empty() && p.len() == p.trim().len() && !is_tag(p) => count += 1,
                _ => {
                    as_written = false;
                    break;
                }
            }
        }
        if as_written && count <= MAX_PARAMS {
            return Ok(value.clone());
        }
    }
    let contact = Contact::parse(value)?;
    if contact.is_canonical() && !contact.params().any(is_tag) {
        return Ok(value.clone());
    }
    let mut out = String::with_capacity(value.len());
    write_without_tag(&contact, &mut out);
    Ok(Text::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_aor() {
        assert_eq!(
            uri_of("\"Alice <x>\" <sip:alice@a.example;transport=tcp>;tag=1"),
            "sip:alice@a.example;transport=tcp"
        );
        assert_eq!(uri_of("sip:bob@b.example;tag=9"), "sip:bob@b.example");
        assert_eq!(
            aor("SIP:Alice@Example.COM:5060;transport=tcp?subject=x"),
            "sip:Alice@example.com"
        );
        assert_eq!(
            aor("sip:+4917012345@IMS.example;user=phone"),
            "sip:+4917012345@ims.example"
        );
        assert_eq!(
            aor("sip:alice:secret@[2001:DB8::1]:5061"),
            "sip:alice@[2001:db8::1]"
        );
        assert_eq!(aor("tel:+4917012345"), "tel:+4917012345");
        assert_eq!(aor("sip:example.com"), "sip:example.com");
    }

    #[test]
    fn tags_are_replaced_or_removed() {
        assert_eq!(
            with_tag("<sip:a@x>;tag=abc;foo=1", Some("n3w")).unwrap(),
            "<sip:a@x>;foo=1;tag=n3w"
        );
        assert_eq!(
            with_tag("<sip:a@x;tag=uri>", None).unwrap(),
            "<sip:a@x;tag=uri>"
        );
        assert_eq!(with_tag("sip:b@y;TAG=z", None).unwrap(), "sip:b@y");
        let shared = Text::from_static("<sip:a@x>;foo=1");
        let same = without_tag(&shared).unwrap();
        assert_eq!(same.as_bytes().as_ptr(), shared.as_bytes().as_ptr());
        for v in [
            "<sip:a@x>;tag=1",
            "<sip:a@x> ;foo",
            "<sip:a@x>;",
            "<sip:a@x>;;b",
            "<sip:a@x>",
            "<sip:a@x;tag=2>",
            "sip:b@y;TAG=z",
            "\"a;b\" <sip:a@x>; x = 1 ;tag=3",
        ] {
            let t = Text::copy_from_str(v);
            assert_eq!(
                without_tag(&t).unwrap().as_str(),
                with_tag(v, None).unwrap(),
                "{v}"
            );
            assert_eq!(
                with_new_tag(v, "n3w").unwrap().as_str(),
                with_tag(v, Some("n3w")).unwrap(),
                "{v}"
            );
        }
        let many = (0..MAX_PARAMS + 1)
            .map(|i| format!(";p{i}"))
            .collect::<String>();
        for v in [
            "<sip:a@x>;tag=1".to_string(),
            "<sip:a@x> ;foo".into(),
            " <sip:a@x>; tag=1 ; b ;;c=\"q;tag=2\"".into(),
            "\"a;b\" <sip:a@x;tag=u>; x = 1 ;tag=3".into(),
            format!("<sip:a@x>{many}"),
            format!("<sip:a@x>{many};tag=1"),
            "<sip:a@x".into(),
            "<sip:a@x>;p=\"open".into(),
        ] {
            // One pass, the same as the parse then the write.
            let mut one = String::new();
            let one = write_without_tag_of(&v, &mut one).map(|()| one);
            let two = Contact::parse(&v).map(|c| {
                let mut out = String::new();
                write_without_tag(&c, &mut out);
                out
            });
            assert_eq!(one, two, "{v}");
            let t = Text::copy_from_str(&v);
            assert_eq!(
                without_tag(&t).map(|t| t.to_string()),
                with_tag(&v, None),
                "{v}"
            );
        }
        for bad in ["<sip:a@x", "\"open <sip:a@x>"] {
            assert!(without_tag(&Text::copy_from_str(bad)).is_err());
            assert!(with_new_tag(bad, "t").is_err());
        }
        let mut out = String::new();
        aor_into("SIP:Bob@[::1]:5060", &mut out);
        assert_eq!(out, "sip:Bob@[::1]");
    }

    /// [`aor_into`] as it was (a search for `?` then one for `;`, the scheme compared twice),
    /// kept as the reference.
    fn reference_aor(uri: &str) -> String {
        let mut out = String::new();
        let lower = |s: &str, out: &mut String| out.push_str(&s.to_ascii_lowercase());
        let no_params = before_ascii(before_ascii(uri, b'?'), b';');
        let Some(colon) = no_params.find(':') else {
            lower(no_params, &mut out);
            return out;
        };
        let (scheme, rest) = (&no_params[..colon], &no_params[colon + 1..]);
        lower(scheme, &mut out);
        out.push(':');
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            out.push_str(rest);
            return out;
        }
        let hostport = match rest.rfind('@') {
            Some(at) => {
                out.push_str(before_ascii(&rest[..at], b':'));
                out.push('@');
                &rest[at + 1..]
            }
            None => rest,
        };
        match hostport.strip_prefix('[') {
            Some(v6) => {
                out.push('[');
                lower(before_ascii(v6, b']'), &mut out);
                out.push(']');
            }
            None => lower(before_ascii(hostport, b':'), &mut out),
        }
        out
    }

    /// [`uri_of`] as it was (the byte loop for every value), kept as the reference.
    fn reference_uri_of(value: &str) -> &str {
        let (mut in_quotes, mut escaped) = (false, false);
        for (i, b) in value.bytes().enumerate() {
            match (in_quotes, escaped, b) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (_, false, b'"') => in_quotes = !in_quotes,
                (false, _, b'<') => return before_ascii(&value[i + 1..], b'>').trim(),
                _ => {}
            }
        }
        before_ascii(value, b';').trim()
    }

    proptest::proptest! {
        // The URI of `<URI>` (read first, without the byte loop) is the reference's.
        #[test]
        fn uri_of_is_the_reference(
            v in "<?(\"|<|>|;| |[a-z0-9@:.+]|\u{e9}|\\x00){0,40}",
        ) {
            proptest::prop_assert_eq!(uri_of(&v), reference_uri_of(&v));
        }

        // The `<URI>` readings of From and To are the general ones.
        #[test]
        fn angle_head_readings_are_the_general_ones(
            v in "<(sip:a@x|[a-z:@;<\"]{0,6})>?(;tag=|;TAG=|;tag|;)?[a-z0-9;\" ,<>=!~.-]{0,6}",
        ) {
            let mut one = String::new();
            let one = write_without_tag_of(&v, &mut one).map(|()| one);
            let two = Contact::parse(&v).map(|c| {
                let mut out = String::new();
                write_without_tag(&c, &mut out);
                out
            });
            proptest::prop_assert_eq!(one, two);
            proptest::prop_assert_eq!(
                without_tag(&Text::copy_from_str(&v)).map(|t| t.to_string()),
                with_tag(&v, None)
            );
        }

        // The address of record is the reference's.
        #[test]
        fn aor_is_the_reference(
            uri in "(sip|SIPS|sIp|tel|im|s|sipx|:|@|;|\\?|\\[|\\]|[a-zA-Z0-9.+-]|\u{e9}){0,16}",
        ) {
            proptest::prop_assert_eq!(aor(&uri), reference_aor(&uri));
        }

        // The address of record of a From / To value, read in one pass when it is the usual
        // `<URI>`, is the one of its URI.
        #[test]
        fn angle_aor_is_the_aor_of_the_uri(
            v in "(<|\"a\" <|<sip:|<sips:|<SIP:)(:|@|;|\\?|<|>|\\[|\\]| |\t|\u{a0}|\u{85}|[a-zA-Z0-9.+-]|\u{e9}){0,28}(>|>;tag=1| >|)",
        ) {
            if let Some(a) = angle_aor(&v) {
                proptest::prop_assert_eq!(a, reference_aor(reference_uri_of(&v)));
            }
            let usual = format!("<sip:+{}@ims.example.net>;tag=1", v.len());
            proptest::prop_assert_eq!(angle_aor(&usual), Some(&usual[1..usual.len() - 7]));
        }

        // The reading 16 bytes at a time is the word-at-a-time one, at every length around
        // the blocks' edges.
        #[test]
        fn canonical_aor_blocks_are_the_words(
            head in "(<|<sip:|<sips:|sip:|sips:|<SIP:)",
            body in "(:|@|;|\\?|<|>|\\[|\\]| |\t|\u{85}|[a-zA-Z0-9.+-]|\u{e9}){0,40}",
            tail in "(>|>;tag=1| >|)",
        ) {
            let v = format!("{head}{body}{tail}");
            for angle in [false, true] {
                proptest::prop_assert_eq!(
                    canonical_aor_scan::<true>(&v, angle),
                    canonical_aor_scan::<false>(&v, angle)
                );
            }
        }

        // The one-pass reading, when it answers, is the reference's address of record, and it
        // answers for the usual canonical URI.
        #[test]
        fn canonical_aor_is_the_reference(
            uri in "(sip:|sips:|SIP:|sip)(:|@|;|\\?|\\[|\\]|[a-zA-Z0-9.+-]|\u{e9}){0,24}",
        ) {
            if let Some(a) = canonical_aor(&uri) {
                proptest::prop_assert_eq!(a, reference_aor(&uri));
            }
            let usual = format!("sip:{}@ims.example.net;transport=tcp", uri.len());
            proptest::prop_assert_eq!(canonical_aor(&usual), Some(&usual[..usual.len() - 14]));
        }
    }
}
