//! Parameters of SIP header values that list contacts (`Contact`, RFC 3261 §20.10;
//! `Accept-Contact`, RFC 3841 §10): split at the separators that are not inside a quoted string
//! or `<URI>`, keep every parameter as written.

use crate::wire::text;

/// Most parameters one contact may carry before the value is refused: far above real traffic
/// (an RCS Contact has about ten), low enough to bound the work on a hostile header.
pub const MAX_PARAMS: usize = 64;

/// Why a header value could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// More than [`MAX_PARAMS`] parameters on one contact.
    #[error("too many parameters on one contact (more than {MAX_PARAMS})")]
    TooManyParams,
    /// An unclosed quoted string or `<` in the value.
    #[error("unterminated quoted string or <URI> in header value")]
    Unterminated,
}

/// Split `s` at every `sep` that is outside a quoted string (RFC 3261 §25.1 `quoted-string`,
/// with `\` escapes) and outside `<...>` (where a URI may carry `;` and `,`).
pub fn split_top(s: &str, sep: u8) -> Result<Vec<&str>, ParamError> {
    split_top_iter(s, sep).collect()
}

/// [`split_top`] as an iterator (no `Vec`): the parts in order, then an error in place of the
/// last part when a quoted string or `<URI>` is left open (nothing after it).
pub fn split_top_iter(s: &str, sep: u8) -> TopSplit<'_> {
    TopSplit {
        s,
        sep,
        start: 0,
        done: false,
    }
}

/// The error [`split_top`] would give, without collecting the parts.
pub fn check_split(s: &str, sep: u8) -> Result<(), ParamError> {
    split_top_iter(s, sep).try_for_each(|p| p.map(drop))
}

/// See [`split_top_iter`].
pub struct TopSplit<'a> {
    s: &'a str,
    sep: u8,
    start: usize,
    done: bool,
}

impl<'a> TopSplit<'a> {
    /// What is left to split (after the last part returned).
    pub fn rest(&self) -> &'a str {
        if self.done {
            ""
        } else {
            self.s.get(self.start..).unwrap_or_default()
        }
    }
}

impl<'a> Iterator for TopSplit<'a> {
    type Item = Result<&'a str, ParamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        let mut i = self.start;
        // Jump from one byte that matters to the next with memchr instead of looking at every
        // byte: header values are mostly URI and token characters.
        while let Some(off) = bytes
            .get(i..)
            .and_then(|rest| text::find_byte3(b'"', b'<', self.sep, rest))
        {
            let at = i + off;
            match bytes.get(at) {
                Some(b'"') => {
                    // A quoted string ends at the next `"` not escaped by `\`.
                    let mut j = at + 1;
                    loop {
                        let Some(q) = bytes
                            .get(j..)
                            .and_then(|rest| text::find_byte2(b'"', b'\\', rest))
                        else {
                            self.done = true;
                            return Some(Err(ParamError::Unterminated));
                        };
                        let k = j + q;
                        if bytes.get(k) == Some(&b'\\') {
                            j = k + 2;
                            continue;
                        }
                        i = k + 1;
                        break;
                    }
                }
                Some(b'<') => {
                    let Some(close) = bytes
                        .get(at + 1..)
                        .and_then(|rest| text::find_byte(b'>', rest))
                    else {
                        self.done = true;
                        return Some(Err(ParamError::Unterminated));
                    };
                    i = at + 1 + close + 1;
                }
                _ => {
                    let part = self.s.get(self.start..at).unwrap_or_default();
                    self.start = at + 1;
                    return Some(Ok(part));
                }
            }
        }
        self.done = true;
        Some(Ok(self.s.get(self.start..).unwrap_or_default()))
    }
}

/// [`split_top_iter`] at either of two separators in one pass, each part with the separator
/// that ended it (`None` for the last): a value listing contacts read as its contacts' heads and
/// parameters at once (`;` and `,`).
pub fn split_top_either(s: &str, a: u8, b: u8) -> TopSplitEither<'_> {
    TopSplitEither {
        s,
        a,
        b,
        start: 0,
        done: false,
        angle: None,
    }
}

/// See [`split_top_either`].
pub struct TopSplitEither<'a> {
    s: &'a str,
    a: u8,
    b: u8,
    start: usize,
    done: bool,
    /// Where the first `<...>` of the last part returned is (inside the brackets).
    angle: Option<(usize, usize)>,
}

impl<'a> TopSplitEither<'a> {
    /// Where the inside of the first `<...>` (outside quotes) of the last part returned is in
    /// the value, when that part has one: a contact's URI, found by the split on its way.
    pub fn angle(&self) -> Option<std::ops::Range<usize>> {
        self.angle.map(|(from, to)| from..to)
    }

    /// What is left to split (after the last part returned).
    pub fn rest(&self) -> &'a str {
        if self.done {
            ""
        } else {
            self.s.get(self.start..).unwrap_or_default()
        }
    }
}

impl<'a> Iterator for TopSplitEither<'a> {
    type Item = Result<(&'a str, Option<u8>), ParamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        let mut i = self.start;
        self.angle = None;
        // From one byte that matters to the next, a word at a time.
        while let Some(at) = bytes
            .get(i..)
            .and_then(|rest| text::find_byte4(b'"', b'<', self.a, self.b, rest))
        {
            i += at;
            let Some(&c) = bytes.get(i) else { break };
            match c {
                b'"' => {
                    // A quoted string ends at the next `"` not escaped by `\`.
                    let mut j = i + 1;
                    loop {
                        let Some(q) = bytes
                            .get(j..)
                            .and_then(|rest| text::find_byte2(b'"', b'\\', rest))
                        else {
                            self.done = true;
                            return Some(Err(ParamError::Unterminated));
                        };
                        let k = j + q;
                        if bytes.get(k) == Some(&b'\\') {
                            j = k + 2;
                            continue;
                        }
                        i = k + 1;
                        break;
                    }
                }
                b'<' => {
                    let Some(close) = bytes
                        .get(i + 1..)
                        .and_then(|rest| text::find_byte(b'>', rest))
                    else {
                        self.done = true;
                        return Some(Err(ParamError::Unterminated));
                    };
                    if self.angle.is_none() {
                        self.angle = Some((i + 1, i + 1 + close));
                    }
                    i += 1 + close + 1;
                }
                c if c == self.a || c == self.b => {
                    let part = self.s.get(self.start..i).unwrap_or_default();
                    self.start = i + 1;
                    return Some(Ok((part, Some(c))));
                }
                _ => i += 1,
            }
        }
        self.done = true;
        Some(Ok((self.s.get(self.start..).unwrap_or_default(), None)))
    }
}

/// One contact (or `ac-value`) checked once, its parameters read in place (no `Vec`): the
/// same reading as [`ContactParams`].
#[derive(Debug, Clone, Copy)]
pub struct Contact<'a> {
    /// `<uri>`, `name-addr` or `*`, as written.
    pub head: &'a str,
    /// What follows the head's `;`, empty when none.
    rest: &'a str,
    /// Whether the head is followed by a `;`.
    had_sep: bool,
}

impl<'a> Contact<'a> {
    /// Split one contact into its head and parameters: the errors of
    /// [`ContactParams::parse`].
    pub fn parse(s: &'a str) -> Result<Self, ParamError> {
        let mut parts = split_top_iter(s, b';');
        let head = parts.next().unwrap_or(Ok(""))?;
        let rest = parts.rest();
        let had_sep = head.len() < s.len();
        let mut count = 0usize;
        for p in parts {
            if !trim(p?).is_empty() {
                count += 1;
            }
        }
        if count > MAX_PARAMS {
            return Err(ParamError::TooManyParams);
        }
        Ok(Contact {
            head,
            rest,
            had_sep,
        })
    }

    /// The `name[=value]` parameters, trimmed, as written, empty ones left out.
    pub fn params(&self) -> impl Iterator<Item = &'a str> + 'a {
        split_top_iter(self.rest, b';')
            .take(if self.had_sep { usize::MAX } else { 0 })
            .filter_map(Result::ok)
            .map(trim)
            .filter(|p| !p.is_empty())
    }

    /// Whether writing this contact back ([`ContactParams::write`] with nothing removed or
    /// added) gives `self` exactly as it came: no white space around the `;`s, no empty
    /// parameter.
    pub fn is_canonical(&self) -> bool {
        if self.head.len() != self.head.trim_end().len() {
            return false;
        }
        !self.had_sep
            || split_top_iter(self.rest, b';')
                .all(|p| p.is_ok_and(|p| !p.is_empty() && p.trim().len() == p.len()))
    }
}

/// One contact (or `ac-value`): what precedes the parameters, and the parameters as written.
pub struct ContactParams<'a> {
    /// `<uri>`, `name-addr` or `*`, as written.
    pub head: &'a str,
    /// `name[=value]` parameters, trimmed, as written.
    pub params: Vec<&'a str>,
}

impl<'a> ContactParams<'a> {
    /// Split one contact into its head and parameters.
    pub fn parse(s: &'a str) -> Result<Self, ParamError> {
        let mut parts = split_top(s, b';')?.into_iter();
        let head = parts.next().unwrap_or_default();
        let params: Vec<&str> = parts.map(trim).filter(|p| !p.is_empty()).collect();
        if params.len() > MAX_PARAMS {
            return Err(ParamError::TooManyParams);
        }
        Ok(ContactParams { head, params })
    }

    /// Write the head, the kept parameters and `extra` ones, `;`-separated.
    pub fn write(&self, extra: &[String], out: &mut String) {
        out.push_str(self.head.trim_end());
        for p in self
            .params
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
        {
            out.push(';');
            out.push_str(p);
        }
    }
}

/// `s.trim()`, without the Unicode white space tables when both ends are printable ASCII (the
/// usual case: nothing to trim).
#[inline]
pub fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// `name.eq_ignore_ascii_case(known)`, cheap when `name` is written as `known` (the SIP codec
/// writes the header names it knows in their canonical spelling; clients write parameter
/// names as specified) or differs from it in length or first byte: the usual cases.
#[inline]
pub fn is_named(name: &str, known: &str) -> bool {
    name.len() == known.len()
        && (name == known
            || (name.as_bytes().first().map(u8::to_ascii_lowercase)
                == known.as_bytes().first().map(u8::to_ascii_lowercase)
                && name.eq_ignore_ascii_case(known)))
}

/// The name of a parameter `name[=value]`.
pub fn param_name(p: &str) -> &str {
    let name = match text::find_byte(b'=', p.as_bytes()) {
        Some(eq) => p.get(..eq).unwrap_or(p),
        None => p,
    };
    trim(name)
}

/// `s` split at every byte `sep` (an ASCII byte: the parts are `str`s), like `str::split`
/// but with memchr.
pub fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut start = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rest = s.get(start..).unwrap_or_default();
        match text::find_byte(sep, rest.as_bytes()) {
            Some(i) => {
                start += i + 1;
                rest.get(..i)
            }
            None => {
                done = true;
                Some(rest)
            }
        }
    })
}

/// `s` split at its first `sep` (ASCII), which neither part holds (`str::split_once`
/// without the pattern machinery).
pub fn split_once_ascii(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = text::find_byte(sep, s.as_bytes())?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `s` up to the first byte `sep` (all of it when there is none).
pub fn before_ascii(s: &str, sep: u8) -> &str {
    match text::find_byte(sep, s.as_bytes()) {
        Some(i) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// The value of a parameter with its surrounding quotes removed.
pub fn param_value(p: &str) -> Option<&str> {
    let eq = text::find_byte(b'=', p.as_bytes())?;
    let v = trim(p.get(eq + 1..)?);
    Some(
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v),
    )
}
