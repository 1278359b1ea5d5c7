//! Parameters of SIP header values that list contacts (`Contact`, RFC 3261 §20.10;
//! `Accept-Contact`, RFC 3841 §10): split at the separators that are not inside a quoted string
//! or `<URI>`, keep every parameter as written.

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
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Jump from one byte that matters to the next with memchr instead of looking at every byte:
    // header values are mostly URI and token characters.
    while let Some(off) = bytes
        .get(i..)
        .and_then(|rest| memchr::memchr3(b'"', b'<', sep, rest))
    {
        let at = i + off;
        match bytes.get(at) {
            Some(b'"') => {
                // A quoted string ends at the next `"` not escaped by `\`.
                let mut j = at + 1;
                loop {
                    let Some(q) = bytes
                        .get(j..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    else {
                        return Err(ParamError::Unterminated);
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
                let close = bytes
                    .get(at + 1..)
                    .and_then(|rest| memchr::memchr(b'>', rest))
                    .ok_or(ParamError::Unterminated)?;
                i = at + 1 + close + 1;
            }
            _ => {
                parts.push(s.get(start..at).unwrap_or_default());
                start = at + 1;
                i = at + 1;
            }
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    Ok(parts)
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
        let params: Vec<&str> = parts.map(str::trim).filter(|p| !p.is_empty()).collect();
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

/// The name of a parameter `name[=value]`.
pub fn param_name(p: &str) -> &str {
    p.split_once('=').map_or(p, |(n, _)| n).trim()
}

/// The value of a parameter with its surrounding quotes removed.
pub fn param_value(p: &str) -> Option<&str> {
    let (_, v) = p.split_once('=')?;
    let v = v.trim();
    Some(
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v),
    )
}
