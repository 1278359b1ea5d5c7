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
    let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quotes {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_quotes = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            _ if b == sep && !in_angle => {
                parts.push(s.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes || in_angle {
        return Err(ParamError::Unterminated);
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
